"""A served model: one registry version loaded whole, its input checks and its scoring.

`load_served` resolves a reference (alias or version) to a version number and loads
that version through `Registry.load`, which checks the artifact's SHA-256 against the
registry before deserialising anything; the result is an immutable `ServedModel` the
service swaps in with one reference assignment (see `hortus.serving._swap`).

`check_rows` judges JSON rows against the model's signature and lists every problem
(missing column, wrong type, null in a non-nullable column, unseen category) by row
and column, so the service answers 422 with all of them at once.

Ranking (`/recommend`): the request keys of the feature set are the entity key
columns that are not features themselves (for the plant shop: user_id, plant_id).
A request names some of them (the entity, e.g. a user_id); the others are the item
keys, and the candidates are the items the model definition's `scoring.candidates`
hook returns (computed once per online-store materialisation, not per request), else
every item of the online store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import polars as pl

from hortus.errors import HortusError

_DTYPES: dict[str, pl.DataType] = {
    "string": pl.String,
    "int": pl.Int64,
    "float": pl.Float64,
    "bool": pl.Boolean,
    "date": pl.Date,
    "datetime": pl.Datetime("us", "UTC"),
}


class UnknownModel(HortusError):
    """The service does not serve a model of that name (HTTP 404)."""


class ModelUnavailable(HortusError):
    """The model is known but no version could be loaded (HTTP 503)."""


@dataclass(frozen=True)
class ServedModel:
    """One fully loaded model version (never mutated: a swap replaces the whole object)."""

    name: str
    version: int
    alias: str
    sha256: str
    pipeline: Any
    signature: Any
    spec: Any
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    scorer: Any = None  # CompiledScorer, or None: the pipeline scores (`hortus.serving._scorer`)
    checker: Any = None  # RowChecker of the signature (built by load_served)

    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def names(self) -> list[str]:
        return list(self.signature.names)

    def frame(self, rows: Sequence[dict]) -> pl.DataFrame:
        """Return the model input of checked rows, typed as the signature says."""
        cols = {}
        for c in self.signature.columns:
            dtype = _DTYPES.get(c["type"], pl.String)
            values = [r.get(c["name"]) for r in rows]
            if c["type"] in ("date", "datetime"):
                values = [_parse_time(v, c["type"]) for v in values]
            cols[c["name"]] = pl.Series(c["name"], values, dtype=dtype, strict=False)
        return pl.DataFrame(cols)

    def score(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Return the model's output columns for a checked frame (score, prediction...)."""
        from hortus.models._estimators import predict, predict_scores

        if self.task == "ranking":
            return pl.DataFrame({"score": predict_scores(self.pipeline, frame, self.spec)})
        return predict(self.pipeline, frame, self.spec)

    def model_input(self, rows: Sequence[dict]) -> np.ndarray:
        """Return the pipeline input of checked rows (typed frame, then `to_model_input`)."""
        from hortus.models.modeling import to_model_input

        return to_model_input(self.frame(rows), self.spec)

    def outputs(self, rows: Sequence[dict]) -> dict[str, np.ndarray]:
        """Return the output columns (score, prediction...) of checked rows as arrays.

        The compiled scorer when the model has one and the rows hold plain values
        (bit-identical outputs, `hortus.serving._scorer`), else the typed frame and
        the fitted pipeline.
        """
        from hortus.models._estimators import _outputs

        x = self.scorer.matrix(rows) if self.scorer is not None else None
        if x is not None:
            return _outputs(_Compiled(self.scorer, x), x, self.spec)
        return _outputs(self.pipeline, self.model_input(rows), self.spec)


class _Compiled:
    """The compiled scorer behind the pipeline interface `_outputs` calls (one input)."""

    def __init__(self, scorer, x: np.ndarray):
        self.classes_ = scorer.classes_
        self._scorer = scorer

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self._scorer.predict_proba(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._scorer.predict(x)


def _parse_time(value: Any, kind: str) -> Any:
    if not isinstance(value, str):
        return value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if kind == "date":
        return parsed.date()
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _spec_of(doc: dict | None, where: str):
    from hortus.models.modeling import ModelSpec

    if not doc:
        raise ModelUnavailable(f"{where} has no training spec recorded; re-register it")
    return ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()})


def resolve_version(lh, name: str, ref: str | int) -> int:
    """Return the version number `ref` (alias or number) of model `name` names now."""
    from hortus.models.registry import Registry

    return Registry(lh, name).get(ref).version


def load_served(lh, name: str, ref: str | int, *, alias: str = "") -> ServedModel:
    """Load one version completely (hash-checked artifact, signature, spec) and return it."""
    from hortus.models.registry import Registry

    registry = Registry(lh, name)
    mv = registry.get(ref)
    pipeline, signature = registry.load(mv.version)  # ArtifactError on a hash mismatch
    spec = _spec_of(mv.spec, f"model {name} v{mv.version}")
    served = ServedModel(name, mv.version, alias or str(ref), mv.artifact_sha256, pipeline,
                         signature, spec)  # fmt: skip
    if served.names != list(spec.features):
        raise ModelUnavailable(
            f"model {name} v{mv.version}: signature {served.names} does not match its spec"
        )
    return compiled(served)


def compiled(served: ServedModel, *, compile: bool = True) -> ServedModel:
    """Return `served` with its row checker and (when `compile`) its compiled scorer."""
    import dataclasses

    from hortus.serving._scorer import CompiledScorer

    scorer = None
    if compile:
        scorer = CompiledScorer.build(served.pipeline, served.spec, served.signature,
                                      served.model_input)  # fmt: skip
    return dataclasses.replace(served, scorer=scorer, checker=RowChecker(served.signature))


# ------------------------------------------------------------------ input checks
def _type_problem(value: Any, expected: str) -> str | None:
    if expected == "string":
        ok = isinstance(value, str)
    elif expected == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and isinstance(value, float) and math.isinf(value):
            return "is infinite"
    elif expected == "bool":
        ok = isinstance(value, bool)
    elif expected in ("date", "datetime"):
        if not isinstance(value, str):
            ok = False
        else:
            try:
                _parse_time(value, expected)
                ok = True
            except ValueError:
                return f"is not an ISO 8601 {expected}"
    else:
        ok = True
    if ok:
        return None
    got = "null" if value is None else type(value).__name__
    return f"has type {got}, expected {expected}"


_NONE = type(None)
_MISSING = object()
#: value types that can never be a problem, per signature type (None: when nullable)
_CLEAN_TYPES: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "int": frozenset({int}),
    "float": frozenset({float, int}),
    "bool": frozenset({bool}),
}


class RowChecker:
    """`check_rows` for one signature, its category sets computed once.

    Each column is first judged as a whole (the set of value types, the set of texts
    against the categories: a few C-level passes); only a request with a problem
    goes through the row-by-row walk that lists every problem in order.
    """

    def __init__(self, signature):
        self.signature = signature
        self.columns = signature.columns  # keys that are not inputs are ignored
        self._cats = {c["name"]: frozenset(str(v) for v in c["categories"])
                      for c in self.columns if c.get("categories") is not None}  # fmt: skip
        self._plain = all(c["type"] in _CLEAN_TYPES for c in self.columns)

    def _clean(self, rows: list) -> bool:
        """Return True when no row has a problem (False: maybe one; walk the rows)."""
        if not self._plain or set(map(type, rows)) != {dict}:
            return False
        for c in self.columns:
            name = c["name"]
            vals = [r.get(name, _MISSING) for r in rows]
            allowed = _CLEAN_TYPES[c["type"]] | ({_NONE} if c["nullable"] else frozenset())
            seen = set(map(type, vals))
            if not seen <= allowed:
                return False
            if float in seen and (math.inf in vals or -math.inf in vals):
                return False
            cats = self._cats.get(name)
            if cats is not None and not {str(v) for v in vals if v is not None} <= cats:
                return False
        return True

    def check(self, rows: Any) -> list[dict]:
        """Return every problem of JSON `rows` (see `check_rows`)."""
        if not isinstance(rows, list) or not rows:
            return [{"row": None, "column": None, "problem": "`rows` must be a non-empty list"}]
        if self._clean(rows):
            return []
        return _walk(rows, self.columns, self._cats)


def check_rows(rows: Any, signature) -> list[dict]:
    """Return every problem of JSON `rows` as model input: [{row, column, problem}, ...]."""
    return RowChecker(signature).check(rows)


def _walk(rows: list, columns, category_sets: dict) -> list[dict]:
    problems: list[dict] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append({"row": i, "column": None, "problem": "row is not a JSON object"})
            continue
        for c in columns:
            name = c["name"]
            if name not in row:
                problems.append({"row": i, "column": name, "problem": "missing column"})
                continue
            value = row[name]
            if value is None:
                if not c["nullable"]:
                    problems.append({"row": i, "column": name, "problem": "null but not nullable"})
                continue
            bad = _type_problem(value, c["type"])
            if bad:
                problems.append({"row": i, "column": name, "problem": bad})
                continue
            cats = category_sets.get(name)
            if cats is not None and str(value) not in cats:
                problems.append({"row": i, "column": name, "problem": f"unseen category {value!r}"})
    return problems


# ----------------------------------------------------------------------- ranking
def request_keys(fs) -> list[str]:
    """Return the request key columns of a feature set (entity keys that are not features)."""
    features = set(fs.feature_names)
    keys: list[str] = []
    for g in fs.groups:
        for k in fs.key_columns(g):
            if k not in features and k not in keys:
                keys.append(k)
    return keys


def _encode_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


_STRICT = json.JSONEncoder(allow_nan=False, default=_encode_default)


def features_json(row: dict, names: Sequence[str]) -> str:
    """Return the JSON text of the `names` of a row (NaN as null, times as ISO text).

    The text `json.dumps({n: json_value(row.get(n)) ...}, default=str)` gives, without
    the per-value Python call in the common case (no NaN).
    """
    sub = {n: row.get(n) for n in names}
    try:
        return _STRICT.encode(sub)
    except ValueError:  # a NaN somewhere: convert value by value
        return json.dumps({n: json_value(v) for n, v in sub.items()}, default=str)


def output_rows(columns: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Return output columns as one JSON-ready dict per row (NaN as null)."""
    cols = {}
    for k, v in columns.items():
        values = v.tolist()
        if v.dtype.kind == "f" and np.isnan(v).any() or v.dtype.kind == "O":
            values = [json_value(x) for x in values]
        cols[k] = values
    keys = list(cols)
    return [dict(zip(keys, r, strict=True)) for r in zip(*cols.values(), strict=True)]


def json_value(value: Any) -> Any:
    """Return a JSON-friendly scalar (numpy numbers, NaN as null, times as ISO text)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
