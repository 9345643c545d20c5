"""The service's fast paths give exactly what the slow ones give.

`hortus.serving._scorer.CompiledScorer` (the fitted pipeline's encoders folded into one
dict per category, the estimator's own trees) must score every row bit for bit as the
typed frame + `to_model_input` + ``pipeline.predict_proba`` path does, for every task
and for rows with unknown categories, nulls, NaN, integers in float columns and
booleans; rows it cannot take (a string in a numeric column) fall back to the
pipeline.  `RowChecker` must list exactly the problems the row-by-row walk lists.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from threadpoolctl import threadpool_limits

from hortus.models import modeling
from hortus.models.modeling import ModelSpec
from hortus.serving._model import RowChecker, ServedModel, _walk, compiled

FEATURES = ("region", "device", "views", "spend", "is_member", "age")
CATEGORICAL = ("region", "device")


def _data(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east", "west", "centre"], n).tolist()
    device = rng.choice(["web", "ios", "android"], n).tolist()
    for i in range(0, n, 17):
        device[i] = None  # nulls seen in training
    views = rng.poisson(4, n).astype(float)
    views[::13] = np.nan
    spend = rng.gamma(2.0, 30.0, n)
    member = rng.random(n) < 0.3
    age = rng.integers(18, 80, n)
    score = (
        np.nan_to_num(views) / 4 + spend / 60 + member * 1.5 + (np.array(region) == "north") - 2.5
    )
    target = {
        "binary": (score + rng.normal(0, 0.5, n) > 0).astype(np.int64),
        "multiclass": np.array(["low", "mid", "high"])[np.digitize(score, [-0.5, 0.8])],
        "regression": score * 10 + rng.normal(0, 1, n),
    }
    return pl.DataFrame({
        "region": region, "device": device, "views": views, "spend": spend,
        "is_member": member.tolist(), "age": age, "y_binary": target["binary"],
        "y_multiclass": target["multiclass"], "y_regression": target["regression"],
    })  # fmt: skip


def _served(task: str, estimator: str = "hgb") -> ServedModel:
    data = _data(600, seed=1)
    target = f"y_{'binary' if task == 'ranking' else task}"
    spec = ModelSpec(target, FEATURES, categorical=CATEGORICAL, task=task, estimator=estimator,
                     params={"max_iter": 25} if estimator == "hgb" else {}, seed=3)  # fmt: skip
    with threadpool_limits(limits=1):
        pipeline = modeling.build_pipeline(spec).fit(
            modeling.to_model_input(data, spec), modeling.target_values(data, spec)
        )
    signature = modeling.Signature.from_frame(data, spec)
    return compiled(ServedModel("m", 1, "champion", "0" * 64, pipeline, signature, spec))


def _rows(n: int, seed: int) -> list[dict]:
    """Request rows as JSON gives them: unknown categories, nulls, NaN, ints in floats."""
    rows = _data(n, seed).select(FEATURES).to_dicts()
    for i, r in enumerate(rows):
        if i % 5 == 0:
            r["region"] = "atlantis"  # unseen category
        if i % 7 == 0:
            r["views"] = None
        if i % 11 == 0:
            r["spend"] = int(r["spend"])  # an integer in a float column
        if i % 9 == 0:
            r["views"] = math.nan
        if i % 8 == 0:
            r["is_member"] = None
    return rows


def _slow(model: ServedModel, rows: list[dict]) -> dict[str, np.ndarray]:
    """What the service computed before the compiled scorer: typed frame, then the pipeline."""
    out = model.score(model.frame(rows))
    return {c: out[c].to_numpy() for c in out.columns}


@pytest.mark.parametrize("task", ["ranking", "binary", "multiclass", "regression"])
def test_compiled_scorer_gives_bit_identical_outputs_for_every_task(task):
    model = _served(task)
    assert model.scorer is not None, "a build_pipeline hgb model compiles"
    for n in (1, 7, 54, 300):
        rows = _rows(n, seed=n)
        assert model.scorer.matrix(rows) is not None  # plain values: the fast path
        fast = model.outputs(rows)
        slow = _slow(model, rows)
        assert list(fast) == list(slow)
        for col in slow:
            assert np.array_equal(np.asarray(fast[col]), slow[col]), (task, n, col)


def test_rows_the_compiled_scorer_cannot_take_fall_back_to_the_pipeline():
    model = _served("binary")
    rows = _rows(20, seed=5)
    rows[3]["spend"] = "12.5"  # text in a numeric column: the typed frame makes it null
    rows[4]["age"] = 2**70  # beyond 64 bits
    assert model.scorer.matrix(rows) is None
    fast, slow = model.outputs(rows), _slow(model, rows)
    for col in slow:
        assert np.array_equal(np.asarray(fast[col]), slow[col]), col


def test_a_pipeline_it_does_not_recognise_is_scored_by_the_pipeline():
    model = _served("binary", estimator="logreg")
    assert model.scorer is None
    rows = _rows(30, seed=2)
    rows = [r | {"views": 1.0 if r["views"] is None or r["views"] != r["views"] else r["views"],
                 "is_member": bool(r["is_member"])} for r in rows]  # fmt: skip
    fast, slow = model.outputs(rows), _slow(model, rows)
    for col in slow:
        assert np.array_equal(np.asarray(fast[col]), slow[col]), col


def test_a_scorer_that_disagrees_with_its_pipeline_is_not_used():
    from hortus.serving._scorer import CompiledScorer

    model = _served("binary")
    wrong = lambda rows: model.model_input(rows)[:, ::-1]  # noqa: E731 - columns swapped
    assert CompiledScorer.build(model.pipeline, model.spec, model.signature, wrong) is None


def test_row_checker_lists_exactly_what_the_row_by_row_walk_lists():
    model = _served("binary")
    checker = RowChecker(model.signature)
    cats = {c["name"]: frozenset(str(v) for v in c["categories"])
            for c in model.signature.columns if c.get("categories") is not None}  # fmt: skip
    clean = [r | {"region": "north"} for r in _data(40, seed=9).select(FEATURES).to_dicts()]
    assert checker.check(clean) == [] == _walk(clean, model.signature.columns, cats)
    dirty = [dict(r) for r in clean]
    dirty[2]["region"] = "atlantis"
    dirty[5]["age"] = 3.5
    dirty[5]["is_member"] = 1
    del dirty[7]["spend"]
    dirty[9]["spend"] = math.inf
    dirty[11] = "not an object"
    dirty[12]["age"] = True
    want = _walk(dirty, model.signature.columns, cats)
    assert checker.check(dirty) == want
    assert {(p["row"], p["column"]) for p in want} == {
        (2, "region"),
        (5, "age"),
        (5, "is_member"),
        (7, "spend"),
        (9, "spend"),
        (11, None),
        (12, "age"),
    }
    assert checker.check([])[0]["problem"] == "`rows` must be a non-empty list"


def test_logged_features_text_is_what_the_value_by_value_encoding_gave():
    import json
    from datetime import UTC, date, datetime

    from hortus.serving._model import features_json, json_value, output_rows

    names = ["a", "b", "c", "d", "e", "f"]
    rows = [
        {"a": 1.5, "b": "x", "c": None, "d": True, "e": 3, "f": 1e16, "extra": "ignored"},
        {
            "a": math.nan,
            "b": np.float64(2.25),
            "c": np.int64(7),
            "d": date(2026, 1, 2),
            "e": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        },  # fmt: skip
        {"a": np.float64("nan"), "b": float("-inf") * 0, "c": "é"},
    ]
    for row in rows:
        want = json.dumps({n: json_value(row.get(n)) for n in names}, default=str)
        assert features_json(row, names) == want
    out = output_rows({"score": np.array([0.5, np.nan]), "prediction": np.array(["a", "b"])})
    assert out == [{"score": 0.5, "prediction": "a"}, {"score": None, "prediction": "b"}]
