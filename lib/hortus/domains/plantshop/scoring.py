"""Batch scoring for the plant shop: top-k plants per user, written to gold, logged in ops.

Candidates are every (user, plant) pair with the plant in stock as of the scoring
time; features come from the offline store as of that time (the same as-of join
as training), the model scores them, and each user's k best plants go to
`gold.recommendations`.  Every served prediction is appended to
`ops.prediction_log` with the model version, so monitoring can join outcomes later.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import polars as pl

from hortus.domains.plantshop.features import FEATURES
from hortus.executor import parallel
from hortus.executor.base import executor_for
from hortus.features import store as fsm
from hortus.features.definitions import point_in_time
from hortus.lakehouse.tables import Lakehouse

RECOMMENDATIONS = "gold.recommendations"
PREDICTION_LOG = "ops.prediction_log"


def _in_stock(lh: Lakehouse, at: datetime) -> pl.LazyFrame:
    return (
        lh.scan("silver.plants")
        .filter(pl.col("updated_at") < at)
        .sort("updated_at")
        .group_by("plant_id")
        .agg(pl.col("stock").last())
        .filter(pl.col("stock") > 0)
        .select("plant_id")
    )


def candidate_items(lh: Lakehouse, at: datetime) -> pl.DataFrame:
    """Return the plants in stock at `at`: what the online service ranks for a buyer."""
    return _in_stock(lh, at).sort("plant_id").collect()


def candidates(lh: Lakehouse, at: datetime) -> pl.DataFrame:
    """Return every (user, plant) pair: users signed up before `at`, plants in stock at `at`."""
    users = lh.scan("silver.users").filter(pl.col("signup_at") < at).select("user_id").unique()
    plants = _in_stock(lh, at)
    pairs = users.join(plants, how="cross").sort("user_id", "plant_id").collect()
    return pairs.with_columns(pl.lit(at).cast(pl.Datetime("us", "UTC")).alias("as_of"))


def serving_frame(lh: Lakehouse, at: datetime, *, users: int, seed: int) -> pl.DataFrame:
    """Return the model input a scoring run would see for a seeded sample of users at `at`."""
    pairs = candidates(lh, at)
    chosen = (
        pairs.select("user_id")
        .unique()
        .sort("user_id")
        .sample(n=min(users, pairs["user_id"].n_unique()), seed=seed)
    )
    pairs = pairs.join(chosen, on="user_id", how="semi")
    return point_in_time(FEATURES, fsm.read_logs(lh, FEATURES), pairs, "as_of")


def recommend(
    lh: Lakehouse,
    pipeline,
    signature,
    spec,
    *,
    at: datetime,
    top_k: int,
    model_name: str,
    model_version: int,
    executor=None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score all candidates as of `at`; return (top-k recommendations, prediction log rows).

    On a distributing executor (default: the project's) the candidates are scored
    per user shard as tasks (`hortus.executor.parallel.score_spine`): the same top-k.
    """
    from hortus.models.modeling import score_frame

    pairs = candidates(lh, at)
    executor = executor or executor_for(lh.paths.root)
    if executor.kind != "local" and executor.distributes(pairs.height):
        scored = parallel.score_spine(lh, FEATURES, pairs, "as_of", ["user_id"], pipeline,
                                      signature, spec, executor)  # fmt: skip
    else:
        frame = point_in_time(FEATURES, fsm.read_logs(lh, FEATURES), pairs, "as_of")
        scored = score_frame(pipeline, signature, frame, spec)
    inputs = list(signature.names)
    top = (
        scored.select(
            "user_id",
            "plant_id",
            "as_of",
            pl.col("score").cast(pl.Float64),
            pl.struct(inputs).struct.json_encode().alias("features"),
        )
        .sort(["user_id", "score", "plant_id"], descending=[False, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1).over("user_id").alias("rank"))
        .filter(pl.col("rank") <= top_k)
        .with_columns(
            pl.lit(model_name).alias("model_name"),
            pl.lit(model_version, pl.Int64).alias("model_version"),
        )
    )
    batch_id = hashlib.sha256(
        f"{model_name}:{model_version}:{at.isoformat()}".encode()
    ).hexdigest()[:16]
    recs = top.select(
        "user_id", "plant_id", pl.col("rank").cast(pl.Int64), "score", "model_name",
        "model_version", "as_of", pl.lit(batch_id).alias("batch_id"),
    )  # fmt: skip
    log = top.select(
        pl.lit(batch_id).alias("batch_id"),
        "model_name",
        "model_version",
        pl.concat_str(
            pl.lit('{"plant_id": "'), "plant_id", pl.lit('", "user_id": "'), "user_id", pl.lit('"}')
        ).alias("request"),
        "features",
        "score",
        pl.col("rank").cast(pl.Int64),
        "as_of",
        pl.lit(datetime.now(UTC)).cast(pl.Datetime("us", "UTC")).alias("logged_at"),
    )
    return recs, log


def score(
    lh: Lakehouse,
    pipeline,
    signature,
    spec,
    *,
    at: datetime,
    params: dict,
    model_name: str,
    model_version: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score for the `score` stage (the `scoring.build` hook of hortus.yaml): top_k per user."""
    return recommend(lh, pipeline, signature, spec, at=at, top_k=int(params.get("top_k", 10)),
                     model_name=model_name, model_version=model_version)  # fmt: skip


def predictions_hash(recs: pl.DataFrame) -> str:
    """Return a SHA-256 of the recommendations (sorted), to prove rebuilds give the same ones."""
    ordered = recs.sort("user_id", "rank").select("user_id", "plant_id", "rank", "score")
    return hashlib.sha256(ordered.write_csv().encode()).hexdigest()


def summary(recs: pl.DataFrame) -> dict:
    """Return a JSON-friendly summary of a batch."""
    return json.loads(
        json.dumps(
            {
                "users": recs["user_id"].n_unique(),
                "rows": recs.height,
                "plants_recommended": recs["plant_id"].n_unique(),
                "mean_top1_score": float(recs.filter(pl.col("rank") == 1)["score"].mean() or 0),
                "predictions_sha256": predictions_hash(recs),
            }
        )
    )
