"""Pipeline monitors: failed runs and durations per stage, and peak memory regressions."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring._monitor_base import (
    MonitorError,
    _can_read,
    _long,
    _utc,
    empty_metrics,
)
from hortus.monitoring.runlog import RUNS_TABLE, read_runs


# ------------------------------------------------------------ pipeline health
def pipeline_health_frame(
    runs: pl.DataFrame, at: datetime, *, window_hours: float = 24.0
) -> pl.DataFrame:
    """Summarise the runs started in the `window_hours` before `at`, per stage.

    Metrics: runs, failed_runs, last_failed (0/1, the latest run's status),
    last_duration_s, max_duration_s; the latest error is a label.
    """
    at = _utc(at)
    recent = runs.filter(
        pl.col("started_at").is_between(at - timedelta(hours=window_hours), at)
    ).sort("stage", "started_at")
    wide = recent.group_by("stage", maintain_order=True).agg(
        pl.len().alias("runs"),
        (pl.col("status") == "failed").sum().alias("failed_runs"),
        (pl.col("status").last() == "failed").cast(pl.Float64).alias("last_failed"),
        pl.col("duration_s").last().alias("last_duration_s"),
        pl.col("duration_s").max().alias("max_duration_s"),
        pl.col("run_id").last().alias("last_run_id"),
        pl.col("error").drop_nulls().last().alias("last_error"),
    )
    return _long(
        wide,
        monitor="pipeline",
        at=at,
        subject=pl.col("stage"),
        values=("runs", "failed_runs", "last_failed", "last_duration_s", "max_duration_s"),
        labels=("last_run_id", "last_error"),
    )


def pipeline_health(lh: Lakehouse, at: datetime, *, window_hours: float = 24.0) -> pl.DataFrame:
    """Report failed runs and durations per stage from ops.pipeline_runs."""
    if not _can_read(lh, RUNS_TABLE):
        return empty_metrics()
    return pipeline_health_frame(read_runs(lh), at, window_hours=window_hours)


# ---------------------------------------------------------- memory regression
def memory_regression_frame(
    runs: pl.DataFrame, at: datetime, *, window: int = 5, threshold: float = 2.0
) -> pl.DataFrame:
    """Compare each stage's latest peak memory with the median of its previous runs.

    ``memory_ratio = peak of the latest run / median peak of the up to `window`
    runs before it``; ``memory_regression`` is 1 when the ratio is at least
    `threshold`.  A stage with a single run gets peak_memory_mb only.  Runs after
    `at` are ignored.
    """
    if window < 1 or threshold <= 0:
        raise MonitorError(
            f"memory regression: window must be >= 1 and threshold > 0, got {window}, {threshold}"
        )
    at = _utc(at)
    ordered = runs.filter(pl.col("started_at") <= at).sort("stage", "started_at")
    previous = pl.col("peak_memory_mb").shift(1)
    wide = (
        ordered.with_columns(
            previous.rolling_median(window_size=window, min_samples=1)
            .over("stage")
            .alias("baseline_mb"),
            pl.int_range(pl.len()).over("stage").clip(upper_bound=window).alias("baseline_runs"),
        )
        .group_by("stage", maintain_order=True)
        .last()
        .with_columns((pl.col("peak_memory_mb") / pl.col("baseline_mb")).alias("memory_ratio"))
        .with_columns(
            pl.when(pl.col("memory_ratio").is_not_null())
            .then((pl.col("memory_ratio") >= threshold).cast(pl.Float64))
            .alias("memory_regression"),
            pl.lit(threshold).alias("threshold"),
        )
    )
    return _long(
        wide,
        monitor="memory",
        at=at,
        subject=pl.col("stage"),
        values=("peak_memory_mb", "memory_ratio", "memory_regression"),
        labels=("run_id", "baseline_mb", "baseline_runs", "threshold"),
    )


def memory_regression(
    lh: Lakehouse, at: datetime, *, window: int = 5, threshold: float = 2.0
) -> pl.DataFrame:
    """Flag stages whose latest peak memory is `threshold` x the median of previous runs."""
    if not _can_read(lh, RUNS_TABLE):
        return empty_metrics()
    return memory_regression_frame(read_runs(lh), at, window=window, threshold=threshold)
