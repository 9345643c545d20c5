"""The plant shop's labelled examples: recommendation impressions, labelled by later orders.

An impression of plant p shown to user u at time t is positive when u orders p
within `horizon_days` after t (strictly after).  Impressions whose horizon runs
past the end of the data are dropped (their label is not known yet), so late
impressions are not silently counted as negatives.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from hortus.lakehouse.contracts import Column, Contract

SPINE_COLUMNS = ("event_id", "rec_id", "user_id", "plant_id", "ts", "position")
LABEL = "label"
TRAINING_SET = "gold.training_set"


def derived_contracts(contracts: dict[str, Contract]) -> list[Contract]:
    """Return the contracts of the feature logs and of the labelled training set."""
    from hortus.domains.plantshop.features import FEATURES
    from hortus.features.store import feature_columns, log_contract

    logs = [log_contract(g, contracts) for g in FEATURES.groups]
    events = contracts["silver.events"]
    spine = [events.column(c) for c in SPINE_COLUMNS]
    desc = "1 if the user ordered the plant within the horizon after ts."
    label = Column(LABEL, "int", False, min=0, max=1, description=desc)
    ts = Contract(
        name=TRAINING_SET.split(".", 1)[1],
        layer="gold",
        columns=(
            *spine,
            label,
            *feature_columns(FEATURES, contracts | {c.full_name: c for c in logs}),
        ),
        description="Recommendation impressions labelled by later orders, with every feature "
        "as of the impression time (point in time).",
        owner="ml-engineers",
        primary_key=("event_id",),
        order_by="ts",
        shop_opened=events.shop_opened,
        source=events.source,
    )
    return [*logs, ts]


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


def build_spine(lh, params: dict) -> pl.DataFrame:
    """Return the labelled impressions (the `examples.build` hook of hortus.yaml).

    `params` is params.yaml's `features` section (`label_horizon_days`).
    """
    return labelled_impressions(lh.scan("silver.events"), float(params["label_horizon_days"]))
