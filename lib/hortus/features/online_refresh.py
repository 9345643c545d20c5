"""Fresh online features: update the online store for the entities a new batch touched.

The `features` stage materialises the whole online store as of the last event
(`OnlineStore.materialize`) and records which silver batches (`_batch_id`) its
snapshot holds.  After that, each watch micro-batch (`hortus.monitoring.watch`) adds
silver rows; `refresh` brings the store up to date with them without rebuilding it:

1. the new rows of each group's source are those whose ``_batch_id`` the store has
   not seen (a store without that record, e.g. one materialised before it existed,
   takes the rows at or after its last refresh time instead);
2. the entities they touch are the group's entity keys in those rows (after the
   group's `prepare`, e.g. the plant's category for user x category);
3. for those entities only, the group's log is rebuilt from *all* their source rows
   (cumulative sums need the whole history) and snapshotted as of the refresh time
   (the project's ``features.as_of`` column's last value + 1 us, as the stage does);
4. the rows are written with the new batch ids and ``refreshed_at`` in one atomic
   write (`BaseOnlineStore.upsert`: one SQLite transaction, one Redis MULTI/EXEC).

Untouched entities keep their rows and the time those are as of (each row carries
``_as_of``): their window sums are those of their last update, which for an entity
without new rows differs from a recomputation only by rows leaving a window.  The
skew check compares each row at its own time, so it stays exact after refreshes
(pass logs rebuilt from the current silver tables).  Not seen: a change of a column
a group's `prepare` joins from another table (a plant changing category), and rows
a silver re-run deletes and re-inserts under an already seen batch id; the next
`dvc repro features` rebuilds everything.

Reading the sources needs unmasked reads (a masked region would be served as a
token): `refresh` refuses, naming the columns, when the acting user reads a used
column masked.  The built-in event action ``refresh_online``
(`hortus.monitoring.actions`) calls `refresh_project` after each watch batch.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from hortus.errors import HortusError
from hortus.features.definitions import FeatureGroup, FeatureSet
from hortus.features.store import AS_OF, BaseOnlineStore, snapshot_at
from hortus.lakehouse.tables import Lakehouse


@dataclass
class RefreshReport:
    """What one refresh did: entities rewritten per group, the new batches, the time."""

    at: datetime | None
    rows: dict[str, int] = field(default_factory=dict)
    batches: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None

    @property
    def note(self) -> str:
        """Return one line for the action's record."""
        if self.skipped:
            return f"skipped: {self.skipped}"
        rows = ", ".join(f"{g}={n}" for g, n in self.rows.items() if n) or "no entity touched"
        return (
            f"online store refreshed as of {self.at.isoformat() if self.at else '-'}: {rows} "
            f"({len(self.batches)} new batch(es), {self.seconds:.2f} s)"
        )


def _used_columns(g: FeatureGroup, source_cols: list[str]) -> list[str]:
    used = {*g.entity, g.timestamp, *g.latest}
    for a in g.aggs:
        used |= set(a.value.meta.root_names())
    return sorted(c for c in used if c in source_cols)


def _check_unmasked(lh: Lakehouse, fs: FeatureSet) -> None:
    for g in fs.groups:
        masked = set(lh.masked_columns(g.source))
        cols = lh.catalog.get(g.source).column_names
        hit = [c for c in _used_columns(g, cols) if c in masked]
        if hit:
            raise HortusError(
                f"refreshing the online store: user {lh.user!r} reads {g.source} "
                f"{', '.join(hit)} masked (group {g.name}); run it as a user allowed to unmask "
                "them (the pipeline user, as `dvc repro features` does)"
            )


def landing_now(lh: Lakehouse, table: str | None, column: str | None) -> datetime:
    """Return the instant just after the last value of `table.column` (now if not given)."""
    if table is None or column is None:
        return datetime.now(UTC)
    end = lh.scan(table).select(pl.col(column).max()).collect().item()
    return datetime.now(UTC) if end is None else end + timedelta(microseconds=1)


def refresh(
    lh: Lakehouse,
    fs: FeatureSet,
    store: BaseOnlineStore,
    *,
    at: datetime | None = None,
    as_of: tuple[str, str] | None = None,
) -> RefreshReport:
    """Update `store` for the entities touched by source rows it has not seen (module doc).

    `at` defaults to the instant after the last value of `as_of` (table, column),
    else now; it never goes back before the store's last refresh.
    """
    t0 = time.perf_counter()
    if not store.exists():
        return RefreshReport(None, skipped=f"no online store at {store.where} yet")
    _check_unmasked(lh, fs)
    meta = store.meta()
    seen: dict[str, list[str]] | None = json.loads(meta["batches"]) if "batches" in meta else None
    last = datetime.fromisoformat(meta.get("refreshed_at") or meta["materialized_at"])
    # the batch ids first: rows that land while we read are simply taken again next time
    now_ids: dict[str, list[str]] = {}
    for table in sorted({g.source for g in fs.groups}):
        lf = lh.scan(table)
        if "_batch_id" in lf.collect_schema().names():
            ids = lf.select(pl.col("_batch_id").unique()).collect().to_series().drop_nulls()
            now_ids[table] = sorted(ids.to_list())
    at = at or landing_now(lh, *(as_of or (None, None)))
    at = max(at, last)
    snaps: dict[str, pl.DataFrame] = {}
    for g in fs.groups:
        touched = _touched(lh, g, seen, last)
        if touched.height == 0:
            continue
        src = read_source_of(lh, g, touched)
        log = g.log(src).collect()
        snap = snapshot_at(g, log, at)
        stamp = pl.lit(at).cast(pl.Datetime("us", "UTC")).dt.epoch("us").alias(AS_OF)
        snaps[g.name] = snap.with_columns(stamp)
    new = sorted(
        {b for t, ids in now_ids.items() for b in ids}
        - {b for ids in (seen or {}).values() for b in ids}
    )
    merged = {t: sorted(set(ids) | set((seen or {}).get(t, []))) for t, ids in now_ids.items()}
    updates = {"refreshed_at": at.isoformat(), "batches": json.dumps(merged, sort_keys=True)}
    # one atomic write: the touched rows, the batches seen and the refresh time
    rows = store.upsert(snaps, updates) if snaps or new or seen is None else {}
    return RefreshReport(at, rows, new, time.perf_counter() - t0)


def _new_rows(lh: Lakehouse, table: str, seen: dict | None, ts: str, last: datetime):
    lf = lh.scan(table)
    if seen is not None and "_batch_id" in lf.collect_schema().names():
        done = pl.Series(seen.get(table, []), dtype=pl.String)
        return lf.filter(~pl.col("_batch_id").is_in(done.implode()))
    return lf.filter(pl.col(ts) >= last)


def _touched(lh: Lakehouse, g: FeatureGroup, seen: dict | None, last: datetime) -> pl.DataFrame:
    """Return the entity keys of a group that new source rows touch."""
    new = _new_rows(lh, g.source, seen, g.timestamp, last)
    if g.prepare:
        new = g.prepare(new, lh.scan)
    ent = list(g.entity)
    return (
        new.filter(pl.all_horizontal(pl.col(e).is_not_null() for e in ent))
        .select(ent)
        .unique()
        .collect()
    )


def read_source_of(lh: Lakehouse, g: FeatureGroup, touched: pl.DataFrame) -> pl.LazyFrame:
    """Return a group's prepared source rows of the touched entities only (all their history)."""
    src = lh.scan(g.source)
    names = src.collect_schema().names()
    for e in g.entity:  # filters the scan can push down, before `prepare`
        if e in names:
            src = src.filter(pl.col(e).is_in(touched[e].unique().implode()))
    src = g.prepare(src, lh.scan) if g.prepare else src
    return src.join(touched.lazy(), on=list(g.entity), how="semi")


def refresh_project(lh: Lakehouse, *, params: dict[str, Any] | None = None) -> RefreshReport:
    """Refresh the project's online store (hortus.yaml `features`, params.yaml backend)."""
    from hortus.features.online import open_store
    from hortus.project.definition import Project

    project = Project.load(lh.paths.root)
    fs = project.feature_set()
    if fs is None:
        return RefreshReport(None, skipped=f"{project.source} declares no features")
    store = open_store(lh.paths.root, fs, params)
    try:
        return refresh(lh, fs, store, as_of=project.landing_time())
    finally:
        store.close()
