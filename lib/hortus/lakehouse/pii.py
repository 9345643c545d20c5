"""Personal data: keyed tokens for direct identifiers, redaction of free text.

Direct identifiers (name, e-mail, phone, address, IP) are replaced in silver by
`tok_` + the first 24 hex digits of HMAC-SHA256(key, value).  The same value gives
the same token in every table, so tokens still join; without the key they cannot
be reversed or recomputed from a guessed value.

The key comes from the environment (`HORTUS_PII_KEY`) or from the git-ignored file
`.hortus/secrets/pii.key`.  `make run` writes the fixed demo key into that file
when none exists, so the demo gives the same tokens on every machine; the key is
labelled DEMO and must be replaced for real data.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import polars as pl

from hortus.errors import HortusError
from hortus.lakehouse.keys import read_key
from hortus.lakehouse.keys import write_demo_key as write_secret

DEMO_KEY = "hortus-DEMO-ONLY-pii-key-do-not-use-for-real-data"
TOKEN_PREFIX = "tok_"
TOKEN_HEX = 24

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


def load_key(secrets_dir: Path) -> bytes:
    """Return the tokenisation key from HORTUS_PII_KEY or secrets_dir/pii.key."""
    key = read_key("HORTUS_PII_KEY", secrets_dir, "pii.key")
    if key is None:
        raise HortusError(
            f"no PII tokenisation key: set HORTUS_PII_KEY or write one to "
            f"{Path(secrets_dir) / 'pii.key'} (`make key` writes the demo-only key)"
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
