"""Drift thresholds calibrated on the history's own variation: a null fitted to like windows.

A fixed distance threshold (say normalised Wasserstein 0.1) has no notion of normal
change: features that move by construction (counts over windows still filling up,
all-time totals, days since sign-up) exceed it on data with no drift at all, while a
stationary feature with a small sample can wander past it by chance.  Following
NannyML (thresholds from the reference period's own chunk-to-chunk variation), each
column's threshold is derived from the history itself:

1. **Like windows.**  The current rows (span ``S``: the hold-out's days, or one day of
   the dashboard) are compared with the history's last ``S`` (the reference), which
   begins ``L`` (the lag) before the current begins.
2. **Pairs.**  The history after ``warm_up_days`` (windows still filling up at the
   start of a history are left out) is cut into pairs of like windows: every span
   ``s`` of 1 ... ``S`` whole days, every lag ``l`` from ``s`` whole days up to what
   fits (at most ``L + 1`` days), the later window ending at the history's end, one
   day earlier, and so on (``step_days``).  Each pair is compared with the distance
   the decision uses (normalised Wasserstein for numbers, Jensen-Shannon for
   categories; numeric distances are re-expressed in the spread of the decision's
   reference, so a pair with a degenerate spread does not blow up).  A short
   history gives dozens of pairs where pairs of the full ``S`` and ``L`` fit once or
   not at all.
3. **A null model per column.**  A distance between like windows has two parts: a
   trend that grows with the lag (a count over a window still filling up) and chance
   that shrinks with the rows compared.  Per column, ``d^2 = a l^2 + b (1/n1 + 1/n2)``
   (``n1``, ``n2`` the non-null values of the two windows) is fitted to the pairs by
   non-negative least squares.  It predicts the null distance ``d0`` at the
   decision's lag and sizes (an interpolation in the lag: pairs cover lags up to
   ``L``).
4. **The pairs' own misfit.**  ``r`` is the largest ratio of a pair's distance to its
   fitted value (at least 1): how far the history itself strays from the model (heavy
   tails and clustered rows, e.g. a ratio feature carried by a few buyers, stray
   more).  The threshold is ``margin x r x d0``, and at least ``floor_share`` times
   the config's fixed threshold.  A change must exceed the worst like-window pair of
   the history, relative to the model, by ``margin``.

5. **Window aggregates on their increments.**  Given the entity keys of window
   aggregates (``increments=``, `hortus.features.definitions.feature_entities`), each
   is also judged on its per-entity increments since the entity's row at least
   ``increment_gap_days`` earlier (`hortus.monitoring._drift_increments`): what the
   recent days added, which a 30-day or all-time level dilutes.  Their mean shift
   (``|mean difference| / reference std`` of ``asinh(increment)``) gets a threshold
   from the same pairs and null model; the feature drifted when its level or its
   increment reached its threshold.  Only the feature's own values, key and time are
   read.  A current covering less than half its span (the dashboard's first, partial
   day) is judged on levels only: its hours are unlike the pairs' whole days.

The null-share change of each column gets the same model (rows instead of non-null
values), at least the config's ``null_share_threshold``.  With fewer than
``min_pairs`` pairs after the warm-up the pairs start at the history's first row;
with fewer still the config's fixed thresholds are used and `Calibration.note` says
so.  Pair distances of one history are cached (the dashboard calibrates each day's
window against the same history).

Measured on the plant shop (28 days, 1500 users; tests/test_drift_calibration.py and
nine more clean shops: seeds 1-8 with the snapshot's faults, seed 42 without), levels
only: the gate's largest score (distance / threshold) on a clean hold-out was
0.46-0.77, once 0.998 (seed 5, the 7-day order lines of the plant: 120 plants make a
lumpy distribution); no dashboard day flagged anything on the default snapshot, and
one feature-day in 306 on six of the eight other seeds.  ``new_region`` scored
1.30-1.34 on its changed features with the default seed, 1.64-1.84 with seed 1,
0.90-1.21 with seed 2 and 0.76-0.78 with seed 3 (a weaker draw of the new region):
the margin trades those two tails.

6. **Same weekdays.**  The shop's traffic has a weekday mix (weekends busier), and the
   gate's hold-out (Monday to Friday on the default snapshot) is unlike the history's
   last week in it.  Increments of a current of 2+ days are therefore compared with the
   same weekdays whole weeks earlier (the current's span shifted back by the fewest
   weeks that do not overlap it, inside the history) and calibrated on the pairs whose
   lag is whole weeks (``weekday_aligned``).  The reference covers the current's hours of
   the week (it ends at the current's last row shifted back).  A current whose rows cover
   under a day and a half keeps the last week, whatever its rounded span: a day is not
   judged against one other day (seed 7's ``new_region`` flagged ``user_ctr_30d`` at 1.13
   on the dashboard's second point, a day and 3 hours, judged as two days).

7. **Zero-inflated increments in two parts (a hurdle).**  Most entities add nothing in a
   few days (on the default snapshot 9.6% of the hold-out's ~1,400 spend increments are
   not zero), and a mean shift of such increments is diluted by the zeros.  An increment
   that is exactly zero for at least 25% of the history, not zero for at least 30 rows
   and negative for at most 1% (what only grows: an all-time or not yet full window sum
   or count; `hortus.monitoring._drift_increments.with_hurdle_parts`) is also judged on
   the share of non-zero increments and on the asinh of the non-zero ones, each a mean
   shift with a threshold from the same pairs and null model; the feature drifted when
   its level, its increment's mean or either part reached its threshold (statistics
   ``increment_nonzero_share`` / ``increment_nonzero_size``).  Only against the same
   weekdays (a current of 2+ days): the non-zero share follows the weekday mix of the
   traffic, and on the dashboard's one-day windows the parts flagged 5 feature-days
   outside lineage on seed 7 (signed increments such as ratios' also flagged a clean
   gate); one-day windows keep the mean alone.
8. **Constant columns are not judged.**  A column whose history holds at least 99% of
   its non-null values within ``1e-3 x max(1, |median|)`` of the median (or one
   category) is ``skipped`` "not judged: constant in the reference" in every decision
   (`constant_columns`; `Calibration.describe` names them, so the gate's detail does;
   the dashboard's table leaves skipped columns out): no distance or mean has a usable
   scale there.  On the
   plant shop: ``user_activity__days_since_sessions`` (99.5%: an example is shown
   seconds after its session started), and the sparse counts ``user_plant__carts_30d``
   (99.4% zero) and ``user_plant__order_lines_all`` (99.7%), on seeds 42 and 7 alike.
9. **Ratios on their recent rate.**  A ratio of two window aggregates keyed alike (a
   click-through rate; `hortus.features.definitions.EntityKeys.parts`) is also judged
   on the ratio of what the recent days added to each, summed over the window
   (``increment_rate_shift``, `hortus.monitoring._drift_increments.rate_shift`), with a
   threshold from the same pairs and null model; like the hurdle parts, only against the
   same weekdays.  Its 30-day level is diluted by the days before a change, and the
   change of a ratio per entity is noisy where the denominator is small.  On the default
   snapshot, seed 42: the clean shop's ratios score 0.22-0.38 of their thresholds (seed
   7: 0.34-0.58), nothing flagged; ``seasonal``'s ``user_ctr_30d``, 0.78 of its
   threshold before, scores 8.9 (seed 7: 2.3); the other scenarios' verdicts are
   unchanged.  A ratio across entities (``category_affinity_30d``: a user's views of a
   category over the user's views) has no recent rate: its parts start from other rows.
10. **Windows full before the current.**  An N-day window aggregate (`EntityKeys.window`)
   grows until N days of history lie behind it and is flat after; its increments are
   what the days added, then what they added less what dropped out.  One already full
   when the current starts is calibrated on the pairs after its window filled
   (`_calibrate_by_regime`: its warm-up is the window, when longer than ``warm_up_days``;
   too few pairs there, and it keeps ``warm_up_days``), and against the same weekdays
   only on same-weekday pairs after it filled (too few: its increments' mean against the
   last span).  On a 56-day plant shop the pairs that mixed the two regimes gave 30-day
   features thresholds of 1.5-3.2 and the clean gate flagged ``plant_conversion_30d``'s
   recent rate at 1.21; with this, nothing, and ``seasonal`` 29 of 36 lineage features
   (before 23).  The 28-day snapshot (7-day windows full within the warm-up, 30-day ones
   never) is unchanged bit for bit.  The warm-up is the window alone: with the increments'
   gap on top, the 7-day windows' pairs there started 3 days later and the clean
   dashboard flagged two features on the fewer pairs.

Measured with both (gap 3 days, asinh scale; default snapshot, seed 42; x86_64, 2
shared cores, load 3-5; the scenarios' features built once and judged by
tests/test_drift_calibration.py's ``_verdicts``): the clean shop flags nothing on the
gate, the monitor or any dashboard day (largest gate score 0.90, the non-zero share of
``user_plant__views_30d``; before the parts 0.78, a level).  ``new_region`` flags its 2
lineage features; ``price_change`` 2 of 6 (the catalogue price and its band: spend's
two parts score 0.13 and 0.25 of their thresholds, its effect is 0.03 sd against the
clean shop, a size shift of 0.13 sd on 150 non-zero increments);
``seasonal`` 29 of the 35 judged lineage features (before: 28 of 38), the dashboard's
newest day 24 (before 26 of 38: the two sparse counts it flagged are no longer judged);
the parts add ``plant_reviews__reviews_all`` (size, 2.19 of its threshold) and
``user_plant__views_30d`` (share, 1.46); none outside lineage.  Against the clean shop of
the same seed (the counterfactual hold-out) 5 of seasonal's 6 unflagged features move
under 0.10 sd (a user's clicks of the very plant recommended, the category share of a
user's views, the price against the user's average line, the ratings), as do
price_change's spend and average line value (0.03-0.04 sd) and ``price_vs_user_avg``
(0.0997; its buyers answer dearer fern and foliage plants by buying ~30% fewer of them):
lineage features the scenario does not really change.  tests/test_drift_calibration.py
therefore grades lineage by that effect (``MOVED``: a lineage feature moved 0.20 or more,
in mean or as a distribution shift, must be flagged; nothing outside lineage may move
that much or be flagged): the only miss is ``user_ctr_30d`` (0.29 sd, 0.78 of its
threshold); price_change moves only the catalogue price that much (0.24), flagged.
Seed 7: clean, nothing flagged by the gate, the monitor or any dashboard day (before:
one feature-day, the level of the constant recency at 1.002); new_region exact,
price_change 2 of 6, seasonal 23 of 35 (before 22 of 38), none outside lineage on any
decision or day. On a synthetic shop where 6% of 300 users buy on a day (16 seeds),
twice-larger baskets from the current's first day scored 1.87-6.31 of the size part's
threshold (all flagged) where the mean scored 0.07-2.91 (4 flagged); the clean current
scored under 1 on every part on 15 seeds, and seed 13 at 1.49 (share) and 1.20 (mean),
flagged by either.

Earlier measurements (before the hurdle and the constant rule; increments, gap 3 days,
asinh scale; default snapshot, seed 42): the largest
clean score on the gate was 0.78 (the level of ``price_vs_user_avg``; the largest
increment 0.76, ``user_profile__days_since_signup``, since recency is judged on its
increments too).  On a
synthetic shop with busy weekends (400 users, three weeks of history, a Monday-Friday
current, 16 seeds) the same-weekday reference scored a clean current 0.03-1.00 of its
threshold (one seed at 1.00: flagged) and a 25% rise 0.91-4.37 (3 of 4 flagged); the
last week as reference scored them 0.02-0.23 and 0.13-0.28 (nothing flagged either way).
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl

from hortus.monitoring._drift_compare import DriftReport, compare
from hortus.monitoring._drift_config import DriftConfig, DriftError
from hortus.monitoring._drift_increments import (
    RATE_PART,
    SHARE_PART,
    SIZE_PART,
    SUFFIX,
    increment_name,
    mean_shift,
    merge,
    with_hurdle_parts,
    with_increments,
    with_rate_parts,
)

#: a change must exceed the history's worst like-window pair (relative to the fit) this much
DEFAULT_MARGIN = 1.75
#: the calibrated threshold is at least this share of the config's fixed threshold
DEFAULT_FLOOR_SHARE = 0.5
_DAY = timedelta(days=1)
_CACHE: OrderedDict[tuple, dict[tuple[int, int], dict[tuple, list]]] = OrderedDict()
_CACHE_SIZE = 8  # histories kept
_MAX_ENDS = 14  # pairs per span and lag
_WEEK = 7  # lags of at least a week are paired (every weekday seen)
#: a column is constant in the reference when at least this share of its non-null
#: values lies within `CONSTANT_TOLERANCE` x max(1, |median|) of the median (numbers) or
#: is one category: not judged (no distance or mean shift has a usable scale)
CONSTANT_SHARE = 0.99
CONSTANT_TOLERANCE = 1e-3
CONSTANT_NOTE = "not judged: constant in the reference"


def constant_columns(frame: pl.DataFrame, columns: Sequence[str]) -> list[str]:
    """Return the columns of `frame` that are (near-)constant (`CONSTANT_SHARE`).

    Examples
    --------
    >>> f = pl.DataFrame({"a": [0.0] * 199 + [5.0], "b": [0.0] * 190 + [1.0] * 10})
    >>> constant_columns(f, ["a", "b"])
    ['a']
    """
    out = []
    for c in columns:
        if c not in frame.columns:
            continue
        s = frame[c].drop_nulls()
        if s.len() == 0:
            continue
        if s.dtype.is_numeric():
            s = s.cast(pl.Float64)
            s = s.filter(s.is_finite())
            if s.len() == 0:
                continue
            m = float(s.median())
            share = float(((s - m).abs() <= CONSTANT_TOLERANCE * max(1.0, abs(m))).mean())
        else:
            share = float(s.cast(pl.String).value_counts(normalize=True)["proportion"].max())
        if share >= CONSTANT_SHARE:
            out.append(c)
    return out


@dataclass(frozen=True)
class CalibrationConfig:
    """How thresholds are calibrated (params: ``gate.drift.calibration``).

    The staleness monitor and the dashboard use these defaults, so params.yaml repeats
    them for the gate.

    Examples
    --------
    >>> CalibrationConfig.from_dict({"margin": 2}).margin
    2.0
    """

    #: calibrate (False: the fixed thresholds of `DriftConfig`)
    enabled: bool = True
    #: multiple of the fitted null distance times the pairs' largest misfit
    margin: float = DEFAULT_MARGIN
    #: lower bound, as a share of the fixed threshold
    floor_share: float = DEFAULT_FLOOR_SHARE
    #: days at the start of the history left out of the pairs (windows filling up; a
    #: week: weekly windows full and every weekday seen)
    warm_up_days: float = 7.0
    #: days between the ends of successive pairs of one span and lag
    step_days: float = 1.0
    #: fewest pairs to fit on (fewer after the warm-up: pairs from the history's start)
    min_pairs: int = 3
    #: the reference is the history's last `reference_days` (or the current's span when
    #: longer): a week holds every weekday, and a day's window is not judged against
    #: one other day
    reference_days: float = 7.0
    #: window aggregates given with their entity keys are also judged on their
    #: increments since the entity's row at least this many days earlier (0: levels only)
    increment_gap_days: float = 3.0
    #: increments of a current of 2+ days are compared with the same weekdays whole weeks
    #: earlier (its span shifted back by the fewest weeks that do not overlap it)
    #: and calibrated on pairs whose lag is a multiple of a week: the weekday mix (more
    #: traffic at weekends) cancels instead of widening their thresholds
    weekday_aligned: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> CalibrationConfig:
        """Build from a mapping; refuse unknown keys."""
        data = dict(data or {})
        known = {
            "enabled", "margin", "floor_share", "warm_up_days", "step_days", "min_pairs",
            "reference_days", "increment_gap_days", "weekday_aligned",
        }  # fmt: skip
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
            step_days=float(data.get("step_days", 1.0)),
            min_pairs=int(data.get("min_pairs", 3)),
            reference_days=float(data.get("reference_days", 7.0)),
            increment_gap_days=float(data.get("increment_gap_days", 3.0)),
            weekday_aligned=bool(data.get("weekday_aligned", True)),
        )
        if (
            out.margin <= 0
            or out.floor_share < 0
            or out.step_days <= 0
            or out.warm_up_days < 0
            or out.min_pairs < 1
            or out.reference_days < 0
            or out.increment_gap_days < 0
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
    #: per column, the fitted null distance at the decision's lag and sizes times the
    #: pairs' largest misfit (the threshold is `margin` times this, floored)
    normal: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    #: the pairs' spans and lags, in days (smallest, largest)
    spans: tuple[float, float] = (0.0, 0.0)
    lags: tuple[float, float] = (0.0, 0.0)
    #: True when the pairs start at the history's first row (too few after the warm-up)
    from_start: bool = False
    #: columns also judged on their per-entity increments
    increments: int = 0
    #: of those, judged against the same weekdays whole weeks earlier
    weekly: int = 0
    #: columns not judged: constant in the history (`constant_columns`)
    constant: tuple[str, ...] = ()
    #: window aggregates full before the current, calibrated on pairs after they filled
    full: tuple[str, ...] = ()

    def describe(self) -> str:
        """Return one line saying how the thresholds were found."""
        if self.note:
            return f"thresholds not calibrated: {self.note}"
        days, lag = self.span / _DAY, self.lag / _DAY
        warm = " (warm-up included: too few pairs without it)" if self.from_start else ""
        steps = (
            f"; {self.increments} window aggregate(s) also judged on their per-entity increments"
            + (" (against the same weekdays whole weeks earlier)" if self.weekly else "")
            if self.increments
            else ""
        )
        flat = (
            f"; {len(self.constant)} column(s) {CONSTANT_NOTE}: {', '.join(self.constant)}"
            if self.constant
            else ""
        )
        full = (
            f"; {len(self.full)} window aggregate(s) full before the current calibrated on "
            "pairs after their windows filled"
            if self.full
            else ""
        )
        return (
            f"thresholds calibrated for {days:g}-day windows {lag:.2f} days apart on "
            f"{self.pairs} like-window pairs of the history (spans {self.spans[0]:g}-"
            f"{self.spans[1]:g} days, lags {self.lags[0]:g}-{self.lags[1]:g} days){warm}{steps}"
            f"{full}{flat}"
        )

    def apply(self, config: DriftConfig) -> DriftConfig:
        """Return `config` gating each calibrated column on its distance and threshold."""
        if not self.thresholds:
            return config
        levels = {c: t for c, t in self.thresholds.items() if not c.endswith(SUFFIX)}
        return replace(
            config,
            stattest={**self.statistics, **dict(config.stattest)},
            thresholds={**levels, **dict(config.thresholds)},
            null_thresholds={**self.null_thresholds, **dict(config.null_thresholds)},
        )


@dataclass(frozen=True)
class _Side:
    """What the null model needs of one compared column: sizes and the reference's spread."""

    kind: str
    n1: int
    n2: int
    rows1: int
    rows2: int
    scale: float | None


@dataclass(frozen=True)
class _Pair:
    span: float
    lag: float
    #: per column: (distance, null-share change, that column's sides)
    values: dict[str, tuple[float | None, float | None, _Side]]


def _distance(kind: str) -> str:
    return "wasserstein" if kind == "numeric" else "jensen_shannon"


def _between(rows: pl.DataFrame, time: str, lo, hi) -> pl.DataFrame:
    return rows.filter((pl.col(time) >= lo) & (pl.col(time) < hi))


def _scale(stats: Mapping[str, float]) -> float | None:
    """Return the spread a numeric distance is normalised by (std, else |mean|, else 1)."""
    std, mean = stats.get("std_reference"), stats.get("mean_reference")
    if std is None or mean is None or not (math.isfinite(std) and math.isfinite(mean)):
        return None
    return float(std) if std > 0 else (abs(float(mean)) or 1.0)


def _measure(
    earlier: pl.DataFrame, later: pl.DataFrame, columns: Sequence[str], config: DriftConfig
) -> dict[str, tuple[float | None, float | None, _Side]]:
    """Return per column (distance, null-share change, sides) of `later` against `earlier`.

    Increment columns (`hortus.monitoring._drift_increments`) get their mean shift.
    """
    out = {}
    steps = [c for c in columns if c.endswith(SUFFIX)]
    for c, (value, n1, n2, scale) in mean_shift(earlier, later, steps).items():
        out[c] = (value, None, _Side("increment", n1, n2, earlier.height, later.height, scale))
    levels = [c for c in columns if not c.endswith(SUFFIX)]
    if not levels:
        return out
    report = compare(
        earlier.select(levels),
        later.select(levels),
        levels,
        replace(config, stattest=dict.fromkeys(levels, "distance"), p_values=False),
    )
    for r in report.overall():
        if r.skipped is not None:
            continue
        change = None
        if r.null_share_reference is not None and r.null_share_current is not None:
            change = abs(r.null_share_current - r.null_share_reference)
            change = change if math.isfinite(change) else None
        value = r.value if r.value is not None and math.isfinite(r.value) else None
        side = _Side(
            r.kind,
            r.n_reference,
            r.n_current,
            earlier.height,
            later.height,
            _scale(r.stats) if r.kind == "numeric" else None,
        )
        out[r.column] = (value, change, side)
    return out


def _is_part(column: str) -> bool:
    """Return whether `column` is a part of an increment (a hurdle part, a ratio's rate)."""
    return column.removesuffix(SUFFIX).endswith((SHARE_PART, SIZE_PART, RATE_PART))


def _feature_of(column: str) -> str:
    """Return the feature a compared column belongs to (its increment or a part: the feature)."""
    base = column.removesuffix(SUFFIX)
    for part in (SHARE_PART, SIZE_PART, RATE_PART):
        base = base.removesuffix(part)
    return base


def _regime_warm_ups(
    increments: Mapping[str, Sequence[str]],
    first,
    current_start,
    cal: CalibrationConfig,
) -> dict[str, float]:
    """Return the warm-up (days) of each window aggregate already full when the current
    starts: its window (`EntityKeys.window`), when longer than the configured warm-up.
    Its pairs then lie where the window is full, as the current does: before, its level
    grew and its increments were what the days added; after, what they added less what
    dropped out of the window.  The window alone, not the increments' gap on top: fewer
    pairs for a window just full (module docstring, item 10)."""
    out = {}
    for f, keys in increments.items():
        window = getattr(keys, "window", None)
        if window is None or current_start < first + window:
            continue
        days = window / _DAY
        if days > cal.warm_up_days:
            out[f] = days
    return out


def _calibrate_by_regime(
    history: pl.DataFrame,
    columns: Sequence[str],
    warm_ups: Mapping[str, float],
    *,
    calibration: CalibrationConfig,
    strict: bool = False,
    **kwargs: Any,
) -> Calibration:
    """`calibrate` with each feature of `warm_ups` on the pairs after its own warm-up.

    A feature whose later pairs are too few (or fall back to the history's start) keeps
    the configured warm-up with every other column; with `strict`, it gets no threshold.
    """
    later: dict[float, list[str]] = {}
    rest = []
    for c in columns:
        days = warm_ups.get(_feature_of(c))
        (later.setdefault(days, []) if days is not None else rest).append(c)
    found: list[Calibration] = []
    full: list[str] = []
    for days, cols in sorted(later.items()):
        got = calibrate(history, cols, calibration=replace(calibration, warm_up_days=days),
                        **kwargs)  # fmt: skip
        if got.note or got.from_start or not got.thresholds:
            rest.extend([] if strict else cols)
        else:
            found.append(got)
            full.extend(dict.fromkeys(_feature_of(c) for c in cols))
    if rest or not found:
        kept = set(rest)
        main = calibrate(history, [c for c in columns if c in kept], calibration=calibration,
                         **kwargs)  # fmt: skip
    else:  # every column full before the current: the first such group describes
        main = found[0]
    if not found:
        return main
    merged = {k: dict(getattr(main, k)) for k in ("thresholds", "statistics",
                                                  "null_thresholds", "normal")}  # fmt: skip
    for got in found:
        for k, values in merged.items():
            values.update(getattr(got, k))
    note = None if merged["thresholds"] else main.note
    return replace(main, **merged, full=tuple(dict.fromkeys(full)), note=note)


def _column_key(history: pl.DataFrame, column: str) -> tuple:
    series = history[column]
    return (column, str(series.dtype), int(series.hash(seed=7).sum()))


def _pairs(
    history: pl.DataFrame,
    columns: Sequence[str],
    *,
    time: str,
    span: float,
    lag: float,
    begin,
    end,
    config: DriftConfig,
    step: float,
) -> list[_Pair]:
    """Return the like-window pairs of whole-day spans <= `span` and lags <= `lag` + 1.

    At most `_MAX_ENDS` pairs per span and lag.  Each column's distances are cached
    per history times, column values, warm-up and config: the dashboard asks for the
    same history at several lags, the gate and the staleness monitor for the same
    features.
    """
    key = (
        history.height,
        int(history[time].hash(seed=7).sum()),
        begin,
        end,
        step,
        repr(replace(config, stattest={}, thresholds={}, null_thresholds={})),
    )
    known = _CACHE.setdefault(key, {})
    _CACHE.move_to_end(key)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    cols = {c: _column_key(history, c) for c in columns}
    out = []
    for s in range(1, max(1, math.floor(span + 1e-9)) + 1):
        for lg in range(s, max(s + _WEEK - 1, math.ceil(lag - 1e-9) + 1) + 1):
            entry = known.setdefault((s, lg), {})  # column key -> one value per pair
            missing = [c for c in columns if cols[c] not in entry]
            if missing:
                found, e = [], end
                while e - timedelta(days=lg + s) >= begin and len(found) < _MAX_ENDS:
                    lo = e - timedelta(days=lg + s)
                    earlier = _between(history, time, lo, lo + timedelta(days=s))
                    later = _between(history, time, e - timedelta(days=s), e)
                    if earlier.height and later.height:  # the same ends for every column
                        found.append(_measure(earlier, later, missing, config))
                    e -= timedelta(days=step)
                for c in missing:
                    entry[cols[c]] = [f.get(c) for f in found]
            for i in range(len(entry[cols[columns[0]]]) if columns else 0):
                values = {c: entry[cols[c]][i] for c in columns}
                out.append(_Pair(s, lg, {c: v for c, v in values.items() if v is not None}))
    return out


def _nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with non-negative coefficients (two columns: every feasible subset)."""
    best, coef = math.inf, np.zeros(x.shape[1])
    for r in range(1, x.shape[1] + 1):
        for sub in itertools.combinations(range(x.shape[1]), r):
            c, *_ = np.linalg.lstsq(x[:, sub], y, rcond=None)
            if (c < 0).any():
                continue
            res = float(np.sum((x[:, sub] @ c - y) ** 2))
            if res < best:
                best, coef = res, np.zeros(x.shape[1])
                coef[list(sub)] = c
    return coef


def _null(points: list[tuple[float, float, float]], lag: float, size: float) -> float:
    """Fit ``d^2 = a l^2 + b v`` to (lag, v, d) points; return r x the fit at (lag, size)."""
    arr = np.asarray(points, dtype=float)
    x = np.column_stack((arr[:, 0] ** 2, arr[:, 1]))
    coef = _nnls(x, arr[:, 2] ** 2)
    fitted = np.sqrt(np.maximum(x @ coef, 0.0))
    seen = fitted > 0
    misfit = float(np.max(arr[seen, 2] / fitted[seen])) if seen.any() else 1.0
    if (arr[~seen, 2] > 0).any():  # a positive distance the model cannot reach
        return float(np.max(arr[:, 2]))
    return max(1.0, misfit) * math.sqrt(max(float(np.array([lag**2, size]) @ coef), 0.0))


def calibrate(
    history: pl.DataFrame,
    columns: Sequence[str],
    *,
    time: str,
    span: timedelta,
    lag: timedelta,
    config: DriftConfig | None = None,
    calibration: CalibrationConfig | None = None,
    current: pl.DataFrame | None = None,
    reference_span: timedelta | None = None,
    reference: pl.DataFrame | None = None,
    same_weekday: bool = False,
) -> Calibration:
    """Return thresholds per column from like-window pairs of `history` (module docstring).

    The thresholds are for comparing `current` (default: a window as large as the
    reference) with the history's last `reference_span` (default `span`); `lag` is the
    time between the two windows' centres.  `reference` replaces that last span (the
    same weekdays earlier); `same_weekday` keeps only pairs whose lag is whole weeks.
    """
    config = config or DriftConfig()
    cal = calibration or CalibrationConfig()
    if span <= timedelta(0) or lag <= timedelta(0):
        raise DriftError(f"drift calibration: need a positive span and lag, got {span}, {lag}")
    first, last = history.select(pl.col(time).min(), pl.col(time).max().alias("hi")).row(0)
    if first is None:
        return Calibration({}, {}, {}, span, lag, 0, note="no history rows to calibrate on")
    end = last + timedelta(microseconds=1)
    if reference is None:
        reference = _between(history, time, end - (reference_span or span), end)
    fixed = replace(config, stattest={}, thresholds={}, null_thresholds={})
    target = _measure(reference, reference if current is None else current, columns, fixed)
    pairs: list[_Pair] = []
    from_start = False
    for begin in (first + timedelta(days=cal.warm_up_days), first):
        pairs = _pairs(history, columns, time=time, span=span / _DAY, lag=lag / _DAY,
                       begin=begin, end=end, config=fixed, step=cal.step_days)  # fmt: skip
        if same_weekday:
            pairs = [p for p in pairs if round(p.lag) % _WEEK == 0]
        if len(pairs) >= cal.min_pairs:
            break
        from_start = True
    if len(pairs) < cal.min_pairs:
        return Calibration(
            {}, {}, {}, span, lag, len(pairs),
            note=f"{len(pairs)} like-window pair(s) in the history, fewer than "
            f"{cal.min_pairs}: fixed thresholds",
        )  # fmt: skip
    days = lag / _DAY
    thresholds, stats, null_thresholds, normal = {}, {}, {}, {}
    for c in columns:
        if c not in target:
            continue
        _, _, side = target[c]
        dist, nulls = [], []
        for p in pairs:
            if c not in p.values:
                continue
            value, change, ps = p.values[c]
            if change is not None and ps.rows1 and ps.rows2:
                nulls.append((p.lag, 1 / ps.rows1 + 1 / ps.rows2, change))
            if value is None or not (ps.n1 and ps.n2) or ps.kind != side.kind:
                continue  # (an integer column may read as categories in a short window)
            if side.scale and ps.scale:  # in the decision reference's spread
                value = value * ps.scale / side.scale
            dist.append((p.lag, 1 / ps.n1 + 1 / ps.n2, value))
        if nulls and side.rows1 and side.rows2:
            null_normal = _null(nulls, days, 1 / side.rows1 + 1 / side.rows2)
            null_thresholds[c] = max(fixed.null_share_threshold, cal.margin * null_normal)
        if not dist or not (side.n1 and side.n2):
            continue
        normal[c] = _null(dist, days, 1 / side.n1 + 1 / side.n2)
        level = c.removesuffix(SUFFIX)
        kind = "numeric" if side.kind == "increment" else side.kind
        floor = cal.floor_share * fixed.threshold_for(level, _distance(kind))
        thresholds[c] = max(floor, cal.margin * normal[c])
        if side.kind != "increment":
            stats[c] = "distance"
    return Calibration(
        thresholds, stats, null_thresholds, span, lag, len(pairs), normal,
        spans=(min(p.span for p in pairs), max(p.span for p in pairs)),
        lags=(min(p.lag for p in pairs), max(p.lag for p in pairs)),
        from_start=from_start,
        increments=sum(c.endswith(SUFFIX) and not _is_part(c) for c in thresholds),
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
    increments: Mapping[str, Sequence[str]] | None = None,
    preceding: pl.DataFrame | None = None,
) -> tuple[DriftReport, Calibration | None]:
    """Compare `current` with the history's last `span`, thresholds from like windows.

    `span` defaults to the current's time range (rounded up to whole days).  The
    reference is the history's rows in ``[end - span, end)``; the lag is the time
    from the reference's start to the current's start (at least `span`).  With
    calibration disabled, this is `compare(history, current)` with the fixed thresholds.

    `increments` maps window aggregates among `columns` to their entity key columns
    (`hortus.features.definitions.feature_entities`): each is also judged on its
    per-entity increments (`hortus.monitoring._drift_increments`), calibrated alike,
    and drifted when its level or its increment reached its threshold (not in a
    current that covers less than half of a given `span`: levels only).  `preceding`
    (rows between the history and the current: the dashboard's earlier windows) only
    provides the starting rows of the current's increments.
    """
    config = config or DriftConfig()
    cal = calibration or CalibrationConfig()
    if not cal.enabled:
        return compare(
            history.select(columns), current.select(columns), list(columns), config
        ), None
    if history.height == 0 or current.height == 0:
        raise DriftError("calibrated drift: the history and the current need rows")
    steps: list[str] = []
    have = set(history.columns) & set(current.columns)
    constant = constant_columns(history, columns)
    all_columns, columns = list(columns), [c for c in columns if c not in constant]
    if not columns:
        return _with_constant(compare(history.select(all_columns), current.select(all_columns),
                                      all_columns, config), constant), None  # fmt: skip
    wanted = {
        f: k if isinstance(k, tuple) else tuple(k)  # (a ratio's `EntityKeys` name its parts)
        for f, k in (increments or {}).items()
        if f in columns and all(c in have for c in k)
    }
    c_lo, c_hi = current[time].min(), current[time].max()
    # a window the rows cover less than half of (the dashboard's first, from the cut-off
    # to midnight) is unlike the pairs' whole days (other hours, other users): levels only
    partial = span is not None and (c_hi - c_lo) < span / 2
    if wanted and cal.increment_gap_days > 0 and not partial:
        history, current, steps = _with_increments(history, current, wanted, time, cal,
                                                   preceding)  # fmt: skip
    if span is None:
        span = timedelta(days=max(1, math.ceil((c_hi - c_lo) / _DAY)))
    # against the same weekdays only when the rows cover two days or more (to the nearest
    # day): a span rounded up from a day and some hours is still a day against one other
    weekly = cal.weekday_aligned and span >= 2 * _DAY and (c_hi - c_lo) >= 1.5 * _DAY
    parts: list[str] = []
    if steps and weekly:
        # the non-zero share follows the weekday mix of traffic: judged in two parts only
        # against the same weekdays (one-day windows of the dashboard: the mean alone)
        history, current, parts = with_hurdle_parts(history, current, steps)
        history, current, rates = with_rate_parts(history, current, wanted)
        parts = [*parts, *rates]
        steps = [*steps, *parts]
    h_end = history[time].max() + timedelta(microseconds=1)
    ref_span = max(span, timedelta(days=cal.reference_days))
    reference = _between(history, time, h_end - ref_span, h_end)
    # between the centres of the reference and of the current's rows
    lag = max(c_lo + (c_hi - c_lo) / 2 - (h_end - ref_span / 2), timedelta(hours=1))
    warm_ups = _regime_warm_ups(increments or {}, history[time].min(), c_lo, cal)
    got = _calibrate_by_regime(history, [*columns, *steps], warm_ups, time=time, span=span,
                               lag=lag, config=config, calibration=cal, current=current,
                               reference_span=ref_span)  # fmt: skip
    report = compare(reference.select(columns), current.select(columns), list(columns),
                     got.apply(config))  # fmt: skip
    if steps:
        thresholds, inc_reference = got.thresholds, reference
        aligned = (
            _same_weekdays(history, current, steps, time, span, h_end, config, cal, warm_ups)
            if weekly
            else None
        )
        last: dict[str, float] = {}
        if aligned is not None:
            inc_reference, weekly = aligned
            # a window full before the current with too few same-weekday pairs after it
            # filled: its mean alone against the last span, on its thresholds of that regime
            last = {k: v for k, v in thresholds.items() if k in steps and not _is_part(k)
                    and k not in weekly.thresholds}  # fmt: skip
            thresholds = {**{k: v for k, v in thresholds.items() if k not in steps},
                          **weekly.thresholds}  # fmt: skip
            got = replace(got, thresholds={**thresholds, **last},
                          normal={**got.normal, **weekly.normal},
                          weekly=sum(not _is_part(k) for k in weekly.thresholds))  # fmt: skip
        else:  # not against the same weekdays: the mean alone
            thresholds = {k: v for k, v in thresholds.items() if k not in parts}
        report = merge(report, inc_reference, current, list(columns), thresholds)
        if last:
            report = merge(report, reference, current, list(columns), last)
    if constant:
        skipped = compare(reference.select(constant), current.select(constant), constant, config)
        report = _with_constant(replace(report, results=(*report.results, *skipped.results)),
                                constant)  # fmt: skip
        got = replace(got, constant=tuple(constant))
    return report, got


def _with_constant(report: DriftReport, constant: Sequence[str]) -> DriftReport:
    """Return `report` with the results of `constant` columns marked not judged."""
    names = set(constant)
    return replace(report, results=tuple(
        replace(r, skipped=CONSTANT_NOTE, drifted=False, null_drifted=False)
        if r.column in names else r
        for r in report.results
    ))  # fmt: skip


def _same_weekdays(
    history: pl.DataFrame,
    current: pl.DataFrame,
    steps: Sequence[str],
    time: str,
    span: timedelta,
    h_end,
    config: DriftConfig,
    cal: CalibrationConfig,
    warm_ups: Mapping[str, float] | None = None,
) -> tuple[pl.DataFrame, Calibration] | None:
    """Return the increments' same-weekday reference and thresholds, or None.

    The reference is the current's span shifted back by the fewest whole weeks that do
    not overlap it; None for a current of one day (a day is not judged against one
    other day: on the default snapshot that flagged a clean day), when it does not lie
    inside the history, or too few pairs whose lag is whole weeks exist (then the last
    span of the history is the reference).
    """
    if not cal.weekday_aligned or span < timedelta(days=2):
        return None
    shift = timedelta(days=_WEEK * max(1, math.ceil(span / timedelta(days=_WEEK))))
    lo = current[time].min() - shift
    # the same hours of the week as the current's rows (its span is rounded up to days)
    hi = min(lo + span, current[time].max() - shift + timedelta(microseconds=1))
    if lo < history[time].min() or lo + span > h_end:
        return None
    reference = _between(history, time, lo, hi)
    if reference.height == 0:
        return None
    got = _calibrate_by_regime(history, steps, warm_ups or {}, time=time, span=span,
                               lag=shift, config=config, calibration=cal, current=current,
                               reference=reference, same_weekday=True,
                               strict=True)  # fmt: skip
    if not got.thresholds:
        return None
    return reference, got


def _with_increments(
    history: pl.DataFrame,
    current: pl.DataFrame,
    increments: Mapping[str, tuple[str, ...]],
    time: str,
    cal: CalibrationConfig,
    preceding: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Return history and current with increment columns (over both, and `preceding`
    between them: the current's first rows of an entity start from its latest earlier
    rows), and their names."""
    parts = [history.with_columns(pl.lit(False).alias("__current"))]
    if preceding is not None and preceding.height:
        parts.append(
            preceding.select([c for c in current.columns if c in preceding.columns])
            .with_columns(pl.lit(None, pl.Boolean).alias("__current"))
        )  # fmt: skip
    parts.append(current.with_columns(pl.lit(True).alias("__current")))
    both = pl.concat(parts, how="diagonal_relaxed")
    both = with_increments(both, increments, time=time,
                           gap=timedelta(days=cal.increment_gap_days))  # fmt: skip
    steps = [increment_name(f) for f in increments if increment_name(f) in both.columns]
    return (
        both.filter(pl.col("__current") == False).drop("__current"),  # noqa: E712
        both.filter(pl.col("__current")).drop("__current"),
        steps,
    )
