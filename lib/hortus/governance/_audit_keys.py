"""Ed25519 keys of the audit log: the writer's private keys, the public trust folder, anchors.

Two places, two owners:

- the **key folder** (private, mode 0700, files 0600) of whoever signs: the audit
  writer's OS user (`hortus audit writer --key-dir DIR`) or, in single-user mode,
  `.hortus/secrets/audit_signing/`.  It holds `<key_id>.pem` (PKCS8), `current` (the
  key_id in use) and, during a rotation, `pending.pem`;
- the **trust folder** next to the log, `<log>.trust/` (public, written only by the
  signer): `keys/<key_id>.pub` (the public key of each root key, JSON) and
  `anchors.jsonl` (one signed line per audit commit: the chain head seq and hash).
  Every user may read it; nobody but the signer should be able to write it.

With the lakehouse in a bucket the log is ``s3://.../ops/audit_log`` and its trust
folder is the prefix ``s3://.../ops/audit_log.trust/`` beside it, so every machine
verifies the same chain against the same keys and anchors (never a private key: those
stay with the signer, on its machine or in its environment).  There, `keys/<key_id>.pub`
is written with a conditional PUT (If-None-Match: a published key is never replaced),
each anchor is kept as ``anchors/<seq>.json`` (put-if-absent, one per commit) and the
newest as ``anchors/head.json``, replaced only by compare-and-swap (If-Match: etag) and
only by an anchor of a greater seq: two writers anchoring at once cannot roll the head
back, whichever finishes last.

A key_id names its key: ``ed25519:`` + the first 16 hex digits of the SHA-256 of the
raw public key, so a public key file cannot be swapped under its name.  The legacy
records of an HMAC chain (before signatures) carry no key_id and count as
`LEGACY_KEY_ID` ("hmac-v0").

In single-user mode without a stored key, the signing key is derived from the audit
secret (HORTUS_AUDIT_KEY or `.hortus/secrets/audit.key`): SHA-256 of a label and the
secret is the Ed25519 seed.  Whoever holds that secret can sign, which is why a
multi-user installation runs an audit writer instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hortus.errors import HortusError
from hortus.lakehouse._objstore import ObjectFolder, is_uri

LEGACY_KEY_ID = "hmac-v0"
RECORD_DOMAIN = b"hortus-audit-record\x00"
ANCHOR_DOMAIN = b"hortus-audit-anchor\x00"
ROTATION_DOMAIN = b"hortus-audit-rotation\x00"
_DERIVE_LABEL = b"hortus-audit-ed25519-seed\x00"
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class AuditKeyError(HortusError):
    """An audit signing or public key is missing, unreadable or does not match its name."""


def raw_public(pub: Ed25519PublicKey) -> bytes:
    """Return the 32 raw bytes of a public key."""
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(pub: Ed25519PublicKey) -> str:
    """Return the key_id of a public key: ``ed25519:`` + 16 hex digits of its SHA-256."""
    return "ed25519:" + hashlib.sha256(raw_public(pub)).hexdigest()[:16]


def public_from_hex(text: str) -> Ed25519PublicKey:
    """Return the public key of 64 hex digits (raw 32 bytes)."""
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))


def derived_key(secret: bytes) -> Ed25519PrivateKey:
    """Return the single-user signing key derived from the audit secret."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(_DERIVE_LABEL + secret).digest())


def signs(pub: Ed25519PublicKey, signature_hex: str | None, message: bytes) -> bool:
    """Return whether `signature_hex` is pub's signature of message."""
    if not signature_hex:
        return False
    try:
        pub.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def rotation_statement(old_id: str, new_id: str, new_public_hex: str) -> bytes:
    """Return the bytes the new key signs in a rotation record (it accepts the hand-over)."""
    return ROTATION_DOMAIN + _JSON.encode([old_id, new_id, new_public_hex]).encode()


def _file_name(key_id: str) -> str:
    return key_id.replace(":", "-")


def _write_private(path: Path, key: Ed25519PrivateKey) -> None:
    """Write a private key as PKCS8 PEM with mode 0600 (atomically: temp file + rename)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise AuditKeyError(f"audit signing key {path}: cannot be read ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"audit signing key {path}: not an Ed25519 key")
    return key


@dataclass
class KeyStore:
    """The private key folder of one signer (mode 0700; key files 0600)."""

    dir: Path

    def __post_init__(self) -> None:
        self.dir = Path(self.dir)

    def ensure(self) -> None:
        """Create the folder with mode 0700 (and tighten it if it exists)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)

    @property
    def pending_path(self) -> Path:
        return self.dir / "pending.pem"

    def current_id(self) -> str | None:
        """Return the key_id named by `current`, or None."""
        path = self.dir / "current"
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuditKeyError(
                f"audit key folder {self.dir}: cannot read current ({exc})"
            ) from exc
        return text or None

    def load(self, key_id: str) -> Ed25519PrivateKey | None:
        """Return the private key of key_id (a stored key or the pending one), or None."""
        path = self.dir / f"{_file_name(key_id)}.pem"
        if path.exists():
            key = _read_private(path)
            if key_id_of(key.public_key()) != key_id:
                raise AuditKeyError(f"audit signing key {path}: does not match its key_id")
            return key
        pending = self.pending()
        if pending is not None and key_id_of(pending.public_key()) == key_id:
            return pending
        return None

    def pending(self) -> Ed25519PrivateKey | None:
        """Return the key of an unfinished rotation, or None."""
        return _read_private(self.pending_path) if self.pending_path.exists() else None

    def save(self, key: Ed25519PrivateKey, *, make_current: bool = True) -> str:
        """Store a key as `<key_id>.pem` (0600), optionally make it current; return its id."""
        self.ensure()
        key_id = key_id_of(key.public_key())
        _write_private(self.dir / f"{_file_name(key_id)}.pem", key)
        if make_current:
            tmp = self.dir / "current.tmp"
            tmp.write_text(key_id + "\n", encoding="utf-8")
            os.replace(tmp, self.dir / "current")
        return key_id

    def new_pending(self) -> Ed25519PrivateKey:
        """Generate the next key and keep it as `pending.pem` until the rotation finishes."""
        self.ensure()
        key = Ed25519PrivateKey.generate()
        _write_private(self.pending_path, key)
        return key


@dataclass
class Signer:
    """The private keys one process may sign audit records with.

    `store` (a key folder) and/or `secret` (the single-user audit secret, from which a
    root key is derived).  `key(key_id)` finds the private key of the log's active key.
    """

    store: KeyStore | None = None
    secret: bytes | None = None

    def key(self, key_id: str) -> Ed25519PrivateKey | None:
        """Return the private key of key_id if this signer holds it."""
        if self.store is not None:
            key = self.store.load(key_id)
            if key is not None:
                return key
        if self.secret:
            key = derived_key(self.secret)
            if key_id_of(key.public_key()) == key_id:
                return key
        return None

    def root(self) -> Ed25519PrivateKey:
        """Return the key to start a chain with (stored current key, else the derived one)."""
        if self.store is not None and (current := self.store.current_id()):
            key = self.store.load(current)
            if key is None:
                raise AuditKeyError(
                    f"audit key folder {self.store.dir}: current names {current}, "
                    "but its .pem file is missing"
                )
            return key
        if self.secret:
            return derived_key(self.secret)
        raise AuditKeyError("no audit signing key (no stored key and no audit secret)")

    def usable(self) -> bool:
        """Return whether this signer holds any key at all."""
        return bool(self.secret) or (self.store is not None and self.store.current_id() is not None)


ANCHOR_HEAD = "anchors/head.json"
_ANCHOR_RETRIES = 20


def _entry_bytes(entry: dict) -> bytes:
    return (_JSON.encode(entry) + "\n").encode()


@dataclass
class TrustStore:
    """The public trust folder of one log: root public keys and signed anchors.

    `dir` is a local folder, or an ``s3://`` prefix when the log lives in a bucket
    (module docstring): the same keys and anchors for every machine.
    """

    dir: Path | ObjectFolder

    def __post_init__(self) -> None:
        if isinstance(self.dir, ObjectFolder):
            return
        self.dir = ObjectFolder(self.dir) if is_uri(self.dir) else Path(self.dir)

    @property
    def remote(self) -> bool:
        return isinstance(self.dir, ObjectFolder)

    @property
    def anchors_path(self) -> Path | str:
        if isinstance(self.dir, ObjectFolder):
            return self.dir / ANCHOR_HEAD
        return self.dir / "anchors.jsonl"

    def publish(self, pub: Ed25519PublicKey) -> Path | str:
        """Write keys/<key_id>.pub (world-readable) unless it exists; return its path."""
        key_id = key_id_of(pub)
        if isinstance(self.dir, ObjectFolder):  # a conditional PUT: never replaced
            name = f"keys/{_file_name(key_id)}.pub"
            body = _JSON.encode({"key_id": key_id, "public_key": raw_public(pub).hex()}) + "\n"
            self.dir.put_if_absent(name, body.encode())
            return self.dir / name
        keys = self.dir / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        for folder in (self.dir, keys):
            folder.chmod(0o755)
        path = keys / f"{_file_name(key_id)}.pub"
        if not path.exists():
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(
                _JSON.encode({"key_id": key_id, "public_key": raw_public(pub).hex()}) + "\n",
                encoding="utf-8",
            )
            tmp.chmod(0o644)
            os.replace(tmp, path)
        return path

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Return the published root keys by key_id (a file whose key_id lies is refused)."""
        keys: dict[str, Ed25519PublicKey] = {}
        if isinstance(self.dir, ObjectFolder):
            folder = self.dir
            names = [k for k in folder.list("keys") if k.endswith(".pub")]
            files = [(folder / k, lambda k=k: folder.get(k)[0].decode("utf-8")) for k in names]
        else:
            local = self.dir / "keys"
            if not local.is_dir():
                return keys
            files = [
                (path, lambda path=path: path.read_text(encoding="utf-8"))
                for path in sorted(local.glob("*.pub"))
            ]
        for path, read in files:
            try:
                entry = json.loads(read())
                pub = public_from_hex(entry["public_key"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise AuditKeyError(f"audit public key {path}: unreadable ({exc})") from exc
            if key_id_of(pub) != entry.get("key_id"):
                raise AuditKeyError(
                    f"audit public key {path}: key_id {entry.get('key_id')!r} is not the "
                    f"fingerprint of its key ({key_id_of(pub)})"
                )
            keys[key_id_of(pub)] = pub
        return keys

    def anchor(self, key: Ed25519PrivateKey, seq: int, digest: str, version: int) -> dict:
        """Append one signed anchor line (seq, hash, Delta version, key_id); return it."""
        entry = {
            "seq": seq,
            "hash": digest,
            "version": version,
            "key_id": key_id_of(key.public_key()),
        }
        entry["sig"] = key.sign(ANCHOR_DOMAIN + _JSON.encode(entry).encode()).hex()
        if isinstance(self.dir, ObjectFolder):
            self._anchor_remote(self.dir, entry)
            return entry
        self.dir.mkdir(parents=True, exist_ok=True)
        line = (_JSON.encode(entry) + "\n").encode()
        fd = os.open(self.anchors_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry

    @staticmethod
    def _anchor_remote(folder: ObjectFolder, entry: dict) -> None:
        """Keep the anchor of a seq (put-if-absent), then move the head forward, never back.

        The head is replaced by compare-and-swap on the etag read, and only when the
        anchor is of a greater seq than the head's: of two writers anchoring at once, the
        one with the lower seq either loses the swap and then finds a greater head, or
        swaps first and is overtaken.  Object-store failures are raised as OSError (the
        commit stands; `AuditLog` warns).
        """
        from obstore.exceptions import BaseError

        data = _entry_bytes(entry)
        try:
            folder.put_if_absent(f"anchors/{int(entry['seq']):020d}.json", data)
            for _ in range(_ANCHOR_RETRIES):
                got = folder.get(ANCHOR_HEAD)
                if got is None:
                    if folder.put_if_absent(ANCHOR_HEAD, data):
                        return
                    continue
                head = json.loads(got[0])
                if int(head["seq"]) >= int(entry["seq"]):
                    return  # a later commit is anchored already: never roll it back
                if folder.swap(ANCHOR_HEAD, got[1], data):
                    return
        except BaseError as exc:
            raise OSError(f"audit anchor in {folder}: {exc}") from exc
        raise OSError(f"audit anchor in {folder}: head kept changing ({_ANCHOR_RETRIES} tries)")

    def adopt(self, local: Path) -> int:
        """Copy a local trust folder's public keys and last anchor here (once); return keys copied.

        A log moved to (or first written in) a bucket by an older Hortus kept its trust
        folder on the machine that wrote it; its published keys and newest anchor (signed,
        so copying cannot forge one) move to the bucket, where every machine finds them.
        """
        local = Path(local)
        if not isinstance(self.dir, ObjectFolder) or not local.is_dir():
            return 0
        mark = local / "adopted"
        if mark.exists() and mark.read_text(encoding="utf-8").strip() == str(self.dir):
            return 0
        old = TrustStore(local)
        keys = old.public_keys()
        for pub in keys.values():
            self.publish(pub)
        latest = old.latest_anchor()
        if latest is not None:
            self._anchor_remote(self.dir, latest)
        # a folder this user may not write (the writer's) is copied again at the next open,
        # which is harmless: keys are put-if-absent, the head only moves forward
        if os.access(local, os.W_OK):
            mark.write_text(str(self.dir) + "\n", encoding="utf-8")
        return len(keys)

    def latest_anchor(self) -> dict | None:
        """Return the last anchor line (parsed), or None when there is none.

        In a bucket: the head, or a kept anchor of a greater seq if the head was moved
        back (listing from the head's own seq on: one short LIST).
        """
        if isinstance(self.dir, ObjectFolder):
            return self._latest_remote(self.dir)
        try:
            with open(self.anchors_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 4096))
                tail = fh.read()
        except FileNotFoundError:
            return None
        lines = [x for x in tail.split(b"\n") if x.strip()]
        if not lines:
            return None
        try:
            return json.loads(lines[-1])
        except ValueError as exc:
            raise AuditKeyError(f"audit anchors {self.anchors_path}: last line unreadable") from exc

    @staticmethod
    def _latest_remote(folder: ObjectFolder) -> dict | None:
        got = folder.get(ANCHOR_HEAD)
        try:
            head = json.loads(got[0]) if got is not None else None
        except ValueError as exc:
            raise AuditKeyError(f"audit anchors {folder / ANCHOR_HEAD}: unreadable") from exc
        after = f"anchors/{int(head['seq']):020d}.json" if head else None
        later = [k for k in folder.list("anchors", offset=after) if k != ANCHOR_HEAD]
        if later:  # the head was moved back (or its swap is still under way): the newest
            newest = folder.get(later[-1])
            if newest is not None:
                try:
                    return json.loads(newest[0])
                except ValueError as exc:
                    raise AuditKeyError(f"audit anchors {folder / later[-1]}: unreadable") from exc
        return head

    @staticmethod
    def anchor_signed(entry: dict, pub: Ed25519PublicKey) -> bool:
        """Return whether an anchor line carries pub's signature of its fields."""
        body = {k: entry.get(k) for k in ("seq", "hash", "version", "key_id")}
        return signs(pub, entry.get("sig"), ANCHOR_DOMAIN + _JSON.encode(body).encode())
