"""Batch monitors: each measures one aspect of the platform as long-format metric rows.

Every monitor is a function ``(lh, ..., at) -> pl.DataFrame`` returning rows of the
`ops.monitor_metrics` schema (``at, monitor, metric, subject, value, labels,
batch_id``); `write_metrics` appends them, `run_all` runs every monitor with one
`MonitorConfig`.  The computations that need no table live in pure ``*_frame`` /
`staleness_score` functions so they can be checked on small frames.

Monitors and their metrics (subject in brackets):

- ``data_quality`` [silver table, or ``table.column``]: rows_landed, rows_accepted,
  rows_quarantined, rows_unaccounted, quarantine_rate per ingest batch; null_rate
  per column and contract_violations (total and per rule) of the latest batch.
- ``freshness`` [table]: age_hours since the last Delta commit, sla_hours and
  stale (0/1) for tables whose contract sets ``freshness_sla_hours``.
- ``pipeline`` [stage]: runs, failed_runs, last_failed (0/1), last_duration_s,
  max_duration_s over a window of ops.pipeline_runs.
- ``memory`` [stage]: peak_memory_mb of the latest run, memory_ratio to the median
  of the previous runs, memory_regression (0/1).
- ``model_staleness`` [model name]: age_days, drift_share, newer_data (0/1),
  newer_rows, staleness_score (see `staleness_score`), for the champion of every
  registered model (or of the configured one).  Its training table is the model's
  `table` in the project definition (`hortus.yaml`), else the table its receipt read.
- ``feature_drift`` [feature of a champion]: drift_score (the gating statistic
  over its threshold; >= 1 is drift) and feature_drifted (0/1), with the model,
  statistic, value, threshold and p-value as labels; measured in the same comparison
  as the staleness drift (champion's training rows against the rows after them).
- ``kpi`` [``<kpi table>.<kpi>``]: value and out_of_range (0/1) per expected range of
  the project's KPI table (`kpis.table` of the project definition).
- ``access`` [table or object]: denied_attempts per user (label) in a window.
- ``realized`` [``<model> v<version> <day>[ <segment>=<value>]``]: realized_precision,
  realized_hit_rate, realized_ctr, realized_lists, realized_items or realized_pending
  of the logged predictions joined with the model's declared `outcomes`, per version,
  day and segment; realized_precision_last [``<model> v<version>``]; score_drift and
  score_mean of served scores against the training hold-out (`_monitor_realized`).
- ``retention`` [``layer.table``]: retention_days, oldest_age_days, rows and
  rows_past_retention of each table whose contract declares a retention
  (`_monitor_retention`; `hortus maintain` removes those rows).

Metric rows are flags when the metric is one of `FLAG_METRICS` and the value is > 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import polars as pl

from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring._monitor_access import (  # noqa: F401
    denied_access,
    denied_access_frame,
)
from hortus.monitoring._monitor_base import (  # noqa: F401
    FLAG_METRICS,
    METRIC_SCHEMA,
    METRICS_TABLE,
    MonitorError,
    _can_read,
    _long,
    _project,
    _utc,
    empty_metrics,
)
from hortus.monitoring._monitor_data import (  # noqa: F401
    _META_COLUMNS,
    QUARANTINE,
    data_quality,
    freshness,
    freshness_frame,
    last_commits,
)
from hortus.monitoring._monitor_kpi import (  # noqa: F401
    kpi_ranges,
    kpi_ranges_frame,
    kpi_table,
)
from hortus.monitoring._monitor_models import (  # noqa: F401
    _champion_staleness,
    _training_rows,
    _untimed_inputs,
    model_staleness,
    staleness_inputs,
    staleness_score,
    training_table,
)
from hortus.monitoring._monitor_pipeline import (  # noqa: F401
    memory_regression,
    memory_regression_frame,
    pipeline_health,
    pipeline_health_frame,
)
from hortus.monitoring._monitor_realized import realized  # noqa: F401
from hortus.monitoring._monitor_retention import retention  # noqa: F401
from hortus.monitoring.drift import DriftConfig
from hortus.params import refuse_unknown_keys

__all__ = [
    "FLAG_METRICS",
    "METRICS_TABLE",
    "METRIC_SCHEMA",
    "MONITORS",
    "MonitorConfig",
    "MonitorError",
    "QUARANTINE",
    "data_quality",
    "denied_access",
    "denied_access_frame",
    "empty_metrics",
    "flags",
    "freshness",
    "freshness_frame",
    "kpi_ranges",
    "kpi_ranges_frame",
    "kpi_table",
    "labels_of",
    "last_commits",
    "memory_regression",
    "memory_regression_frame",
    "model_staleness",
    "pipeline_health",
    "pipeline_health_frame",
    "realized",
    "retention",
    "run_all",
    "staleness_inputs",
    "staleness_score",
    "summary",
    "training_table",
    "write_metrics",
]


def write_metrics(lh: Lakehouse, metrics: pl.DataFrame) -> int | None:
    """Append metric rows to ops.monitor_metrics; return the new version (None if empty).

    Refuses a frame whose columns are not the ops.monitor_metrics ones.
    """
    missing = [c for c in METRIC_SCHEMA if c not in metrics.columns]
    if missing:
        raise MonitorError(
            f"metrics for {METRICS_TABLE}: column(s) {', '.join(missing)} missing; "
            f"expected {', '.join(METRIC_SCHEMA)}"
        )
    if metrics.height == 0:
        return None
    frame = metrics.select(list(METRIC_SCHEMA)).cast(dict(METRIC_SCHEMA))
    return lh.write(METRICS_TABLE, frame, mode="append", note="monitor metrics")


def flags(metrics: pl.DataFrame) -> pl.DataFrame:
    """Return the metric rows that need attention (a `FLAG_METRICS` metric with value > 0)."""
    return metrics.filter(pl.col("metric").is_in(FLAG_METRICS) & (pl.col("value") > 0))


# ---------------------------------------------------------------------- run all
@dataclass(frozen=True)
class MonitorConfig:
    """Settings of `run_all`; a params.yaml ``monitor`` section maps onto it.

    Examples
    --------
    >>> MonitorConfig.from_dict({"kpi_ranges": {"conversion_rate": [0.01, 0.5]}}).model is None
    True
    """

    #: registered model whose champion is checked for staleness (default: every model)
    model: str | None = None
    #: KPI column of the project's KPI table (hortus.yaml `kpis.table`) -> [min, max]
    kpi_ranges: Mapping[str, Sequence[float]] = field(default_factory=dict)
    #: keep the KPI rows whose columns hold these values (e.g. the overall segment)
    kpi_where: Mapping[str, Any] = field(default_factory=dict)
    kpi_days: int = 1
    #: report counts of every ingest batch, not only the latest
    all_batches: bool = False
    pipeline_window_hours: float = 24.0
    memory_window: int = 5
    memory_threshold: float = 2.0
    staleness_max_age_days: float = 30.0
    staleness_weights: Sequence[float] = (0.3, 0.5, 0.2)
    #: hortus.monitoring.drift.DriftConfig settings for the staleness drift
    drift: Mapping[str, Any] = field(default_factory=dict)
    denied_window_hours: float | None = 24.0
    #: monitors to run (default: all of MONITORS)
    monitors: Sequence[str] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, source: str = "monitor config"):
        """Build a config from a mapping; refuse unknown keys and unknown monitors."""
        data = dict(data or {})
        refuse_unknown_keys(data, (f.name for f in fields(cls)), source=source, error=MonitorError)
        bad = sorted(set(data.get("monitors") or ()) - set(MONITORS))
        if bad:
            raise MonitorError(
                f"{source}: unknown monitor(s) {', '.join(bad)}; known: {', '.join(MONITORS)}"
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise MonitorError(f"{source}: {exc}") from None


MONITORS = (
    "data_quality",
    "freshness",
    "pipeline",
    "memory",
    "model_staleness",
    "kpi",
    "access",
    "realized",
    "retention",
)


def run_all(lh: Lakehouse, config: MonitorConfig, at: datetime | None = None) -> pl.DataFrame:
    """Run every configured monitor at `at` (default now) and return all metric rows.

    Nothing is written; pass the result to `write_metrics`.  Rows of one run share
    `at` and a batch_id ``monitor-<at>`` where the monitor has no batch of its own.
    """
    at = _utc(at or datetime.now(UTC))
    runners = {
        "data_quality": lambda: data_quality(lh, at, all_batches=config.all_batches),
        "freshness": lambda: freshness(lh, at),
        "pipeline": lambda: pipeline_health(lh, at, window_hours=config.pipeline_window_hours),
        "memory": lambda: memory_regression(
            lh, at, window=config.memory_window, threshold=config.memory_threshold
        ),
        "model_staleness": lambda: model_staleness(
            lh,
            at,
            model=config.model,
            max_age_days=config.staleness_max_age_days,
            weights=config.staleness_weights,
            drift=DriftConfig.from_dict(config.drift, source="monitor config drift"),
        ),
        "kpi": lambda: kpi_ranges(
            lh, at, config.kpi_ranges, where=config.kpi_where, days=config.kpi_days
        ),
        "access": lambda: denied_access(lh, at, window_hours=config.denied_window_hours),
        "realized": lambda: realized(lh, at, model=config.model),
        "retention": lambda: retention(lh, at),
    }
    chosen = config.monitors or MONITORS
    frames = [runners[name]() for name in chosen]  # a loop over monitors
    run_id = "monitor-" + at.strftime("%Y%m%dT%H%M%SZ")
    return pl.concat([empty_metrics(), *frames]).with_columns(pl.col("batch_id").fill_null(run_id))


def summary(metrics: pl.DataFrame) -> pl.DataFrame:
    """Return one row per monitor: metric rows, subjects and flagged rows."""
    return (
        metrics.with_columns(
            (pl.col("metric").is_in(FLAG_METRICS) & (pl.col("value") > 0)).alias("_flag")
        )
        .group_by("monitor")
        .agg(
            pl.len().alias("rows"),
            pl.col("subject").n_unique().alias("subjects"),
            pl.col("_flag").sum().alias("flagged"),
        )
        .sort("monitor")
    )


def labels_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return the labels of one metric row as a dict."""
    return json.loads(row["labels"] or "{}")
