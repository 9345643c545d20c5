"""Feature store: offline Delta logs, point-in-time training sets, an online store, skew checks.

- Offline: each `FeatureGroup` is materialised as a cumulative log in the gold
  table `gold.fs_<group>` (contract derived from the definition, so the catalog,
  the data dictionary and the model signature know every feature's type).
- Training sets: `training_set` joins every feature to every spine row as of
  the row's time, strictly before it (see `hortus.features.definitions.point_in_time`).
- Online: `OnlineStore` is a SQLite file (one table per group, one row per
  entity, primary-key lookups) materialised from the offline logs as of one
  time.  The online snapshot is computed by a second, independent code path
  (group-by of the log rows before T, not the as-of join), so the skew check
  compares two implementations, plus the SQLite round trip and the Python
  evaluation of derived features.  The backend interface (`put`, `get`) is small
  so a Redis backend can be added later.
- Skew: `skew_check` compares offline and online feature values for a sample of
  entities and reports every difference by feature.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from hortus.features.definitions import Band, FeatureGroup, FeatureSet, parse_window
from hortus.lakehouse.contracts import Column, Contract
from hortus.lakehouse.tables import Lakehouse

_US_PER_DAY = 86_400_000_000
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


def build_offline(lh: Lakehouse, fs: FeatureSet) -> dict[str, dict]:
    """Write every group's cumulative log to its gold table; return rows and versions."""
    out = {}
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


def training_set(lh: Lakehouse, fs: FeatureSet, spine: pl.DataFrame, time_col: str) -> pl.DataFrame:
    """Join every feature to each spine row as of its time (point in time, strictly before)."""
    from hortus.features.definitions import point_in_time

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


_SQL_TYPES = {"string": "TEXT", "int": "INTEGER", "float": "REAL", "bool": "INTEGER"}


class OnlineStore:
    """Feature vectors by entity in a SQLite file, as of one materialisation time.

    Examples
    --------
    >>> store = OnlineStore(Path("lakehouse/online/features.sqlite"), FEATURES)  # doctest: +SKIP
    >>> store.get_vector({"customer_id": "c000001", "product_id": "p0007"})     # doctest: +SKIP
    {'user_activity__sessions_7d': 2.0, ...}
    """

    def __init__(self, path: Path, fs: FeatureSet):
        self.path = Path(path)
        self.fs = fs
        self._con: sqlite3.Connection | None = None
        self._sql: dict[str, tuple[str, list[str]]] = {}
        self._bools: set[str] = set()

    # ---------------------------------------------------------- materialise
    def materialize(
        self,
        logs: dict[str, pl.DataFrame],
        at: datetime,
        contracts: dict[str, Contract],
        *,
        versions: dict[str, int] | None = None,
    ) -> dict[str, int]:
        """Write every group's snapshot as of `at` into a new SQLite file (atomic replace)."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        types = {c.name: c.type for c in feature_columns(self.fs, contracts)}
        con = sqlite3.connect(tmp)
        rows_by_group = {}
        with con:
            con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            for g in self.fs.groups:
                snap = snapshot_at(g, logs[g.name], at)
                names = [c for c in snap.columns if c not in g.entity]
                cols = [f'"{e}" TEXT NOT NULL' for e in g.entity]
                cols += [f'"{c}" {_SQL_TYPES.get(types[c], "TEXT")}' for c in names]
                keys = ", ".join(f'"{e}"' for e in g.entity)
                con.execute(
                    f'CREATE TABLE "{g.name}" ({", ".join(cols)}, PRIMARY KEY ({keys})) '
                    "WITHOUT ROWID"
                )
                marks = ", ".join("?" * len(snap.columns))
                con.executemany(f'INSERT INTO "{g.name}" VALUES ({marks})', snap.iter_rows())
                rows_by_group[g.name] = snap.height
            meta = {
                "materialized_at": at.isoformat(),
                "features": json.dumps(self.fs.feature_names),
                "source_versions": json.dumps(versions or {}, sort_keys=True),
                "rows": json.dumps(rows_by_group, sort_keys=True),
                "types": json.dumps(types, sort_keys=True),
            }
            con.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
        con.close()
        tmp.replace(self.path)
        return rows_by_group

    # -------------------------------------------------------------- lookups
    def _connect(self) -> sqlite3.Connection:
        if self._con is None:
            if not self.path.exists():
                raise FileNotFoundError(
                    f"online store {self.path} does not exist: run `hortus features online`"
                )
            self._con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            for g in self.fs.groups:
                cur = self._con.execute(f'SELECT * FROM "{g.name}" LIMIT 0')
                names = [d[0] for d in cur.description][len(g.entity) :]
                where = " AND ".join(f'"{e}" = ?' for e in g.entity)
                select = ", ".join(f'"{n}"' for n in names)
                self._sql[g.name] = (f'SELECT {select} FROM "{g.name}" WHERE {where}', names)
            types = json.loads(self.meta()["types"])
            self._bools = {n for n, t in types.items() if t == "bool"}
        return self._con

    def meta(self) -> dict[str, str]:
        """Return the store's metadata (materialisation time, features, source versions)."""
        con = self._con if self._con is not None else self._connect()
        return dict(con.execute("SELECT key, value FROM meta").fetchall())

    @property
    def materialized_at(self) -> datetime:
        """Return the time the served values are as of."""
        return datetime.fromisoformat(self.meta()["materialized_at"])

    def get_group(self, group: str, key: tuple) -> dict[str, Any]:
        """Return one group's features for one entity key (defaults if the entity is unknown)."""
        con = self._connect()
        sql, names = self._sql[group]
        row = con.execute(sql, key).fetchone()
        if row is None:
            return _defaults(self.fs.group(group))
        return dict(zip(names, row, strict=True))

    def get_vector(self, entity: dict[str, Any]) -> dict[str, Any]:
        """Return the full feature vector for one request, e.g. {customer_id, product_id}.

        Groups are looked up in order, so a group keyed by an earlier feature (the
        item's category) finds it; derived features are evaluated in Python.
        """
        row: dict[str, Any] = dict(entity)
        out: dict[str, Any] = {}
        for g in self.fs.groups:
            key = tuple(row[k] for k in self.fs.key_columns(g))
            values = self.get_group(g.name, key)
            row.update(values)
            out.update(values)
        for name in self._bools:  # SQLite stores booleans as 0/1
            if out.get(name) is not None:
                out[name] = row[name] = bool(out[name])
        for d in self.fs.derived:
            out[d.name] = row[d.name] = d.python(row)
        return out

    def close(self) -> None:
        """Close the connection (reopened on the next lookup)."""
        if self._con is not None:
            self._con.close()
            self._con = None


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


def skew_check(
    store: OnlineStore,
    logs: dict[str, pl.DataFrame],
    entities: pl.DataFrame,
    *,
    tolerance: float = 1e-9,
) -> SkewReport:
    """Compare the offline as-of join with the online store for sampled entity rows.

    `entities` holds the request keys (e.g. customer_id, product_id); the offline
    values are computed as of the store's materialisation time.
    """
    from hortus.features.definitions import point_in_time

    at = store.materialized_at
    spine = entities.with_columns(pl.lit(at).cast(pl.Datetime("us", "UTC")).alias("_t"))
    offline = point_in_time(store.fs, logs, spine, "_t")
    names = store.fs.feature_names
    keys = entities.columns
    online = [store.get_vector(dict(zip(keys, k, strict=True))) for k in entities.iter_rows()]
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
