"""Personal data: keyed tokens for direct identifiers, redaction of free text.

Direct identifiers (name, e-mail, phone, address, IP) are replaced in silver by
`tok_` + the first 24 hex digits of HMAC-SHA256(key, value).  The same value gives
the same token in every table, so tokens still join; without the key they cannot
be reversed or recomputed from a guessed value.

The key comes from the environment (`HORTUS_PII_KEY`) or from the git-ignored file
`.hortus/secrets/pii.key`.  `make run` writes the fixed demo key into that file
when none exists, so the demo gives the same tokens on every machine; the key is
labelled DEMO and must be replaced for real data.

Key versions (rotation, `hortus.governance.rotation`): that key is version 1; version N
is ``HORTUS_PII_KEY_V<N>`` or ``.hortus/secrets/pii.v<N>.key``.  The keyring file
``.hortus/secrets/pii.keyring.json`` (beside the keys, git-ignored) records the current
version, the retired ones, the rotation in progress if any (which tables are re-keyed
already) and, per table holding tokens, the key version its rows use and the Delta version
since when.  Without that file version 1 is current (projects from before rotation).
`load_key` returns the current key, and refuses while a rotation is in progress: until
`hortus keys rotate pii --resume` finishes it, some tables hold tokens of the old key and
others of the new one, so nothing may tokenise new rows (never two live keys for one table).

With the lakehouse in a bucket the keyring (no key in it: versions and states only) is
shared through the bucket, ``<lakehouse>/_keys/pii.keyring.json``, so every machine of the
project sees a rotation in progress and the current version; the local file is kept as a
copy (and read when the bucket has none yet).  Which lakehouse: the functions below take
either a project's `Paths` (what `Lakehouse.open(lakehouse="s3://...")` or
``HORTUS_LAKEHOUSE`` resolved: the keyring follows the opened lakehouse's root, whichever
way it was given) or a bare secrets folder (then ``HORTUS_LAKEHOUSE`` says).  The keys themselves
never go to the bucket: each machine that tokenises gets the new version from its
environment or secrets folder.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from hortus.errors import HortusError
from hortus.lakehouse.keys import key_source, read_versioned_key
from hortus.lakehouse.keys import write_demo_key as write_secret

if TYPE_CHECKING:
    from hortus.config import Paths

    Where = Path | Paths  # a project's paths (keyring beside its lakehouse) or a secrets folder

DEMO_KEY = "hortus-DEMO-ONLY-pii-key-do-not-use-for-real-data"
TOKEN_PREFIX = "tok_"
TOKEN_HEX = 24
TOKEN_PATTERN = rf"{TOKEN_PREFIX}[0-9a-f]{{{TOKEN_HEX}}}"
KEY_ENV = "HORTUS_PII_KEY"
KEY_FILE = "pii.key"
KEYRING_FILE = "pii.keyring.json"
SHARED_KEYRING = "_keys/pii.keyring.json"  # in the bucket of an s3:// lakehouse
REF_PREFIX = "era_"  # keyed references of a subject (as ops.erasures keeps them)

# Free-text patterns, applied in this order (IBAN before card before phone).
TEXT_PATTERNS: dict[str, str] = {
    "EMAIL": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "IBAN": r"\b[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{4}){3,7}(?:[ ]?[A-Z0-9]{1,3})?\b",
    "CARD": r"\b(?:[0-9][ -]?){12,18}[0-9]\b",
    "PHONE": r"(?:\+|\b00)[0-9][0-9 ()./-]{6,18}[0-9]",
    "IP": (
        r"\b(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}"
        r"(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\b"
    ),
    "DATE": (
        r"\b(?:19|20)[0-9]{2}-[01][0-9]-[0-3][0-9]\b"
        r"|\b[0-3]?[0-9]/[01]?[0-9]/(?:19|20)[0-9]{2}\b"
    ),
}


class RotationInProgress(HortusError):
    """A PII key rotation was started and not finished: no key may tokenise until it is."""


def secrets_of(where: Where) -> Path:
    """Return the secrets folder of `where` (a project's `Paths`, or the folder itself)."""
    secrets = getattr(where, "secrets", None)
    return Path(secrets if secrets is not None else where)


def keyring_path(where: Where) -> Path:
    """Return the keyring file: current version, rotation in progress, per-table versions."""
    return secrets_of(where) / KEYRING_FILE


def shared_keyring(where: Where | None = None) -> str | None:
    """Return the URI of the keyring shared through the bucket, None on local disk.

    `where` a project's `Paths`: beside its lakehouse when that is an object-store URI
    (however it was given: ``Lakehouse.open(lakehouse=...)`` or HORTUS_LAKEHOUSE); a bare
    secrets folder (or nothing): beside ``HORTUS_LAKEHOUSE`` when that is a URI.
    """
    if where is not None and hasattr(where, "lakehouse_uri"):
        lake = where.lakehouse_uri or ""
    else:
        lake = os.environ.get("HORTUS_LAKEHOUSE", "")
    return f"{lake.rstrip('/')}/{SHARED_KEYRING}" if "://" in lake else None


def _keyring_text(where: Where) -> tuple[str | None, str]:
    """Return (the keyring's JSON text or None, where it was read): the bucket's, else local."""
    shared = shared_keyring(where)
    if shared is not None:
        from hortus.lakehouse._objstore import get_object

        try:
            data: bytes | None = get_object(shared)
        except FileNotFoundError:
            data = None  # no rotation through the bucket yet: the local file, if any
        if data is not None:
            return data.decode("utf-8"), shared
    path = keyring_path(where)
    if not path.exists():
        return None, str(path)
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as exc:
        raise HortusError(f"{path}: not a readable PII keyring ({exc})") from None


def keyring_exists(where: Where) -> bool:
    """Return whether a keyring was ever written (in the bucket or locally)."""
    return _keyring_text(where)[0] is not None


def read_keyring(where: Where) -> dict[str, Any]:
    """Return the PII keyring (version 1 current, nothing rotated, when there is no file)."""
    text, path = _keyring_text(where)
    ring: dict[str, Any] = {"current": 1, "retired": [], "rotation": None, "tables": {},
                            "history": []}  # fmt: skip
    if text is None:
        return ring
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise HortusError(f"{path}: not a readable PII keyring ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("current"), int):
        raise HortusError(f"{path}: field 'current' must be a key version number (1, 2, ...)")
    if data["current"] < 1:
        raise HortusError(f"{path}: field 'current' must be >= 1, got {data['current']}")
    rotation = data.get("rotation")
    if rotation is not None and not (
        isinstance(rotation, dict) and {"id", "from", "to", "tables"} <= set(rotation)
    ):
        raise HortusError(f"{path}: field 'rotation' must be null or name id, from, to, tables")
    return ring | data


def write_keyring(where: Where, ring: dict[str, Any]) -> Path:
    """Write the keyring atomically (a new file renamed over the old one), mode 0600.

    With the lakehouse in a bucket, the bucket's copy too (the one every machine reads).
    """
    path = keyring_path(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(ring, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    shared = shared_keyring(where)
    if shared is not None:  # every machine of the project reads this one
        from hortus.lakehouse._objstore import put_object

        put_object(shared, json.dumps(ring, indent=2, sort_keys=True).encode() + b"\n")
    return path


def current_version(where: Where) -> int:
    """Return the PII key version new tokens are made with."""
    return int(read_keyring(where)["current"])


def key_location(where: Where, version: int) -> str:
    """Return where key `version` is looked for, for messages: 'VAR or file'."""
    env, name = key_source(KEY_ENV, KEY_FILE, version)
    return f"{env} or {secrets_of(where) / name}"


def load_key(where: Where, version: int | None = None) -> bytes:
    """Return the tokenisation key: the current version, or `version`.

    Raises `RotationInProgress` (for the current key) while a rotation is unfinished,
    and a clear error for an unknown or retired version or a missing key.
    """
    ring = read_keyring(where)
    rotation = ring.get("rotation")
    if version is None:
        if rotation:
            done = sum(1 for s in rotation["tables"].values() if s.get("status") == "done")
            raise RotationInProgress(
                f"PII key rotation {rotation['id']} (v{rotation['from']} -> v{rotation['to']}) "
                f"is in progress ({done}/{len(rotation['tables'])} tables re-keyed): some "
                "tables hold tokens of one key, some of the other; finish it with `hortus keys "
                "rotate pii --resume` before anything tokenises (`hortus keys status`)"
            )
        version = int(ring["current"])
    known = max(int(ring["current"]), int(rotation["to"]) if rotation else 0)
    if not 1 <= version <= known:
        raise HortusError(
            f"unknown PII key version v{version}: the keyring {keyring_path(where)} "
            f"knows v1 to v{known} (current v{ring['current']})"
        )
    if version in ring.get("retired", []):
        raise HortusError(
            f"PII key v{version} is retired (current: v{ring['current']}); no table uses it"
        )
    key = read_versioned_key(KEY_ENV, secrets_of(where), KEY_FILE, version)
    if key is None:
        hint = " (`make key` writes the demo-only key)" if version == 1 else ""
        raise HortusError(
            f"no PII tokenisation key v{version}: set {key_location(where, version)}" + hint
        )
    return key


def write_demo_key(secrets_dir: Path) -> Path:
    """Write the labelled demo key to secrets_dir/pii.key unless a key exists."""
    return write_secret(secrets_dir, "pii.key", DEMO_KEY)


def token(value: str, key: bytes) -> str:
    """Return the keyed token of one value.

    Examples
    --------
    >>> token("jane@example.com", b"k")
    'tok_77cff80182a460c0f4360ae6'
    """
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
    return TOKEN_PREFIX + digest[:TOKEN_HEX]


def check_current(where: Where, key: bytes) -> None:
    """Refuse to tokenise with `key` unless it is the current version (after any rotation).

    A process that loaded the key before a rotation (a running `hortus monitor watch`)
    would otherwise add old-key tokens to re-keyed tables.  Projects that never rotated
    (no keyring file) are not checked.
    """
    if not keyring_exists(where):
        return
    current = load_key(where)  # RotationInProgress while one is unfinished
    if key != current:
        ring = read_keyring(where)
        last = (ring.get("history") or [{}])[-1].get("id", "-")
        raise HortusError(
            f"refusing to tokenise with a PII key that is not the current v{ring['current']} "
            f"(last rotation {last}): a process that loaded its key before the rotation must be "
            "restarted; nothing was written"
        )


def readable_keys(where: Where) -> dict[int, bytes]:
    """Return every key version whose key can still be read (retired ones too), newest first.

    To *find* tokens and references an older key made (an erasure searching the Delta
    history a rotation left, a record made before it), never to tokenise: `load_key`.
    """
    ring = read_keyring(where)
    rotation = ring.get("rotation")
    known = max(int(ring["current"]), int(rotation["to"]) if rotation else 0)
    out = {}
    for version in range(known, 0, -1):
        key = read_versioned_key(KEY_ENV, secrets_of(where), KEY_FILE, version)
        if key is not None:
            out[version] = key
    return out


def keyed_ref(value: str, key: bytes) -> str:
    """Return the keyed reference of a value for records (audit, ops.erasures), not a token.

    The same as `hortus.governance.erasure.subject_ref`: whoever holds the key can find the
    records about a subject by computing their reference; nobody else can read it.

    Examples
    --------
    >>> keyed_ref("u000001", b"k")[:4]
    'era_'
    """
    digest = hmac.new(key, b"erasure\x00" + value.encode(), hashlib.sha256).hexdigest()
    return REF_PREFIX + digest[:24]


def tokenize_series(s: pl.Series, key: bytes) -> pl.Series:
    """Replace every value by its token (nulls stay null).

    HMAC is computed once per distinct value (a Python call per distinct value,
    not per row); the mapping is applied with a vectorised replace.
    """
    uniques = s.drop_nulls().unique()
    tokens = pl.Series([token(v, key) for v in uniques.to_list()], dtype=pl.String)
    return s.replace_strict(uniques, tokens, default=None, return_dtype=pl.String)


def tokenize(expr: pl.Expr, key: bytes) -> pl.Expr:
    """Return an expression that tokenises a string column."""
    return expr.map_batches(lambda s: tokenize_series(s, key), return_dtype=pl.String)


def redact_text(expr: pl.Expr, known_values: list[str] | None = None) -> pl.Expr:
    """Redact personal data from free text: known values first, then the patterns.

    Known values (for example every customer's full name, e-mail and phone taken
    from the restricted zone) are replaced by `[PII]` with Aho-Corasick; then
    e-mails, IBANs, card numbers, phones, IPs and dates by `[EMAIL]`, `[IBAN]`...

    Examples
    --------
    >>> pl.select(redact_text(pl.lit("Mail jane@x.org, Jane Doe"), ["Jane Doe"])).item()
    'Mail [EMAIL], [PII]'
    """
    out = expr
    values = sorted({v for v in (known_values or []) if v and len(v) >= 4}, key=len, reverse=True)
    if values:
        out = out.str.replace_many(values, ["[PII]"] * len(values))
    for label, pattern in TEXT_PATTERNS.items():
        out = out.str.replace_all(pattern, f"[{label}]")
    return out
