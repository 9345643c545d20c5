"""The pipeline on a real two-node Ray cluster equals the in-process run (issue 16).

`ray.cluster_utils.Cluster` starts a head and a worker node (separate raylets and
worker processes, one CPU and a small object store each) on this machine.  The
same small shop is built twice, in-process and with ingest, silver, the feature
logs, the training-set build and batch scoring (the generic scorer and the plant
shop's hook) as Ray tasks: every bronze, silver, quarantine and feature-log
table has the same content hash, the training sets the same frame
hash, the models trained on them the same bytes and the scores the same values.
A worker process killed mid-task is retried (the table equals the in-process
one); with no retries the run fails, leaves no torn table, and a rerun converges.
Slow (a Ray cluster takes about 10 s to start on two shared cores): `make test-slow`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from conftest import SHOP_CONFIG, TEST_KEY, with_policy
from hortus.config import Paths
from hortus.executor.config import ExecutorConfig
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.tables import Lakehouse, frame_hash

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray")

OBJECT_STORE = 200 * 1024 * 1024  # per node: the tests move a few MB


def _start(cluster_class, node: dict, attempts: int = 3):
    """Start the two nodes; again (up to `attempts`) when a raylet misses Ray's fixed 30 s
    startup wait, which a machine shared with other work can exceed."""
    for attempt in range(attempts):
        c = cluster_class()
        try:
            c.add_node(**node)
            c.add_node(num_cpus=1, object_store_memory=node["object_store_memory"])
            c.wait_for_nodes()
            return c
        except Exception as exc:
            c.shutdown()
            if "timed out during startup" not in str(exc) or attempt == attempts - 1:
                raise


@contextlib.contextmanager
def two_node_cluster(env: dict[str, str]):
    """Start a head and one worker node (num_cpus=1 each) with `env` set for their
    processes (and this one); stop them and restore the environment afterwards."""
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="hray", dir="/tmp")  # short: Ray's socket paths
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setenv("RAY_TMPDIR", temp)
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.setenv("OMP_NUM_THREADS", "1")
        node = {"num_cpus": 1, "object_store_memory": OBJECT_STORE, "include_dashboard": False}
        c = None
        try:
            c = _start(Cluster, node)
            yield c
        finally:
            if ray.is_initialized():
                ray.shutdown()
            if c is not None:
                c.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    """A two-node cluster for the module."""
    with two_node_cluster({"HORTUS_USER": "pipeline"}) as c:
        yield c


def _executor(cluster, **over):
    from hortus.executor.ray import RayExecutor

    cfg = ExecutorConfig(kind="ray", address=cluster.address, chunk_rows=4000, slices=3,
                         temp_dir=os.environ["RAY_TMPDIR"])  # fmt: skip
    return RayExecutor(replace(cfg, **over))


def _shop(root: Path) -> Paths:
    """A small simulated landing, plus one events file landed again under a later name.

    The copy's rows repeat keys of an earlier file: duplicates across silver chunks.
    """
    from hortus.domains.plantshop.simulate import SimConfig, simulate

    root.mkdir(parents=True, exist_ok=True)
    paths = Paths.at(root)
    with_policy(root)
    simulate(SimConfig(**SHOP_CONFIG), paths.data)
    events = sorted((paths.data / "events").glob("events-*.jsonl.gz"))
    shutil.copy(events[1], paths.data / "events" / "events-2025-03-31.jsonl.gz")
    return paths


def _lh(paths: Paths) -> Lakehouse:
    return Lakehouse(paths=paths, catalog=Catalog.load(), stage="test", user="pipeline")


def _hashes(lh: Lakehouse) -> dict[str, str]:
    names = [n for layer in ("bronze", "silver", "quarantine") for n in lh.catalog.names(layer)]
    return {n: lh.content_hash(n) for n in names if lh.exists(n)}


def _land(paths: Paths, executor) -> Lakehouse:
    from hortus.lakehouse import silver
    from hortus.lakehouse.ingest import ingest

    lh = _lh(paths)
    ingest(paths.data, lh, executor=executor, flush_rows=6000)
    silver.build(lh, silver.SilverOptions(key=TEST_KEY.encode()), executor=executor)
    return lh


@pytest.fixture(scope="module")
def local_shop(tmp_path_factory):
    """The shop built in-process: bronze, silver, feature logs, training set."""
    from hortus.domains.plantshop.features import FEATURES
    from hortus.domains.plantshop.training import build_spine
    from hortus.executor.base import LocalExecutor
    from hortus.features import store

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HORTUS_PII_KEY", TEST_KEY)
        paths = _shop(tmp_path_factory.mktemp("local"))
        lh = _land(paths, LocalExecutor())
        store.build_offline(lh, FEATURES)
        spine = build_spine(lh, {"label_horizon_days": 7})
        examples = store.training_set(lh, FEATURES, spine, "ts", executor=LocalExecutor())
        return paths, lh, examples


def test_stages_on_a_two_node_cluster_equal_the_local_run(cluster, local_shop, tmp_path,
                                                          monkeypatch):  # fmt: skip
    """Check ingest, silver and the training set on Ray: same content hashes as in-process."""
    from hortus.domains.plantshop.features import FEATURES
    from hortus.domains.plantshop.training import build_spine
    from hortus.features import store

    monkeypatch.setenv("HORTUS_PII_KEY", TEST_KEY)
    ex = _executor(cluster)
    try:
        ex.connect()
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        paths, lh_local, examples_local = local_shop
        lh = _land(_shop(tmp_path), ex)
        local = _hashes(lh_local)
        assert set(local) >= {"bronze.events", "silver.events", "quarantine.rows"}
        assert _hashes(lh) == local
        dup = lh.read("quarantine.rows").filter(pl.col("rule") == "duplicate")
        assert dup["source_file"].str.contains("2025-03-31").sum() > 0  # the cross-chunk copy
        store.build_offline(lh, FEATURES)
        spine = build_spine(lh, {"label_horizon_days": 7})
        examples = store.training_set(lh, FEATURES, spine, "ts", executor=ex)
        assert examples.height == examples_local.height > 1000
        assert examples.columns == examples_local.columns
        assert frame_hash(examples) == frame_hash(examples_local)
        assert examples.equals(examples_local)  # row order kept too
    finally:
        ex.shutdown()


def _model(examples: pl.DataFrame, where: Path):
    from hortus.models.modeling import ModelSpec, save_model, train

    skip = {"label", "position"}
    numeric = [c for c, t in examples.schema.items() if t.is_numeric() and c not in skip]
    spec = ModelSpec(target="label", features=tuple(numeric[:8]), time="ts",
                     params={"max_iter": 20})  # fmt: skip
    result = train(examples, spec, curve_points=1, importance_repeats=1, importance_rows=200)
    digest = save_model(result.pipeline, result.signature, where / "m.skops")
    return result, digest


def test_models_and_sharded_scores_equal(cluster, local_shop, tmp_path):
    """Check the same model bytes from both training sets, and scores per shard = in-process."""
    from hortus.executor import parallel
    from hortus.executor.plan import resolve_read
    from hortus.features import store
    from hortus.models.modeling import score_frame

    paths, lh, examples_local = local_shop
    ex = _executor(cluster, chunk_rows=1500)
    try:
        from hortus.domains.plantshop.features import FEATURES

        examples_ray = store.training_set(lh, FEATURES, examples_local.select(
            "event_id", "rec_id", "user_id", "plant_id", "ts", "position", "label"), "ts",
            executor=ex)  # fmt: skip
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        result, digest_local = _model(examples_local, tmp_path / "a")
        _, digest_ray = _model(examples_ray, tmp_path / "b")
        assert digest_local == digest_ray
        assert (tmp_path / "a/m.skops").read_bytes() == (tmp_path / "b/m.skops").read_bytes()
        # batch scoring per entity shard (hash of the keys), on the feature logs' table
        lh.write("gold.training_set", examples_local.select(
            [pl.col(c).cast(t) for c, t in lh.catalog.get("gold.training_set").schema.items()]),
            mode="overwrite")  # fmt: skip
        plan = resolve_read(lh, "gold.training_set")
        keys = ["event_id", "user_id", "plant_id"]
        spec = result.spec
        sharded = parallel.score_sharded(plan, keys, result.pipeline, result.signature, spec, ex)
        whole = score_frame(result.pipeline, result.signature, lh.read("gold.training_set"), spec)
        assert sharded.height == whole.height > 1000
        assert frame_hash(sharded) == frame_hash(whole)
    finally:
        ex.shutdown()


def test_feature_logs_and_the_shops_scoring_hook_per_shard_equal_the_local_run(
    cluster, local_shop, tmp_path
):
    """Check the feature logs per entity shard on Ray (one commit a table, the in-process
    hashes) and the plant shop's recommend per user shard on them (the same top-k)."""
    from datetime import timedelta

    from hortus.domains.plantshop import scoring
    from hortus.domains.plantshop.features import FEATURES
    from hortus.executor.base import LocalExecutor
    from hortus.features import store
    from hortus.models.modeling import ModelSpec, train

    paths, lh_local, examples = local_shop
    shutil.copytree(paths.root, tmp_path / "shop")
    lh = _lh(Paths.at(tmp_path / "shop"))
    before = {g.table: lh.version(g.table) for g in FEATURES.groups}
    ex = _executor(cluster, chunk_rows=4000)
    try:
        out = store.build_offline(lh, FEATURES, executor=ex)
        for g in FEATURES.groups:
            assert out[g.table]["version"] == lh.version(g.table) == before[g.table] + 1
            assert lh.content_hash(g.table) == lh_local.content_hash(g.table), g.table
        windows = [c for c in examples.columns if c.endswith(("_7d", "_30d"))]  # never null
        spec = ModelSpec(target="label", features=tuple(windows[:8]), time="ts",
                         params={"max_iter": 10})  # fmt: skip
        result = train(examples, spec, curve_points=1, importance_repeats=1, importance_rows=100)
        kw = {"at": examples["ts"].max() - timedelta(days=2), "top_k": 5,
              "model_name": "recommender", "model_version": 1}  # fmt: skip
        model = (result.pipeline, result.signature, result.spec)
        recs, log = scoring.recommend(lh_local, *model, **kw, executor=LocalExecutor())
        recs_ray, log_ray = scoring.recommend(lh, *model, **kw, executor=ex)  # Ray-built logs
        assert recs.height > 100 and recs_ray.equals(recs)
        assert log_ray.drop("logged_at").equals(log.drop("logged_at"))
    finally:
        ex.shutdown()


def _die_once(fn, marker: str, item, *shared):
    """Run fn, except that the first attempt anywhere kills its worker process mid-task."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return fn(item, *shared)
    os.close(fd)
    os._exit(1)  # the worker dies as if killed: no exception, no result


class _Dying:
    """A Ray executor whose first task dies (the kill is env-free: a marker file)."""

    def __init__(self, inner, marker: Path) -> None:
        self.inner, self.marker = inner, str(marker)
        self.kind, self.config = inner.kind, inner.config

    def map(self, fn, items, **kw):
        return self.inner.map(functools.partial(_die_once, fn, self.marker), items, **kw)

    def distributes(self, rows: int) -> bool:
        return self.inner.distributes(rows)

    def shutdown(self) -> None:
        self.inner.shutdown()


@pytest.fixture
def by_value():
    """Ship this module's functions to the workers by value (they cannot import tests/)."""
    import sys

    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    yield
    ray.cloudpickle.unregister_pickle_by_value(module)


def test_a_killed_worker_is_retried_and_the_table_equals_the_local_one(
    cluster, local_shop, tmp_path, monkeypatch, by_value
):
    """Check that a task whose worker process dies is rerun (max_retries) to the same tables."""
    monkeypatch.setenv("HORTUS_PII_KEY", TEST_KEY)
    marker = tmp_path / "died"
    ex = _Dying(_executor(cluster, max_retries=2), marker)
    try:
        lh = _land(_shop(tmp_path / "shop"), ex)
        assert marker.exists()  # a worker did die mid-task
        assert _hashes(lh) == _hashes(local_shop[1])
    finally:
        ex.shutdown()


def test_without_retries_the_run_fails_untorn_and_a_rerun_converges(
    cluster, local_shop, tmp_path, monkeypatch, by_value
):
    """Check that a dead task with no retry fails the run, leaves whole batches only, and
    that the next run reaches the in-process tables."""
    from hortus.lakehouse import silver
    from hortus.lakehouse.ingest import ingest

    monkeypatch.setenv("HORTUS_PII_KEY", TEST_KEY)
    paths = _shop(tmp_path / "shop")
    lh = _lh(paths)
    healthy = _executor(cluster, max_retries=0)
    try:
        ingest(paths.data, lh, executor=healthy, flush_rows=6000)
        dying = _Dying(healthy, tmp_path / "died")
        with pytest.raises(ray.exceptions.RayError):
            silver.build(lh, silver.SilverOptions(key=TEST_KEY.encode()), executor=dying)
        # nothing half-written: silver holds whole bronze batches or nothing
        for contract in lh.catalog.landed():
            assert silver.partial_batches(lh, contract).height == 0
        silver.build(lh, silver.SilverOptions(key=TEST_KEY.encode()), executor=healthy)
        assert _hashes(lh) == _hashes(local_shop[1])
        assert all(c["reconciles"] for c in silver.reconcile(lh))
    finally:
        healthy.shutdown()


def test_a_local_instance_starts_with_the_projects_settings(monkeypatch):
    """Check address None: a local Ray of num_cpus and object store, files in temp_dir."""
    from hortus.executor.ray import RayExecutor

    if ray.is_initialized():
        ray.shutdown()
    temp = Path(tempfile.mkdtemp(prefix="hrl", dir="/tmp")) / ".hortus/ray"
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    ex = RayExecutor(ExecutorConfig(kind="ray", num_cpus=1, object_store_mb=100,
                                    temp_dir=str(temp)))  # fmt: skip
    try:
        ex.connect()
        resources = ray.cluster_resources()
        assert resources["CPU"] == 1 and len(ray.nodes()) == 1
        assert round(resources["object_store_memory"] / 2**20) == 100
        assert list(ex.map(abs, [-3, 2, -1])) == [3, 2, 1]
        assert any(temp.glob("ray/session_*/logs"))  # Ray's files under the project
    finally:
        ex.shutdown()
        shutil.rmtree(temp.parent.parent, ignore_errors=True)
    assert not ray.is_initialized()
