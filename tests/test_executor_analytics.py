"""Drift, bootstrap intervals and permutation importance split into executor tasks (issue 16).

Fast: the split path runs on a local executor (`analytics.use(..., split_local=True)`,
thresholds 0, small chunks, task by task in this process) and must give exactly
the unsplit results; below a threshold (or on the local executor by default)
nothing is submitted: a Ray executor is never even connected.  The same checks
on a real two-node Ray cluster are in tests/test_executor_analytics_ray.py (slow).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from hortus.checks._importance import importance_check
from hortus.checks._segments import _cells, _Draws, _replicates, segment_metrics_ci
from hortus.executor import analytics
from hortus.executor.base import LocalExecutor
from hortus.executor.config import ExecutorConfig
from hortus.executor.ray import RayExecutor
from hortus.models.modeling import ModelSpec
from hortus.monitoring.drift import DriftConfig, Profile, compare
from hortus.params_schema import section_problems

LOW = {"drift_min_rows": 0, "bootstrap_min_rows": 0, "importance_min_rows": 0}


class Recording(LocalExecutor):
    """A local executor that records the tasks it is given (then runs them in-process)."""

    def __init__(self, config: ExecutorConfig) -> None:
        super().__init__(config)
        self.tasks: list[int] = []

    def map(self, fn, items, **kw):
        items = list(items)
        self.tasks.append(len(items))
        return super().map(fn, items, **kw)


def _split(**config) -> Recording:
    return Recording(ExecutorConfig(**(LOW | config)))


def _frames(n: int = 24_000, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    start = pl.datetime(2025, 1, 1)
    ts = pl.datetime_range(start, start + pl.duration(seconds=n - 1), "1s", eager=True)
    ref = pl.DataFrame({
        "x": rng.normal(size=n),
        "k": rng.integers(0, 6, n),
        "c": pl.Series(rng.choice(["a", "b", "c", ""], n)).replace("", None),
        "seg": rng.choice(["north", "south", "west"], n),
        "ts": ts,
    })  # fmt: skip
    cur = ref.with_columns(pl.col("x") * 1.1 + 0.05, pl.col("k").shuffle(seed=1))
    return ref, cur


def test_drift_split_into_column_tasks_equals_the_unsplit_report():
    """Check profile and compare as column tasks (overall, per segment, per window): same report."""
    ref, cur = _frames()
    kw = {"segment": "seg", "time": "ts", "window": "2h"}
    whole = compare(ref, cur, **kw)
    ex = _split(chunk_rows=5_000)
    with analytics.use(ex, split_local=True):
        split = compare(ref, cur, **kw)
        stored = Profile.from_frame(ref.drop("ts"), segment="seg", exact=True)
    assert len(ex.tasks) >= 4 and max(ex.tasks) > 3  # profile per column, compare per part
    assert split.to_dict() == whole.to_dict()
    assert split.to_frame().equals(whole.to_frame())
    again = Profile.from_frame(ref.drop("ts"), segment="seg", exact=True)
    assert stored.to_dict() == again.to_dict()
    assert whole.drifted_columns == split.drifted_columns and "x" in whole.drifted_columns


def _names(frame: pl.DataFrame, column: str) -> list[str]:
    return frame.columns


def test_drift_task_items_carry_only_their_columns():
    """Check that a task's frame is cut to the columns its item names."""
    frame = pl.DataFrame({"a": [1.0], "b": [2.0], "seg": ["b"]})
    slim = analytics._slim(("a", frame, DriftConfig(), "b"))
    assert slim[1].columns == ["a", "b"] and slim[0] == "a"
    assert analytics._slim((frame, "a"))[0].columns == ["a"]
    objects = pl.DataFrame({"o": pl.Series([object(), None], dtype=pl.Object), "x": [1.0, 2.0]})
    with analytics.use(_split(), split_local=True):  # cannot be shipped: in-process
        assert analytics.drift_map(_names, [(objects, "o"), (objects, "x")], 2) is None
        assert analytics.drift_map(_names, [(objects, "x"), (frame, "b")], 2) == [["x"], ["b"]]


def test_nothing_is_submitted_below_the_thresholds_or_on_the_local_executor(fitted):
    """Check in-process below each threshold: the Ray executor is never connected."""
    ref, cur = _frames(3_000)
    y, s, df, spec = _scored(4_000)
    high = {k: 10**9 for k in LOW}
    ray_ex = RayExecutor(ExecutorConfig(kind="ray", **high))
    with analytics.use(ray_ex):
        compare(ref, cur, segment="seg")
        segment_metrics_ci(None, df, spec, scores=s, n_boot=20)
        importance_check(*fitted, n_repeats=1, max_rows=500)
    assert ray_ex._ray is None  # never connected: no task
    local = _split()  # thresholds 0, but a local executor without split_local
    with analytics.use(local):
        compare(ref, cur)
        segment_metrics_ci(None, df, spec, scores=s, n_boot=20)
    assert local.tasks == []
    assert analytics._CURRENT[0] is None  # `use` restores the previous state
    assert analytics.executor_for_work("drift", 10**12) is None


def _scored(n: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (x + rng.normal(size=n) > 0).astype(int)
    s = 1 / (1 + np.exp(-x))  # continuous: more distinct scores than cells
    df = pl.DataFrame({"x": x, "y": y, "region": rng.choice(["a", "b", "c"], n),
                       "band": rng.choice(["young", "old"], n)})  # fmt: skip
    return y, s, df, ModelSpec("y", ("x",), segments=("region", "band"))


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss", "average_precision"])
def test_bootstrap_split_into_tasks_equals_the_unsplit_intervals(metric):
    """Check segment intervals as tasks (per value; row-resampled values in replicate
    batches of different sizes) against the in-process ones, bit for bit."""
    y, s, df, spec = _scored(6_000)
    kw = {"scores": s, "n_boot": 60, "metric": metric, "seed": 5, "max_gap": 1.0}
    whole = segment_metrics_ci(None, df, spec, **kw)
    for chunk in (1_000, 7_000):  # 10 x chunk_rows drawn rows a task: 5 or 35 replicates
        ex = _split(chunk_rows=chunk)
        with analytics.use(ex, split_local=True):
            split = segment_metrics_ci(None, df, spec, **kw)
        assert split.table.equals(whole.table), (metric, chunk)
        assert split.stats == whole.stats
        values = whole.table.height  # 5 segment values of 1,000-3,000 rows
        if metric == "roc_auc":  # counts per cell: one task per value
            assert ex.tasks == [values]
        else:  # rows: batches of 10 x chunk_rows // rows replicates
            assert ex.tasks[0] > values
            assert ex.tasks[0] == sum(-(-60 // max(1, 10 * chunk // n)) for n in whole.table["n"])
    assert whole.table["ci_low"].null_count() == 0


def test_each_replicate_has_its_own_seed_whatever_the_batch():
    """Check that replicates r..s drawn in any batches are the same values."""
    y, s, _, _ = _scored(3_000)
    for cells in (_cells("roc_auc", y, s), None):
        draws = [_Draws("roc_auc", (0, 1), cells, None if cells else y, None if cells else s)]
        whole = _replicates((0, 0, 30), draws, 7)
        parts = [_replicates((0, a, b), draws, 7) for a, b in ((0, 4), (4, 5), (5, 30))]
        assert np.array_equal(np.concatenate(parts), whole)
        assert not np.array_equal(_replicates((0, 0, 30), draws, 8), whole)  # the seed counts
        assert len(np.unique(whole)) > 20  # replicates differ from each other


@pytest.fixture(scope="module")
def fitted():
    """A small fitted model (histogram gradient boosting) and its frame."""
    from hortus.models.modeling import train

    rng = np.random.default_rng(0)
    n = 3_000
    x = rng.normal(size=(n, 3))
    start = pl.datetime(2025, 1, 1)
    df = pl.DataFrame({
        "a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "cat": rng.choice(["u", "v", "w"], n),
        "ts": pl.datetime_range(start, start + pl.duration(minutes=n - 1), "1m", eager=True),
        "y": (x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=n) > 0).astype(int),
    })  # fmt: skip
    spec = ModelSpec("y", ("a", "b", "c", "cat"), categorical=("cat",), time="ts",
                     params={"max_iter": 15})  # fmt: skip
    model = train(df, spec, curve_points=1, importance_repeats=1, importance_rows=100).pipeline
    return model, df, spec


def test_importance_per_feature_tasks_equal_scikit_learn(fitted):
    """Check permutation importance as one task per feature: scikit-learn's numbers exactly."""
    model, df, spec = fitted
    whole = importance_check(model, df, spec, n_repeats=3, max_rows=2_000, seed=4)
    ex = _split()
    with analytics.use(ex, split_local=True):
        split = importance_check(model, df, spec, n_repeats=3, max_rows=2_000, seed=4)
    assert ex.tasks == [4]  # one task per feature
    assert split.table.equals(whole.table)
    assert whole.table["feature"][0] == "a" and whole.table["importance_mean"][0] > 0.1


def test_the_thresholds_are_params_and_checked():
    """Check the three keys: defaults, accepted values, a bad one named."""
    cfg = ExecutorConfig.from_mapping({"drift_min_rows": 5, "importance_min_rows": 0})
    assert (cfg.drift_min_rows, cfg.bootstrap_min_rows, cfg.importance_min_rows) == (
        5, 1_000_000, 0)  # fmt: skip
    problems = section_problems("executor", {"bootstrap_min_rows": -1})
    assert problems == ["params.yaml: executor.bootstrap_min_rows: expected int >= 0, got -1"]


def test_the_projects_params_choose_the_analytics_executor_and_its_sizes(tmp_path):
    """Check that params.yaml's executor section (as the gate and monitor stages read it)
    sets the thresholds, and that the Ray executor is chosen only from them (not connected)."""
    from hortus.executor.base import executor_for

    (tmp_path / "params.yaml").write_text(
        "executor:\n  kind: ray\n  drift_min_rows: 50\n  bootstrap_min_rows: 7\n"
    )
    ex = executor_for(tmp_path, env={})
    assert ex.kind == "ray" and ex.config.drift_min_rows == 50
    with analytics.use(ex):
        assert analytics.executor_for_work("drift", 50) is ex
        assert analytics.executor_for_work("drift", 49) is None
        assert analytics.executor_for_work("bootstrap", 7) is ex
        assert analytics.executor_for_work("importance", 99_999) is None  # default 100,000
    assert ex._ray is None  # choosing connects nothing


def _blas_threads(_: int) -> int:
    from threadpoolctl import threadpool_info

    return max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")


def test_tasks_run_with_the_drivers_blas_threads():
    """Check that a task sets BLAS to the driver's thread count (sums in the same order)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        threads = analytics.driver_threads()
        assert 1 in threads.values()
        assert list(analytics.run(LocalExecutor(), _blas_threads, [0], ())) == [1]
    blas = next(k for k in threads if "blas" in k)
    assert analytics._as_driver(0, _blas_threads, {blas: 1}) == 1
    assert analytics._as_driver(0, _blas_threads, {blas: 2}) == 2  # above OMP_NUM_THREADS too


# ------------------------------------------------- the gate's champion comparison
@pytest.fixture(scope="module")
def rivals():
    """Per task: a candidate with one feature fewer, the champion, the candidate's hold-out."""
    from hortus.models.modeling import time_split, train
    from test_champion import FEATURES, _frame, _spec

    out = {}
    for task in ("binary", "ranking", "regression"):
        df = _frame(task)
        champ = train(df, _spec(task, FEATURES))
        cand = train(df, _spec(task, FEATURES[:3]))
        out[task] = (cand, champ, time_split(df, cand.spec)[1])
    return out


def _versus(rival, **kw):
    from hortus.checks._champion import champion_comparison

    cand, champ, holdout = rival
    return champion_comparison(cand.pipeline, cand.spec, champ.pipeline, champ.spec, holdout,
                               champion_version=1, min_segment_size=20, **kw)  # fmt: skip


@pytest.mark.parametrize("task", ["binary", "ranking", "regression"])
def test_champion_comparison_split_into_tasks_equals_the_unsplit_one(rivals, task):
    """Check the paired bootstrap as tasks (per scope, or replicates in batches of
    10 x chunk_rows drawn units; ROC AUC per scope: it draws cell counts) against the
    in-process one: same table, bit for bit."""
    kw = {"n_boot": 40, "seed": 6}
    whole = _versus(rivals[task], **kw)
    judged = whole.table.filter(pl.col("status") != "too small")["n"].to_list()
    assert len(judged) == 3  # overall, region N and S
    for chunk in (20, 10_000):  # 200 drawn units a task (1 or 2 replicates), or all of them
        ex = _split(chunk_rows=chunk)
        with analytics.use(ex, split_local=True):
            split = _versus(rivals[task], **kw)
        assert split.table.equals(whole.table), (task, chunk)
        assert (split.passed, split.detail) == (whole.passed, whole.detail)
        assert split.stats == whole.stats
        # ROC AUC draws cell counts (one task per scope); the others draw units in batches
        per = [40 if task == "binary" else max(1, 10 * chunk // n) for n in judged]
        assert ex.tasks == [sum(-(-40 // p) for p in per)]
        assert chunk > 1_000 or task == "binary" or ex.tasks[0] > 3 * 10
    overall = whole.table.row(0, named=True)
    assert overall["ci_low"] < overall["difference"] < overall["ci_high"]  # a real interval
    assert _versus(rivals[task], n_boot=40, seed=7).table["ci_low"][0] != overall["ci_low"]


def test_each_paired_replicate_has_its_own_seed_whatever_the_batch():
    """Check that paired replicates r..s drawn in any batches are the same values."""
    from hortus.checks._champion import _pair, _paired_replicates

    y, s, _, _ = _scored(2_000)
    other = np.clip(s + np.random.default_rng(1).normal(0, 0.1, len(s)), 0, 1)
    pairs = [_pair("roc_auc", (2, 1), y, s, other)[2]]
    whole = _paired_replicates((0, 0, 25), pairs, 3)
    parts = [_paired_replicates((0, a, b), pairs, 3) for a, b in ((0, 1), (1, 9), (9, 25))]
    assert np.array_equal(np.concatenate(parts), whole)
    assert len(np.unique(whole)) > 20
    moved = [_pair("roc_auc", (2, 2), y, s, other)[2]]  # another scope: other draws
    assert not np.array_equal(_paired_replicates((0, 0, 25), moved, 3), whole)


def test_the_champion_comparison_stays_in_process_below_its_threshold(rivals):
    """Check that below bootstrap_min_rows the Ray executor is never connected."""
    ray_ex = RayExecutor(ExecutorConfig(kind="ray", bootstrap_min_rows=10**9))
    with analytics.use(ray_ex):
        result = _versus(rivals["binary"], n_boot=20)
    assert ray_ex._ray is None
    assert result.table.equals(_versus(rivals["binary"], n_boot=20).table)
    local = _split()
    with analytics.use(local):
        _versus(rivals["binary"], n_boot=20)
    assert local.tasks == []


# -------------------------------------------------------------------- hortus drift
class InProcessRay(Recording):
    """Stands in for Ray in the fast test (kind "ray": splits; runs tasks in this process).

    The real cluster runs the same command in tests/test_executor_analytics_ray.py.
    """

    kind = "ray"


def _drift_files(tmp_path, n: int = 6_000):
    ref, cur = _frames(n)
    cur = cur.with_columns(pl.col("x") + 0.3)
    ref.write_parquet(tmp_path / "ref.parquet")
    cur.write_parquet(tmp_path / "cur.parquet")
    return [str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet"), "--segment", "seg"]


def test_hortus_drift_honours_the_executor_choice_and_its_threshold(tmp_path, monkeypatch):
    """Check that `hortus drift` on two files takes the executor as the stage commands do
    (params.yaml, then HORTUS_EXECUTOR, then --executor/--address), splits from
    drift_min_rows and prints the same report; below it nothing is submitted."""
    import json

    from hortus.cli.core import main
    from hortus.cli.drift import drift_executor
    from hortus.executor import base

    made: list[InProcessRay] = []

    def make(config):
        made.append(InProcessRay(config) if config.kind == "ray" else LocalExecutor(config))
        return made[-1]

    monkeypatch.setattr(base, "make_executor", make)
    monkeypatch.setattr(base, "_CURRENT", {})
    monkeypatch.delenv("HORTUS_EXECUTOR", raising=False)
    files = _drift_files(tmp_path)
    project = tmp_path / "p"
    project.mkdir()
    (project / "params.yaml").write_text("executor:\n  drift_min_rows: 6000\n  chunk_rows: 2000\n")
    reports = {}
    for how, extra in [("local", []), ("ray", ["--executor", "ray", "--address", "ray://h:1"])]:
        out = tmp_path / f"{how}.json"
        code = main(["--root", str(project), "drift", *files, *extra, "--json", str(out)])
        assert code == 1  # x drifted
        reports[how] = json.loads(out.read_text())
    assert reports["ray"] == reports["local"]
    ray_ex = made[-1]
    assert (ray_ex.kind, ray_ex.config.address, ray_ex.config.drift_min_rows) == (
        "ray", "ray://h:1", 6000)  # fmt: skip
    assert len(ray_ex.tasks) >= 2 and max(ray_ex.tasks) > 3  # per-column tasks
    # the environment chooses as for the stages; below drift_min_rows: in-process
    monkeypatch.setenv("HORTUS_EXECUTOR", "ray")
    (project / "params.yaml").write_text("executor:\n  drift_min_rows: 6001\n")
    assert main(["--root", str(project), "drift", *files]) == 1
    assert made[-1].kind == "ray" and made[-1].tasks == []
    args = type("A", (), {"executor": "local", "ray_address": None})()
    assert drift_executor(args, project).kind == "local"  # the flag wins over the env
