"""The retention monitor: per table with a contract retention, how old its oldest row is.

Metrics per table (subject ``layer.table``): retention_days, oldest_age_days (null
when the table is empty), rows and rows_past_retention (rows older than the retention
period that `hortus maintain` has not removed yet: positive after a refused retention,
or between maintain runs).  Read as the monitoring user through the table API.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from hortus.lakehouse.maintain import retention_status
from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring._monitor_base import _long, empty_metrics

RETENTION_METRICS = ("retention_days", "oldest_age_days", "rows", "rows_past_retention")


def retention(lh: Lakehouse, at: datetime) -> pl.DataFrame:
    """Return the retention metric rows of every built table that declares a retention."""
    status = retention_status(lh, now=at).filter(pl.col("built"))
    if status.height == 0:
        return empty_metrics()
    wide = status.select(
        "table",
        pl.col("days").alias("retention_days"),
        "oldest_age_days",
        "rows",
        pl.col("rows_due").alias("rows_past_retention"),
    )
    return _long(wide, monitor="retention", at=at, subject=pl.col("table"),
                 values=RETENTION_METRICS)  # fmt: skip
