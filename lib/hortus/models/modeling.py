"""Train, evaluate, save and score tabular models of four task types.

This layer knows nothing about any particular domain.  It takes a polars table,
a `ModelSpec` naming the task, the target, the feature columns (some of them
categorical), an optional time column (for the hold-out), an optional group
column (a ranked list such as a slate, for the @k metrics) and segment columns
(to report metrics by), and returns a fitted scikit-learn pipeline with its
evaluation.

Tasks (`TASKS`, `primary_metric`)
---------------------------------
============  ===================  ==============  =====================================
task          target               estimators      primary metric (direction)
============  ===================  ==============  =====================================
binary        0/1 or bool          hgb, logreg     roc_auc (higher is better)
ranking       0/1 or bool          hgb, logreg     ndcg_at_k (higher is better)
multiclass    string or int, >= 2  hgb, logreg     f1_macro (higher is better)
regression    int or float         hgb, linear     rmse (lower is better)
============  ===================  ==============  =====================================

A spec without a task (e.g. a registered spec written before tasks existed) is
"ranking" when it names a group and "binary" otherwise.  "hgb" is
HistGradientBoostingClassifier, or HistGradientBoostingRegressor for
regression; "logreg" is LogisticRegression (classification only); "linear" is
Ridge (regression only: L2-regularised least squares, stable with one-hot
encoded categoricals, `alpha` 1.0 unless the params say otherwise).

Metrics per task (`evaluate`, `TrainResult.metrics`; n is the row count):

* ranking: roc_auc, log_loss, average_precision, precision_at_k, recall_at_k,
  ndcg_at_k, groups, groups_with_positives, positives, base_rate, k;
* binary: roc_auc, log_loss, average_precision, and at the decision threshold
  `spec.threshold` (score >= threshold predicts 1): precision, recall, f1,
  accuracy; positives, base_rate, threshold.  No @k metrics;
* multiclass: accuracy, balanced_accuracy, f1_macro, log_loss, roc_auc_ovr
  (one-vs-rest ROC AUC, macro mean over the classes that have both outcomes),
  classes (number of classes of the model);
* regression: rmse, mae, r2, mean_target, mean_prediction.

Model output (`predict`, `score_frame`, `predict_scores`):

* binary and ranking: `score` = probability of class 1 (binary also gets
  `prediction` = 1 when score >= threshold, else 0);
* multiclass: `prediction` = the most probable class (ties: the first class in
  sorted order), `score` = its probability, and `proba_<class>` per class;
* regression: `prediction` = `score` = the predicted value.

`predict_scores` returns the `score` column as a 1-D array.  The learning curve
and permutation importance use ROC AUC for binary and ranking (columns
roc_auc, log_loss), f1_macro for multiclass (f1_macro, log_loss) and RMSE for
regression (rmse, mae; importance = the rise in RMSE when a feature is
permuted).

Design
------
- Input format: `to_model_input` turns the feature columns into a 2-D numpy
  *object* array in `spec.features` order: categoricals as Python `str` (null ->
  `nan`), everything else as float (null -> `nan`; bool -> 0/1, date -> days and
  datetime -> seconds since the epoch).  scikit-learn 1.9 accepts polars frames
  end to end, but it turns a null in a string column into `None`, which
  `OrdinalEncoder` treats as one more category rather than as missing; the object
  array makes every null a real `nan`, so missing values reach the estimator as
  missing.  No pandas anywhere.
- Pipeline: a `ColumnTransformer` selecting columns by position, then the
  estimator.  `hgb`: `OrdinalEncoder` (unknown and missing -> `nan`) for
  categoricals, numeric passthrough, `HistGradientBoostingClassifier` with
  native categorical support and `early_stopping=False` unless the params say
  otherwise.  `logreg`: one-hot encoding (unknown -> all zeros) for categoricals,
  median imputation and scaling for numerics, `LogisticRegression`.  The
  estimator always gets `random_state=spec.seed`.
- Hold-out: the last `holdout_fraction` of time (`time_split`); whole groups stay
  on one side.
- Ranking metrics (`ranking_metrics`), per group then averaged over the groups
  that hold at least one positive (a group without positives has no defined
  recall or NDCG, and counting it as zero precision would mix "no relevant item
  exists" with "the model missed it"):

  * rank = position by score descending; ties are broken pessimistically
    (negatives before positives), then by row order, so a constant score never
    looks better than chance;
  * precision@k = hits in the top k / min(k, group size) (a short list is not
    penalised for slots it does not have);
  * recall@k = hits in the top k / positives in the group;
  * NDCG@k = DCG@k / ideal DCG@k with gain = label and discount
    1 / log2(rank + 1), as `sklearn.metrics.ndcg_score`.

  Without a group column the whole frame is one ranked list.
- Artifacts: skops (never pickle).  `skops.io.dumps` is not byte-deterministic:
  its zip entries carry the current time and its entry names and `__id__` memo
  keys are `id()` of Python objects.  `save_model` rewrites the archive: memo
  ids renumbered 1, 2, ... in order of first appearance in `schema.json`, array
  files renamed in the same order, entries sorted, stored uncompressed (no zlib
  version dependence) with a fixed 1980-01-01 timestamp and fixed attributes;
  the result is checked to load with `skops.io.loads` before it is written.
  The same fitted model therefore gives the same bytes and sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    r2_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from hortus.errors import ArtifactError, HortusError, SignatureError
from hortus.lakehouse.contracts import Contract

ESTIMATORS = ("hgb", "logreg", "linear")
SCORE = "score"
PREDICTION = "prediction"
PROBA_PREFIX = "proba_"
_RESERVED_PARAMS = {
    "hgb": {"random_state", "categorical_features"},
    "logreg": {"random_state"},
    "linear": {"random_state"},
}
_DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "hgb": {"max_iter": 200, "learning_rate": 0.1, "early_stopping": False},
    "logreg": {"max_iter": 1000},
    "linear": {},
}
# Types a loaded artifact may contain beyond what skops trusts by default.
_TRUSTED_PREFIXES = ("sklearn.", "numpy.")
# HistGradientBoostingClassifier's internal preprocessor holds
# functools.partial(sklearn.utils.validation.check_array, ...); the wrapped
# function is audited as a type of its own, so the partial adds no reach.
_TRUSTED_EXTRA = frozenset({"functools.partial"})
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_MAX_SHOWN = 5


# ---------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """What a task type learns and how it is judged.

    Parameters
    ----------
    name
        "binary", "ranking", "multiclass" or "regression".
    primary_metric
        The headline metric of `evaluate` (the gate compares it with the
        champion's), and whether higher is better.
    estimators
        The `ModelSpec.estimator` values the task accepts.
    curve_metric
        The metric of the learning curve and of permutation importance.
    scoring
        The scikit-learn scorer of permutation importance (higher is better).
    segment_metric
        The default metric of `hortus.checks.model_checks.segment_metrics_ci`.
    """

    name: str
    primary_metric: str
    higher_is_better: bool
    estimators: tuple[str, ...]
    curve_metric: str
    scoring: str
    segment_metric: str

    @property
    def classifier(self) -> bool:
        """Return True for the tasks fitted by a classifier."""
        return self.name != "regression"


TASKS: dict[str, Task] = {
    "binary": Task("binary", "roc_auc", True, ("hgb", "logreg"), "roc_auc", "roc_auc", "roc_auc"),
    "ranking": Task(
        "ranking", "ndcg_at_k", True, ("hgb", "logreg"), "roc_auc", "roc_auc", "roc_auc"
    ),
    "multiclass": Task(
        "multiclass", "f1_macro", True, ("hgb", "logreg"), "f1_macro", "f1_macro", "f1_macro"
    ),
    "regression": Task(
        "regression",
        "rmse",
        False,
        ("hgb", "linear"),
        "rmse",
        "neg_root_mean_squared_error",
        "rmse",
    ),  # fmt: skip
}

# metric name -> True when higher is better (every metric `evaluate` reports)
METRIC_DIRECTIONS: dict[str, bool] = {
    "roc_auc": True,
    "average_precision": True,
    "log_loss": False,
    "precision_at_k": True,
    "recall_at_k": True,
    "ndcg_at_k": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "accuracy": True,
    "balanced_accuracy": True,
    "f1_macro": True,
    "roc_auc_ovr": True,
    "rmse": False,
    "mae": False,
    "r2": True,
}


def primary_metric(spec: ModelSpec | str) -> tuple[str, bool]:
    """Return (name, higher_is_better) of the primary metric of a spec or task name.

    Examples
    --------
    >>> primary_metric("regression")
    ('rmse', False)
    >>> primary_metric(ModelSpec("y", ("x",), group="g"))
    ('ndcg_at_k', True)
    """
    name = spec if isinstance(spec, str) else spec.task
    if name not in TASKS:
        raise HortusError(f"unknown task {name!r}; expected one of {tuple(TASKS)}")
    task = TASKS[name]
    return task.primary_metric, task.higher_is_better


# ---------------------------------------------------------------- spec


@dataclass(frozen=True)
class ModelSpec:
    """What to learn from a table and how to evaluate it.

    Parameters
    ----------
    target
        Label column, no nulls: 0/1 or bool (binary, ranking), string or
        integer classes (multiclass), int or float (regression).
    features
        Model input columns, in input order.
    categorical
        The features to encode as categories (a subset of `features`).
    time
        Column for the time-based hold-out; None for a seeded random split.
    group
        Ranked-list id (e.g. a slate) for the @k metrics; None = one list.
    segments
        Columns to report hold-out metrics by.
    k
        Cut-off of the ranking metrics.
    holdout_fraction
        Share of rows (the latest ones) in the hold-out.
    seed
        Seed of every random choice (split without time, estimator, samples).
    estimator
        "hgb" (HistGradientBoosting, classifier or regressor by task), "logreg"
        (LogisticRegression, classification) or "linear" (Ridge, regression).
    params
        Estimator hyper-parameters, e.g. max_iter, learning_rate, max_leaf_nodes.
    task
        "binary", "ranking", "multiclass" or "regression" (see `TASKS`); when
        not given, "ranking" if `group` is set, else "binary" (so specs saved
        before tasks existed load unchanged).
    threshold
        Decision threshold of a binary model: score >= threshold predicts 1
        (precision/recall/F1 and fairness are measured there).

    Examples
    --------
    >>> spec = ModelSpec(target="y", features=("a", "b"), categorical=("a",))
    >>> spec.estimator, spec.task
    ('hgb', 'binary')
    """

    target: str
    features: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    time: str | None = None
    group: str | None = None
    segments: tuple[str, ...] = ()
    k: int = 5
    holdout_fraction: float = 0.2
    seed: int = 0
    estimator: str = "hgb"
    params: dict = field(default_factory=dict)
    task: str | None = None
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.task is None:
            object.__setattr__(self, "task", "ranking" if self.group is not None else "binary")
        if self.task not in TASKS:
            raise HortusError(f"ModelSpec.task must be one of {tuple(TASKS)}, got {self.task!r}")
        for name in ("features", "categorical", "segments"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise HortusError(f"ModelSpec.{name} must be a sequence of names, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "params", dict(self.params))
        if not self.features:
            raise HortusError("ModelSpec.features is empty")
        dupes = sorted({f for f in self.features if self.features.count(f) > 1})
        if dupes:
            raise HortusError(f"ModelSpec.features lists {dupes} more than once")
        odd = [c for c in self.categorical if c not in self.features]
        if odd:
            raise HortusError(f"ModelSpec.categorical {odd} are not features")
        if self.target in self.features:
            raise HortusError(f"ModelSpec.target {self.target!r} is also a feature")
        roles = [self.target, self.time, self.group, *self.segments]
        if SCORE in roles:
            raise HortusError(f"a column named {SCORE!r} cannot be target/time/group/segment")
        if self.task != "ranking" and PREDICTION in roles:
            raise HortusError(
                f"a column named {PREDICTION!r} cannot be target/time/group/segment of a "
                f"{self.task} model (it is an output column)"
            )
        if self.estimator not in ESTIMATORS:
            raise HortusError(f"ModelSpec.estimator must be one of {ESTIMATORS}")
        allowed = TASKS[self.task].estimators
        if self.estimator not in allowed:
            hint = (
                "logreg is a classifier; use 'linear' (Ridge) or 'hgb' for regression"
                if self.estimator == "logreg"
                else "'linear' (Ridge) is a regressor; use 'logreg' or 'hgb' to classify"
            )
            raise HortusError(
                f"ModelSpec.estimator {self.estimator!r} does not fit task {self.task!r} "
                f"(it accepts {allowed}): {hint}"
            )
        if (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, int | float)
            or not 0 < self.threshold < 1
        ):
            raise HortusError(f"ModelSpec.threshold must be in (0, 1), got {self.threshold!r}")
        if not isinstance(self.k, int) or self.k < 1:
            raise HortusError(f"ModelSpec.k must be a positive integer, got {self.k!r}")
        if not 0 < self.holdout_fraction < 1:
            raise HortusError(
                f"ModelSpec.holdout_fraction must be in (0, 1), got {self.holdout_fraction}"
            )
        bad = sorted(set(self.params) & _RESERVED_PARAMS[self.estimator])
        if bad:
            raise HortusError(f"ModelSpec.params may not set {bad}: they come from the spec")

    def to_dict(self) -> dict:
        """Return the spec as a JSON-friendly dict (for run metadata)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


# ---------------------------------------------------------------- split


def _check_columns(df: pl.DataFrame, spec: ModelSpec, *, roles: bool = True) -> None:
    """Raise if `df` lacks a feature, the target or the group (or time/segments if `roles`)."""
    cols = [*spec.features, spec.target, spec.group]
    if roles:
        cols += [spec.time, *spec.segments]
    missing = [c for c in dict.fromkeys(cols) if c is not None and c not in df.columns]
    if missing:
        raise HortusError(f"the frame lacks column(s) {missing} named by the model spec")


def time_split(
    df: pl.DataFrame, spec: ModelSpec
) -> tuple[pl.DataFrame, pl.DataFrame, datetime | date | None]:
    """Split a frame into train and hold-out, keeping whole groups on one side.

    With `spec.time`, each row is placed by the first time of its group (its own
    time without a group); the cut-off is the time at the `1 - holdout_fraction`
    quantile of those per-row times, and rows at or after it form the hold-out.
    Every hold-out group therefore starts at or after the cut-off and every train
    group before it.  Without `spec.time`, a seeded random `holdout_fraction` of
    the groups (of the rows without a group) is held out.

    Returns
    -------
    train, holdout, cutoff
        Row order is kept; `cutoff` is None without a time column.

    Examples
    --------
    >>> df = pl.DataFrame({"t": [1, 2, 3, 4, 5], "g": [1, 1, 2, 3, 3], "y": [0, 1, 0, 1, 0]})
    >>> tr, te, cut = time_split(df, ModelSpec("y", ("t",), time="t", group="g"))
    >>> tr["g"].to_list(), te["g"].to_list(), cut
    ([1, 1, 2], [3, 3], 4)
    """
    _check_columns(df, spec)
    if df.height < 2:
        raise HortusError(f"cannot split {df.height} row(s) into train and hold-out")
    if spec.time is None:
        return (*_random_split(df, spec), None)
    if df[spec.time].null_count():
        raise HortusError(f"time column {spec.time!r} has nulls: rows cannot be placed in time")
    key = pl.col(spec.time).min().over(spec.group) if spec.group else pl.col(spec.time)
    placed = df.with_columns(key.alias("_split_time"))
    times = placed["_split_time"].sort()
    cutoff = times[min(len(times) - 1, math.floor(len(times) * (1 - spec.holdout_fraction)))]
    is_test = pl.col("_split_time") >= cutoff
    train = placed.filter(~is_test).drop("_split_time")
    test = placed.filter(is_test).drop("_split_time")
    if train.is_empty():
        raise HortusError(
            f"no training rows before the cut-off {cutoff}: too many rows share the first "
            f"{spec.time!r}; lower holdout_fraction or check the time column"
        )
    return train, test, cutoff


def _random_split(df: pl.DataFrame, spec: ModelSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(spec.seed)
    if spec.group is None:
        n_test = max(1, min(df.height - 1, round(df.height * spec.holdout_fraction)))
        flags = np.zeros(df.height, dtype=bool)
        flags[rng.permutation(df.height)[:n_test]] = True
        marked = df.with_columns(pl.Series("_test", flags))
    else:
        groups = df.select(pl.col(spec.group).unique().sort(nulls_last=True))
        if groups.height < 2:
            raise HortusError(f"cannot split a single group of {spec.group!r}")
        n_test = max(1, min(groups.height - 1, round(groups.height * spec.holdout_fraction)))
        flags = np.zeros(groups.height, dtype=bool)
        flags[rng.permutation(groups.height)[:n_test]] = True
        marked = df.join(
            groups.with_columns(pl.Series("_test", flags)),
            on=spec.group,
            how="left",
            nulls_equal=True,
            maintain_order="left",
        )
    return (
        marked.filter(~pl.col("_test")).drop("_test"),
        marked.filter(pl.col("_test")).drop("_test"),
    )


def _training_order(df: pl.DataFrame, spec: ModelSpec) -> pl.DataFrame:
    """Return rows in time order (stable), or in a seeded random order without time."""
    if spec.time is not None:
        return df.sort(spec.time, maintain_order=True)
    rng = np.random.default_rng(spec.seed)
    return df[rng.permutation(df.height)]


# ---------------------------------------------------------------- pipeline


def _check_params(estimator: type, params: dict) -> None:
    known = set(estimator().get_params())
    unknown = sorted(set(params) - known)
    if unknown:
        raise HortusError(f"unknown {estimator.__name__} parameter(s) {unknown}")


def build_pipeline(spec: ModelSpec) -> Pipeline:
    """Return the unfitted pipeline for a spec (takes the output of `to_model_input`).

    Columns are selected by position in `spec.features`.  For "hgb" the
    categoricals are ordinal-encoded (unknown and missing -> NaN, so the trees
    treat them as missing) and passed to the estimator as native categorical
    features; numerics pass through with NaN for missing.  For "logreg" and
    "linear" the categoricals are one-hot encoded (unknown -> all zeros,
    missing -> its own level) and numerics median-imputed then standardised.
    The estimator is HistGradientBoostingRegressor ("hgb") or Ridge ("linear")
    for regression, HistGradientBoostingClassifier or LogisticRegression
    otherwise.
    """
    cat_idx = [i for i, f in enumerate(spec.features) if f in spec.categorical]
    num_idx = [i for i, f in enumerate(spec.features) if f not in spec.categorical]
    params = _DEFAULT_PARAMS[spec.estimator] | spec.params
    transformers: list[tuple[str, Any, list[int]]] = []
    if spec.estimator == "hgb":
        hgb: type = (
            HistGradientBoostingRegressor
            if spec.task == "regression"
            else HistGradientBoostingClassifier
        )
        _check_params(hgb, params)
        if cat_idx:
            encoder = OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=np.nan,
                encoded_missing_value=np.nan,
                max_categories=int(params.get("max_bins", 255)),
                dtype=np.float64,
            )
            transformers.append(("categorical", encoder, cat_idx))
        if num_idx:
            transformers.append(("numeric", "passthrough", num_idx))
        model: Any = hgb(
            categorical_features=list(range(len(cat_idx))) if cat_idx else None,
            random_state=spec.seed,
            **params,
        )
    else:
        linear: type = Ridge if spec.estimator == "linear" else LogisticRegression
        _check_params(linear, params)
        if cat_idx:
            onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64)
            transformers.append(("categorical", onehot, cat_idx))
        if num_idx:
            numeric = Pipeline(
                [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
            )
            transformers.append(("numeric", numeric, num_idx))
        model = linear(random_state=spec.seed, **params)
    prepare = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    return Pipeline([("prepare", prepare), ("model", model)])


def to_model_input(df: pl.DataFrame, spec: ModelSpec) -> np.ndarray:
    """Return the pipeline input: an object array of `spec.features` in order.

    Categoricals become `str` (null -> NaN); numerics become float (null -> NaN;
    bool -> 0/1, date -> days since 1970-01-01, datetime -> seconds since the
    epoch).  Deterministic and free of pandas.

    Examples
    --------
    >>> df = pl.DataFrame({"a": ["x", None], "b": [1, None]})
    >>> to_model_input(df, ModelSpec("y", ("a", "b"), categorical=("a",))).tolist()
    [['x', 1.0], [nan, nan]]
    """
    missing = [f for f in spec.features if f not in df.columns]
    if missing:
        raise SignatureError(f"the frame lacks feature column(s) {missing}")
    out = np.empty((df.height, len(spec.features)), dtype=object)
    for j, name in enumerate(spec.features):
        s = df[name]
        if name in spec.categorical:
            values = s.cast(pl.String).to_numpy().astype(object)
            values[s.is_null().to_numpy()] = np.nan
            out[:, j] = values
        else:
            out[:, j] = _numeric(s).to_numpy()
    return out


def _numeric(s: pl.Series) -> pl.Series:
    dtype = s.dtype
    if dtype == pl.Date:
        return s.dt.epoch("d").cast(pl.Float64)
    if isinstance(dtype, pl.Datetime):
        return s.dt.epoch("us").cast(pl.Float64) / 1e6
    if dtype.is_numeric() or dtype in (pl.Boolean, pl.Null):
        return s.cast(pl.Float64)
    raise SignatureError(
        f"feature {s.name!r} has type {dtype}; a numeric feature must be int, float, bool, "
        "date or datetime (declare it categorical if it is a category)"
    )


def _labels(df: pl.DataFrame, spec: ModelSpec) -> np.ndarray:
    y = df[spec.target]
    if y.null_count():
        raise HortusError(f"target {spec.target!r} has {y.null_count()} null(s)")
    if not (y.dtype == pl.Boolean or y.dtype.is_numeric() or y.dtype == pl.Null):
        raise HortusError(f"target {spec.target!r} must be 0/1 or bool, not {y.dtype}")
    as_float = y.cast(pl.Float64)
    bad = y.filter(~as_float.is_in([0.0, 1.0]))
    if len(bad):
        raise HortusError(
            f"target {spec.target!r} must be 0/1, found {_shown(bad.unique().sort().to_list())}"
        )
    return as_float.to_numpy().astype(np.int64)


def _is_text(dtype: pl.DataType) -> bool:
    return dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum)


def target_values(df: pl.DataFrame, spec: ModelSpec) -> np.ndarray:
    """Return the target of `df` as the estimator takes it, or raise naming the column and rule.

    binary/ranking: int64 0/1; multiclass: str classes (string columns) or
    int64 classes (integer or bool columns); regression: float64.

    Examples
    --------
    >>> df = pl.DataFrame({"y": ["b", "a"], "x": [1, 2]})
    >>> target_values(df, ModelSpec("y", ("x",), task="multiclass")).tolist()
    ['b', 'a']
    """
    if spec.task in ("binary", "ranking"):
        return _labels(df, spec)
    y = df[spec.target]
    if y.null_count():
        raise HortusError(f"target {spec.target!r} has {y.null_count()} null(s)")
    if spec.task == "multiclass":
        if _is_text(y.dtype):
            return y.cast(pl.String).to_numpy().astype(str)
        if y.dtype.is_integer() or y.dtype in (pl.Boolean, pl.Null):
            return y.cast(pl.Int64).to_numpy()
        raise HortusError(
            f"multiclass target {spec.target!r} must hold class labels (string or integer), "
            f"not {y.dtype}"
        )
    if not y.dtype.is_numeric() and y.dtype != pl.Null:
        raise HortusError(f"regression target {spec.target!r} is not numeric ({y.dtype})")
    values = y.cast(pl.Float64).to_numpy()
    if not np.isfinite(values).all():
        raise HortusError(f"regression target {spec.target!r} has NaN or infinite value(s)")
    return values


def _check_variety(y: np.ndarray, spec: ModelSpec) -> None:
    """Raise when the training target cannot be learned from (one class, constant value)."""
    if spec.task in ("binary", "ranking"):
        if y.min() == y.max():
            raise HortusError(
                f"target {spec.target!r} has one class in the training rows "
                f"({spec.target}={y[0]}): the training rows hold one class only"
            )
        return
    if spec.task == "multiclass":
        classes = np.unique(y)
        if len(classes) < 2:
            raise HortusError(
                f"target {spec.target!r} has one class in the training rows "
                f"({spec.target}={classes[0]!r}); a multiclass model needs at least 2"
            )
        return
    if len(y) < 2 or float(y.min()) == float(y.max()):
        raise HortusError(
            f"regression target {spec.target!r} is constant in the training rows "
            f"({spec.target}={float(y[0]) if len(y) else None}); nothing to learn"
        )


def _proba_column(label: Any) -> str:
    return f"{PROBA_PREFIX}{label}"


def _outputs(pipeline: Pipeline, x: np.ndarray, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Return the output columns of model input `x` (see the module docstring)."""
    if spec.task == "ranking":
        return {SCORE: _positive_proba(pipeline, x)}
    if spec.task == "binary":
        score = _positive_proba(pipeline, x)
        return {PREDICTION: (score >= spec.threshold).astype(np.int64), SCORE: score}
    if spec.task == "regression":
        value = np.asarray(pipeline.predict(x), dtype=np.float64)
        return {PREDICTION: value, SCORE: value.copy()}
    proba = np.asarray(pipeline.predict_proba(x), dtype=np.float64)
    classes = np.asarray(pipeline.classes_)
    best = proba.argmax(axis=1) if len(proba) else np.zeros(0, dtype=np.int64)
    out = {PREDICTION: classes[best], SCORE: proba[np.arange(len(proba)), best]}
    for j, label in enumerate(classes.tolist()):
        out[_proba_column(label)] = proba[:, j]
    return out


def predict_scores(pipeline: Pipeline, df: pl.DataFrame, spec: ModelSpec) -> np.ndarray:
    """Return the `score` of every row of `df` as a 1-D float array.

    binary/ranking: the probability of class 1; multiclass: the probability of
    the predicted class; regression: the predicted value.
    """
    x = to_model_input(df, spec)
    if spec.task in ("binary", "ranking"):
        proba = pipeline.predict_proba(x)
        return proba[:, list(pipeline.classes_).index(1)].astype(np.float64)
    return _outputs(pipeline, x, spec)[SCORE]


def predict(pipeline: Pipeline, df: pl.DataFrame, spec: ModelSpec) -> pl.DataFrame:
    """Return the model's output columns for every row of `df` (no signature check).

    ranking: score; binary: prediction (0/1 at `spec.threshold`), score;
    multiclass: prediction (the class), score (its probability),
    proba_<class> per class; regression: prediction, score (both the value).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> f = pl.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": ["a", "a", "b", "b"]})
    >>> spec = ModelSpec("y", ("x",), task="multiclass")
    >>> model = LogisticRegression().fit(to_model_input(f, spec), target_values(f, spec))
    >>> predict(model, f, spec).columns
    ['prediction', 'score', 'proba_a', 'proba_b']
    """
    return _output_frame(_outputs(pipeline, to_model_input(df, spec), spec))


def _output_frame(outputs: dict[str, np.ndarray]) -> pl.DataFrame:
    cols = []
    for name, values in outputs.items():
        if values.dtype.kind in "US":
            cols.append(pl.Series(name, values.tolist(), dtype=pl.String))
        else:
            cols.append(pl.Series(name, values))
    return pl.DataFrame(cols)


def class_probabilities(
    pipeline: Pipeline, df: pl.DataFrame, spec: ModelSpec
) -> tuple[list[Any], np.ndarray]:
    """Return (classes, rows x classes probability matrix) of a classifier spec."""
    if not TASKS[spec.task].classifier:
        raise HortusError(f"a {spec.task} model has no class probabilities")
    proba = np.asarray(pipeline.predict_proba(to_model_input(df, spec)), dtype=np.float64)
    return list(np.asarray(pipeline.classes_).tolist()), proba


# ---------------------------------------------------------------- metrics


def ranking_metrics(
    frame: pl.DataFrame, group: str, target: str, score: str, k: int
) -> dict[str, Any]:
    """Return mean precision@k, recall@k and NDCG@k over the groups with a positive.

    Vectorised with polars: rows are sorted by group, score descending, label
    ascending (pessimistic ties) and row order, ranked within their group, then
    aggregated per group.  See the module docstring for the definitions.

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
    n, pos = len(y), int(y.sum())
    out: dict[str, Any] = {
        "n": n,
        "positives": pos,
        "base_rate": pos / n if n else None,
        "roc_auc": float(roc_auc_score(y, s)) if 0 < pos < n else None,
        "log_loss": float(log_loss(y, s, labels=[0, 1])) if n else None,
        "average_precision": float(average_precision_score(y, s)) if pos else None,
    }
    group = spec.group
    if group is None:
        group = "_one_list"
        frame = frame.with_columns(pl.lit(0).alias(group))
    rank = ranking_metrics(frame, group, spec.target, score, spec.k)
    out.update(rank, k=spec.k)
    return out


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _binary_metrics(frame: pl.DataFrame, spec: ModelSpec, score: str) -> dict[str, Any]:
    """Return the metrics of a binary classifier (threshold metrics at spec.threshold)."""
    y = _labels(frame, spec)
    s = frame[score].to_numpy().astype(np.float64)
    n, pos = len(y), int(y.sum())
    picked = s >= spec.threshold
    tp = int((picked & (y == 1)).sum())
    fp = int((picked & (y == 0)).sum())
    fn = pos - tp
    return {
        "n": n,
        "positives": pos,
        "base_rate": pos / n if n else None,
        "roc_auc": float(roc_auc_score(y, s)) if 0 < pos < n else None,
        "log_loss": float(log_loss(y, s, labels=[0, 1])) if n else None,
        "average_precision": float(average_precision_score(y, s)) if pos else None,
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
        The metrics of the task (see the module docstring).  For ranking:
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


# ---------------------------------------------------------------- training


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
    training rows and `contracts` (see `Signature.from_frame`).
    """
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


def _positive_proba(pipeline: Pipeline, x: np.ndarray) -> np.ndarray:
    return pipeline.predict_proba(x)[:, list(pipeline.classes_).index(1)].astype(np.float64)


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


# ---------------------------------------------------------------- signature


def _type_name(dtype: pl.DataType) -> str | None:
    """Return the contract type name of a polars dtype (None for the Null dtype)."""
    if dtype == pl.Null:
        return None
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "string"
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    return f"unsupported ({dtype})"


def _compatible(actual: str | None, expected: str) -> bool:
    return actual is None or actual == expected or (actual == "int" and expected == "float")


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _contract_bound(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.startswith("@")):
        return None  # references such as @shop_opened have no fixed value
    return _json_value(value)


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _comparable(s: pl.Series, type_name: str, bound: Any) -> tuple[pl.Series, Any]:
    """Return the series and a bound in a form polars can compare."""
    if type_name == "date":
        return s, date.fromisoformat(str(bound))
    if type_name == "datetime":
        if s.dtype.time_zone is not None:  # type: ignore[attr-defined]
            s = s.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return s, _naive_utc(datetime.fromisoformat(str(bound)))
    return s, bound


def _shown(values: list[Any]) -> str:
    more = f" and {len(values) - _MAX_SHOWN} more" if len(values) > _MAX_SHOWN else ""
    return f"{values[:_MAX_SHOWN]}{more}"


@dataclass(frozen=True)
class Signature:
    """The input signature of a model: one dict per feature.

    Each column dict has name, type (contract type: string, int, float, bool,
    date, datetime), nullable, categories (list or None), min and max (JSON
    values; dates and datetimes as ISO strings).

    `check` reports every problem of a frame; problems starting with
    "warning:" do not block scoring (extra columns, which are ignored, and
    values outside the training/contract range, which the model can still
    score).  Missing columns, wrong types, unseen categories and nulls in a
    non-nullable column block: `validate` raises `SignatureError` listing them.
    """

    columns: tuple[dict, ...]

    @property
    def names(self) -> list[str]:
        """Return the feature names in input order."""
        return [c["name"] for c in self.columns]

    @classmethod
    def from_frame(
        cls, df: pl.DataFrame, spec: ModelSpec, contracts: Sequence[Contract] = ()
    ) -> Signature:
        """Derive the signature of `spec.features` from training rows and data contracts.

        The type comes from the frame's dtype.  For a feature that is a column of
        one of `contracts` (the first that has it), nullability comes from the
        contract, categories from its allowed values and min/max from its bounds
        when set.  Otherwise nullable means "nulls were seen in training",
        categories are the sorted values seen in training (categoricals only)
        and min/max are the observed extremes (numbers, dates, datetimes).
        """
        missing = [f for f in spec.features if f not in df.columns]
        if missing:
            raise SignatureError(f"the frame lacks feature column(s) {missing}")
        by_name = {}
        for contract in contracts:
            for col in contract.columns:
                by_name.setdefault(col.name, col)
        out = []
        for name in spec.features:
            s = df[name]
            type_name = _type_name(s.dtype)
            if type_name is None or type_name.startswith("unsupported"):
                raise SignatureError(f"feature {name!r} has a type a signature cannot hold: {s}")
            col = by_name.get(name)
            values = s.fill_nan(None) if type_name == "float" else s
            lo = hi = None
            if type_name in ("int", "float", "date", "datetime"):
                lo, hi = _json_value(values.min()), _json_value(values.max())
            categories = None
            if name in spec.categorical:
                seen = values.drop_nulls().unique().sort()
                if type_name in ("date", "datetime"):
                    seen = seen.cast(pl.String)
                categories = seen.to_list()
            nullable = bool(values.null_count())
            if col is not None:
                nullable = col.nullable
                if col.allowed is not None:
                    categories = [_json_value(v) for v in col.allowed]
                lo = _contract_bound(col.min) if _contract_bound(col.min) is not None else lo
                hi = _contract_bound(col.max) if _contract_bound(col.max) is not None else hi
            out.append(
                {
                    "name": name,
                    "type": type_name,
                    "nullable": nullable,
                    "categories": categories,
                    "min": lo,
                    "max": hi,
                }
            )
        return cls(columns=tuple(out))

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict."""
        return {"columns": [dict(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, doc: dict) -> Signature:
        """Rebuild a signature from `to_dict` output (other keys are ignored)."""
        try:
            cols = tuple(
                {
                    "name": str(c["name"]),
                    "type": str(c["type"]),
                    "nullable": bool(c["nullable"]),
                    "categories": None if c.get("categories") is None else list(c["categories"]),
                    "min": c.get("min"),
                    "max": c.get("max"),
                }
                for c in doc["columns"]
            )
        except (KeyError, TypeError) as exc:
            raise SignatureError(f"not a model signature: missing {exc}") from exc
        return cls(columns=cols)

    def to_json(self) -> str:
        """Return the signature as deterministic JSON (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n"

    def check(self, df: pl.DataFrame) -> list[str]:
        """Return every problem of `df` as model input; non-blocking ones start with "warning:"."""
        problems: list[str] = []
        for c in self.columns:
            name, expected = c["name"], c["type"]
            if name not in df.columns:
                problems.append(f"column {name!r} is missing")
                continue
            s = df[name]
            actual = _type_name(s.dtype)
            if not _compatible(actual, expected):
                problems.append(f"column {name!r} has type {actual}, expected {expected}")
                continue
            if actual == "float":
                s = s.fill_nan(None)
            if s.null_count() and not c["nullable"]:
                problems.append(
                    f"column {name!r} has {s.null_count()} null value(s) but is not nullable"
                )
            if c["categories"] is not None:
                known = pl.Series(c["categories"]).cast(pl.String)
                values = s.cast(pl.String).drop_nulls().unique()
                unseen = values.filter(~values.is_in(known.implode()))
                if len(unseen):
                    problems.append(
                        f"column {name!r} has unseen categor{'y' if len(unseen) == 1 else 'ies'} "
                        f"{_shown(unseen.sort().to_list())}"
                    )
            problems += self._range_warnings(c, s, actual)
        extra = [n for n in df.columns if n not in self.names]
        if extra:
            problems.append(
                f"warning: extra column(s) {_shown(extra)} are not model inputs and are ignored"
            )
        return problems

    @staticmethod
    def _range_warnings(c: dict, s: pl.Series, actual: str | None) -> list[str]:
        out = []
        if actual is None or c["type"] not in ("int", "float", "date", "datetime"):
            return out
        for key, word, op in (
            ("min", "below the minimum", "lt"),
            ("max", "above the maximum", "gt"),
        ):
            if c[key] is None:
                continue
            values, bound = _comparable(s, c["type"], c[key])
            outside = values.filter(getattr(values, op)(bound))
            if len(outside):
                extreme = outside.min() if op == "lt" else outside.max()
                out.append(
                    f"warning: column {c['name']!r} has {len(outside)} value(s) {word} "
                    f"{c[key]} (e.g. {_json_value(extreme)})"
                )
        return out

    def validate(self, df: pl.DataFrame) -> None:
        """Raise SignatureError listing every blocking problem of `df` (warnings pass)."""
        blocking = [p for p in self.check(df) if not p.startswith("warning:")]
        if blocking:
            raise SignatureError(
                "the frame does not match the model signature:\n"
                + "\n".join(f"  - {p}" for p in blocking)
            )


# ---------------------------------------------------------------- artifacts


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signature_path(path: Path) -> Path:
    """Return the signature file that sits beside a model file."""
    return Path(path).with_suffix(".signature.json")


def _normalise_skops(data: bytes) -> bytes:
    """Rewrite a skops archive so that the same model always gives the same bytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as zin:
        names = set(zin.namelist())
        schema = json.loads(zin.read("schema.json"))
        ids: dict[int, int] = {}
        files: dict[str, str] = {}

        def walk(node: Any) -> Any:
            if isinstance(node, list):
                return [walk(v) for v in node]
            if not isinstance(node, dict):
                return node
            out = {}
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    # skops skips memoisation for a falsy id, so numbering starts at 1
                    out[key] = ids.setdefault(value, len(ids) + 1)
                elif key == "file" and isinstance(value, str) and value in names:
                    out[key] = files.setdefault(value, f"{len(files):06d}{Path(value).suffix}")
                else:
                    out[key] = walk(value)
            return out

        entries = {"schema.json": json.dumps(walk(schema), indent=2).encode()}
        unknown = names - set(files) - {"schema.json"}
        if unknown:
            raise ArtifactError(f"skops archive has entries no node refers to: {sorted(unknown)}")
        entries |= {new: zin.read(old) for old, new in files.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zout:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zout.writestr(info, entries[name])
    return buf.getvalue()


def _trusted_types(data: bytes, where: str) -> list[str]:
    """Return the non-default types of a skops archive, or raise if one is not allowed."""
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # a broken archive: report it as such, never load it
        raise ArtifactError(f"{where}: not a readable skops archive ({exc})") from exc
    refused = sorted(
        t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES) and t not in _TRUSTED_EXTRA
    )
    if refused:
        raise ArtifactError(
            f"{where}: refusing to load untrusted type(s) {refused}; only sklearn.* and "
            f"numpy.* types (and {sorted(_TRUSTED_EXTRA)}) are accepted"
        )
    return list(untrusted)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(
    pipeline: Pipeline, signature: Signature, path: Path, *, metadata: dict | None = None
) -> str:
    """Write a fitted pipeline as a byte-deterministic skops file and its signature beside it.

    The model goes to `path` (a .skops file), the signature, `metadata`, the
    model file name and its sha256 to `path.with_suffix(".signature.json")`;
    both are written atomically (temporary file + rename).  The normalised
    archive is loaded back with `skops.io.loads` before anything is written.

    Returns
    -------
    str
        The sha256 hex digest of the .skops bytes.
    """
    path = Path(path)
    data = _normalise_skops(sio.dumps(pipeline))
    where = str(path)
    trusted = _trusted_types(data, where)
    try:
        sio.loads(data, trusted=trusted)
    except Exception as exc:
        raise ArtifactError(f"{where}: the normalised archive does not load ({exc})") from exc
    digest = _sha256(data)
    sidecar = signature.to_dict() | {
        "metadata": metadata or {},
        "model_file": path.name,
        "model_sha256": digest,
    }
    _write_atomic(path, data)
    text = json.dumps(sidecar, sort_keys=True, indent=2, default=str) + "\n"
    _write_atomic(signature_path(path), text.encode())
    return digest


def load_model(path: Path, expected_sha256: str | None = None) -> tuple[Pipeline, Signature]:
    """Load a model saved by `save_model`, checking its hash and types first.

    The sha256 of the file is compared with `expected_sha256` (when given) and
    with the one recorded in the signature file before anything is
    deserialised; then only sklearn.*, numpy.* (and skops' default) types are
    trusted.  Any mismatch raises ArtifactError.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read the model file ({exc})") from exc
    actual = _sha256(data)
    if expected_sha256 is not None and actual != expected_sha256:
        raise ArtifactError(
            f"{path}: sha256 mismatch, expected {expected_sha256}, actual {actual}; "
            "the file was changed or is not the registered model, refusing to load it"
        )
    side = signature_path(path)
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{side}: cannot read the model signature ({exc})") from exc
    recorded = doc.get("model_sha256")
    if recorded is not None and recorded != actual:
        raise ArtifactError(
            f"{path}: sha256 mismatch, expected {recorded} (recorded in {side.name}), "
            f"actual {actual}; refusing to load it"
        )
    trusted = _trusted_types(data, str(path))
    try:
        pipeline = sio.loads(data, trusted=trusted)
    except Exception as exc:
        raise ArtifactError(f"{path}: cannot load the model ({exc})") from exc
    if not isinstance(pipeline, Pipeline):
        raise ArtifactError(f"{path}: holds a {type(pipeline).__name__}, not a Pipeline")
    return pipeline, Signature.from_dict(doc)


def score_frame(
    pipeline: Pipeline, signature: Signature, df: pl.DataFrame, spec: ModelSpec
) -> pl.DataFrame:
    """Validate `df` against the signature, then return it with the output columns.

    Ranking adds "score"; binary "prediction" and "score"; multiclass
    "prediction", "score" and "proba_<class>" per class; regression
    "prediction" and "score" (see `predict`).  Raises SignatureError (and
    returns nothing) when the frame has a blocking problem; existing output
    columns are replaced.
    """
    if signature.names != list(spec.features):
        raise SignatureError(
            f"the model signature lists {signature.names} but the spec features are "
            f"{list(spec.features)}"
        )
    signature.validate(df)
    if spec.task == "ranking":
        return df.with_columns(pl.Series(SCORE, predict_scores(pipeline, df, spec)))
    return df.with_columns(predict(pipeline, df, spec).get_columns())
