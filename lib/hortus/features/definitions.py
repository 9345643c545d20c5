"""Feature store: definitions written once, offline logs in Delta, point-in-time lookups.

A `FeatureGroup` names an entity key, a source table with an event timestamp, and
its features: window aggregates (sums of a per-row value over 7 days, 30 days or
all time), recency (days since the last row with a positive value) and latest
values (e.g. a plant's current price).

Offline, each group is stored as a *cumulative log*: one row per entity and
timestamp with running sums, last-seen times and latest values, sorted by time.
A window feature as of time t is `cum(before t) - cum(before t - w)`, each taken
with a backward `join_asof` that excludes exact matches, so only rows strictly
before t count.  Windows are exact (no stale daily snapshots) and nothing at or
after t can leak in.

Derived features (ratios, bands) are small expression objects with two
evaluators, one for polars (offline) and one for a Python dict (online), from
one definition; the skew check proves both paths agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

_US_PER_DAY = 86_400_000_000


def parse_window(w: str) -> timedelta | None:
    """Return the length of a window like '7d' or '12h'; None for 'all'."""
    if w == "all":
        return None
    unit = {"d": "days", "h": "hours"}[w[-1]]
    return timedelta(**{unit: int(w[:-1])})


@dataclass(frozen=True)
class Agg:
    """A window aggregate: the sum of `value` over each window before t."""

    name: str
    value: pl.Expr
    windows: tuple[str, ...] = ("all",)
    recency: bool = False  # also expose days since the last row with value > 0
    description: str = ""

    def feature_names(self, group: str) -> list[str]:
        """Return the feature names this aggregate produces."""
        out = [f"{group}__{self.name}_{w}" for w in self.windows]
        if self.recency:
            out.append(f"{group}__days_since_{self.name}")
        return out


@dataclass(frozen=True)
class FeatureGroup:
    """Features of one entity computed from one source table.

    `prepare` may enrich the source (for example join a plant's category) before
    the log is built; it receives the source scan and a table reader.
    """

    name: str
    entity: tuple[str, ...]
    source: str
    timestamp: str
    aggs: tuple[Agg, ...] = ()
    latest: tuple[str, ...] = ()
    description: str = ""
    prepare: Callable[[pl.LazyFrame, Callable[[str], pl.LazyFrame]], pl.LazyFrame] | None = None

    @property
    def table(self) -> str:
        """Return the offline (gold) table holding this group's log."""
        return f"gold.fs_{self.name}"

    @property
    def feature_names(self) -> list[str]:
        """Return every feature this group serves, in a stable order."""
        out = [f"{self.name}__{c}" for c in self.latest]
        for a in self.aggs:
            out += a.feature_names(self.name)
        return out

    # ------------------------------------------------------------ offline log
    def log(self, source: pl.LazyFrame) -> pl.LazyFrame:
        """Build the cumulative log from the (prepared) source rows."""
        ent, ts = list(self.entity), self.timestamp
        per_ts = (
            source.filter(pl.all_horizontal(pl.col(e).is_not_null() for e in ent))
            .group_by([*ent, ts])
            .agg(
                *[a.value.sum().cast(pl.Float64).alias(f"v_{a.name}") for a in self.aggs],
                *[pl.col(c).last().alias(f"l_{c}") for c in self.latest],
            )
            .sort([*ent, ts])
        )
        cum = [pl.col(f"v_{a.name}").cum_sum().over(ent).alias(f"cum_{a.name}") for a in self.aggs]
        last = [
            pl.when(pl.col(f"v_{a.name}") > 0)
            .then(pl.col(ts))
            .otherwise(None)
            .forward_fill()
            .over(ent)
            .alias(f"last_{a.name}")
            for a in self.aggs
            if a.recency
        ]
        latest = [
            pl.col(f"l_{c}").forward_fill().over(ent).alias(f"latest_{c}") for c in self.latest
        ]
        return (
            per_ts.with_columns(*cum, *last, *latest)
            .select(
                [
                    *ent,
                    pl.col(ts).alias("ts"),
                    *[f"cum_{a.name}" for a in self.aggs],
                    *[f"last_{a.name}" for a in self.aggs if a.recency],
                    *[f"latest_{c}" for c in self.latest],
                ]
            )
            .sort("ts")
        )

    # ---------------------------------------------------------- point in time
    def as_of(self, log: pl.DataFrame, spine: pl.DataFrame, time_col: str) -> pl.DataFrame:
        """Return this group's features for each spine row, as of its `time_col`, strictly before.

        `spine` must hold the entity columns and `time_col`; the result has the
        spine's rows in the spine's order, with one column per feature.
        """
        ent = list(self.entity)
        base = spine.select([*ent, time_col]).with_row_index("_row").sort(time_col)
        log = log.sort("ts")
        now = base.join_asof(
            log,
            left_on=time_col,
            right_on="ts",
            by=ent,
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,
        )
        cols = [pl.col("_row")]
        for c in self.latest:
            cols.append(pl.col(f"latest_{c}").alias(f"{self.name}__{c}"))
        for a in self.aggs:
            for w in a.windows:
                cur = pl.col(f"cum_{a.name}").fill_null(0.0)
                span = parse_window(w)
                if span is None:
                    cols.append(cur.alias(f"{self.name}__{a.name}_{w}"))
                    continue
                shifted = (
                    base.with_columns((pl.col(time_col) - span).alias("_t0"))
                    .sort("_t0")
                    .join_asof(
                        log.select([*ent, "ts", f"cum_{a.name}"]),
                        left_on="_t0",
                        right_on="ts",
                        by=ent,
                        strategy="backward",
                        allow_exact_matches=False,
                        check_sortedness=False,
                    )
                    .select("_row", pl.col(f"cum_{a.name}").fill_null(0.0).alias("_old"))
                )
                now = now.join(
                    shifted.rename({"_old": f"_old_{a.name}_{w}"}), on="_row", how="left"
                )
                cols.append(
                    (cur - pl.col(f"_old_{a.name}_{w}"))
                    .round(9)
                    .alias(f"{self.name}__{a.name}_{w}")
                )
            if a.recency:
                days = (pl.col(time_col) - pl.col(f"last_{a.name}")).dt.total_microseconds()
                # rounded like the windows, so both store paths give the same bits
                days = (days / _US_PER_DAY).round(9)
                cols.append(days.alias(f"{self.name}__days_since_{a.name}"))
        return now.select(cols).sort("_row").drop("_row")


# ------------------------------------------------------------------ derived
@dataclass(frozen=True)
class Ratio:
    """num / den, null when den is 0 or null."""

    name: str
    num: str
    den: str
    description: str = ""

    def polars(self) -> pl.Expr:
        """Return the offline (polars) evaluation."""
        return (
            pl.when(pl.col(self.den) > 0)
            .then(pl.col(self.num) / pl.col(self.den))
            .otherwise(None)
            .alias(self.name)
        )

    def python(self, row: dict) -> float | None:
        """Return the online (single row) evaluation."""
        den = row.get(self.den)
        num = row.get(self.num)
        if den is None or num is None or den <= 0:
            return None
        return num / den


@dataclass(frozen=True)
class Band:
    """Index of the band a value falls in, given increasing edges (null stays null)."""

    name: str
    column: str
    edges: tuple[float, ...]
    description: str = ""

    def polars(self) -> pl.Expr:
        """Return the offline (polars) evaluation."""
        out = pl.lit(0, pl.Int64)
        for i, e in enumerate(self.edges, start=1):
            out = pl.when(pl.col(self.column) >= e).then(pl.lit(i, pl.Int64)).otherwise(out)
        return pl.when(pl.col(self.column).is_null()).then(None).otherwise(out).alias(self.name)

    def python(self, row: dict) -> int | None:
        """Return the online (single row) evaluation."""
        v = row.get(self.column)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        return sum(1 for e in self.edges if v >= e)


Derived = Ratio | Band


@dataclass(frozen=True)
class FeatureSet:
    """The groups and derived features a model uses, plus how spine rows map to keys.

    `keys` maps each group to the spine columns holding its entity (by default the
    entity names themselves).
    """

    groups: tuple[FeatureGroup, ...]
    derived: tuple[Derived, ...] = ()
    keys: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        """Return every feature name, groups first, then derived."""
        out = [f for g in self.groups for f in g.feature_names]
        return out + [d.name for d in self.derived]

    def group(self, name: str) -> FeatureGroup:
        """Return one group by name."""
        return next(g for g in self.groups if g.name == name)

    def key_columns(self, group: FeatureGroup) -> tuple[str, ...]:
        """Return the spine columns that hold a group's entity key."""
        return self.keys.get(group.name, group.entity)


def point_in_time(
    features: FeatureSet,
    logs: dict[str, pl.DataFrame],
    spine: pl.DataFrame,
    time_col: str,
    *,
    order: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Join every feature to every spine row as of the row's time (strictly before it).

    Groups whose key column is itself a feature of an earlier group (for example a
    user x category group keyed by the plant's category as of t) are resolved in
    `order`, default the order of `features.groups`.
    """
    out = spine
    for g in (features.group(n) for n in order) if order else features.groups:
        keys = features.key_columns(g)
        renamed = out.rename(dict(zip(keys, g.entity, strict=True))) if keys != g.entity else out
        part = g.as_of(logs[g.name], renamed, time_col)
        out = pl.concat([out, part], how="horizontal")
    for d in features.derived:  # in order: a derived feature may use an earlier one
        out = out.with_columns(d.polars())
    return out


def window_feature_at(log: pl.DataFrame, entity: dict, column: str, t: datetime) -> float:
    """Return a log column's cumulative value strictly before t (for tests and debugging)."""
    sel = log
    for k, v in entity.items():
        sel = sel.filter(pl.col(k) == v)
    sel = sel.filter(pl.col("ts") < t)
    return float(sel[column][-1]) if sel.height else 0.0


# ------------------------------------------------------------------ lineage
ROWS = "*"  # lineage pseudo-column: which rows a source holds, and when (volume, timing)


def _expr_columns(expr: pl.Expr) -> set[str]:
    """Return the source columns an expression reads (its root names; `_helpers` left out)."""
    return {c for c in expr.meta.root_names() if not c.startswith("_")}


def feature_lineage(features: FeatureSet) -> dict[str, frozenset[str]]:
    """Return, per feature, the source columns it reads as ``"<table>.<column>"``.

    Derived from the definitions, not written by hand: a latest value reads its
    column; a window aggregate or recency reads the root columns of its value
    expression (`polars.Expr.meta.root_names`), its group's entity columns and
    ``"<table>.*"`` (which rows exist and when: a count changes with the volume of
    rows even when no column's values do); a group keyed by another group's
    feature (`FeatureSet.keys`) reads that feature's lineage too; a derived feature
    reads the union of its inputs.  Columns a `prepare` hook joins from other tables
    (beyond such keys) are not seen.

    Examples
    --------
    >>> g = FeatureGroup("p", ("product_id",), "silver.products", "updated_at", latest=("price",))
    >>> sorted(feature_lineage(FeatureSet(groups=(g,)))["p__price"])
    ['silver.products.price']
    """
    out: dict[str, frozenset[str]] = {}
    for g in features.groups:
        extra: set[str] = set()
        for key in features.key_columns(g):
            extra |= out.get(key, frozenset())
        for c in g.latest:
            out[f"{g.name}__{c}"] = frozenset({f"{g.source}.{c}", *extra})
        for a in g.aggs:
            cols = _expr_columns(a.value) | set(g.entity) | {ROWS}
            reads = frozenset({f"{g.source}.{c}" for c in cols} | extra)
            for name in a.feature_names(g.name):
                out[name] = reads
    for d in features.derived:
        inputs = (d.num, d.den) if isinstance(d, Ratio) else (d.column,)
        out[d.name] = frozenset().union(*(out.get(i, frozenset()) for i in inputs))
    return out


def features_reading(
    features: FeatureSet, changed: Sequence[str], among: Sequence[str] | None = None
) -> list[str]:
    """Return the features (in `among`, default all) whose lineage reads a `changed` column.

    `changed` holds ``"<table>.<column>"`` names (``"<table>.*"``: the table's rows).
    """
    lineage = feature_lineage(features)
    hit = set(changed)
    names = list(among) if among is not None else features.feature_names
    return [f for f in names if lineage.get(f, frozenset()) & hit]


class EntityKeys(tuple):
    """A window aggregate's entity key columns (a tuple of names).

    A ratio of two window aggregates keyed alike also names its numerator and
    denominator (`parts`): drift judges the ratio of what the recent days added to
    each (`hortus.monitoring._drift_increments.with_rate_parts`), which the change of
    the ratio itself hides under its noise.  `window` is the aggregate's window (the
    longer of a ratio's two; None: all-time or recency): until a window is full its
    level grows and its increments are what the days added; once full, what they added
    less what dropped out, so drift calibrates it on like windows of the same regime.
    """

    parts: tuple[str, str] | None
    window: timedelta | None

    def __new__(
        cls, keys, parts: tuple[str, str] | None = None, window: timedelta | None = None
    ) -> EntityKeys:
        obj = super().__new__(cls, keys)
        obj.parts = parts
        obj.window = window
        return obj


def feature_entities(features: FeatureSet) -> dict[str, tuple[str, ...]]:
    """Return, per window aggregate (or ratio of two), its entity's spine columns.

    Drift detection judges these features on their per-entity increments
    (`hortus.monitoring.drift.calibrated_compare`, ``increments=``): a window sum
    integrates its window, so what the entity's recent rows added is the sharper
    witness of a recent change.  A ratio of two such features is keyed by the
    union of its inputs' keys.  Recency (days since the entity's last event) is
    included: its increment is 1 per day while nothing happens and drops where an
    event happened, so its mean witnesses the recent event rate, which the level
    (dominated by long-idle entities) hides.  Latest values and bands are left out
    (their level is what changes).

    Examples
    --------
    >>> g = FeatureGroup("s", ("shop_id",), "silver.sales", "ts",
    ...                  aggs=(Agg("n", pl.lit(1.0), ("7d",), recency=True),), latest=("size",))
    >>> out = feature_entities(FeatureSet(groups=(g,)))
    >>> out, out["s__n_7d"].window
    ({'s__n_7d': ('shop_id',), 's__days_since_n': ('shop_id',)}, datetime.timedelta(days=7))
    """
    out: dict[str, tuple[str, ...]] = {}
    for g in features.groups:
        keys = tuple(features.key_columns(g))
        for a in g.aggs:
            for w in a.windows:
                out[f"{g.name}__{a.name}_{w}"] = EntityKeys(keys, window=parse_window(w))
            if a.recency:
                out[f"{g.name}__days_since_{a.name}"] = EntityKeys(keys)
    for d in features.derived:
        if isinstance(d, Ratio) and d.num in out and d.den in out:
            alike = tuple(out[d.num]) == tuple(out[d.den])
            keys = tuple(dict.fromkeys((*out[d.num], *out[d.den])))
            spans = [w for w in (getattr(out[c], "window", None) for c in (d.num, d.den)) if w]
            out[d.name] = EntityKeys(
                keys, (d.num, d.den) if alike else None, window=max(spans) if spans else None
            )
    return out
