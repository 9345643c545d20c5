"""Benchmark: exact drift at 1M and 5M rows, against a polars sort and a numpy KS/Wasserstein.

Data: `bench_drift.make_frames` (30 numeric columns: normal, log-normal and prices
rounded to cents with many ties; a third of the current columns shifted), generated per
size, not timed.

Measured in the same process for each size of `--rows`, median of `--repeat` runs:

1. hortus: `hortus.monitoring.drift.compare(reference, current)` with both raw frames and
   an exact profile (`DriftConfig(profile_points=None, exact_max_rows=None)`): KS with
   p-value, normalised Wasserstein, quantile PSI and Jensen-Shannon, null shares, for
   every column;
2. floor "polars sort": `frame.select(pl.all().sort())` of the reference and of the
   current: sorting every numeric column of both sides, which an exact KS/Wasserstein
   needs and nothing more;
3. floor "numpy": a plain numpy sort-once implementation of the two statistics per
   column (`np.sort` of each side once; KS from `searchsorted` of the pooled values into
   both sorted sides; Wasserstein, equal sizes, as the mean |a_i - b_i| of the sorted
   sides, divided by the reference's standard deviation, as hortus reports it).

The KS and Wasserstein values of 1 and 3 must agree to 1e-9 (exit non-zero otherwise).

Usage: python benchmarks/bench_drift_floor.py [--rows 1000000,5000000] [--cols 30]
       [--repeat 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from _common import machine_line, peak_rss_mb
from bench_drift import make_frames


def numpy_ks_wasserstein(ref: pl.DataFrame, cur: pl.DataFrame) -> dict[str, tuple[float, float]]:
    """Return column -> (KS, Wasserstein / reference std), sorting each side once."""
    out = {}
    for name in ref.columns:
        a, b = np.sort(ref[name].to_numpy()), np.sort(cur[name].to_numpy())
        pooled = np.concatenate([a, b])
        fa = np.searchsorted(a, pooled, side="right") / len(a)
        fb = np.searchsorted(b, pooled, side="right") / len(b)
        ks = float(np.abs(fa - fb).max())
        if len(a) != len(b):
            raise ValueError("the numpy floor's Wasserstein assumes equal sizes")
        out[name] = (ks, float(np.abs(a - b).mean() / a.std()))
    return out


def timed(fn, repeat: int):
    """Return the median wall time over `repeat` runs and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def run_size(rows: int, cols: int, seed: int, repeat: int) -> int:
    """Measure one size; print the figures; return 1 if hortus and numpy disagree."""
    from hortus.monitoring.drift import DriftConfig, compare

    exact = DriftConfig(profile_points=None, exact_max_rows=None)
    ref, cur = make_frames(rows, cols, seed)
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").is_file() else "?"
    print(f"\n{rows:,} rows x {cols} numeric columns, both sides (load {load})")
    t_h, report = timed(lambda: compare(ref, cur, config=exact), repeat)
    t_pl, _ = timed(lambda: (ref.select(pl.all().sort()), cur.select(pl.all().sort())), repeat)
    t_np, ours = timed(lambda: numpy_ks_wasserstein(ref, cur), repeat)
    print(f"{'':<52} {'seconds':>8} {'x polars':>9} {'x numpy':>8}")
    for label, secs in (
        ("hortus compare, raw vs raw, exact (4 statistics)", t_h),
        ("floor: polars sort of every column, both sides", t_pl),
        ("floor: numpy sort-once KS + Wasserstein", t_np),
    ):
        print(f"{label:<52} {secs:>8.2f} {secs / t_pl:>8.2f}x {secs / t_np:>7.2f}x")
    ks_gap = max(abs(r.stats["ks"] - ours[r.column][0]) for r in report.results)
    w_gap = max(abs(r.stats["wasserstein"] - ours[r.column][1]) for r in report.results)
    print(
        f"max |hortus - numpy|: KS {ks_gap:.1e}, normalised Wasserstein {w_gap:.1e}; "
        f"drifted {len(report.drifted_columns)}/{cols}; peak RSS so far {peak_rss_mb():,.0f} MB"
    )
    if max(ks_gap, w_gap) > 1e-9:
        print("FAIL: hortus and the numpy floor disagree", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    """Run the benchmark for each size and print figures and ratios to the floors."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1000000,5000000", help="comma-separated sizes")
    ap.add_argument("--cols", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from hortus.monitoring.drift import DriftConfig, compare

    exact = DriftConfig(profile_points=None, exact_max_rows=None)
    print(machine_line())
    ref, cur = make_frames(1000, args.cols, args.seed)
    compare(ref, cur, config=exact)  # warm up imports and threads
    status = 0
    for rows in (int(r) for r in args.rows.split(",")):
        status |= run_size(rows, args.cols, args.seed, args.repeat)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
