"""Smoke test of benchmarks/bench_serve.py on a tiny shop (slow: it starts three servers).

No timings are asserted (the machine is shared); the script exits non-zero when hortus
answers an error or its rankings and scores differ from the floors'.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_bench_serve_runs_and_agrees_with_its_floor(tmp_path):
    """Check that the load benchmark runs end to end and hortus equals the floor."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_serve.py"), "--users", "300", "--seconds", "1",
         "--rate", "20", "--workdir", str(tmp_path / "work")],
        cwd=BENCH, env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hortus / floor:" in done.stdout and "hortus / floor-compiled:" in done.stdout
    assert "same rankings and scores" in done.stdout and "client CPU" in done.stdout
