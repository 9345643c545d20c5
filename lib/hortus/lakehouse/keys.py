"""Keys from the environment or the git-ignored secrets folder, and labelled demo keys.

One rule for every key Hortus holds (the PII tokenisation key, the audit chain key):
the environment variable wins, else `<secrets_dir>/<file>`; a missing or empty key is
`None` and the caller raises its own clear error.  Demo keys are written only when no
key file exists, with mode 0600.

Versioned keys (key rotation): version 1 is the key above (``<ENV>`` or ``<file>``, as
before versions existed); version N >= 2 is ``<ENV>_V<N>`` or ``<stem>.v<N><suffix>`` in
the same folder (``HORTUS_PII_KEY_V2``, ``pii.v2.key``): `key_source`, `read_versioned_key`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def read_key(env_var: str, secrets_dir: Path, file_name: str) -> bytes | None:
    """Return the key from `env_var`, else from secrets_dir/file_name, else None."""
    if env := os.environ.get(env_var):
        return env.encode()
    path = Path(secrets_dir) / file_name
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return key.encode()
    return None


def write_demo_key(secrets_dir: Path, file_name: str, value: str) -> Path:
    """Write a labelled demo key to secrets_dir/file_name unless a key file exists."""
    path = Path(secrets_dir) / file_name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n", encoding="utf-8")
        path.chmod(0o600)
    return path


def key_source(env_var: str, file_name: str, version: int) -> tuple[str, str]:
    """Return (environment variable, file name) of a key version (1: the unversioned ones).

    Examples
    --------
    >>> key_source("HORTUS_PII_KEY", "pii.key", 1)
    ('HORTUS_PII_KEY', 'pii.key')
    >>> key_source("HORTUS_PII_KEY", "pii.key", 3)
    ('HORTUS_PII_KEY_V3', 'pii.v3.key')
    """
    if version < 1:
        raise ValueError(f"key versions start at 1, got {version}")
    if version == 1:
        return env_var, file_name
    stem, dot, suffix = file_name.rpartition(".")
    name = f"{stem}.v{version}.{suffix}" if dot else f"{file_name}.v{version}"
    return f"{env_var}_V{version}", name


def read_versioned_key(
    env_var: str, secrets_dir: Path, file_name: str, version: int
) -> bytes | None:
    """Return key `version` from its variable or file (`key_source`), else None."""
    env, name = key_source(env_var, file_name, version)
    return read_key(env, secrets_dir, name)


def write_new_key(secrets_dir: Path, file_name: str) -> Path:
    """Write a fresh random key (256 bits, hex) to secrets_dir/file_name, mode 0600.

    Refuses to overwrite an existing file (a key in use must never be replaced).
    """
    path = Path(secrets_dir) / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path
