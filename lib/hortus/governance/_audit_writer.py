"""The audit writer: one process that holds the audit signing key and appends for everyone.

`hortus audit writer --socket PATH --key-dir DIR` runs `serve` as its own OS user.  The
private key stays in DIR (mode 0700, key files 0600); other processes send the records
they would have appended over the Unix socket (`append_remote`, used by
`hortus.governance.audit.AuditLog.append` when HORTUS_AUDIT_SOCKET names the socket) and
the writer validates, chains, signs, commits and anchors them.  The socket is created
with mode 0660 and, with `--group`, owned by the hortus users' group, so those users can
send records but cannot sign anything themselves.

Protocol: JSON lines.  A request is ``{"op": "append", "records": [...],
"track_policy": bool}`` where each record has user, action, object, outcome, detail,
policy_version and ts (integer microseconds since the epoch, UTC); the reply is
``{"ok": true, "rows": [...]}`` (the rows written, with seq, hash, key_id, sig) or
``{"ok": false, "error": "..."}``.  ``{"op": "ping"}`` answers with the writer's active
key_id and the OS user it sees at the other end of the socket.

Identity: the `user` of a record is the hortus user the client names (HORTUS_USER, the
identity model of the table API).  The writer also reads the sending process's uid
from the socket itself (Linux ``SO_PEERCRED``: the kernel's word, not the client's),
maps it to the OS user name and stores it in each record's ``os_user`` (covered by the
hash), so the log shows both the claimed and the proven identity.  With an identity
map (params.yaml ``audit.identities`` or `hortus audit writer --identities`: OS user ->
the hortus users it may act as, ``"*"`` for any), a record whose claimed user the map
does not allow for the sender's OS user is refused, and so is every OS user the map
does not name.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import signal
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hortus.errors import HortusError
from hortus.governance._audit_keys import KeyStore, key_id_of

MAX_REQUEST = 64 * 1024 * 1024  # bytes of one request line
TIMEOUT = 60.0  # seconds a client waits for the writer
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class WriterError(HortusError):
    """The audit writer cannot be reached, refuses the records, or cannot start."""


_US = timedelta(microseconds=1)


def _to_wire(row: dict) -> dict:
    out = dict(row)
    if isinstance(out.get("ts"), datetime):
        out["ts"] = (out["ts"] - _EPOCH) // _US
    return out


def _from_wire(row: dict) -> dict:
    out = dict(row)
    if isinstance(out.get("ts"), int):
        out["ts"] = _EPOCH + out["ts"] * _US
    return out


def append_remote(path: str, rows: list[dict], *, track_policy: bool) -> list[dict]:
    """Send validated rows to the audit writer at `path`; return the rows it wrote."""
    request = {"op": "append", "records": [_to_wire(r) for r in rows], "track_policy": track_policy}
    reply = _call(path, request)
    return [_from_wire(r) for r in reply["rows"]]


def ping(path: str) -> dict:
    """Return the writer's answer to a ping ({"ok": True, "key_id": ...})."""
    return _call(path, {"op": "ping"})


def _call(path: str, request: dict, error: type[Exception] = WriterError) -> dict:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(path)
            sock.sendall(json.dumps(request).encode() + b"\n")
            with sock.makefile("rb") as fh:
                line = fh.readline(MAX_REQUEST)
    except OSError as exc:
        raise error(
            f"audit writer at {path} not reachable ({exc}); is `hortus audit writer` running, "
            "and may this user write to its socket?"
        ) from exc
    try:
        reply = json.loads(line)
    except ValueError as exc:
        raise error(f"audit writer at {path}: unreadable reply {line[:200]!r}") from exc
    if not reply.get("ok"):
        raise error(f"audit writer at {path} refused the records: {reply.get('error')}")
    return reply


def peer_user(sock: socket.socket) -> str:
    """Return the OS user name of the process at the other end of a Unix socket.

    The uid comes from the kernel (``SO_PEERCRED``, Linux), not from the client; a uid
    without a passwd entry is named ``uid:<n>``.
    """
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def identity_map(raw: object, where: str) -> dict[str, tuple[str, ...]] | None:
    """Return the identity map (OS user -> hortus users) of a config value, or None.

    `raw` is None (no map: any claimed user is recorded as claimed) or a mapping of OS
    user names to a hortus user name or a list of them (``"*"``: any).  Bad shapes raise
    WriterError naming `where` and the key.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise WriterError(f"{where}: expected a mapping of OS user -> hortus users, got {raw!r}")
    out = {}
    for os_name, users in raw.items():
        names = [users] if isinstance(users, str) else users
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(u, str) and u for u in names)
        ):
            raise WriterError(
                f"{where}.{os_name}: expected a hortus user name or a list of them "
                f'("*" for any), got {users!r}'
            )
        out[str(os_name)] = tuple(names)
    return out


def _refusal(identities: dict[str, tuple[str, ...]], os_user: str, rows: list[dict]) -> str | None:
    allowed = identities.get(os_user)
    if allowed is None:
        return (
            f"OS user {os_user} is not in the audit writer's identity map (which names "
            f"{', '.join(sorted(identities)) or 'nobody'}): no record accepted from it"
        )
    if "*" in allowed:
        return None
    for row in rows:  # the records of one request
        if row.get("user") not in allowed:
            return (
                f"OS user {os_user} may not record as hortus user {row.get('user')!r} "
                f"(the identity map allows {', '.join(allowed)})"
            )
    return None


@dataclass(frozen=True)
class AuditSettings:
    """The `audit` section of params.yaml: the writer's socket and its identity map.

    ``socket``: the audit writer's Unix socket (relative paths are under the project
    folder); set, every hortus process of the project sends its records there instead of
    signing them (HORTUS_AUDIT_SOCKET overrides it, an empty value turns it off).
    ``identities``: OS user -> hortus users it may record as (read by the writer).
    """

    socket: str | None = None
    identities: dict[str, tuple[str, ...]] | None = None

    @classmethod
    def from_mapping(
        cls, raw: object, root: Path | None = None, where: str = "params.yaml: audit"
    ) -> AuditSettings:
        """Parse the section (None: defaults); raise WriterError naming the key."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise WriterError(f"{where}: expected a mapping (socket, identities), got {raw!r}")
        for key in raw:
            if key not in ("socket", "identities"):
                raise WriterError(f"{where}.{key}: unknown key; valid: socket, identities")
        sock = raw.get("socket")
        if sock is not None and (not isinstance(sock, str) or not sock.strip()):
            raise WriterError(f"{where}.socket: expected a path (string) or null, got {sock!r}")
        if sock and root is not None and not Path(sock).is_absolute():
            sock = str(Path(root) / sock)
        return cls(sock, identity_map(raw.get("identities"), f"{where}.identities"))


_SETTINGS: dict[tuple[str, int], AuditSettings] = {}


def load_settings(root: Path) -> AuditSettings:
    """Return the `audit` section of `root`/params.yaml (defaults without the file)."""
    path = Path(root) / "params.yaml"
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return AuditSettings()
    cached = _SETTINGS.get((str(path), stamp))
    if cached is None:
        from hortus.params import read_params

        raw = read_params(path).get("audit")
        cached = _SETTINGS[(str(path), stamp)] = AuditSettings.from_mapping(
            raw, Path(root), f"{path}: audit"
        )
    return cached


def load_identities(path: Path) -> dict[str, tuple[str, ...]] | None:
    """Return the identity map of a YAML file (`hortus audit writer --identities`)."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise WriterError(f"{path}: cannot read the identity map ({exc})") from None
    return identity_map(raw or {}, str(path))


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        try:
            os_user: str | None = peer_user(self.request)
        except (OSError, AttributeError):  # no SO_PEERCRED (not Linux)
            os_user = None
        while line := self.rfile.readline(MAX_REQUEST):
            try:
                reply = self.server.answer(json.loads(line), os_user)
            except Exception as exc:  # one bad request never stops the writer
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self.wfile.write(json.dumps(reply, default=str).encode() + b"\n")
            self.wfile.flush()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, log: Any, identities: dict[str, tuple[str, ...]] | None):
        self.log = log
        self.identities = identities
        self.lock = threading.Lock()  # one append at a time (the log caches its tail)
        super().__init__(path, _Handler)

    def answer(self, request: dict, os_user: str | None = None) -> dict:
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "key_id": self.log._active_key(), "os_user": os_user}
        if op != "append":
            return {"ok": False, "error": f"unknown op {op!r} (append, ping)"}
        rows = [_from_wire(r) for r in request.get("records") or []]
        if self.identities is not None:
            why = _refusal(self.identities, os_user or "(unknown: no SO_PEERCRED)", rows)
            if why is not None:
                print(f"audit writer: refused: {why}", file=sys.stderr, flush=True)
                return {"ok": False, "error": why}
        who = os_user or "(unknown)"
        with self.lock:
            df = self.log.append_rows(
                rows, track_policy=bool(request.get("track_policy")), os_user=who
            )
        return {"ok": True, "rows": [_to_wire(r) for r in df.to_dicts()]}


def prepare(log: Any, store: KeyStore) -> str:
    """Make sure the writer holds the key that signs next; return its key_id.

    A log with no signed record yet gets the writer's stored key (or a new one) as its
    root; a log whose active key the writer does not hold is refused (hand it over with
    `hortus audit rotate-key --from-key-dir`).
    """
    store.ensure()
    active = log._active_key()
    if active is None:
        current = store.current_id()
        key = store.load(current) if current else None
        if key is None:
            key = store.pending() or _new_root(store)
            store.save(key)
        log.trust.publish(key.public_key())
        return key_id_of(key.public_key())
    if store.load(active) is None:
        raise WriterError(
            f"audit log {log.path}: its active key {active} is not in {store.dir}; hand the "
            "log over to this writer with `hortus audit rotate-key --key-dir "
            f"{store.dir} --from-key-dir <folder holding {active}>` (or run the writer "
            "with the key folder that holds it)"
        )
    return active


def _new_root(store: KeyStore) -> Any:
    return Ed25519PrivateKey.generate()


def serve(
    log: Any,
    path: str,
    *,
    group: str | None = None,
    ready: Callable[[str], None] | None = None,
    identities: dict[str, tuple[str, ...]] | None = None,
) -> None:
    """Serve appends on the Unix socket at `path` until SIGTERM or SIGINT.

    `identities` (OS user -> hortus users) restricts who may record as whom.
    """
    sock = Path(path)
    if sock.exists() or sock.is_symlink():
        sock.unlink()  # a stale socket of a writer that died
    sock.parent.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o117)  # the socket is born 0660
    try:
        server = _Server(path, log, identities)
    finally:
        os.umask(old)
    if group is not None:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    os.chmod(path, 0o660)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if ready is not None:
        ready(path)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("audit writer: stopping", file=sys.stderr)
    finally:
        server.server_close()
        sock.unlink(missing_ok=True)
