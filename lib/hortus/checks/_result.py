"""The outcome of a model check (`CheckResult`) and how a check decides it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import polars as pl


@dataclass
class CheckResult:
    """The outcome of one model check.

    Parameters
    ----------
    name
        Check name, e.g. "segment_metrics_ci" or "fairness[age_band]".
    passed
        False blocks promotion.
    value, threshold
        The measured value and the bound of the deciding criterion: the first
        failed one, or the headline criterion when the check passed.
    detail
        One sentence per failed criterion (with its own value and bound), or
        what was checked when it passed.
    table
        Supporting rows (one per segment value, group, feature or test).
    stats
        Supporting scalars.
    """

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str
    table: pl.DataFrame | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (NaN -> None, table as a list of row dicts)."""
        return {
            "name": self.name,
            "passed": bool(self.passed),
            "value": _plain(self.value),
            "threshold": _plain(self.threshold),
            "detail": self.detail,
            "table": None if self.table is None else _plain(self.table.to_dicts()),
            "stats": _plain(self.stats),
        }

    def summary(self) -> str:
        """Return one line: PASS/FAIL, name, value vs threshold and the detail."""
        word = "PASS" if self.passed else "FAIL"
        return (
            f"{word} {self.name}: value {_fmt(self.value)}, threshold {_fmt(self.threshold)}; "
            f"{self.detail}"
        )


def _plain(value: Any) -> Any:
    """Return `value` with numpy scalars, NaN, dates and containers made JSON-friendly."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, pl.DataFrame):
        return _plain(value.to_dicts())
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _decide(
    name: str,
    failures: list[tuple[str, float | None, float | None]],
    headline: tuple[float | None, float | None],
    ok_detail: str,
    table: pl.DataFrame | None,
    stats: dict[str, Any],
) -> CheckResult:
    """Build a result from (sentence, value, threshold) failures and a headline criterion."""
    if failures:
        _, value, threshold = failures[0]
        return CheckResult(
            name, False, value, threshold, "; ".join(f[0] for f in failures), table, stats
        )
    return CheckResult(name, True, headline[0], headline[1], ok_detail, table, stats)
