"""Comparing a current table with a reference profile: `compare`, `ColumnDrift`, `DriftReport`.

Per column (numeric or categorical statistics), per segment and time window; the
p-values of one comparison are corrected as one family (`_correct`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import numpy as np
import polars as pl

from hortus.monitoring._drift_config import (
    _WINDOW_RE,
    CATEGORICAL_STATISTICS,
    HISTOGRAM_MAX_CATEGORIES,
    MAX_LISTED_CATEGORIES,
    NUMERIC_STATISTICS,
    P_VALUE_TESTS,
    DriftConfig,
    DriftError,
    default_skip_reason,
)
from hortus.monitoring._drift_profile import (
    ColumnProfile,
    Profile,
    _category_expr,
    _column_batches,
    _numeric_expr,
    _parallel_map,
    _partition,
    _schema,
    _sorted_finite,
    _value_counts,
)
from hortus.monitoring._drift_stats import (
    _bin_counts,
    _chi2_sf,
    _js_distance,
    _ks_pvalue,
    _mean_std,
    _merge_stats,
    _psi,
    _scale,
    _support,
    adjust_p_values,
)


def _numeric_compare(
    p: ColumnProfile, c: np.ndarray, config: DriftConfig, *, p_value: bool = True
) -> dict[str, Any]:
    """Compare a numeric reference profile with a sorted current sample (without the KS
    p-value unless `p_value`)."""
    xc, cc = _support(c)
    cr = None if p.weights is None else np.concatenate(([0], np.cumsum(p.weights)))
    ks, w1 = _merge_stats(p.values, cr, xc, cc)
    pr = p.bin_counts / p.count
    pc = _bin_counts(c, p.bin_edges) / c.size
    outside = np.searchsorted(c, p.min, side="left") + c.size - np.searchsorted(c, p.max, "right")
    mean_c, std_c = _mean_std(c)
    return {
        "stats": {
            "ks": ks,
            **({"ks_p_value": _ks_pvalue(ks, p.count, c.size)} if p_value else {}),
            "wasserstein": w1 / _scale(p.std, p.mean),
            "psi": _psi(pr, pc, config.psi_epsilon),
            "jensen_shannon": _js_distance(pr, pc),
            "out_of_range_share": float(outside / c.size),
            "mean_reference": p.mean,
            "mean_current": mean_c,
            "std_reference": p.std,
            "std_current": std_c,
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
    #: False when the reference is a quantile sketch (stored profile or a huge reference)
    exact: bool = True
    #: the sketch's bound on |KS - exact KS| (None when exact)
    ks_error_bound: float | None = None
    #: the sketch's bound on |normalised Wasserstein - exact| (None when exact)
    wasserstein_error_bound: float | None = None

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
            "exact": self.exact,
            "ks_error_bound": _finite(self.ks_error_bound),
            "wasserstein_error_bound": _finite(self.wasserstein_error_bound),
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
    #: columns left out by default (ID-like names, ingestion metadata) -> why
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """Return whether every statistic is exact (no sketched reference column)."""
        return all(r.exact for r in self.results)

    def skipped_columns(self) -> dict[str, str]:
        """Return every column not compared overall -> why (left out by default or skipped)."""
        out = dict(self.excluded)
        out.update({r.column: r.skipped for r in self.overall() if r.skipped and not r.statistic})
        return out

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
            row["exact"] = r.exact
            row["ks_error_bound"] = r.ks_error_bound
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
            "exact": pl.Boolean,
            "ks_error_bound": pl.Float64,
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
            "exact": self.exact,
            "skipped_columns": self.skipped_columns(),
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
    ids: Sequence[str] = (),
) -> DriftReport:
    """Compare a current table with a reference (a frame or a stored `Profile`).

    Results come overall, then per `segment` value (the reference is split the same
    way), then per time `window` of the current (`time` column truncated to e.g.
    "1d"/"7d", each window against the whole reference), and per window x segment
    when both are given.  The first window starts at the current's first timestamp
    (floored to the window's smallest unit: a "7d" window to the day), not at a
    boundary counted from 1970, so it is not a partial window.

    `columns` defaults to every reference column except the segment and time columns,
    ID-like columns (`ids`, e.g. a contract's primary key or a model's ids; names such
    as ``*_id``; values unique per row) and ingestion metadata (names starting with
    ``_``); the report lists them with the reason (`DriftReport.skipped_columns`).
    A named column is always compared.

    A reference frame is profiled exactly (up to ``config.exact_max_rows`` values per
    column), so KS, Wasserstein and PSI equal their textbook two-sample values; a
    stored `Profile` may hold a sketch, and those results carry ``exact=False`` and
    the sketch's error bounds.

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
            exact=True,
            ids=ids,
        )
    excluded: dict[str, str] = {}
    if columns is None:
        excluded = {c: r for c, r in profile.excluded.items() if c not in (segment, time)}
        cols = [c for c in profile.columns if c not in (segment, time)]
        if config.skip_identifiers:
            excluded.update({c: r for c in cols if (r := default_skip_reason(c, ids)) is not None})
            cols = [c for c in cols if c not in excluded]
    else:
        cols = list(dict.fromkeys(columns))

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
        try:
            df = lf.collect()
            if time is not None:
                df = df.with_columns(_window_starts(df[time], window).alias("__hortus_window"))
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
        excluded=excluded,
    )


def _window_starts(t: pl.Series, window: str) -> pl.Series:
    """Return the start of each timestamp's window; the first starts where the data starts.

    Windows are `window` long from the first timestamp floored to the window's smallest
    unit ("7d" and "1mo" to the day, "6h" to the hour), not at multiples of `window` since
    1970 as ``dt.truncate`` would count them (which makes the first window partial).
    Nulls stay null.
    """
    valid = t.drop_nulls()
    if valid.is_empty():
        return pl.Series(t.name, [None] * t.len(), dtype=t.dtype)
    unit = _WINDOW_RE.match(window).group(2)  # the last, smallest unit
    floor = "1d" if unit in ("w", "mo", "q", "y") else f"1{unit}"
    floored = valid.dt.truncate(floor).unique().sort()
    starts = (
        floored.to_frame("t")
        .group_by_dynamic("t", every=window, start_by="datapoint")
        .agg(pl.len())
        .get_column("t")
    )
    idx = starts.search_sorted(t, side="right").cast(pl.Int64) - 1
    return starts.gather(idx.clip(lower_bound=0)).set(t.is_null(), None).rename(t.name)


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
    null_limit = config.null_thresholds.get(col, config.null_share_threshold)
    null_drifted = bool(abs(null_cur - null_ref) > null_limit)  # nan -> False
    base = replace(
        base, n_reference=ref.count, null_share_reference=null_ref, null_drifted=null_drifted
    )
    if ref.skipped:
        return replace(base, skipped=ref.skipped)
    if series.len() == 0:
        return replace(base, skipped="no current rows")
    if n_cur == 0:
        return replace(base, skipped="no non-null values in the current")
    stat = config.stattest.get(col, "auto")
    if stat == "distance":
        stat = "wasserstein" if ref.kind == "numeric" else "jensen_shannon"
    if stat == "auto":
        small = min(ref.count, n_cur) <= config.small_sample_rows
        if ref.kind == "numeric":
            stat = "ks" if small else "wasserstein"
        else:
            stat = "chi2" if small else "jensen_shannon"
    if ref.kind == "numeric":
        out = _numeric_compare(ref, values, config, p_value=config.p_values or stat == "ks")
        if not ref.exact:
            base = replace(
                base,
                exact=False,
                ks_error_bound=ref.sketch_ks_error,
                wasserstein_error_bound=ref.sketch_wasserstein_error,
            )
    else:
        out = _categorical_compare(ref, _value_counts(series), config)
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
