"""Who and what produced a write: git commit, dirty flag, user."""

from __future__ import annotations

import getpass
import os
import subprocess
from functools import cache
from pathlib import Path


@cache
def git_state(root: Path) -> tuple[str, bool]:
    """Return (commit sha or 'unknown', tree dirty?) of the repository at root."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True
    return sha, bool(status.strip())


def current_user() -> str:
    """Return the acting identity: HORTUS_USER, else the OS user."""
    return os.environ.get("HORTUS_USER") or getpass.getuser()
