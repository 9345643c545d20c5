"""Benchmark: the partitioned stages in-process vs on a two-node local Ray cluster.

One simulated landing export (not timed) is taken through the same stages twice in
one run, each into its own lakehouse:
- local: `LocalExecutor` (Hortus's default, in this process);
- ray:   `RayExecutor` on a two-node `ray.cluster_utils.Cluster` (1 CPU and
         --object-store-mb per node, as `make cluster-up` starts it), tasks per
         landing file (ingest), per silver chunk, per entity shard of the feature
         logs, per time slice of the training set and per entity shard of batch
         scoring.
Stages timed: landing -> bronze -> silver; the feature logs (gold.fs_*); the
training-set build (point-in-time join of every feature log, gold.training_set);
batch scoring of the training set with a small model (trained once on a sample,
not timed).  Each Ray result is checked identical to the local one (content hashes).

On this machine (2 cores shared with other work) the two Ray nodes, the driver and
the object store compete for the same cores: the ratio measures Ray's overhead
(task scheduling, serialisation, object transfer, per-task reads), NOT a speed-up.
The last table is a MODELLED projection of per-stage time on N machines (not
measured; its assumptions are printed with it).

The analytics part (`--part analytics`, or `all`) times the gate's analytics on
synthetic frames, in-process and on the same two-node cluster with the default
thresholds of params.yaml `executor` (hortus.executor.analytics): drift (exact
profile + compare, per-column tasks) at --drift-rows, the segment bootstrap
(--n-boot replicates, ROC AUC drawn as cell counts and log loss drawn as rows, in
replicate batches) and the gate's champion comparison (paired bootstrap of two
logistic regressions' ROC AUC, rows drawn per replicate) at --boot-rows, and
permutation importance (one task per
feature, the model through the object store) on --importance-rows sampled rows;
each Ray result is checked identical to the in-process one.  Again the ratio is
Ray's overhead on 2 shared cores, not a speed-up.

Usage: python benchmarks/bench_scaleout.py [--part all|stages|analytics]
       [--events 10000000] [--workdir DIR] [--chunk-rows 500000]
       [--object-store-mb 1024] [--nodes-model 1,2,4,8,16]
       [--drift-rows 1000000,5000000] [--boot-rows 1000000] [--n-boot 200]
       [--importance-rows 200000] [--analytics-min-rows N]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from _common import as_pipeline, machine_line

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import sim_config_for  # noqa: E402  (the same sizing of the simulator)


class Counted:
    """An executor wrapper that counts the tasks (items) each stage submits."""

    def __init__(self, inner) -> None:
        self.inner, self.kind, self.config = inner, inner.kind, inner.config
        self.tasks = 0

    def map(self, fn, items, **kw):
        items = list(items)
        self.tasks += len(items)
        return self.inner.map(fn, items, **kw)

    def map_unordered(self, fn, items, **kw):
        items = list(items)
        self.tasks += len(items)
        return self.inner.map_unordered(fn, items, **kw)

    def distributes(self, rows: int) -> bool:
        return self.inner.distributes(rows)

    def shutdown(self) -> None:
        self.inner.shutdown()


@contextmanager
def commit_time(acc: dict):
    """Add the seconds spent in Lakehouse.write (the driver's serial commits) to acc['s']."""
    from hortus.lakehouse.tables import Lakehouse

    original = Lakehouse.write

    def timed(self, *a, **kw):
        t = time.perf_counter()
        try:
            return original(self, *a, **kw)
        finally:
            acc["s"] += time.perf_counter() - t

    Lakehouse.write = timed
    try:
        yield
    finally:
        Lakehouse.write = original


def run_stages(root: Path, data: Path, executor, model=None) -> dict:
    """Run the timed stages with `executor` into root's lakehouse; return figures."""
    from hortus.config import Paths
    from hortus.domains.plantshop.features import FEATURES
    from hortus.domains.plantshop.training import build_spine
    from hortus.executor import parallel
    from hortus.executor.plan import resolve_read
    from hortus.features import store
    from hortus.lakehouse import silver
    from hortus.lakehouse.catalog import Catalog
    from hortus.lakehouse.ingest import ingest
    from hortus.lakehouse.tables import Lakehouse, frame_hash
    from hortus.models.modeling import score_frame

    as_pipeline(root)
    lh = Lakehouse(paths=Paths.at(root), catalog=Catalog.load(), stage="bench")
    out: dict = {}
    ex = Counted(executor)
    commits = {"s": 0.0}
    with commit_time(commits):
        t = time.perf_counter()
        ingest(data, lh, executor=ex, flush_rows=2_000_000)
        silver.build(lh, silver.SilverOptions(key=b"bench-key"), executor=ex)
        out["land"] = time.perf_counter() - t
    out["land_commit_s"], out["land_tasks"] = commits["s"], ex.tasks
    out["events"] = lh.scan("bronze.events").select(__import__("polars").len()).collect().item()
    out["hash_silver"] = {n: lh.content_hash(n) for n in ("silver.events", "quarantine.rows")}
    commits["s"], ex.tasks = 0.0, 0
    with commit_time(commits):
        t = time.perf_counter()
        store.build_offline(lh, FEATURES, executor=ex)
        out["feature_logs"] = time.perf_counter() - t
    out["feature_logs_commit_s"], out["fl_tasks"] = commits["s"], max(ex.tasks, 1)
    out["hash_logs"] = {g.table: lh.content_hash(g.table) for g in FEATURES.groups}
    logs_mb = sum(lh.scan(g.table).collect().estimated_size("mb") for g in FEATURES.groups)
    spine = build_spine(lh, {"label_horizon_days": 7})
    ex.tasks = 0
    t = time.perf_counter()
    examples = store.training_set(lh, FEATURES, spine, "ts", executor=ex)
    out["training_set"], out["ts_tasks"] = time.perf_counter() - t, ex.tasks
    out["examples"] = examples.height
    out["hash_examples"] = frame_hash(examples)
    schema = lh.catalog.get("gold.training_set").schema
    import polars as pl

    lh.write("gold.training_set", examples.select([pl.col(c).cast(d) for c, d in schema.items()]),
             mode="overwrite")  # fmt: skip
    if model is None:
        model = _model(examples)
    pipeline, signature, spec = model
    ex.tasks = 0
    t = time.perf_counter()
    if executor.kind == "local":
        scored = score_frame(pipeline, signature, lh.read("gold.training_set"), spec)
    else:
        plan = resolve_read(lh, "gold.training_set")
        keys = ["event_id", "user_id", "plant_id"]
        scored = parallel.score_sharded(plan, keys, pipeline, signature, spec, ex)
    out["score"], out["score_tasks"] = time.perf_counter() - t, max(ex.tasks, 1)
    out["hash_scores"] = frame_hash(scored.select("event_id", "score"))
    out["result_mb"] = {
        "land": lh.scan("silver.events").collect().estimated_size("mb"),
        "feature_logs": logs_mb,
        "training_set": examples.estimated_size("mb"),
        "score": scored.estimated_size("mb"),
    }
    lh.flush_audit()
    return out, model


def _model(examples):
    """Train a small binary model on a sample (not timed): what scoring uses."""
    from hortus.models.modeling import ModelSpec, train

    skip = {"label", "position"}
    numeric = [c for c, t in examples.schema.items() if t.is_numeric() and c not in skip][:8]
    spec = ModelSpec(target="label", features=tuple(numeric), time="ts",
                     params={"max_iter": 30})  # fmt: skip
    sample = examples.sample(min(examples.height, 50_000), seed=0).sort("ts")
    result = train(sample, spec, curve_points=1, importance_repeats=1, importance_rows=200)
    return result.pipeline, result.signature, result.spec


def start_cluster(object_store_mb: int, temp: str):
    """Start a head and a worker node of 1 CPU each; return (cluster, seconds)."""
    from ray.cluster_utils import Cluster

    os.environ["RAY_TMPDIR"] = temp
    t = time.perf_counter()
    node = {"num_cpus": 1, "object_store_memory": object_store_mb * 2**20,
            "include_dashboard": False}  # fmt: skip
    for attempt in range(3):  # a raylet may miss Ray's fixed 30 s startup wait on a busy box
        cluster = Cluster()
        try:
            cluster.add_node(**node)
            cluster.add_node(num_cpus=1, object_store_memory=object_store_mb * 2**20)
            cluster.wait_for_nodes()
            return cluster, time.perf_counter() - t
        except Exception as exc:
            cluster.shutdown()
            if "timed out during startup" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def projection(local: dict, ray: dict, nodes: list[int]) -> None:
    """Print the MODELLED per-stage time on N machines, with its assumptions."""
    print("\nMODELLED projection (not measured): seconds per stage on N machines")
    print("  assumptions:")
    print("  - each machine has the cores this run's local executor had (one stage process);")
    print("  - the driver's serial part D stays serial: for landing and the feature logs, the")
    print("    Delta commits measured in the local run (Lakehouse.write time); else 0;")
    print("  - the rest of the local time W splits evenly over the N machines (tasks of equal")
    print("    size, no stragglers, enough tasks: at least N);")
    print("  - each task costs the per-task overhead c measured here: (ray - local) / tasks,")
    print("    an upper bound (on 2 shared cores it also holds the lost parallelism);")
    print("  - results move to the driver at 1 GB/s (10 GbE), results size measured here;")
    print("  - object storage (S3) read/write throughput is not modelled (local disk here).")
    print("  T(N) = D + W / N + c * ceil(tasks / N) + result_MB / 1000")
    stages = [("land", "land_tasks"), ("feature_logs", "fl_tasks"), ("training_set", "ts_tasks"),
              ("score", "score_tasks")]  # fmt: skip
    print(f"{'stage':>13} {'D s':>7} {'W s':>8} {'c s':>7} {'tasks':>6} "
          + " ".join(f"{'N=' + str(n):>8}" for n in nodes))  # fmt: skip
    for stage, tasks_key in stages:
        d = local.get(f"{stage}_commit_s", 0.0)
        w = max(local[stage] - d, 0.0)
        tasks = max(ray[tasks_key], 1)
        c = max(ray[stage] - local[stage], 0.0) / tasks
        mb = ray["result_mb"][stage]
        cells = [d + w / n + c * math.ceil(tasks / n) + mb / 1000 for n in nodes]
        print(f"{stage:>13} {d:>7.2f} {w:>8.2f} {c:>7.3f} {tasks:>6} "
              + " ".join(f"{v:>8.2f}" for v in cells))  # fmt: skip


# ------------------------------------------------------------------- analytics
def _drift_frames(rows: int, seed: int):
    """A reference and a current of `rows` rows: 6 float, 1 integer, 2 text columns."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)

    def frame(shift: float):
        cols = {f"x{i}": rng.normal(shift * (i % 2), 1 + i / 10, rows) for i in range(6)}
        cols["count"] = rng.poisson(3 + shift, rows)
        cols["region"] = pl.Series(rng.choice(["n", "s", "e", "w", "c"], rows))
        shares = [0.5 - shift, 0.3, 0.2 + shift]
        cols["band"] = pl.Series(rng.choice(["a", "b", "c"], rows, p=shares))
        return pl.DataFrame(cols)

    return frame(0.0), frame(0.05)


def _boot_frame(rows: int, seed: int):
    """Scores, labels and two segment columns (6 and 3 values) of `rows` rows."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    y = (x + rng.normal(size=rows) > 0).astype(np.int64)
    frame = pl.DataFrame({"y": y, "region": rng.choice(list("abcdef"), rows),
                          "band": rng.choice(["young", "mid", "old"], rows)})  # fmt: skip
    return frame, 1 / (1 + np.exp(-x))


def _importance_model(rows: int, seed: int):
    """A frame of `rows` rows with 8 features and a model fitted on 50,000 of them."""
    import numpy as np
    import polars as pl

    from hortus.models.modeling import ModelSpec, train

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 8))
    start = pl.datetime(2025, 1, 1)
    frame = pl.DataFrame({f"f{i}": x[:, i] for i in range(8)}).with_columns(
        ts=pl.datetime_range(start, start + pl.duration(seconds=rows - 1), "1s", eager=True),
        y=pl.Series((x[:, :4] @ [1.0, 0.5, 0.25, 0.1] + rng.normal(size=rows) > 0).astype(int)),
    )
    spec = ModelSpec("y", tuple(f"f{i}" for i in range(8)), time="ts", params={"max_iter": 30})
    fit = train(frame.head(50_000), spec, curve_points=1, importance_repeats=1,
                importance_rows=200)  # fmt: skip
    return fit.pipeline, frame, spec


def _rivals(frame, scores, seed: int):
    """The bootstrap frame with its score's logit `x` and a noise column; a champion on x,
    a candidate on x and noise (logistic regressions fitted on 50,000 rows)."""
    import numpy as np
    import polars as pl

    from hortus.models.modeling import ModelSpec, train

    rng = np.random.default_rng(seed)
    x = np.log(scores / (1 - scores))
    frame = frame.with_columns(x=pl.Series(x), noise=pl.Series(rng.normal(size=len(x))))
    fitted = []
    for features in (("x", "noise"), ("x",)):
        spec = ModelSpec("y", features, segments=("region", "band"), estimator="logreg")
        fit = train(frame.head(50_000), spec, curve_points=1, importance_repeats=1,
                    importance_rows=200)  # fmt: skip
        fitted.append((fit.pipeline, fit.spec))
    return frame, fitted


def run_analytics(executor, inputs: dict, args) -> dict:
    """Time drift, the segment bootstrap and importance with `executor` as the analytics one."""
    from hortus.checks._champion import champion_comparison
    from hortus.checks._importance import importance_check
    from hortus.checks._segments import segment_metrics_ci
    from hortus.executor import analytics
    from hortus.models.modeling import ModelSpec
    from hortus.monitoring.drift import compare

    ex = Counted(executor)
    out: dict = {}
    with analytics.use(ex):
        for rows, (ref, cur) in inputs["drift"].items():
            ex.tasks, t = 0, time.perf_counter()
            report = compare(ref, cur)
            out[f"drift {rows:,}"] = (time.perf_counter() - t, ex.tasks, report.to_dict())
        frame, scores = inputs["boot"]
        spec = ModelSpec("y", ("x",), segments=("region", "band"))
        for metric in ("roc_auc", "log_loss"):
            ex.tasks, t = 0, time.perf_counter()
            check = segment_metrics_ci(None, frame, spec, scores=scores, n_boot=args.n_boot,
                                       metric=metric, max_gap=1.0)  # fmt: skip
            key = f"bootstrap {metric} {frame.height:,}"
            out[key] = (time.perf_counter() - t, ex.tasks, check.table)
        frame, ((cand, cand_spec), (champ, champ_spec)) = inputs["champion"]
        ex.tasks, t = 0, time.perf_counter()
        check = champion_comparison(cand, cand_spec, champ, champ_spec, frame,
                                    champion_version=1, n_boot=args.n_boot)  # fmt: skip
        out[f"champion roc_auc {frame.height:,}"] = (time.perf_counter() - t, ex.tasks,
                                                     check.table)  # fmt: skip
        model, frame, spec = inputs["importance"]
        ex.tasks, t = 0, time.perf_counter()
        check = importance_check(model, frame, spec, n_repeats=2, max_rows=args.importance_rows)
        out[f"importance {args.importance_rows:,}"] = (time.perf_counter() - t, ex.tasks,
                                                       check.table)  # fmt: skip
    return out


def _same(a, b) -> bool:
    return a.equals(b) if hasattr(a, "equals") else a == b


def analytics_part(args, ray_executor) -> bool:
    """Run the analytics locally and on `ray_executor`; print the table; return all identical."""
    t = time.perf_counter()
    rows = [int(r) for r in args.drift_rows.split(",")]
    boot = _boot_frame(args.boot_rows, seed=7)
    inputs = {
        "drift": {n: _drift_frames(n, seed=i) for i, n in enumerate(rows)},
        "boot": boot,
        "champion": _rivals(*boot, seed=9),
        "importance": _importance_model(max(args.importance_rows, 60_000), seed=8),
    }
    print(f"\nanalytics inputs made in {time.perf_counter() - t:.1f} s (not timed)")
    from hortus.executor.base import LocalExecutor

    local = run_analytics(LocalExecutor(), inputs, args)
    # a first task per worker imports hortus, polars and scikit-learn (not timed)
    list(ray_executor.map(_warm, range(4)))
    remote = run_analytics(ray_executor, inputs, args)
    cfg = ray_executor.config
    print(f"thresholds (params.yaml executor): drift_min_rows {cfg.drift_min_rows:,}, "
          f"bootstrap_min_rows {cfg.bootstrap_min_rows:,}, importance_min_rows "
          f"{cfg.importance_min_rows:,}; chunk_rows {cfg.chunk_rows:,}")  # fmt: skip
    head = f"{'local s':>9} {'ray s':>9} {'ray/local':>10} {'tasks':>6} {'same':>5}"
    print(f"{'analytics':>28} {head}")
    ok = True
    for key, (seconds, _, result) in local.items():
        r_seconds, tasks, r_result = remote[key]
        same = _same(result, r_result)
        ok &= same
        print(f"{key:>28} {seconds:>9.2f} {r_seconds:>9.2f} {r_seconds / seconds:>10.2f} "
              f"{tasks:>6} {'yes' if same else 'NO':>5}")  # fmt: skip
    print("local: in-process (drift columns on threads, as today); ray: tasks on the 2 nodes;")
    print("same: the report / interval table / importance table equal the local one exactly.")
    print("On 2 shared cores the ratio is Ray's overhead, not a speed-up (see the docstring).")
    return ok


def _warm(_: int) -> int:
    import hortus.checks._importance  # noqa: F401
    import hortus.monitoring.drift  # noqa: F401

    return os.getpid()


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--chunk-rows", type=int, default=500_000, help="rows per Ray task")
    ap.add_argument("--object-store-mb", type=int, default=1024, help="per node")
    ap.add_argument("--nodes-model", default="1,2,4,8,16")
    ap.add_argument("--part", choices=("all", "stages", "analytics"), default="all")
    ap.add_argument("--drift-rows", default="1000000,5000000", help="rows of each side")
    ap.add_argument("--boot-rows", type=int, default=1_000_000)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--importance-rows", type=int, default=200_000)
    ap.add_argument("--analytics-min-rows", type=int, default=None,
                    help="every analytics threshold (default: params.yaml's defaults)")  # fmt: skip
    args = ap.parse_args()
    import ray

    from hortus.domains.plantshop.simulate import SimConfig, simulate
    from hortus.executor.base import LocalExecutor
    from hortus.executor.config import ExecutorConfig
    from hortus.executor.ray import RayExecutor

    base = Path(args.workdir or tempfile.mkdtemp(prefix="hortus-scaleout-"))
    print(machine_line())
    print(f"ray {ray.__version__}; 2 nodes x 1 CPU, {args.object_store_mb} MB object store each")
    stages = args.part in ("all", "stages")
    if stages:
        data = base / "data"
        if not (data / "_manifest.json").exists():
            shutil.rmtree(data, ignore_errors=True)
            cfg = sim_config_for(args.events)
            t = time.perf_counter()
            simulate(SimConfig(**cfg), data)
            print(f"  (simulated {cfg} in {time.perf_counter() - t:.1f} s, not timed)")
        for d in ("local", "ray"):
            shutil.rmtree(base / d, ignore_errors=True)
        local, model = run_stages(base / "local", data, LocalExecutor())
    temp = tempfile.mkdtemp(prefix="hray", dir="/tmp")  # short: Ray's socket paths
    cluster, startup = start_cluster(args.object_store_mb, temp)
    cfg = ExecutorConfig(kind="ray", address=cluster.address, chunk_rows=args.chunk_rows,
                         temp_dir=temp)  # fmt: skip
    if args.analytics_min_rows is not None:
        low = args.analytics_min_rows
        cfg = replace(cfg, drift_min_rows=low, bootstrap_min_rows=low, importance_min_rows=low)
    ex = RayExecutor(replace(cfg, slices=4))
    analytics_same = True
    try:
        t = time.perf_counter()
        ex.connect()
        connect = time.perf_counter() - t
        print(f"two-node cluster start {startup:.1f} s, driver connect {connect:.1f} s "
              "(not timed)")  # fmt: skip
        if stages:
            ray_figs, _ = run_stages(base / "ray", data, ex, model)
        if args.part in ("all", "analytics"):
            analytics_same = analytics_part(args, ex)
    finally:
        ex.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    if stages:
        stages_report(local, ray_figs, args)
    if not analytics_same:
        sys.exit("ray analytics differ from the in-process ones")


def stages_report(local: dict, ray_figs: dict, args) -> None:
    """Print the stages' table and the projection; exit non-zero when a result differs."""
    print(f"\nevents landed: {local['events']:,}; training examples: {local['examples']:,}")
    print(f"{'stage':>13} {'local s':>9} {'ray s':>9} {'ray/local':>10} {'tasks':>6} {'same':>5}")
    same = {
        "land": local["hash_silver"] == ray_figs["hash_silver"],
        "feature_logs": local["hash_logs"] == ray_figs["hash_logs"],
        "training_set": local["hash_examples"] == ray_figs["hash_examples"],
        "score": local["hash_scores"] == ray_figs["hash_scores"],
    }
    for stage, tasks in (("land", "land_tasks"), ("feature_logs", "fl_tasks"),
                         ("training_set", "ts_tasks"), ("score", "score_tasks")):  # fmt: skip
        print(f"{stage:>13} {local[stage]:>9.2f} {ray_figs[stage]:>9.2f} "
              f"{ray_figs[stage] / local[stage]:>10.2f} {ray_figs[tasks]:>6} "
              f"{'yes' if same[stage] else 'NO':>5}")  # fmt: skip
    print("land = ingest (landing -> bronze) + silver; same = content hashes equal to local")
    print("On 2 shared cores the ratio is Ray's overhead, not a speed-up (see the docstring).")
    projection(local, ray_figs, [int(n) for n in args.nodes_model.split(",")])
    if not all(same.values()):
        sys.exit("ray results differ from the local executor's")


if __name__ == "__main__":
    main()
