"""What the checks share: column and label checks, and the model outputs they judge."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from hortus.errors import HortusError
from hortus.models.modeling import PREDICTION, ModelSpec, predict, predict_scores


def _need_columns(df: pl.DataFrame, columns: Sequence[str | None], what: str) -> None:
    missing = [c for c in dict.fromkeys(columns) if c is not None and c not in df.columns]
    if missing:
        raise HortusError(f"{what}: the frame lacks column(s) {missing}")


def _binary(s: pl.Series, what: str) -> np.ndarray:
    """Return a 0/1 label series as int64, or raise naming the column."""
    if s.null_count():
        raise HortusError(f"{what}: label column {s.name!r} has {s.null_count()} null(s)")
    if not (s.dtype == pl.Boolean or s.dtype.is_numeric()):
        raise HortusError(f"{what}: label column {s.name!r} must be 0/1 or bool, not {s.dtype}")
    as_float = s.cast(pl.Float64)
    bad = as_float.filter(~as_float.is_in([0.0, 1.0]))
    if len(bad):
        found = bad.unique().sort().to_list()[:5]
        raise HortusError(f"{what}: label column {s.name!r} must be 0/1, found {found}")
    return as_float.to_numpy().astype(np.int64)


def _positive_int(value: Any, name: str, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise HortusError(f"{what}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def model_outputs(pipeline: Any, df: pl.DataFrame, spec: ModelSpec) -> np.ndarray:
    """Return the per-row output the checks judge for the spec's task.

    binary/ranking: the probability of class 1; multiclass: the predicted
    class; regression: the predicted value.
    """
    if spec.task == "multiclass":
        return predict(pipeline, df, spec)[PREDICTION].to_numpy()
    return predict_scores(pipeline, df, spec)


def _outputs_of(
    pipeline: Any, df: pl.DataFrame, spec: ModelSpec, outputs: Any, what: str
) -> np.ndarray:
    """Return given outputs (checked) or `model_outputs` of `df` (labels for multiclass)."""
    if spec.task != "multiclass":
        return _scores_of(pipeline, df, spec, outputs, what)
    if outputs is None:
        return model_outputs(pipeline, df, spec)
    out = np.asarray(outputs.to_numpy() if isinstance(outputs, pl.Series) else outputs)
    if out.shape != (df.height,):
        raise HortusError(f"{what}: got {out.shape[0]} predictions for a frame of {df.height} rows")
    return out


def _scores_of(
    pipeline: Any, df: pl.DataFrame, spec: ModelSpec, scores: Any, what: str
) -> np.ndarray:
    """Return given scores (checked) or score `df` with the pipeline."""
    if scores is None:
        return predict_scores(pipeline, df, spec)
    out = np.asarray(scores.to_numpy() if isinstance(scores, pl.Series) else scores, dtype=float)
    if out.shape != (df.height,):
        raise HortusError(f"{what}: got {out.shape[0]} scores for a frame of {df.height} rows")
    if not np.isfinite(out).all():
        raise HortusError(f"{what}: scores hold NaN or infinite values")
    return out
