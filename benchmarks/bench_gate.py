"""Benchmark: the promotion gate on 1M scored rows x 20 segments, against fairlearn.

Setup (not timed, seeded): a synthetic scored table of `--rows` rows with a
`segment` column of `--segments` values (uneven sizes), a sensitive attribute
`age_band`, five features and a 0/1 `label`.  A small HGB model is trained with
`hortus.models.modeling.train` on 50,000 further rows of the same generator, saved
with skops and used to score the table; a row is "selected" when its score is
>= the 90% quantile of the scores (the top 10%).

Measured, each in a fresh child process (data loading is not timed):

1. hortus segment metrics: `model_checks.segment_metrics_ci` (ROC AUC per
   segment, `n_boot=2`, the smallest bootstrap it accepts) + `model_checks.fairness`
   by segment (selection rate, true positive rate, count, at the threshold).
   Then, once, `segment_metrics_ci` with the gate's default `n_boot=200`.
2. peer: `fairlearn.metrics.MetricFrame` with roc_auc_score, selection_rate,
   true_positive_rate and count by the same segment, on a pandas frame read from
   the same parquet file.
3. second peer: a plain pandas group-by loop calling sklearn's roc_auc_score
   and numpy per group (what one writes without a library).
4. the full gate: `gate.contract_check` and `gate.drift_check` (training rows vs
   the scored rows) on the scored rows, then `gate.run_gate` with every model
   check (scores recomputed, ROC AUC per segment with a 200-replicate bootstrap,
   fairness by age_band, permutation importance, schema conflicts, efficiency,
   behavioural invariance + directional tests).

The per-segment values of 1 must agree with 2 and 3 within 1e-9 (absolute);
times are the median of the timed runs.  Memory: the peak RSS during the timed
runs (Linux: VmHWM, reset just before them through /proc/self/clear_refs; it
includes the loaded data, and the RSS before the runs is printed beside it), and
the tracemalloc peak of one extra call (tracemalloc sees numpy and Python
allocations, not polars' own Rust allocations, so it undercounts hortus).

Usage: python benchmarks/bench_gate.py [--rows 1000000] [--segments 20] [--repeat 3]
       [--peer-repeat 1] [--gate-repeat 1] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from _common import peak_rss_mb

TRAIN_ROWS = 50_000
TOLERANCE = 1e-9
SELECT_QUANTILE = 0.9
AGE_BANDS = ("18-29", "30-44", "45-64", "65+")
CHANNELS = ("app", "email", "search", "social", "direct")


# ------------------------------------------------------------------ data


def make_spec() -> Any:
    """Return the model spec of the synthetic table (shared by parent and children)."""
    from hortus.models.modeling import ModelSpec

    return ModelSpec(
        target="label",
        features=("x1", "x2", "x3", "amount", "channel", "segment"),
        categorical=("channel", "segment"),
        segments=("segment",),
        estimator="hgb",
        params={"max_iter": 60},
        seed=0,
    )


def make_rows(rows: int, segments: int, seed: int, first_id: int = 0) -> pl.DataFrame:
    """Return `rows` seeded synthetic rows: features, segment, age_band, id and label."""
    rng = np.random.default_rng(seed)
    # segment sizes are uneven (Dirichlet shares), with a small base-rate effect each
    shares = np.random.default_rng(1234).dirichlet(np.full(segments, 5.0))
    seg_effect = np.random.default_rng(4321).normal(0.0, 0.3, segments)
    seg = rng.choice(segments, size=rows, p=shares)
    channel = rng.integers(0, len(CHANNELS), rows)
    channel_effect = np.array([0.3, -0.2, 0.4, -0.1, 0.0])
    x1, x2, x3 = rng.normal(size=(3, rows))
    amount = rng.lognormal(3.0, 0.7, rows)
    logit = (
        -1.6
        + 0.6 * x1
        - 0.6 * x2
        + 0.6 * np.tanh(x3)
        + 0.6 * (np.log(amount) - 3.0)
        + channel_effect[channel]
        + seg_effect[seg]
    )
    label = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    seg_names = np.array([f"seg_{i:02d}" for i in range(segments)])
    return pl.DataFrame(
        {
            "id": np.arange(first_id, first_id + rows, dtype=np.int64),
            "segment": seg_names[seg],
            "age_band": np.array(AGE_BANDS)[rng.integers(0, len(AGE_BANDS), rows)],
            "channel": np.array(CHANNELS)[channel],
            "x1": x1,
            "x2": x2,
            "x3": x3,
            "amount": np.round(amount, 2),
            "label": label,
        }
    )


def make_contract(segments: int) -> Any:
    """Return the data contract of the scored table."""
    from hortus.lakehouse.contracts import Contract

    seg_names = [f"seg_{i:02d}" for i in range(segments)]
    return Contract.from_dict(
        "bench_scored",
        {
            "layer": "gold",
            "owner": "bench",
            "description": "synthetic scored rows of the gate benchmark",
            "columns": {
                "id": {"type": "int", "nullable": False, "min": 0},
                "segment": {"type": "string", "nullable": False, "allowed": seg_names},
                "age_band": {"type": "string", "nullable": False, "allowed": list(AGE_BANDS)},
                "channel": {"type": "string", "nullable": False, "allowed": list(CHANNELS)},
                "x1": {"type": "float", "nullable": False},
                "x2": {"type": "float", "nullable": False},
                "x3": {"type": "float", "nullable": False},
                "amount": {"type": "float", "nullable": False, "min": 0},
                "label": {"type": "int", "nullable": False, "min": 0, "max": 1},
                "score": {"type": "float", "nullable": False, "min": 0, "max": 1},
            },
        },
    )


def prepare(root: Path, rows: int, segments: int) -> dict[str, Any]:
    """Write the training rows, the model and the scored table under `root`; return facts."""
    from hortus.models.modeling import predict_scores, save_model, train

    spec = make_spec()
    t = time.perf_counter()
    training = make_rows(TRAIN_ROWS, segments, seed=1, first_id=rows)
    result = train(training, spec, curve_points=2, importance_rows=2000, importance_repeats=2)
    save_model(result.pipeline, result.signature, root / "model.skops")
    train_s = time.perf_counter() - t
    table = make_rows(rows, segments, seed=2)
    t = time.perf_counter()
    scores = predict_scores(result.pipeline, table, spec)
    score_s = time.perf_counter() - t
    table = table.with_columns(score=scores)
    table.write_parquet(root / "scored.parquet")
    training.write_parquet(root / "training.parquet")
    threshold = float(np.quantile(scores, SELECT_QUANTILE))
    facts = {
        "rows": rows,
        "segments": segments,
        "threshold": threshold,
        "train_s": train_s,
        "score_s": score_s,
        "holdout_auc": result.metrics.get("roc_auc"),
        "base_rate": float(table["label"].mean()),
        "segment_sizes": table["segment"].value_counts()["count"].to_list(),
    }
    (root / "facts.json").write_text(json.dumps(facts))
    return facts


# ------------------------------------------------------------------ children


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _reset_peak() -> bool:
    """Reset the process's peak RSS (Linux: VmHWM); return False where that is unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_mb() -> float:
    """Return the peak RSS since the last reset (VmHWM via `_common.peak_rss_mb`)."""
    return peak_rss_mb()


def _measure(run: Any, repeat: int, trace: bool = True) -> dict[str, Any]:
    """Time `run` `repeat` times, then trace one more call; return figures and the result."""
    rss_before = _rss_mb()
    reset = _reset_peak()
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t)
    figures = {
        "seconds": statistics.median(times),
        "all_seconds": times,
        "rss_before_mb": rss_before,
        "peak_rss_mb": _peak_mb(),
        "peak_is_reset": reset,
        "result": out,
    }
    if trace:
        tracemalloc.start()
        run()
        figures["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return figures


def _python_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return rows with numpy scalars made Python numbers (for JSON)."""
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in rows]


def child_hortus(root: Path, repeat: int) -> dict[str, Any]:
    """Segment metrics the hortus way: segment_metrics_ci (n_boot=2) + fairness by segment."""
    from hortus.checks.model_checks import fairness, segment_metrics_ci

    facts = json.loads((root / "facts.json").read_text())
    spec = make_spec()
    df = pl.read_parquet(root / "scored.parquet", columns=["label", "segment", "score"])
    scores = df["score"].to_numpy()
    parts: dict[str, list[float]] = {"segment_metrics_ci": [], "fairness": []}

    def run() -> tuple[Any, Any]:
        t = time.perf_counter()
        seg = segment_metrics_ci(
            None, df, spec, ["segment"], n_boot=2, min_segment_size=1, scores=scores
        )
        t1 = time.perf_counter()
        fair = fairness(
            scores,
            df,
            "segment",
            "label",
            threshold=facts["threshold"],
            min_group_size=1,
            min_positives=1,
        )
        parts["segment_metrics_ci"].append(t1 - t)
        parts["fairness"].append(time.perf_counter() - t1)
        return seg, fair

    m = _measure(run, repeat)
    seg, fair = m.pop("result")
    values = (
        seg.table.select("value", roc_auc="estimate", n_auc="n")
        .join(
            fair.table.select(
                pl.col("group").alias("value"),
                "selection_rate",
                "true_positive_rate",
                count="n",
            ),
            on="value",
            how="full",
            coalesce=True,
        )
        .sort("value")
    )
    m["by_group"] = values.to_dicts()
    m["overall_roc_auc"] = seg.stats["overall"]
    m["parts"] = {k: statistics.median(v[:repeat]) for k, v in parts.items()}
    # the gate's default bootstrap, once, for the cost of the confidence intervals
    t = time.perf_counter()
    segment_metrics_ci(None, df, spec, ["segment"], n_boot=200, scores=scores)
    m["boot200_seconds"] = time.perf_counter() - t
    return m


def child_fairlearn(root: Path, repeat: int) -> dict[str, Any]:
    """Segment metrics with fairlearn's MetricFrame (the peer) on a pandas frame."""
    import pandas as pd
    from fairlearn.metrics import MetricFrame, count, selection_rate, true_positive_rate
    from sklearn.metrics import roc_auc_score

    facts = json.loads((root / "facts.json").read_text())
    threshold = facts["threshold"]
    df = pd.read_parquet(root / "scored.parquet", columns=["label", "segment", "score"])

    def selected_rate(y_true: Any, y_score: Any) -> float:
        return selection_rate(y_true, y_score >= threshold)

    def selected_tpr(y_true: Any, y_score: Any) -> float:
        return true_positive_rate(y_true, y_score >= threshold)

    metrics = {
        "roc_auc": roc_auc_score,
        "selection_rate": selected_rate,
        "true_positive_rate": selected_tpr,
        "count": count,
    }

    def run() -> Any:
        frame = MetricFrame(
            metrics=metrics,
            y_true=df["label"],
            y_pred=df["score"],
            sensitive_features=df["segment"],
        )
        return frame.by_group, frame.overall

    m = _measure(run, repeat)
    by_group, overall = m.pop("result")
    table = by_group.reset_index()
    table.columns = ["value", *table.columns[1:]]
    m["by_group"] = _python_rows(table.to_dict(orient="records"))
    m["overall_roc_auc"] = float(overall["roc_auc"])
    m["versions"] = {"fairlearn": __import__("fairlearn").__version__, "pandas": pd.__version__}
    return m


def child_loop(root: Path, repeat: int) -> dict[str, Any]:
    """Segment metrics as a plain pandas group-by loop calling sklearn per group (a second peer)."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    facts = json.loads((root / "facts.json").read_text())
    threshold = facts["threshold"]
    df = pd.read_parquet(root / "scored.parquet", columns=["label", "segment", "score"])

    def run() -> Any:
        rows = []
        for value, part in df.groupby("segment", sort=True):
            y = part["label"].to_numpy()
            selected = part["score"].to_numpy() >= threshold
            rows.append(
                {
                    "value": value,
                    "roc_auc": roc_auc_score(y, part["score"].to_numpy()),
                    "selection_rate": selected.mean(),
                    "true_positive_rate": selected[y == 1].mean(),
                    "count": len(y),
                }
            )
        return rows, roc_auc_score(df["label"].to_numpy(), df["score"].to_numpy())

    m = _measure(run, repeat)
    rows, overall = m.pop("result")
    m["by_group"] = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in rows
    ]
    m["overall_roc_auc"] = float(overall)
    return m


def child_gate(root: Path, repeat: int) -> dict[str, Any]:
    """The full gate: contract + drift data checks and every model check, on the scored rows."""
    from hortus.checks.gate import GateConfig, contract_check, drift_check, run_gate
    from hortus.models.modeling import load_model

    facts = json.loads((root / "facts.json").read_text())
    spec = make_spec()
    pipeline, signature = load_model(root / "model.skops")
    df = pl.read_parquet(root / "scored.parquet")
    evaluation = df.drop("score")
    reference = pl.read_parquet(root / "training.parquet")
    contract = make_contract(facts["segments"])
    config = GateConfig.from_dict(
        {
            "drift": {"max_drifted_share": 0.25, "critical": ["label"]},
            "model_checks": {
                "sensitive": ["age_band"],
                "segment_metrics": {"n_boot": 200, "min_segment_size": 100, "max_gap": 0.05},
                "fairness": {"threshold": facts["threshold"], "min_ratio": 0.8},
                "importance": {"max_rows": 5000, "n_repeats": 5},
                "behavioural": {
                    "invariance": ["id"],
                    "directional": [{"feature": "x1", "direction": "increase", "delta": 1.0}],
                },
            },
        }
    )
    columns = [*spec.features, spec.target]
    timings: dict[str, list[float]] = {"contract": [], "drift": [], "model_checks": []}

    def run() -> Any:
        t0 = time.perf_counter()
        checks = [contract_check(df, contract)]
        t1 = time.perf_counter()
        checks.append(
            drift_check(
                reference,
                evaluation,
                columns,
                max_drifted_share=config.max_drifted_share,
                critical=config.critical,
                config=config.drift,
            )
        )
        t2 = time.perf_counter()
        result = run_gate(
            model_name="bench",
            version=1,
            pipeline=pipeline,
            signature=signature,
            spec=spec,
            evaluation=evaluation,
            config=config,
            data_checks=checks,
        )
        t3 = time.perf_counter()
        timings["contract"].append(t1 - t0)
        timings["drift"].append(t2 - t1)
        timings["model_checks"].append(t3 - t2)
        return result

    m = _measure(run, repeat, trace=False)
    result = m.pop("result")
    m["parts"] = {k: statistics.median(v) for k, v in timings.items()}
    m["passed"] = result.passed
    m["checks"] = [c.summary() for c in result.checks]
    return m


def child_prepare(root: Path, repeat: int) -> dict[str, Any]:
    """Write the data and the model (in a child, so the parent stays small)."""
    facts = json.loads((root / "facts.json").read_text())
    return prepare(root, facts["rows"], facts["segments"])


CHILDREN = {
    "prepare": child_prepare,
    "hortus": child_hortus,
    "fairlearn": child_fairlearn,
    "loop": child_loop,
    "gate": child_gate,
}


def run_child(name: str, root: Path, repeat: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return the JSON it prints."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            name,
            "--workdir",
            str(root),
            "--repeat",
            str(repeat),
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"bench_gate: child {name!r} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ compare


def compare(ours: dict[str, Any], peer: dict[str, Any]) -> tuple[float, list[str]]:
    """Return the largest absolute difference over every segment value and metric, and problems."""
    mine = {r["value"]: r for r in ours["by_group"]}
    theirs = {r["value"]: r for r in peer["by_group"]}
    problems = []
    if set(mine) != set(theirs):
        problems.append(f"segment values differ: {sorted(set(mine) ^ set(theirs))}")
    worst = abs(ours["overall_roc_auc"] - peer["overall_roc_auc"])
    for value in sorted(set(mine) & set(theirs)):
        a, b = mine[value], theirs[value]
        if a["n_auc"] != a["count"]:
            problems.append(f"{value}: segment_metrics_ci n {a['n_auc']} != fairness n")
        for key in ("roc_auc", "selection_rate", "true_positive_rate", "count"):
            x, y = a[key], b[key]
            if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
                problems.append(f"{value}.{key}: hortus {x} vs fairlearn {y}")
                continue
            worst = max(worst, abs(float(x) - float(y)))
    if worst > TOLERANCE:
        problems.append(f"largest difference {worst:.3g} > tolerance {TOLERANCE}")
    return worst, problems


def _mem(m: dict[str, Any]) -> str:
    during = "during the timed calls" if m.get("peak_is_reset") else "of the process"
    traced = f", tracemalloc peak {m['traced_peak_mb']:.0f} MB" if "traced_peak_mb" in m else ""
    return (
        f"peak RSS {m['peak_rss_mb']:.0f} MB {during} (RSS {m['rss_before_mb']:.0f} MB "
        f"before them){traced}"
    )


def _runs(m: dict[str, Any]) -> str:
    return ", ".join(f"{t:.3f}" for t in m["all_seconds"])


def main() -> None:
    """Prepare the data, run each measurement in a fresh process and print figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--segments", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of hortus and the loop")
    ap.add_argument("--peer-repeat", type=int, default=1, help="timed runs of fairlearn (slow)")
    ap.add_argument("--gate-repeat", type=int, default=1, help="timed runs of the full gate")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        out = CHILDREN[args.child](Path(args.workdir), args.repeat)
        print(json.dumps(out, default=str))
        return
    if args.rows < 1000 or args.segments < 2:
        raise SystemExit("bench_gate: need --rows >= 1000 and --segments >= 2")

    load = os.getloadavg()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}; polars {pl.__version__}, "
        f"numpy {np.__version__}"
    )
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hortus-bench-gate-") as tmp:
        root = Path(args.workdir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        (root / "facts.json").write_text(json.dumps({"rows": args.rows, "segments": args.segments}))
        facts = run_child("prepare", root, 1)
        sizes = facts["segment_sizes"]
        print(
            f"data: {args.rows:,} scored rows, {args.segments} segments ({min(sizes):,} to "
            f"{max(sizes):,} rows each), base rate {facts['base_rate']:.3f}; model HGB trained "
            f"on {TRAIN_ROWS:,} rows in {facts['train_s']:.1f} s (hold-out ROC AUC "
            f"{facts['holdout_auc']:.3f}); scoring {args.rows:,} rows {facts['score_s']:.2f} s; "
            f"selected = score >= {facts['threshold']:.4f} (top {1 - SELECT_QUANTILE:.0%})"
        )
        ours = run_child("hortus", root, args.repeat)
        peer = run_child("fairlearn", root, args.peer_repeat)
        loop = run_child("loop", root, args.repeat)
        worst, problems = compare(ours, peer)
        worst_loop, problems_loop = compare(ours, loop)
        ratio = peer["seconds"] / ours["seconds"]
        print()
        print(
            "segment metrics by segment (ROC AUC, selection rate, true positive rate, count; "
            "median of the runs; loading not timed):"
        )
        print(
            f"  hortus     {ours['seconds']:7.3f} s  segment_metrics_ci n_boot=2 "
            f"{ours['parts']['segment_metrics_ci']:.3f} s + fairness "
            f"{ours['parts']['fairness']:.3f} s; runs {_runs(ours)}"
        )
        print(f"             {_mem(ours)}")
        print(
            f"  fairlearn  {peer['seconds']:7.3f} s  MetricFrame (fairlearn "
            f"{peer['versions']['fairlearn']}, pandas {peer['versions']['pandas']}); "
            f"runs {_runs(peer)}"
        )
        print(f"             {_mem(peer)}")
        print(
            f"  pandas+sklearn loop {loop['seconds']:.3f} s  (groupby, roc_auc_score per "
            f"group; a second peer); runs {_runs(loop)}; {_mem(loop)}"
        )
        verdict = "meets" if ratio >= 5 else "MISSES"
        print(
            f"  speed-up   {ratio:7.2f} x over fairlearn ({verdict} the 5x target); "
            f"{loop['seconds'] / ours['seconds']:.2f} x over the plain loop"
        )
        agree = "agree" if not problems else "DISAGREE"
        print(
            f"  values     {agree} with fairlearn: largest |difference| {worst:.3g} over "
            f"{len(ours['by_group'])} segments x 4 metrics + overall ROC AUC (tolerance "
            f"{TOLERANCE}); with the loop: {worst_loop:.3g}"
        )
        for p in problems + problems_loop:
            print(f"    {p}")
        print(
            f"  for scale: segment_metrics_ci with the gate's n_boot=200 (95% intervals) "
            f"{ours['boot200_seconds']:.2f} s"
        )

        gate = run_child("gate", root, args.gate_repeat)
        parts = gate["parts"]
        print()
        print(
            f"full gate on {args.rows:,} rows: {gate['seconds']:.1f} s (contract "
            f"{parts['contract']:.1f} s, drift {parts['drift']:.1f} s, run_gate model checks "
            f"{parts['model_checks']:.1f} s: 3 scorings of every row, a 200-replicate "
            f"bootstrap per segment, importance, efficiency...); "
            f"{'PASSED' if gate['passed'] else 'FAILED'}"
        )
        print(f"  {_mem(gate)}")
        for line in gate["checks"]:
            print(f"  {line[:150]}")
    load = os.getloadavg()
    print(
        f"\nwall time of the benchmark: {time.perf_counter() - started:.0f} s; load average at "
        f"end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    if problems or problems_loop:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
