"""Generic batch scoring: score the rows a model definition selects, log every prediction.

A project whose model declares no `scoring.build` hook is scored here: the rows of
`scoring.source` chosen by `scoring.select` (all; unlabelled = target is null;
latest = the latest time stamp) are validated against the model signature, scored,
and written to `scoring.table` (gold.predictions_<model> by default) with their
keys, the score, the predicted class or value and the model version; each
prediction is appended to ops.prediction_log with its request keys and inputs.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import polars as pl

from hortus.errors import HortusError
from hortus.executor.base import Executor, executor_for
from hortus.lakehouse.tables import Lakehouse
from hortus.project.definition import ModelDef

PREDICTION_LOG = "ops.prediction_log"


def select_rows(frame: pl.DataFrame, model: ModelDef) -> pl.DataFrame:
    """Return the rows of the scoring source that `model.scoring.select` picks.

    Examples
    --------
    >>> from hortus.project.definition import ModelDef, ScoringDef
    >>> m = ModelDef("m", "binary", "silver.t", "y", ("x",),
    ...              scoring=ScoringDef("gold.p", "silver.t", select="unlabelled"))
    >>> select_rows(pl.DataFrame({"x": [1, 2], "y": [1, None]}), m).height
    1
    """
    how = model.scoring.select
    if how == "unlabelled":
        if model.target not in frame.columns:
            return frame
        return frame.filter(pl.col(model.target).is_null())
    if how == "latest":
        if not model.time:
            raise HortusError(
                f"model {model.name}: scoring.select latest needs a `time` column in hortus.yaml"
            )
        return frame.filter(pl.col(model.time) == pl.col(model.time).max())
    return frame


def _keys(lh: Lakehouse, model: ModelDef) -> list[str]:
    contract = lh.catalog.get(model.scoring.table)
    skip = {"score", "prediction", "model_name", "model_version", "as_of", "batch_id"}
    return [c for c in contract.column_names if c not in skip]


def batch_score(
    lh: Lakehouse,
    pipeline,
    signature,
    spec,
    model: ModelDef,
    *,
    at: datetime,
    model_name: str,
    model_version: int,
    executor: Executor | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score the selected rows; return (predictions for `scoring.table`, prediction log rows).

    On a distributing `executor` (default: the project's) the rows are scored per
    entity shard as tasks (`hortus.executor.parallel.score_sharded`); same rows.
    """
    from hortus.models.modeling import score_frame

    executor = executor or executor_for(lh.paths.root)
    keys = _keys(lh, model)
    if executor.kind != "local":
        from hortus.executor import parallel

        plan = parallel.scoring_read(
            lh, model.scoring.source, model.scoring.select, model.target, model.time
        )
        scored = parallel.score_sharded(plan, keys, pipeline, signature, spec, executor)
    else:
        frame = select_rows(lh.read(model.scoring.source), model)
        scored = score_frame(pipeline, signature, frame, spec)
    if "prediction" not in scored.columns:
        if spec.task == "regression":
            prediction = pl.col("score")
        else:
            prediction = (pl.col("score") >= spec.threshold).cast(pl.Int64).cast(pl.String)
        scored = scored.with_columns(prediction.alias("prediction"))
    ptype = lh.catalog.get(model.scoring.table).schema["prediction"]
    batch_id = hashlib.sha256(
        f"{model_name}:{model_version}:{at.isoformat()}".encode()
    ).hexdigest()[:16]
    as_of = pl.lit(at).cast(pl.Datetime("us", "UTC")).alias("as_of")
    preds = scored.select(
        *keys,
        pl.col("score").cast(pl.Float64),
        pl.col("prediction").cast(ptype),
        pl.lit(model_name).alias("model_name"),
        pl.lit(model_version, pl.Int64).alias("model_version"),
        as_of,
        pl.lit(batch_id).alias("batch_id"),
    )
    request = (
        pl.struct(keys).struct.json_encode()
        if keys
        else pl.int_range(pl.len()).cast(pl.String).alias("request")
    )
    log = scored.select(
        pl.lit(batch_id).alias("batch_id"),
        pl.lit(model_name).alias("model_name"),
        pl.lit(model_version, pl.Int64).alias("model_version"),
        request.alias("request"),
        pl.struct(list(signature.names)).struct.json_encode().alias("features"),
        pl.col("score").cast(pl.Float64),
        pl.lit(None, pl.Int64).alias("rank"),
        as_of,
        pl.lit(datetime.now(UTC)).cast(pl.Datetime("us", "UTC")).alias("logged_at"),
    )
    return preds, log


def summary(preds: pl.DataFrame) -> dict:
    """Return a JSON-friendly summary of a batch, with a hash of the sorted predictions."""
    keys = [c for c in preds.columns if c not in ("as_of", "batch_id", "model_name")]
    ordered = preds.select(keys).sort(keys)
    digest = hashlib.sha256(ordered.write_csv().encode()).hexdigest()
    mean = preds["score"].mean() if preds.height else None
    return json.loads(
        json.dumps(
            {
                "rows": preds.height,
                "mean_score": float(mean) if mean is not None else None,
                "predictions_sha256": digest,
            }
        )
    )
