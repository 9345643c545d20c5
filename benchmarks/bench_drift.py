"""Benchmark: drift of 1M rows x 30 numeric columns, against scipy per column.

Times `hortus.monitoring.drift.compare` (KS with p-value, normalised Wasserstein, quantile PSI
and Jensen-Shannon for every column, plus null shares) in three ways:

1. raw reference, default profile (10,000-point quantile sketch of the reference);
2. raw reference, exact profile (`profile_points=None`, every reference value);
3. a stored profile (built once, as the monitors do) against the current batch;

and, as the peer measured in the same run, `scipy.stats.ks_2samp` +
`scipy.stats.wasserstein_distance` per column (two statistics instead of four).
Also prints how far our KS and Wasserstein values are from scipy's.

Usage: python benchmarks/bench_drift.py [--rows 1000000] [--cols 30] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import polars as pl


def make_frames(rows: int, cols: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return a reference and a current frame; a third of the current columns drift."""
    rng = np.random.default_rng(seed)
    ref, cur = {}, {}
    for j in range(cols):
        name = f"x{j:02d}"
        kind = j % 3
        if kind == 0:  # normal; every third of these is shifted
            ref[name] = rng.normal(0.0, 1.0, rows)
            cur[name] = rng.normal(0.2 if j % 9 == 0 else 0.0, 1.0, rows)
        elif kind == 1:  # skewed; some get a heavier tail
            ref[name] = rng.lognormal(0.0, 0.8, rows)
            cur[name] = rng.lognormal(0.0, 1.0 if j % 4 == 1 else 0.8, rows)
        else:  # prices rounded to cents: many ties
            ref[name] = np.round(rng.gamma(3.0, 7.0, rows), 2)
            cur[name] = np.round(rng.gamma(3.0, 7.5 if j % 5 == 2 else 7.0, rows), 2)
    return pl.DataFrame(ref), pl.DataFrame(cur)


def timed(fn, repeat: int) -> tuple[float, object]:
    """Return the median wall time over `repeat` runs and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    """Run the benchmark and print figures and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from scipy import stats

    from hortus.monitoring.drift import DriftConfig, Profile, compare

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {load[0]:.2f}, "
        f"Python {platform.python_version()}, polars {pl.__version__}, numpy {np.__version__}"
    )
    ref, cur = make_frames(args.rows, args.cols, args.seed)
    print(f"data: {args.rows:,} rows x {args.cols} numeric columns, reference and current")
    compare(ref.head(1000), cur.head(1000))  # warm up imports (scipy.special, threads)

    sketch = DriftConfig()
    exact = DriftConfig(profile_points=None)
    t_sketch, rep_sketch = timed(lambda: compare(ref, cur, config=sketch), args.repeat)
    t_exact, rep_exact = timed(lambda: compare(ref, cur, config=exact), args.repeat)
    t_prof, profile = timed(lambda: Profile.from_frame(ref, config=sketch), args.repeat)
    t_stored, _ = timed(lambda: compare(profile, cur, config=sketch), args.repeat)

    t = time.perf_counter()
    peer = {}
    for c in ref.columns:
        a, b = ref[c].to_numpy(), cur[c].to_numpy()
        peer[c] = (stats.ks_2samp(a, b), stats.wasserstein_distance(a, b) / a.std())
    t_peer = time.perf_counter() - t

    def gaps(report) -> tuple[float, float]:
        ks = max(abs(r.stats["ks"] - peer[r.column][0].statistic) for r in report.results)
        w = max(abs(r.stats["wasserstein"] - peer[r.column][1]) for r in report.results)
        return ks, w

    print(f"\n{'':<48} {'seconds':>8} {'vs scipy':>9}")
    rows = [
        ("hortus compare, raw reference (sketch 10k)", t_sketch),
        ("hortus compare, raw reference (exact)", t_exact),
        ("hortus Profile.from_frame (once per reference)", t_prof),
        ("hortus compare, stored profile vs current", t_stored),
    ]
    for label, secs in rows:
        print(f"{label:<48} {secs:>8.2f} {t_peer / secs:>8.1f}x")
    print(f"{'scipy ks_2samp + wasserstein_distance per col':<48} {t_peer:>8.2f} {1.0:>8.1f}x")
    print(f"(hortus: median of {args.repeat} runs; scipy: one run)")
    for label, report in (("exact", rep_exact), ("sketch", rep_sketch)):
        ks_gap, w_gap = gaps(report)
        print(
            f"max |hortus - scipy| ({label}): KS {ks_gap:.2e}, normalised Wasserstein {w_gap:.2e}"
        )
    drifted = rep_sketch.drifted_columns
    print(f"drifted columns ({len(drifted)} of {args.cols}): {', '.join(drifted)}")


if __name__ == "__main__":
    main()
