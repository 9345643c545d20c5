"""PII key rotation: a new key version, every stored token re-keyed table by table, resumable.

Tokens (`hortus.lakehouse.pii.token`) are keyed HMACs of raw values, so they cannot be
translated from one key to another without the raw values.  Those live in the restricted
zone: `rotate` reads every direct identifier of every landed table there (the bronze
tables, as silver tokenised them), computes each distinct value's token under the old and
the new key, and so builds the map old token -> new token.  Then:

1. **pre-flight** (nothing changed yet): every table outside the restricted zone is scanned
   for tokens (string columns holding ``tok_`` + 24 hex, whole values or inside text such as
   a logged JSON request); a token the map does not know (its raw value is gone from the
   restricted zone, e.g. removed by retention) cannot be re-keyed and stops the rotation
   with its table, column and count.  The audit log and ``ops.erasures`` are never
   rewritten (the audit chain must verify; they hold keyed references, not tokens);
2. **start**: the new key version is created (``pii.v<N>.key``, 256 random bits, mode
   0600, unless ``HORTUS_PII_KEY_V<N>`` or that file already holds one) and the rotation is
   recorded in the keyring (``.hortus/secrets/pii.keyring.json``): id, versions, and per
   table ``pending``.  From now on `hortus.lakehouse.pii.load_key` refuses the current key,
   so no stage tokenises new rows until the rotation ends;
3. **tables**: each table holding tokens is rewritten in one Delta commit (overwrite;
   only the token columns change) under its lease, the commit carrying its lineage (stage
   ``rotate_keys``, the table version and the restricted tables read, the key versions);
   one audit record per table (``rotate_keys`` grant); the keyring marks it ``done`` with
   the Delta version from which its rows use the new key;
4. **online store**: the SQLite store's text columns are mapped the same way in a copy of
   the file, compacted (VACUUM: no old token left in free pages) and renamed over it;
5. **switch**: the new version becomes current, the old one retired (`load_key` refuses
   it), the rotation moves to the keyring's history, one more audit record.

A rotation interrupted anywhere (killed, a failed commit) is finished by
``rotate(resume=True)``: each table's state is read from its data (a table without old
tokens is done, whatever the keyring says), so a crash between a commit and the keyring
update is harmless.  Delta history: versions before each table's rotation commit still
hold old tokens (time travel reads them as they were); `status` tells from which Delta
version a table uses which key; `hortus maintain`'s vacuum removes the old files once
they are past the retention window, and the retired key file can then be deleted.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import CommitProperties, DeltaTable

from hortus.config import RESTRICTED_LAYERS
from hortus.errors import HortusError
from hortus.governance.audit import AuditRecord
from hortus.lakehouse import lease
from hortus.lakehouse.contracts import Contract
from hortus.lakehouse.keys import key_source, read_versioned_key, write_new_key
from hortus.lakehouse.pii import (
    KEY_ENV,
    KEY_FILE,
    TOKEN_PATTERN,
    key_location,
    load_key,
    read_keyring,
    tokenize_series,
    write_keyring,
)
from hortus.lakehouse.tables import Lakehouse

GRANT = "rotate_keys"
KIND = "pii"
AUDIT_OBJECT = "pii_key"
# never rewritten: the tamper-evident audit log and the erasure log (keyed references only)
UNTOUCHED = ("ops.audit_log", "ops.erasures")
LOCK_SCOPE = "keys.pii"  # one rotation at a time, whatever tables it touches


class RotationError(HortusError):
    """A rotation that cannot start or go on (no key, tokens without raw values...)."""


@dataclass
class TableRekey:
    """What a rotation did (or has to do) to one table."""

    table: str
    columns: list[str]
    status: str = "pending"  # pending, done
    tokens: int = 0  # distinct old tokens replaced
    rows: int = 0  # rows with a changed value
    version_before: int | None = None
    version_after: int | None = None


@dataclass
class RotationResult:
    """What `rotate` did."""

    rotation_id: str
    from_version: int
    to_version: int
    resumed: bool
    key_file: str | None  # the new key's file when this run wrote it
    tables: list[TableRekey]
    online_rows: int
    online: str  # where the online store is, or why it was left alone

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict."""
        return asdict(self)


# --------------------------------------------------------------- discovery
def _candidates(lh: Lakehouse) -> list[Contract]:
    return [
        c
        for c in lh.catalog
        if c.layer not in RESTRICTED_LAYERS
        and c.full_name not in UNTOUCHED
        and lh.exists(c.full_name)
    ]


def _scan(lh: Lakehouse, name: str) -> pl.LazyFrame:
    """Return a lazy scan of a whole table as stored, on disk or in a bucket (no masking)."""
    where = lh.location(name)
    return pl.scan_delta(where.uri, **where.write_kwargs())


def token_columns(lh: Lakehouse, name: str) -> dict[str, bool]:
    """Return the columns of a table holding tokens -> whether some sit inside longer text."""
    lf = _scan(lh, name)
    strings = [n for n, t in lf.collect_schema().items() if t == pl.String]
    if not strings:
        return {}
    whole = f"^{TOKEN_PATTERN}$"
    row = (
        lf.select(
            *[
                pl.col(n).str.contains(TOKEN_PATTERN).any().alias(f"h{i}")
                for i, n in enumerate(strings)
            ],
            *[
                (pl.col(n).str.contains(TOKEN_PATTERN) & ~pl.col(n).str.contains(whole))
                .any()
                .alias(f"e{i}")
                for i, n in enumerate(strings)
            ],
        )
        .collect()
        .row(0, named=True)
    )  # fmt: skip
    return {n: bool(row[f"e{i}"]) for i, n in enumerate(strings) if row[f"h{i}"]}


def token_tables(lh: Lakehouse) -> dict[str, dict[str, bool]]:
    """Return every table outside the restricted zone that holds tokens, with its columns."""
    out = {}
    for c in _candidates(lh):
        cols = token_columns(lh, c.full_name)
        if cols:
            out[c.full_name] = cols
    return out


def _tokens_in(lh: Lakehouse, name: str, column: str) -> pl.Series:
    """Return the distinct tokens a column holds (whole values or inside text)."""
    return (
        _scan(lh, name)
        .select(pl.col(column).str.extract_all(TOKEN_PATTERN).explode().drop_nulls().unique())
        .collect()
        .to_series()
        .rename("old")
    )


def _raw_values(lh: Lakehouse) -> tuple[pl.DataFrame, dict[str, int]]:
    """Return every distinct raw direct identifier in the restricted zone and the versions read.

    Rows (v, source): the value and the bronze table holding it.  As silver tokenises
    them: the bronze column (or the raw JSON line's field), blanks left out.  Each bronze
    table is read through the table API (``read`` grant on the restricted zone, audited).
    """
    parts: list[pl.DataFrame] = []
    read: dict[str, int] = {}
    for c in lh.catalog.landed():
        direct = [col.name for col in c.columns if col.pii == "direct"]
        source = f"bronze.{c.name}"
        if not direct or not lh.exists(source):
            continue
        lf = lh.scan(source)
        masked = sorted(set(lh.masked_columns(source)) & {*direct, "_raw"})
        if masked:  # tokens of tokens would re-key nothing
            raise RotationError(
                f"{lh.user} reads {source} masked ({', '.join(masked)}): a rotation needs the raw "
                f"values of the restricted zone (unmask on {source}.*); nothing was changed"
            )
        cols = lf.collect_schema().names()
        exprs = [
            pl.col(d).cast(pl.String) if d in cols else pl.col("_raw").str.json_path_match(f"$.{d}")
            for d in direct
        ]
        values = (
            lf.select(pl.concat_list(exprs).alias("v"))
            .select(pl.col("v").explode())
            .filter(pl.col("v").str.strip_chars() != "")
            .unique()
            .with_columns(pl.lit(source).alias("source"))
            .collect()
        )
        parts.append(values)
        read[source] = lh.reads[source]
    if not parts:
        return pl.DataFrame(schema={"v": pl.String, "source": pl.String}), read
    return pl.concat(parts), read


def token_map(raw: pl.DataFrame, old_key: bytes, new_key: bytes) -> pl.DataFrame:
    """Return old token -> new token, and the bronze tables holding the value (sorted list).

    One HMAC per distinct value and key.
    """
    values = raw["v"].unique()
    pairs = pl.DataFrame(
        {
            "v": values,
            "old": tokenize_series(values, old_key),
            "new": tokenize_series(values, new_key),
        }
    )
    sources = raw.group_by("v").agg(pl.col("source").unique().sort().alias("sources"))
    return pairs.join(sources, on="v").drop("v").unique("old")


def unmapped(lh: Lakehouse, tables: dict[str, dict[str, bool]], mapping: pl.DataFrame) -> list[str]:
    """Return a line per column holding tokens the map knows neither as old nor as new."""
    known = pl.concat([mapping["old"], mapping["new"]]).unique()
    out = []
    for name, cols in tables.items():
        for col in cols:
            found = _tokens_in(lh, name, col)
            lost = found.filter(~found.is_in(known.implode()))
            if lost.len():
                out.append(
                    f"{name}.{col}: {lost.len()} token(s) with no raw value left in the restricted "
                    f"zone (e.g. {lost.sort()[0]})"
                )
    return out


# ------------------------------------------------------------------ re-key
def _commit(
    lh: Lakehouse,
    rid: str,
    inputs: dict[str, int],
    versions: tuple[int, int],
    txns: list | None = None,
) -> CommitProperties:
    meta = lh.lineage_metadata(
        inputs=inputs,
        note=f"{rid}: PII tokens re-keyed v{versions[0]} -> v{versions[1]}",
        stage=GRANT,
        pii_key_version=str(versions[1]),
    )
    return CommitProperties(custom_metadata=meta, app_transactions=txns or None)


def rekey_table(
    lh: Lakehouse,
    name: str,
    cols: dict[str, bool],
    mapping: pl.DataFrame,
    *,
    rid: str,
    inputs: dict[str, int],
    versions: tuple[int, int],
) -> TableRekey:
    """Replace the old tokens of a table by the new ones in one Delta commit (none if none).

    Only the old tokens a column holds go into its replacement (a hash replace for whole
    values, Aho-Corasick for tokens inside text).
    """
    where = lh.location(name)
    dt = where.delta()
    out = TableRekey(name, sorted(cols), version_before=dt.version())
    df = pl.read_delta(where.uri, version=dt.version(), **where.write_kwargs())
    exprs, changed, replaced = [], [], 0
    own = f"bronze.{lh.catalog.get(name).name}"
    used: set[str] = set()  # the restricted tables whose values re-keyed this table (lineage)
    for col, embedded in cols.items():
        here = _tokens_in(lh, name, col).to_frame().join(mapping, on="old", how="inner")
        if not here.height:
            continue
        replaced += here.height
        src = pl.col("sources")
        pick = pl.when(src.list.contains(own)).then(pl.lit(own)).otherwise(src.list.first())
        used |= set(here.select(pick.alias("s"))["s"].unique().to_list())
        old, new = here["old"], here["new"]
        e = (
            pl.col(col).str.replace_many(old.to_list(), new.to_list())
            if embedded
            else pl.col(col).replace(old, new)
        )
        exprs.append(e.alias(col))
        changed.append(pl.col(col).ne_missing(e))
    out.tokens = replaced
    if exprs:
        out.rows = int(df.select(pl.any_horizontal(changed).sum()).item())
        read = {name: dt.version(), **{s: inputs[s] for s in sorted(used)}}
        parts = dt.metadata().partition_columns
        scope = lease.scope_for(lh.catalog.get(name).layer, name)
        new = df.with_columns(exprs)

        def overwrite(snapshot: DeltaTable, txns: list | None) -> None:
            # on disk: on the snapshot the rows were read from (a commit landed since is
            # refused by Delta's conflict check); in a bucket: on the snapshot the fence
            # checked, which under our lease only a takeover's fence commit can move
            new.write_delta(
                snapshot,
                mode="overwrite",
                delta_write_options={
                    "commit_properties": _commit(lh, rid, read, versions, txns),
                    **({"partition_by": parts} if parts else {}),
                },
                **where.write_kwargs(),
            )

        with lease.fenced_commit(lh.paths.lakehouse_root, scope, name) as fence:
            if fence is None:
                overwrite(dt, None)
            else:  # object storage: the lease token goes into the commit
                fence.commit(where, lambda now: overwrite(now, fence.transactions()))
    out.version_after = where.delta().version()
    out.status = "done"
    return out


def _online_store(lh: Lakehouse) -> tuple[str, Path | None]:
    """Return (backend, SQLite file or None) of the project's online store."""
    from hortus.features.online import check_online_params

    params_file = lh.paths.root / "params.yaml"
    spec: dict = {}
    if params_file.exists():
        from hortus.params import read_params

        spec = check_online_params((read_params(params_file).get("features") or {}).get("online"))
    backend = spec.get("backend", "sqlite")
    if backend != "sqlite":
        return backend, None
    return backend, Path(spec["path"]) if spec.get("path") else lh.paths.online_store


def rekey_online(path: Path, mapping: pl.DataFrame) -> int:
    """Map the old tokens of every text column of a SQLite online store; return rows changed.

    Works on a copy, compacted (VACUUM) and renamed over the store: readers see the old
    file or the new one, and no old token survives in free pages.
    """
    if not path.exists():
        return 0
    tmp = path.with_name(path.name + ".rekey")
    shutil.copyfile(path, tmp)
    con = sqlite3.connect(tmp)
    changed = 0
    try:
        with con:
            con.execute("CREATE TEMP TABLE rekey (old TEXT PRIMARY KEY, new TEXT NOT NULL)")
            con.executemany(
                "INSERT INTO rekey VALUES (?, ?)", mapping.select("old", "new").iter_rows()
            )
            tables = [
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            for t in tables:
                if t == "meta":
                    continue
                cols = [
                    r[1] for r in con.execute(f'PRAGMA table_info("{t}")') if r[2].upper() == "TEXT"
                ]
                for c in cols:
                    cur = con.execute(
                        f'UPDATE "{t}" SET "{c}" = (SELECT new FROM rekey WHERE old = "{t}"."{c}") '
                        f'WHERE "{c}" IN (SELECT old FROM rekey)'
                    )
                    changed += cur.rowcount
        con.execute("VACUUM")
    finally:
        con.close()
    tmp.replace(path)
    return changed


# ------------------------------------------------------------------ rotate
def _grants(lh: Lakehouse, names: list[str]) -> None:
    for name in names:
        lh._require(GRANT, name)


def _audit(lh: Lakehouse, detail: str) -> None:
    lh._audit.add(
        AuditRecord(
            user=lh.user,
            action=GRANT,
            object=AUDIT_OBJECT,
            detail=f"{detail} stage={lh.stage}",
            policy_version=lh.policy.version if lh.policy else None,
            ts=datetime.now(UTC),
        )
    )
    lh.flush_audit()


def _new_key(lh: Lakehouse, version: int, old: bytes) -> tuple[bytes, str | None]:
    """Return the new key version (given by the operator, or written now) and its new file."""
    secrets_dir = lh.paths.secrets
    written = None
    key = read_versioned_key(KEY_ENV, secrets_dir, KEY_FILE, version)
    if key is None:
        _, name = key_source(KEY_ENV, KEY_FILE, version)
        written = str(write_new_key(secrets_dir, name))
        key = read_versioned_key(KEY_ENV, secrets_dir, KEY_FILE, version)
        assert key is not None
    if key == old:
        raise RotationError(
            f"the new PII key v{version} ({key_location(secrets_dir, version)}) equals the "
            f"current key v{version - 1}: give a different key, or none and one is made"
        )
    return key, written


def rotate(
    lh: Lakehouse,
    *,
    resume: bool = False,
    after_table: Callable[[TableRekey], None] | None = None,
) -> RotationResult:
    """Rotate the PII key: re-key every stored token, then switch (see the module docstring).

    `resume` finishes a rotation that was interrupted; starting one while another is
    unfinished, or resuming when none is, raises RotationError.  `after_table` is called
    after each table's commit (tests interrupt a rotation there).
    """
    paths = lh.paths  # the keyring follows the opened lakehouse (its bucket, or local)
    secrets_dir = paths.secrets
    ring = read_keyring(paths)
    rotation = ring.get("rotation")
    if rotation and not resume:
        raise RotationError(
            f"PII key rotation {rotation['id']} (v{rotation['from']} -> v{rotation['to']}) was "
            "started and not finished: run `hortus keys rotate pii --resume` to finish it"
        )
    if resume and not rotation:
        raise RotationError(
            f"no PII key rotation to resume: the current key is v{ring['current']} "
            "(`hortus keys status`)"
        )
    candidates = [c.full_name for c in _candidates(lh)]
    _grants(lh, candidates)  # every grant before any change
    scopes = {lease.scope_for(c.layer, c.full_name) for c in _candidates(lh)} - {None}
    root = lh.paths.lakehouse_root
    with lease.hold(root, sorted(scopes | {LOCK_SCOPE}), holder=lh.user, stage=GRANT):
        ring = read_keyring(paths)  # again, under the lock
        rotation = ring.get("rotation")
        if resume and not rotation:
            raise RotationError("no PII key rotation to resume (another process finished it)")
        if rotation and not resume:
            raise RotationError(f"PII key rotation {rotation['id']} was started meanwhile")
        old_v = int(rotation["from"]) if rotation else int(ring["current"])
        new_v = int(rotation["to"]) if rotation else old_v + 1
        try:
            old_key = load_key(paths, version=old_v)
        except HortusError as exc:
            raise RotationError(f"cannot rotate the PII key: {exc}") from None
        values, inputs = _raw_values(lh)
        tables = token_tables(lh)
        key_file = None
        if rotation:
            new_key = read_versioned_key(KEY_ENV, secrets_dir, KEY_FILE, new_v)
            if new_key is None:
                raise RotationError(
                    f"cannot resume rotation {rotation['id']}: its new key v{new_v} is missing "
                    f"(set {key_location(paths, new_v)}); the tables it re-keyed already "
                    "use that key"
                )
            rid = rotation["id"]
            # tokens of either key are expected now; any other stops before a change
            lost = unmapped(lh, tables, token_map(values, old_key, new_key))
            if lost:
                raise RotationError(
                    f"cannot finish rotation {rid}, nothing more was changed:\n  "
                    + "\n  ".join(lost)
                )
        else:
            olds = tokenize_series(values["v"].unique(), old_key)
            lost = unmapped(lh, tables, pl.DataFrame({"old": olds, "new": olds}))
            if lost:
                raise RotationError(
                    "cannot re-key every token, nothing was changed:\n  " + "\n  ".join(lost)
                )
            backend, _ = _online_store(lh)
            if backend != "sqlite" and any(t.startswith("gold.fs_") for t in tables):
                raise RotationError(
                    f"the online store ({backend}) holds features made of tokens and only a "
                    "SQLite store is re-keyed in place: materialise it after the rotation or "
                    "use SQLite; nothing was changed"
                )
            new_key, key_file = _new_key(lh, new_v, old_key)
            rid = "KR-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + f"-pii-v{new_v}"
            rotation = {
                "id": rid, "from": old_v, "to": new_v, "by": lh.user,
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "tables": {t: {"status": "pending", "columns": sorted(c)}
                           for t, c in tables.items()},
                "online": "pending",
            }  # fmt: skip
            ring["rotation"] = rotation
            write_keyring(paths, ring)
            _audit(lh, f"{rid} started: pii key v{old_v} -> v{new_v} tables={len(tables)}")
        mapping = token_map(values, old_key, new_key)
        done = []
        names = sorted(set(tables) | set(rotation["tables"]))
        for name in names:
            cols = tables.get(name, {})
            t = rekey_table(
                lh, name, cols, mapping, rid=rid, inputs=inputs, versions=(old_v, new_v)
            )
            rotation["tables"][name] = {
                "status": "done", "columns": t.columns, "key_version": new_v,
                "since_delta_version": t.version_after,
            }  # fmt: skip
            write_keyring(paths, ring)
            if t.tokens:
                lh.authorize(
                    GRANT,
                    name,
                    detail=f"{rid} pii key v{old_v}->v{new_v} columns={','.join(t.columns)} "
                    f"tokens={t.tokens} rows={t.rows} v{t.version_before}->v{t.version_after}",
                )
            done.append(t)
            if after_table is not None:
                after_table(t)
        backend, online_path = _online_store(lh)
        online_rows = rekey_online(online_path, mapping) if online_path is not None else 0
        where = str(online_path) if online_path is not None else f"{backend}: left alone"
        rotation["online"] = "done"
        # switch: the new key is current, the old one retired, the record kept
        finished = datetime.now(UTC).isoformat(timespec="seconds")
        for name, st in rotation["tables"].items():
            ring["tables"][name] = {
                "key_version": new_v, "since_delta_version": st.get("since_delta_version"),
                "rotation": rid,
            }  # fmt: skip
        ring["current"] = new_v
        ring["retired"] = sorted(set(ring.get("retired", [])) | {old_v})
        record = rotation | {"finished_at": finished, "online_rows": online_rows}
        ring["history"] = [*ring.get("history", []), record]
        ring["rotation"] = None
        write_keyring(paths, ring)
        _audit(
            lh,
            f"{rid} finished: pii key v{new_v} current, v{old_v} retired tables={len(done)} "
            f"online_rows={online_rows}",
        )
    return RotationResult(rid, old_v, new_v, resume, key_file, done, online_rows, where)


# ------------------------------------------------------------------ status
def status(lh: Lakehouse, *, scan: bool = True) -> dict[str, Any]:
    """Return the keyring's state and, per table holding tokens, the key version it uses.

    A table re-keyed by a rotation uses that rotation's version from the Delta version
    recorded; a table the keyring does not name uses the current version (written by the
    stages with it).  During a rotation, pending tables use the old version.  Needs the
    ``rotate_keys`` grant on every table it looks into (a denial is audited).
    """
    if scan:
        _grants(lh, [c.full_name for c in _candidates(lh)])
    ring = read_keyring(lh.paths)
    rotation = ring.get("rotation")
    names = set(ring.get("tables", {}))
    if rotation:
        names |= set(rotation["tables"])
    found = token_tables(lh) if scan else {}
    names |= set(found)
    rows = []
    for name in sorted(names):
        rec = ring.get("tables", {}).get(name, {})
        version = int(rec.get("key_version", ring["current"]))
        since = rec.get("since_delta_version")
        state = f"re-keyed by {rec['rotation']}" if rec.get("rotation") else "current"
        if rotation and name in rotation["tables"]:
            st = rotation["tables"][name]
            if st.get("status") == "done":
                version, since, state = (
                    int(rotation["to"]),
                    st.get("since_delta_version"),
                    "re-keyed",
                )
            else:
                version, state = int(rotation["from"]), "pending"
        exists = lh.exists(name) if name in {c.full_name for c in lh.catalog} else False
        rows.append({
            "table": name, "key_version": version, "since_delta_version": since, "state": state,
            "delta_version": lh.version(name) if exists else None,
            "columns": sorted(found.get(name, {})),
        })  # fmt: skip
    return {
        "current": int(ring["current"]),
        "retired": list(ring.get("retired", [])),
        "rotation": rotation,
        "history": [
            {k: h.get(k) for k in ("id", "from", "to", "by", "started_at", "finished_at")}
            for h in ring.get("history", [])
        ],
        "tables": rows,
    }
