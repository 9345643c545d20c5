"""Shared set-up of the benchmark scripts (imported as `_common` from benchmarks/)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def as_pipeline(root: Path) -> None:
    """Run as the pipeline service user under the repository's access policy (audited)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "access_policy.yaml", root / "access_policy.yaml")
    os.environ.setdefault("HORTUS_USER", "pipeline")
    os.environ.setdefault("HORTUS_AUDIT_KEY", "bench-only-audit-key")
    os.environ.setdefault("HORTUS_PII_KEY", "bench-only-pii-key")
