"""Business KPI monitor: the project's KPI table against expected [min, max] ranges."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl

from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring._monitor_base import (
    MonitorError,
    _can_read,
    _long,
    _project,
    empty_metrics,
)


def kpi_table(lh: Lakehouse) -> str | None:
    """Return the project's KPI table (`kpis.table` of hortus.yaml), or None without one."""
    project = _project(lh)
    return project.kpis.table if project is not None and project.kpis else None


# ---------------------------------------------------------------- business KPIs
def kpi_ranges_frame(
    kpis: pl.DataFrame,
    ranges: Mapping[str, Sequence[float]],
    at: datetime,
    *,
    where: Mapping[str, Any] | None = None,
    days: int = 1,
    table: str = "kpis",
    date: str = "date",
) -> pl.DataFrame:
    """Check the last `days` dates of daily KPIs against expected [min, max].

    Metrics per KPI and date: value and out_of_range (0/1; a null KPI value is out
    of range).  `ranges` maps a KPI column to [min, max] (either may be null);
    `where` keeps the rows whose columns hold the given values (e.g. the overall
    row of a table with one row per day and segment), its columns become labels.
    `table` names the KPI table in messages and subjects (``<table>.<kpi>``),
    `date` its date column.
    """
    where = dict(where or {})
    for col in (date, *where):
        if col not in kpis.columns:
            raise MonitorError(
                f"kpi ranges: no column {col!r} in {table} (columns: {', '.join(kpis.columns)})"
            )
    for kpi, bounds in ranges.items():
        if kpi not in kpis.columns:
            raise MonitorError(
                f"kpi range for {kpi!r}: no such column in {table} "
                f"(columns: {', '.join(kpis.columns)})"
            )
        if len(bounds) != 2:
            raise MonitorError(f"kpi range for {kpi!r}: expected [min, max], got {bounds!r}")
    if not ranges:
        return empty_metrics()
    rows = kpis.filter(*[pl.col(c) == v for c, v in where.items()]) if where else kpis
    dates = rows[date].unique().sort().tail(days)
    rows = rows.filter(pl.col(date).is_in(dates.implode()))
    bounds = pl.DataFrame(
        {
            "kpi": list(ranges),
            "min": [None if b[0] is None else float(b[0]) for b in ranges.values()],
            "max": [None if b[1] is None else float(b[1]) for b in ranges.values()],
        },
        schema={"kpi": pl.String, "min": pl.Float64, "max": pl.Float64},
    )
    keys = [date, *where]
    long = rows.select(*keys, *[pl.col(k).cast(pl.Float64) for k in ranges]).unpivot(
        index=keys, variable_name="kpi"
    )
    wide = long.join(bounds, on="kpi").with_columns(
        (
            pl.col("value").is_null()
            | (pl.col("value") < pl.col("min")).fill_null(False)
            | (pl.col("value") > pl.col("max")).fill_null(False)
        )
        .cast(pl.Float64)
        .alias("out_of_range")
    )
    return _long(
        wide,
        monitor="kpi",
        at=at,
        subject=pl.lit(table + ".") + pl.col("kpi"),
        values=("value", "out_of_range"),
        labels=(*keys, "min", "max"),
    )


def kpi_ranges(
    lh: Lakehouse,
    at: datetime,
    ranges: Mapping[str, Sequence[float]],
    *,
    where: Mapping[str, Any] | None = None,
    days: int = 1,
) -> pl.DataFrame:
    """Flag business KPIs of the project's KPI table outside their expected [min, max] ranges.

    The table is `kpis.table` of the project definition; ranges for a project that
    declares no KPIs are refused (MonitorError naming the key).
    """
    if not ranges:
        return empty_metrics()
    table = kpi_table(lh)
    if table is None:
        raise MonitorError(
            f"monitor kpi_ranges ({', '.join(ranges)}): the project declares no `kpis` table "
            "in hortus.yaml; drop kpi_ranges or declare kpis"
        )
    if not _can_read(lh, table):
        return empty_metrics()
    return kpi_ranges_frame(lh.read(table), ranges, at, where=where, days=days, table=table)
