"""The tests judge this project's built outputs, acting as the pipeline service user.

`make test` runs `dvc repro` first, so silver, the registry and the reports exist.
They read the lakehouse as `pipeline` (access_policy.yaml), whose reads are unmasked
and audited like any other; the keys come from `make key` (.hortus/secrets/) or the
environment (HORTUS_PII_KEY, HORTUS_AUDIT_KEY).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _as_pipeline():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HORTUS_USER", "pipeline")
        mp.setenv("HORTUS_ROOT", str(ROOT))
        mp.delenv("HORTUS_LAKEHOUSE", raising=False)
        mp.delenv("HORTUS_CONTRACTS", raising=False)
        yield


@pytest.fixture(scope="session")
def lakehouse(_as_pipeline):
    from hortus.lakehouse.tables import Lakehouse

    if not (ROOT / "reports" / "silver.json").exists():
        pytest.fail("the pipeline has not run here: run `make run` (or `dvc repro`) first")
    return Lakehouse.open(ROOT, stage="test")


def pytest_report_header(config):
    return f"project: {ROOT} (HORTUS_USER=pipeline; was {os.environ.get('HORTUS_USER')})"
