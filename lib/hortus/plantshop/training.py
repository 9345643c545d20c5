"""The plant shop's labelled examples: recommendation impressions, labelled by later orders.

An impression of plant p shown to user u at time t is positive when u orders p
within `horizon_days` after t (strictly after).  Impressions whose horizon runs
past the end of the data are dropped (their label is not known yet), so late
impressions are not silently counted as negatives.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

SPINE_COLUMNS = ("event_id", "rec_id", "user_id", "plant_id", "ts", "position")
LABEL = "label"


def labelled_impressions(events: pl.LazyFrame, horizon_days: float) -> pl.DataFrame:
    """Return one row per rec impression with `label` (1 = ordered within the horizon)."""
    horizon = timedelta(days=horizon_days)
    imps = events.filter(pl.col("event_type") == "rec_impression").select(SPINE_COLUMNS).sort("ts")
    orders = (
        events.filter(pl.col("event_type") == "order")
        .select("user_id", "plant_id", pl.col("ts").alias("order_ts"))
        .sort("order_ts")
    )
    end = events.select(pl.col("ts").max()).collect().item()
    labelled = imps.join_asof(
        orders,
        left_on="ts",
        right_on="order_ts",
        by=["user_id", "plant_id"],
        strategy="forward",
        allow_exact_matches=False,
        check_sortedness=False,
    ).with_columns(
        ((pl.col("order_ts") - pl.col("ts")) <= horizon).fill_null(False).cast(pl.Int8).alias(LABEL)
    )
    if end is None:
        return labelled.drop("order_ts").collect()
    return (
        labelled.filter(pl.col("ts") + horizon <= end)
        .drop("order_ts")
        .sort("ts", "rec_id", "position", "event_id")
        .collect()
    )
