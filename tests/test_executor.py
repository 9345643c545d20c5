"""The executor layer, fast: in-process semantics, how a project chooses one, read plans.

The Ray cluster tests (results equal to these, killed workers) are in
tests/test_executor_ray.py, marked slow.
"""

from __future__ import annotations

import threading
import time

import polars as pl
import pytest

from conftest import TEST_KEY, USERS_HEADER, event, user_row, write_jsonl
from hortus.errors import HortusError
from hortus.executor.base import Executor, LocalExecutor, executor_for, load_config
from hortus.executor.config import ExecutorConfig
from hortus.executor.plan import resolve_read
from hortus.lakehouse import silver
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.ingest import ingest
from hortus.lakehouse.tables import Lakehouse
from hortus.params_schema import section_problems


def _twice(x: int, plus: int = 0) -> int:
    return 2 * x + plus


def test_local_map_keeps_order_passes_shared_and_reads_ahead_at_most_ahead():
    """Check map's order and shared arguments, and that `ahead` bounds the items started."""
    ex = LocalExecutor()
    assert isinstance(ex, Executor) and ex.kind == "local" and not ex.distributes(10**9)
    assert list(ex.map(_twice, range(5), shared=(1,))) == [1, 3, 5, 7, 9]
    assert sorted(ex.map_unordered(_twice, [3, 4])) == [(0, 6), (1, 8)]
    started, lock = [], threading.Lock()

    def slow(i: int) -> int:
        with lock:
            started.append(i)
        time.sleep(0.01 * (5 - i % 5))  # later items finish first: order must still hold
        return i

    out = []
    for r in ex.map(slow, range(10), ahead=2):
        assert len(started) <= len(out) + 3  # the one yielded plus two ahead
        out.append(r)
    assert out == list(range(10))


def test_local_map_raises_the_failing_item_and_runs_nothing_after_it():
    """Check that an item's error surfaces in order (settle is implied in-process)."""
    seen = []

    def fail_on_2(i: int) -> int:
        seen.append(i)
        if i == 2:
            raise ValueError("item 2")
        return i

    it = LocalExecutor().map(fail_on_2, range(5), settle=True)
    assert [next(it), next(it)] == [0, 1]
    with pytest.raises(ValueError, match="item 2"):
        next(it)
    assert seen == [0, 1, 2]


def test_the_default_is_local_and_params_and_env_choose_ray(tmp_path):
    """Check the choice: no section = local; params.yaml executor; env overrides both."""
    assert executor_for(tmp_path, env={}).kind == "local"
    (tmp_path / "params.yaml").write_text(
        "executor:\n  kind: ray\n  address: auto\n  num_cpus: 1\n  object_store_mb: 512\n"
    )
    cfg = load_config(tmp_path).with_env({})
    assert (cfg.kind, cfg.address, cfg.object_store_mb) == ("ray", "auto", 512)
    ray_ex = executor_for(tmp_path, env={})
    assert ray_ex.kind == "ray" and ray_ex is executor_for(tmp_path, env={})  # one per config
    assert ray_ex.config.temp_dir == str(tmp_path / ".hortus/ray")  # under the project
    assert ray_ex.config.num_cpus == 1 and ray_ex._ray is None  # Ray not started by choosing
    env = {"HORTUS_EXECUTOR": "local"}
    assert executor_for(tmp_path, env=env).kind == "local"
    env = {"HORTUS_EXECUTOR": "ray", "HORTUS_RAY_ADDRESS": "ray://head:10001"}
    assert load_config(tmp_path).with_env(env).address == "ray://head:10001"
    with pytest.raises(HortusError, match="HORTUS_EXECUTOR: expected local or ray, got 'spark'"):
        executor_for(tmp_path, env={"HORTUS_EXECUTOR": "spark"})


def test_bad_executor_params_name_the_key(tmp_path):
    """Check that a wrong executor section is refused naming the key and what it expects."""
    assert section_problems("executor", {"kind": "spark"}) == [
        "params.yaml: executor.kind: expected one of local, ray, got 'spark'"
    ]
    assert (
        "executor.object_store_mb: expected int >= 75"
        in section_problems("executor", {"object_store_mb": 10})[0]
    )
    (tmp_path / "params.yaml").write_text("executor:\n  num_cpu: 1\n")
    with pytest.raises(
        HortusError, match=r"params.yaml: executor\.num_cpu: unknown key; valid: kind"
    ):
        load_config(tmp_path)
    with pytest.raises(HortusError, match="unknown key"):
        ExecutorConfig.from_mapping({"workers": 2})


def test_a_resolved_read_is_audited_and_reads_what_the_user_may_see(project, lakehouse):
    """Check that a worker's read plan applies the user's row filter and masks, at a version."""
    (project.data / "users").mkdir()
    lines = [user_row(1, region="DACH"), user_row(2, region="UKI"), user_row(3, region="FRANCE")]
    (project.data / "users/users-2025-03-01.csv").write_text(
        USERS_HEADER + "\n" + "\n".join(lines) + "\n"
    )
    ingest(project.data, lakehouse)
    silver.build(lakehouse, silver.SilverOptions(key=TEST_KEY.encode()))
    elena = Lakehouse(paths=project, catalog=Catalog.load(), stage="test", user="elena")
    plan = resolve_read(elena, "silver.users")
    assert plan.version == elena.reads["silver.users"] == lakehouse.version("silver.users")
    assert elena.flush_audit() == 1  # the driver's read record (workers write none)
    seen = elena.read("silver.users").sort("user_id")
    got = plan.read().sort("user_id")
    assert got.equals(seen) and got.height == 2  # EU regions only, masked as for elena
    assert got.columns == lakehouse.read("silver.users").columns
    assert plan.sliced(pl.col("region") == "DACH").read().height == 1
    # a user without the grant is refused (audited) before any plan exists
    from hortus.governance.access import AccessDenied

    shop_web = Lakehouse(paths=project, catalog=Catalog.load(), stage="test", user="shop-web")
    with pytest.raises(AccessDenied):
        resolve_read(shop_web, "silver.users")


def test_ingest_and_silver_take_the_executor_they_are_given(project, lakehouse):
    """Check that the stages run their work through the executor passed to them."""
    write_jsonl(project.data / "events/events-2025-03-01.jsonl.gz", [event(i) for i in range(4)])
    calls = []

    class Counting(LocalExecutor):
        def map(self, fn, items, **kw):
            items = list(items)
            calls.append((fn.__name__, len(items)))
            return super().map(fn, items, **kw)

    report = ingest(project.data, lakehouse, executor=Counting())
    assert report.rows_by_table() == {"silver.events": 4}
    assert calls == [("_read_file", 1)]
    silver.build(lakehouse, silver.SilverOptions(key=TEST_KEY.encode()), executor=Counting())
    assert lakehouse.read("silver.events").height == 4


def test_stage_commands_take_executor_and_address(project, monkeypatch):
    """Check that --executor / --address reach the environment executor_for reads."""
    import os
    import shutil

    from conftest import POLICY
    from hortus.cli.core import build_parser, main

    shutil.copy(POLICY.parent / "params.yaml", project.root / "params.yaml")
    monkeypatch.setenv("HORTUS_EXECUTOR", "ray")  # restored after the test
    assert main(["--root", str(project.root), "ingest", "--executor", "local"]) == 0
    assert os.environ["HORTUS_EXECUTOR"] == "local"

    args = build_parser().parse_args(["silver", "--executor", "ray", "--address", "auto"])
    assert (args.executor, args.ray_address) == ("ray", "auto")
    args = build_parser().parse_args(["features", "build", "--executor", "local"])
    assert args.executor == "local"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ingest", "--executor", "spark"])


class _Sharding(LocalExecutor):
    """In-process, but distributing: the stages take their executor path (shards, one task each)."""

    kind = "sharding"

    def __init__(self, config: ExecutorConfig) -> None:
        super().__init__(config)
        self.calls: list[tuple[str, int, bool]] = []

    def map(self, fn, items, **kw):
        items = list(items)
        self.calls.append((fn.__name__, len(items), kw.get("settle", False)))
        return super().map(fn, items, **kw)

    def distributes(self, rows: int) -> bool:
        return rows >= self.config.min_rows


def test_feature_logs_per_entity_shard_equal_the_whole_build(shop):
    """Check that the feature logs built in several entity shards hash as the in-process build."""
    from hortus.domains.plantshop.features import FEATURES
    from hortus.executor import parallel
    from hortus.lakehouse.tables import frame_hash

    shop.flush_audit()
    whole = {g.table: shop.content_hash(g.table) for g in FEATURES.groups}
    shop.flush_audit()
    one = {g.table: log for g, log, _ in parallel.feature_logs(shop, FEATURES, LocalExecutor(),
                                                               shards=1)}  # fmt: skip
    # the driver audits each read once: every source, plus silver.plants (user_category's prepare)
    assert shop.flush_audit() == len(FEATURES.groups) + 1
    five = {}
    for g, log, lineage in parallel.feature_logs(shop, FEATURES, LocalExecutor(), shards=5):
        five[g.table] = log
        assert g.source in lineage and lineage[g.source] == shop.version(g.source)
    assert set(five) == set(whole)
    for table, digest in whole.items():
        assert frame_hash(one[table]) == frame_hash(five[table]) == digest, table
        assert five[table].height > 0 and five[table]["ts"].is_sorted()
    # the shards do partition: shard 0 of 5 holds some of the users, not all
    source, others = parallel._resolve_group(shop, FEATURES.group("user_activity"))
    schema = dict(shop.catalog.get("gold.fs_user_activity").schema)
    part = parallel._log_shard(parallel.LogShard(FEATURES.group("user_activity"), source,
                                                 others, schema, 0, 5))  # fmt: skip
    users = five["gold.fs_user_activity"]["user_id"].n_unique()
    assert 0 < part["user_id"].n_unique() < users


def test_build_offline_on_a_distributing_executor_commits_once_per_table(shop, tmp_path):
    """Check build_offline's executor path: tasks per shard, one commit per table, same hashes."""
    import shutil

    from hortus.config import Paths
    from hortus.domains.plantshop.features import FEATURES
    from hortus.features import store

    root = tmp_path / "shop"
    shutil.copytree(shop.paths.root, root)
    lh = Lakehouse(paths=Paths.at(root), catalog=Catalog.load(), stage="test", user="pipeline")
    before = {g.table: lh.version(g.table) for g in FEATURES.groups}
    ex = _Sharding(ExecutorConfig(chunk_rows=3000))
    out = store.build_offline(lh, FEATURES, executor=ex)
    assert len(ex.calls) == 1 and ex.calls[0][0] == "_log_shard" and ex.calls[0][2]  # settled
    assert ex.calls[0][1] > 2 * len(FEATURES.groups)  # at least two shards a group, more for events
    for g in FEATURES.groups:
        assert out[g.table]["version"] == lh.version(g.table) == before[g.table] + 1
        assert lh.content_hash(g.table) == shop.content_hash(g.table), g.table
    # below min_rows: in-process, no task, the same tables
    small = _Sharding(ExecutorConfig(min_rows=10**9))
    store.build_offline(lh, FEATURES, executor=small)
    assert small.calls == []
    assert all(lh.content_hash(g.table) == shop.content_hash(g.table) for g in FEATURES.groups)


def test_the_plant_shops_scoring_hook_per_user_shard_equals_the_in_process_one(shop):
    """Check recommend() through score_spine on a distributing executor: the same top-k, scores."""
    from datetime import timedelta

    from hortus.domains.plantshop import scoring
    from hortus.domains.plantshop.features import FEATURES
    from hortus.domains.plantshop.training import build_spine
    from hortus.features import store
    from hortus.models.modeling import ModelSpec, train

    spine = build_spine(shop, {"label_horizon_days": 7})
    examples = store.training_set(shop, FEATURES, spine, "ts", executor=LocalExecutor())
    windows = [c for c in examples.columns if c.endswith(("_7d", "_30d"))]  # never null
    spec = ModelSpec(target="label", features=tuple(windows[:8]), time="ts",
                     params={"max_iter": 10})  # fmt: skip
    result = train(examples, spec, curve_points=1, importance_repeats=1, importance_rows=100)
    at = examples["ts"].max() - timedelta(days=2)
    kw = {"at": at, "top_k": 5, "model_name": "recommender", "model_version": 1}
    args = (shop, result.pipeline, result.signature, result.spec)
    recs, log = scoring.recommend(*args, **kw, executor=LocalExecutor())
    ex = _Sharding(ExecutorConfig(chunk_rows=4000))
    recs_sharded, log_sharded = scoring.recommend(*args, **kw, executor=ex)
    assert ex.calls[0][0] == "_score_spine_shard" and ex.calls[0][1] >= 2
    assert recs.height > 100 and recs_sharded.equals(recs)
    assert scoring.predictions_hash(recs_sharded) == scoring.predictions_hash(recs)
    assert log_sharded.drop("logged_at").equals(log.drop("logged_at"))
