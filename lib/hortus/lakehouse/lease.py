"""One writer at a time: leases on the build tables, with expiry and fencing.

Two `hortus ingest` runs at once used to land every new file twice; two silver
runs put duplicate event ids into silver.  Each writing stage now holds an
exclusive **lease** on the build tables it writes, for as long as it runs:

- scopes (`scope_for`): bronze (ingest), silver (silver and quarantine: the silver
  stage), and one scope per other build table (gold.*: kpis, features, score).
  `ops.*` tables take no lease: several processes append to them at once (audit
  log, prediction log, run log, monitor metrics, alias events) and rely on Delta's
  optimistic concurrency (and the audit log's own chain lock);
- a lease is a small JSON record `<lakehouse>/_leases/<scope>.json` (holder, pid,
  host, stage, token, acquired_at, expires_at) changed only through an atomic
  primitive (`AtomicStore`: put-if-absent and compare-and-swap on an etag), the
  primitive object storage also offers (conditional PUT: If-None-Match / If-Match);
- **expiry**: a holder renews its lease from a heartbeat thread every ttl/4
  (default ttl 120 s, `HORTUS_LEASE_TTL`); a holder killed with -9 stops renewing
  and the next writer takes the lease over once it has expired, or at once when the
  holder ran on the same host and its process is gone (a reused pid: the expiry);
- **fencing**: every takeover increments the lease's token.  A write of a leased
  table (`Lakehouse.write`, `Lakehouse.delete_rows`) commits inside `fenced_commit`,
  which takes the scope's commit lock, checks that the lease record still carries
  the writer's token, and makes the Delta commit while still holding that lock.
  A takeover changes the record only under the same commit lock, so the lease
  cannot change between the check and the commit: a writer whose lease was taken
  over fails with `LeaseLost` and its commit is not made (nothing written).  The
  commit records the token it was made under (lineage `hortus.lease`, "silver#7").  A
  write without a lease into a scope someone else holds fails with `LeaseHeld`;
- a second writer waits up to `wait` seconds (`hortus ingest --wait N`,
  `HORTUS_LEASE_WAIT`, default 0) and then fails with `LeaseHeld`, whose message
  names the holder (exit status 2).

What is atomic, honestly: on local disk the primitive and the commit lock are
`fcntl.flock` on lock files next to the lease records plus `os.link` / `os.replace`
of complete files (a crash leaves the old or the new record, never half of one).
flock is reliable on a local file system, not on every network file system.

On object storage (a lakehouse at ``s3://bucket/prefix``) the records live in
``<lakehouse>/_leases/`` and the primitive is `S3Store` (`hortus.lakehouse._objstore`):
put-if-absent is a PUT with ``If-None-Match: *``, compare-and-swap a PUT with
``If-Match: <etag>``, decided by the server.  There is no lock to hold across a
Delta commit, so the fence is part of the commit itself (`CommitFence`):

- every write of a leased table carries a Delta transaction identifier (a ``txn``
  action, plain Delta protocol: appId ``hortus-lease/<scope>``, version = the token)
  and is committed on a snapshot read just before, which must not already hold a
  greater token for that appId (else LeaseLost, nothing written);
- a takeover (of a record that was not released) CAS-es the record to the new token,
  then writes a *fence commit* (only that ``txn`` action, no data) into every existing
  table of the scope before the new holder starts;
- the commit point of Delta on S3 is the put-if-absent of the next log entry;
  delta-rs then checks the commits that won meanwhile, and a winning commit that
  carries the same appId fails ours ("concurrent transaction"): so an old holder's
  commit either lands before the fence commit of that table (it is then part of
  what the new holder reads) or fails with LeaseLost, whatever the timing; it can
  never land after the new holder's fence.

What that does not cover: between the takeover's CAS and the fence commit of a
table, the old holder may still commit to that table (those commits come before
the fence and the new holder reads them, as if they were made before the
takeover); a table the scope did not have at takeover (created later by the old
holder) is fenced by the new holder's first commit to it only.  Expiry compares
wall clocks, so holders on several hosts need synchronised clocks (and ttl >> skew).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from hortus.config import RESTRICTED_LAYERS
from hortus.errors import HortusError
from hortus.lakehouse._objstore import S3Store, TableLocation, is_uri

DEFAULT_TTL = 120.0  # seconds a lease lives without renewal
LEASE_DIR = "_leases"
UNLEASED_LAYERS = ("ops",)  # append-only operations tables: optimistic concurrency
SHARED_SCOPES = {"bronze": "bronze", "silver": "silver", "quarantine": "silver"}


class LeaseHeld(HortusError):
    """Another writer holds the lease of a scope (the message names it)."""

    def __init__(self, message: str, record: LeaseRecord | None = None):
        super().__init__(message)
        self.record = record


class LeaseLost(HortusError):
    """This writer's lease was taken over (expired and taken by another writer): not committed."""


# ------------------------------------------------------------------ primitive
class AtomicStore(Protocol):
    """Small records changed atomically: what a lease needs of local disk or object storage."""

    def get(self, key: str) -> tuple[bytes, str] | None:
        """Return (data, etag) of a record, or None if there is none."""

    def put_if_absent(self, key: str, data: bytes) -> str | None:
        """Create a record if none exists; return its etag, or None if one existed."""

    def compare_and_swap(self, key: str, etag: str, data: bytes) -> str | None:
        """Replace a record if its etag is still `etag`; return the new etag, or None."""

    def exclusive(self, key: str) -> AbstractContextManager[None]:
        """Hold an exclusive lock named `key` (the commit lock of a scope)."""


def _etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


class LocalStore:
    """`AtomicStore` on a local folder: flock for mutual exclusion, link/rename for atomicity.

    Every change of a record is made under an flock of the record's lock file, and
    writes a complete temporary file then links (create) or renames (swap) it into
    place, so readers never see half a record and a crash leaves the old or the new.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    @contextmanager
    def exclusive(self, key: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{key}.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def get(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        return data, _etag(data)

    def _tmp(self, data: bytes) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def put_if_absent(self, key: str, data: bytes) -> str | None:
        with self.exclusive(key + ".record"):
            tmp = self._tmp(data)
            try:
                os.link(tmp, self._path(key))  # fails if the record exists: atomic create
            except FileExistsError:
                return None
            finally:
                tmp.unlink(missing_ok=True)
        return _etag(data)

    def compare_and_swap(self, key: str, etag: str, data: bytes) -> str | None:
        with self.exclusive(key + ".record"):
            current = self.get(key)
            if current is None or current[1] != etag:
                return None
            os.replace(self._tmp(data), self._path(key))
        return _etag(data)


# ------------------------------------------------------------------- records
@dataclass(frozen=True)
class LeaseRecord:
    """The content of a lease record."""

    scope: str
    holder: str
    pid: int
    host: str
    stage: str
    token: int
    acquired_at: float
    expires_at: float
    released: bool = False

    def live(self, now: float | None = None) -> bool:
        """Return whether the lease still excludes other writers.

        Not once released or expired, nor when its holder ran on this host and its
        process is gone (killed: no need to wait for the expiry on the same machine).
        """
        if self.released or (now or time.time()) >= self.expires_at:
            return False
        return not (self.host == socket.gethostname() and not _alive(self.pid))

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseRecord:
        return cls(**json.loads(data))

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.acquired_at, UTC).isoformat(timespec="seconds")
        left = max(0.0, self.expires_at - time.time())
        return (
            f"{self.holder} (pid {self.pid} on {self.host}, stage {self.stage}, since {since}, "
            f"lease expires in {left:.0f} s unless renewed)"
        )


def _alive(pid: int) -> bool:
    """Return whether a process of this host exists (a reused pid counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def scope_for(layer: str, full_name: str) -> str | None:
    """Return the lease scope of a table (None: an operations table, no lease)."""
    if layer in UNLEASED_LAYERS:
        return None
    return SHARED_SCOPES.get(layer, full_name)


def _ttl() -> float:
    return float(os.environ.get("HORTUS_LEASE_TTL", DEFAULT_TTL))


_DEFAULT_WAIT: list[float | None] = [None]


def set_default_wait(seconds: float | None) -> None:
    """Set how long this process's stages wait for a held lease (the CLI's --wait)."""
    _DEFAULT_WAIT[0] = seconds


def default_wait() -> float:
    if _DEFAULT_WAIT[0] is not None:
        return float(_DEFAULT_WAIT[0])
    return float(os.environ.get("HORTUS_LEASE_WAIT", 0))


# -------------------------------------------------------------------- leases
# the leases this process holds, by (lease folder, scope): every Lakehouse of the
# process commits under them (a stage may open several)
_HELD: dict[tuple[str, str], Lease] = {}
_HELD_LOCK = threading.Lock()


def lease_root(lakehouse: Path | str) -> Path | str:
    """Return the folder (or object-store URI) of a lakehouse's lease records."""
    if is_uri(lakehouse):
        return f"{str(lakehouse).rstrip('/')}/{LEASE_DIR}"
    return Path(lakehouse).resolve() / LEASE_DIR


def store_for(lakehouse: Path | str) -> AtomicStore:
    """Return the atomic store of a lakehouse's leases: local folder or object storage."""
    root = lease_root(lakehouse)
    return S3Store(root) if isinstance(root, str) else LocalStore(root)


def _fences_in_commit(store: AtomicStore) -> bool:
    return bool(getattr(store, "fences_in_commit", False))


# ---------------------------------------------------------------- the fence
@dataclass(frozen=True)
class CommitFence:
    """The fence of one leased write on object storage: the token goes into the commit.

    The commit carries a Delta ``txn`` action (appId ``hortus-lease/<scope>``, version =
    token) and is made on a snapshot that holds no greater token (module docstring).
    """

    scope: str
    token: int
    table: str

    @property
    def app_id(self) -> str:
        return f"hortus-lease/{self.scope}"

    def transactions(self) -> list:
        from deltalake import Transaction

        return [Transaction(self.app_id, self.token, int(time.time() * 1000))]

    def _lost(self, seen: int) -> LeaseLost:
        return LeaseLost(
            f"not committed to {self.table}: this writer's lease on {self.scope} (token "
            f"{self.token}) was taken over (the table already holds a commit of token {seen}); "
            "nothing was written"
        )

    def check(self, dt) -> None:  # dt: DeltaTable, the snapshot the commit is made on
        """Raise LeaseLost if the snapshot already holds a commit of a greater token."""
        seen = dt.transaction_version(self.app_id)
        if seen is not None and seen > self.token:
            raise self._lost(seen)

    def commit(self, location: TableLocation, make, *, retries: int = 5):
        """Run ``make(dt)`` (one Delta commit on snapshot `dt`, or dt None: a new table).

        The commit must carry `transactions()`.  A commit refused by Delta's conflict
        check is retried on a new snapshot unless a greater token landed meanwhile
        (then LeaseLost: nothing was written).  Returns what `make` returned.
        """
        from deltalake.exceptions import CommitFailedError

        for attempt in range(retries):
            dt = location.delta() if location.exists() else None
            if dt is not None:
                self.check(dt)
            try:
                return make(dt)
            except CommitFailedError:
                if attempt == retries - 1:
                    raise
                now = location.delta()
                seen = now.transaction_version(self.app_id)
                if seen is not None and seen > self.token:
                    raise self._lost(seen) from None
        raise AssertionError("unreachable")


def _layer_folder(layer: str) -> str:
    return f"restricted/{layer}" if layer in RESTRICTED_LAYERS else layer


def _fence_scope(lakehouse: str, scope: str, token: int) -> int:
    """Write the fence commit of a new token into every existing table of a scope (S3)."""
    from deltalake import CommitProperties

    layers = [layer for layer, s in SHARED_SCOPES.items() if s == scope]
    root = S3Store(lakehouse)
    if layers:
        tables = [t for layer in layers for t in root.tables(_layer_folder(layer))]
    elif "." in scope:
        layer, _, name = scope.partition(".")
        uri = f"{lakehouse.rstrip('/')}/{_layer_folder(layer)}/{name}"
        tables = [uri] if TableLocation.of(uri).exists() else []
    else:
        tables = []  # a scope that names no table (a lock scope): nothing to fence
    for uri in tables:
        fence = CommitFence(scope, token, uri)
        props = CommitProperties(
            custom_metadata={
                "hortus.stage": "lease",
                "hortus.note": f"lease fence {scope}#{token}",
            },
            app_transactions=fence.transactions(),
        )
        fence.commit(
            TableLocation.of(uri),
            lambda dt, props=props: dt.create_write_transaction(
                [], mode="append", schema=dt.schema(), commit_properties=props
            ),
        )
    return len(tables)


class Lease:
    """A lease this process holds on one scope; renewed by a heartbeat thread until released."""

    def __init__(self, store: AtomicStore, record: LeaseRecord, etag: str, ttl: float):
        self.store = store
        self.record = record
        self.etag = etag
        self.ttl = ttl
        self.lost: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._beat, name=f"hortus-lease-{record.scope}", daemon=True
        )
        self._thread.start()

    @property
    def scope(self) -> str:
        return self.record.scope

    @property
    def token(self) -> int:
        return self.record.token

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.renew()
            except LeaseLost:
                return
            except OSError:
                continue  # try again at the next beat; expiry is the bound

    def renew(self) -> None:
        """Push the expiry ttl seconds ahead (compare-and-swap on the record)."""
        with self._lock:
            if self.lost:
                raise LeaseLost(self.lost)
            new = LeaseRecord(**(asdict(self.record) | {"expires_at": time.time() + self.ttl}))
            etag = self.store.compare_and_swap(self.scope, self.etag, new.to_bytes())
            if etag is None:
                self.lost = (
                    f"the lease on {self.scope} (token {self.token}) was taken over by "
                    f"{_current_holder(self.store, self.scope)}"
                )
                raise LeaseLost(self.lost)
            self.record, self.etag = new, etag

    def release(self) -> None:
        """Stop renewing and mark the record released (the token stays for the next holder)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            if self.lost:
                return
            done = LeaseRecord(**(asdict(self.record) | {"released": True}))
            if self.store.compare_and_swap(self.scope, self.etag, done.to_bytes()) is not None:
                self.lost = "released"


def _ours(record: LeaseRecord) -> bool:
    return (record.pid, record.host) == (os.getpid(), socket.gethostname())


def _current_holder(store: AtomicStore, scope: str) -> str:
    got = store.get(scope)
    return LeaseRecord.from_bytes(got[0]).describe() if got else "nobody (record gone)"


def _held_message(record: LeaseRecord, waited: float) -> str:
    scope = record.scope
    after = f" after waiting {waited:.0f} s" if waited > 0 else ""
    return (
        f"{scope} is being written by {record.describe()}{after}; retry when it is done, or "
        f"wait for it with --wait SECONDS (HORTUS_LEASE_WAIT)"
    )


def acquire(
    lakehouse: Path | str,
    scope: str,
    *,
    holder: str,
    stage: str,
    ttl: float | None = None,
    wait: float | None = None,
    poll: float = 0.2,
) -> Lease:
    """Take the lease of a scope: free, released or expired; else wait up to `wait` s.

    A takeover (the record exists) is a compare-and-swap made under the scope's
    commit lock, with the token incremented: a writer of the old token that is
    committing finishes first, and its later commits fail (`fenced_commit`).
    Raises LeaseHeld naming the holder when the wait runs out.
    """
    ttl = _ttl() if ttl is None else float(ttl)
    wait = default_wait() if wait is None else float(wait)
    store = store_for(lakehouse)
    start = time.monotonic()
    while True:
        now = time.time()
        mine = dict(
            scope=scope, holder=holder, pid=os.getpid(), host=socket.gethostname(),
            stage=stage, acquired_at=now, expires_at=now + ttl,
        )  # fmt: skip
        got = store.get(scope)
        if got is None:
            record = LeaseRecord(token=1, **mine)
            etag = store.put_if_absent(scope, record.to_bytes())
            if etag is not None:
                return Lease(store, record, etag, ttl)
            continue  # someone created it meanwhile: read it again
        current = LeaseRecord.from_bytes(got[0])
        if not current.live(now):
            record = LeaseRecord(token=current.token + 1, **mine)
            if _fences_in_commit(store):  # object storage: fence every table of the scope
                etag = store.compare_and_swap(scope, got[1], record.to_bytes())
                if etag is not None and not current.released:
                    _fence_scope(str(lakehouse), scope, record.token)
            else:
                with store.exclusive(scope + ".commit"):  # no commit of the old token between
                    etag = store.compare_and_swap(scope, got[1], record.to_bytes())
            if etag is not None:
                return Lease(store, record, etag, ttl)
            continue
        waited = time.monotonic() - start
        if waited >= wait:
            raise LeaseHeld(_held_message(current, waited), current)
        time.sleep(min(poll, max(0.01, wait - waited)))


@contextmanager
def hold(
    lakehouse: Path | str,
    scopes: Sequence[str],
    *,
    holder: str,
    stage: str,
    ttl: float | None = None,
    wait: float | None = None,
) -> Iterator[list[Lease]]:
    """Hold the leases of several scopes (in sorted order: no deadlock) while the block runs.

    Re-entrant within a process: a scope this process already holds is reused and
    released by the outer holder only.  Every Lakehouse of the process commits
    writes of these scopes under them (`fenced_commit`).
    """
    folder = str(lease_root(lakehouse))
    taken: list[Lease] = []
    try:
        for scope in sorted(set(scopes)):
            with _HELD_LOCK:
                if (folder, scope) in _HELD:
                    continue
            lease = acquire(lakehouse, scope, holder=holder, stage=stage, ttl=ttl, wait=wait)
            with _HELD_LOCK:
                _HELD[(folder, scope)] = lease
            taken.append(lease)
        yield taken
    finally:
        for lease in reversed(taken):
            with _HELD_LOCK:
                _HELD.pop((folder, lease.scope), None)
            lease.release()


def held(lakehouse: Path | str, scope: str | None) -> Lease | None:
    """Return the lease this process holds on a scope, if any."""
    if scope is None:
        return None
    with _HELD_LOCK:
        return _HELD.get((str(lease_root(lakehouse)), scope))


@contextmanager
def fenced_commit(
    lakehouse: Path | str, scope: str | None, table: str
) -> Iterator[CommitFence | None]:
    """Run a commit of `table` under its scope's commit lock, fenced by this process's lease.

    Holding the lease: the record must still carry our token (else LeaseLost and
    the block does not run).  Not holding it: a live lease of another writer
    refuses the write (LeaseHeld); a free scope lets it through.  The lock is held
    until the block (the Delta commit) ends, and takeovers take the same lock.

    On object storage there is no lock: holding the lease, the block gets a
    `CommitFence` and must commit through it (the token inside the commit); else None.
    """
    if scope is None:
        yield None
        return
    folder = lease_root(lakehouse)
    with _HELD_LOCK:
        lease = _HELD.get((str(folder), scope))
    store = lease.store if lease else store_for(lakehouse)
    if _fences_in_commit(store):
        if lease is not None:
            got = store.get(scope)  # early word of a takeover (the fence is in the commit)
            current = LeaseRecord.from_bytes(got[0]) if got else None
            if current is None or current.token != lease.token or lease.lost == "released":
                who = current.describe() if current else "nobody"
                raise LeaseLost(
                    f"not committed to {table}: this writer's lease on {scope} (token "
                    f"{lease.token}) was taken over by {who}; nothing was written"
                )
            yield CommitFence(scope, lease.token, table)
            return
        got = store.get(scope)
        current = LeaseRecord.from_bytes(got[0]) if got else None
        if current is not None and current.live() and not _ours(current):
            raise LeaseHeld(f"not committed to {table}: {_held_message(current, 0.0)}", current)
        yield None
        return
    if lease is None and not (Path(folder) / f"{scope}.json").exists():
        yield None  # nobody ever leased this scope here (notebooks, tests): nothing to fence
        return
    with store.exclusive(scope + ".commit"):
        got = store.get(scope)
        current = LeaseRecord.from_bytes(got[0]) if got else None
        if lease is not None:
            if current is None or current.token != lease.token or lease.lost == "released":
                who = current.describe() if current else "nobody"
                raise LeaseLost(
                    f"not committed to {table}: this writer's lease on {scope} (token "
                    f"{lease.token}) was taken over by {who}; nothing was written"
                )
        elif current is not None and current.live() and not _ours(current):
            raise LeaseHeld(f"not committed to {table}: {_held_message(current, 0.0)}", current)
        yield None
