"""Online feature lookups under the access policy: grants, masking and audit as in the table API.

The online store (`hortus.features.store`) holds copies of the offline feature
logs ``gold.fs_<group>``; reading it directly would bypass the policy the table
API enforces on those tables.  `open_online` returns an `OnlineFeatures` reader
for one user that

- needs the user's ``read`` grant on every group's table ``gold.fs_<group>``
  (decided when it opens; a denial is written to the audit log at once and
  raised as `AccessDenied`, like a denied table read);
- masks the features read from columns the user may not unmask, with the table
  API's masking function (`hortus.governance.access.mask_expr`, from the read plan
  `Policy.read_plan` of the log table): a group's ``latest_<c>`` column masked for
  the user masks the feature ``<group>__<c>`` (strings become keyed tokens, other
  types null), and a derived feature reading a masked feature is null too;
- applies the user's row filter on a group's table to the columns an online row
  holds (entity keys and latest values): a row the user may not see is treated as
  absent (a root entity is then unknown, `UnknownEntity`, as for a row a filtered
  table read does not return; other groups give their defaults);
- writes one audit record per lookup call (action ``read``, object
  ``online_store``, the tables, the number of entities and the keyed reference of the
  first one's key values (``first=user_id:era_…``, `hortus.lakehouse.pii.keyed_ref` with
  the current PII key, as ``ops.erasures`` names subjects; never the raw keys; ``-``
  without a key), the masked features, the purpose and the granting rule), buffered like
  the table API's records (`hortus.governance.audit.AuditBuffer`) and flushed when `max_pending`
  are waiting, on `close()` and at exit.

The policy is read once, when the reader opens (as a `Lakehouse` does); open a new
reader to apply a changed policy.

Examples
--------
>>> online = open_online(root, FEATURES, user="mia")                     # doctest: +SKIP
>>> online.get_vectors([{"user_id": "u1", "plant_id": "p7"}], purpose="x")  # doctest: +SKIP
[{'user_profile__region': 'tok_…', ...}]
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from hortus.errors import HortusError, UnknownEntity
from hortus.features.definitions import FeatureSet, Ratio
from hortus.features.store import BaseOnlineStore, OnlineStore
from hortus.governance.access import AccessDenied, Decision, mask_expr
from hortus.governance.audit import MAX_PENDING, AuditBuffer, AuditRecord, default_path
from hortus.lakehouse.pii import keyed_ref
from hortus.lakehouse.tables import Lakehouse, read_contract

AUDIT_OBJECT = "online_store"
_MASK_CACHE = 100_000  # masked values kept per feature (distinct values are few: bands, regions)


def _flush(buffer: AuditBuffer) -> None:
    try:
        buffer.flush()
    except Exception as exc:  # a finaliser reports, never raises
        import sys

        print(f"hortus: warning: online audit records not written: {exc}", file=sys.stderr)


class OnlineFeatures:
    """An online store read as one user: checked, masked and audited (see the module docstring)."""

    def __init__(
        self,
        lh: Lakehouse,
        store: BaseOnlineStore,
        *,
        purpose: str | None = None,
        max_pending: int = MAX_PENDING,
    ):
        self.lh = lh
        self.store = store
        self.fs = store.fs
        self.user = lh.user
        self.purpose = purpose
        self.tables = [g.table for g in self.fs.groups]
        self._audit = AuditBuffer(default_path(lh.paths), lh.paths.secrets, max_pending=max_pending)
        weakref.finalize(self, _flush, self._audit)
        self._audit_lock = threading.Lock()
        self._decisions: dict[str, Decision] = {}
        self.masked: list[str] = []  # features this user reads masked
        self._filters: dict[str, tuple[pl.Expr, list[str]]] = {}
        self._authorize()

    # ------------------------------------------------------------ policy
    def _authorize(self) -> None:
        policy = self.lh.policy
        assert policy is not None
        self._audit.log()  # no audit key, no access (fail closed, as the table API)
        key = self._ref_key = _pii_key(self.lh)
        masked_cols: dict[str, set[str]] = {}
        for g in self.fs.groups:
            decision = policy.decide(self.user, "read", g.table)
            if not decision.allowed:
                self._deny(decision)
            contract = read_contract(self.lh.catalog, g.table)
            plan = policy.read_plan(self.user, g.table, None, contract, key=key)
            self._decisions[g.table] = decision
            masked_cols[g.name] = set(plan.masked)
            if plan.row_filter is not None:
                self._filters[g.name] = (plan.row_filter, list(g.entity))
        types = {c.name: c for c in _feature_columns(self.lh, self.fs)}
        masked: list[str] = []
        for g in self.fs.groups:
            cols = masked_cols[g.name]
            for c in g.latest:
                if f"latest_{c}" in cols:
                    masked.append(f"{g.name}__{c}")
            for a in g.aggs:
                if f"cum_{a.name}" in cols or (a.recency and f"last_{a.name}" in cols):
                    masked += a.feature_names(g.name)
        for d in self.fs.derived:  # in order: a derived feature may read an earlier one
            inputs = (d.num, d.den) if isinstance(d, Ratio) else (d.column,)
            if any(i in masked for i in inputs):
                masked.append(d.name)
        self.masked = [f for f in self.fs.feature_names if f in set(masked)]
        self._strings = {f for f in self.masked if types[f].type == "string"}
        self._mask_fns = {f: mask_expr(f, string=True, key=key) for f in self._strings}
        self._masked_values: dict[str, dict[str, str | None]] = {f: {} for f in self._strings}

    def _mask(self, vectors: list[dict[str, Any]]) -> None:
        """Mask the protected features in place: the table API's `mask_expr`, per distinct value.

        Non-string features become null; strings go through `mask_expr` once per
        distinct value (tokens kept, the rest tokenised with the PII key), cached.
        """
        for f in self.masked:
            if f not in self._strings:
                for v in vectors:
                    v[f] = None
                continue
            seen = self._masked_values[f]  # replaced, never cleared in place (threads)
            local = {x: seen.get(x) for x in {v[f] for v in vectors if v[f] is not None}}
            new = sorted(x for x in local if x not in seen)
            if new:
                values = pl.DataFrame({f: new}, schema={f: pl.String})
                out = dict(zip(new, values.select(self._mask_fns[f])[f].to_list(), strict=True))
                local.update(out)
                if len(seen) > _MASK_CACHE:
                    seen = {}
                self._masked_values[f] = seen | out
            for v in vectors:
                if v[f] is not None:
                    v[f] = local[v[f]]

    def _deny(self, decision: Decision) -> None:
        self._audit.add(
            AuditRecord.from_decision(
                decision, detail=f"missing: {decision.missing} stage=online_lookup"
            )
        )
        self._audit.flush()
        raise AccessDenied(decision)

    # ------------------------------------------------------------ lookups
    def get_vector(self, entity: dict[str, Any], *, purpose: str | None = None) -> dict[str, Any]:
        """Return one request's vector as this user may see it (see `get_vectors`)."""
        return self.get_vectors([entity], purpose=purpose)[0]

    def get_vectors(
        self, entities: Sequence[dict[str, Any]], *, purpose: str | None = None
    ) -> list[dict[str, Any]]:
        """Return each request's feature vector, masked for this user; audit the call.

        Raises `UnknownEntity` for a root entity the store does not hold (or the
        user's row filter hides); the attempt is audited too.
        """
        entities = list(entities)
        try:
            vectors, _ = self.store._lookup(entities)
            if self._filters:
                vectors = self._apply_filters(entities, vectors)
        except UnknownEntity as exc:
            self._record(entities, purpose, "unknown entity " + self._refs(exc.entity))
            raise
        if self.masked and vectors:
            self._mask(vectors)
        self._record(entities, purpose, "")
        return vectors

    def _apply_filters(self, entities: list[dict], vectors: list[dict]) -> list[dict]:
        """Hide group rows the user's row filter does not let through (see the module doc)."""
        from hortus.features.store import _defaults

        for name, (pred, ent) in self._filters.items():
            g = self.fs.group(name)
            keys = self.fs.key_columns(g)
            rows = []
            for e, v in zip(entities, vectors, strict=True):
                full = e | v
                row = {col: full.get(k) for col, k in zip(ent, keys, strict=True)}
                row |= {f"latest_{c}": v.get(f"{name}__{c}") for c in g.latest}
                rows.append(row)
            frame = pl.DataFrame(rows, infer_schema_length=None)
            try:
                ok = frame.select(pred.alias("ok"))["ok"].fill_null(False).to_list()
            except pl.exceptions.ColumnNotFoundError:
                ok = [False] * len(rows)  # the filter reads a column online rows lack: no rows
            for i, passed in enumerate(ok):  # hidden: absent (derived ones recomputed below)
                if passed:
                    continue
                key = tuple(rows[i][c] for c in ent)
                if name in self.store._roots:
                    raise self.store._unknown(g, key)
                vectors[i].update(_defaults(g))
        for e, v in zip(entities, vectors, strict=True):
            for d in self.fs.derived:
                v[d.name] = d.python(e | v)
        return vectors

    def entity_keys(self, group: str, limit: int = 20) -> list[dict[str, Any]]:
        """Return up to `limit` entity keys of a group (keys are not masked); audited."""
        keys = self.store.entity_keys(group, limit)
        self._record([], None, f"listed {len(keys)} keys of {group}")
        return keys

    def _refs(self, entity: dict) -> str:
        """Return an entity's key values as keyed references (never the raw keys)."""
        if self._ref_key is None or not entity:
            return "-"
        return ",".join(f"{k}:{keyed_ref(str(v), self._ref_key)}" for k, v in entity.items())

    def _record(self, entities: list[dict], purpose: str | None, note: str) -> None:
        first = entities[0] if entities else {}
        decision = self._decisions[self.tables[0]]
        why = purpose or self.purpose or "-"
        detail = (
            f"tables={','.join(self.tables)} entities={len(entities)} "
            f"first={self._refs(first)} "
            f"masked={','.join(self.masked) or '-'} purpose={why} "
            f"store={self.store.backend}"
            + (f" {note}" if note else "")
            + f" grant: {decision.grant}"
        )
        record = AuditRecord(
            user=self.user,
            action="read",
            object=AUDIT_OBJECT,
            outcome="allowed",
            detail=detail,
            policy_version=decision.policy_version,
            ts=datetime.now(UTC),
        )
        with self._audit_lock:  # server threads share one reader
            self._audit.add(record)

    def flush(self) -> int:
        """Write the buffered audit records now; return how many."""
        with self._audit_lock:
            return self._audit.flush()

    def close(self) -> None:
        """Flush the audit records (the store's connections stay as they are)."""
        self.flush()

    def __enter__(self) -> OnlineFeatures:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pii_key(lh: Lakehouse) -> bytes | None:
    """Return the PII key masking tokenises with (None: masked strings become null)."""
    from hortus.lakehouse.pii import load_key

    try:
        return load_key(lh.paths)
    except HortusError:
        return None


def _feature_columns(lh: Lakehouse, fs: FeatureSet):
    from hortus.features.store import feature_columns

    return feature_columns(fs, {c.full_name: c for c in lh.catalog})


def open_store(root: Path, fs: FeatureSet, params: dict | None = None) -> BaseOnlineStore:
    """Return the project's online store: SQLite by default, Redis per params.yaml.

    ``features.online: {backend: sqlite|redis, url: redis://127.0.0.1:6379/0, prefix: ...}``
    (`params` is the ``features`` section, or None to read params.yaml).
    """
    from hortus.config import Paths

    paths = Paths.at(Path(root))
    if params is None:
        params = _features_params(paths.root)
    spec = check_online_params((params or {}).get("online"))
    backend = spec.get("backend", "sqlite")
    if backend == "sqlite":
        return OnlineStore(Path(spec["path"]) if spec.get("path") else paths.online_store, fs)
    if backend == "redis":
        from hortus.features._redis import DEFAULT_URL, RedisOnlineStore

        prefix = spec.get("prefix") or f"hortus:{paths.root.name}"
        return RedisOnlineStore(spec.get("url") or DEFAULT_URL, fs, prefix=prefix)
    raise AssertionError(backend)  # check_online_params refused it


ONLINE_KEYS = {"backend": "sqlite or redis", "url": "redis://HOST:PORT/DB (redis)",
               "prefix": "key prefix (redis)", "path": "SQLite file (sqlite)"}  # fmt: skip


def check_online_params(spec: Any, where: str = "params.yaml features.online") -> dict:
    """Return params.yaml ``features.online`` as a mapping, or refuse it naming the problem.

    For the params schema too (`hortus.params_schema`): keys `ONLINE_KEYS`, backend
    ``sqlite`` (default) or ``redis``.
    """
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise HortusError(f"{where}: expected a mapping like {{backend: sqlite}}, got {spec!r}")
    unknown = sorted(set(spec) - set(ONLINE_KEYS))
    if unknown:
        raise HortusError(f"{where}.{unknown[0]}: unknown key; valid: {', '.join(ONLINE_KEYS)}")
    if spec.get("backend", "sqlite") not in ("sqlite", "redis"):
        raise HortusError(
            f"{where}.backend: unknown backend {spec['backend']!r}; use sqlite or redis"
        )
    for key in ("url", "prefix", "path"):
        if key in spec and not (isinstance(spec[key], str) and spec[key]):
            raise HortusError(f"{where}.{key}: expected a non-empty string, got {spec[key]!r}")
    return spec


def _features_params(root: Path) -> dict:
    from hortus.params import read_params

    path = Path(root) / "params.yaml"
    return (read_params(path).get("features") or {}) if path.exists() else {}


def open_online(
    root_or_lakehouse: Path | str | Lakehouse,
    fs: FeatureSet,
    *,
    user: str,
    store: BaseOnlineStore | None = None,
    purpose: str | None = None,
    max_pending: int = MAX_PENDING,
) -> OnlineFeatures:
    """Open the project's online store for `user` under the access policy (see module doc).

    `store` defaults to the backend params.yaml chooses (`open_store`).  Raises
    `AccessDenied` (audited) when the user may not read a feature table.
    """
    if isinstance(root_or_lakehouse, Lakehouse):
        base = root_or_lakehouse
        lh = Lakehouse(paths=base.paths, catalog=base.catalog, stage="online", user=user,
                       policy=base.policy)  # fmt: skip
    else:
        lh = Lakehouse.open(Path(root_or_lakehouse), stage="online", user=user)
    if store is None:
        store = open_store(lh.paths.root, fs)
    return OnlineFeatures(lh, store, purpose=purpose, max_pending=max_pending)
