"""Feature store: offline Delta logs, point-in-time training sets, an online store, skew checks.

- Offline: each `FeatureGroup` is materialised as a cumulative log in the gold
  table `gold.fs_<group>` (contract derived from the definition, so the catalog,
  the data dictionary and the model signature know every feature's type).
- Training sets: `training_set` joins every feature to every spine row as of
  the row's time, strictly before it (see `hortus.features.definitions.point_in_time`).
- Online: `OnlineStore` is a SQLite file (one table per group, one row per
  entity, primary-key lookups) materialised from the offline logs as of one
  time; `hortus.features._redis.RedisOnlineStore` is the option for several server
  processes (params.yaml ``features.online``; `hortus.features.online.open_store`).
  Both share `BaseOnlineStore`: `get_vectors` looks up many requests with one
  query per group (not per entity), raises `hortus.errors.UnknownEntity` for an
  entity missing from a root group (`root_groups`) and serves defaults only where
  a known entity has no history yet.  The online snapshot is computed by a second,
  independent code path (group-by of the log rows before T, not the as-of join),
  so the skew check compares two implementations, plus the store round trip and
  the Python evaluation of derived features.  Lookups under the access policy go
  through `hortus.features.online.open_online`; watch batches refresh the touched
  entities (`hortus.features.online_refresh`).
- Skew: `skew_check` compares offline and online feature values for a sample of
  entities and reports every difference by feature.
"""

from __future__ import annotations

import json
import math
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from hortus.errors import HortusError, UnknownEntity
from hortus.features.definitions import Band, FeatureGroup, FeatureSet, parse_window
from hortus.lakehouse.contracts import Column, Contract
from hortus.lakehouse.tables import Lakehouse

_US_PER_DAY = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CONTRACT_TYPES = {
    pl.String: "string",
    pl.Int64: "int",
    pl.Float64: "float",
    pl.Boolean: "bool",
    pl.Date: "date",
}


# ---------------------------------------------------------------- contracts
def _source_column(name: str, source: Contract, others: Iterable[Contract]) -> Column | None:
    for c in (source, *others):
        for col in c.columns:
            if col.name == name:
                return col
    return None


def log_contract(group: FeatureGroup, contracts: dict[str, Contract]) -> Contract:
    """Derive the contract of a group's offline log table from its definition."""
    from hortus.lakehouse.silver import stored_contract

    # look columns up as silver stores them (tokens, generalised age_band with its bands)
    source = stored_contract(contracts[group.source])
    others = [stored_contract(c) for c in contracts.values() if c.layer == "silver"]
    cols: list[Column] = []
    for e in group.entity:
        base = _source_column(e, source, others)
        cols.append(
            Column(e, base.type if base else "string", False, description=f"Entity key ({e}).")
        )
    cols.append(
        Column("ts", "datetime", False, description=f"Time of the source rows ({group.timestamp}).")
    )
    for a in group.aggs:
        cols.append(
            Column(
                f"cum_{a.name}",
                "float",
                False,
                min=None,
                description=f"Running sum of {a.name} up to and including ts.",
            )  # fmt: skip
        )
    for a in group.aggs:
        if a.recency:
            cols.append(
                Column(
                    f"last_{a.name}",
                    "datetime",
                    True,
                    description=f"Last time with {a.name} > 0, up to ts.",
                )  # fmt: skip
            )
    for c in group.latest:
        base = _source_column(c, source, others)
        cols.append(
            Column(
                f"latest_{c}",
                base.type if base else "string",
                True,
                allowed=base.allowed if base else None,
                sensitive=base.sensitive if base else c.endswith("age_band"),
                description=f"Latest {c} up to ts.",
            )
        )
    return Contract(
        name=group.table.split(".", 1)[1],
        layer="gold",
        columns=tuple(cols),
        description=f"Feature log of group {group.name}: {group.description}",
        owner="ml-engineers",
        freshness_sla_hours=source.freshness_sla_hours,
        primary_key=(*group.entity, "ts"),
        order_by="ts",
        shop_opened=source.shop_opened,
        source=source.source,
    )


def feature_columns(fs: FeatureSet, contracts: dict[str, Contract]) -> list[Column]:
    """Return one contract column per served feature (type, allowed values, sensitivity)."""
    out: list[Column] = []
    for g in fs.groups:
        log = {c.name: c for c in log_contract(g, contracts).columns}
        for c in g.latest:
            src = log[f"latest_{c}"]
            out.append(Column(f"{g.name}__{c}", src.type, True, allowed=src.allowed,
                              sensitive=src.sensitive, description=src.description))  # fmt: skip
        for a in g.aggs:
            for w in a.windows:
                span = "all time" if w == "all" else f"the {w} before t"
                out.append(Column(f"{g.name}__{a.name}_{w}", "float", False, min=0.0,
                                  description=f"Sum of {a.name} over {span}."))  # fmt: skip
            if a.recency:
                desc = f"Days since the last {a.name} before t."
                name = f"{g.name}__days_since_{a.name}"
                out.append(Column(name, "float", True, min=0.0, description=desc))
    for d in fs.derived:
        kind = "int" if isinstance(d, Band) else "float"
        out.append(Column(d.name, kind, True, description=d.description or repr(d)))
    return out


# ------------------------------------------------------------------ offline
def read_source(lh: Lakehouse, group: FeatureGroup) -> pl.LazyFrame:
    """Return a group's (prepared) source rows."""
    src = lh.scan(group.source)
    return group.prepare(src, lh.scan) if group.prepare else src


def build_offline(lh: Lakehouse, fs: FeatureSet, executor=None) -> dict[str, dict]:
    """Write every group's cumulative log to its gold table; return rows and versions.

    On a distributing executor (default: the project's, `hortus.executor`) per entity
    shard as tasks (`hortus.executor.parallel.feature_logs`); the same rows, one
    commit per table.
    """
    from hortus.executor.base import executor_for

    executor = executor or executor_for(lh.paths.root)
    out = {}
    if executor.kind != "local":
        from hortus.executor import parallel

        for g, log, reads in parallel.feature_logs(lh, fs, executor):
            lh.reads.clear()
            lh.reads.update(reads)
            version = lh.write(g.table, log, mode="overwrite")
            out[g.table] = {"rows": log.height, "version": version}
        return out
    for g in fs.groups:
        lh.reads.clear()
        log = g.log(read_source(lh, g)).collect()
        schema = lh.catalog.get(g.table).schema
        log = log.select([pl.col(c).cast(t) for c, t in schema.items()])
        version = lh.write(g.table, log, mode="overwrite")
        out[g.table] = {"rows": log.height, "version": version}
    return out


def read_logs(lh: Lakehouse, fs: FeatureSet) -> dict[str, pl.DataFrame]:
    """Read every group's offline log."""
    return {g.name: lh.read(g.table) for g in fs.groups}


def training_set(
    lh: Lakehouse, fs: FeatureSet, spine: pl.DataFrame, time_col: str, executor=None
) -> pl.DataFrame:
    """Join every feature to each spine row as of its time (point in time, strictly before).

    On a distributing executor (default: the project's, `hortus.executor`) per time
    slice as tasks (`hortus.executor.parallel.training_set`); the same rows.
    """
    from hortus.executor.base import executor_for
    from hortus.features.definitions import point_in_time

    executor = executor or executor_for(lh.paths.root)
    if executor.kind != "local" and executor.distributes(spine.height):
        from hortus.executor import parallel

        return parallel.training_set(lh, fs, spine, time_col, executor)
    return point_in_time(fs, read_logs(lh, fs), spine, time_col)


# ------------------------------------------------------------------- online
def snapshot_at(group: FeatureGroup, log: pl.DataFrame, t: datetime) -> pl.DataFrame:
    """Return each entity's features as of t (strictly before), by group-by, not as-of join.

    This is the online path's own implementation; `skew_check` compares it with
    the offline as-of join.
    """
    ent = list(group.entity)
    before = log.filter(pl.col("ts") < t).sort([*ent, "ts"])
    last = [pl.col(c).last() for c in before.columns if c not in (*ent, "ts")]
    snap = before.group_by(ent).agg(last)
    cols: list[pl.Expr] = [pl.col(e) for e in ent]
    cols += [pl.col(f"latest_{c}").alias(f"{group.name}__{c}") for c in group.latest]
    for a in group.aggs:
        for w in a.windows:
            span = parse_window(w)
            name = f"{group.name}__{a.name}_{w}"
            if span is None:
                cols.append(pl.col(f"cum_{a.name}").alias(name))
                continue
            old = (
                before.filter(pl.col("ts") < t - span)
                .group_by(ent)
                .agg(pl.col(f"cum_{a.name}").last().alias(f"_old_{name}"))
            )
            snap = snap.join(old, on=ent, how="left")
            cols.append(
                (pl.col(f"cum_{a.name}") - pl.col(f"_old_{name}").fill_null(0.0))
                .round(9)
                .alias(name)
            )
        if a.recency:
            days = (pl.lit(t) - pl.col(f"last_{a.name}")).dt.total_microseconds() / _US_PER_DAY
            cols.append(days.round(9).alias(f"{group.name}__days_since_{a.name}"))
    return snap.select(cols).sort(ent)


def _defaults(group: FeatureGroup) -> dict[str, Any]:
    """Feature values for an entity with no history: zero sums, unknown latest/recency."""
    out: dict[str, Any] = {f"{group.name}__{c}": None for c in group.latest}
    for a in group.aggs:
        out |= {f"{group.name}__{a.name}_{w}": 0.0 for w in a.windows}
        if a.recency:
            out[f"{group.name}__days_since_{a.name}"] = None
    return out


def root_groups(fs: FeatureSet, contracts: dict[str, Contract]) -> list[str]:
    """Return the groups whose rows *are* their entities: a missing row is an unknown entity.

    A group is a root of its entity when it is keyed by request columns (not by an
    earlier group's feature) and its source table's primary key starts with the
    entity columns: every row of the source is one entity, or one version of it
    (a customers table keyed by the customer id, a catalogue keyed by
    (item id, updated_at)).  An entity without a row there is not known to the
    store, and a lookup raises `UnknownEntity`.  Every other group (events,
    reviews, user x plant pairs) legitimately has no row for a known entity with
    no history yet (a plant nobody viewed, a user's first visit) and serves the
    defaults (zero sums, unknown latest values and recency), exactly what the
    offline as-of join gives for no prior rows.
    """
    out = []
    for g in fs.groups:
        source = contracts.get(g.source)
        if source is None or fs.key_columns(g) != g.entity:
            continue
        if tuple(source.primary_key[: len(g.entity)]) == tuple(g.entity):
            out.append(g.name)
    return out


def lookup_waves(fs: FeatureSet) -> list[list[FeatureGroup]]:
    """Return the groups in waves: a group's keys are all known after the waves before it.

    A group keyed by request columns is in the first wave; one keyed by another
    group's feature (an item's category) follows that group.  A backend may fetch
    all groups of a wave in one round trip.
    """
    produced = {f: i for i, g in enumerate(fs.groups) for f in g.feature_names}
    wave_of: dict[str, int] = {}
    for g in fs.groups:
        deps = [wave_of[fs.groups[produced[k]].name] for k in fs.key_columns(g) if k in produced]
        wave_of[g.name] = 1 + max(deps) if deps else 0
    waves: list[list[FeatureGroup]] = [[] for _ in range(max(wave_of.values(), default=-1) + 1)]
    for g in fs.groups:
        waves[wave_of[g.name]].append(g)
    return waves


def snapshots(
    fs: FeatureSet, logs: dict[str, pl.DataFrame], at: datetime
) -> dict[str, pl.DataFrame]:
    """Return every group's online rows as of `at` (entity keys, features, ``_as_of``)."""
    stamp = pl.lit(at).cast(pl.Datetime("us", "UTC")).dt.epoch("us").alias(AS_OF)
    return {g.name: snapshot_at(g, logs[g.name], at).with_columns(stamp) for g in fs.groups}


def store_meta(
    fs: FeatureSet,
    at: datetime,
    contracts: dict[str, Contract],
    rows: dict[str, int],
    *,
    versions: dict[str, int] | None = None,
    batches: dict[str, list[str]] | None = None,
) -> dict[str, str]:
    """Return the metadata a store keeps with its rows (all values are strings)."""
    types = {c.name: c.type for c in feature_columns(fs, contracts)}
    meta = {
        "materialized_at": at.isoformat(),
        "refreshed_at": at.isoformat(),
        "features": json.dumps(fs.feature_names),
        "source_versions": json.dumps(versions or {}, sort_keys=True),
        "rows": json.dumps(rows, sort_keys=True),
        "types": json.dumps(types, sort_keys=True),
        "roots": json.dumps(root_groups(fs, contracts)),
    }
    if batches is not None:
        meta["batches"] = json.dumps({t: sorted(b) for t, b in batches.items()}, sort_keys=True)
    return meta


def source_batches(lh: Lakehouse, fs: FeatureSet) -> dict[str, list[str]]:
    """Return the silver batch ids (`_batch_id`) each group source holds now.

    Kept in the store's metadata at materialisation, so an incremental refresh
    (`hortus.features.online_refresh`) knows which rows it has not seen yet.
    """
    out = {}
    for table in sorted({g.source for g in fs.groups}):
        if not lh.exists(table):
            continue
        lf = lh.scan(table)
        if "_batch_id" in lf.collect_schema().names():
            ids = lf.select(pl.col("_batch_id").unique()).collect().to_series()
            out[table] = sorted(i for i in ids.to_list() if i is not None)
    return out


AS_OF = "_as_of"  # per-row column: the time (us since the epoch, UTC) the row's values are as of
_SQL_TYPES = {"string": "TEXT", "int": "INTEGER", "float": "REAL", "bool": "INTEGER"}
_MAX_VARS = 900  # bound variables per SQLite statement (the old default limit is 999)
CHECK_EVERY_S = 0.5  # how often a reader looks for a re-materialised SQLite file
_MAX_COMPOUND = 256  # key lookups per compound SELECT (SQLite's default limit is 500)


def _fmt_key(cols: Sequence[str], key: tuple) -> str:
    return ", ".join(f"{c}={v!r}" for c, v in zip(cols, key, strict=True))


class BaseOnlineStore:
    """What every online store backend shares: batched lookups, unknown entities, derived features.

    A backend implements `_load` (column names per group and the metadata),
    `_fetch` (rows of some groups for some keys, batched), `_write` (a whole new
    snapshot, switched atomically) and `_upsert` (some entities' rows, atomically).
    """

    backend = "?"
    where = "?"

    def __init__(self, fs: FeatureSet):
        self.fs = fs
        self._names: dict[str, list[str]] = {}
        self._bools: set[str] = set()
        self._roots: set[str] = set()
        self._waves = lookup_waves(fs)
        self._keys = {g.name: tuple(fs.key_columns(g)) for g in fs.groups}
        self._width = {g.name: len(g.entity) for g in fs.groups}
        produced = set(fs.feature_names)
        self._request = sorted({k for ks in self._keys.values() for k in ks} - produced)
        self._dflt = {g.name: _defaults(g) for g in fs.groups}
        self._order = fs.feature_names
        self._lock = threading.RLock()

    # ------------------------------------------------------------ backend
    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fetch(self, wanted: list[tuple[str, list[tuple]]]) -> list[dict[tuple, tuple]]:
        """Return, per (group, keys), {key: (*values, as_of_us)} for the keys found."""
        raise NotImplementedError  # pragma: no cover

    def _write(self, snaps: dict[str, pl.DataFrame], types: dict[str, str],
               meta: dict[str, str]) -> None:  # fmt: skip
        raise NotImplementedError  # pragma: no cover

    def _upsert(self, snaps: dict[str, pl.DataFrame], meta: dict[str, str]) -> None:
        raise NotImplementedError  # pragma: no cover

    def _begin(self) -> None:
        """Start a consistent read of several groups (a backend may need nothing)."""

    def _end(self) -> None:
        """End the read `_begin` started."""

    def meta(self) -> dict[str, str]:
        """Return the store's metadata (materialisation time, features, source versions...)."""
        raise NotImplementedError  # pragma: no cover

    def entity_keys(self, group: str, limit: int = 20) -> list[dict[str, Any]]:
        """Return up to `limit` entity keys a group holds (sorted where the backend can)."""
        raise NotImplementedError  # pragma: no cover

    def exists(self) -> bool:
        """Return whether the store has been materialised."""
        raise NotImplementedError  # pragma: no cover

    def close(self) -> None:
        """Release connections (reopened on the next lookup)."""

    def delete_entities(self, column: str, value: str) -> int:
        """Delete every row whose entity key `column` is `value` (right to erasure); count them.

        Only groups whose entity includes `column` are touched; the bytes of the deleted
        rows must not survive in the backend's files (`hortus.governance.erasure`).
        """
        raise NotImplementedError  # pragma: no cover

    def _configure(self, meta: dict[str, str]) -> None:
        types = json.loads(meta["types"])
        self._bools = {n for n, t in types.items() if t == "bool"}
        self._roots = set(json.loads(meta.get("roots", "[]")))

    # -------------------------------------------------------- materialise
    def materialize(
        self,
        logs: dict[str, pl.DataFrame],
        at: datetime,
        contracts: dict[str, Contract],
        *,
        versions: dict[str, int] | None = None,
        batches: dict[str, list[str]] | None = None,
    ) -> dict[str, int]:
        """Write every group's snapshot as of `at`, replacing the served one atomically.

        `batches` (`source_batches`) records which source rows the snapshot holds,
        for incremental refreshes.  Returns the rows per group.
        """
        snaps = snapshots(self.fs, logs, at)
        rows = {name: s.height for name, s in snaps.items()}
        meta = store_meta(self.fs, at, contracts, rows, versions=versions, batches=batches)
        types = {c.name: c.type for c in feature_columns(self.fs, contracts)}
        with self._lock:
            self._write(snaps, types, meta)
            self.close()
        return rows

    def upsert(self, snaps: dict[str, pl.DataFrame], meta: dict[str, str]) -> dict[str, int]:
        """Replace some entities' rows (group -> rows with ``_as_of``) and metadata atomically."""
        with self._lock:
            self._upsert(snaps, meta)
        return {name: s.height for name, s in snaps.items()}

    @property
    def materialized_at(self) -> datetime:
        """Return the time the store was materialised as of (see also ``refreshed_at``)."""
        return datetime.fromisoformat(self.meta()["materialized_at"])

    @property
    def refreshed_at(self) -> datetime:
        """Return the time of the last incremental refresh (the materialisation if none)."""
        meta = self.meta()
        return datetime.fromisoformat(meta.get("refreshed_at") or meta["materialized_at"])

    # -------------------------------------------------------------- lookups
    def get_vectors(self, entities: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return the feature vector of each request, e.g. [{user_id, plant_id}, ...], in order.

        Batched: one fetch per group (per wave of groups for a networked backend)
        for all the entities, never one per entity.  A root entity that the store
        does not hold (`root_groups`) raises `UnknownEntity` naming it; a known
        entity with no row in another group gets that group's defaults.
        """
        return self._lookup(entities)[0]

    def get_vector(self, entity: dict[str, Any]) -> dict[str, Any]:
        """Return the full feature vector for one request (see `get_vectors`)."""
        return self._lookup([entity])[0][0]

    def get_group(self, group: str, key: tuple) -> dict[str, Any]:
        """Return one group's features for one key (defaults if a non-root group has none)."""
        g = self.fs.group(group)
        key = tuple(None if v is None else str(v) for v in key)
        with self._lock:
            self._ensure()
            vals = self._fetch([(group, [key])])[0].get(key)
        if vals is None:
            if group in self._roots:
                raise self._unknown(g, key)
            return dict(self._dflt[group])
        out = dict(zip(self._names[group], vals, strict=False))
        for name in self._bools.intersection(out):
            if out[name] is not None:
                out[name] = bool(out[name])
        return out

    def _ensure(self) -> None:
        if not self._names:
            self._load()

    def _unknown(self, g: FeatureGroup, key: tuple) -> UnknownEntity:
        what = _fmt_key(g.entity, key)
        return UnknownEntity(
            f"unknown entity {what}: not in the online store ({self.backend} {self.where}, "
            f"group {g.name}); list known ones with `hortus features keys {g.name}`",
            dict(zip(g.entity, key, strict=True)),
        )

    def _lookup(
        self, entities: Sequence[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, int | None]]]:
        """Return the vectors and, per entity, the as-of time (us) of each group's row."""
        rows = [dict(e) for e in entities]
        as_of: list[dict[str, int | None]] = [{} for _ in rows]
        if not rows:
            return [], []
        for row in rows:  # keys are stored as text
            for c in self._request:
                v = row.get(c)
                if v is not None and type(v) is not str:
                    row[c] = str(v)
        with self._lock:
            self._ensure()
            self._begin()
            try:
                self._lookup_waves(rows, as_of)
            finally:
                self._end()
        bools = self._bools
        derived = [(d.name, d.python) for d in self.fs.derived]
        order = self._order
        pick = operator.itemgetter(*order)
        if len(order) == 1:
            pick = lambda row: (row[order[0]],)  # noqa: E731 - itemgetter of one is not a tuple
        out = []
        for row in rows:
            for name in bools:  # SQLite stores booleans as 0/1
                v = row.get(name)
                if v is not None:
                    row[name] = bool(v)
            for name, fn in derived:
                row[name] = fn(row)
            out.append(dict(zip(order, pick(row), strict=True)))
        return out, as_of

    def _lookup_waves(self, rows: list[dict[str, Any]], as_of: list[dict[str, int | None]]) -> None:
        """Fetch every group for every row, wave by wave, updating `rows` and `as_of` in place."""
        for wave in self._waves:
            wanted = []
            for g in wave:
                cols = self._keys[g.name]
                try:
                    if len(cols) == 1:
                        c0 = cols[0]
                        keys = [(r[c0],) for r in rows]
                    else:
                        keys = [tuple([r[c] for c in cols]) for r in rows]
                except KeyError as exc:
                    raise HortusError(
                        f"online lookup: a request misses the entity column {exc.args[0]!r} "
                        f"(group {g.name} is keyed by {', '.join(cols)})"
                    ) from None
                wanted.append((g, keys))
            found = self._fetch(
                [(g.name, [k for k in dict.fromkeys(keys) if None not in k]) for g, keys in wanted]
            )
            for (g, keys), got in zip(wanted, found, strict=True):
                names = self._names[g.name]
                root = g.name in self._roots
                dflt = self._dflt[g.name]
                stamp = len(names)
                # one dict per distinct key (a recommendation repeats its user's rows)
                hits = {k: (dict(zip(names, v, strict=False)), v[stamp] if len(v) > stamp else None)
                        for k, v in got.items()}  # fmt: skip
                gname = g.name
                for i, key in enumerate(keys):
                    hit = hits.get(key)
                    if hit is None:
                        if root:
                            raise self._unknown(g, key)
                        rows[i].update(dflt)
                        as_of[i][gname] = None
                    else:
                        rows[i].update(hit[0])
                        as_of[i][gname] = hit[1]


class OnlineStore(BaseOnlineStore):
    """Feature vectors by entity in a SQLite file (the embedded default backend).

    One table per group (entity keys, features, ``_as_of``), one row per entity,
    primary-key lookups batched with ``IN (...)`` (a ``UNION ALL`` of key lookups for
    composite keys: SQLite scans the table for ``(a, b) IN (VALUES ...)``),
    padded to powers of two so SQLite's statement cache serves every batch size.
    A materialisation writes a new file and renames it over the old one (readers
    notice the new file within `CHECK_EVERY_S`); an incremental refresh updates rows
    in one transaction, and each lookup reads all its groups in one read
    transaction, so a vector never mixes two refreshes.

    Examples
    --------
    >>> store = OnlineStore(Path("lakehouse/online/features.sqlite"), FEATURES)  # doctest: +SKIP
    >>> store.get_vectors([{"user_id": "u000001", "plant_id": "p0007"}])        # doctest: +SKIP
    [{'user_activity__sessions_7d': 2.0, ...}]
    """

    backend = "sqlite"

    def __init__(self, path: Path, fs: FeatureSet):
        super().__init__(fs)
        self.path = Path(path)
        self.where = str(self.path)
        self._con: sqlite3.Connection | None = None
        self._sql: dict[tuple[str, int], str] = {}
        self._cols: dict[str, list[str]] = {}  # selected columns per group
        self._ident: tuple[int, int] | None = None
        self._checked = 0.0

    def exists(self) -> bool:
        """Return whether the SQLite file exists."""
        return self.path.exists()

    # ---------------------------------------------------------- materialise
    def _write(self, snaps: dict[str, pl.DataFrame], types: dict[str, str],
               meta: dict[str, str]) -> None:  # fmt: skip
        """Write a new SQLite file and rename it over the served one (atomic)."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        con = sqlite3.connect(tmp)
        with con:
            con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            for g in self.fs.groups:
                snap = snaps[g.name]
                names = [c for c in snap.columns if c not in g.entity and c != AS_OF]
                cols = [f'"{e}" TEXT NOT NULL' for e in g.entity]
                cols += [f'"{c}" {_SQL_TYPES.get(types[c], "TEXT")}' for c in names]
                cols.append(f'"{AS_OF}" INTEGER')
                keys = ", ".join(f'"{e}"' for e in g.entity)
                con.execute(
                    f'CREATE TABLE "{g.name}" ({", ".join(cols)}, PRIMARY KEY ({keys})) '
                    "WITHOUT ROWID"
                )
                marks = ", ".join("?" * len(snap.columns))
                con.executemany(f'INSERT INTO "{g.name}" VALUES ({marks})', snap.iter_rows())
            con.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
        con.close()
        tmp.replace(self.path)

    def _upsert(self, snaps: dict[str, pl.DataFrame], meta: dict[str, str]) -> None:
        """Replace the given rows and metadata in one write transaction."""
        self.close()
        con = sqlite3.connect(self.path, timeout=30.0)
        try:
            with con:
                for name, snap in snaps.items():
                    if snap.height == 0:
                        continue
                    cur = con.execute(f'SELECT * FROM "{name}" LIMIT 0')
                    cols = [d[0] for d in cur.description]
                    snap = snap.select(cols)
                    marks = ", ".join("?" * len(cols))
                    con.executemany(
                        f'INSERT OR REPLACE INTO "{name}" VALUES ({marks})', snap.iter_rows()
                    )
                con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", sorted(meta.items()))
        finally:
            con.close()

    # -------------------------------------------------------------- lookups
    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_dev)

    def _ensure(self) -> None:
        # a materialisation renames a new file over the old one: reopen when it did (the
        # file is looked at once per CHECK_EVERY_S at most; refreshes update it in place)
        now = time.monotonic()
        if self._con is not None and now < self._checked + CHECK_EVERY_S:
            return
        self._checked = now
        if self._con is None or self._stat() != self._ident:
            self.close()
            self._load()

    def _load(self) -> None:
        ident = self._stat()
        if ident is None:
            raise FileNotFoundError(
                f"online store {self.path} does not exist: run `dvc repro features`"
            )
        con = sqlite3.connect(
            f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
            isolation_level=None, timeout=30.0, cached_statements=512,
        )  # fmt: skip
        names = {}
        for g in self.fs.groups:
            cur = con.execute(f'SELECT * FROM "{g.name}" LIMIT 0')
            cols = [d[0] for d in cur.description][len(g.entity) :]
            names[g.name] = [c for c in cols if c != AS_OF]
            has_as_of = AS_OF in cols
            sel = ", ".join(f'"{c}"' for c in (*g.entity, *names[g.name]))
            sel += f', "{AS_OF}"' if has_as_of else ""
            self._sql[(g.name, -1)] = f'SELECT {sel} FROM "{g.name}"'
            cols = [*g.entity, *names[g.name], *([AS_OF] if has_as_of else [])]
            self._cols[g.name] = cols
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        self._con, self._ident, self._names = con, ident, names
        self._configure(meta)

    def _select(self, group: str, n: int) -> str:
        sql = self._sql.get((group, n))
        if sql is None:
            ent = self.fs.group(group).entity
            cols = ", ".join(f'"{e}"' for e in ent)
            if len(ent) == 1:
                where = f"{cols} IN ({', '.join('?' * n)})"
            else:  # row values `IN (VALUES ...)` scan the table: a compound of key lookups
                one = " AND ".join(f'"{e}" = ?' for e in ent)
                base = self._sql[(group, -1)]
                self._sql[(group, n)] = " UNION ALL ".join([f"{base} WHERE {one}"] * n)
                return self._sql[(group, n)]
            sql = self._sql[(group, n)] = f"{self._sql[(group, -1)]} WHERE {where}"
        return sql

    def _joined(self, groups: tuple[str, ...]) -> str:
        """Return one statement reading one key of each group (LEFT JOINs on primary keys)."""
        sql = self._sql.get(("join", groups))  # type: ignore[arg-type]
        if sql is None:
            sel, joins = [], []
            for i, group in enumerate(groups):
                sel += [f't{i}."{c}"' for c in self._cols[group]]
                on = " AND ".join(f't{i}."{e}" = ?' for e in self.fs.group(group).entity)
                joins.append(f'LEFT JOIN "{group}" AS t{i} ON {on}')
            sql = f"SELECT {', '.join(sel)} FROM (SELECT 1) {' '.join(joins)}"
            self._sql[("join", groups)] = sql  # type: ignore[index]
        return sql

    def _fetch(self, wanted: list[tuple[str, list[tuple]]]) -> list[dict[tuple, tuple]]:
        con = self._con
        assert con is not None
        if len(wanted) > 1 and all(len(keys) == 1 for _, keys in wanted):
            # one request's wave: every group in one statement instead of one per group
            groups = tuple(g for g, _ in wanted)
            row = con.execute(self._joined(groups), [v for _, k in wanted for v in k[0]])
            row = row.fetchone()
            out, at = [], 0
            for group, keys in wanted:
                n, width = len(self._cols[group]), self._width[group]
                part = row[at : at + n]
                at += n
                out.append({keys[0]: part[width:]} if part[0] is not None else {})
            return out
        out = []
        for group, keys in wanted:
            width = self._width[group]
            got: dict[tuple, tuple] = {}
            n_keys = len(keys)
            if n_keys == 1:  # the common single request: no chunking, no padding
                sql = self._sql.get((group, 1)) or self._select(group, 1)
                out.append({r[:width]: r[width:] for r in con.execute(sql, keys[0])})
                continue
            step = _MAX_VARS if width == 1 else _MAX_COMPOUND
            for s in range(0, n_keys, step):
                chunk = keys[s : s + step]
                n = 1 << (len(chunk) - 1).bit_length()  # pad: few distinct statements
                chunk = chunk + [chunk[0]] * (min(n, step) - len(chunk))
                params = [v for k in chunk for v in k]
                rows = con.execute(self._select(group, len(chunk)), params).fetchall()
                got.update({r[:width]: r[width:] for r in rows})
            out.append(got)
        return out

    def _begin(self) -> None:
        assert self._con is not None
        self._con.execute("BEGIN")  # one read transaction for every group of the lookup

    def _end(self) -> None:
        if self._con is not None and self._con.in_transaction:
            self._con.execute("COMMIT")

    def meta(self) -> dict[str, str]:
        """Return the store's metadata (materialisation time, features, source versions)."""
        with self._lock:
            self._ensure()
            assert self._con is not None
            return dict(self._con.execute("SELECT key, value FROM meta").fetchall())

    def entity_keys(self, group: str, limit: int = 20) -> list[dict[str, Any]]:
        """Return up to `limit` entity keys of a group, sorted."""
        ent = self.fs.group(group).entity
        cols = ", ".join(f'"{e}"' for e in ent)
        with self._lock:
            self._ensure()
            assert self._con is not None
            cur = self._con.execute(
                f'SELECT {cols} FROM "{group}" ORDER BY {cols} LIMIT ?', (limit,)
            )
            return [dict(zip(ent, r, strict=True)) for r in cur.fetchall()]

    def delete_entities(self, column: str, value: str) -> int:
        """Delete the entity's rows in one transaction, then VACUUM (no bytes left behind)."""
        if not self.exists():
            return 0
        self.close()
        con = sqlite3.connect(self.path, timeout=30.0)
        deleted = 0
        try:
            with con:
                for g in self.fs.groups:
                    if column in g.entity:
                        cur = con.execute(f'DELETE FROM "{g.name}" WHERE "{column}" = ?', (value,))
                        deleted += cur.rowcount
            con.execute("VACUUM")
        finally:
            con.close()
        return deleted

    def close(self) -> None:
        """Close the connection (reopened on the next lookup)."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
                self._ident = None
                self._sql.clear()


# --------------------------------------------------------------------- skew
def sample_entities(
    lh: Lakehouse, table: str, keys: Sequence[str], n: int, seed: int
) -> pl.DataFrame:
    """Return a seeded sample of `n` distinct request keys (`keys` columns) seen in `table`.

    Rows with a null key are left out; the sample is sorted by the keys, so the same
    table, `n` and seed give the same entities.
    """
    keys = list(keys)
    found = (
        lh.scan(table)
        .filter(pl.all_horizontal(pl.col(k).is_not_null() for k in keys))
        .select(keys)
        .unique()
        .sort(keys)
        .collect()
    )
    return found.sample(min(n, found.height), seed=seed).sort(keys)


@dataclass
class SkewReport:
    """Offline vs online comparison, by feature."""

    at: datetime
    entities: int
    by_feature: pl.DataFrame  # feature, compared, mismatches, max_abs_diff, example

    @property
    def ok(self) -> bool:
        """Return whether every feature agreed on every sampled entity."""
        return int(self.by_feature["mismatches"].sum()) == 0

    def to_dict(self) -> dict:
        """Return a JSON-friendly summary."""
        bad = self.by_feature.filter(pl.col("mismatches") > 0)
        return {
            "at": self.at.isoformat(),
            "entities": self.entities,
            "features": self.by_feature.height,
            "mismatched_features": bad["feature"].to_list(),
            "ok": self.ok,
            "details": bad.to_dicts(),
        }


def _same(a: Any, b: Any, tol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        if math.isnan(float(a)) or math.isnan(float(b)):
            return math.isnan(float(a)) and math.isnan(float(b))
        return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(a)))
    return a == b


def _offline_at(
    fs: FeatureSet, logs: dict[str, pl.DataFrame], entities: pl.DataFrame,
    times: dict[str, list[datetime]],
) -> pl.DataFrame:  # fmt: skip
    """Return the offline as-of join of every feature, each group at its own time per row.

    `point_in_time` with one spine time per group: an online row refreshed after
    the store's materialisation is compared at the time it is as of.
    """
    out = entities
    for g in fs.groups:
        keys = fs.key_columns(g)
        renamed = out.rename(dict(zip(keys, g.entity, strict=True))) if keys != g.entity else out
        spine = renamed.select(list(g.entity)).with_columns(
            pl.Series("_t", times[g.name], dtype=pl.Datetime("us", "UTC"))
        )
        out = pl.concat([out, g.as_of(logs[g.name], spine, "_t")], how="horizontal")
    for d in fs.derived:
        out = out.with_columns(d.polars())
    return out


def skew_check(
    store: BaseOnlineStore,
    logs: dict[str, pl.DataFrame],
    entities: pl.DataFrame,
    *,
    tolerance: float = 1e-9,
) -> SkewReport:
    """Compare the offline as-of join with the online store (any backend) for sampled entities.

    `entities` holds the request keys (e.g. customer_id, product_id).  Each
    online row is compared with the offline values as of the time it is as of:
    the materialisation, or the incremental refresh that last rewrote it (so
    after refreshes, pass logs rebuilt from the current sources).  An entity the
    store does not know counts as a vector of nulls, so its features differ.
    """
    at = store.materialized_at
    keys = entities.columns
    requests = [dict(zip(keys, k, strict=True)) for k in entities.iter_rows()]
    try:
        online, stamps = store._lookup(requests)
    except UnknownEntity:  # compare entity by entity; the unknown ones differ
        online, stamps = [], []
        for r in requests:
            try:
                v, s = store._lookup([r])
                online.append(v[0])
                stamps.append(s[0])
            except UnknownEntity:
                online.append(dict.fromkeys(store.fs.feature_names))
                stamps.append({})
    base = int((at - _EPOCH).total_seconds() * 1e6) if at.tzinfo else None
    times = {}
    for g in store.fs.groups:
        us = [s.get(g.name) or base for s in stamps]
        times[g.name] = [at if u is None else _EPOCH + timedelta(microseconds=u) for u in us]
    offline = _offline_at(store.fs, logs, entities, times)
    names = store.fs.feature_names
    rows = []
    for name in names:
        off = offline[name].to_list()
        on = [o[name] for o in online]
        bad = [
            i for i, (a, b) in enumerate(zip(off, on, strict=True)) if not _same(a, b, tolerance)
        ]
        diffs = [
            abs(float(off[i]) - float(on[i]))
            for i in bad
            if isinstance(off[i], int | float) and isinstance(on[i], int | float)
        ]
        example = None
        if bad:
            i = bad[0]
            ent = dict(zip(keys, entities.row(i), strict=True))
            example = f"{ent}: offline={off[i]!r} online={on[i]!r}"
        rows.append(
            {
                "feature": name,
                "compared": len(off),
                "mismatches": len(bad),
                "max_abs_diff": max(diffs) if diffs else None,
                "example": example,
            }
        )
    schema = {"max_abs_diff": pl.Float64, "example": pl.String}
    return SkewReport(at, entities.height, pl.DataFrame(rows, schema_overrides=schema))
