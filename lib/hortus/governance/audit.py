"""The access audit log: an append-only, signed, hash-chained Delta table in the ops plane.

Every read, write, re-identification and denied attempt through the table API,
every promotion, approval and policy change is one record: seq, ts, user,
action, object, outcome (allowed | denied), detail, policy_version, prev_hash,
hash, key_id, sig, os_user.  The table lives at an explicit path (by convention
`<lakehouse>/ops/audit_log`, see `default_path`) and is written with
deltalake/polars directly, not through `hortus.lakehouse.tables.Lakehouse`, so that the
table API can audit its own reads without recursing.

Hash chain and signatures
-------------------------
Each record's ``hash`` is SHA-256 of the canonical JSON of its fields seq, ts, user,
action, object, outcome, detail, policy_version, prev_hash, key_id and os_user (the
OS account that sent it; absent from records written before it existed); ``prev_hash``
is the previous record's hash (64 zeros for seq 1).  The last record of each commit
carries ``sig``, the Ed25519 signature of its hash (the chain head) by the private key
named by ``key_id`` (see `hortus.governance._audit_keys`): as each hash binds the one
before, one signature vouches for the whole commit, so verifying costs one signature
check per commit, not per record.  Records written with a signature each (earlier in
session 8) are checked record by record.  Editing, deleting, inserting or reordering
records breaks the chain, and `AuditLog.verify` says where (`broken_at`) and why: the
exact seq whose stored hash differs from its contents, or, for a stretch re-chained
consistently, the range from the record after the last good signed head up to the
head whose signature fails; records after the last signed head count as unsigned.
Verifying needs only public keys, so every user can verify while only the signer can
write records that verify.

Who signs:

- **audit writer mode** (several users): `hortus audit writer --socket PATH --key-dir DIR`
  runs as its own OS user, holds the private key (mode 0600 in a 0700 folder) and
  appends the records every other process sends over the Unix socket
  (HORTUS_AUDIT_SOCKET or params.yaml's ``audit.socket`` names it, `configured_socket`;
  `hortus.governance._audit_writer`).  The writer records the sender's OS user from
  the socket (``SO_PEERCRED``) and may restrict which hortus users each OS user can
  claim.  A user who rewrites the Delta table directly cannot produce signatures that
  verify;
- **single-user mode** (no socket configured; development, CI, one person's
  machine): each process signs itself, with the key stored in
  `.hortus/secrets/audit_signing/` or, without one, a key derived from the audit secret
  (HORTUS_AUDIT_KEY or `.hortus/secrets/audit.key`).  Whoever holds that secret can
  sign, so this mode protects against accidents and outsiders, not against the users.

The signer's public keys go to the trust folder ``<log>.trust/keys/`` and, after each
commit, a signed anchor (head seq and hash) is appended to ``<log>.trust/anchors.jsonl``;
`verify` checks the latest anchor by default, so a cut tail or a deleted last commit
fails.  Key rotation (`AuditLog.rotate_key`) appends a `key_rotation` record signed by
the old key that names the new public key and carries the new key's signature of the
hand-over; verification walks the versions in chain order and refuses a record
signed by any key other than the one active at its position.

Records written before signatures (an HMAC-SHA256 chain under the audit secret) carry
no key_id (shown as ``hmac-v0``).  The first signed append on such a log writes an
`audit_migration` record whose signed detail holds the number and SHA-256 digest of
the legacy records; `verify` checks them against that digest and, when the audit
secret is at hand, also each legacy HMAC (naming the first bad record).

What it does not protect against: the signer's key holder (the writer's OS user, or
anyone holding the single-user secret); deletion of the whole trust folder together
with the table (keep the writer's folders unwritable by users); records never written
(the log proves integrity of what was logged, not completeness of logging).  See the
threat model in docs/security.md.

Canonical JSON is Python's JSON encoder with sorted keys, separators ``,``/``:``
and UTF-8 text (no ASCII escaping), with ts as integer microseconds since the
Unix epoch (UTC).  Hashing one record costs microseconds in Python, a signature check
hundreds (one per commit); the structural checks (seq gaps, duplicates, prev_hash
links) are vectorised.

Concurrency
-----------
An append reads the end of the log from the file(s) that hold it (the Delta log's
file statistics name them, `hortus.governance._audit_tail`: one small file however
long the log) and writes the next records, so two
writers racing would fork the chain (duplicate seq, detected by `verify`).  An
exclusive `flock` on ``<path>.lock`` serialises appends from processes on one
machine.  Each append also commits on the Delta snapshot it read the head from,
with a Delta transaction identifier (``txn`` appId ``hortus-audit-chain``, version =
its last seq): an append that lands meanwhile makes Delta's conflict check refuse
this commit, which then re-reads the head and chains again.  That is what keeps
the chain whole on object storage (a log at ``s3://...``, where there is no flock;
`hortus.lakehouse._objstore`): writers on several machines append to one chain.  On
object storage the trust folder (public keys, anchors) is in the bucket too, the prefix
``<log>.trust/`` (`hortus.governance._audit_keys.TrustStore`, conditional PUTs), so
every machine verifies the same chain against the same anchors; a trust folder an
older version kept under ``.hortus/audit_trust/`` is copied there once.

Batching and policy changes
---------------------------
`AuditBuffer` holds the records of one `hortus.lakehouse.tables.Lakehouse` and appends them
in one commit per flush (at each write and denial, on close, at garbage collection
and at interpreter exit), so a stage reading many tables makes few commits.  A
record whose policy_version differs from the last one logged is preceded by a
`policy_change` record (`AuditLog.append(track_policy=True)`).  Records buffered
by a process killed outright (SIGKILL, power loss) are lost; denials and writes
are flushed before the call returns or raises.

`write_demo_audit_key` writes a fixed audit secret labelled DEMO-ONLY, like the PII key
of the demo; replace it for real use, or run an audit writer.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from deltalake import DeltaTable

from hortus.config import Paths
from hortus.errors import HortusError
from hortus.governance._audit_chain import (
    _JSON,
    MIGRATION_ACTION,
    ROTATION_ACTION,
    check_legacy,
    check_signed,
    content_hash,
    legacy_check,
    legacy_digest,
    signed_message,
    structural_reason,
)
from hortus.governance._audit_chain import canonical as canonical
from hortus.governance._audit_chain import record_hash as record_hash
from hortus.governance._audit_keys import (
    LEGACY_KEY_ID,
    AuditKeyError,
    KeyStore,
    Signer,
    TrustStore,
    key_id_of,
    raw_public,
    rotation_statement,
)
from hortus.governance._audit_tail import TAIL_COLUMNS, read_tail
from hortus.lakehouse._objstore import TableLocation, is_uri
from hortus.lakehouse.keys import read_key, write_demo_key

if TYPE_CHECKING:
    from hortus.governance.access import Decision

DEMO_AUDIT_KEY = "hortus-DEMO-ONLY-audit-key-do-not-use-for-real-logs"
KEY_ENV = "HORTUS_AUDIT_KEY"
KEY_FILE = "audit.key"
SOCKET_ENV = "HORTUS_AUDIT_SOCKET"  # the audit writer's Unix socket (writer mode)
SIGNING_DIR = "audit_signing"  # single-user key folder under .hortus/secrets
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
        "key_id": pl.String(),  # None on legacy HMAC records (hmac-v0)
        "sig": pl.String(),  # Ed25519 signature of hash, hex: on the last record of a commit
        "os_user": pl.String(),  # OS user of the sending process (None on older records)
    }
)
#: the fields of a legacy (HMAC) record's hash; signed records also hash key_id
HASHED_FIELDS = tuple(c for c in SCHEMA if c not in ("hash", "key_id", "sig", "os_user"))
POLICY_OBJECT = "access_policy.yaml"  # object of policy_change records
MAX_PENDING = 256  # AuditBuffer flushes by itself beyond this many records
CHAIN_APP = "hortus-audit-chain"  # Delta txn appId of chain appends (see Concurrency)
CHAIN_RETRIES = 20  # appends that lost the race re-read the head and chain again
_ACTION = re.compile(r"[a-z][a-z0-9_]*")


class AuditError(HortusError):
    """The audit log cannot be written or read (bad record, missing key, bad table)."""


def default_path(paths: Paths) -> Path | str:
    """Return the conventional location of the audit log: `<lakehouse>/ops/audit_log`.

    A folder, or an object-store URI when the lakehouse lives there.
    """
    if paths.lakehouse_uri is not None:
        return paths.table_uri("ops", "audit_log")
    return paths.table("ops", "audit_log")


def trust_dir(path: Path | str) -> Path | str:
    """Return the public trust folder of the log at `path`: `<path>.trust` (a URI in a bucket)."""
    if is_uri(path):
        return f"{str(path).rstrip('/')}.trust"
    path = Path(path)
    return path.parent / f"{path.name}.trust"


def _local_trust(path: str, secrets_dir: Path) -> Path:
    """Return where an older version kept the trust folder of a log on object storage."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", path.split("://", 1)[1]).strip("_")
    return Path(secrets_dir).parent / "audit_trust" / f"{slug}.trust"


def configured_socket(secrets_dir: Path) -> str | None:
    """Return the audit writer's socket: HORTUS_AUDIT_SOCKET, else params.yaml's `audit.socket`.

    The project is the one whose secrets folder is `secrets_dir` (`<root>/.hortus/secrets`).
    HORTUS_AUDIT_SOCKET set to an empty string turns a configured socket off (single-user).
    """
    if SOCKET_ENV in os.environ:
        return os.environ[SOCKET_ENV] or None
    secrets_dir = Path(secrets_dir)
    if secrets_dir.parent.name != ".hortus":
        return None
    from hortus.governance._audit_writer import WriterError, load_settings

    try:
        return load_settings(secrets_dir.parent.parent).socket
    except (WriterError, HortusError) as exc:
        raise AuditError(str(exc)) from exc


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
    """The append-only, signed hash-chained audit log at `path` (a Delta table).

    `key` is the audit secret (single-user mode: the signing key is derived from it
    unless `key_dir` holds a stored key; also checks legacy HMAC records).  `key_dir`
    is the signer's private key folder; `socket` an audit writer's Unix socket (then
    appends go to the writer and this process needs no key at all).

    Examples
    --------
    >>> log = AuditLog.open(default_path(paths), secrets_dir=paths.secrets)   # doctest: +SKIP
    >>> log.append(AuditRecord("alex", "read", "gold.sales_daily"))            # doctest: +SKIP
    >>> log.verify().ok                                                       # doctest: +SKIP
    True
    """

    path: Path | str  # a folder, or an object-store URI (s3://...)
    key: bytes | None = field(default=None, repr=False)
    key_dir: Path | None = None
    socket: str | None = None
    trust_root: Path | str | None = None  # default: trust_dir(path)
    #: (Delta version, head, last policy_version, active key_id) after this object's
    #: last append: an append that finds the table still at that version skips re-reading
    _tail: tuple[int, tuple[int, str] | None, str | None, str | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    #: data files the last append opened to find the chain head (0: none, or a full read)
    tail_files_read: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path = self.path if is_uri(self.path) else Path(self.path)
        if self.key is not None and not self.key:
            raise AuditError(f"audit log {self.path}: empty audit key")

    @classmethod
    def open(cls, path: Path, *, secrets_dir: Path, signing: bool = True) -> AuditLog:
        """Open the log at `path` for this process.

        With HORTUS_AUDIT_SOCKET (or params.yaml's `audit.socket`) set, appends go to
        that audit writer (`configured_socket`).  Otherwise
        (single-user mode) the process signs itself with the key of
        `secrets_dir/audit_signing/` or one derived from HORTUS_AUDIT_KEY /
        `secrets_dir/audit.key`; with neither, AuditError (unless `signing` is False:
        verifying and reading need no key).
        """
        secret = read_key(KEY_ENV, secrets_dir, KEY_FILE)
        key_dir = Path(secrets_dir) / SIGNING_DIR
        socket = configured_socket(Path(secrets_dir))
        log = cls(path, secret, key_dir=key_dir, socket=socket)
        if is_uri(path):  # the trust folder is in the bucket; adopt one kept locally before
            log.trust.adopt(_local_trust(str(path), Path(secrets_dir)))
        if signing and socket is None and not log.signer.usable():
            raise AuditError(
                f"no audit key: set {KEY_ENV} or write one to {Path(secrets_dir) / KEY_FILE} "
                f"(`write_demo_audit_key` writes the demo-only key), or run an audit writer "
                f"and set {SOCKET_ENV}"
            )
        return log

    @property
    def signer(self) -> Signer:
        """Return the private keys this process may sign with (none in writer-client mode)."""
        return Signer(KeyStore(self.key_dir) if self.key_dir else None, self.key)

    @property
    def trust(self) -> TrustStore:
        """Return the log's public trust folder (`<path>.trust`)."""
        return TrustStore(self.trust_root or trust_dir(self.path))

    @property
    def _where(self) -> TableLocation:
        return TableLocation.of(self.path)

    def exists(self) -> bool:
        """Return whether the log has been written at least once."""
        return self._where.exists()

    def _frame(self) -> pl.DataFrame:
        if not self.exists():
            return pl.DataFrame(schema=SCHEMA)
        df = pl.read_delta(self._where.uri, **self._where.write_kwargs())
        late = ("key_id", "sig", "os_user")  # columns added after the first logs
        missing = [c for c in SCHEMA if c not in df.columns and c not in late]
        if missing:
            raise AuditError(f"audit log {self.path}: column(s) {missing} missing")
        extra = [pl.lit(None, pl.String()).alias(c) for c in late if c not in df]
        return df.with_columns(extra).select(list(SCHEMA)).sort("seq", maintain_order=True)

    def head(self) -> tuple[int, str] | None:
        """Return (seq, hash) of the last record, or None for an empty log."""
        if not self.exists():
            return None
        return self._end(self._where.delta(), policy=False)[0]

    def _columns(self, *names: str) -> pl.DataFrame:
        """Read some columns of the log through deltalake's own (Arrow) reader.

        Used when the file statistics cannot name the tail (see `_end`), rather than a
        polars Delta scan, which runs on a Python thread pool that is already shut down
        when buffered records are flushed at interpreter exit.  Columns a legacy table
        lacks (key_id, sig, os_user) come back null.
        """
        dt = self._where.delta()
        present = set(dt.schema().to_arrow().names)
        df = pl.DataFrame(
            pl.from_arrow(dt.to_pyarrow_table(columns=[n for n in names if n in present]))
        )
        return df.with_columns(
            [pl.lit(None, SCHEMA[n]).alias(n) for n in names if n not in present]
        ).select(names)

    def _end(
        self, dt: DeltaTable, *, policy: bool
    ) -> tuple[tuple[int, str] | None, str | None, str | None]:
        """Return (head, last policy_version, active key_id) of the log at snapshot `dt`.

        Reads the file(s) that hold the last seq, named by the Delta log's statistics
        (`hortus.governance._audit_tail`), so an append opens one small file however
        many commits the log has; `tail_files_read` says how many.  The last
        policy_version is looked up only with `policy` (else None).  Without usable
        statistics, the columns of every file are read (`tail_files_read` = 0).
        """
        where = self._where
        tail = read_tail(dt, where.uri, where.write_kwargs(), policy=policy)
        if tail is not None:
            self.tail_files_read = tail.files_read
            return tail.head, tail.last_policy, _active(tail.last) if tail.last else None
        self.tail_files_read = 0
        cols = self._columns(*TAIL_COLUMNS).sort("seq", maintain_order=True)
        if cols.height == 0:
            return None, None, None
        last = cols.row(cols.height - 1, named=True)
        policies = cols["policy_version"].drop_nulls()
        last_policy = str(policies[-1]) if policy and len(policies) else None
        return (int(last["seq"]), str(last["hash"])), last_policy, _active(last)

    def _active_key(self) -> str | None:
        """Return the key_id that signs the next record (None: no signed record yet)."""
        if not self.exists():
            return None
        return self._end(self._where.delta(), policy=False)[2]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if not isinstance(self.path, Path):  # object storage: the txn conflict alone
            yield
            return
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
        return self._end(self._where.delta(), policy=True)[1]

    def append(
        self, *records: AuditRecord, track_policy: bool = False, os_user: str | None = None
    ) -> pl.DataFrame:
        """Append records as one Delta commit, chaining and signing them; return the rows.

        With `track_policy`, a record whose policy_version differs from the last one
        in the log (or from the record before it in the batch) is preceded by a
        `policy_change` record (object `access_policy.yaml`, detail "old -> new",
        user: whoever first acted under the new policy).  The comparison happens
        under the append lock, so concurrent writers record one change once.  In
        writer-client mode (`socket`) the records go to the audit writer, which does
        all that and signs.  Each record names the OS user of the process that sent
        it (`os_user`: given by the audit writer from its socket peer; by default
        this process's own user), covered by the hash.
        """
        if not records:
            return pl.DataFrame(schema=SCHEMA)
        rows = _validated(records, self.path)
        if self.socket:
            from hortus.governance._audit_writer import WriterError, append_remote

            try:
                written = append_remote(self.socket, rows, track_policy=track_policy)
            except WriterError as exc:
                raise AuditError(str(exc)) from exc
            return pl.DataFrame(written, schema=SCHEMA)
        who = os_user or _os_user_name(os.geteuid())
        return self._append_rows([r | {"os_user": who} for r in rows], track_policy=track_policy)

    def append_rows(
        self, rows: list[dict], *, track_policy: bool = False, os_user: str | None = None
    ) -> pl.DataFrame:
        """Append records given as dicts (what the audit writer receives); see `append`."""
        fields = ("user", "action", "object", "outcome", "detail", "policy_version", "ts")
        records = [AuditRecord(**{k: r.get(k) for k in fields if k in r}) for r in rows]
        return self.append(*records, track_policy=track_policy, os_user=os_user)

    def _append_rows(self, rows: list[dict], *, track_policy: bool) -> pl.DataFrame:
        """Chain and commit the rows; an append that lost the race re-reads and retries."""
        from deltalake.exceptions import CommitFailedError, DeltaError

        for attempt in range(CHAIN_RETRIES):
            try:
                return self._append_once([dict(r) for r in rows], track_policy=track_policy)
            except (CommitFailedError, DeltaError, _RacedError) as exc:  # another append won
                self._tail = None
                if attempt == CHAIN_RETRIES - 1 or not _lost_race(exc):
                    raise
        raise AssertionError("unreachable")

    def _append_once(self, rows: list[dict], *, track_policy: bool) -> pl.DataFrame:
        from deltalake import CommitProperties, Transaction

        with self._locked():
            if not isinstance(self.path, Path) and not self.exists():
                self._create_empty()  # object storage: every append then has a snapshot
            dt = self._where.delta() if self.exists() else None
            version = dt.version() if dt is not None else -1
            if self._tail is not None and self._tail[0] == version:
                _, head, last_policy, active = self._tail  # nobody appended since our last
            elif dt is not None:  # the file(s) holding the last seq only
                head, last_policy, active = self._end(dt, policy=track_policy)
            else:
                head, last_policy, active = None, None, None
            try:
                self._check_reaches_anchor(head)
            except AuditError:  # object storage: an append anchored after our snapshot?
                remote = dt is not None and not isinstance(self.path, Path)
                if remote and self._where.delta().version() != dt.version():
                    raise _RacedError(str(self.path)) from None
                raise
            if track_policy:
                rows = _with_policy_changes(rows, last_policy)
            key = self._signing_key(active)
            key_id = key_id_of(key.public_key())
            if active is None:  # the first signed record: publish the root public key
                self.trust.publish(key.public_key())
                if head is not None:  # on a legacy HMAC chain: sign a digest of it first
                    rows = [
                        self._migration_row(rows[0]["ts"]) | {"os_user": rows[0]["os_user"]},
                        *rows,
                    ]
            seq, prev = head if head else (0, GENESIS)
            for row in rows:  # the chain is sequential by nature
                seq += 1
                row |= {"seq": seq, "prev_hash": prev, "key_id": key_id, "sig": None}
                row["hash"] = prev = content_hash(row)
            # one signature per commit, of its head: the chain binds every record before it
            rows[-1]["sig"] = key.sign(signed_message(prev)).hex()
            df = pl.DataFrame(rows, schema=SCHEMA)
            if isinstance(self.path, Path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # on the snapshot the head was read from: an append landed since fails this one
            chain = CommitProperties(app_transactions=[Transaction(CHAIN_APP, seq)])
            options = _merge(dt) if dt is not None else {}
            df.write_delta(
                dt if dt is not None else self._where.uri,
                mode="append",
                delta_write_options=options | {"commit_properties": chain},
                **self._where.write_kwargs(),
            )
            self._anchor(key, seq, prev, version + 1)
            # the policy tail is only known when tracked (or carried from a tracked tail)
            if track_policy or (self._tail is not None and self._tail[0] == version):
                policies = [p for p in (r["policy_version"] for r in rows) if p is not None]
                last_policy = policies[-1] if policies else last_policy
                self._tail = (version + 1, (seq, prev), last_policy, _active(rows[-1]))
            else:
                self._tail = None
        return df

    def _create_empty(self) -> None:
        """Create the log with no rows (object storage), so that appends can conflict.

        Appends commit on a snapshot with the chain's txn id; two first appends racing
        to create the table would have no snapshot to conflict on.  Of two processes
        creating it at once, one wins (put-if-absent of version 0); the other finds it.
        """
        from deltalake import DeltaTable as _Table
        from deltalake.exceptions import DeltaError

        where = self._where
        try:
            _Table.create(
                where.uri,
                schema=pl.DataFrame(schema=SCHEMA).to_arrow().schema,
                mode="ignore",
                storage_options=where.storage_options,
            )
        except DeltaError:
            if not where.exists():
                raise

    def _check_reaches_anchor(self, head: tuple[int, str] | None) -> None:
        """Refuse to append to a log cut below its last anchor (never re-anchor a cut tail)."""
        try:
            latest = self.trust.latest_anchor()
        except AuditKeyError as exc:
            raise AuditError(f"audit log {self.path}: {exc}") from exc
        if latest is None:
            return
        seq, digest = head if head else (0, GENESIS)
        if seq < int(latest["seq"]) or (seq == int(latest["seq"]) and digest != latest["hash"]):
            raise AuditError(
                f"audit log {self.path}: its head (seq {seq}) does not reach the last anchor "
                f"(seq {latest['seq']} in {self.trust.anchors_path}): the log was truncated or "
                "rewritten, so no record is appended (run `hortus audit verify`; restore the "
                "table, e.g. from Delta history, or if the log was deleted on purpose, delete "
                f"{self.trust.dir} with it)"
            )

    def _signing_key(self, active: str | None) -> Any:
        """Return the private key for the next record: the active one, or a root key."""
        signer = self.signer
        try:
            if active is None:
                return signer.root()
            key = signer.key(active)
        except AuditKeyError as exc:
            raise AuditError(f"audit log {self.path}: {exc}") from exc
        if key is None:
            raise AuditError(
                f"audit log {self.path}: the log's active audit key is {active}, and this "
                "process does not hold it (another signer owns the log: send records to its "
                f"audit writer via {SOCKET_ENV}, or hand the log over with "
                "`hortus audit rotate-key --from-key-dir`)"
            )
        return key

    def _anchor(self, key: Any, seq: int, digest: str, version: int) -> None:
        """Record the new head in the trust folder (a failure warns: the commit stands)."""
        try:
            self.trust.anchor(key, seq, digest, version)
        except OSError as exc:
            warnings.warn(
                f"audit log {self.path}: commit {version} written but its anchor could not be "
                f"recorded in {self.trust.anchors_path} ({exc}); verify checks the last anchor",
                RuntimeWarning,
                stacklevel=3,
            )

    def _migration_row(self, ts: datetime) -> dict:
        """Return the record that seals a legacy HMAC chain under the first signing key."""
        legacy = self._frame().filter(pl.col("key_id").is_null())
        rows = legacy.with_columns(pl.col("ts").dt.epoch("us")).to_dicts()
        _, checked = legacy_check(rows, self.key)
        detail = {
            "legacy_records": len(rows),
            "legacy_digest": legacy_digest(rows),
            "legacy_hmac_check": checked,
        }
        return {
            "ts": ts,
            "user": "hortus",
            "action": MIGRATION_ACTION,
            "object": str(self.path).rstrip("/").rsplit("/", 1)[-1],
            "outcome": "allowed",
            "detail": _JSON.encode(detail),
            "policy_version": None,
        }

    def rotate_key(self, store: KeyStore, *, previous: Signer | None = None) -> dict:
        """Rotate the signing key to a new one kept in `store`; resume an interrupted rotation.

        Steps, each safe to repeat: (1) a new key is generated as `pending.pem` (or the
        pending one of an interrupted run is reused); (2) under the append lock, a
        `key_rotation` record signed by the active key names the new public key and
        carries the new key's signature of the hand-over; (3) the new key is stored as
        `<key_id>.pem` and made current.  `previous` holds the active key (default: this
        log's signer plus `store`).  Returns {"from", "to", "resumed"}.
        """
        holders = [previous or self.signer, Signer(store, None)]
        pending = store.pending()
        resumed = pending is not None
        new = pending or store.new_pending()
        new_id = key_id_of(new.public_key())
        with self._locked():
            self._tail = None
            active = self._active_key()
            if active is None:
                raise AuditError(
                    f"audit log {self.path}: no signed record yet, nothing to rotate (the first "
                    "append signs with the writer's key)"
                )
            if active != new_id:
                old = next((k for h in holders if (k := h.key(active)) is not None), None)
                if old is None:
                    raise AuditError(
                        f"audit log {self.path}: the active audit key is {active}; the key "
                        f"folder(s) given do not hold it, so the rotation cannot be signed"
                    )
                public_hex = raw_public(new.public_key()).hex()
                detail = {
                    "from": active,
                    "to": new_id,
                    "public_key": public_hex,
                    "new_key_sig": new.sign(rotation_statement(active, new_id, public_hex)).hex(),
                }
                self.trust.publish(new.public_key())
                row = {
                    "ts": datetime.now(UTC),
                    "user": "hortus-audit-writer",
                    "action": ROTATION_ACTION,
                    "object": "audit_key",
                    "outcome": "allowed",
                    "detail": _JSON.encode(detail),
                    "policy_version": None,
                }
                self._append_signed(row, old, active)
            store.save(new)  # <key_id>.pem and current
            store.pending_path.unlink(missing_ok=True)
        return {"from": active if active != new_id else None, "to": new_id, "resumed": resumed}

    def _append_signed(self, row: dict, key: Any, key_id: str) -> None:
        """Append one record signed by `key` (under the lock held by the caller)."""
        from deltalake import CommitProperties, Transaction

        dt = self._where.delta()
        head = self._end(dt, policy=False)[0]
        seq, prev = head if head else (0, GENESIS)
        who = _os_user_name(os.geteuid())
        row |= {"seq": seq + 1, "prev_hash": prev, "key_id": key_id, "os_user": who}
        row["hash"] = content_hash(row)
        row["sig"] = key.sign(signed_message(row["hash"])).hex()
        chain = CommitProperties(app_transactions=[Transaction(CHAIN_APP, seq + 1)])
        pl.DataFrame([row], schema=SCHEMA).write_delta(
            dt,
            mode="append",
            delta_write_options=_merge(dt) | {"commit_properties": chain},
            **self._where.write_kwargs(),
        )
        self._anchor(key, seq + 1, row["hash"], dt.version() + 1)
        self._tail = None

    def verify(
        self, *, anchor: tuple[int, str] | None = None, anchors: bool = True
    ) -> VerifyResult:
        """Check the whole chain; report the first broken record and the reason.

        Detects edited records (hash mismatch), deleted or duplicated records
        (seq gap or repeat), reordered or inserted records (prev_hash link), records
        not signed by the key active at their position (forged, re-signed with
        another key, or a retired key used after a rotation), and, against the latest
        signed anchor of the trust folder (`anchors`, default on) or an explicit
        `anchor` = an earlier `head()`, records dropped from the end.
        """
        df = self._frame()
        n = df.height
        head = (int(df["seq"][-1]), str(df["hash"][-1])) if n else None
        # Structural checks, vectorised: seq must be 1..n, each prev_hash the hash before,
        # and no unsigned (legacy) record after the first signed one.
        signed = pl.col("key_id").is_not_null()
        checks = df.with_row_index("i").select(
            "i",
            "seq",
            seq_ok=(pl.col("seq") == pl.col("i").cast(pl.Int64) + 1).fill_null(False),
            link_ok=(pl.col("prev_hash") == pl.col("hash").shift(1, fill_value=GENESIS)).fill_null(
                False
            ),
            order_ok=signed | ~signed.cum_max(),
        )
        bad = checks.filter(~(pl.col("seq_ok") & pl.col("link_ok") & pl.col("order_ok")))
        limit = int(bad["i"][0]) if bad.height else n
        fields = [*HASHED_FIELDS, "hash", "key_id", "sig", "os_user"]
        rows = df.head(limit).select(fields).with_columns(pl.col("ts").dt.epoch("us")).to_dicts()
        legacy = [r for r in rows if r["key_id"] is None]
        try:
            trusted = self.trust.public_keys()
        except AuditKeyError as exc:
            return VerifyResult(False, 0, 1 if n else None, str(exc), head)
        first = rows[len(legacy)] if len(legacy) < len(rows) else None
        failure = check_legacy(legacy, first, self.key)
        if failure is None:
            signed, keys_dir = rows[len(legacy) :], self.trust.dir / "keys"
            failure, keys = check_signed(signed, trusted, len(legacy), keys_dir, whole=limit == n)
        if failure is not None:
            return VerifyResult(False, failure[0], failure[1], failure[2], head)
        if limit < n:
            return VerifyResult(
                False, limit, int(checks["seq"][limit]), structural_reason(df, checks, limit), head
            )
        targets = [("anchored", anchor)] if anchor is not None else []
        if anchors:
            try:
                latest = self.trust.latest_anchor()
            except AuditKeyError as exc:
                return VerifyResult(False, n, None, str(exc), head)
            if latest is None and len(legacy) < n:
                why = (
                    f"no anchor in {self.trust.anchors_path} for a log with signed records "
                    "(the anchors file was deleted, or the writer could not write it)"
                )
                return VerifyResult(False, n, head[0] if head else None, why, head)
            if latest is not None:
                pub = keys.get(latest.get("key_id")) or trusted.get(latest.get("key_id"))
                if pub is None or not TrustStore.anchor_signed(latest, pub):
                    why = (
                        f"the latest anchor in {self.trust.anchors_path} is not signed by "
                        "an audit key of this log"
                    )
                    return VerifyResult(False, n, None, why, head)
                targets.append(("latest signed anchor", (int(latest["seq"]), latest["hash"])))
        for what, (a_seq, a_hash) in targets:
            hit = df.filter(pl.col("seq") == a_seq)
            if hit.height == 0 or hit["hash"][0] != a_hash:
                return VerifyResult(
                    False,
                    n,
                    a_seq,
                    f"{what} record seq {a_seq} (hash {a_hash[:12]}...) is missing or "
                    "different: the log was truncated or rewritten (a cut tail or a deleted "
                    "last commit)",
                    head,
                )
        return VerifyResult(True, n, None, None, head)

    def key_versions(self) -> list[str]:
        """Return the signing key_ids of the log in chain order (root, then each rotation's)."""
        if not self.exists():
            return []
        df = self._columns("seq", "key_id", "action", "detail").sort("seq")
        signed = df.filter(pl.col("key_id").is_not_null())
        if signed.height == 0:
            return []
        out = [str(signed["key_id"][0])]
        rotations = signed.filter(pl.col("action") == ROTATION_ACTION)
        out += [_active(r) or "" for r in rotations.iter_rows(named=True)]  # a few records
        return out

    def show(self, *, denied_only: bool = False, user: str | None = None) -> pl.DataFrame:
        """Return the log as a frame in seq order (optionally denied records or one user only).

        Legacy records (before signatures) show key_id ``hmac-v0``.
        """
        df = self._frame().with_columns(pl.col("key_id").fill_null(LEGACY_KEY_ID))
        if denied_only:
            df = df.filter((pl.col("outcome") == "denied") | (pl.col("action") == "denied"))
        if user is not None:
            df = df.filter(pl.col("user") == user)
        return df


def _merge(dt: DeltaTable) -> dict:
    """Return the write options that add the columns an older log lacks (key_id, sig, os_user)."""
    names = set(dt.schema().to_arrow().names)
    return {"schema_mode": "merge"} if any(c not in names for c in SCHEMA) else {}


def _os_user_name(uid: int) -> str:
    """Return the OS user name of `uid` (``uid:<n>`` when it has no passwd entry)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def _active(last: Mapping[str, Any]) -> str | None:
    """Return the key that signs after the record `last` (its own, or a rotation's new key)."""
    if not last.get("key_id"):
        return None
    if last.get("action") == ROTATION_ACTION:
        try:
            return str(json.loads(last["detail"])["to"])
        except (ValueError, KeyError, TypeError):
            return str(last["key_id"])
    return str(last["key_id"])


def _validated(records: tuple[AuditRecord, ...], path: Path) -> list[dict]:
    """Return the rows of valid records, or raise naming the first bad one."""
    now = datetime.now(UTC)
    rows = []
    for i, r in enumerate(records):
        where = f"audit log {path}: record {i + 1} of the batch"
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
    return rows


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

    def __init__(self, path: Path | str, secrets_dir: Path, *, max_pending: int = MAX_PENDING):
        self.path = path if is_uri(path) else Path(path)
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


class _RacedError(Exception):
    """An append read a head that another append (already anchored) has moved past."""


def _lost_race(exc: Exception) -> bool:
    """Return whether a failed chain commit lost a race (retry) rather than failed (raise)."""
    if isinstance(exc, _RacedError):
        return True
    text = str(exc).lower()
    return any(word in text for word in ("concurrent", "already exists", "conflict", "version 0"))
