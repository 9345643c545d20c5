"""Bearer tokens of the online service: who calls, until when, never stored in the clear.

A token maps to one user of `access_policy.yaml` (a service account such as
`shop-web`, or a person) and carries an expiry.  Tokens come from two places, never
from a command line (where every local user would see them in `ps`):

- the environment variable ``HORTUS_SERVE_TOKENS``: ``user=token@expiry`` entries
  separated by commas or whitespace, e.g.
  ``HORTUS_SERVE_TOKENS="shop-web=Zx9...@2027-01-31T00:00:00Z"``; the expiry is ISO 8601
  (a date means its midnight UTC).  The token is hashed when read and the clear text is
  not kept;
- the git-ignored file ``.hortus/secrets/serve_tokens.yaml`` (mode 0600), which holds
  only the SHA-256 of each token::

      version: 1
      tokens:
        - user: shop-web                  # a user of access_policy.yaml
          sha256: 3f1c...                 # sha256 hex of the token's UTF-8 bytes
          expires: 2027-01-31T00:00:00Z   # ISO 8601, UTC
          note: issued by mia for the web app   # optional

  `hortus serve token --user USER [--days N]` draws a random token, appends its hash
  to that file and prints the token once.

A request presents ``Authorization: Bearer <token>``; `TokenStore.identify` hashes it
and looks the hash up.  No token: 401; a token it does not know or whose expiry has
passed: 401 (the message says which, never echoing the token).  The user's rights are
decided by the access policy afterwards (403 without the `predict` grant).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import yaml

from hortus.errors import HortusError

TOKENS_ENV = "HORTUS_SERVE_TOKENS"
TOKENS_FILE = "serve_tokens.yaml"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class AuthError(HortusError):
    """A request without a valid bearer token (HTTP 401)."""


def token_hash(token: str) -> str:
    """Return the SHA-256 hex of a token (what the token file stores).

    Examples
    --------
    >>> token_hash("abc")[:12]
    'ba7816bf8f01'
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _expiry(value: object, where: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        text = str(value).strip().replace("Z", "+00:00")
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise HortusError(f"{where}: expiry {value!r} is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TokenEntry:
    """One known token: its hash, its user and its expiry."""

    user: str
    sha256: str
    expires: datetime
    source: str


class TokenStore:
    """The known tokens (hashes only), from the environment and the token file."""

    def __init__(self, entries: list[TokenEntry]):
        self._by_hash = {e.sha256: e for e in entries}

    def __len__(self) -> int:
        return len(self._by_hash)

    @classmethod
    def load(cls, secrets_dir: Path, environ: dict | None = None) -> TokenStore:
        """Read the tokens of ``HORTUS_SERVE_TOKENS`` and of the token file (if any)."""
        env = os.environ if environ is None else environ
        entries = parse_env(env.get(TOKENS_ENV, ""))
        path = Path(secrets_dir) / TOKENS_FILE
        if path.is_file():
            entries += read_file(path)
        return cls(entries)

    def identify(self, header: str | None, now: datetime | None = None) -> TokenEntry:
        """Return the entry of an ``Authorization`` header's bearer token, else AuthError."""
        if not header:
            raise AuthError("missing bearer token: send 'Authorization: Bearer <token>'")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("malformed Authorization header: expected 'Bearer <token>'")
        entry = self._by_hash.get(token_hash(token))
        if entry is None:
            raise AuthError("unknown bearer token")
        now = now or datetime.now(UTC)
        if entry.expires <= now:
            raise AuthError(f"bearer token of {entry.user} expired at {entry.expires.isoformat()}")
        return entry


def parse_env(value: str) -> list[TokenEntry]:
    """Parse ``user=token@expiry`` entries (comma or whitespace separated).

    Examples
    --------
    >>> [e.user for e in parse_env("shop-web=abc@2030-01-01, mia=xyz@2030-01-01T12:00:00Z")]
    ['shop-web', 'mia']
    """
    out = []
    for item in re.split(r"[,\s]+", value.strip()):
        if not item:
            continue
        user, sep, rest = item.partition("=")
        token, at, expires = rest.rpartition("@")
        if not sep or not at or not user or not token:
            raise HortusError(f"{TOKENS_ENV}: entry for {user or '?'!r} is not user=token@expiry")
        out.append(TokenEntry(user, token_hash(token), _expiry(expires, TOKENS_ENV), "env"))
    return out


def read_file(path: Path) -> list[TokenEntry]:
    """Read a token file (see the module docstring); refuse clear-text or malformed entries."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise HortusError(f"{path}: cannot read the serve token file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("version", 1) != 1:
        raise HortusError(f"{path}: expected a mapping with `version: 1` and `tokens`")
    out = []
    for i, item in enumerate(doc.get("tokens") or []):
        where = f"{path}: tokens[{i}]"
        if not isinstance(item, dict) or not {"user", "sha256", "expires"} <= set(item):
            raise HortusError(f"{where}: needs user, sha256 and expires")
        if "token" in item:
            raise HortusError(f"{where}: holds a clear-text token; store its sha256 only")
        digest = str(item["sha256"]).lower()
        if not _HEX64.fullmatch(digest):
            raise HortusError(f"{where}: sha256 must be 64 hex digits")
        out.append(TokenEntry(str(item["user"]), digest, _expiry(item["expires"], where), "file"))
    return out


def issue(secrets_dir: Path, user: str, *, days: float = 30.0, note: str = "") -> tuple[str, Path]:
    """Draw a new token for `user`, append its hash to the token file; return (token, path)."""
    token = secrets.token_urlsafe(32)
    path = Path(secrets_dir) / TOKENS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = []
    if path.is_file():
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        entries = list(doc.get("tokens") or [])
    expires = (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)
    entry = {"user": user, "sha256": token_hash(token),
             "expires": expires.isoformat().replace("+00:00", "Z")}  # fmt: skip
    if note:
        entry["note"] = note
    entries.append(entry)
    text = "# hortus serve tokens: sha256 of each token, never the token (hortus.serving._tokens)\n"
    text += yaml.safe_dump({"version": 1, "tokens": entries}, sort_keys=False)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    tmp.replace(path)
    return token, path
