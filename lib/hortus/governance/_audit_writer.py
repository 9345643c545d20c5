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
key_id.  The writer trusts the `user` a client names (the identity model of the
table API: HORTUS_USER); it records which records exist and proves nobody changed them.
"""

from __future__ import annotations

import grp
import json
import os
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Callable
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


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        while line := self.rfile.readline(MAX_REQUEST):
            try:
                reply = self.server.answer(json.loads(line))
            except Exception as exc:  # one bad request never stops the writer
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self.wfile.write(json.dumps(reply, default=str).encode() + b"\n")
            self.wfile.flush()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, log: Any):
        self.log = log
        self.lock = threading.Lock()  # one append at a time (the log caches its tail)
        super().__init__(path, _Handler)

    def answer(self, request: dict) -> dict:
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "key_id": self.log._active_key()}
        if op != "append":
            return {"ok": False, "error": f"unknown op {op!r} (append, ping)"}
        rows = [_from_wire(r) for r in request.get("records") or []]
        with self.lock:
            df = self.log.append_rows(rows, track_policy=bool(request.get("track_policy")))
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
) -> None:
    """Serve appends on the Unix socket at `path` until SIGTERM or SIGINT."""
    sock = Path(path)
    if sock.exists() or sock.is_symlink():
        sock.unlink()  # a stale socket of a writer that died
    sock.parent.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o117)  # the socket is born 0660
    try:
        server = _Server(path, log)
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
