"""Drift thresholds calibrated on the reference period's own variation (like windows, like lags).

A fixed distance threshold (say normalised Wasserstein 0.1) has no notion of normal
day-to-day change: features that move by construction (counts over windows that
are still filling up, all-time totals, days since sign-up) exceed it on data with
no drift at all.  Following NannyML, the threshold of each column is derived from
the history itself:

1. The comparison is between *like windows*: the current rows span ``span`` (e.g.
   the hold-out's days, or one day of the dashboard) and start ``lag`` after the
   reference window begins; the reference is the history's last ``span``.
2. The history is cut into pairs of windows of the same ``span`` at the same
   ``lag`` (earlier window ``[e - lag - span, e - lag)``, later ``[e - span, e)``),
   sliding ``e`` by ``step`` (one day) over the history.  Each pair is compared
   with the same distance the decision uses (normalised Wasserstein for numbers,
   Jensen-Shannon for categories; p-value tests are not calibrated this way, so
   a calibrated comparison always gates on the distance).
3. A column's threshold is ``margin x`` the largest distance among the pairs,
   and at least ``floor`` (the config's distance threshold times
   ``floor_share``).  A feature that grows steadily shows that growth in every
   pair at that lag, so its threshold allows it; a stationary one keeps a tight
   threshold and a real change stands out.

Pairs whose earlier window starts before ``warm_up`` after the history's first row
are left out (windows still filling up at the start of a shop's history), unless
that leaves no pair.  No pair at all (history shorter than ``lag + span``):
the config's fixed thresholds are used and `Calibration.note` says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import polars as pl

from hortus.monitoring._drift_compare import DriftReport, compare
from hortus.monitoring._drift_config import DriftConfig, DriftError

#: multiple of the largest like-window distance in the history that a change must reach
DEFAULT_MARGIN = 2.0
#: the calibrated threshold is at least this share of the config's fixed threshold
DEFAULT_FLOOR_SHARE = 0.5


@dataclass(frozen=True)
class CalibrationConfig:
    """How thresholds are calibrated (params: ``gate.drift.calibration``, ``monitor.drift``).

    Examples
    --------
    >>> CalibrationConfig.from_dict({"margin": 2}).margin
    2.0
    """

    #: calibrate (False: the fixed thresholds of `DriftConfig`)
    enabled: bool = True
    #: multiple of the largest distance between like windows of the history
    margin: float = DEFAULT_MARGIN
    #: lower bound, as a share of the fixed threshold
    floor_share: float = DEFAULT_FLOOR_SHARE
    #: days at the start of the history left out of the pairs (windows filling up; a
    #: week: weekly windows full and every weekday seen)
    warm_up_days: float = 7.0
    #: days between the ends of successive pairs
    step_days: float = 0.5
    #: pairs wanted: when fewer of the full span fit, shorter windows are used (their
    #: distances scaled up by the lag ratio, which widens the noise part too)
    min_pairs: int = 1

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> CalibrationConfig:
        """Build from a mapping; refuse unknown keys."""
        data = dict(data or {})
        known = {"enabled", "margin", "floor_share", "warm_up_days", "step_days", "min_pairs"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DriftError(
                f"drift calibration: unknown key(s) {unknown}; expected {sorted(known)}"
            )
        out = cls(
            enabled=bool(data.get("enabled", True)),
            margin=float(data.get("margin", DEFAULT_MARGIN)),
            floor_share=float(data.get("floor_share", DEFAULT_FLOOR_SHARE)),
            warm_up_days=float(data.get("warm_up_days", 7.0)),
            step_days=float(data.get("step_days", 0.5)),
            min_pairs=int(data.get("min_pairs", 1)),
        )
        if (
            out.margin <= 0
            or out.floor_share < 0
            or out.step_days <= 0
            or out.warm_up_days < 0
            or out.min_pairs < 1
        ):
            raise DriftError(f"drift calibration: bad settings {data}")
        return out


@dataclass(frozen=True)
class Calibration:
    """Per-column thresholds derived from the history, with what they came from."""

    thresholds: dict[str, float]
    statistics: dict[str, str]
    null_thresholds: dict[str, float]
    span: timedelta
    lag: timedelta
    pairs: int
    #: lag / the lag of the pairs (> 1 when the history only fits shorter pairs)
    scale: float
    #: per column, the largest distance between like windows of the history
    normal: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    #: median rows of the later windows of the pairs
    pair_rows: int = 0

    def widened(self, factor: float) -> Calibration:
        """Return the calibration with every threshold multiplied by `factor`."""
        return replace(
            self,
            thresholds={c: v * factor for c, v in self.thresholds.items()},
            null_thresholds={c: v * factor for c, v in self.null_thresholds.items()},
        )

    def describe(self) -> str:
        """Return one line saying how the thresholds were found."""
        if self.note:
            return f"thresholds not calibrated: {self.note}"
        days = self.span / timedelta(days=1)
        lag = self.lag / timedelta(days=1)
        scaled = (
            f", distances scaled x{self.scale:.2f} from shorter pairs" if self.scale > 1 else ""
        )
        return (
            f"thresholds calibrated on {self.pairs} pair(s) of {days:g}-day windows "
            f"{lag:g} days apart in the history{scaled}"
        )

    def apply(self, config: DriftConfig) -> DriftConfig:
        """Return `config` gating each calibrated column on its distance and threshold."""
        if not self.thresholds:
            return config
        return replace(
            config,
            stattest={**self.statistics, **dict(config.stattest)},
            thresholds={**self.thresholds, **dict(config.thresholds)},
            null_thresholds={**self.null_thresholds, **dict(config.null_thresholds)},
        )


def _distance(kind: str) -> str:
    return "wasserstein" if kind == "numeric" else "jensen_shannon"


def _between(rows: pl.DataFrame, time: str, lo, hi) -> pl.DataFrame:
    return rows.filter((pl.col(time) >= lo) & (pl.col(time) < hi))


def calibrate(
    history: pl.DataFrame,
    columns: Sequence[str],
    *,
    time: str,
    span: timedelta,
    lag: timedelta,
    config: DriftConfig | None = None,
    calibration: CalibrationConfig | None = None,
) -> Calibration:
    """Return thresholds per column from like-window pairs of `history` (module docstring)."""
    config = config or DriftConfig()
    cal = calibration or CalibrationConfig()
    if span <= timedelta(0) or lag < span:
        raise DriftError(f"drift calibration: need 0 < span <= lag, got span {span}, lag {lag}")
    first, last = history.select(pl.col(time).min(), pl.col(time).max().alias("hi")).row(0)
    if first is None:
        return Calibration({}, {}, {}, span, lag, 0, 1.0, note="no history rows to calibrate on")
    end = last + timedelta(microseconds=1)
    begin = first + timedelta(days=cal.warm_up_days)
    day = timedelta(days=1)
    # after the warm-up the history may be too short for pairs of the full span and lag:
    # then pairs of a shorter span at the same lag/span ratio, their distances scaled
    # up by lag / shorter lag (a steady trend grows linearly with the lag)
    ratio = lag / span
    step = timedelta(days=cal.step_days)
    room = (end - begin - (cal.min_pairs - 1) * step) / (1 + ratio)  # min_pairs fit
    short_span = min(span, max(day, timedelta(days=math.floor(room / day))))
    short_lag = short_span * ratio
    scale = lag / short_lag
    ends = []
    for lowest in (begin, first):  # without a pair after the warm-up: pairs from the start
        e = end
        while e - short_lag - short_span >= lowest:
            ends.append(e)
            e -= step
        if ends:
            break
    values: dict[str, list[float]] = {c: [] for c in columns}
    nulls: dict[str, list[float]] = {c: [] for c in columns}
    kinds: dict[str, str] = {}
    fixed = replace(config, stattest={}, thresholds={}, null_thresholds={})
    pairs = 0
    sizes = []
    for e in ends:
        earlier = _between(history, time, e - short_lag - short_span, e - short_lag)
        later = _between(history, time, e - short_span, e)
        if earlier.height == 0 or later.height == 0:
            continue
        report = compare(
            earlier.select(columns),
            later.select(columns),
            list(columns),
            replace(fixed, stattest=dict.fromkeys(columns, "distance")),
        )
        pairs += 1
        sizes.append(later.height)
        for r in report.overall():
            if r.null_share_reference is not None and r.null_share_current is not None:
                change = abs(r.null_share_current - r.null_share_reference)
                if math.isfinite(change):
                    nulls[r.column].append(change)
            if r.value is not None and math.isfinite(r.value):
                values[r.column].append(float(r.value))
                kinds[r.column] = r.kind
    if not pairs:
        return Calibration(
            {}, {}, {}, span, lag, 0, scale,
            note=f"history shorter than lag + span ({lag + span}): fixed thresholds",
        )  # fmt: skip
    thresholds, stats, null_thresholds, normal = {}, {}, {}, {}
    for c in columns:
        if nulls[c]:
            null_thresholds[c] = max(fixed.null_share_threshold, cal.margin * scale * max(nulls[c]))
        if not values[c]:
            continue
        normal[c] = scale * max(values[c])
        floor = cal.floor_share * fixed.threshold_for(c, _distance(kinds[c]))
        thresholds[c] = max(floor, cal.margin * normal[c])
        stats[c] = "distance"
    return Calibration(
        thresholds, stats, null_thresholds, span, lag, pairs, scale, normal,
        pair_rows=int(sorted(sizes)[len(sizes) // 2]),
    )  # fmt: skip


def calibrated_compare(
    history: pl.DataFrame,
    current: pl.DataFrame,
    columns: Sequence[str],
    *,
    time: str,
    config: DriftConfig | None = None,
    calibration: CalibrationConfig | None = None,
    span: timedelta | None = None,
) -> tuple[DriftReport, Calibration | None]:
    """Compare `current` with the history's last `span`, thresholds from like windows.

    `span` defaults to the current's time range (rounded up to whole days).  The
    reference is the history's rows in ``[end - span, end)``; the lag is the time
    from the reference's start to the current's start.  With calibration disabled,
    this is `compare(history, current)` with the fixed thresholds.
    """
    config = config or DriftConfig()
    cal = calibration or CalibrationConfig()
    if not cal.enabled:
        return compare(
            history.select(columns), current.select(columns), list(columns), config
        ), None
    if history.height == 0 or current.height == 0:
        raise DriftError("calibrated drift: the history and the current need rows")
    h_end = history[time].max() + timedelta(microseconds=1)
    c_lo, c_hi = current[time].min(), current[time].max()
    if span is None:
        span = timedelta(days=max(1, math.ceil((c_hi - c_lo) / timedelta(days=1))))
    reference = _between(history, time, h_end - span, h_end)
    # from the reference's start to the current's start, in whole days (at least span)
    lag = max(c_lo - (h_end - span), span)
    lag = timedelta(days=math.ceil(lag / timedelta(days=1) - 1e-9))
    got = calibrate(history, columns, time=time, span=span, lag=lag, config=config,
                    calibration=cal)  # fmt: skip
    if got.pair_rows and current.height < got.pair_rows:
        # a smaller current (a partial day) varies more by chance: distances between
        # samples shrink like 1/sqrt(rows), so the thresholds widen by that much
        got = got.widened(math.sqrt(got.pair_rows / current.height))
    report = compare(reference.select(columns), current.select(columns), list(columns),
                     got.apply(config))  # fmt: skip
    return report, got
