"""Smoke test: the floor benchmarks run on a tiny size and agree with their floors.

No timings are asserted (the machine is shared); each script exits non-zero when hortus
and its floor disagree, so a passing run means the values agree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(
    "script, args",
    [
        ("bench_bootstrap.py", ["--rows", "5000", "--segments", "4", "--n-boot", "20"]),
        ("bench_champion.py", ["--rows", "5000", "--n-boot", "20"]),
        ("bench_contracts.py", ["--rows", "5000", "--repeat", "1"]),
        ("bench_drift_floor.py", ["--rows", "3000", "--cols", "6"]),
    ],
)
def test_benchmark_runs_on_a_tiny_size(script, args):
    """Check that the script runs, prints its floor and exits 0 (hortus equals the floor)."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=BENCH,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "floor" in done.stdout and "load average" in done.stdout
