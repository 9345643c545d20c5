"""Right to erasure and subject access: remove or export everything held about one person.

`erase(lh, subject, reason=...)` removes a data subject (a person, named by the value
of the subject key, e.g. a user id) from the whole lakehouse:

- **who**: the subject key is the primary key of the landed table whose contract holds
  direct identifiers (`subject_table`), taken from the contracts, never hard-coded;
- **what**: the subject's own raw direct identifiers are read from the restricted zone
  (bronze rows keyed to them, columns or the raw JSON line), values another person also
  holds are left out; their keyed tokens are computed with the PII key;
- **rows**: in every table (restricted, silver, gold, feature logs, the prediction log,
  quarantine) the rows keyed to the subject (the key column equals the subject, or a
  text column such as a raw JSON line, a quarantined row or a logged request names
  them, or a column holds one of their tokens) are deleted in one Delta commit per
  table; restricted-zone text that only mentions one of their raw values (another
  person's review naming them) is redacted to ``[ERASED]`` instead;
- **history**: every data file that is no longer part of the current version and
  holds such a row is deleted, and the statistics of those files are removed from the
  Delta log, so every version that held the subject becomes unreadable (reading one
  says it was erased, `hortus.lakehouse.tables`), while older versions that never held
  them stay readable.  The same on disk and with the lakehouse in a bucket (s3://):
  files are listed, read, rewritten and deleted through `TableFiles`, and each commit
  is made under the table's lease fence (on object storage the lease token goes into
  the commit, `hortus.lakehouse.lease`);
- **online store**: the subject's entity rows are deleted and the file compacted;
- **reports**: text files under reports/ naming the subject are redacted in place (both
  before the tables, while the raw values that make their tokens are still readable);
- **resume**: tables are erased one by one, the restricted zone last and in it last the
  tables the subject's raw values are resolved from, so an erasure killed part-way is
  finished by running the same command again (the leases of a dead process are taken
  over).  The record is written first as an intent: killed after its last table and
  before its record is complete, the rerun finds the subject's ``pending`` row and
  completes it (`erasure_log` / `hortus subject erasures --pending` list unfinished ones);
- **record**: one row in ``ops.erasures`` (a keyed reference of the subject, never the
  subject itself; counts per table, versions before/after, files removed, affected
  model versions), written ``pending`` before anything is touched, updated after each
  table and completed ``done`` at the end, and one audit record per table changed, under
  the ``erase`` grant.

`find_subject` is the hidden-data scan that proves it: every data file of every table
(hence every reachable version), the Delta logs, the online store file and every file
under reports/ are searched for the subject key, raw values and tokens.

Model versions whose receipts read a table version that held the subject are listed as
affected; retraining is the model owner's decision.  `subject_export` writes everything
held about a subject in the restricted zone (and the rows keyed to them elsewhere, as
the reader may see them) to one JSON file, audited.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import polars as pl
from deltalake import CommitProperties, DeltaTable

from hortus.config import RESTRICTED_LAYERS
from hortus.errors import HortusError
from hortus.governance.audit import AuditRecord
from hortus.lakehouse import lease
from hortus.lakehouse._objstore import TableFiles
from hortus.lakehouse.contracts import Contract
from hortus.lakehouse.pii import load_key, readable_keys, token
from hortus.lakehouse.tables import Lakehouse

ERASURES = "ops.erasures"
AUDIT_TABLE = "ops.audit_log"
ERASED = "[ERASED]"
MIN_TEXT = 6  # raw values shorter than this are never searched inside text
REF_PREFIX = "era_"
# tables an erasure never rewrites: the tamper-evident audit log and the erasure log
# (both hold references, never the subject's values)
UNTOUCHED = (AUDIT_TABLE, ERASURES)


class SubjectError(HortusError):
    """An erasure or export request that cannot be carried out (unknown subject...)."""


@dataclass
class Subject:
    """The person an erasure or export is about, and every value that identifies them."""

    key: str  # subject key column, e.g. user_id
    value: str  # the subject, e.g. u000123
    table: str  # the landed table the key belongs to, e.g. silver.users
    ref: str  # keyed reference kept in ops.erasures (never the value itself)
    raw: list[str] = field(default_factory=list)  # own raw direct identifiers
    tokens: list[str] = field(default_factory=list)  # their keyed tokens

    def needles(self) -> list[str]:
        """Return every string a scan must not find: the key, raw values, tokens."""
        return [self.value, *self.raw, *self.tokens]


# ------------------------------------------------------------------ the subject
def subject_table(lh: Lakehouse, table: str | None = None) -> Contract:
    """Return the landed contract whose primary key names data subjects.

    It is the landed table with direct identifiers and a one-column primary key that
    other landed tables refer to (the users of a shop: events and reviews carry the
    user id); `table` chooses one when a project has several.
    """
    landed = [c for c in lh.catalog.landed()]
    if table:
        contract = lh.catalog.get(table)
        if contract not in landed or len(contract.primary_key) != 1:
            raise SubjectError(f"{table} is not a landed table with a one-column primary key")
        return contract
    found = [
        c
        for c in landed
        if len(c.primary_key) == 1 and any(col.pii == "direct" for col in c.columns)
    ]
    if len(found) > 1:  # the one whose key other landed tables refer to (a person's id)
        found = [
            c
            for c in found
            if any(c.primary_key[0] in o.column_names for o in landed if o is not c)
        ] or found
    if len(found) != 1:
        names = ", ".join(c.full_name for c in found) or "none"
        raise SubjectError(
            f"cannot tell which table names data subjects (candidates: {names}); pass --table"
        )
    return found[0]


def subject_ref(value: str, key: bytes) -> str:
    """Return the keyed reference of a subject kept in ops.erasures (not a PII token)."""
    digest = hmac.new(key, b"erasure\x00" + value.encode(), hashlib.sha256).hexdigest()
    return REF_PREFIX + digest[:24]


def _raw_col(contract: Contract, bronze_cols: list[str], name: str) -> pl.Expr:
    """Return a column of a bronze table: stored as such, or from the raw JSON line."""
    if name in bronze_cols:
        return pl.col(name).cast(pl.String)
    return pl.col("_raw").str.json_path_match(f"$.{name}")


def _read(lh: Lakehouse, name: str) -> pl.DataFrame | None:
    """Return a whole table as stored (None if never written), on disk or in a bucket.

    Below the table API: erasure must see every row as it is, and audits what it does.
    """
    where = lh.location(name)
    if not where.exists():
        return None
    return pl.read_delta(where.uri, **where.write_kwargs())


def _scan(lh: Lakehouse, name: str) -> pl.LazyFrame:
    where = lh.location(name)
    return pl.scan_delta(where.uri, **where.write_kwargs())


def _bronze(lh: Lakehouse, contract: Contract) -> pl.DataFrame | None:
    return _read(lh, f"bronze.{contract.name}")


def resolve(lh: Lakehouse, value: str, *, table: str | None = None) -> Subject:
    """Collect the subject's raw direct identifiers (own values only) and their tokens."""
    contract = subject_table(lh, table)
    key = contract.primary_key[0]
    pii_key = load_key(lh.paths)
    olds = readable_keys(lh.paths)
    mine: dict[str, set[str]] = {}
    others: dict[str, set[str]] = {}
    for c in lh.catalog.landed():
        if key not in c.column_names:
            continue
        direct = [col.name for col in c.columns if col.pii == "direct"]
        df = _bronze(lh, c)
        if df is None or not direct:
            continue
        cols = df.columns
        vals = df.select(
            _raw_col(c, cols, key).alias("__key"),
            *[_raw_col(c, cols, d).alias(d) for d in direct],
        )
        for d in direct:
            own = vals.filter(pl.col("__key") == value)[d].drop_nulls()
            rest = vals.filter(pl.col("__key") != value)[d].drop_nulls()
            mine.setdefault(d, set()).update(v for v in own.to_list() if v.strip())
            others.setdefault(d, set()).update(rest.to_list())
    raw = sorted({v for d, vs in mine.items() for v in vs if v not in others.get(d, set())})
    return Subject(
        key=key,
        value=value,
        table=contract.full_name,
        ref=subject_ref(value, pii_key),
        raw=raw,
        # tokens of older key versions too: Delta history from before a rotation holds them
        tokens=sorted({token(v, k) for v in raw for k in {pii_key, *olds.values()}}),
    )


# ------------------------------------------------------------- row matching
def _word(value: str) -> str:
    return rf"(?:^|[^A-Za-z0-9_]){re.escape(value)}(?:$|[^A-Za-z0-9_])"


def keyed(subject: Subject, schema: pl.Schema) -> pl.Expr:
    """Return the rows of a frame keyed to the subject (key, a text naming them, a token)."""
    conds: list[pl.Expr] = []
    strings = [n for n, t in schema.items() if t == pl.String]
    if subject.key in schema:
        conds.append(pl.col(subject.key).cast(pl.String) == subject.value)
    for n in strings:
        if n != subject.key:
            conds.append(pl.col(n).str.contains(_word(subject.value)))
        if subject.tokens:
            conds.append(pl.col(n).is_in(subject.tokens))
    if not conds:
        return pl.lit(False)
    return pl.any_horizontal(conds).fill_null(False)


def mentions(subject: Subject, schema: pl.Schema) -> pl.Expr:
    """Return the rows whose text holds one of the subject's raw values (restricted zone)."""
    values = [v for v in subject.raw if len(v) >= MIN_TEXT]
    conds = [
        pl.col(n).str.contains_any(values) for n, t in schema.items() if t == pl.String and values
    ]
    return pl.any_horizontal(conds).fill_null(False) if conds else pl.lit(False)


def _sql_lit(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _sql_like(v: str) -> str:
    return _sql_lit("%" + v.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")


def _keyed_sql(subject: Subject, schema: pl.Schema, rows: pl.DataFrame) -> str:
    """Return the Delta predicate deleting the rows `keyed` selects (by primary columns)."""
    parts = []
    if subject.key in schema:
        parts.append(f'CAST("{subject.key}" AS VARCHAR) = {_sql_lit(subject.value)}')
    for n, t in schema.items():
        if t != pl.String:
            continue
        hit = rows.filter(pl.col(n).str.contains(_word(subject.value)))
        if n != subject.key and hit.height:
            # the exact texts that name the subject (a LIKE would also match longer ids)
            parts.append(f'"{n}" IN ({", ".join(_sql_lit(v) for v in hit[n].unique())})')
        if subject.tokens:
            parts.append(f'"{n}" IN ({", ".join(_sql_lit(v) for v in subject.tokens)})')
    return " OR ".join(f"({p})" for p in parts) or "FALSE"


# ------------------------------------------------------------------ the plan
@dataclass
class TableErasure:
    """What an erasure did (or would do) to one table."""

    table: str
    rows: int = 0  # rows deleted from the current version
    redacted: int = 0  # restricted rows whose text mentioned the subject, redacted
    version_before: int | None = None
    version_after: int | None = None
    files_removed: int = 0  # data files of older versions that held the subject
    versions_held: list[int] = field(default_factory=list)


def _tables(lh: Lakehouse) -> list[Contract]:
    return [c for c in lh.catalog if c.full_name not in UNTOUCHED and lh.exists(c.full_name)]


def _files(dt: DeltaTable, files: TableFiles) -> set[str]:
    """Return the data files of a table version, relative to the table (folder or prefix)."""
    return {files.relative(uri) for uri in dt.file_uris()}


def _file_holds(files: TableFiles, rel: str, subject: Subject, restricted: bool) -> bool:
    data = files.read(rel)
    try:
        df = pl.read_parquet(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - an unreadable file is checked by bytes below
        return any(n.encode() in data for n in subject.needles())
    cond = keyed(subject, df.schema)
    if restricted:
        cond = cond | mentions(subject, df.schema)
    return bool(df.select(cond.any()).item())


_COMMIT = re.compile(r"^_delta_log/(\d{20})\.json$")


def _commits(files: TableFiles) -> list[tuple[int, str]]:
    """Return (version, relative path) of the JSON commits of a table's Delta log, in order."""
    return sorted((int(m.group(1)), f) for f in files.log_files() if (m := _COMMIT.match(f)))


def _held_versions(files: TableFiles, held: set[str]) -> list[int]:
    """Return the versions of a table whose files include one of `held` (relative paths).

    Replays the JSON commits of the Delta log (add/remove actions) once, instead of
    opening the table at every version (tables appended to every few seconds have
    thousands).  Versions whose commit files are gone cannot be time-travelled to anyway.
    """
    if not held:
        return []
    active: set[str] = set()
    out = []
    for version, log in _commits(files):
        for line in files.read(log).decode("utf-8").splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "add" in action:
                active.add(unquote(action["add"]["path"]))
            elif "remove" in action:
                active.discard(unquote(action["remove"]["path"]))
        if active & held:
            out.append(version)
    return out


def _scrub_log(files: TableFiles, removed: set[str], subject: Subject, erasure_id: str) -> None:
    """Keep the subject out of the Delta log: statistics of removed files, erasure predicates.

    The add/remove actions of the deleted files lose their column statistics (min/max
    values may be the subject's), and the commits of the erasure itself record
    ``[ERASED] <erasure id>`` instead of the predicate that named the subject.
    """
    needles = subject.needles()
    for _, log in _commits(files):
        lines = files.read(log).decode("utf-8").splitlines()
        changed = False
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            action, before = json.loads(line), changed
            changed = False
            for kind in ("add", "remove"):
                act = action.get(kind)
                if act and unquote(act.get("path", "")) in removed and act.get("stats"):
                    act["stats"] = None
                    changed = True
            params = (action.get("commitInfo") or {}).get("operationParameters") or {}
            for k, v in params.items():
                if isinstance(v, str) and any(n in v for n in needles):
                    params[k] = f"{ERASED} {erasure_id}"
                    changed = True
            if changed:
                lines[i] = json.dumps(action, separators=(",", ":"))
            changed = changed or before
        if changed:
            files.write(log, ("\n".join(lines) + "\n").encode("utf-8"))
    for cp in files.log_files():
        if ".checkpoint" in cp and cp.endswith(".parquet"):
            _scrub_checkpoint(files, cp, removed)


def _scrub_checkpoint(files: TableFiles, cp: str, removed: set[str]) -> None:
    """Drop the statistics of removed files from a Delta checkpoint (hortus maintain makes some)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(files.read(cp)))
    if "add" not in table.column_names:
        return
    rows = table.to_pylist()
    changed = False
    for row in rows:
        add = row.get("add")
        if add and unquote(add.get("path") or "") in removed:
            for k in ("stats", "stats_parsed"):
                if add.get(k) is not None:
                    add[k] = None
                    changed = True
    if changed:
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), sink)
        files.write(cp, sink.getvalue())


def _log_text(files: TableFiles, log: str) -> bytes:
    """Return a Delta log file's content as bytes to search (a checkpoint: its rows as text)."""
    data = files.read(log)
    if log.endswith(".parquet"):
        import pyarrow.parquet as pq

        return str(pq.read_table(io.BytesIO(data)).to_pylist()).encode()
    return data


def _commit(lh: Lakehouse, note: str, txns: list | None = None) -> CommitProperties:
    meta = lh.lineage_metadata(inputs={}, note=note, stage="erase")
    return CommitProperties(custom_metadata=meta, app_transactions=txns or None)


def _fenced(lh: Lakehouse, c: Contract, make):
    """Make one Delta commit of a table under its lease's fence; return what `make` returned.

    ``make(dt, txns)`` commits on snapshot `dt` carrying the transaction actions `txns`
    (the lease token, on object storage: the fence is inside the commit) or none (on
    disk the fence is the commit lock held around it).  `hortus.lakehouse.lease`.
    """
    scope = lease.scope_for(c.layer, c.full_name)
    where = lh.location(c.full_name)
    with lease.fenced_commit(lh.paths.lakehouse_root, scope, c.full_name) as fence:
        if fence is not None:
            return fence.commit(where, lambda dt: make(dt, fence.transactions()))
        return make(where.delta(), None)


def _erase_table(lh: Lakehouse, c: Contract, subject: Subject, ref: str) -> TableErasure:
    """Delete the subject's rows from a table's current version and its older files."""
    where = lh.location(c.full_name)
    files = TableFiles(where)
    restricted = c.layer in RESTRICTED_LAYERS
    dt = where.delta()
    out = TableErasure(c.full_name, version_before=dt.version())
    current = _files(dt, files)
    df = pl.read_delta(where.uri, **where.write_kwargs())
    rows = df.filter(keyed(subject, df.schema))
    held = {f for f in files.data_files() if _file_holds(files, f, subject, restricted)}
    out.versions_held = _held_versions(files, held)
    if rows.height:
        predicate = _keyed_sql(subject, df.schema, rows)
        metrics = _fenced(
            lh, c, lambda dt, txns: dt.delete(predicate, commit_properties=_commit(lh, ref, txns))
        )
        out.rows = int((metrics or {}).get("num_deleted_rows", 0) or 0)
    if restricted:
        left = pl.read_delta(where.uri, **where.write_kwargs())
        hit = left.filter(mentions(subject, left.schema))
        if hit.height:
            values = [v for v in subject.raw if len(v) >= MIN_TEXT]
            updates = {}
            for n, t in left.schema.items():
                if t != pl.String or not hit[n].str.contains_any(values).any():
                    continue
                expr = f'"{n}"'
                for v in values:
                    expr = f"replace({expr}, {_sql_lit(v)}, {_sql_lit(ERASED)})"
                updates[n] = expr
            pred = " OR ".join(f'"{n}" LIKE {_sql_like(v)}' for n in updates for v in values)
            m = _fenced(
                lh,
                c,
                lambda dt, txns: dt.update(
                    updates=updates, predicate=pred, commit_properties=_commit(lh, ref, txns)
                ),
            )
            out.redacted = int((m or {}).get("num_updated_rows", 0) or 0)
    dt = where.delta()
    out.version_after = dt.version()
    now = _files(dt, files)
    # files written between the delete and the redaction hold the mentions too
    held |= {
        f
        for f in files.data_files()
        if f not in now | held and _file_holds(files, f, subject, restricted)
    }
    out.versions_held = _held_versions(files, held)
    removed = {f for f in held if f not in now}
    for f in removed:
        files.delete(f)
    out.files_removed = len(removed)
    _scrub_log(files, removed | (current - now), subject, ref)
    return out


# ----------------------------------------------------------- other stores
def _online_erase(lh: Lakehouse, subject: Subject) -> tuple[int, str]:
    """Delete the subject's rows from the project's online store; return (rows, where)."""
    from hortus.features.online import open_store
    from hortus.project.definition import Project

    fs = Project.load(lh.paths.root).feature_set()
    if fs is None:
        return 0, "none"
    store = open_store(lh.paths.root, fs)
    try:
        return store.delete_entities(subject.key, subject.value), store.where
    finally:
        store.close()


def _report_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def _redact_reports(lh: Lakehouse, subject: Subject) -> list[str]:
    """Redact the subject's key, raw values and tokens in the text files under reports/."""
    pattern = re.compile(
        "|".join(re.escape(n) for n in sorted(subject.needles(), key=len, reverse=True))
    )
    changed = []
    for f in _report_files(lh.paths.reports):
        data = f.read_bytes()
        if not any(n.encode() in data for n in subject.needles()):
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a binary file: listed by the scan, never corrupted here
        f.write_text(pattern.sub(ERASED, text), encoding="utf-8")
        changed.append(str(f.relative_to(lh.paths.root)))
    return changed


def landing_files(lh: Lakehouse, subject: Subject) -> list[str]:
    """Return the landing files under data/ that still name the subject (gzip read through).

    The landing snapshot is the pipeline's source, pinned by DVC: an erasure leaves it
    alone (its owner re-exports it without the subject and re-pins it), so the erasure
    reports these files: a rebuild from them would land the subject again.
    """
    import contextlib
    import gzip

    word = re.compile(_word(subject.value).encode())
    out = []
    for f in _report_files(lh.paths.data):
        data = f.read_bytes()
        if f.suffix == ".gz":
            with contextlib.suppress(OSError, EOFError):  # a truncated file: its bytes
                data = gzip.decompress(data)
        if word.search(data):
            out.append(str(f.relative_to(lh.paths.root)))
    return out


# ------------------------------------------------------------------ models
def affected_models(lh: Lakehouse, held: dict[str, list[int]]) -> list[str]:
    """Return the model versions (name@vN) whose receipts read a table version that held them."""
    versions = _read(lh, "ops.model_versions")
    if versions is None:
        return []
    out = []
    for r in versions.select("name", "version", "tables_read").iter_rows():
        read = json.loads(r[2] or "{}")
        if any(int(v) in held.get(t, []) for t, v in read.items()):
            out.append(f"{r[0]}@v{r[1]}")
    return sorted(out)


def erasures(lh: Lakehouse) -> pl.DataFrame:
    """Return ops.erasures (empty with its schema when no erasure happened).

    ``status`` is ``pending`` for an erasure started and not finished, else ``done``
    (rows written before erasures recorded their intent have none: done).
    """
    df = _read(lh, ERASURES)
    if df is None:
        return pl.DataFrame(schema=lh.catalog.get(ERASURES).schema)
    if "status" not in df.columns:
        df = df.with_columns(status=pl.lit(None, dtype=pl.String))
    return df.with_columns(pl.col("status").fill_null(DONE))


def erasures_of(lh: Lakehouse, tables_read: dict[str, int]) -> list[str]:
    """Return a sentence per erasure that removed rows from a table version in `tables_read`."""
    out = []
    for r in erasures(lh).iter_rows(named=True):
        done = json.loads(r["tables"] or "{}")
        hit = sorted(
            t
            for t, v in tables_read.items()
            if int(v) in (done.get(t) or {}).get("versions_held", [])
        )
        if hit:
            out.append(
                f"inputs erased: erasure {r['erasure_id']} on {r['erased_at']:%Y-%m-%d} removed a "
                f"data subject's rows from {', '.join(f'{t} v{tables_read[t]}' for t in hit)} "
                "(right to erasure); those versions can no longer be read or rebuilt as they were"
            )
    return out


# ------------------------------------------------------------------- erase
@dataclass
class ErasureResult:
    """What `erase` did."""

    erasure_id: str
    ref: str
    already: bool  # erased before and nothing found again: nothing changed
    tables: list[TableErasure]
    online_rows: int
    reports: list[str]
    models: list[str]
    reconcile: list[dict]
    remaining: list[str]  # where the scan still found the subject (empty when complete)
    landing: list[str] = field(default_factory=list)  # landing files under data/ naming them
    resumed: bool = False  # continued an erasure of this subject left pending (interrupted)

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict."""
        return asdict(self)


PENDING, DONE = "pending", "done"  # ops.erasures.status


@dataclass
class _Record:
    """The erasure's row of ops.erasures, kept up to date while it runs (the intent).

    Written ``pending`` before anything is touched (the subject's keyed reference only,
    never a value), updated after the online store and reports and after each table
    (what was removed where: counts, versions, files), completed ``done`` at the end.  A
    rerun of the same erasure continues this row, so one erasure has one row however
    often it was interrupted.
    """

    row: dict

    @classmethod
    def intent(cls, lh: Lakehouse, erasure_id: str, subject: Subject, reason: str) -> _Record:
        row = {
            "erasure_id": erasure_id, "subject_ref": subject.ref, "subject_key": subject.key,
            "requested_by": lh.user, "reason": reason, "erased_at": datetime.now(UTC),
            "tables": "{}", "rows": 0, "online_rows": 0, "reports": "[]",
            "models_affected": "[]", "complete": False, "status": PENDING,
        }  # fmt: skip
        rec = cls(row)
        rec.write(lh, new=True)
        return rec

    def tables(self) -> dict[str, dict]:
        return json.loads(self.row["tables"] or "{}")

    def add_table(self, t: TableErasure) -> None:
        """Fold one table's erasure in (a rerun's part added to the interrupted run's)."""
        done = self.tables()
        mine = asdict(t)
        if (old := done.get(t.table)) is not None:
            mine = old | {
                "rows": old["rows"] + t.rows,
                "redacted": old["redacted"] + t.redacted,
                "files_removed": old["files_removed"] + t.files_removed,
                "version_after": t.version_after,
                "versions_held": sorted({*old["versions_held"], *t.versions_held}),
            }
        done[t.table] = mine
        self.row["tables"] = json.dumps(done, sort_keys=True)
        self.row["rows"] = sum(v["rows"] for v in done.values())

    def add_stores(self, online: int, reports: list[str]) -> None:
        self.row["online_rows"] += online
        self.row["reports"] = json.dumps(sorted({*json.loads(self.row["reports"]), *reports}))

    def write(self, lh: Lakehouse, *, new: bool = False) -> None:
        """Append the row (`new`), else replace it by its id: one Delta commit of ops.erasures."""
        where = lh.location(ERASURES)
        props = _commit(lh, self.row["erasure_id"])
        if new or not where.exists():
            frame = pl.DataFrame([self.row], schema=lh.catalog.get(ERASURES).schema)
            if where.local is not None:
                where.local.parent.mkdir(parents=True, exist_ok=True)
            frame.write_delta(
                where.uri, mode="append",
                # a log from before the status column gains it (older rows: null = done)
                delta_write_options={"commit_properties": props, "schema_mode": "merge"},
                **where.write_kwargs(),
            )  # fmt: skip
            return
        updates = {k: _sql_value(v) for k, v in self.row.items() if k != "erasure_id"}
        got = where.delta().update(
            updates=updates, predicate=f"erasure_id = {_sql_lit(self.row['erasure_id'])}",
            commit_properties=props,
        )  # fmt: skip
        if int(got.get("num_updated_rows", 0)) != 1:
            raise SubjectError(
                f"{ERASURES}: the row of erasure {self.row['erasure_id']} is gone or duplicated "
                f"({got.get('num_updated_rows')} rows matched); the erased tables are as the audit "
                "log says, the record could not be completed"
            )


def _sql_value(v: object) -> str:
    """Return a Delta update's SQL literal for a value of an ops.erasures row (quotes escaped)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, datetime):  # microseconds since the epoch (the column's UTC timestamp)
        return str((v - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1))
    return _sql_lit(str(v))


def _erase_all(
    lh: Lakehouse, targets: list[Contract], subject: Subject, record: _Record
) -> list[TableErasure]:
    """Erase the subject from each table (under the leases held), auditing and recording each."""
    erasure_id = record.row["erasure_id"]
    done = []
    for c in targets:
        t = _erase_table(lh, c, subject, erasure_id)
        if t.rows or t.redacted or t.files_removed:
            done.append(t)
            lh.authorize(
                "erase",
                c.full_name,
                detail=f"{erasure_id} subject={subject.ref} rows={t.rows} redacted={t.redacted} "
                f"files_removed={t.files_removed} v{t.version_before}->v{t.version_after}",
            )
            record.add_table(t)
            record.write(lh)
    return done


def erasure_log(lh: Lakehouse, *, pending: bool = False) -> pl.DataFrame:
    """Return ops.erasures for an operator, newest first; `pending`: only the unfinished ones.

    An erasure left ``pending`` was interrupted (killed) before its record was complete:
    the same `hortus erase` again finishes it.  Needs the ``read`` or the ``erase`` grant
    on ops.erasures (whoever may erase may see what was erased); audited.
    """
    decision = lh.policy.decide(lh.user, "read", ERASURES) if lh.policy else None
    grant = "read" if decision is not None and decision.allowed else "erase"
    lh.authorize(grant, ERASURES, detail=f"list erasures{' pending' if pending else ''}")
    df = erasures(lh).sort("erased_at", descending=True)
    return df.filter(pl.col("status") == PENDING) if pending else df


def erase(
    lh: Lakehouse, value: str, *, reason: str, table: str | None = None, dry_run: bool = False
) -> ErasureResult:
    """Erase a data subject from every table, its history, the online store and the reports.

    Needs the ``erase`` grant on every table it changes (checked for all of them before
    anything changes; audited).  Erasing a subject erased before, with nothing found
    again, changes nothing and says so; an unknown subject raises SubjectError.  An
    erasure of the subject left ``pending`` (interrupted) is continued and completed, even
    when every table is clean already.
    """
    from hortus.lakehouse.silver import reconcile

    if not reason.strip():
        raise SubjectError("an erasure needs a --reason (kept in ops.erasures and the audit log)")
    contract = subject_table(lh, table)
    lh._require("erase", f"bronze.{contract.name}")  # before any lookup: no existence oracle
    subject = resolve(lh, value, table=table)
    refs = [subject.ref, *(subject_ref(value, k) for k in readable_keys(lh.paths).values())]
    before = erasures(lh).filter(pl.col("subject_ref").is_in(refs))  # by any key version
    pending = before.filter(pl.col("status") == PENDING)
    contracts = _tables(lh)
    found = {}
    for c in contracts:
        df = _scan(lh, c.full_name)
        cond = keyed(subject, df.collect_schema())
        found[c.full_name] = int(df.filter(cond).select(pl.len()).collect().item())
    if not pending.height and not any(found.values()) and not find_subject(lh, subject):
        if before.height:
            first = before.row(0, named=True)
            return ErasureResult(first["erasure_id"], subject.ref, True, [], 0, [], [], [], [])
        raise SubjectError(
            f"no data subject {value!r}: no row of any table has {subject.key} = {value!r} "
            "and it was never erased; check the id (nothing was changed)"
        )
    targets = [c for c in contracts if found[c.full_name] or c.layer in RESTRICTED_LAYERS]
    # the restricted zone last, and in it the tables `resolve` reads the subject's raw values
    # from: the other tables need those values (tokens, mentions), so an erasure interrupted
    # (killed) part-way is finished by running it again
    sources = {
        f"bronze.{c.name}"
        for c in lh.catalog.landed()
        if subject.key in c.column_names and any(col.pii == "direct" for col in c.columns)
    }
    targets.sort(key=lambda c: (c.layer in RESTRICTED_LAYERS, c.full_name in sources))
    for c in targets:  # every grant before any change
        lh._require("erase", c.full_name)
    lh._require("erase", ERASURES)
    if pending.height:  # an interrupted erasure of this subject: continue its record
        erasure_id = pending.row(0, named=True)["erasure_id"]
    else:
        erasure_id = "ER-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + subject.ref[4:12]
    if dry_run:
        done = [TableErasure(c.full_name, rows=found[c.full_name]) for c in targets]
        return ErasureResult(erasure_id, subject.ref, False, done, 0, [], [], [], [])
    # one writer at a time: the build tables' leases for the whole erasure, its record
    # included (a stage running meanwhile refuses it, naming the holder, before anything
    # changes; a killed erasure's leases are taken over by its rerun)
    scopes = {lease.scope_for(c.layer, c.full_name) for c in targets} - {None}
    with lease.hold(lh.paths.lakehouse_root, sorted(scopes), holder=lh.user, stage="erase"):
        if pending.height:
            record = _Record(pending.row(0, named=True))
        else:  # the intent, before anything is touched
            record = _Record.intent(lh, erasure_id, subject, reason)
            lh.authorize("erase", ERASURES, detail=f"{erasure_id} subject={subject.ref} started")
        # the online store and reports first, while the raw values (and so the tokens)
        # can still be resolved from the restricted zone
        online, _ = _online_erase(lh, subject)
        reports = _redact_reports(lh, subject)
        if online or reports:
            record.add_stores(online, reports)
            record.write(lh)
        _erase_all(lh, targets, subject, record)
        done = [TableErasure(**t) for _, t in sorted(record.tables().items())]
        models = affected_models(lh, {t.table: t.versions_held for t in done})
        remaining = find_subject(lh, subject)
        record.row |= {
            "erased_at": datetime.now(UTC), "models_affected": json.dumps(models),
            "complete": not remaining, "status": DONE,
        }  # fmt: skip
        record.write(lh)
    row = record.row
    lh.authorize(
        "erase",
        ERASURES,
        detail=f"{erasure_id} subject={subject.ref} tables={len(done)} rows={row['rows']} "
        f"online_rows={row['online_rows']} reports={len(json.loads(row['reports']))} "
        f"models_affected={','.join(models) or '-'} complete={row['complete']}"
        + (" resumed" if pending.height else ""),
    )
    return ErasureResult(
        erasure_id, subject.ref, False, done, row["online_rows"], json.loads(row["reports"]),
        models, reconcile(lh), remaining, landing_files(lh, subject), resumed=bool(pending.height),
    )  # fmt: skip


# -------------------------------------------------------------------- scan
def find_subject(lh: Lakehouse, subject: Subject) -> list[str]:
    """Return where the subject's key, raw values or tokens still are (empty: nowhere).

    Searches every data file of every table (every reachable version reads only these),
    each table's Delta log, the online store file and every file under reports/.
    """
    needles = subject.needles()
    raw_bytes = [n.encode() for n in needles]
    word = re.compile(_word(subject.value).encode())
    others = [n.encode() for n in needles if n != subject.value]
    where = []
    for c in lh.catalog:
        files = TableFiles(lh.location(c.full_name))
        for f in files.data_files():
            data = files.read(f)
            name = f.rsplit("/", 1)[-1]
            try:
                df = pl.read_parquet(io.BytesIO(data))
            except Exception:  # noqa: BLE001 - unreadable: fall back to the bytes
                if any(b in data for b in raw_bytes):
                    where.append(f"{c.full_name}: {name}")
                continue
            strings = [n for n, t in df.schema.items() if t == pl.String]
            conds = [pl.col(n).str.contains(_word(subject.value)) for n in strings]
            conds += [pl.col(n).str.contains_any(needles[1:]) for n in strings if needles[1:]]
            if subject.key in df.columns:
                conds.append(pl.col(subject.key).cast(pl.String) == subject.value)
            if conds and df.select(pl.any_horizontal(conds).fill_null(False).any()).item():
                where.append(f"{c.full_name}: {name}")
        for log in files.log_files():
            data = _log_text(files, log)
            if word.search(data) or any(b in data for b in others):
                where.append(f"{c.full_name}: {log}")
    files = [lh.paths.online_store] if lh.paths.online_store.exists() else []
    for f in files + _report_files(lh.paths.reports):
        data = f.read_bytes()
        if word.search(data) or any(b in data for b in others):
            where.append(str(f.relative_to(lh.paths.root)))
    return where


# ------------------------------------------------------------------ export
def subject_export(lh: Lakehouse, value: str, out: Path, *, table: str | None = None) -> dict:
    """Write everything held about a subject to one JSON file (audited); return a summary.

    The restricted zone (raw bronze rows keyed to them, quarantined rows naming them) and
    the rows keyed to them in every other table the user may read (as the policy shows
    them).  Each table read is audited by the table API; the export itself is one more
    audit record (``export``; the subject's keyed reference and counts, never values).
    """
    contract = subject_table(lh, table)
    lh._require("read", f"bronze.{contract.name}")  # the restricted zone, before any lookup
    subject = resolve(lh, value, table=table)
    held: dict[str, list[dict]] = {}
    skipped = []
    for c in _tables(lh):
        name = c.full_name
        decision = lh.policy.decide(lh.user, "read", name) if lh.policy else None
        if decision is None or not decision.allowed:
            if c.layer in RESTRICTED_LAYERS:
                lh.read(name)  # refused and audited: the restricted zone is the point
            skipped.append(name)
            continue
        lf = lh.scan(name)
        cond = keyed(subject, lf.collect_schema())
        if c.layer in RESTRICTED_LAYERS:
            cond = cond | mentions(subject, lf.collect_schema())
        rows = lf.filter(cond).collect()
        if rows.height:
            held[name] = json.loads(rows.write_json())
    if not held:
        raise SubjectError(
            f"no data subject {value!r}: no row you may read has {subject.key} = {value!r}"
        )
    doc = {
        "subject": {"key": subject.key, "value": value, "table": subject.table},
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "exported_by": lh.user,
        "tables": held,
        "not_readable_by_you": skipped,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    counts = {t: len(r) for t, r in held.items()}
    lh._audit.add(
        AuditRecord(
            user=lh.user,
            action="export",
            object=subject.table,
            detail=f"subject={subject.ref} rows={sum(counts.values())} tables={len(counts)} "
            f"stage={lh.stage}",
            policy_version=lh.policy.version if lh.policy else None,
            ts=datetime.now(UTC),
        )
    )
    lh.flush_audit()
    return {"file": str(out), "rows": counts, "skipped": skipped}
