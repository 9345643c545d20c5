"""Benchmark: the champion comparison's paired ROC AUC bootstrap, against resampling rows.

Data (seeded, not timed): `--rows` scored rows (default 1M): a 0/1 label, the
candidate's continuous score and the champion's (the candidate's logit plus noise, as a
retrained model's scores are: correlated, almost every score distinct).

Measured in the same process, one scope (the comparison's overall scope; each segment
value is one more such scope), `--n-boot` replicates (200, the gate's default):

1. hortus: `hortus.checks._champion._paired_replicates`, which draws multinomial counts
   per (label, candidate level, champion level) cell, at most 128 levels per model and
   only the occupied cells, and reads both AUCs from them;
2. hortus rows: the same function on the same scope without its cells: every replicate
   draws n row indices and scores both models on them (what the gate did before, 99.6 s
   at 1M rows in the gate);
3. peer: a plain numpy paired bootstrap written for this one metric: each model's scores
   ranked once (`np.unique`), then per replicate the row multiplicities are drawn
   (`bincount` of `integers(0, n, n)`) and both AUCs are read from positive/negative
   counts per score level; no validation, no seeding per replicate.

Checks: the point difference agrees with scikit-learn's to 1e-9; the intervals come from
different random streams, so their difference is printed in units of its Monte Carlo
standard error (3.78 sigma / sqrt(n_boot) per 2.5% or 97.5% bound, sigma = the peer's
replicate SD); the script exits non-zero beyond 5 standard errors (from 100 replicates).

Usage: python benchmarks/bench_champion.py [--rows 1000000] [--n-boot 200] [--skip-rows]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np
from _common import machine_line, peak_rss_mb


def make_scores(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (labels 0/1, candidate scores, champion scores), seeded."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(0.0, 1.0, rows)
    y = (rng.uniform(size=rows) < 1 / (1 + np.exp(-(signal - 1.0)))).astype(np.int64)
    logit = 0.8 * signal + rng.normal(0.0, 1.0, rows)
    cand = 1 / (1 + np.exp(-logit))
    champ = 1 / (1 + np.exp(-(logit + rng.normal(0.0, 0.5, rows))))
    return y, cand, champ


def numpy_peer(y: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int, seed: int):
    """Return AUC(a) - AUC(b) on `n_boot` row resamples (plain paired bootstrap)."""
    rng = np.random.default_rng(seed)
    n, yf = len(y), y.astype(np.float64)
    ranked = [np.unique(s, return_inverse=True) for s in (a, b)]

    def auc(w: np.ndarray, levels: np.ndarray, inv: np.ndarray) -> float:
        pos = np.bincount(inv, weights=w * yf, minlength=len(levels))
        neg = np.bincount(inv, weights=w * (1.0 - yf), minlength=len(levels))
        return float((pos * (np.cumsum(neg) - neg + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))

    out = np.empty(n_boot)
    for r in range(n_boot):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        out[r] = auc(w, *ranked[0]) - auc(w, *ranked[1])
    return out


def main() -> int:
    """Run the benchmark and print figures and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-rows", action="store_true", help="leave out the row-drawing path")
    args = ap.parse_args()

    from sklearn.metrics import roc_auc_score

    from hortus.checks._champion import _pair, _paired_replicates

    print(machine_line())
    y, cand, champ = make_scores(args.rows, args.seed)
    print(f"data: {args.rows:,} scored rows, {args.n_boot} paired replicates, roc_auc")
    timings: dict[str, tuple[float, float, np.ndarray]] = {}

    def timed(name, fn):
        t, c = time.perf_counter(), time.process_time()
        reps = fn()
        timings[name] = (time.perf_counter() - t, time.process_time() - c, reps)

    point_c, point_h, pair = _pair("roc_auc", (0, 0), y, cand, champ)  # not timed: both paths
    print(f"occupied cells: {len(pair.cells.counts):,} of {2 * 128 * 128:,}")
    timed("hortus (cell counts)", lambda: _paired_replicates((0, 0, args.n_boot), [pair], 1))
    if not args.skip_rows:
        rows_pair = replace(pair, cells=None)
        timed(
            "hortus rows (before)", lambda: _paired_replicates((0, 0, args.n_boot), [rows_pair], 1)
        )
    peer_name = "peer (floor): plain numpy paired bootstrap"
    timed(peer_name, lambda: numpy_peer(y, cand, champ, args.n_boot, 2))

    t_peer = timings[peer_name][0]
    print(f"\n{'':<40} {'seconds':>8} {'cpu s':>8} {'x peer':>8}")
    for name, (t, c, _) in timings.items():
        print(f"{name:<40} {t:>8.2f} {c:>8.2f} {t / t_peer:>7.3f}x")
    print(f"(peak RSS {peak_rss_mb():,.0f} MB)")

    exact = roc_auc_score(y, cand) - roc_auc_score(y, champ)
    peer = timings[peer_name][2]
    sd = peer.std()
    se = 3.78 * sd / np.sqrt(args.n_boot)
    worst = 0.0
    for name, (_, _, reps) in timings.items():
        gap = np.abs(np.quantile(reps, [0.025, 0.975]) - np.quantile(peer, [0.025, 0.975])).max()
        worst = max(worst, gap / se)
        low, high = np.quantile(reps, [0.025, 0.975])
        print(f"{name:<40} interval [{low:+.5f}, {high:+.5f}], "
              f"|bound - peer's| = {gap / se:.2f} MC s.e.")  # fmt: skip
    print(f"point difference {point_c - point_h:+.6f} (scikit-learn {exact:+.6f})")
    if abs(point_c - point_h - exact) > 1e-9 or (args.n_boot >= 100 and worst > 5):
        print("FAIL: hortus and the plain bootstrap disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
