"""Untrusted model artifacts are refused before anything in them runs (issue 18, item 5).

The allow-list is Hortus's reviewed list (`hortus.models._trust`) of the types, functions
and partials the project's own models hold, extended by hortus.yaml `trusted_model_types`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import operator

import numpy as np
import polars as pl
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler
from sklearn.utils.validation import check_array

from hortus.errors import ArtifactError
from hortus.lakehouse.tables import Lakehouse
from hortus.models import modeling
from hortus.models._trust import TRUSTED_CALLABLES, archive_types, project_trust
from hortus.models.registry import VERSIONS, Registry
from test_registry import SIGNATURE, _receipt

FAMILIES = [  # every (task, estimator) the project trains (models/_spec.py TASKS)
    ("binary", "hgb"), ("binary", "logreg"), ("ranking", "hgb"), ("ranking", "logreg"),
    ("multiclass", "hgb"), ("multiclass", "logreg"), ("regression", "hgb"),
    ("regression", "linear"),
]  # fmt: skip


def _frame(n: int = 240) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    return pl.DataFrame({
        "colour": rng.choice(["red", "green", "blue"], n).tolist(),
        "x": x,
        "g": np.arange(n) // 8,
        "y01": (x + rng.normal(size=n) > 0).astype(int),
        "kind": rng.choice(["fern", "palm", "cactus"], n).tolist(),
        "price": 3.0 * x + rng.normal(size=n),
    })  # fmt: skip


def _spec(task: str, estimator: str, features=("colour", "x")) -> modeling.ModelSpec:
    target = {"multiclass": "kind", "regression": "price"}.get(task, "y01")
    cat = tuple(f for f in features if f == "colour")
    group = "g" if task == "ranking" else None
    params = {"max_iter": 10} if estimator == "hgb" else {}  # same types, faster
    return modeling.ModelSpec(
        target,
        tuple(features),
        task=task,
        estimator=estimator,
        categorical=cat,
        group=group,
        params=params,
    )


def _fit(spec: modeling.ModelSpec, df: pl.DataFrame) -> Pipeline:
    x = modeling.to_model_input(df, spec)
    return modeling.build_pipeline(spec).fit(x, modeling.target_values(df, spec))


def _write_raw(pipeline: Pipeline, path, spec_features=("x",)) -> str:
    """Write any pipeline as a model file with a matching signature (bypassing save_model)."""
    data = modeling._normalise_skops(sio.dumps(pipeline))
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    side = {"model_sha256": sha, "model_file": path.name, "metadata": {}} | _signature().to_dict()
    modeling.signature_path(path).write_text(json.dumps(side))
    return sha


def _signature() -> modeling.Signature:
    spec = modeling.ModelSpec("price", ("x",), task="regression", estimator="linear")
    return modeling.Signature.from_frame(_frame(), spec)


def _crafted(target_file) -> Pipeline:
    """The probe's artifact: a pipeline whose first step writes a file on predict."""
    x, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
    writer = FunctionTransformer(functools.partial(np.savetxt, str(target_file)))
    return Pipeline([("prepare", writer), ("model", LogisticRegression().fit(x, y))])


@pytest.mark.parametrize(("task", "estimator"), FAMILIES)
@pytest.mark.parametrize("features", [("colour", "x"), ("x",), ("colour",)])
def test_every_model_family_the_project_trains_saves_and_loads(task, estimator, features, tmp_path):
    """Check that each task x estimator (categorical, numeric, both) round-trips and predicts."""
    df = _frame()
    spec = _spec(task, estimator, features)
    pipeline = _fit(spec, df)
    signature = modeling.Signature.from_frame(df, spec)
    sha = modeling.save_model(pipeline, signature, tmp_path / "m.skops")
    loaded, _ = modeling.load_model(tmp_path / "m.skops", sha)
    want = modeling.predict_scores(pipeline, df, spec)
    assert np.array_equal(modeling.predict_scores(loaded, df, spec), want)


def test_hgb_partial_of_check_array_is_the_only_partial_allowed(tmp_path):
    """Check that the default model's partial is judged by its function, not allowed as such."""
    df = _frame()
    pipeline = _fit(_spec("binary", "hgb"), df)
    types = archive_types(sio.dumps(pipeline))
    assert "functools.partial(sklearn.utils.validation.check_array)" in types
    assert "functools.partial" not in types and "sklearn.utils.validation.check_array" not in types
    assert {"functools.partial(sklearn.utils.validation.check_array)"} == TRUSTED_CALLABLES


def test_crafted_artifact_is_refused_before_any_code_runs(tmp_path, monkeypatch):
    """Check the probe: FunctionTransformer(partial(np.savetxt, PATH)) never loads or writes."""
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.skops"
    sha = _write_raw(_crafted(target), path)
    # what the former rule (any numpy.* / sklearn.* callable, any partial) let through:
    old = sio.loads(path.read_bytes(), trusted=sio.get_untrusted_types(data=path.read_bytes()))
    with contextlib.suppress(ValueError):  # np.savetxt returns None to the next step
        old.predict(np.zeros((2, 2)))
    assert target.exists()
    target.unlink()

    def no_construction(*args, **kwargs):
        raise AssertionError("skops.io.loads called on a refused artifact")

    monkeypatch.setattr(sio, "loads", no_construction)
    with pytest.raises(ArtifactError) as err:
        modeling.load_model(path, sha)
    assert "evil.skops: refusing to load untrusted type(s)" in str(err.value)
    assert "['functools.partial(numpy.savetxt)']" in str(err.value)
    assert not target.exists()
    with pytest.raises(ArtifactError, match=r"numpy\.savetxt"):
        modeling.save_model(_crafted(target), _signature(), path)
    assert not target.exists()


@pytest.mark.parametrize(
    ("step", "refused"),
    [
        (FunctionTransformer(np.savetxt), "numpy.savetxt"),  # a bare function
        (FunctionTransformer(np.add), "numpy.add"),  # a ufunc (skops trusts them by default)
        (FunctionTransformer(print), "builtins.print"),
        (FunctionTransformer(functools.partial(Ridge, alpha=2.0)), "functools.partial"),
        (FunctionTransformer(functools.partial(np.save, "x")), "functools.partial(numpy.save)"),
        (MinMaxScaler(), "sklearn.preprocessing._data.MinMaxScaler"),  # trusted by skops, unused
        (FunctionTransformer(np.ndarray), "type(numpy.ndarray)"),  # a class called as a function
        (FunctionTransformer(operator.methodcaller("tofile", "x")), "operator.methodcaller"),
        (
            FunctionTransformer(check_array),
            "sklearn.utils.validation.check_array",
        ),  # not in a partial
    ],
)
def test_other_functions_partials_and_unused_estimators_are_refused(step, refused, tmp_path):
    """Check that only the reviewed types load: names of every other kind are refused."""
    path = tmp_path / "m.skops"
    sha = _write_raw(Pipeline([("prepare", step), ("model", Ridge())]), path)
    with pytest.raises(ArtifactError, match="refusing to load untrusted type") as err:
        modeling.load_model(path, sha)
    assert refused in str(err.value)


def test_register_refuses_untrusted_types_naming_them_and_writes_nothing(lakehouse, tmp_path):
    """Check that `register` refuses the crafted artifact, names the type, stores nothing."""
    target = tmp_path / "pwned.txt"
    path = tmp_path / "build" / "evil.skops"
    path.parent.mkdir()
    sha = _write_raw(_crafted(target), path)
    reg = Registry(lakehouse, "recommender")
    with pytest.raises(ArtifactError, match=r"evil\.skops: refusing .*functools\.partial\(numpy"):
        reg.register(path, sha256=sha, signature=SIGNATURE, metrics={}, receipt=_receipt(1))
    assert not lakehouse.exists(VERSIONS)
    assert not reg.root.exists() or not any(reg.root.iterdir())
    assert not target.exists()
    path.write_bytes(b"not a zip")
    sha = hashlib.sha256(b"not a zip").hexdigest()
    with pytest.raises(ArtifactError, match="not a readable skops archive"):
        reg.register(path, sha256=sha, signature=SIGNATURE, metrics={}, receipt=_receipt(1))


def test_project_extends_the_list_in_hortus_yaml(lakehouse, tmp_path):
    """Check that hortus.yaml `trusted_model_types` admits a type to register and load."""
    df = _frame()
    spec = modeling.ModelSpec("price", ("x",), task="regression", estimator="linear")
    x = modeling.to_model_input(df, spec)
    pipeline = Pipeline([("scale", MinMaxScaler()), ("model", Ridge())])
    pipeline.fit(x, modeling.target_values(df, spec))
    path = tmp_path / "build" / "m.skops"
    path.parent.mkdir()
    sha = _write_raw(pipeline, path)
    reg = Registry(lakehouse, "recommender")
    with pytest.raises(ArtifactError, match=r"\['sklearn.preprocessing._data.MinMaxScaler'\]"):
        reg.register(path, sha256=sha, signature=SIGNATURE, metrics={}, receipt=_receipt(1))
    root = lakehouse.paths.root
    definition = root / "hortus.yaml"
    definition.write_text(
        definition.read_text() + "trusted_model_types: [sklearn.preprocessing._data.MinMaxScaler]\n"
    )
    assert project_trust(root) == ("sklearn.preprocessing._data.MinMaxScaler",)
    from hortus.project.definition import Project

    assert Project.load(root).trusted_model_types == project_trust(root)
    mv = reg.register(path, sha256=sha, signature=SIGNATURE, metrics={}, receipt=_receipt(1))
    loaded, _ = Registry(Lakehouse.open(root), "recommender").load(mv.version)
    assert np.allclose(loaded.predict(x), pipeline.predict(x))
    definition.write_text(definition.read_text() + "# \n")
    bad = definition.read_text().replace(
        "[sklearn.preprocessing._data.MinMaxScaler]", "sklearn.preprocessing._data.MinMaxScaler"
    )
    definition.write_text(bad)
    with pytest.raises(ArtifactError, match="trusted_model_types must be a list"):
        project_trust(root)
