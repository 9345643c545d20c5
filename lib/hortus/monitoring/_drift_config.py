"""Drift settings: the statistics' names, `DriftError` and `DriftConfig` (thresholds, tests)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from hortus.errors import HortusError
from hortus.params import refuse_unknown_keys

PROFILE_FORMAT = "hortus.drift.profile/1"
NUMERIC_STATISTICS = ("ks", "wasserstein", "psi", "jensen_shannon")
CATEGORICAL_STATISTICS = ("chi2", "psi", "jensen_shannon")
P_VALUE_TESTS = ("ks", "chi2")
CORRECTIONS = ("bh", "bonferroni", "none")
NULL_SEGMENT = "(null)"
HISTOGRAM_MAX_CATEGORIES = 20
PARALLEL_MIN_ROWS = 200_000  # columns are processed on threads above this many rows
SCAN_BATCH_COLUMNS = 4  # columns read per pass from a plain Parquet scan
MERGE_BLOCK = 1 << 19  # current points per block in `_merge_stats` (4 MB temporaries)
MAX_LISTED_CATEGORIES = 100  # new/missing categories listed (most frequent first)
_WINDOW_RE = re.compile(r"^(\d+(ns|us|ms|s|m|h|d|w|mo|q|y))+$")
ID_MIN_ROWS = 100  # fewer non-null values than this are never called ID-like by their values
_ID_NAME_RE = re.compile(r"(^|_)(id|uuid|guid)$|[a-z0-9](Id|ID|Uuid|UUID)$")


def default_skip_reason(name: str, ids: Sequence[str] = ()) -> str | None:
    """Return why a column is left out of a default comparison, or None to compare it.

    Ingestion metadata (a name starting with ``_``: ``_source_file``, ``_line``,
    ``_ingested_at``...), declared identifiers or primary-key columns (`ids`) and
    identifier-like names (``id``, ``*_id``, ``uuid``, ``*_uuid``, ``guid``, ``userId``)
    are not distributions worth comparing.  A column named explicitly is always compared.

    Examples
    --------
    >>> default_skip_reason("_source_file"), default_skip_reason("price")
    ('ingestion metadata (name starts with "_")', None)
    >>> default_skip_reason("user_id")
    'identifier by its name (id, *_id, uuid, ...)'
    """
    if name.startswith("_"):
        return 'ingestion metadata (name starts with "_")'
    if name in ids:
        return "declared identifier or primary-key column"
    if _ID_NAME_RE.search(name) or _ID_NAME_RE.search(name.lower()):
        return "identifier by its name (id, *_id, uuid, ...)"
    return None


class DriftError(HortusError):
    """Drift inputs cannot be compared (missing column, changed type, bad config...)."""


# ---------------------------------------------------------------------- config
@dataclass(frozen=True)
class DriftConfig:
    """Thresholds and choices of a drift comparison; a params.yaml section maps onto it.

    Examples
    --------
    >>> DriftConfig.from_dict({"alpha": 0.01, "stattest": {"price": "psi"}}).alpha
    0.01
    """

    #: at or below this many non-null rows (the smaller side) gate with a p-value test
    small_sample_rows: int = 1000
    #: level of the p-value tests, after the multiple-testing correction
    alpha: float = 0.05
    #: "bh" (Benjamini-Hochberg), "bonferroni" or "none"
    correction: str = "bh"
    #: normalised Wasserstein distance at or above which a numeric column drifted
    wasserstein_threshold: float = 0.1
    #: Jensen-Shannon distance (base 2) at or above which a column drifted
    jensen_shannon_threshold: float = 0.1
    #: PSI at or above which a column drifted (when PSI is chosen by `stattest`)
    psi_threshold: float = 0.1
    #: number of reference quantile bins for numeric PSI and Jensen-Shannon
    psi_bins: int = 10
    #: floor of a bin share in PSI (avoids log(0))
    psi_epsilon: float = 1e-4
    #: absolute change of the null share above which `null_drifted` is set
    null_share_threshold: float = 0.1
    #: integer columns with at most this many distinct reference values are categorical
    categorical_max_unique_numeric: int = 5
    #: categorical columns with more distinct reference values are skipped (identifiers)
    max_categories: int = 10_000
    #: a reference frame given to `compare` keeps each numeric column exactly (exact KS,
    #: Wasserstein and PSI) up to this many non-null values; above it, and in a stored
    #: `Profile`, a sketch of `profile_points` points (None: always exact)
    exact_max_rows: int | None = 5_000_000
    #: points of the quantile sketch of a stored profile or a reference above
    #: `exact_max_rows` (None: stored profiles are exact too)
    profile_points: int | None = 10_000
    #: leave ID-like columns and ingestion metadata out unless named in `columns`
    skip_identifiers: bool = True
    #: per-column gating statistic ("ks", "wasserstein", "psi", "jensen_shannon", "chi2";
    #: "distance": wasserstein for numbers, jensen_shannon for categories, at any size)
    stattest: Mapping[str, str] = field(default_factory=dict)
    #: per-column threshold (alpha for p-value tests, a distance otherwise)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    #: per-column null-share change threshold (default `null_share_threshold`)
    null_thresholds: Mapping[str, float] = field(default_factory=dict)
    #: report the KS p-value of numeric columns gated by another statistic (False: only
    #: when KS decides; the calibration's like-window pairs read distances alone)
    p_values: bool = True

    def __post_init__(self) -> None:
        if self.correction not in CORRECTIONS:
            raise DriftError(
                f"drift config: correction must be one of {', '.join(CORRECTIONS)}, "
                f"got {self.correction!r}"
            )
        if not 0.0 < self.alpha < 1.0:
            raise DriftError(f"drift config: alpha must be in (0, 1), got {self.alpha!r}")
        if self.psi_bins < 2:
            raise DriftError(f"drift config: psi_bins must be at least 2, got {self.psi_bins!r}")
        if self.profile_points is not None and self.profile_points < 100:
            raise DriftError(
                "drift config: profile_points must be at least 100 (or null for an exact "
                f"profile), got {self.profile_points!r}"
            )
        if self.exact_max_rows is not None and self.exact_max_rows < 0:
            raise DriftError(
                "drift config: exact_max_rows must be at least 0 (or null: always exact), "
                f"got {self.exact_max_rows!r}"
            )
        allowed = sorted(set(NUMERIC_STATISTICS) | set(CATEGORICAL_STATISTICS))
        for column, stat in self.stattest.items():
            if stat not in allowed and stat not in ("auto", "distance"):
                raise DriftError(
                    f"drift config: stattest for column {column!r} is {stat!r}; "
                    f"expected auto, distance or one of {', '.join(allowed)}"
                )

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any] | None, *, source: str = "drift config"
    ) -> DriftConfig:
        """Build a config from a mapping (e.g. a params.yaml section); refuse unknown keys."""
        data = dict(data or {})
        refuse_unknown_keys(data, (f.name for f in fields(cls)), source=source, error=DriftError)
        for key in ("stattest", "thresholds", "null_thresholds"):
            if key in data and not isinstance(data[key], Mapping):
                raise DriftError(f"{source}: {key} must be a mapping column -> value")
        try:
            return cls(**data)
        except TypeError as exc:
            raise DriftError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain JSON-able values."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["stattest"] = dict(self.stattest)
        out["thresholds"] = dict(self.thresholds)
        out["null_thresholds"] = dict(self.null_thresholds)
        return out

    def threshold_for(self, column: str, statistic: str) -> float:
        """Return the threshold that gates `column` with `statistic`."""
        if column in self.thresholds:
            return float(self.thresholds[column])
        return {
            "ks": self.alpha,
            "chi2": self.alpha,
            "wasserstein": self.wasserstein_threshold,
            "jensen_shannon": self.jensen_shannon_threshold,
            "psi": self.psi_threshold,
        }[statistic]
