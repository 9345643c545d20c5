"""Gold: daily business KPIs of the shop, overall (region ALL) and per region."""

from __future__ import annotations

import polars as pl

KPI_TABLE = "gold.kpi_daily"


def _aggregate(events: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
    is_order = pl.col("event_type") == "order"
    return events.group_by(by).agg(
        pl.col("session_id").n_unique().cast(pl.Int64).alias("sessions"),
        pl.col("order_id").filter(is_order).drop_nulls().n_unique().cast(pl.Int64).alias("orders"),
        pl.col("session_id").filter(is_order).n_unique().cast(pl.Int64).alias("converted_sessions"),
        (pl.col("quantity") * pl.col("price")).filter(is_order).sum().round(2).alias("revenue"),
        (pl.col("event_type") == "rec_impression").sum().cast(pl.Int64).alias("rec_impressions"),
        (pl.col("event_type") == "rec_click").sum().cast(pl.Int64).alias("rec_clicks"),
    )


def _ratio(num: str, den: str) -> pl.Expr:
    return pl.when(pl.col(den) > 0).then(pl.col(num) / pl.col(den)).otherwise(None)


def daily_kpis(events: pl.LazyFrame, users: pl.LazyFrame) -> pl.LazyFrame:
    """Compute daily KPIs per region and overall from silver events and users.

    A session is counted on each UTC day it has events; a day's revenue is the sum
    of quantity x unit price of its order lines; AOV = revenue / distinct orders.
    """
    regions = users.select("user_id", "region").unique("user_id", keep="first")
    e = events.join(regions, on="user_id", how="left").with_columns(
        pl.col("ts").dt.date().alias("date"), pl.col("region").fill_null("UNKNOWN")
    )
    per_region = _aggregate(e, ["date", "region"])
    overall = _aggregate(e, ["date"]).with_columns(pl.lit("ALL").alias("region"))
    cols = [
        "date",
        "region",
        "sessions",
        "orders",
        "converted_sessions",
        "revenue",
        "rec_impressions",
        "rec_clicks",
    ]
    return (
        pl.concat([overall.select(cols), per_region.select(cols)])
        .with_columns(
            _ratio("converted_sessions", "sessions").alias("conversion_rate"),
            _ratio("revenue", "orders").round(2).alias("aov"),
            _ratio("rec_clicks", "rec_impressions").alias("rec_ctr"),
        )
        .select(
            "date",
            "region",
            "sessions",
            "orders",
            "converted_sessions",
            "conversion_rate",
            "revenue",
            "aov",
            "rec_impressions",
            "rec_clicks",
            "rec_ctr",
        )
        .sort("date", "region")
    )


def build(lh) -> pl.DataFrame:
    """Return gold.kpi_daily from silver (the `kpis.build` hook of hortus.yaml)."""
    return daily_kpis(lh.scan("silver.events"), lh.scan("silver.users")).collect()


def summary(table: pl.DataFrame) -> dict:
    """Return the overall totals of the KPI table (reports/kpis.json)."""
    overall = table.filter(pl.col("region") == "ALL")
    sessions = int(overall["sessions"].sum())
    return {
        "days": overall.height,
        "sessions": sessions,
        "orders": int(overall["orders"].sum()),
        "revenue": round(float(overall["revenue"].sum()), 2),
        "conversion_rate": round(float(overall["converted_sessions"].sum()) / max(sessions, 1), 6),
        "rec_ctr": round(
            float(overall["rec_clicks"].sum()) / max(int(overall["rec_impressions"].sum()), 1), 6
        ),
    }
