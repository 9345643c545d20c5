"""The access audit log: an append-only, tamper-evident Delta table in the ops plane.

Every read, write, re-identification and denied attempt through the table API,
every promotion, approval and policy change is one record: seq, ts, user,
action, object, outcome (allowed | denied), detail, policy_version, prev_hash,
hash.  The table lives at an explicit path (by
convention `<lakehouse>/ops/audit_log`, see `default_path`) and is written with
deltalake/polars directly, not through `hortus.lakehouse.tables.Lakehouse`, so that the
table API can audit its own reads without recursing.

Hash chain, and why it is keyed
-------------------------------
Each record's ``hash`` is HMAC-SHA256(audit key, canonical JSON of its fields
seq, ts, user, action, object, outcome, detail, policy_version and prev_hash),
and ``prev_hash`` is the previous record's hash (64 zeros for seq 1).  Editing,
deleting, inserting or reordering records therefore breaks the chain at the
first record touched, and `AuditLog.verify` says where (`broken_at`) and why.

A plain SHA-256 chain would not be enough: whoever can rewrite the table can
also recompute every hash from the edited record onward, and the rewritten
chain would verify.  With a key held by the audit writer, a rewrite made
without the key (plain SHA-256 or another key) fails at the first rewritten
record.

What it does not protect against:

- someone holding the audit key: they can rewrite the whole chain undetectably.
  Keep the key with the writer only (HORTUS_AUDIT_KEY from a secret store, or
  `.hortus/secrets/audit.key` readable by the service account only);
- dropping records from the end (or the whole table): the remaining chain is
  consistent.  Record `AuditLog.head()` elsewhere (a ticket, a second store)
  and pass it to `verify(anchor=...)` to detect truncation;
- records never written: the log proves integrity of what was logged, not
  completeness of logging.

Canonical JSON is Python's JSON encoder with sorted keys, separators ``,``/``:``
and UTF-8 text (no ASCII escaping), with ts as integer microseconds since the
Unix epoch (UTC).  It is fixed here rather than left to a dataframe library's
JSON writer so that hashes stay verifiable across library upgrades.  HMAC has no
vectorised form, so append and verify compute one canonical text and one HMAC
per record in Python (tens of thousands of records per second); the
structural checks (seq gaps, duplicates, prev_hash links) are vectorised.

Concurrency
-----------
Single writer: an append reads the last record and writes the next ones, so two
writers racing would fork the chain (duplicate seq, detected by `verify`).  An
exclusive `flock` on ``<path>.lock`` serialises appends from processes on one
machine; writers on several machines must go through one audit service.

Batching and policy changes
---------------------------
`AuditBuffer` holds the records of one `hortus.lakehouse.tables.Lakehouse` and appends them
in one commit per flush (at each write and denial, on close, at garbage collection
and at interpreter exit), so a stage reading many tables makes few commits.  A
record whose policy_version differs from the last one logged is preceded by a
`policy_change` record (`AuditLog.append(track_policy=True)`).  Records buffered
by a process killed outright (SIGKILL, power loss) are lost; denials and writes
are flushed before the call returns or raises.

The key: HORTUS_AUDIT_KEY, else `.hortus/secrets/audit.key` (git-ignored).
`write_demo_audit_key` writes a fixed key labelled DEMO-ONLY, like the PII key
of the demo; replace it for real use.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import polars as pl
from deltalake import DeltaTable

from hortus.config import Paths
from hortus.errors import HortusError
from hortus.lakehouse.keys import read_key, write_demo_key

if TYPE_CHECKING:
    from hortus.governance.access import Decision

DEMO_AUDIT_KEY = "hortus-DEMO-ONLY-audit-key-do-not-use-for-real-logs"
KEY_ENV = "HORTUS_AUDIT_KEY"
KEY_FILE = "audit.key"
GENESIS = "0" * 64
OUTCOMES = ("allowed", "denied")
# Conventional actions; any lower-case word is accepted.
AUDIT_ACTIONS = ("read", "write", "denied", "promote", "approve", "rollback", "policy_change")
SCHEMA = pl.Schema(
    {
        "seq": pl.Int64(),
        "ts": pl.Datetime("us", "UTC"),
        "user": pl.String(),
        "action": pl.String(),
        "object": pl.String(),
        "outcome": pl.String(),
        "detail": pl.String(),
        "policy_version": pl.String(),
        "prev_hash": pl.String(),
        "hash": pl.String(),
    }
)
HASHED_FIELDS = tuple(c for c in SCHEMA if c != "hash")
POLICY_OBJECT = "access_policy.yaml"  # object of policy_change records
MAX_PENDING = 256  # AuditBuffer flushes by itself beyond this many records
_ACTION = re.compile(r"[a-z][a-z0-9_]*")


class AuditError(HortusError):
    """The audit log cannot be written or read (bad record, missing key, bad table)."""


def default_path(paths: Paths) -> Path:
    """Return the conventional location of the audit log: `<lakehouse>/ops/audit_log`."""
    return paths.table("ops", "audit_log")


def load_audit_key(secrets_dir: Path) -> bytes:
    """Return the audit key from HORTUS_AUDIT_KEY or secrets_dir/audit.key."""
    key = read_key(KEY_ENV, secrets_dir, KEY_FILE)
    if key is None:
        raise AuditError(
            f"no audit key: set {KEY_ENV} or write one to {Path(secrets_dir) / KEY_FILE} "
            "(`write_demo_audit_key` writes the demo-only key)"
        )
    return key


def write_demo_audit_key(secrets_dir: Path) -> Path:
    """Write the labelled DEMO-ONLY audit key to secrets_dir/audit.key unless a key exists."""
    return write_demo_key(secrets_dir, KEY_FILE, DEMO_AUDIT_KEY)


@dataclass(frozen=True)
class AuditRecord:
    """One event to log; seq, prev_hash and hash are assigned by `AuditLog.append`."""

    user: str
    action: str
    object: str
    outcome: str = "allowed"
    detail: str = ""
    policy_version: str | None = None
    ts: datetime | None = None  # default: the time of the append (UTC)

    @classmethod
    def from_decision(cls, decision: Decision, detail: str = "") -> AuditRecord:
        """Build the record of an access decision (`hortus.governance.access.Decision`).

        The detail defaults to the allowing grant, or to what was missing.
        """
        text = detail or (
            f"grant: {decision.grant}" if decision.allowed else f"missing: {decision.missing}"
        )
        return cls(
            user=decision.user,
            action=decision.action,
            object=decision.object,
            outcome="allowed" if decision.allowed else "denied",
            detail=text,
            policy_version=decision.policy_version,
        )


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of `AuditLog.verify`: where the chain breaks, and why."""

    ok: bool
    checked: int  # records verified intact (before the break)
    broken_at: int | None = None  # seq of the first record that fails
    reason: str | None = None
    head: tuple[int, str] | None = field(default=None)  # (seq, hash) of the last record

    def __str__(self) -> str:
        if self.ok:
            return f"audit log intact: {self.checked} records verified"
        return f"audit log BROKEN at seq {self.broken_at}: {self.reason}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(row: Mapping[str, Any]) -> bytes:
    """Return the canonical JSON bytes of a record's hashed fields.

    `ts` may be a time-zone-aware datetime or integer microseconds since the epoch;
    it is hashed as the integer.
    """
    payload = {k: row[k] for k in HASHED_FIELDS}
    if isinstance(payload["ts"], datetime):
        payload["ts"] = (payload["ts"] - _EPOCH) // _US
    return _JSON.encode(payload).encode("utf-8")


def record_hash(row: dict, key: bytes) -> str:
    """Return HMAC-SHA256(key, canonical JSON of the record incl. prev_hash), hex."""
    return hmac.new(key, canonical(row), hashlib.sha256).hexdigest()


def _with_policy_changes(rows: list[dict], last: str | None) -> list[dict]:
    """Insert a policy_change row before each row whose policy_version differs from the last."""
    out = []
    for row in rows:  # records of one batch, not data rows
        version = row["policy_version"]
        if version is not None and version != last:
            out.append(
                row
                | {
                    "action": "policy_change",
                    "object": POLICY_OBJECT,
                    "outcome": "allowed",
                    "detail": f"policy_version {last or 'none recorded'} -> {version} "
                    f"(first used by {row['user']} for {row['action']} {row['object']})",
                }
            )
            last = version
        out.append(row)
    return out


@dataclass
class AuditLog:
    """The append-only, keyed hash-chained audit log at `path` (a Delta table).

    Examples
    --------
    >>> log = AuditLog.open(default_path(paths), secrets_dir=paths.secrets)   # doctest: +SKIP
    >>> log.append(AuditRecord("alex", "read", "gold.sales_daily"))            # doctest: +SKIP
    >>> log.verify().ok                                                       # doctest: +SKIP
    True
    """

    path: Path
    key: bytes = field(repr=False)
    #: (Delta version, head, last policy_version) after this object's last append: an
    #: append that finds the table still at that version skips re-reading the log
    _tail: tuple[int, tuple[int, str] | None, str | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    #: data files the last append opened to find the chain head (0: none, or a full read)
    tail_files_read: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.key:
            raise AuditError(f"audit log {self.path}: empty audit key")

    @classmethod
    def open(cls, path: Path, *, secrets_dir: Path) -> AuditLog:
        """Open the log at `path` with the key from HORTUS_AUDIT_KEY or secrets_dir."""
        return cls(Path(path), load_audit_key(secrets_dir))

    def exists(self) -> bool:
        """Return whether the log has been written at least once."""
        return (self.path / "_delta_log").is_dir()

    def _frame(self) -> pl.DataFrame:
        if not self.exists():
            return pl.DataFrame(schema=SCHEMA)
        df = pl.read_delta(str(self.path))
        missing = [c for c in SCHEMA if c not in df.columns]
        if missing:
            raise AuditError(f"audit log {self.path}: column(s) {missing} missing")
        return df.select(list(SCHEMA)).sort("seq", maintain_order=True)

    def head(self) -> tuple[int, str] | None:
        """Return (seq, hash) of the last record, or None for an empty log."""
        if not self.exists():
            return None
        last = self._columns("seq", "hash").sort("seq").tail(1)
        return (int(last["seq"][0]), str(last["hash"][0])) if last.height else None

    def _columns(self, *names: str) -> pl.DataFrame:
        """Read some columns of the log through deltalake's own (Arrow) reader.

        Appends use this rather than a polars Delta scan, which runs on a Python
        thread pool that is already shut down when buffered records are flushed
        at interpreter exit.
        """
        return pl.DataFrame(
            pl.from_arrow(DeltaTable(str(self.path)).to_pyarrow_table(columns=list(names)))
        )

    def _read_tail(self, dt: DeltaTable) -> tuple[tuple[int, str] | None, str | None] | None:
        """Return (head, last policy_version) read from the data file(s) holding the last seq.

        The Delta log's per-file statistics (max of seq) name the file that holds the
        head, so an append opens one small file however many commits the log has (with
        `hortus maintain`'s checkpoints, not even every commit).  None when the log has
        no statistics or the last file names no policy_version: read everything then.
        """
        self.tail_files_read = 0
        actions = dt.get_add_actions(flatten=True)
        if actions.num_rows == 0:
            return None, None
        if "max.seq" not in actions.column_names:
            return None
        tops = actions.column("max.seq").to_pylist()
        paths = actions.column("path").to_pylist()
        if any(t is None for t in tops) or any("://" in p for p in paths):
            return None
        top = max(tops)
        files = [str(self.path / unquote(p)) for p, t in zip(paths, tops, strict=True) if t == top]
        self.tail_files_read = len(files)
        rows = pl.read_parquet(files, columns=["seq", "hash", "policy_version"]).filter(
            pl.col("seq") == top
        )
        if rows.height != 1:  # stats that do not match, or a forked seq: read everything
            return None
        version = rows["policy_version"][0]
        if version is None:  # the last record carries none: the full read finds the last one
            return None
        return (int(rows["seq"][0]), str(rows["hash"][0])), str(version)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.path.parent / f"{self.path.name}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def last_policy_version(self) -> str | None:
        """Return the policy_version of the last record that carries one (None if none does)."""
        if not self.exists():
            return None
        last = (
            self._columns("seq", "policy_version")
            .filter(pl.col("policy_version").is_not_null())
            .sort("seq")
            .tail(1)
        )
        return str(last["policy_version"][0]) if last.height else None

    def append(self, *records: AuditRecord, track_policy: bool = False) -> pl.DataFrame:
        """Append records as one Delta commit, chaining their hashes; return the rows written.

        With `track_policy`, a record whose policy_version differs from the last one
        in the log (or from the record before it in the batch) is preceded by a
        `policy_change` record (object `access_policy.yaml`, detail "old -> new",
        user: whoever first acted under the new policy).  The comparison happens
        under the append lock, so concurrent writers record one change once.
        """
        if not records:
            return pl.DataFrame(schema=SCHEMA)
        now = datetime.now(UTC)
        rows = []
        for i, r in enumerate(records):
            where = f"audit log {self.path}: record {i + 1} of the batch"
            if not isinstance(r, AuditRecord):
                raise AuditError(f"{where}: expected an AuditRecord, got {type(r).__name__}")
            if not r.user or not r.object:
                raise AuditError(f"{where}: user and object must be non-empty")
            if not _ACTION.fullmatch(r.action or ""):
                raise AuditError(f"{where}: action must be a lower-case word, got {r.action!r}")
            if r.outcome not in OUTCOMES:
                raise AuditError(f"{where}: outcome must be one of {OUTCOMES}, got {r.outcome!r}")
            ts = r.ts or now
            if ts.tzinfo is None:
                raise AuditError(f"{where}: ts {ts} has no time zone (give UTC)")
            rows.append(
                {
                    "ts": ts.astimezone(UTC),
                    "user": r.user,
                    "action": r.action,
                    "object": r.object,
                    "outcome": r.outcome,
                    "detail": r.detail,
                    "policy_version": r.policy_version,
                }
            )
        with self._locked():
            dt = DeltaTable(str(self.path)) if self.exists() else None
            version = dt.version() if dt is not None else -1
            if self._tail is not None and self._tail[0] == version:
                _, head, last_policy = self._tail  # nobody appended since our last append
            else:
                tail = self._read_tail(dt) if dt is not None else None
                if tail is not None:  # the file holding the last seq only
                    head, last_policy = tail
                else:  # no file statistics: read the seq and hash columns of every file
                    head = self.head()
                    last_policy = self.last_policy_version() if track_policy else None
            if track_policy:
                rows = _with_policy_changes(rows, last_policy)
            seq, prev = head if head else (0, GENESIS)
            for row in rows:  # the chain is sequential by nature
                seq += 1
                row["seq"] = seq
                row["prev_hash"] = prev
                row["hash"] = prev = record_hash(row, self.key)
            df = pl.DataFrame(rows, schema=SCHEMA)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            df.write_delta(str(self.path), mode="append")
            # the policy tail is only known when tracked (or carried from a tracked tail)
            if track_policy or (self._tail is not None and self._tail[0] == version):
                policies = [p for p in (r["policy_version"] for r in rows) if p is not None]
                last_policy = policies[-1] if policies else last_policy
                self._tail = (version + 1, (seq, prev), last_policy)
            else:
                self._tail = None
        return df

    def verify(self, *, anchor: tuple[int, str] | None = None) -> VerifyResult:
        """Check the whole chain; report the first broken record and the reason.

        Detects edited records (hash mismatch), deleted or duplicated records
        (seq gap or repeat), reordered or inserted records (prev_hash link), and
        chains recomputed without the key (plain SHA-256 or another key).  With
        `anchor` = an earlier `head()`, also detects records dropped from the end.
        """
        df = self._frame()
        n = df.height
        head = (int(df["seq"][-1]), str(df["hash"][-1])) if n else None
        # Structural checks, vectorised: seq must be 1..n, each prev_hash the hash before.
        checks = df.with_row_index("i").select(
            "i",
            "seq",
            seq_ok=(pl.col("seq") == pl.col("i").cast(pl.Int64) + 1).fill_null(False),
            link_ok=(pl.col("prev_hash") == pl.col("hash").shift(1, fill_value=GENESIS)).fill_null(
                False
            ),
        )
        bad = checks.filter(~(pl.col("seq_ok") & pl.col("link_ok")))
        limit = int(bad["i"][0]) if bad.height else n
        # Keyed hashes, one HMAC per record, up to the first structural break.
        fields = [*HASHED_FIELDS, "hash"]
        values = df.head(limit).select(fields).with_columns(pl.col("ts").dt.epoch("us")).rows()
        for i, row in enumerate(dict(zip(fields, v, strict=True)) for v in values):
            if record_hash(row, self.key) != row["hash"]:
                return VerifyResult(False, i, row["seq"], self._hash_reason(row), head)
        if limit < n:
            row = checks.row(limit, named=True)
            seq = int(row["seq"])
            if not row["seq_ok"]:
                before = int(df["seq"][limit - 1]) if limit else 0
                if seq == before:
                    why = (
                        f"seq {seq} appears twice "
                        "(record duplicated, or two writers forked the log)"
                    )
                elif limit == 0:
                    why = (
                        f"the first record has seq {seq}, expected 1 (records deleted at the start)"
                    )
                else:
                    gap = f"{before + 1}" if seq - before == 2 else f"{before + 1}..{seq - 1}"
                    why = f"seq {gap} missing between {before} and {seq} (record deleted)"
            else:
                why = (
                    f"prev_hash of seq {seq} is not the hash of seq {seq - 1} "
                    "(records reordered, inserted or deleted)"
                )
            return VerifyResult(False, limit, seq, why, head)
        if anchor is not None:
            a_seq, a_hash = anchor
            hit = df.filter(pl.col("seq") == a_seq)
            if hit.height == 0 or hit["hash"][0] != a_hash:
                return VerifyResult(
                    False,
                    n,
                    a_seq,
                    f"anchored record seq {a_seq} (hash {a_hash[:12]}...) is missing or "
                    "different: the log was truncated or rewritten",
                    head,
                )
        return VerifyResult(True, n, None, None, head)

    def _hash_reason(self, row: dict) -> str:
        seq = row["seq"]
        plain = hashlib.sha256(canonical(row)).hexdigest()
        if row["hash"] == plain:
            how = "recomputed with a plain unkeyed SHA-256 (chain rewritten without the key)"
        else:
            how = "record edited, or the chain recomputed with another key"
        return f"hash of seq {seq} does not match its contents under the audit key: {how}"

    def show(self, *, denied_only: bool = False, user: str | None = None) -> pl.DataFrame:
        """Return the log as a frame in seq order (optionally denied records or one user only)."""
        df = self._frame()
        if denied_only:
            df = df.filter((pl.col("outcome") == "denied") | (pl.col("action") == "denied"))
        if user is not None:
            df = df.filter(pl.col("user") == user)
        return df


class AuditBuffer:
    """Audit records of one process held in memory and appended in one commit per flush.

    The table API records every read here and flushes at each write, at each
    denial (before AccessDenied is raised, so a denied attempt is on disk even
    if the process then dies), when `max_pending` records are waiting, and when
    the owning `Lakehouse` is closed, garbage-collected or the interpreter exits.
    A stage that reads twenty tables and writes two makes two audit commits, not
    twenty-two.  The log (and its key) is opened on the first record, so a
    missing key fails the first access instead of losing its record.
    Policy changes are tracked (`AuditLog.append(track_policy=True)`).
    """

    def __init__(self, path: Path, secrets_dir: Path, *, max_pending: int = MAX_PENDING):
        self.path = Path(path)
        self.secrets_dir = Path(secrets_dir)
        self.max_pending = max_pending
        self.pending: list[AuditRecord] = []
        self._log: AuditLog | None = None

    def log(self) -> AuditLog:
        """Return the audit log, opening it (and loading the key) on first use."""
        if self._log is None:
            self._log = AuditLog.open(self.path, secrets_dir=self.secrets_dir)
        return self._log

    def add(self, record: AuditRecord) -> None:
        """Queue one record (flush when `max_pending` are waiting)."""
        self.log()
        self.pending.append(record)
        if len(self.pending) >= self.max_pending:
            self.flush()

    def flush(self) -> int:
        """Append the waiting records as one commit; return how many were written."""
        if not self.pending:
            return 0
        n = len(self.pending)
        self.log().append(*self.pending, track_policy=True)
        self.pending.clear()  # only once they are on disk
        return n
