"""Scoring latency, throughput, memory, size and leaks against a baseline (`efficiency`)."""

from __future__ import annotations

import gc
import tempfile
import time
import tracemalloc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hortus.checks._inputs import _need_columns, _positive_int
from hortus.checks._result import CheckResult, _decide
from hortus.errors import HortusError
from hortus.models.modeling import ModelSpec, Signature, predict_scores, save_model

_DEFAULT_RATIOS = {
    "row_p99_ms": 2.0,
    "batch_p99_ms": 2.0,
    "peak_memory_bytes": 2.0,
    "model_bytes": 2.0,
}


def _rows(df: pl.DataFrame, count: int, rng: np.random.Generator) -> pl.DataFrame:
    """Return `count` rows of `df`: a seeded sample, drawn with replacement if `df` is smaller."""
    if df.height == 0:
        raise HortusError("efficiency: the frame has no rows to score")
    replace = count > df.height
    return df[np.sort(rng.choice(df.height, size=count, replace=replace))]


def _traced(call: Any) -> tuple[int, int]:
    """Return (traced memory kept, traced peak above the start) of one call."""
    gc.collect()
    start, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    result = call()
    current, peak = tracemalloc.get_traced_memory()
    del result
    return current - start, peak - start


def efficiency(
    pipeline: Any,
    df: pl.DataFrame,
    spec: ModelSpec,
    *,
    baseline: Mapping[str, Any] | CheckResult | None = None,
    rows: int = 100,
    repeats: int = 10,
    batch: int = 1000,
    warmup: int = 3,
    leak_calls: int = 20,
    max_growth_per_call: int = 4096,
    max_ratios: Mapping[str, float] | None = None,
    model_bytes: int | None = None,
    seed: int = 0,
) -> CheckResult:
    """Measure scoring latency, throughput, memory, size and leaks, relative to a baseline.

    A scoring call is `predict_scores(pipeline, frame, spec)` (input
    conversion included).  Measured, after `warmup` untimed calls:

    * row_p50_ms / row_p99_ms: `rows` single-row calls on sampled rows;
    * batch_p50_ms / batch_p99_ms: `repeats` calls on `batch` sampled rows
      (drawn with replacement when `df` is smaller); throughput_rows_per_s =
      batch / median batch time;
    * peak_memory_bytes: tracemalloc peak of one batch call above its start;
    * model_bytes: size of the skops artifact `save_model` writes (to a
      temporary directory; the signature is derived from `df`), or the value
      given;
    * memory growth: traced memory kept after `leak_calls` batch calls,
      compared with after the warm-up; growth_per_call_bytes above
      `max_growth_per_call` fails (memory retained by every call, a leak).
      A scikit-learn pipeline retains a few hundred bytes per call in
      interpreter caches; one that keeps its 1,000-row output keeps 8 KB.

    Timing is never judged on its own: with a `baseline` (the stats, the
    `to_dict()` or the `CheckResult` of the champion's efficiency run,
    measured in the same run), each metric of `max_ratios` (default:
    row_p99_ms, batch_p99_ms, peak_memory_bytes, model_bytes at 2.0) fails
    when candidate / baseline exceeds its ratio.
    """
    what = "efficiency"
    rows = _positive_int(rows, "rows", what, minimum=2)
    repeats = _positive_int(repeats, "repeats", what, minimum=2)
    batch = _positive_int(batch, "batch", what)
    warmup = _positive_int(warmup, "warmup", what, minimum=0)
    leak_calls = _positive_int(leak_calls, "leak_calls", what)
    ratios = dict(_DEFAULT_RATIOS if max_ratios is None else max_ratios)
    _need_columns(df, spec.features, what)
    rng = np.random.default_rng(seed)
    singles = _rows(df, rows, rng)
    single_frames = [singles.slice(i, 1) for i in range(rows)]
    batch_frame = _rows(df, batch, rng)

    def score_batch() -> np.ndarray:
        return predict_scores(pipeline, batch_frame, spec)

    for _ in range(warmup):
        score_batch()
        predict_scores(pipeline, single_frames[0], spec)
    row_times = np.empty(rows)
    for i, frame in enumerate(single_frames):
        t0 = time.perf_counter()
        predict_scores(pipeline, frame, spec)
        row_times[i] = time.perf_counter() - t0
    batch_times = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        score_batch()
        batch_times[i] = time.perf_counter() - t0

    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        _, peak = _traced(score_batch)
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(leak_calls):
            score_batch()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        if started:
            tracemalloc.stop()
    growth = after - before
    if model_bytes is None:
        with tempfile.TemporaryDirectory(prefix="hortus-efficiency-") as tmp:
            path = Path(tmp) / "model.skops"
            save_model(pipeline, Signature.from_frame(df, spec), path)
            model_bytes = path.stat().st_size
    stats: dict[str, Any] = {
        "row_p50_ms": float(np.quantile(row_times, 0.5) * 1e3),
        "row_p99_ms": float(np.quantile(row_times, 0.99) * 1e3),
        "batch_p50_ms": float(np.quantile(batch_times, 0.5) * 1e3),
        "batch_p99_ms": float(np.quantile(batch_times, 0.99) * 1e3),
        "batch_rows": batch,
        "throughput_rows_per_s": float(batch / np.median(batch_times)),
        "peak_memory_bytes": int(peak),
        "model_bytes": int(model_bytes),
        "memory_growth_bytes": int(growth),
        "growth_per_call_bytes": float(growth / leak_calls),
        "leak_calls": leak_calls,
    }
    failures: list[tuple[str, float | None, float | None]] = []
    if stats["growth_per_call_bytes"] > max_growth_per_call:
        failures.append(
            (
                f"traced memory grew by {growth} bytes over {leak_calls} scoring calls of "
                f"{batch} rows ({stats['growth_per_call_bytes']:.0f} bytes per call > "
                f"max_growth_per_call {max_growth_per_call}): the scorer keeps memory per call",
                stats["growth_per_call_bytes"],
                float(max_growth_per_call),
            )
        )
    base = baseline.stats if isinstance(baseline, CheckResult) else baseline
    if isinstance(base, Mapping) and isinstance(base.get("stats"), Mapping):
        base = base["stats"]
    compared = []
    for key, bound in ratios.items():
        if key not in stats:
            raise HortusError(f"{what}: max_ratios names unknown metric {key!r}")
        ref = None if base is None else base.get(key)
        ratio = stats[key] / ref if ref else None
        passed = ratio is None or ratio <= bound
        compared.append(
            {
                "metric": key,
                "value": float(stats[key]),
                "baseline": None if ref is None else float(ref),
                "ratio": ratio,
                "max_ratio": float(bound),
                "passed": passed,
            }
        )
        if not passed:
            failures.append(
                (
                    f"{key} {stats[key]:.4g} is {ratio:.2f}x the baseline {ref:.4g} "
                    f"(> max ratio {bound})",
                    ratio,
                    float(bound),
                )
            )
    table = pl.DataFrame(
        compared,
        schema={
            "metric": pl.String,
            "value": pl.Float64,
            "baseline": pl.Float64,
            "ratio": pl.Float64,
            "max_ratio": pl.Float64,
            "passed": pl.Boolean,
        },
        orient="row",
    )
    ok = (
        f"row p99 {stats['row_p99_ms']:.3g} ms, batch p99 {stats['batch_p99_ms']:.3g} ms, "
        f"{stats['throughput_rows_per_s']:.0f} rows/s, peak {stats['peak_memory_bytes']} B, "
        f"model {stats['model_bytes']} B, growth {stats['growth_per_call_bytes']:.0f} B/call"
        + ("; within the baseline ratios" if base is not None else "; no baseline to compare")
    )
    headline = (stats["growth_per_call_bytes"], float(max_growth_per_call))
    return _decide(what, failures, headline, ok, table, stats)
