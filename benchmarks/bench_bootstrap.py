"""Benchmark: per-segment ROC AUC with 200-replicate bootstrap intervals, against a plain bootstrap.

Data (seeded, not timed): `--rows` scored rows (default 1M) in `--segments` uneven
segments (default 20), a 0/1 label and a continuous score (a noisy logit through a
sigmoid: almost every score distinct, the costly case for rank-based AUC).

Measured in the same process, median of `--repeat` runs:

1. hortus: `hortus.checks.model_checks.segment_metrics_ci` (binary, roc_auc, n_boot=200,
   the gate's default; min_segment_size=1 so every segment is bootstrapped).  It draws
   multinomial counts per (label, score level) cell, at most 128 levels per segment
   (`hortus.checks._segments._cell_bootstrap`), not rows;
2. peer: a plain numpy resampling bootstrap written for this one metric: per segment the
   scores are ranked once (`np.unique`), then for each replicate the row multiplicities
   are drawn (`bincount` of `integers(0, n, n)`: every row resampled) and the AUC is read
   from positive/negative counts per score level (three `bincount`s and a cumsum).  It
   has no validation, no other metric, no undefined-replicate handling: the least work
   for a plain resampling bootstrap, and the reference the intervals must agree with.

Checks: the point estimates agree to 1e-9; the intervals come from different random
streams, so their difference is printed in units of its Monte Carlo standard error
(3.78 sigma / sqrt(n_boot) for a 2.5% or 97.5% bound, sigma = the peer's replicate SD);
the script exits non-zero beyond 5 standard errors (from 100 replicates on).

Usage: python benchmarks/bench_bootstrap.py [--rows 1000000] [--segments 20] [--n-boot 200]
       [--repeat 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import polars as pl
from _common import machine_line, peak_rss_mb


def make_frame(rows: int, segments: int, seed: int) -> pl.DataFrame:
    """Return `rows` scored rows: segment (uneven sizes), label 0/1, score in (0, 1)."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(1.0, 4.5, segments)
    seg = rng.choice(segments, size=rows, p=weights / weights.sum())
    signal = rng.normal(0.0, 1.0, rows) + 0.05 * seg  # segments differ a little
    label = (rng.uniform(size=rows) < 1 / (1 + np.exp(-(signal - 1.0)))).astype(np.int8)
    score = 1 / (1 + np.exp(-(0.8 * signal + rng.normal(0.0, 1.0, rows))))
    return pl.DataFrame({"segment": [f"s{i:02d}" for i in seg], "label": label, "score": score})


def numpy_floor(
    segments: np.ndarray, y: np.ndarray, s: np.ndarray, n_boot: int, seed: int
) -> dict[str, tuple[float, float, float, float]]:
    """Return segment -> (AUC, 2.5% bound, 97.5% bound, replicate SD): plain bootstrap."""
    rng = np.random.default_rng(seed)
    out = {}
    order = np.argsort(segments, kind="stable")
    values, starts = np.unique(segments[order], return_index=True)
    for value, rows in zip(values, np.split(order, starts[1:]), strict=True):
        ys, n = y[rows].astype(np.float64), len(rows)
        levels, inv = np.unique(s[rows], return_inverse=True)
        width = len(levels)

        def auc(w: np.ndarray, ys=ys, inv=inv, width=width) -> float:
            pos = np.bincount(inv, weights=w * ys, minlength=width)
            neg = np.bincount(inv, weights=w * (1.0 - ys), minlength=width)
            below = np.cumsum(neg) - neg
            return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))

        point = auc(np.ones(n))
        boot = np.array(
            [
                auc(np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64))
                for _ in range(n_boot)
            ]
        )
        defined = boot[np.isfinite(boot)]
        low, high = np.quantile(defined, [0.025, 0.975])
        out[str(value)] = (point, float(low), float(high), float(defined.std()))
    return out


def main() -> int:
    """Run the benchmark and print figures and the ratio to the floor."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--segments", type=int, default=20)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from hortus.checks.model_checks import segment_metrics_ci
    from hortus.models.modeling import ModelSpec

    print(machine_line())
    df = make_frame(args.rows, args.segments, args.seed)
    spec = ModelSpec("label", ("score",), segments=("segment",))
    scores = df["score"].to_numpy()
    sizes = df["segment"].value_counts()["count"]
    print(
        f"data: {args.rows:,} scored rows, {args.segments} segments ({sizes.min():,} to "
        f"{sizes.max():,} rows), {args.n_boot} bootstrap replicates, roc_auc"
    )
    small = df.head(2000)
    segment_metrics_ci(None, small, spec, n_boot=2, scores=small["score"].to_numpy())  # warm

    def hortus_run():
        return segment_metrics_ci(
            None, df, spec, n_boot=args.n_boot, min_segment_size=1, scores=scores
        )

    seg_np, y_np = df["segment"].to_numpy(), df["label"].to_numpy()
    times_h, times_f, cpu_h, cpu_f = [], [], [], []
    for _ in range(args.repeat):
        t, c = time.perf_counter(), time.process_time()
        ours = hortus_run()
        times_h.append(time.perf_counter() - t)
        cpu_h.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        floor = numpy_floor(seg_np, y_np, scores, args.n_boot, args.seed + 1)
        times_f.append(time.perf_counter() - t)
        cpu_f.append(time.process_time() - c)
    t_h, t_f = statistics.median(times_h), statistics.median(times_f)
    c_h, c_f = statistics.median(cpu_h), statistics.median(cpu_f)

    table = ours.table.filter(pl.col("segment") == "segment")
    est_gap = ci_gap = mc_gap = 0.0
    for row in table.iter_rows(named=True):
        point, low, high, sd = floor[row["value"]]
        est_gap = max(est_gap, abs(row["estimate"] - point))
        gap = max(abs(row["ci_low"] - low), abs(row["ci_high"] - high))
        ci_gap = max(ci_gap, gap)
        mc_gap = max(mc_gap, gap / (3.78 * sd / np.sqrt(args.n_boot)))
    print(f"\n{'':<58} {'seconds':>8} {'cpu s':>8} {'x peer':>8}")
    label = f"hortus segment_metrics_ci (n_boot={args.n_boot})"
    print(f"{label:<58} {t_h:>8.2f} {c_h:>8.2f} {t_h / t_f:>7.3f}x")
    print(f"{'peer (the former floor): plain numpy resampling bootstrap':<58} {t_f:>8.2f} "
          f"{c_f:>8.2f} {1.0:>7.3f}x")  # fmt: skip
    print(
        f"(median of {args.repeat} run(s); peak RSS {peak_rss_mb():,.0f} MB; "
        f"peer / hortus = {t_f / t_h:.1f} in seconds, {c_f / c_h:.1f} in CPU seconds, which "
        "another job on the machine disturbs less)"
    )
    print(
        f"max |hortus - peer|: estimate {est_gap:.1e}, interval bounds {ci_gap:.1e} = "
        f"{mc_gap:.2f} Monte Carlo standard errors (different random streams)"
    )
    # with few replicates the 2.5% quantile is too rough for the normal-theory error
    if est_gap > 1e-9 or table.height != args.segments or (args.n_boot >= 100 and mc_gap > 5):
        print("FAIL: hortus and the plain bootstrap disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
