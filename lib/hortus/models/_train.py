"""Training: fit on the train side, evaluate on the hold-out, learning curve, importance.

Re-exported by `hortus.models.modeling`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import polars as pl
from sklearn.inspection import permutation_importance
from sklearn.metrics import f1_score, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline

from hortus.errors import HortusError
from hortus.lakehouse.contracts import Contract
from hortus.models._estimators import (
    _check_variety,
    _outputs,
    _positive_proba,
    build_pipeline,
    target_values,
    to_model_input,
)
from hortus.models._metrics import _score_metrics, _scored, segment_metrics
from hortus.models._signature import Signature
from hortus.models._spec import SCORE, TASKS, ModelSpec
from hortus.models._split import _check_columns, _training_order, time_split


@dataclass(frozen=True)
class TrainResult:
    """A fitted pipeline with its hold-out evaluation.

    `segment_metrics` has columns segment, value, n and the task's metric
    columns (`segment_metrics`); `learning_curve` train_rows, split
    (train|holdout) and two metric columns: roc_auc, log_loss (binary,
    ranking), f1_macro, log_loss (multiclass) or rmse, mae (regression);
    `importance` feature, importance_mean, importance_std (permutation
    importance on a seeded hold-out sample: the drop in ROC AUC, F1 macro, or
    the rise in RMSE when a feature is shuffled); `predictions` the hold-out
    rows' group, time, segments, target and output columns (`predict`).
    """

    pipeline: Pipeline
    spec: ModelSpec
    metrics: dict[str, Any]
    train_metrics: dict[str, Any]
    segment_metrics: pl.DataFrame
    learning_curve: pl.DataFrame
    importance: pl.DataFrame
    cutoff: datetime | date | None
    n_train: int
    n_test: int
    predictions: pl.DataFrame
    signature: Signature


def train(
    df: pl.DataFrame,
    spec: ModelSpec,
    *,
    contracts: Sequence[Contract] = (),
    curve_points: int = 5,
    importance_rows: int = 5000,
    importance_repeats: int = 5,
) -> TrainResult:
    """Split by time, fit on the train side and evaluate on the hold-out.

    The training rows are fitted in time order (seeded order without time).  The
    learning curve refits on `curve_points` growing prefixes of that order (the
    last is the full training set, i.e. the returned model) and scores each on
    its own rows and on the hold-out.  The signature is derived from the
    training rows and `contracts` (see `Signature.from_frame`).  Every fit runs under
    `spec.threads` OpenMP threads when set (the model's bytes depend on the count).
    """
    if spec.threads is None:
        return _train(df, spec, contracts, curve_points, importance_rows, importance_repeats)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=spec.threads, user_api="openmp"):
        return _train(df, spec, contracts, curve_points, importance_rows, importance_repeats)


def _train(
    df: pl.DataFrame,
    spec: ModelSpec,
    contracts: Sequence[Contract],
    curve_points: int,
    importance_rows: int,
    importance_repeats: int,
) -> TrainResult:
    _check_columns(df, spec)
    train_df, test_df, cutoff = time_split(df, spec)
    train_df = _training_order(train_df, spec)
    y_train, y_test = target_values(train_df, spec), target_values(test_df, spec)
    _check_variety(y_train, spec)
    empty = _empty_numeric_features(train_df, spec) if spec.estimator == "hgb" else []
    if empty:
        raise HortusError(
            f"feature(s) {empty} have no value in any of the {train_df.height} training rows; "
            "drop them from the spec or train on a longer period"
        )
    x_train, x_test = to_model_input(train_df, spec), to_model_input(test_df, spec)
    pipeline = build_pipeline(spec).fit(x_train, y_train)
    if spec.task == "ranking":
        test_scores = _positive_proba(pipeline, x_test)
        predictions = _scored(test_df, spec, test_scores)
        curve = _learning_curve(
            pipeline, spec, train_df, x_train, y_train, x_test, y_test, test_scores, curve_points
        )
        train_scored = _scored(train_df, spec, _positive_proba(pipeline, x_train))
    else:
        outputs = _outputs(pipeline, x_test, spec)
        predictions = _scored(test_df, spec, outputs)
        curve = _learning_curve(
            pipeline, spec, train_df, x_train, y_train, x_test, y_test, outputs[SCORE],
            curve_points,
        )  # fmt: skip
        train_scored = _scored(train_df, spec, _outputs(pipeline, x_train, spec))
    return TrainResult(
        pipeline=pipeline,
        spec=spec,
        metrics=_score_metrics(predictions, spec),
        train_metrics=_score_metrics(train_scored, spec),
        segment_metrics=segment_metrics(predictions, spec),
        learning_curve=curve,
        importance=_importance(
            pipeline, spec, x_test, y_test, rows=importance_rows, repeats=importance_repeats
        ),
        cutoff=cutoff,
        n_train=train_df.height,
        n_test=test_df.height,
        predictions=predictions,
        signature=Signature.from_frame(train_df, spec, contracts),
    )


def _empty_numeric_features(df: pl.DataFrame, spec: ModelSpec) -> list[str]:
    """Return numeric features with no value at all in `df` (HGB cannot bin them)."""
    numeric = [f for f in spec.features if f not in spec.categorical]
    if not numeric or df.height == 0:
        return numeric if df.height == 0 else []
    nulls = df.select(
        [
            (pl.col(f).is_null() | pl.col(f).cast(pl.Float64, strict=False).is_nan()).all()
            for f in numeric
        ]  # fmt: skip
    )
    return [f for f, empty in zip(numeric, nulls.row(0), strict=True) if empty]


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None


def _learning_curve(
    pipeline: Pipeline,
    spec: ModelSpec,
    train_df: pl.DataFrame,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    test_scores: np.ndarray,
    points: int,
) -> pl.DataFrame:
    if spec.task not in ("binary", "ranking"):
        return _task_learning_curve(
            pipeline, spec, train_df, x_train, y_train, x_test, y_test, points
        )
    m = train_df.height
    sizes = sorted({max(2, round(m * (i + 1) / points)) for i in range(max(1, points))})
    rows = []
    for size in sizes:
        y_part = y_train[:size]
        if y_part.min() == y_part.max():
            continue  # a prefix with one class cannot be fitted
        if size < m and _empty_numeric_features(train_df.head(size), spec):
            continue  # e.g. no reviews yet in the earliest rows: HGB cannot bin an empty column
        if size == m:
            model, on_test = pipeline, test_scores
        else:
            model = build_pipeline(spec).fit(x_train[:size], y_part)
            on_test = _positive_proba(model, x_test)
        on_train = _positive_proba(model, x_train[:size])
        for split, y, s in (("train", y_part, on_train), ("holdout", y_test, on_test)):
            rows.append(
                {
                    "train_rows": size,
                    "split": split,
                    "roc_auc": _auc(y, s),
                    "log_loss": float(log_loss(y, s, labels=[0, 1])),
                }
            )
    schema = {
        "train_rows": pl.Int64,
        "split": pl.String,
        "roc_auc": pl.Float64,
        "log_loss": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def _curve_metrics(
    model: Pipeline, spec: ModelSpec, x: np.ndarray, y: np.ndarray, classes: np.ndarray | None
) -> dict[str, float | None]:
    """Return the learning-curve metrics of a multiclass or regression model on (x, y)."""
    if spec.task == "regression":
        err = np.asarray(model.predict(x), dtype=np.float64) - y
        return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}
    proba = np.asarray(model.predict_proba(x), dtype=np.float64)
    labels = np.asarray(model.classes_)
    pred = labels[proba.argmax(axis=1)]
    f1 = float(f1_score(y, pred, average="macro", zero_division=0))
    known = classes is not None and bool(np.isin(y, labels).all())
    loss = float(log_loss(y, proba, labels=labels)) if known else None
    return {"f1_macro": f1, "log_loss": loss}


def _task_learning_curve(
    pipeline: Pipeline,
    spec: ModelSpec,
    train_df: pl.DataFrame,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    points: int,
) -> pl.DataFrame:
    """Return the learning curve of a multiclass (f1_macro, log_loss) or regression model.

    A prefix that lacks a class of the full training set (multiclass) or whose
    target is constant (regression) is skipped, as is one with an empty
    numeric feature (hgb).
    """
    m = train_df.height
    sizes = sorted({max(2, round(m * (i + 1) / points)) for i in range(max(1, points))})
    names = ("rmse", "mae") if spec.task == "regression" else ("f1_macro", "log_loss")
    classes = np.unique(y_train) if spec.task == "multiclass" else None
    rows = []
    for size in sizes:
        y_part = y_train[:size]
        if classes is not None and len(np.unique(y_part)) < len(classes):
            continue  # a prefix without every class scores a different label set
        if classes is None and float(y_part.min()) == float(y_part.max()):
            continue
        if (
            size < m
            and spec.estimator == "hgb"
            and _empty_numeric_features(train_df.head(size), spec)
        ):
            continue
        model = pipeline if size == m else build_pipeline(spec).fit(x_train[:size], y_part)
        for split, x, y in (("train", x_train[:size], y_part), ("holdout", x_test, y_test)):
            if len(y) == 0:
                continue
            rows.append(
                {"train_rows": size, "split": split} | _curve_metrics(model, spec, x, y, classes)
            )
    schema = {"train_rows": pl.Int64, "split": pl.String} | {n: pl.Float64 for n in names}
    return pl.DataFrame(rows, schema=schema)


def _importance(
    pipeline: Pipeline,
    spec: ModelSpec,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    rows: int,
    repeats: int,
) -> pl.DataFrame:
    schema = {"feature": pl.String, "importance_mean": pl.Float64, "importance_std": pl.Float64}
    rng = np.random.default_rng(spec.seed)
    size = min(rows, len(y_test))
    idx = np.sort(rng.choice(len(y_test), size=size, replace=False))
    x, y = x_test[idx], y_test[idx]
    if spec.task in ("binary", "ranking"):
        if not 0 < y.sum() < len(y):
            return pl.DataFrame(schema=schema)  # ROC AUC is undefined on one class
        scoring = "roc_auc"
    else:
        if len(y) < 2 or len(np.unique(y)) < 2:
            return pl.DataFrame(schema=schema)  # nothing to compare permutations against
        scoring = TASKS[spec.task].scoring
    result = permutation_importance(
        pipeline, x, y, scoring=scoring, n_repeats=repeats, random_state=spec.seed
    )
    return pl.DataFrame(
        {
            "feature": list(spec.features),
            "importance_mean": result.importances_mean,
            "importance_std": result.importances_std,
        },
        schema=schema,
    ).sort(["importance_mean", "feature"], descending=[True, False])
