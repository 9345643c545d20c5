"""The Redis online store: the option for several server processes sharing one store.

Layout under a key prefix ``P`` (params.yaml ``features.online.prefix``, default
``hortus:<project folder>``), for each materialised *version* ``vN``:

- ``P:vN:group:<group>``: one hash per group, keyed by entity: field = the entity
  columns joined by the unit separator ``\x1f``, value = the row as a JSON list (the
  group's feature columns in the order of the metadata's ``columns``, then ``_as_of``,
  microseconds since the epoch, UTC; JSON keeps floats exact, null, bools and text);
- ``P:vN:meta``: the store's metadata (as the SQLite ``meta`` table, plus the
  columns of each group);
- ``P:current``: the pointer to the served version; ``P:seq`` numbers versions.

A materialisation writes a whole new version under its own prefix, then moves the
pointer (one SET, atomic for every reader), then deletes the versions before the
previous one (the previous one stays, so a reader that read the old pointer still
finds its rows).  An incremental refresh rewrites some entities' fields and the
metadata in one MULTI/EXEC transaction, WATCHing the pointer (retried if a
materialisation switched it meanwhile).

Reads are batched and pipelined: a lookup sends one pipeline per wave of groups
(`hortus.features.store.lookup_waves`; two for the plant shop, whose user x category
group waits for the plant's category) holding one HMGET per group for all the
entities and a GET of the pointer; if the pointer moved since the reader loaded
the metadata, the lookup starts again on the new version.  One hash per group
rather than one per entity: a batch of 50 candidates is one command per group, and a
materialisation packs a thousand rows per command (redis-py packs every argument
in Python, so per-field hashes made writing 75k rows take seconds).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import polars as pl
import redis

from hortus.errors import HortusError
from hortus.features.definitions import FeatureSet
from hortus.features.store import AS_OF, BaseOnlineStore

DEFAULT_URL = "redis://127.0.0.1:6379/0"
SEP = "\x1f"
CHUNK = 1000  # rows per HSET when writing
_RETRIES = 5


class _Switched(Exception):
    """The pointer moved to another version during a lookup (retried)."""


class RedisOnlineStore(BaseOnlineStore):
    """Feature vectors by entity in Redis hashes (see the module docstring).

    Examples
    --------
    >>> store = RedisOnlineStore("redis://127.0.0.1:6379/0", FEATURES)    # doctest: +SKIP
    >>> store.get_vectors([{"user_id": "u000001", "plant_id": "p0007"}])  # doctest: +SKIP
    [{'user_activity__sessions_7d': 2.0, ...}]
    """

    backend = "redis"

    def __init__(
        self, url: str, fs: FeatureSet, *, prefix: str = "hortus", client: Any | None = None
    ):
        super().__init__(fs)
        self.url = url
        self.prefix = prefix
        self.where = f"{url} prefix {prefix}"
        self._r = client or redis.Redis.from_url(url, decode_responses=True)
        self._version: str | None = None

    # ------------------------------------------------------------ keys
    @property
    def _pointer(self) -> str:
        return f"{self.prefix}:current"

    def _hash(self, version: str, group: str) -> str:
        return f"{self.prefix}:{version}:group:{group}"

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except redis.exceptions.ConnectionError as exc:
            raise HortusError(f"online store {self.where}: cannot reach Redis: {exc}") from None

    def exists(self) -> bool:
        """Return whether a version has been materialised (the pointer is set)."""
        return bool(self._call(lambda: self._r.exists(self._pointer)))

    # ---------------------------------------------------------- materialise
    def _write(self, snaps: dict[str, pl.DataFrame], types: dict[str, str],
               meta: dict[str, str]) -> None:  # fmt: skip
        """Write a new version, switch the pointer to it, drop the versions before the last."""
        r = self._r
        version = f"v{self._call(lambda: r.incr(f'{self.prefix}:seq'))}"
        columns = {}
        pipe = r.pipeline(transaction=False)
        for g in self.fs.groups:
            snap = snaps[g.name]
            columns[g.name] = [c for c in snap.columns[len(g.entity) :] if c != AS_OF]
            for start in range(0, snap.height, CHUNK):
                self._queue_rows(pipe, version, g.name, snap.slice(start, CHUNK))
                pipe.execute()
        pipe.hset(f"{self.prefix}:{version}:meta", mapping=meta | {"columns": json.dumps(columns)})
        pipe.execute()
        old = r.getset(self._pointer, version)  # the switch: one atomic SET
        self._drop_before(old)

    def _queue_rows(self, pipe: Any, version: str, group: str, snap: pl.DataFrame) -> None:
        """Queue the HSET of some rows of a group (entity columns first, _as_of last)."""
        if snap.height == 0:
            return
        width = len(self.fs.group(group).entity)
        dumps = json.dumps
        rows = {SEP.join(map(str, row[:width])): dumps(row[width:]) for row in snap.iter_rows()}
        pipe.hset(self._hash(version, group), mapping=rows)

    def _drop_before(self, keep: str | None) -> None:
        """Delete every version older than `keep` (the one served until the switch)."""
        if keep is None:
            return
        kept = int(keep[1:])
        seen = set()
        for key in self._r.scan_iter(match=f"{self.prefix}:v*", count=1000):
            seen.add(key.split(":")[len(self.prefix.split(":"))])
        old = [v for v in seen if v[1:].isdigit() and int(v[1:]) < kept]
        for v in old:
            batch = []
            for key in self._r.scan_iter(match=f"{self.prefix}:{v}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    self._r.unlink(*batch)
                    batch = []
            if batch:
                self._r.unlink(*batch)

    def _upsert(self, snaps: dict[str, pl.DataFrame], meta: dict[str, str]) -> None:
        """Rewrite some entities' hashes and the metadata in one transaction (MULTI/EXEC)."""
        for _ in range(_RETRIES):
            with self._r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(self._pointer)
                    version = pipe.get(self._pointer)
                    if version is None:
                        raise HortusError(f"online store {self.where}: nothing materialised yet")
                    cols = {n: [*self.fs.group(n).entity, *self._columns(version, n), AS_OF]
                            for n in snaps}  # fmt: skip
                    pipe.multi()
                    for name, snap in snaps.items():
                        self._queue_rows(pipe, version, name, snap.select(cols[name]))
                    pipe.hset(f"{self.prefix}:{version}:meta", mapping=meta)
                    pipe.execute()
                    return
                except redis.exceptions.WatchError:
                    continue
        raise HortusError(f"online store {self.where}: the served version kept changing")

    def delete_entities(self, column: str, value: str) -> int:
        """Delete the entity's fields from every version's hashes (right to erasure).

        Redis' own persistence (RDB snapshots, AOF) keeps the old bytes until it rewrites
        them: run BGREWRITEAOF / BGSAVE after an erasure.
        """
        deleted = 0
        for g in self.fs.groups:
            if column not in g.entity:
                continue
            at = g.entity.index(column)
            for key in self._r.scan_iter(match=f"{self.prefix}:v*:group:{g.name}", count=1000):
                fields = [f for f, _ in self._r.hscan_iter(key, count=1000)
                          if f.split(SEP)[at] == value]  # fmt: skip
                if fields:
                    deleted += int(self._r.hdel(key, *fields))
        return deleted

    # -------------------------------------------------------------- lookups
    def _load(self) -> None:
        version = self._call(lambda: self._r.get(self._pointer))
        if version is None:
            raise FileNotFoundError(
                f"online store {self.where} holds no version: run `dvc repro features` "
                "(with params.yaml features.online.backend: redis)"
            )
        meta = self._r.hgetall(f"{self.prefix}:{version}:meta")
        self._configure(meta)
        columns = json.loads(meta["columns"])
        self._names = {g: list(cols) for g, cols in columns.items()}
        self._version = version

    def _columns(self, version: str, group: str) -> list[str]:
        """Return a version's feature columns of a group, in stored order."""
        cols = self._r.hget(f"{self.prefix}:{version}:meta", "columns")
        return json.loads(cols)[group]

    def _fetch(self, wanted: list[tuple[str, list[tuple]]]) -> list[dict[tuple, tuple]]:
        version = self._version
        assert version is not None
        pipe = self._r.pipeline(transaction=False)
        pipe.get(self._pointer)
        fields = []
        for group, keys in wanted:
            names = [SEP.join(k) for k in keys]
            fields.append(names)
            if names:
                pipe.hmget(self._hash(version, group), names)
        res = self._call(pipe.execute)
        if res[0] != version:
            raise _Switched(res[0])
        out = []
        i = 1
        loads = json.loads
        for (_group, keys), names in zip(wanted, fields, strict=True):
            got: dict[tuple, tuple] = {}
            if names:
                for key, raw in zip(keys, res[i], strict=True):
                    if raw is not None:
                        got[key] = tuple(loads(raw))
                i += 1
            out.append(got)
        return out

    def _lookup(self, entities):  # noqa: D102 - retried when the served version switches
        for _ in range(_RETRIES):
            try:
                return super()._lookup(entities)
            except _Switched:
                self._names = {}  # reload the metadata of the new version
        raise HortusError(f"online store {self.where}: the served version kept changing")

    def meta(self) -> dict[str, str]:
        """Return the served version's metadata."""
        version = self._call(lambda: self._r.get(self._pointer))
        if version is None:
            raise FileNotFoundError(f"online store {self.where} holds no version")
        meta = self._r.hgetall(f"{self.prefix}:{version}:meta")
        return {k: v for k, v in meta.items() if k != "columns"} | {"version": version}

    def entity_keys(self, group: str, limit: int = 20) -> list[dict[str, Any]]:
        """Return up to `limit` entity keys of a group (any `limit` of them, sorted)."""
        ent = self.fs.group(group).entity
        version = self._call(lambda: self._r.get(self._pointer))
        keys: list[str] = []
        for field, _ in self._r.hscan_iter(self._hash(version, group), count=max(limit, 100)):
            keys.append(field)
            if len(keys) >= limit:
                break
        keys.sort()  # the first `limit` found (a hash has no order), sorted
        return [dict(zip(ent, k.split(SEP), strict=True)) for k in keys]

    def close(self) -> None:
        """Forget the loaded metadata (the connection pool reconnects on demand)."""
        with self._lock:
            self._names = {}
            self._version = None
