"""Keys from the environment or the git-ignored secrets folder, and labelled demo keys.

One rule for every key Hortus holds (the PII tokenisation key, the audit chain key):
the environment variable wins, else `<secrets_dir>/<file>`; a missing or empty key is
`None` and the caller raises its own clear error.  Demo keys are written only when no
key file exists, with mode 0600.
"""

from __future__ import annotations

import os
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
