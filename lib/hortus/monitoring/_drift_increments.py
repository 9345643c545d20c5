"""Window aggregates judged on what the recent days added: per-entity increments.

A window aggregate (an N-day or all-time sum or count of an entity, a ratio of two,
days since the entity's last event) integrates its whole window: five changed days
move a 30-day count of a user by a sixth of the change, on top of the growth such a
feature has by construction while its windows fill up.  Its level is a weak witness
of a recent change.  What the recent days added is a strong one: for each row, the
change of the feature since the same entity's latest row at least ``gap`` earlier,
per day,

    increment = (value(t) - value(t0)) / (t - t0 in days),   t0 <= t - gap,

is what the entity's rows in ``(t0, t]`` added (minus what left an N-day window).  A
change of the source rows (more traffic, dearer lines) shifts the mean of these
increments by the change itself, undiluted, while a growth by construction leaves
them steady.  Only the feature's own values, its entity key and the time are read:
no source table, no lineage.

Increments are compared by their mean on an ``asinh`` scale (``|mean(current) -
mean(reference)| / std(reference)`` of ``asinh(increment)``: a standardised mean
difference in which a few large orders do not swamp a day; one increment per entity
and ``t0``, so the ten rows of one list count once).  Its threshold comes from the same
like-window pairs and null model as the levels (`hortus.monitoring._drift_calibration`):
the chance part of a mean difference shrinks exactly as ``1/n1 + 1/n2``.

A ratio of two window aggregates of one entity (`EntityKeys.parts`) also gets its
recent rate (`with_rate_parts`, `rate_shift`): the sum of the numerator's increments over
the sum of the denominator's, which a doubled click-through rate moves by the change
itself where the ratio's own increments are noisy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta

import polars as pl

from hortus.monitoring._drift_compare import ColumnDrift, DriftReport

#: suffix of the increment column of a feature
SUFFIX = " (increment/day)"
_ROW = "__hortus_row"


#: the two parts of a zero-inflated feature's increments (a hurdle): the share of
#: non-zero increments, and the size (asinh) of the non-zero ones
SHARE_PART, SIZE_PART = " [non-zero share]", " [non-zero size]"
#: increments are judged in two parts as well when at least this share of the history's
#: increments is exactly zero (an idle entity: most users buy nothing in a few days) ...
HURDLE_MIN_ZERO_SHARE = 0.25
#: ... and at least this many are not, and at most this share is negative: a hurdle
#: (zero or a positive amount) describes what only grows, such as an all-time sum or
#: count; the signed increments of an N-day window or a ratio keep their mean alone
HURDLE_MIN_NONZERO = 30
HURDLE_MAX_NEGATIVE_SHARE = 0.01
#: a ratio of two window aggregates keyed alike (`EntityKeys.parts`) is also judged on
#: the ratio of what the recent days added to each: sum of the numerator's increments
#: over the sum of the denominator's (rows whose denominator grew)
RATE_PART = " [recent rate]"
#: statistic of each part in a result
STATISTICS = {"": "increment_mean_shift", SHARE_PART: "increment_nonzero_share",
              SIZE_PART: "increment_nonzero_size", RATE_PART: "increment_rate_shift"}  # fmt: skip


def increment_name(feature: str, part: str = "") -> str:
    """Return the name of `feature`'s increment column (or of one of its hurdle parts)."""
    return f"{feature}{part}{SUFFIX}"


def with_hurdle_parts(
    history: pl.DataFrame, current: pl.DataFrame, steps: Sequence[str]
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Return both frames with the hurdle parts of zero-inflated increments, and their names.

    An increment column of `steps` whose history holds at least
    `HURDLE_MIN_ZERO_SHARE` exact zeros, `HURDLE_MIN_NONZERO` non-zero values and at
    most `HURDLE_MAX_NEGATIVE_SHARE` negative ones gets
    two more columns: ``1.0``/``0.0`` for a non-zero/zero increment (its mean shift on
    the asinh scale is a standardised difference of the non-zero share) and the
    non-zero increments only (null for a zero).  A mean shift of such increments is
    diluted by the zeros (a rise of spend where one entity in ten buys anything moves
    the mean a tenth as much); each part is judged and calibrated on its own.
    """
    if not steps:
        return history, current, []
    got = history.select(
        *[(pl.col(c) == 0).sum().alias(f"z{i}") for i, c in enumerate(steps)],
        *[((pl.col(c) != 0) & pl.col(c).is_finite()).sum().alias(f"n{i}")
          for i, c in enumerate(steps)],
        *[(pl.col(c) < 0).sum().alias(f"neg{i}") for i, c in enumerate(steps)],
    ).row(0, named=True)  # fmt: skip
    parts, exprs = [], []
    for i, c in enumerate(steps):
        zeros, nonzero, total = got[f"z{i}"], got[f"n{i}"], got[f"z{i}"] + got[f"n{i}"]
        if (
            nonzero < HURDLE_MIN_NONZERO
            or zeros < HURDLE_MIN_ZERO_SHARE * total
            or got[f"neg{i}"] > HURDLE_MAX_NEGATIVE_SHARE * total
        ):
            continue
        feature = c.removesuffix(SUFFIX)
        share, size = increment_name(feature, SHARE_PART), increment_name(feature, SIZE_PART)
        exprs += [
            (pl.col(c) != 0).cast(pl.Float64).alias(share),
            pl.when(pl.col(c) != 0).then(pl.col(c)).alias(size),
        ]
        parts += [share, size]
    if not parts:
        return history, current, []
    return history.with_columns(exprs), current.with_columns(exprs), parts


def with_rate_parts(
    history: pl.DataFrame, current: pl.DataFrame, increments: Mapping[str, Sequence[str]]
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Return both frames with a recent-rate column per ratio whose parts have increments.

    A ratio of two window aggregates keyed alike (`EntityKeys.parts`: a click-through
    rate, clicks over impressions in 30 days) moves little when its recent days change:
    its 30-day level is diluted, and the change of a ratio per day is noisy where the
    denominator is small.  The ratio of what the recent days added, summed over the
    window (`rate_shift`), is the sharper witness.  The column holds each row's two
    increments as a struct (``a``: numerator, ``b``: denominator), null unless the
    denominator grew.
    """
    names, exprs = [], []
    for feature, keys in increments.items():
        parts = getattr(keys, "parts", None)
        if not parts:
            continue
        a, b = increment_name(parts[0]), increment_name(parts[1])
        if not all(c in f.columns for c in (a, b) for f in (history, current)):
            continue
        name = increment_name(feature, RATE_PART)
        grew = (pl.col(b) > 0) & pl.col(b).is_finite() & pl.col(a).is_finite()
        exprs.append(pl.when(grew).then(pl.struct(a=pl.col(a), b=pl.col(b))).alias(name))
        names.append(name)
    if not names:
        return history, current, []
    return history.with_columns(exprs), current.with_columns(exprs), names


def rate_shift(earlier: pl.DataFrame, later: pl.DataFrame, columns: Sequence[str]) -> dict:
    """Return per rate column (|R later - R earlier| / scale, n1, n2, scale).

    ``R = sum(a) / sum(b)`` over the window's rows (`with_rate_parts`); ``scale`` is the
    standard deviation of a row's contribution to R in the earlier window,
    ``std(a - R b) / mean(b)`` (the delta method: R of n rows varies as scale^2 / n, so
    the null model's chance term applies as to a mean).  None with fewer than two
    earlier rows, no later row or no spread.
    """

    def sums(frame: pl.DataFrame) -> dict:
        exprs = []
        for i, c in enumerate(columns):
            a, b = pl.col(c).struct.field("a"), pl.col(c).struct.field("b")
            exprs += [a.sum().alias(f"a{i}"), b.sum().alias(f"b{i}"), b.count().alias(f"n{i}"),
                      b.mean().alias(f"m{i}")]  # fmt: skip
        return frame.select(exprs).row(0, named=True)

    one, two = sums(earlier), sums(later)
    spread = earlier.select(
        (
            pl.col(c).struct.field("a")
            - pl.col(c).struct.field("b") * (one[f"a{i}"] / one[f"b{i}"] if one[f"b{i}"] else 0.0)
        )
        .std()
        .alias(f"s{i}")
        for i, c in enumerate(columns)
    ).row(0, named=True)
    out = {}
    for i, c in enumerate(columns):
        n1, n2 = int(one[f"n{i}"]), int(two[f"n{i}"])
        value, scale = None, None
        if n1 >= 2 and n2 >= 1 and one[f"b{i}"] and two[f"b{i}"]:
            sd, mean_b = spread[f"s{i}"], one[f"m{i}"]
            if sd and mean_b:
                scale = float(sd) / float(mean_b)
                r1 = one[f"a{i}"] / one[f"b{i}"]
                r2 = two[f"a{i}"] / two[f"b{i}"]
                value = abs(float(r2) - float(r1)) / scale
        out[c] = (value, n1, n2, scale)
    return out


def with_increments(
    frame: pl.DataFrame,
    increments: Mapping[str, Sequence[str]],
    *,
    time: str,
    gap: timedelta = timedelta(days=1),
) -> pl.DataFrame:
    """Return `frame` with an increment column per feature of `increments` (feature -> keys).

    A row's increment is its feature's change per day since the same entity's latest
    row at least `gap` earlier (null without one, or when an earlier row of the same
    entity already has that same starting row: one increment per entity and start).
    Rows keep their order.  Features or keys missing from `frame` are left out.

    Examples
    --------
    >>> from datetime import datetime
    >>> f = pl.DataFrame({"t": [datetime(2025, 1, d) for d in (1, 2, 4)], "u": ["a"] * 3,
    ...                   "n": [1.0, 3.0, 9.0]})
    >>> with_increments(f, {"n": ["u"]}, time="t")[increment_name("n")].to_list()
    [None, 2.0, 3.0]
    """
    wanted = {
        f: list(keys)
        for f, keys in increments.items()
        if f in frame.columns and keys and all(k in frame.columns for k in keys)
    }
    if not wanted:
        return frame
    base = frame.with_row_index(_ROW)
    ordered = base.sort(time)
    by_keys: dict[tuple[str, ...], list[str]] = {}
    for f, keys in wanted.items():  # one as-of join per entity
        by_keys.setdefault(tuple(keys), []).append(f)
    out = base
    for keys, feats in by_keys.items():
        vals = {f: f"__v{i}" for i, f in enumerate(feats)}
        left = ordered.select(
            _ROW, time, *keys, *[pl.col(f).cast(pl.Float64).alias(v) for f, v in vals.items()]
        )
        right = left.select(
            *keys,
            pl.col(time).alias("__t0"),
            *[pl.col(v).alias(f"{v}_0") for v in vals.values()],
            (pl.col(time) + gap).alias("__reach"),
        ).sort("__reach")
        joined = left.join_asof(
            right, left_on=time, right_on="__reach", by=list(keys), strategy="backward",
            check_sortedness=False,
        )  # fmt: skip
        days = (pl.col(time) - pl.col("__t0")).dt.total_microseconds() / 86_400e6
        first = pl.struct(*keys, "__t0").is_first_distinct() & pl.col("__t0").is_not_null()
        out = out.join(
            joined.select(
                _ROW,
                *[
                    pl.when(first)
                    .then((pl.col(v) - pl.col(f"{v}_0")) / days)
                    .alias(increment_name(f))
                    for f, v in vals.items()
                ],
            ),
            on=_ROW,
            how="left",
        )
    return out.sort(_ROW).drop(_ROW)


def mean_shift(earlier: pl.DataFrame, later: pl.DataFrame, columns: Sequence[str]) -> dict:
    """Return per column (|mean later - mean earlier| / std earlier, n1, n2, std earlier).

    Of ``asinh(value)`` (linear near 0, logarithmic for large values: heavy tails
    tamed, signs kept).  Non-finite values are left out; a column with fewer than two
    earlier values or no later value gives value None.
    """
    if not columns:
        return {}
    rates = [c for c in columns if RATE_PART in c]
    if rates:  # a ratio's recent rate: its own statistic
        plain = [c for c in columns if RATE_PART not in c]
        return {**mean_shift(earlier, later, plain), **rate_shift(earlier, later, rates)}

    def stats(frame: pl.DataFrame) -> dict:
        exprs = []
        for i, c in enumerate(columns):
            x = pl.col(c).filter(pl.col(c).is_finite()).arcsinh()
            exprs += [x.mean().alias(f"m{i}"), x.std().alias(f"s{i}"), x.count().alias(f"n{i}")]
        return frame.select(exprs).row(0, named=True)

    a, b = stats(earlier), stats(later)
    out = {}
    for i, c in enumerate(columns):
        n1, n2, m1, m2, s1 = a[f"n{i}"], b[f"n{i}"], a[f"m{i}"], b[f"m{i}"], a[f"s{i}"]
        scale = None if s1 is None else (float(s1) if s1 > 0 else (abs(float(m1)) or 1.0))
        value = None
        if n1 >= 2 and n2 >= 1 and scale is not None and m2 is not None:
            value = abs(float(m2) - float(m1)) / scale
        out[c] = (value, int(n1), int(n2), scale)
    return out


def merge(
    report: DriftReport,
    reference: pl.DataFrame,
    current: pl.DataFrame,
    features: Sequence[str],
    thresholds: Mapping[str, float],
) -> DriftReport:
    """Return `report` with each feature's increment decision folded into its result.

    A feature drifted when its level or its increment reached its threshold; the
    result's statistic, value and threshold are those of the higher score, and its
    stats keep both (``increment_value``, ``increment_threshold``, ``level_value``...).
    """
    names = {
        f: [p for p in STATISTICS if increment_name(f, p) in thresholds]
        for f in features
        if increment_name(f) in thresholds
    }
    if not names:
        return report
    measured = mean_shift(
        reference, current, [increment_name(f, p) for f, ps in names.items() for p in ps]
    )
    results = []
    for r in report.results:
        parts = names.get(r.column)
        if parts is None or r.segment is not None or r.window_start is not None:
            results.append(r)
            continue
        stats, best, drifted = dict(r.stats), None, r.drifted
        level = (r.value or 0.0) / r.threshold if r.threshold else 0.0
        if r.value is not None:
            stats |= {"level_value": r.value, "level_threshold": r.threshold or 0.0}
        for part in parts:
            value, n1, n2, _ = measured[increment_name(r.column, part)]
            if value is None:
                continue
            threshold = thresholds[increment_name(r.column, part)]
            key = STATISTICS[part] if part else "increment"
            stats |= {
                f"{key}_value": value,
                f"{key}_threshold": threshold,
                f"{key}_n_reference": float(n1),
                f"{key}_n_current": float(n2),
            }
            drifted = drifted or value >= threshold
            if value / threshold > (best[0] if best else level):
                best = (value / threshold, STATISTICS[part], value, threshold)
        if best is not None and r.skipped is None:
            r = replace(r, statistic=best[1], value=best[2], threshold=best[3],
                        p_value=None, p_value_adjusted=None)  # fmt: skip
        results.append(replace(r, stats=stats, drifted=drifted if r.skipped is None else r.drifted))
    return replace(report, results=tuple(results))


def increments_for(project, features: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Return the window aggregates among `features` with their entity keys, for a project.

    From the project's feature set (`hortus.features.definitions.feature_entities`);
    empty when `project` is None or declares no features.
    """
    from hortus.features.definitions import feature_entities

    fs = project.feature_set() if project is not None and project.features is not None else None
    if fs is None:
        return {}
    wanted = set(features)
    return {f: keys for f, keys in feature_entities(fs).items() if f in wanted}


def drifted_increment(r: ColumnDrift) -> bool:
    """Return whether `r` drifted on its increment (not its level)."""
    return r.statistic in STATISTICS.values() and r.drifted
