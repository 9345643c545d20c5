"""What every monitor shares: the metric rows' schema, `MonitorError`, `_long` and access checks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import polars as pl

from hortus.errors import HortusError
from hortus.governance.access import Policy
from hortus.lakehouse.tables import Lakehouse

METRICS_TABLE = "ops.monitor_metrics"
METRIC_SCHEMA = pl.Schema(
    {
        "at": pl.Datetime("us", "UTC"),
        "monitor": pl.String,
        "metric": pl.String,
        "subject": pl.String,
        "value": pl.Float64,
        "labels": pl.String,
        "batch_id": pl.String,
    }
)
#: metrics whose positive value means something needs attention
FLAG_METRICS = (
    "rows_unaccounted",
    "contract_violations",
    "stale",
    "failed_runs",
    "last_failed",
    "memory_regression",
    "out_of_range",
    "denied_attempts",
    "feature_drifted",
    "rows_past_retention",
)


class MonitorError(HortusError):
    """A monitor's input or configuration is wrong (names the table, column or key)."""


# ------------------------------------------------------------------- helpers
def _utc(at: datetime) -> datetime:
    """Return `at` as an aware UTC datetime (naive values are taken as UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def empty_metrics() -> pl.DataFrame:
    """Return an empty frame of the ops.monitor_metrics schema."""
    return pl.DataFrame(schema=METRIC_SCHEMA)


def _long(
    df: pl.DataFrame,
    *,
    monitor: str,
    at: datetime,
    subject: pl.Expr,
    values: Sequence[str],
    labels: Sequence[str] = (),
    batch: str | None = None,
) -> pl.DataFrame:
    """Turn a wide frame (one row per subject) into metric rows, one per value column."""
    if df.height == 0 or not values:
        return empty_metrics()
    label_expr = (
        pl.struct([pl.col(c).cast(pl.String) for c in labels]).struct.json_encode()
        if labels
        else pl.lit("{}")
    )
    wide = df.select(
        subject.cast(pl.String).alias("subject"),
        label_expr.alias("labels"),
        (pl.col(batch).cast(pl.String) if batch else pl.lit(None, pl.String)).alias("batch_id"),
        *[pl.col(v).cast(pl.Float64) for v in values],
    )
    return (
        wide.unpivot(
            index=["subject", "labels", "batch_id"],
            on=list(values),
            variable_name="metric",
            value_name="_value",  # a value column may itself be called "value"
        )
        .rename({"_value": "value"})
        .drop_nulls("value")
        .with_columns(pl.lit(_utc(at)).alias("at"), pl.lit(monitor).alias("monitor"))
        .select(list(METRIC_SCHEMA))
        .cast(dict(METRIC_SCHEMA))
    )


def _project(lh: Lakehouse):
    """Return the project definition of the lakehouse's project, or None without one.

    The definition is found as the catalog finds its contracts (`Project.load` of the
    project root, else the project of the working directory); without any, models
    are monitored from their registry entries and receipts alone.
    """
    from hortus.project.definition import Project, ProjectError

    try:
        return Project.load(lh.paths.root)
    except ProjectError:
        return None


def _can_read(lh: Lakehouse, name: str) -> bool:
    """Return whether this user may read a table (asked of the policy; not audited)."""
    assert isinstance(lh.policy, Policy)
    return lh.exists(name) and lh.policy.decide(lh.user, "read", name).allowed
