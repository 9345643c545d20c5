"""A served model's pipeline, compiled for small requests: the same arithmetic, less overhead.

Scoring a 50-row request with the fitted scikit-learn pipeline of a gradient-boosted
model (`hortus.models._estimators.build_pipeline`, estimator "hgb") costs about 5 ms
on one core here, two thirds of it outside the trees: the pipeline's ColumnTransformer
(an `OrdinalEncoder` over the object array) and then the estimator's own internal
ColumnTransformer (a second `OrdinalEncoder` over the codes), each with its input
validation; before that the service built a typed polars frame and the object array
(`to_model_input`).  A request of 50 rows pays those fixed costs every time.

`CompiledScorer.build` folds the two encoders into one dictionary per categorical
feature (category text -> the code the trees see, computed by pushing every known
category through the fitted encoders themselves, once, at load) and locates each
feature's column in the estimator's input.  `matrix` then builds that input straight
from the request's rows (dicts), and `predict_proba` / `predict` run the fitted
estimator's own tree predictors (`_predict_iterations`, the loss's link), in the same
order, so the scores are bit-for-bit those of ``pipeline.predict_proba``.

It only compiles what it recognises (a Pipeline of a ColumnTransformer of
OrdinalEncoder and pass-through columns, then a HistGradientBoosting estimator), and
only keeps the result if a probe of random rows (every known category, unknown ones,
nulls, NaN, integers, booleans) gives exactly the pipeline's own outputs; otherwise
`build` returns None and the service scores with the pipeline.  A request whose
values are not of the plain types the signature expects (a string in a numeric
column, a date, an integer beyond 64 bits...) returns None from `matrix`: the caller
falls back to the typed frame and the pipeline, which treat it as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["CompiledScorer"]

_NONE = type(None)
#: value types the fast path takes per signature type (others: the pipeline's path)
_FAST_TYPES: dict[str, frozenset[type]] = {
    "int": frozenset({int, _NONE}),
    "float": frozenset({float, int, _NONE}),
    "bool": frozenset({bool, _NONE}),
    "string": frozenset({str, _NONE}),
}
_I64 = 2**63


class CompiledScorer:
    """The fitted pipeline as one dict per category and the estimator's trees (see module doc)."""

    def __init__(self, pipeline, estimator, names: list[str], width: int, numeric: list):
        self.pipeline = pipeline
        self.estimator = estimator
        self.names = names  # the model's features, in input order
        self.width = width  # columns of the estimator's input
        self._numeric = numeric  # (name, position, allowed value types)
        self._categorical: list = []  # (name, position, {text: code}, unknown, missing)
        self.classes_ = getattr(estimator, "classes_", None)
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        self._threads = _openmp_effective_n_threads()
        self._bitsets = estimator._bin_mapper.make_known_categories_bitsets()

    @property
    def categorical(self) -> set[str]:
        return {c[0] for c in self._categorical}

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, pipeline, spec, signature, reference, *, seed: int = 0) -> CompiledScorer | None:
        """Return the compiled scorer of a fitted pipeline, or None (see the module doc).

        `reference(rows)` returns the pipeline input of plain rows the way the service
        builds it without this scorer (typed frame, then `to_model_input`); the probe
        rows must give exactly the same outputs through both.
        """
        try:
            scorer = cls._compile(pipeline, spec, signature)
            if scorer is None or not scorer._verify(signature, reference, seed):
                return None
        except Exception:  # noqa: BLE001 - anything unexpected: score with the pipeline
            return None
        return scorer

    @classmethod
    def _compile(cls, pipeline, spec, signature) -> CompiledScorer | None:
        from sklearn.compose import ColumnTransformer
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

        if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
            return None
        prep, est = pipeline[0], pipeline[-1]
        hgb = (HistGradientBoostingClassifier, HistGradientBoostingRegressor)
        if not isinstance(prep, ColumnTransformer) or not isinstance(est, hgb):
            return None
        types = {c["name"]: c["type"] for c in signature.columns}
        names = list(spec.features)
        if list(types) != names or any(t not in _FAST_TYPES for t in types.values()):
            return None  # dates, datetimes: the pipeline's path
        # where each input feature lands in the pipeline's ColumnTransformer output
        first: dict[int, tuple] = {}  # feature index -> (output column, encoder, its column)
        for tname, trans, cols in prep.transformers_:
            if tname == "remainder" and (trans == "drop" or not len(_indices(cols, len(names)))):
                continue
            idx = _indices(cols, len(names))
            out = prep.output_indices_[tname]
            if out.stop - out.start != len(idx):
                return None
            if isinstance(trans, OrdinalEncoder):
                enc: Any = trans
            elif trans == "passthrough" or (
                isinstance(trans, FunctionTransformer) and trans.func is None
            ):
                enc = None
            else:
                return None
            for k, j in enumerate(idx):
                first[j] = (out.start + k, enc, k)
        if len(first) != len(names):
            return None
        # then where each of those columns lands in the estimator's input
        inner = getattr(est, "_preprocessor", None)
        width = prep.output_indices_ and max(s.stop for s in prep.output_indices_.values())
        second: dict[int, tuple[int, bool]] = {p: (p, False) for p in range(width)}
        if inner is not None:
            second = {}
            for tname, trans, mask in inner.transformers_:
                idx = _indices(mask, width)
                if tname == "remainder":
                    if len(idx):
                        return None
                    continue
                out = inner.output_indices_[tname]
                if out.stop - out.start != len(idx):
                    return None
                is_enc = isinstance(trans, OrdinalEncoder)
                if not is_enc and not isinstance(trans, FunctionTransformer):
                    return None
                for k, p in enumerate(idx):
                    second[p] = (out.start + k, is_enc)
            width = max(s.stop for s in inner.output_indices_.values())
        numeric, categorical = [], []
        for j, name in enumerate(names):
            p, enc, k = first[j]
            q, encoded = second[p]
            kind = types[name]
            if enc is None:
                if kind == "string" or encoded:
                    return None  # a number the estimator encodes, a string it gets raw: not ours
                numeric.append((name, q, _FAST_TYPES[kind]))
            else:
                if kind != "string":
                    return None  # categories of other types are cast to text first: slow path
                cats = [c for c in enc.categories_[k] if isinstance(c, str)]
                categorical.append((name, q, cats))
        scorer = cls(pipeline, est, names, width, numeric)
        # names first (the probes of `_category_map` need to know which features are text)
        scorer._categorical = [(name, q, {}, math.nan, math.nan) for name, q, _ in categorical]
        scorer._categorical = [scorer._category_map(name, q, cats) for name, q, cats in categorical]
        return scorer

    def _category_map(self, name: str, q: int, cats: list[str]) -> tuple:
        """Push every known category (and a null, and an unknown text) through both fitted
        encoders; return (name, position, {text: code}, unknown code, null code)."""
        probe = [*cats, None, _unknown_text(cats)]
        rows = [{name: v} for v in probe]  # other features null
        x = _object_matrix(rows, self.names, self.categorical)
        xt = self.pipeline[0].transform(x)
        inner = getattr(self.estimator, "_preprocessor", None)
        if inner is not None:
            xt = inner.transform(xt)
        codes = [float(v) for v in np.asarray(xt, dtype=np.float64)[:, q]]
        return (name, q, dict(zip(cats, codes[: len(cats)], strict=True)), codes[-1], codes[-2])

    # ----------------------------------------------------------------- verify
    def _verify(self, signature, reference, seed: int) -> bool:
        """Return whether random probe rows score exactly as the pipeline scores them."""
        rng = np.random.default_rng(seed)
        cats = {name: list(m) for name, _, m, *_ in self._categorical}
        rows = []
        for i in range(64):
            row = {}
            for c in signature.columns:
                name, kind = c["name"], c["type"]
                if name in cats:
                    pool = [*cats[name], None, "\x00never-seen"]
                    row[name] = pool[int(rng.integers(len(pool)))]
                elif kind == "bool":
                    row[name] = [True, False, None][i % 3]
                elif kind == "int":
                    row[name] = None if i % 7 == 0 else int(rng.integers(-1000, 1000))
                else:
                    pick = i % 5
                    row[name] = (None if pick == 0 else math.nan if pick == 1
                                 else int(rng.integers(-50, 50)) if pick == 2
                                 else float(rng.normal(0, 100)))  # fmt: skip
            rows.append(row)
        fast = self.matrix(rows)
        if fast is None:
            return False
        x = reference(rows)
        if hasattr(self.estimator, "predict_proba"):
            want, got = self.pipeline.predict_proba(x), self.predict_proba(fast)
        else:
            want, got = self.pipeline.predict(x), self.predict(fast)
        return want.shape == got.shape and bool(np.array_equal(want, got, equal_nan=True))

    # ----------------------------------------------------------------- score
    def matrix(self, rows: Sequence[dict]) -> np.ndarray | None:
        """Return the estimator's input for `rows`, or None if a value needs the slow path."""
        n = len(rows)
        out = np.empty((n, self.width), dtype=np.float64)
        for name, q, allowed in self._numeric:
            vals = [r.get(name) for r in rows]
            seen = set(map(type, vals))
            if not seen <= allowed:
                return None
            if int in seen:  # beyond 64 bits: the typed frame decides what it becomes
                ints = [v for v in vals if type(v) is int]
                if min(ints) < -_I64 or max(ints) >= _I64:
                    return None
            if _NONE in seen:
                vals = [math.nan if v is None else v for v in vals]
            out[:, q] = vals
        for name, q, mapping, unknown, missing in self._categorical:
            vals = [r.get(name) for r in rows]
            seen = set(map(type, vals))
            if not seen <= _FAST_TYPES["string"]:
                return None
            get = mapping.get
            out[:, q] = [missing if v is None else get(v, unknown) for v in vals]
        return out

    def _raw(self, x: np.ndarray) -> np.ndarray:
        # what HistGradientBoosting*._raw_predict does after its input validation
        est = self.estimator
        raw = np.zeros((x.shape[0], est.n_trees_per_iteration_),
                       dtype=est._baseline_prediction.dtype, order="F")  # fmt: skip
        raw += est._baseline_prediction
        # `_predict_iterations` without rebuilding the category bitsets on every call
        bitsets, f_idx_map = self._bitsets
        threads = self._threads
        for trees in est._predictors:
            for k, tree in enumerate(trees):
                raw[:, k] += tree.predict(x, bitsets, f_idx_map, threads)
        return raw

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Return the class probabilities of an estimator input (a classifier's)."""
        return self.estimator._loss.predict_proba(self._raw(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Return the predictions of an estimator input (classes, or values of a regressor)."""
        raw = self._raw(x)
        if self.classes_ is None:
            return self.estimator._loss.link.inverse(raw.ravel())
        if raw.shape[1] == 1:
            return self.classes_[(raw.ravel() > 0).astype(int)]
        return self.classes_[np.argmax(raw, axis=1)]


def _indices(cols: Any, n: int) -> list[int]:
    """Return a ColumnTransformer column spec (indices, mask, slice) as a list of indices."""
    if isinstance(cols, slice):
        return list(range(n))[cols]
    arr = np.asarray(cols)
    if arr.dtype == bool:
        return [int(i) for i in np.flatnonzero(arr)]
    return [int(i) for i in arr]


def _unknown_text(cats: list[str]) -> str:
    text = "\x00unknown"
    while text in cats:
        text += "_"
    return text


def _object_matrix(rows: Sequence[dict], names: list[str], categorical: set[str]) -> np.ndarray:
    """Return `to_model_input` of plain rows: text categories (null: NaN), float numbers."""
    out = np.empty((len(rows), len(names)), dtype=object)
    for j, name in enumerate(names):
        for i, r in enumerate(rows):
            v = r.get(name)
            if name in categorical:
                out[i, j] = math.nan if v is None else str(v)
            else:
                out[i, j] = math.nan if v is None else float(v)
    return out
