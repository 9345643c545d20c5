"""Drift between a reference and a current table, per column, segment and time window.

Shared by the monitors and the promotion gates: features, predictions and the target
are all just columns.  The reference is summarised once into a `Profile` (storable as
JSON), and each new batch is compared against it without rescanning the reference.

Statistics
----------
Numeric columns (integers, floats, decimals):

- ``ks``: two-sample Kolmogorov-Smirnov statistic D with its asymptotic p-value
  (the same formula as ``scipy.stats.ks_2samp(..., method="asymp")``).
- ``wasserstein``: the Wasserstein-1 (earth mover's) distance divided by the
  reference standard deviation (population std, ddof=0), as Evidently's
  "Wasserstein distance (normed)".  A constant reference (std 0) is divided by
  ``|mean|`` instead, or by 1 when the mean is 0 too.
- ``psi``: population stability index over reference *quantile* bins: the inner
  edges are the reference quantiles at 1/B, ..., (B-1)/B (B = ``psi_bins``, linear
  interpolation, duplicate edges dropped) and the two outer bins are open, so values
  beyond the reference range land in the first or last bin.  Shares are floored at
  ``psi_epsilon``.  Caveat (measured): quantile bins nearly miss a thin far tail, e.g.
  10% of the current moved far above the reference maximum gives PSI of about 0.07;
  ``out_of_range_share`` (the current share outside [reference min, max]) and the
  Wasserstein distance show such tails.
- ``jensen_shannon``: Jensen-Shannon *distance* (square root of the divergence,
  base 2, in [0, 1]) between the shares of the same quantile bins.

All sort-based statistics come from one sort per column and side: both sorted
samples are merged once (by `searchsorted`), and KS, Wasserstein and the bin counts
are read off the merge.

Categorical columns (strings, categoricals, enums, booleans, and integer columns with
at most ``categorical_max_unique_numeric`` distinct reference values such as a 0/1
target or a 1-5 rating):

- ``chi2``: chi-square test of homogeneity on the 2 x K contingency table
  (reference counts and current counts over the union of categories, K-1 degrees of
  freedom, no continuity correction), not current counts against reference shares
  taken as exact (which overstates the evidence and gives false positives).
- ``psi`` and ``jensen_shannon`` over the category shares.
- new categories (in the current only) and missing ones (in the reference only) are
  listed.

Nulls (and NaN / +-inf in numeric columns) are left out of the distributions and
reported as a null-share change per column; a change larger than
``null_share_threshold`` sets ``null_drifted``.

Gating
------
The statistic that decides ``drifted`` is chosen per column (``statistic="auto"``),
like Evidently: when the smaller of the two non-null sample sizes is at most
``small_sample_rows`` (default 1,000) a p-value test (``ks`` / ``chi2``, drifted when
the corrected p-value is below ``alpha``); above it a distance (normalised
``wasserstein`` / ``jensen_shannon``, drifted when the value is at least its
threshold), because with large samples p-value tests flag chance differences.
``DriftConfig.stattest`` overrides the choice per column, ``DriftConfig.thresholds``
the threshold.

Multiple testing: the p-values of every p-value-gated result of one `compare` call
(all columns x segments x windows) form one family and are adjusted by
Benjamini-Hochberg (``correction="bh"``, controls the false discovery rate at
``alpha``; the default), Bonferroni (``"bonferroni"``, family-wise error rate) or not
at all (``"none"``).  Distance-gated results are not adjusted.

Examples
--------
>>> import polars as pl
>>> ref = pl.DataFrame({"price": [float(i) for i in range(500)]})
>>> cur = ref.with_columns(pl.col("price") + 100.0)
>>> report = compare(ref, cur)
>>> report.drifted, report.results[0].statistic
(True, 'ks')
>>> stored = Profile.from_dict(Profile.from_frame(ref).to_dict())
>>> compare(stored, cur).results[0].value == report.results[0].value
True
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

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
    #: numeric reference kept as at most this many weighted quantile points (None: exact)
    profile_points: int | None = 10_000
    #: per-column gating statistic ("ks", "wasserstein", "psi", "jensen_shannon", "chi2")
    stattest: Mapping[str, str] = field(default_factory=dict)
    #: per-column threshold (alpha for p-value tests, a distance otherwise)
    thresholds: Mapping[str, float] = field(default_factory=dict)

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
        allowed = sorted(set(NUMERIC_STATISTICS) | set(CATEGORICAL_STATISTICS))
        for column, stat in self.stattest.items():
            if stat not in allowed and stat != "auto":
                raise DriftError(
                    f"drift config: stattest for column {column!r} is {stat!r}; "
                    f"expected auto or one of {', '.join(allowed)}"
                )

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any] | None, *, source: str = "drift config"
    ) -> DriftConfig:
        """Build a config from a mapping (e.g. a params.yaml section); refuse unknown keys."""
        data = dict(data or {})
        refuse_unknown_keys(data, (f.name for f in fields(cls)), source=source, error=DriftError)
        for key in ("stattest", "thresholds"):
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


# --------------------------------------------------------------------- profile
@dataclass(frozen=True)
class ColumnProfile:
    """What the reference holds about one column (numeric or categorical, or why skipped).

    Numeric: the sorted distinct support points `values` with integer `weights` (exact
    when `exact`, else a quantile sketch: the sorted sample cut into
    `profile_points` equal-count chunks, each kept as its median with the chunk size as
    weight), the quantile bin edges and counts, and moments.  Categorical: category
    labels (as strings) and counts.
    """

    name: str
    kind: str  # "numeric" | "categorical"
    dtype: str
    count: int  # non-null (and finite) values
    nulls: int
    skipped: str | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    values: np.ndarray | None = None
    weights: np.ndarray | None = None
    exact: bool = True
    bin_edges: np.ndarray | None = None
    bin_counts: np.ndarray | None = None
    sketch_ks_error: float = 0.0
    sketch_wasserstein_error: float = 0.0
    categories: tuple[str, ...] | None = None
    counts: np.ndarray | None = None
    integer_categories: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the profile as JSON-able values (floats round-trip exactly)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = v.tolist()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnProfile:
        """Rebuild a column profile from `to_dict` output."""
        d = dict(data)
        for key in ("values", "bin_edges"):
            if d.get(key) is not None:
                d[key] = np.asarray(d[key], dtype=np.float64)
        for key in ("weights", "bin_counts", "counts"):
            if d.get(key) is not None:
                d[key] = np.asarray(d[key], dtype=np.int64)
        if d.get("categories") is not None:
            d["categories"] = tuple(d["categories"])
        return cls(**d)


@dataclass(frozen=True)
class Profile:
    """A reference summarised once: per column, and per segment value if `segment` is set.

    Examples
    --------
    >>> import polars as pl
    >>> p = Profile.from_frame(pl.DataFrame({"x": [1.0, 2.0, 3.0], "s": ["a", "b", "a"]}))
    >>> p.columns["x"].kind, p.columns["s"].kind
    ('numeric', 'categorical')
    """

    columns: dict[str, ColumnProfile]
    rows: int
    settings: dict[str, Any]
    segment: str | None = None
    segments: dict[str, Profile] = field(default_factory=dict)
    source: str | None = None

    @classmethod
    def from_frame(
        cls,
        frame: pl.DataFrame | pl.LazyFrame,
        columns: Sequence[str] | None = None,
        config: DriftConfig | None = None,
        *,
        segment: str | None = None,
        exclude: Sequence[str] = (),
        source: str | None = None,
    ) -> Profile:
        """Profile a reference frame (all columns but `segment`/`exclude` by default)."""
        config = config or DriftConfig()
        name = f"reference {source}" if source else "reference"
        schema = _schema(frame, name)
        if segment is not None and segment not in schema:
            raise DriftError(f"segment column {segment!r} is not in the {name}")
        if segment is not None and columns is not None and segment in columns:
            raise DriftError(f"the segment column {segment!r} cannot also be a profiled column")
        cols = _pick_columns(schema, columns, name, drop=[segment, *exclude])
        kinds: dict[str, str] = {}
        overall: dict[str, ColumnProfile] = {}
        for batch in [cols] if segment is not None else _column_batches(frame, cols):
            df = _collect(frame, [*batch, *([segment] if segment else [])], name)
            if df.height == 0:
                raise DriftError(f"the {name} has no rows; nothing to profile")
            overall.update(_profile_columns(df, batch, config, kinds))
        segments: dict[str, Profile] = {}
        if segment is not None:
            for key, part in _partition(df, segment).items():
                segments[key] = cls(
                    columns=_profile_columns(part, cols, config, kinds),
                    rows=part.height,
                    settings=_settings(config),
                    source=f"{source or 'reference'} [{segment}={key}]",
                )
        return cls(
            columns=overall,
            rows=df.height,
            settings=_settings(config),
            segment=segment,
            segments=segments,
            source=source,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the profile as JSON-able values."""
        return {
            "format": PROFILE_FORMAT,
            "rows": self.rows,
            "source": self.source,
            "settings": dict(self.settings),
            "segment": self.segment,
            "columns": {k: c.to_dict() for k, c in self.columns.items()},
            "segments": {k: p.to_dict() for k, p in self.segments.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "profile") -> Profile:
        """Rebuild a profile from `to_dict` output; refuse other formats."""
        if not isinstance(data, Mapping) or data.get("format") != PROFILE_FORMAT:
            got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise DriftError(
                f"{source} is not a drift profile (format {got!r}, expected {PROFILE_FORMAT!r})"
            )
        return cls(
            columns={k: ColumnProfile.from_dict(c) for k, c in data["columns"].items()},
            rows=int(data["rows"]),
            settings=dict(data.get("settings") or {}),
            segment=data.get("segment"),
            segments={k: cls.from_dict(p, source=source) for k, p in data["segments"].items()},
            source=data.get("source"),
        )

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON to `path`; return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), allow_nan=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        """Read a profile written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise DriftError(f"profile file {path} not found")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DriftError(f"profile file {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data, source=f"profile file {path}")


def _settings(config: DriftConfig) -> dict[str, Any]:
    return {
        "psi_bins": config.psi_bins,
        "profile_points": config.profile_points,
        "categorical_max_unique_numeric": config.categorical_max_unique_numeric,
        "max_categories": config.max_categories,
    }


def _pick_columns(
    schema: Mapping[str, pl.DataType], columns: Sequence[str] | None, name: str, drop: Sequence
) -> list[str]:
    if columns is None:
        return [c for c in schema if c not in drop]
    missing = [c for c in columns if c not in schema]
    if missing:
        raise DriftError(
            f"column(s) {', '.join(missing)} not in the {name} (it has: "
            f"{', '.join(list(schema)[:30])}{' ...' if len(schema) > 30 else ''})"
        )
    return list(dict.fromkeys(columns))


def _schema(frame: pl.DataFrame | pl.LazyFrame, name: str) -> pl.Schema:
    if isinstance(frame, pl.DataFrame):
        return frame.schema
    try:
        return frame.collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise DriftError(f"cannot read the {name}: {exc}") from None


def _collect(frame: pl.DataFrame | pl.LazyFrame, cols: list[str], name: str) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame.select(cols)
    try:
        return frame.select(cols).collect()
    except pl.exceptions.PolarsError as exc:
        raise DriftError(f"cannot read the {name}: {exc}") from None


def _column_batches(frame: pl.DataFrame | pl.LazyFrame, cols: list[str]) -> list[list[str]]:
    """Split `cols` into batches read one after another when `frame` is a plain Parquet scan.

    Parquet is columnar, so reading a few columns per pass decodes the same bytes as
    one pass over all of them, but only those columns are in memory at a time and the
    allocator reuses their pages.  Measured on 5M rows x 30 columns (2 cores): peak RSS
    of profiling the reference 1.9 GB -> 0.9 GB at the same CPU time, and half the
    system time to read the current (fewer page faults).  In-memory frames, CSV and
    plans with other steps (filters, masks) are read in one pass.
    """
    if not isinstance(frame, pl.LazyFrame) or len(cols) <= SCAN_BATCH_COLUMNS:
        return [cols]
    try:
        plan = frame.explain()
    except pl.exceptions.PolarsError:
        return [cols]
    if not plan.startswith("Parquet SCAN"):
        return [cols]
    return [cols[i : i + SCAN_BATCH_COLUMNS] for i in range(0, len(cols), SCAN_BATCH_COLUMNS)]


def _partition(df: pl.DataFrame, key: str) -> dict[str, pl.DataFrame]:
    """Split by a column's values, cast to strings (nulls as NULL_SEGMENT), sorted."""
    tagged = df.with_columns(
        pl.col(key).cast(pl.String).fill_null(NULL_SEGMENT).alias("__hortus_key")
    )
    parts = tagged.partition_by("__hortus_key", as_dict=True, maintain_order=True)
    return {k[0]: parts[k].drop("__hortus_key") for k in sorted(parts)}


def _kind_of(dtype: pl.DataType) -> str | None:
    if dtype == pl.Boolean or dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "categorical"
    if dtype.is_numeric():
        return "numeric"
    return None


def _skip_reason(dtype: pl.DataType) -> str:
    if dtype == pl.Null:
        return "every value is null (column type Null)"
    if dtype.is_temporal():
        return f"{dtype} column: compare it through --time/window, not as a distribution"
    return f"unsupported column type {dtype}"


def _numeric_expr(col: str) -> pl.Expr:
    """Cast to Float64 (NaN and +-inf are dropped with the nulls by `_sorted_finite`)."""
    return pl.col(col).cast(pl.Float64).alias(col)


def _category_expr(col: str, dtype: pl.DataType, integer_categories: bool) -> pl.Expr:
    """Cast to the category labels: strings; integral numbers without a decimal point."""
    if integer_categories and dtype.is_numeric():
        x = pl.col(col).cast(pl.Float64)
        as_int = x.cast(pl.Int64, strict=False).cast(pl.String)
        return pl.when(x == x.round(0)).then(as_int).otherwise(x.cast(pl.String)).alias(col)
    return pl.col(col).cast(pl.String).alias(col)


def _sorted_finite(s: pl.Series) -> np.ndarray:
    """Return the finite values of a numeric series, sorted (nulls, NaN and +-inf left out).

    One copy: nulls become NaN, which sorts last, and the infinities sort to the ends,
    so the finite values are one slice of the sorted array.
    """
    a = np.sort(s.cast(pl.Float64).to_numpy())
    lo = int(np.searchsorted(a, -np.inf, side="right"))
    hi = int(np.searchsorted(a, np.inf, side="left"))
    return a[lo:hi]


def _parallel_map(fn: Callable[..., Any], items: Sequence[Any], rows: int) -> list[Any]:
    """Map `fn` over items in order, on threads when the data is large.

    The per-column work is numpy sorts, searches and arithmetic on large arrays, which
    release the GIL; results do not depend on the number of threads.
    """
    workers = min(os.cpu_count() or 1, len(items))
    if workers < 2 or rows < PARALLEL_MIN_ROWS:
        return [fn(*item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda item: fn(*item), items))


def _profile_columns(
    df: pl.DataFrame, cols: list[str], config: DriftConfig, kinds: dict[str, str]
) -> dict[str, ColumnProfile]:
    """Profile columns; `kinds` fixes each column's kind on the first (overall) call."""
    done = _parallel_map(
        _profile_column, [(df, col, config, kinds.get(col)) for col in cols], df.height
    )
    for col, prof in zip(cols, done, strict=True):
        kinds.setdefault(col, prof.kind)
    return dict(zip(cols, done, strict=True))


def _profile_column(
    df: pl.DataFrame, col: str, config: DriftConfig, fixed_kind: str | None
) -> ColumnProfile:
    """Profile one column; `fixed_kind` is the kind decided on the overall reference."""
    dtype = df.schema[col]
    kind = fixed_kind or _kind_of(dtype) or "skipped"
    if kind == "skipped":
        nulls = df[col].null_count()
        return ColumnProfile(
            col, "skipped", str(dtype), df.height - nulls, nulls, _skip_reason(dtype)
        )
    integer_categories = kind == "categorical" and dtype.is_integer()
    if kind == "numeric":
        s = _sorted_finite(df[col])
        distinct = 1 + int(np.count_nonzero(s[1:] != s[:-1])) if s.size else 0
        as_categories = 0 < distinct <= config.categorical_max_unique_numeric
        if fixed_kind is not None or not dtype.is_integer() or not as_categories:
            return _numeric_profile(col, str(dtype), s, df.height - s.size, config)
        integer_categories = True
    series = df.select(_category_expr(col, dtype, integer_categories)).to_series()
    return _categorical_profile(col, dtype, series, config, integer_categories)


def _sorted_quantiles(s: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quantiles of a sorted array by linear interpolation (numpy's default method)."""
    pos = q * (s.size - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, s.size - 1)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])


def _distinct(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the distinct values of a sorted array and their counts."""
    if s.size == 0:
        return s, np.zeros(0, dtype=np.int64)
    change = s[1:] != s[:-1]
    if change.all():
        return s, np.ones(s.size, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], change)))
    return s[starts], np.diff(np.append(starts, s.size))


def _numeric_profile(
    name: str, dtype: str, s: np.ndarray, nulls: int, config: DriftConfig
) -> ColumnProfile:
    if s.size == 0:
        return ColumnProfile(
            name, "numeric", dtype, 0, nulls, "no non-null values in the reference"
        )
    n = s.size
    edges = np.unique(_sorted_quantiles(s, np.arange(1, config.psi_bins) / config.psi_bins))
    bin_counts = _bin_counts(s, edges)
    points = config.profile_points
    ks_err = w_err = 0.0
    if points is None or n <= points:
        values, weights = _distinct(s)
        exact = True
    else:
        bounds = np.linspace(0, n, points + 1).round().astype(np.int64)
        chunk = np.diff(bounds)
        mids = (bounds[:-1] + bounds[1:] - 1) // 2
        reps = s[mids]
        values, starts = np.unique(reps, return_index=True)
        weights = np.add.reduceat(chunk, starts)
        exact = False
        ks_err = float(weights.max() / n)
    mean, std = float(s.mean()), float(s.std())
    if not exact:  # sum of |value - its chunk's median|, from sums below/above each median
        sums = np.add.reduceat(s, np.column_stack((bounds[:-1], mids)).ravel())
        below = np.where(mids > bounds[:-1], sums[0::2], 0.0)  # reduceat: empty -> s[a]
        lo, hi = mids - bounds[:-1], bounds[1:] - mids
        w_abs = np.sum(reps * lo - below) + np.sum(sums[1::2] - reps * hi)
        w_err = float(max(w_abs, 0.0) / n / _scale(std, mean))
    return ColumnProfile(
        name=name,
        kind="numeric",
        dtype=dtype,
        count=n,
        nulls=nulls,
        mean=mean,
        std=std,
        min=float(s[0]),
        max=float(s[-1]),
        values=values,
        weights=weights.astype(np.int64),
        exact=exact,
        bin_edges=edges,
        bin_counts=bin_counts,
        sketch_ks_error=ks_err,
        sketch_wasserstein_error=w_err,
    )


def _categorical_profile(
    name: str, dtype: pl.DataType, s: pl.Series, config: DriftConfig, integer_categories: bool
) -> ColumnProfile:
    nulls = s.null_count()
    vc = _value_counts(s)
    count = int(vc["n"].sum()) if vc.height else 0
    base = {
        "name": name,
        "kind": "categorical",
        "dtype": str(dtype),
        "count": count,
        "nulls": nulls,
    }
    if count == 0:
        return ColumnProfile(**base, skipped="no non-null values in the reference")
    if vc.height > config.max_categories:
        return ColumnProfile(
            **base,
            skipped=f"{vc.height:,} distinct values in the reference > max_categories="
            f"{config.max_categories:,}: looks like an identifier, not a category",
        )
    return ColumnProfile(
        **base,
        categories=tuple(vc["category"].to_list()),
        counts=vc["n"].to_numpy().astype(np.int64),
        integer_categories=integer_categories,
    )


def _value_counts(s: pl.Series) -> pl.DataFrame:
    """Return category -> non-null count, sorted by category (lazy: measured 2x faster)."""
    return (
        s.rename("category")
        .to_frame()
        .lazy()
        .drop_nulls()
        .group_by("category")
        .agg(pl.len().cast(pl.Int64).alias("n"))
        .sort("category")
        .collect()
    )


def _bin_counts(s: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of a sorted sample in (-inf, e1], (e1, e2], ..., (e_last, inf)."""
    idx = np.searchsorted(s, edges, side="right")
    return np.diff(np.concatenate(([0], idx, [s.size]))).astype(np.int64)


def _scale(std: float, mean: float) -> float:
    if std > 0:
        return float(std)
    return abs(float(mean)) or 1.0


# ----------------------------------------------------------------- statistics
def _psi(pr: np.ndarray, pc: np.ndarray, eps: float) -> float:
    a = np.maximum(pr, eps)
    b = np.maximum(pc, eps)
    return float(np.sum((b - a) * np.log(b / a)))


def _js_distance(pr: np.ndarray, pc: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (as scipy.spatial.distance.jensenshannon)."""
    m = (pr + pc) / 2.0

    def kl(p: np.ndarray) -> float:
        nz = p > 0
        return float(np.sum(p[nz] * np.log2(p[nz] / m[nz])))

    return math.sqrt(max((kl(pr) + kl(pc)) / 2.0, 0.0))


def _ks_pvalue(d: float, n: int, m: int) -> float:
    """Return the asymptotic two-sided KS p-value for sample sizes n and m.

    Up to an effective size n*m/(n+m) of 10,000 this is scipy's ``method="asymp"``
    (the one-sample KS distribution at the rounded effective size); above it, the
    limiting Kolmogorov distribution at sqrt(size) * D (relative difference below 1%
    there, and scipy's exact-n routine takes about a second per call at 500,000).
    """
    en = n * m / (n + m)
    if en <= 10_000:
        from scipy.stats import kstwo  # scipy.stats takes about a second to import

        p = kstwo.sf(d, max(1, round(en)))
    else:
        p = _kolmogorov_sf(math.sqrt(en) * d)
    return float(min(max(p, 0.0), 1.0))


def _kolmogorov_sf(x: float) -> float:
    """Return P(K > x) of the Kolmogorov distribution, as ``scipy.special.kolmogorov``.

    Below x = 0.82 from the theta series of the CDF, sqrt(2 pi)/x * sum_k
    exp(-(2k-1)^2 pi^2 / (8 x^2)); above it from the alternating series 2 * sum_k
    (-1)^(k-1) exp(-2 k^2 x^2).  Both converge in a few terms to double precision
    (largest relative difference from scipy on a 10^5-point grid over [0, 6]: 1e-14),
    without importing scipy.special (about half a second on a busy 2-core machine).

    Examples
    --------
    >>> round(_kolmogorov_sf(1.3581), 4)
    0.05
    """
    if x <= 0.04:  # the CDF is below 1e-300 here
        return 1.0
    if x < 0.82:
        w = -(math.pi**2) / (8.0 * x * x)
        cdf, k = 0.0, 1
        while True:
            term = math.exp(w * (2 * k - 1) ** 2)
            cdf += term
            if term <= 1e-17 * cdf:
                break
            k += 1
        return 1.0 - math.sqrt(2.0 * math.pi) / x * cdf
    total, k, sign = 0.0, 1, 1.0
    while True:
        term = math.exp(-2.0 * k * k * x * x)
        total += sign * term
        if term <= 1e-17 * abs(total) or term == 0.0:
            break
        k, sign = k + 1, -sign
    return min(max(2.0 * total, 0.0), 1.0)


def _chi2_sf(stat: float, df: int) -> float:
    """Return P(X > stat) for a chi-square variable with `df` degrees of freedom.

    The regularised upper incomplete gamma function Q(df/2, stat/2), as
    ``scipy.stats.chi2.sf``: by its power series (Q = 1 - P) when stat/2 < df/2 + 1,
    else by its continued fraction (modified Lentz), so small p-values keep their
    relative precision.  Largest relative difference from scipy measured on 20,000
    random points each: 1e-13 for df up to 100, 1e-12 up to 1,000 and 2e-11 up to
    10,000 (the exponent of the prefactor loses digits as df grows); no scipy import.

    Examples
    --------
    >>> round(_chi2_sf(3.841458820694124, 1), 6)
    0.05
    """
    a, x = df / 2.0, stat / 2.0
    if x <= 0.0:
        return 1.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(100_000):
            ap += 1.0
            term *= x / ap
            total += term
            if term < total * 1e-17:
                break
        return min(max(1.0 - total * math.exp(log_prefactor), 0.0), 1.0)
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return min(max(math.exp(log_prefactor) * h, 0.0), 1.0)


def _merge_stats(
    xr: np.ndarray, cr: np.ndarray, xc: np.ndarray, cc: np.ndarray | None
) -> tuple[float, float]:
    """Return (KS D, Wasserstein-1) of two weighted samples with sorted distinct support.

    `cr` and `cc` are the cumulative counts of `xr` and `xc` with a leading 0 (`cc`
    None: every current value occurs once).  The ECDF gap is read at every support
    point of both samples without merging them (no second sort, no scatter): each
    current point sees the reference ECDF at the count of reference points at or below
    it (a `bincount` + `cumsum` of where the reference points fall among the current
    ones), and each reference point sees the current ECDF via one `searchsorted`.  KS
    is the largest gap; Wasserstein the sum of each gap times the length of its step,
    which ends at the next point of either sample (at equal values the reference
    point's step has length 0).  The current points are taken in blocks of
    `MERGE_BLOCK`, so the temporaries stay small and reused (no fresh pages per column).
    """
    n = xc.size
    nc = n if cc is None else int(cc[-1])
    fr = cr / cr[-1]  # reference ECDF: fr[i] after i support points
    xr_next = np.append(xr, np.inf)
    below = np.searchsorted(xc, xr, side="left")  # current points < each reference point
    inside = below < n
    equal = np.zeros(xr.size, dtype=np.int64)
    equal[inside] = xc[below[inside]] == xr[inside]  # xc is distinct: at most one
    upto = below + equal
    gap_r = fr[1:] - (upto if cc is None else cc[upto]) / nc
    ks = float(np.abs(gap_r).max())
    # a reference point's step ends at the next reference or current point (or never:
    # only the largest point of all, whose gap is exactly 0)
    next_c = np.where(inside, xc[np.minimum(below, n - 1)], np.inf)
    step_r = np.minimum(xr_next[1:], next_c) - xr
    finite = np.isfinite(step_r)
    w1 = float(np.sum(np.abs(gap_r[finite]) * step_r[finite]))
    for j0 in range(0, n, MERGE_BLOCK):  # blocks of current points
        j1 = min(j0 + MERGE_BLOCK, n)
        lo, hi = np.searchsorted(below, [j0, j1], side="left")
        ir = np.cumsum(np.bincount(below[lo:hi] - j0, minlength=j1 - j0)[: j1 - j0])
        ir += lo  # reference points <= each current point of the block
        gap = fr[ir]
        gap -= (np.arange(j0 + 1, j1 + 1) if cc is None else cc[j0 + 1 : j1 + 1]) / nc
        ks = max(ks, float(gap.max()), float(-gap.min()))
        step = xr_next[ir]  # next reference point above each current point
        del ir
        m = min(j1, n - 1) - j0  # points whose next current point exists
        if m < j1 - j0 and math.isfinite(step[-1]):  # the largest current point
            w1 += float(abs(gap[-1]) * (step[-1] - xc[-1]))
        step = step[:m]
        np.minimum(step, xc[j0 + 1 : j0 + 1 + m], out=step)
        step -= xc[j0 : j0 + m]
        area = np.abs(gap[:m])
        area *= step
        w1 += float(area.sum())
    return ks, w1


def _support(s: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the distinct values of a sorted array and their cumulative counts (from 0).

    The counts are None when every value is distinct (continuous data), sparing an
    array as long as the sample.
    """
    change = s[1:] != s[:-1]
    if change.all():
        return s, None
    starts = np.flatnonzero(np.concatenate(([True], change)))
    return s[starts], np.append(starts, s.size)


def _numeric_compare(p: ColumnProfile, c: np.ndarray, config: DriftConfig) -> dict[str, Any]:
    """Compare a numeric reference profile with a sorted current sample."""
    xc, cc = _support(c)
    ks, w1 = _merge_stats(p.values, np.concatenate(([0], np.cumsum(p.weights))), xc, cc)
    pr = p.bin_counts / p.count
    pc = _bin_counts(c, p.bin_edges) / c.size
    outside = np.searchsorted(c, p.min, side="left") + c.size - np.searchsorted(c, p.max, "right")
    return {
        "stats": {
            "ks": ks,
            "ks_p_value": _ks_pvalue(ks, p.count, c.size),
            "wasserstein": w1 / _scale(p.std, p.mean),
            "psi": _psi(pr, pc, config.psi_epsilon),
            "jensen_shannon": _js_distance(pr, pc),
            "out_of_range_share": float(outside / c.size),
            "mean_reference": p.mean,
            "mean_current": float(c.mean()),
            "std_reference": p.std,
            "std_current": float(c.std()),
        },
        "histogram": {
            "labels": _bin_labels(p.bin_edges),
            "reference": pr.tolist(),
            "current": pc.tolist(),
        },
        "new": (),
        "missing": (),
    }


def _bin_labels(edges: np.ndarray) -> list[str]:
    e = [f"{v:.4g}" for v in edges]
    if not e:
        return ["all"]
    return [
        f"<= {e[0]}",
        *(f"({a}, {b}]" for a, b in zip(e[:-1], e[1:], strict=True)),
        f"> {e[-1]}",
    ]


def _categorical_compare(
    p: ColumnProfile, cur: pl.DataFrame, config: DriftConfig
) -> dict[str, Any]:
    """Compare a categorical reference profile with current category counts."""
    ref = pl.DataFrame(
        {"category": list(p.categories), "n_ref": p.counts},
        schema={"category": pl.String, "n_ref": pl.Int64},
    )
    table = (
        ref.join(cur.rename({"n": "n_cur"}), on="category", how="full", coalesce=True)
        .with_columns(pl.col("n_ref", "n_cur").fill_null(0))
        .sort("category")
    )
    o_ref = table["n_ref"].to_numpy().astype(np.float64)
    o_cur = table["n_cur"].to_numpy().astype(np.float64)
    nr, nc = o_ref.sum(), o_cur.sum()
    pr, pc = o_ref / nr, o_cur / nc
    k = table.height
    if k < 2:
        chi2, chi2_p = 0.0, 1.0
    else:
        col = o_ref + o_cur
        total = nr + nc
        e_ref, e_cur = nr * col / total, nc * col / total
        chi2 = float(np.sum((o_ref - e_ref) ** 2 / e_ref) + np.sum((o_cur - e_cur) ** 2 / e_cur))
        chi2_p = _chi2_sf(chi2, k - 1)
    new = table.filter(pl.col("n_ref") == 0).sort("n_cur", "category", descending=[True, False])
    missing = table.filter(pl.col("n_cur") == 0).sort("n_ref", "category", descending=[True, False])
    top = np.argsort(-(pr + pc), kind="stable")[:HISTOGRAM_MAX_CATEGORIES]
    labels = [table["category"][int(i)] for i in top]
    hist_r, hist_c = pr[top].tolist(), pc[top].tolist()
    if k > HISTOGRAM_MAX_CATEGORIES:
        labels.append(f"({k - HISTOGRAM_MAX_CATEGORIES} others)")
        hist_r.append(float(1.0 - sum(hist_r)))
        hist_c.append(float(1.0 - sum(hist_c)))
    return {
        "stats": {
            "chi2": chi2,
            "chi2_p_value": chi2_p,
            "psi": _psi(pr, pc, config.psi_epsilon),
            "jensen_shannon": _js_distance(pr, pc),
            "new_category_share": float(new["n_cur"].sum() / nc),
            "new_category_count": float(new.height),
            "missing_category_count": float(missing.height),
        },
        "histogram": {"labels": labels, "reference": hist_r, "current": hist_c},
        "new": tuple(new["category"].head(MAX_LISTED_CATEGORIES).to_list()),
        "missing": tuple(missing["category"].head(MAX_LISTED_CATEGORIES).to_list()),
    }


# ---------------------------------------------------------------------- report
@dataclass(frozen=True)
class ColumnDrift:
    """The drift of one column, overall or within one segment and/or time window."""

    column: str
    kind: str
    segment: str | None = None
    window_start: date | datetime | None = None
    statistic: str | None = None
    value: float | None = None
    p_value: float | None = None
    p_value_adjusted: float | None = None
    threshold: float | None = None
    drifted: bool = False
    n_reference: int = 0
    n_current: int = 0
    null_share_reference: float | None = None
    null_share_current: float | None = None
    null_drifted: bool = False
    stats: dict[str, float] = field(default_factory=dict)
    new_categories: tuple[str, ...] = ()
    missing_categories: tuple[str, ...] = ()
    histogram: dict[str, list] | None = None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-able values (non-finite numbers become null)."""
        return {
            "column": self.column,
            "kind": self.kind,
            "segment": self.segment,
            "window_start": None if self.window_start is None else self.window_start.isoformat(),
            "statistic": self.statistic,
            "value": _finite(self.value),
            "p_value": _finite(self.p_value),
            "p_value_adjusted": _finite(self.p_value_adjusted),
            "threshold": self.threshold,
            "drifted": self.drifted,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "null_share_reference": _finite(self.null_share_reference),
            "null_share_current": _finite(self.null_share_current),
            "null_drifted": self.null_drifted,
            "stats": {k: _finite(v) for k, v in self.stats.items()},
            "new_categories": list(self.new_categories),
            "missing_categories": list(self.missing_categories),
            "histogram": self.histogram,
            "skipped": self.skipped,
        }


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


FRAME_STATS = (
    "ks",
    "ks_p_value",
    "wasserstein",
    "psi",
    "jensen_shannon",
    "chi2",
    "chi2_p_value",
    "out_of_range_share",
    "new_category_share",
)


@dataclass(frozen=True)
class DriftReport:
    """The results of one `compare`: one `ColumnDrift` per column[/segment/window]."""

    results: tuple[ColumnDrift, ...]
    config: DriftConfig
    reference_rows: int
    current_rows: int
    reference_name: str = "reference"
    current_name: str = "current"
    segment: str | None = None
    time: str | None = None
    window: str | None = None

    @property
    def drifted(self) -> bool:
        """Return whether any column drifted (distribution or null share)."""
        return any(r.drifted or r.null_drifted for r in self.results)

    @property
    def drifted_columns(self) -> list[str]:
        """Return the columns that drifted anywhere, in column order."""
        return list(dict.fromkeys(r.column for r in self.results if r.drifted or r.null_drifted))

    def overall(self) -> list[ColumnDrift]:
        """Return the results over the whole current table (no segment, no window)."""
        return [r for r in self.results if r.segment is None and r.window_start is None]

    def to_frame(self) -> pl.DataFrame:
        """Return one row per column[/segment/window] with the decision and every statistic."""
        rows = []
        for r in self.results:
            row = {
                "column": r.column,
                "segment": r.segment,
                "window_start": r.window_start,
                "kind": r.kind,
                "statistic": r.statistic,
                "value": r.value,
                "p_value": r.p_value,
                "p_value_adjusted": r.p_value_adjusted,
                "threshold": r.threshold,
                "drifted": r.drifted,
                "null_share_reference": r.null_share_reference,
                "null_share_current": r.null_share_current,
                "null_drifted": r.null_drifted,
                "n_reference": r.n_reference,
                "n_current": r.n_current,
            }
            row.update({k: r.stats.get(k) for k in FRAME_STATS})
            row["new_categories"] = list(r.new_categories)
            row["missing_categories"] = list(r.missing_categories)
            row["skipped"] = r.skipped
            rows.append(row)
        schema: dict[str, Any] = {
            "column": pl.String,
            "segment": pl.String,
            "kind": pl.String,
            "statistic": pl.String,
            "value": pl.Float64,
            "p_value": pl.Float64,
            "p_value_adjusted": pl.Float64,
            "threshold": pl.Float64,
            "drifted": pl.Boolean,
            "null_share_reference": pl.Float64,
            "null_share_current": pl.Float64,
            "null_drifted": pl.Boolean,
            "n_reference": pl.Int64,
            "n_current": pl.Int64,
            **dict.fromkeys(FRAME_STATS, pl.Float64),
            "new_categories": pl.List(pl.String),
            "missing_categories": pl.List(pl.String),
            "skipped": pl.String,
        }
        return (
            pl.DataFrame(rows, schema_overrides=schema, strict=False)
            if rows
            else pl.DataFrame(schema={**schema, "window_start": pl.Datetime("us")})
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able values: settings, verdict and each result."""
        return {
            "reference": self.reference_name,
            "current": self.current_name,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "segment": self.segment,
            "time": self.time,
            "window": self.window,
            "drifted": self.drifted,
            "drifted_columns": self.drifted_columns,
            "config": self.config.to_dict(),
            "columns": [r.to_dict() for r in self.results],
        }


# --------------------------------------------------------------------- compare
def compare(
    reference: pl.DataFrame | pl.LazyFrame | Profile,
    current: pl.DataFrame | pl.LazyFrame,
    columns: Sequence[str] | None = None,
    config: DriftConfig | None = None,
    *,
    segment: str | None = None,
    time: str | None = None,
    window: str | None = None,
    reference_name: str | None = None,
    current_name: str = "current",
) -> DriftReport:
    """Compare a current table with a reference (a frame or a stored `Profile`).

    Results come overall, then per `segment` value (the reference is split the same
    way), then per time `window` of the current (`time` column truncated to e.g.
    "1d"/"7d", each window against the whole reference), and per window x segment
    when both are given.  `columns` defaults to every reference column except the
    segment and time columns.

    Examples
    --------
    >>> import polars as pl
    >>> ref = pl.DataFrame({"region": ["north", "south"] * 300})
    >>> cur = pl.DataFrame({"region": ["north", "south", "east"] * 200})
    >>> r = compare(ref, cur).results[0]
    >>> r.drifted, r.statistic, r.new_categories
    (True, 'chi2', ('east',))
    """
    config = config or DriftConfig()
    if columns is not None and {segment, time} & set(columns):
        raise DriftError(
            f"the segment/time column {sorted({segment, time} & set(columns))[0]!r} cannot "
            "also be one of the compared columns"
        )
    if (time is None) != (window is None):
        raise DriftError("give both a time column and a window (e.g. time='ts', window='1d')")
    if window is not None and not _WINDOW_RE.match(window):
        raise DriftError(f"window {window!r} is not a duration such as 1h, 1d, 7d, 1w or 1mo")
    if isinstance(reference, Profile):
        profile = reference
        if segment is not None and profile.segment != segment:
            raise DriftError(
                f"the reference profile{' ' + profile.source if profile.source else ''} was built "
                + (f"per segment {profile.segment!r}" if profile.segment else "without a segment")
                + f"; rebuild it with segment={segment!r} to compare per segment"
            )
        if columns is not None:
            absent = [c for c in columns if c not in profile.columns]
            if absent:
                raise DriftError(
                    f"column(s) {', '.join(absent)} not in the reference profile "
                    f"(it has: {', '.join(profile.columns)})"
                )
    else:
        profile = Profile.from_frame(
            reference,
            columns,
            config,
            segment=segment,
            exclude=[time] if time else [],
            source=reference_name,
        )
    cols = (
        list(dict.fromkeys(columns))
        if columns is not None
        else [c for c in profile.columns if c not in (segment, time)]
    )

    cur_label = "current" if current_name == "current" else f"current {current_name}"
    schema = _schema(current, cur_label)
    missing = [c for c in [*cols, segment, time] if c is not None and c not in schema]
    if missing:
        raise DriftError(
            f"column(s) {', '.join(missing)} missing in the {cur_label} (it has: "
            f"{', '.join(list(schema)[:30])}{' ...' if len(schema) > 30 else ''})"
        )
    exprs = {c: _current_expr(profile.columns[c], schema[c], cur_label) for c in cols}
    keep = [*([pl.col(segment)] if segment else []), *([pl.col(time)] if time else [])]
    if time is not None and not schema[time].is_temporal():
        raise DriftError(
            f"time column {time!r} of the {cur_label} is {schema[time]}; expected a "
            "Date or Datetime (CSV files: ISO timestamps are parsed)"
        )
    # per segment / window every column is needed at once; overall, a Parquet scan is
    # read a few columns at a time (results stay in column order)
    batches = [cols] if segment or time else _column_batches(current, cols)
    results: list[ColumnDrift] = []
    for batch in batches:
        lf = current.lazy().select(*(exprs[c] for c in batch), *keep)
        if time is not None:
            lf = lf.with_columns(pl.col(time).dt.truncate(window).alias("__hortus_window"))
        try:
            df = lf.collect()
        except pl.exceptions.PolarsError as exc:
            raise DriftError(f"cannot read the {cur_label}: {exc}") from None
        if df.height == 0:
            raise DriftError(f"the {cur_label} has no rows; nothing to compare")

        groups: list[tuple[str | None, Any, pl.DataFrame]] = [(None, None, df)]
        if segment is not None:
            groups += _segment_groups(df, segment, profile, None)
        if time is not None:
            windows = df.filter(pl.col("__hortus_window").is_not_null())
            parts = windows.partition_by("__hortus_window", as_dict=True, maintain_order=True)
            for key in sorted(parts):
                part = parts[key]
                groups.append((None, key[0], part))
                if segment is not None:
                    groups += _segment_groups(part, segment, profile, key[0])

        tasks = []
        for seg, win, part in groups:
            prof = profile if seg is None else profile.segments.get(seg)
            for col in batch:
                ref = prof.columns[col] if prof is not None else None
                tasks.append((col, profile.columns[col], ref, part, seg, win, config))
        results += _parallel_map(_compare_column, tasks, df.height)
    return DriftReport(
        results=tuple(_correct(results, config)),
        config=config,
        reference_rows=profile.rows,
        current_rows=df.height,
        reference_name=reference_name or profile.source or "reference",
        current_name=current_name,
        segment=segment,
        time=time,
        window=window,
    )


def _segment_groups(
    df: pl.DataFrame, segment: str, profile: Profile, win: Any
) -> list[tuple[str | None, Any, pl.DataFrame]]:
    parts = _partition(df, segment)
    keys = sorted(set(parts) | set(profile.segments))
    empty = df.clear()
    return [(k, win, parts.get(k, empty)) for k in keys]


def _current_expr(p: ColumnProfile, dtype: pl.DataType, name: str) -> pl.Expr:
    if p.kind == "numeric":
        if not dtype.is_numeric() and dtype != pl.Null:
            raise DriftError(
                f"column {p.name!r} is numeric ({p.dtype}) in the reference but {dtype} in "
                f"the {name}"
            )
        return _numeric_expr(p.name)
    if p.kind == "categorical":
        if dtype.is_nested() or dtype.is_temporal():
            raise DriftError(
                f"column {p.name!r} is categorical ({p.dtype}) in the reference but {dtype} "
                f"in the {name}"
            )
        return _category_expr(p.name, dtype, p.integer_categories)
    return pl.col(p.name)


def _compare_column(
    col: str,
    overall: ColumnProfile,
    ref: ColumnProfile | None,
    part: pl.DataFrame,
    seg: str | None,
    win: Any,
    config: DriftConfig,
) -> ColumnDrift:
    series = part[col]
    values = _sorted_finite(series) if overall.kind == "numeric" else None
    # numeric: NaN and +-inf count as nulls
    n_cur = values.size if values is not None else series.len() - series.null_count()
    null_cur = (series.len() - n_cur) / series.len() if series.len() else math.nan
    base = ColumnDrift(
        column=col,
        kind=overall.kind,
        segment=seg,
        window_start=win,
        n_current=n_cur,
        null_share_current=null_cur,
    )
    if ref is None:
        return replace(base, skipped=f"segment {seg!r} is not in the reference")
    rows_ref = ref.count + ref.nulls
    null_ref = ref.nulls / rows_ref if rows_ref else math.nan
    null_drifted = bool(abs(null_cur - null_ref) > config.null_share_threshold)  # nan -> False
    base = replace(
        base, n_reference=ref.count, null_share_reference=null_ref, null_drifted=null_drifted
    )
    if ref.skipped:
        return replace(base, skipped=ref.skipped)
    if series.len() == 0:
        return replace(base, skipped="no current rows")
    if n_cur == 0:
        return replace(base, skipped="no non-null values in the current")
    if ref.kind == "numeric":
        out = _numeric_compare(ref, values, config)
    else:
        out = _categorical_compare(ref, _value_counts(series), config)
    stat = config.stattest.get(col, "auto")
    if stat == "auto":
        small = min(ref.count, n_cur) <= config.small_sample_rows
        if ref.kind == "numeric":
            stat = "ks" if small else "wasserstein"
        else:
            stat = "chi2" if small else "jensen_shannon"
    allowed = NUMERIC_STATISTICS if ref.kind == "numeric" else CATEGORICAL_STATISTICS
    if stat not in allowed:
        raise DriftError(
            f"stattest {stat!r} does not apply to {ref.kind} column {col!r}; "
            f"use one of {', '.join(allowed)}"
        )
    threshold = config.threshold_for(col, stat)
    value = out["stats"][stat]
    p_value = out["stats"].get(f"{stat}_p_value")
    drifted = bool(value >= threshold) if p_value is None else False  # p-values: after correction
    return replace(
        base,
        statistic=stat,
        value=value,
        p_value=p_value,
        threshold=threshold,
        drifted=drifted,
        stats=out["stats"],
        new_categories=out["new"],
        missing_categories=out["missing"],
        histogram=out["histogram"],
    )


def adjust_p_values(p: np.ndarray, method: str) -> np.ndarray:
    """Adjust p-values for multiple testing: "bh" (Benjamini-Hochberg), "bonferroni", "none".

    Examples
    --------
    >>> adjust_p_values(np.array([0.01, 0.04, 0.03]), "bh").round(3).tolist()
    [0.03, 0.04, 0.04]
    """
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if method == "none" or m == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    if method == "bh":
        order = np.argsort(p, kind="stable")
        ranked = p[order] * m / np.arange(1, m + 1)
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        out = np.empty(m)
        out[order] = np.minimum(ranked, 1.0)
        return out
    raise DriftError(f"correction must be one of {', '.join(CORRECTIONS)}, got {method!r}")


def _correct(results: list[ColumnDrift], config: DriftConfig) -> list[ColumnDrift]:
    """Adjust every p-value-gated result as one family and decide those results."""
    idx = [
        i for i, r in enumerate(results) if r.p_value is not None and r.statistic in P_VALUE_TESTS
    ]
    adjusted = adjust_p_values(np.array([results[i].p_value for i in idx]), config.correction)
    out = list(results)
    for i, p_adj in zip(idx, adjusted, strict=True):
        r = results[i]
        out[i] = replace(r, p_value_adjusted=float(p_adj), drifted=bool(p_adj < r.threshold))
    return out
