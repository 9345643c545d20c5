"""Drift, bootstrap intervals and permutation importance on a real two-node Ray cluster.

The cluster is tests/test_executor_ray.py's fixture (`ray.cluster_utils.Cluster`: a
head and a worker node, one CPU each).  With the thresholds at 0 and small chunks
the work goes to Ray tasks (recorded), and every result equals the in-process one
bit for bit: the drift report, the segment intervals and the champion comparison's
paired intervals (each replicate from its own seed), the permutation importances (the
model shipped through the object store), and `hortus drift --executor ray --address`.
Slow (the cluster takes about 10 s to start on two shared cores): `make test-slow`.
"""

from __future__ import annotations

import polars as pl
import pytest

from hortus.checks._importance import importance_check
from hortus.checks._segments import segment_metrics_ci
from hortus.executor import analytics
from hortus.monitoring.drift import Profile, compare
from test_executor_analytics import (  # noqa: F401 (fixtures)
    _drift_files,
    _frames,
    _scored,
    _versus,
    fitted,
    rivals,
)
from test_executor_ray import _executor, cluster  # noqa: F401 (the two-node fixture)

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray")

LOW = {"drift_min_rows": 0, "bootstrap_min_rows": 0, "importance_min_rows": 0}


class Counting:
    """The Ray executor, counting the tasks it submits."""

    def __init__(self, inner) -> None:
        self.inner, self.kind, self.config = inner, inner.kind, inner.config
        self.tasks: list[int] = []

    def map(self, fn, items, **kw):
        items = list(items)
        self.tasks.append(len(items))
        return self.inner.map(fn, items, **kw)


@pytest.fixture(scope="module")
def on_ray(cluster):  # noqa: F811
    """A Ray executor on the two-node cluster with every analytics threshold at 0."""
    ex = _executor(cluster, chunk_rows=5_000, **LOW)
    ex.connect()
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    yield ex
    ex.shutdown()


@pytest.mark.parametrize("blas_threads", [1, 2])
def test_drift_on_two_nodes_equals_the_local_report(on_ray, blas_threads):
    """Check profile and compare (overall, per segment, per window) as Ray tasks: same report,
    also when the driver's BLAS has more threads than a worker's (OpenBLAS sums a dot
    product per thread: the tasks take the driver's thread counts)."""
    from threadpoolctl import threadpool_limits

    ref, cur = _frames(240_000, seed=2)
    kw = {"segment": "seg", "time": "ts", "window": "12h"}
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        local = compare(ref, cur, **kw)
        stored = Profile.from_frame(ref.drop("ts"), exact=True)
    ex = Counting(on_ray)
    with analytics.use(ex), threadpool_limits(limits=blas_threads, user_api="blas"):
        remote = compare(ref, cur, **kw)
        remote_stored = Profile.from_frame(ref.drop("ts"), exact=True)
    assert len(ex.tasks) >= 3 and sum(ex.tasks) > 10
    assert remote.to_dict() == local.to_dict()
    assert remote.to_frame().equals(local.to_frame())
    assert remote_stored.to_dict() == stored.to_dict()
    assert len(remote.results) > 20 and remote.results[0].value > 0


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss"])
def test_bootstrap_on_two_nodes_equals_the_local_intervals(on_ray, metric):
    """Check segment intervals as Ray tasks (per value; rows in replicate batches): same table."""
    y, s, df, spec = _scored(20_000, seed=9)
    kw = {"scores": s, "n_boot": 80, "metric": metric, "seed": 3, "max_gap": 1.0}
    local = segment_metrics_ci(None, df, spec, **kw)
    ex = Counting(on_ray)
    with analytics.use(ex):
        remote = segment_metrics_ci(None, df, spec, **kw)
    assert ex.tasks and ex.tasks[0] >= local.table.height
    assert remote.table.equals(local.table)
    assert remote.stats == local.stats
    assert local.table["ci_low"].null_count() == 0


def test_importance_on_two_nodes_equals_the_local_numbers(on_ray, fitted):  # noqa: F811
    """Check one Ray task per feature (model through the object store): scikit-learn's numbers."""
    model, df, spec = fitted
    local = importance_check(model, df, spec, n_repeats=3, max_rows=2_000, seed=1)
    ex = Counting(on_ray)
    with analytics.use(ex):
        remote = importance_check(model, df, spec, n_repeats=3, max_rows=2_000, seed=1)
    assert ex.tasks == [len(spec.features)]
    assert remote.table.equals(local.table)
    assert remote.table["importance_mean"].is_finite().all()
    assert remote.table.filter(pl.col("importance_mean") > 0).height >= 2


@pytest.mark.parametrize("task", ["binary", "ranking"])
def test_champion_comparison_on_two_nodes_equals_the_local_one(on_ray, rivals, task):  # noqa: F811
    """Check the gate's paired bootstrap as Ray tasks (replicate batches): same table."""
    local = _versus(rivals[task], n_boot=60, seed=2)
    ex = Counting(on_ray)
    with analytics.use(ex):
        remote = _versus(rivals[task], n_boot=60, seed=2)
    assert ex.tasks and ex.tasks[0] >= 3  # overall and two regions, or replicate batches
    assert remote.table.equals(local.table)
    assert (remote.passed, remote.detail) == (local.passed, local.detail)
    assert local.table["ci_low"][0] < local.table["ci_high"][0]


def test_hortus_drift_on_two_nodes_equals_the_local_command(on_ray, cluster, tmp_path, monkeypatch):  # noqa: F811
    """Check `hortus drift --executor ray --address <cluster>` on two files: per-column Ray
    tasks from drift_min_rows, and the JSON report of the in-process command."""
    import json

    from hortus.cli.core import main

    files = _drift_files(tmp_path, 60_000)
    (tmp_path / "params.yaml").write_text("executor:\n  drift_min_rows: 0\n  chunk_rows: 5000\n")
    kinds: list[tuple[str, int]] = []
    real = analytics.run

    def counting(executor, fn, items, shared=()):
        items = list(items)
        kinds.append((executor.kind, len(items)))
        return real(executor, fn, items, shared)

    monkeypatch.setattr(analytics, "run", counting)
    root = ["--root", str(tmp_path), "drift", *files]
    assert main([*root, "--executor", "local", "--json", str(tmp_path / "l.json")]) == 1
    assert kinds == []
    remote = ["--executor", "ray", "--address", cluster.address, "--json", str(tmp_path / "r.json")]
    assert main([*root, *remote]) == 1
    assert kinds and {k for k, _ in kinds} == {"ray"} and sum(n for _, n in kinds) > 3
    local, ray_report = (json.loads((tmp_path / f).read_text()) for f in ("l.json", "r.json"))
    assert ray_report == local and local["drifted"]
