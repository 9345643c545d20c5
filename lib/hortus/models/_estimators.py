"""The pipeline of a spec, its input and target arrays, and its output columns.

`build_pipeline` builds the scikit-learn pipeline, `to_model_input` and
`target_values` turn a polars frame into what it takes, and `predict`,
`predict_scores` and `class_probabilities` return what it gives.  Re-exported by
`hortus.models.modeling` (see its docstring for the input format and outputs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from hortus.errors import HortusError, SignatureError
from hortus.models._spec import PREDICTION, PROBA_PREFIX, SCORE, TASKS, ModelSpec, _shown

_DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "hgb": {"max_iter": 200, "learning_rate": 0.1, "early_stopping": False},
    "logreg": {"max_iter": 1000},
    "linear": {},
}


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
    """Return the output columns of model input `x` (see `hortus.models.modeling`)."""
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


def _positive_proba(pipeline: Pipeline, x: np.ndarray) -> np.ndarray:
    return pipeline.predict_proba(x)[:, list(pipeline.classes_).index(1)].astype(np.float64)
