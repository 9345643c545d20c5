"""Metrics of scored rows: ranking (@k), binary, multiclass and regression.

`evaluate` scores a frame and returns the metrics of its task; `segment_metrics`
returns them by segment value.  Re-exported by `hortus.models.modeling` (see its
docstring for the metrics of each task and the ranking definitions).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    r2_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline

from hortus.errors import HortusError
from hortus.models._estimators import (
    _labels,
    _output_frame,
    _outputs,
    predict_scores,
    target_values,
    to_model_input,
)
from hortus.models._spec import PREDICTION, PROBA_PREFIX, SCORE, ModelSpec
from hortus.models._split import _check_columns


def ranking_per_group(
    frame: pl.DataFrame, group: str, target: str, score: str, k: int
) -> pl.DataFrame:
    """Return one row per ranked list: its size, positives, hits@k, DCG@k and ideal DCG@k.

    The lists come sorted by group value (`_g`); NDCG@k of a
    list is dcg / idcg, defined for lists with a positive (`ranking_metrics`).
    """
    if not isinstance(k, int) or k < 1:
        raise HortusError(f"k must be a positive integer, got {k!r}")
    y = frame[target].cast(pl.Float64)
    s = frame[score].cast(pl.Float64)
    if y.null_count() or (y.len() and not y.is_in([0.0, 1.0]).all()):
        raise HortusError(f"ranking target {target!r} must be 0/1 without nulls")
    if s.null_count() or s.is_nan().any():
        raise HortusError(f"ranking score {score!r} has null or NaN values")
    per_group = (
        pl.DataFrame({"_g": frame[group], "_y": y, "_s": s})
        .lazy()
        .with_row_index("_row")
        .sort(["_g", "_s", "_y", "_row"], descending=[False, True, False, False], nulls_last=True)
        .with_columns(
            _rank=pl.int_range(1, pl.len() + 1).over("_g"),
            _npos=pl.col("_y").sum().over("_g"),
        )
        .with_columns(
            _top=pl.col("_rank") <= k,
            _disc=1.0 / (pl.col("_rank").cast(pl.Float64) + 1.0).log(2),
        )
        .group_by("_g", maintain_order=True)
        .agg(
            n_items=pl.len(),
            n_pos=pl.col("_y").sum(),
            hits=pl.col("_y").filter(pl.col("_top")).sum(),
            dcg=(pl.col("_y") * pl.col("_disc")).filter(pl.col("_top")).sum(),
            # the ideal list puts the positives at ranks 1..n_pos
            idcg=pl.col("_disc").filter(pl.col("_rank") <= pl.min_horizontal("_npos", k)).sum(),
        )
        .collect()
    )
    return per_group


def ranking_metrics(
    frame: pl.DataFrame, group: str, target: str, score: str, k: int
) -> dict[str, Any]:
    """Return mean precision@k, recall@k and NDCG@k over the groups with a positive.

    Vectorised with polars: rows are sorted by group, score descending, label
    ascending (pessimistic ties) and row order, ranked within their group, then
    aggregated per group.  See the `hortus.models.modeling`
    docstring for the definitions.

    Returns
    -------
    dict
        precision_at_k, recall_at_k, ndcg_at_k (None when no group holds a
        positive), groups (all groups) and groups_with_positives (those averaged).

    Examples
    --------
    >>> f = pl.DataFrame({"g": [1, 1, 1], "y": [0, 1, 1], "s": [0.9, 0.8, 0.1]})
    >>> m = ranking_metrics(f, "g", "y", "s", k=2)
    >>> m["precision_at_k"], m["recall_at_k"], round(m["ndcg_at_k"], 4)
    (0.5, 0.5, 0.3869)
    """
    per_group = ranking_per_group(frame, group, target, score, k)
    scored = per_group.filter(pl.col("n_pos") > 0).select(
        precision=pl.col("hits") / pl.min_horizontal("n_items", k),
        recall=pl.col("hits") / pl.col("n_pos"),
        ndcg=pl.col("dcg") / pl.col("idcg"),
    )
    means = scored.mean().row(0, named=True) if scored.height else {}
    return {
        "precision_at_k": means.get("precision"),
        "recall_at_k": means.get("recall"),
        "ndcg_at_k": means.get("ndcg"),
        "groups": per_group.height,
        "groups_with_positives": scored.height,
    }


def _score_metrics(frame: pl.DataFrame, spec: ModelSpec, score: str = SCORE) -> dict[str, Any]:
    """Return every metric of scored rows (labels in spec.target, outputs as `_outputs`)."""
    if spec.task == "binary":
        return _binary_metrics(frame, spec, score)
    if spec.task == "multiclass":
        return _multiclass_metrics(frame, spec)
    if spec.task == "regression":
        return _regression_metrics(frame, spec)
    y = _labels(frame, spec)
    s = frame[score].to_numpy().astype(np.float64)
    out = _probability_metrics(y, s)
    group = spec.group
    if group is None:
        group = "_one_list"
        frame = frame.with_columns(pl.lit(0).alias(group))
    rank = ranking_metrics(frame, group, spec.target, score, spec.k)
    out.update(rank, k=spec.k)
    return out


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _probability_metrics(y: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    """Return the metrics of 0/1 labels `y` and positive-class probabilities `s`."""
    n, pos = len(y), int(y.sum())
    return {
        "n": n,
        "positives": pos,
        "base_rate": pos / n if n else None,
        "roc_auc": float(roc_auc_score(y, s)) if 0 < pos < n else None,
        "log_loss": float(log_loss(y, s, labels=[0, 1])) if n else None,
        "average_precision": float(average_precision_score(y, s)) if pos else None,
    }


def _binary_metrics(frame: pl.DataFrame, spec: ModelSpec, score: str) -> dict[str, Any]:
    """Return the metrics of a binary classifier (threshold metrics at spec.threshold)."""
    y = _labels(frame, spec)
    s = frame[score].to_numpy().astype(np.float64)
    n, pos = len(y), int(y.sum())
    picked = s >= spec.threshold
    tp = int((picked & (y == 1)).sum())
    fp = int((picked & (y == 0)).sum())
    fn = pos - tp
    return _probability_metrics(y, s) | {
        "threshold": float(spec.threshold),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, pos),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(int((picked == (y == 1)).sum()), n),
    }


def _multiclass_metrics(frame: pl.DataFrame, spec: ModelSpec) -> dict[str, Any]:
    """Return the metrics of a multiclass classifier (labels compared as strings)."""
    target_values(frame, spec)  # the target rules, with their messages
    y = frame[spec.target].cast(pl.String).to_numpy().astype(str)
    pred = frame[PREDICTION].cast(pl.String).to_numpy().astype(str)
    proba_cols = [c for c in frame.columns if c.startswith(PROBA_PREFIX)]
    classes = [c.removeprefix(PROBA_PREFIX) for c in proba_cols]
    n = len(y)
    out: dict[str, Any] = {
        "n": n,
        "classes": len(classes),
        "accuracy": float((y == pred).mean()) if n else None,
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if n else None,
        "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0)) if n else None,
        "log_loss": None,
        "roc_auc_ovr": None,
    }
    known = np.isin(y, classes)
    if n and known.all():  # a class unseen in training has no probability column
        proba = frame.select(proba_cols).to_numpy().astype(np.float64)
        out["log_loss"] = float(log_loss(y, proba, labels=classes))
        aucs = [
            float(roc_auc_score(y == c, proba[:, j]))
            for j, c in enumerate(classes)
            if 0 < int((y == c).sum()) < n
        ]
        out["roc_auc_ovr"] = float(np.mean(aucs)) if aucs else None
    return out


def _regression_metrics(frame: pl.DataFrame, spec: ModelSpec) -> dict[str, Any]:
    """Return the metrics of a regression model."""
    y = target_values(frame, spec)
    pred = frame[PREDICTION].to_numpy().astype(np.float64)
    n = len(y)
    err = pred - y
    return {
        "n": n,
        "rmse": float(np.sqrt(np.mean(err**2))) if n else None,
        "mae": float(np.mean(np.abs(err))) if n else None,
        "r2": float(r2_score(y, pred)) if n >= 2 and float(y.min()) != float(y.max()) else None,
        "mean_target": float(y.mean()) if n else None,
        "mean_prediction": float(pred.mean()) if n else None,
    }


def evaluate(pipeline: Pipeline, df: pl.DataFrame, spec: ModelSpec) -> dict[str, Any]:
    """Score `df` and return its metrics.

    `df` needs the features, the target and the group column (if any); the time
    and segment columns are not used.

    Returns
    -------
    dict
        The metrics of the task (see the `hortus.models.modeling` docstring).  For ranking:
        roc_auc, log_loss, average_precision (None when undefined: one class
        only), precision_at_k, recall_at_k, ndcg_at_k (means over the groups
        with at least one positive), groups, groups_with_positives, n,
        positives, base_rate and k.
    """
    _check_columns(df, spec, roles=False)
    if spec.task == "ranking":
        scored = _scored(df, spec, predict_scores(pipeline, df, spec), roles=False)
    else:
        scored = _scored(df, spec, _outputs(pipeline, to_model_input(df, spec), spec), roles=False)
    return _score_metrics(scored, spec)


def _scored(
    df: pl.DataFrame,
    spec: ModelSpec,
    scores: np.ndarray | dict[str, np.ndarray],
    *,
    roles: bool = True,
) -> pl.DataFrame:
    """Return group (time, segments if `roles`), target and the outputs of `df`.

    `scores` is the score array, or the output columns of `_outputs`.
    """
    cols = (spec.group, spec.time, *spec.segments) if roles else (spec.group,)
    keep = list(dict.fromkeys(c for c in cols if c))
    if isinstance(scores, dict):
        return pl.concat([df.select(*keep, spec.target), _output_frame(scores)], how="horizontal")
    return df.select(*keep, spec.target).with_columns(pl.Series(SCORE, scores))


_SEGMENT_SCHEMA = {
    "segment": pl.String,
    "value": pl.String,
    "n": pl.Int64,
    "positives": pl.Int64,
    "base_rate": pl.Float64,
    "roc_auc": pl.Float64,
    "log_loss": pl.Float64,
    "average_precision": pl.Float64,
    "precision_at_k": pl.Float64,
    "recall_at_k": pl.Float64,
    "ndcg_at_k": pl.Float64,
}


_TASK_SEGMENT_SCHEMA: dict[str, dict[str, Any]] = {
    "ranking": _SEGMENT_SCHEMA,
    "binary": {
        k: v for k, v in _SEGMENT_SCHEMA.items() if not k.endswith("_at_k")
    } | {"precision": pl.Float64, "recall": pl.Float64, "f1": pl.Float64},
    "multiclass": {
        "segment": pl.String, "value": pl.String, "n": pl.Int64, "accuracy": pl.Float64,
        "balanced_accuracy": pl.Float64, "f1_macro": pl.Float64, "log_loss": pl.Float64,
        "roc_auc_ovr": pl.Float64,
    },
    "regression": {
        "segment": pl.String, "value": pl.String, "n": pl.Int64, "rmse": pl.Float64,
        "mae": pl.Float64, "r2": pl.Float64, "mean_target": pl.Float64,
        "mean_prediction": pl.Float64,
    },
}  # fmt: skip


def segment_metrics(scored: pl.DataFrame, spec: ModelSpec) -> pl.DataFrame:
    """Return metrics of scored rows by value of each segment column (one row per value).

    The metric columns are those of the task (ranking: roc_auc, log_loss,
    average_precision and the @k metrics; binary: no @k metrics but
    precision, recall, f1 at the threshold; multiclass: accuracy,
    balanced_accuracy, f1_macro, log_loss, roc_auc_ovr; regression: rmse, mae,
    r2, mean_target, mean_prediction).
    """
    schema = _TASK_SEGMENT_SCHEMA[spec.task]
    rows = []
    for seg in spec.segments:
        parts = scored.with_columns(pl.col(seg).cast(pl.String).alias("_value")).partition_by(
            "_value", as_dict=True, maintain_order=True
        )
        for (value,), part in sorted(parts.items(), key=lambda kv: (kv[0][0] is None, kv[0])):
            m = _score_metrics(part, spec)
            rows.append({"segment": seg, "value": value} | {k: m[k] for k in schema if k in m})
    return pl.DataFrame(rows, schema=schema)
