"""The model's bytes depend on the OpenMP thread count of the fit; ModelSpec.threads pins it.

A multi-threaded HistGradientBoosting fit reduces its gradient sums in an order that
depends on the number of threads, so the same spec trained on a 1-core and on a 2-core
machine (or in a Ray worker given 1 CPU) gave different model bytes.  Each case trains
in its own process with a different ``OMP_NUM_THREADS``, as different machines would.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hortus.errors import HortusError
from hortus.models.modeling import ModelSpec

SCRIPT = """
import hashlib, sys
import numpy as np, polars as pl, skops.io as sio
from hortus.models._artifacts import _normalise_skops
from hortus.models._train import train
from hortus.models.modeling import ModelSpec
rng = np.random.default_rng(0)
n = 6_000
df = pl.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                   "c": rng.choice(["x", "y", "z"], n), "y": (rng.random(n) < 0.3).astype(int)})
threads = None if sys.argv[1] == "none" else int(sys.argv[1])
spec = ModelSpec(target="y", features=("a", "b", "c"), categorical=("c",), seed=0,
                 threads=threads, params={"max_iter": 15})
result = train(df, spec, importance_rows=100, importance_repeats=1)
print(hashlib.sha256(_normalise_skops(sio.dumps(result.pipeline))).hexdigest())
"""


def _model_hash(env_threads: int, spec_threads: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": str(env_threads)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, spec_threads],
        env=env, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return out.stdout.strip()


def test_a_pinned_thread_count_gives_the_same_bytes_whatever_the_machine_offers():
    unpinned = {_model_hash(n, "none") for n in (1, 2)}
    # the data is one where the thread count shows in the bytes ...
    assert len(unpinned) == 2
    # ... and with the spec's threads pinned, both processes give the same model
    assert _model_hash(1, "2") == _model_hash(2, "2")


def test_spec_threads_is_checked_and_read_from_params():
    with pytest.raises(HortusError, match="threads must be an integer >= 1"):
        ModelSpec(target="y", features=("a",), threads=0)
    assert ModelSpec(target="y", features=("a",), threads=3).to_dict()["threads"] == 3
