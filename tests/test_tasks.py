"""Task types end to end: binary, ranking, multiclass and regression models.

Every task trains on real scikit-learn data (`make_classification`,
`make_regression`, 3,000 rows) turned into a polars table with a categorical
region (the segment and the sensitive attribute), a time column (the hold-out
is the latest fifth), ranked lists of ten for the ranking task and a row id.
Features are not shuffled by the generators, so x0..x3 carry the signal and
x4, x5 are noise; the regression coefficients are positive.

scikit-learn's OpenMP code runs on one thread (see tests/test_model_checks.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import datetime

import numpy as np
import polars as pl
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.metrics import f1_score, mean_absolute_error, roc_auc_score
from threadpoolctl import threadpool_limits

from hortus.checks import gate as g
from hortus.checks.model_checks import (
    ModelCheckConfig,
    behavioural,
    fairness_regression,
    model_outputs,
    run_model_checks,
    segment_metrics_ci,
    task_fairness,
)
from hortus.errors import HortusError
from hortus.models.modeling import (
    TASKS,
    ModelSpec,
    evaluate,
    load_model,
    predict,
    predict_scores,
    primary_metric,
    save_model,
    score_frame,
    time_split,
    train,
)
from hortus.publishing.model_card import task_metrics

N = 3000
REGIONS = ("north", "south", "east", "west")
FEATURES = ("x0", "x1", "x2", "x3", "x4", "x5", "region")
CLASSES = ("cactus", "fern", "palm")
FAST = {"max_iter": 30}
RANKING_KEYS = {"precision_at_k", "recall_at_k", "ndcg_at_k", "groups", "k"}


def make_frame(task: str, seed: int = 0, n: int = N) -> pl.DataFrame:
    """Return n rows for a task: x0..x5, region, ts (hourly), list_id, row_id and y."""
    if task == "regression":
        x, y = make_regression(
            n_samples=n, n_features=6, n_informative=4, noise=10.0, shuffle=False,
            random_state=seed,
        )  # fmt: skip
        target = pl.Series("y", y + 400.0)  # a positive quantity, e.g. a basket value
    else:
        x, y = make_classification(
            n_samples=n, n_features=6, n_informative=4, n_redundant=0, n_repeated=0,
            n_classes=3 if task == "multiclass" else 2, n_clusters_per_class=1,
            flip_y=0.02, shuffle=False, random_state=seed,
        )  # fmt: skip
        # make_classification sorts rows by class when shuffle=False: spread them in time
        order = np.random.default_rng(seed).permutation(n)
        x, y = x[order], y[order]
        target = (
            pl.Series("y", np.asarray(CLASSES)[y]) if task == "multiclass" else pl.Series("y", y)
        )
    rng = np.random.default_rng(seed + 1)
    return pl.DataFrame({f"x{i}": x[:, i] for i in range(6)}).with_columns(
        region=pl.Series(rng.choice(REGIONS, n)),
        ts=pl.datetime_range(datetime(2025, 1, 1), pl.lit(datetime(2025, 1, 1)).dt.offset_by(
            f"{n - 1}h"), "1h", eager=True),
        list_id=pl.int_range(n, eager=True) // 10,
        row_id=pl.int_range(n, eager=True),
        y=target,
    )  # fmt: skip


def make_spec(task: str, **changes) -> ModelSpec:
    """Return the spec of a task: time hold-out, region segments, lists for ranking."""
    fields = {
        "target": "y", "features": FEATURES, "categorical": ("region",), "time": "ts",
        "segments": ("region",), "seed": 3, "params": FAST, "task": task,
        "group": "list_id" if task == "ranking" else None,
    }  # fmt: skip
    return ModelSpec(**(fields | changes))


@pytest.fixture(scope="module")
def one_thread():
    """Run scikit-learn's OpenMP code on one thread for the module."""
    with threadpool_limits(1):
        yield


@functools.cache
def _trained(task: str) -> tuple:
    """Return (task, frame, spec, TrainResult, hold-out) of a task's model (trained once)."""
    df = make_frame(task)
    spec = make_spec(task)
    with threadpool_limits(1):
        result = train(df, spec, curve_points=2, importance_repeats=2)
    _, holdout, _ = time_split(df, spec)
    return task, df, spec, result, holdout


@pytest.fixture(scope="module", params=list(TASKS))
def trained(request, one_thread):
    """Return (task, frame, spec, TrainResult, hold-out) of a model per task."""
    return _trained(request.param)


# ---------------------------------------------------------------- spec


def test_spec_infers_the_task_of_a_registered_spec_without_one():
    """Check that a spec dict written before tasks loads as ranking with a group, else binary."""
    old = {"target": "y", "features": ["a", "b"], "group": "g", "k": 5, "params": {}}
    spec = ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in old.items()})
    assert spec.task == "ranking"
    assert ModelSpec("y", ("a",)).task == "binary"
    doc = spec.to_dict()
    assert doc["task"] == "ranking" and doc["threshold"] == 0.5
    assert ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}) == spec


def test_spec_refuses_an_estimator_or_setting_that_does_not_fit_the_task():
    """Check that logreg for regression, linear for a classifier and odd settings are refused."""
    with pytest.raises(HortusError, match=r"'logreg' does not fit task 'regression'.*Ridge"):
        ModelSpec("y", ("a",), task="regression", estimator="logreg")
    with pytest.raises(HortusError, match=r"'linear' does not fit task 'binary'"):
        ModelSpec("y", ("a",), estimator="linear")
    with pytest.raises(HortusError, match=r"task must be one of .*got 'ordinal'"):
        ModelSpec("y", ("a",), task="ordinal")
    with pytest.raises(HortusError, match=r"threshold must be in \(0, 1\), got 1.5"):
        ModelSpec("y", ("a",), threshold=1.5)
    with pytest.raises(HortusError, match=r"'prediction' cannot be .* of a regression model"):
        ModelSpec("y", ("a",), task="regression", segments=("prediction",))


def test_primary_metric_names_the_metric_and_its_direction_per_task():
    """Check the TASKS table: the primary metric of each task and whether higher is better."""
    assert {t: primary_metric(t) for t in TASKS} == {
        "binary": ("roc_auc", True),
        "ranking": ("ndcg_at_k", True),
        "multiclass": ("f1_macro", True),
        "regression": ("rmse", False),
    }
    assert primary_metric(make_spec("ranking")) == ("ndcg_at_k", True)
    with pytest.raises(HortusError, match="unknown task 'survival'"):
        primary_metric("survival")


# ---------------------------------------------------------------- training


EXPECTED = {
    "binary": ({"roc_auc", "average_precision", "log_loss", "precision", "recall", "f1",
                "threshold"}, RANKING_KEYS),
    "ranking": ({"roc_auc", "average_precision", "log_loss"} | RANKING_KEYS,
                {"precision", "f1", "threshold"}),
    "multiclass": ({"accuracy", "balanced_accuracy", "f1_macro", "log_loss", "roc_auc_ovr"},
                   RANKING_KEYS | {"roc_auc", "positives"}),
    "regression": ({"rmse", "mae", "r2"}, RANKING_KEYS | {"roc_auc", "log_loss", "positives"}),
}  # fmt: skip


def test_train_reports_the_metrics_of_the_task_and_only_those(trained):
    """Check that each task's hold-out metrics are present and good, others absent."""
    task, _, spec, result, holdout = trained
    present, absent = EXPECTED[task]
    assert present <= set(result.metrics), present - set(result.metrics)
    assert not absent & set(result.metrics)
    name, higher = primary_metric(spec)
    assert result.metrics[name] is not None
    if task == "binary":
        assert result.metrics["roc_auc"] > 0.85 and 0 < result.metrics["precision"] <= 1
    elif task == "ranking":
        assert 0 < result.metrics["ndcg_at_k"] < 1  # a real ranking, not one list of a frame
    elif task == "multiclass":
        assert result.metrics["f1_macro"] > 0.7 and result.metrics["classes"] == 3
        want = f1_score(holdout["y"], result.predictions["prediction"], average="macro")
        assert result.metrics["f1_macro"] == pytest.approx(want, abs=1e-12)
    else:
        assert not higher and result.metrics["r2"] > 0.9
        want = mean_absolute_error(holdout["y"], result.predictions["prediction"])
        assert result.metrics["mae"] == pytest.approx(want, rel=1e-12)
    again = evaluate(result.pipeline, holdout, spec)
    assert again == pytest.approx(result.metrics)


def test_outputs_have_the_columns_of_the_task(trained):
    """Check prediction/score/proba columns per task and that scores are what they claim."""
    task, df, spec, result, holdout = trained
    out = predict(result.pipeline, holdout, spec)
    scores = predict_scores(result.pipeline, holdout, spec)
    np.testing.assert_array_equal(out["score"].to_numpy(), scores)
    if task == "ranking":
        assert out.columns == ["score"]
    elif task == "binary":
        assert out.columns == ["prediction", "score"]
        assert (out["prediction"] == (out["score"] >= spec.threshold).cast(pl.Int64)).all()
    elif task == "multiclass":
        probas = [f"proba_{c}" for c in CLASSES]
        assert out.columns == ["prediction", "score", *probas]
        matrix = out.select(probas).to_numpy()
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-9)
        np.testing.assert_allclose(out["score"].to_numpy(), matrix.max(axis=1))
        best = np.asarray(CLASSES)[matrix.argmax(axis=1)]
        assert out["prediction"].to_list() == best.tolist()
    else:
        assert out.columns == ["prediction", "score"]
        assert out["prediction"].equals(out["score"].alias("prediction"))
    scored = score_frame(result.pipeline, result.signature, holdout, spec)
    assert scored.select(out.columns).equals(out)


def test_learning_curve_and_importance_use_the_task_metric(trained):
    """Check the learning-curve columns per task and that noise features rank last."""
    task, _, _, result, _ = trained
    metric_cols = {
        "binary": ["roc_auc", "log_loss"], "ranking": ["roc_auc", "log_loss"],
        "multiclass": ["f1_macro", "log_loss"], "regression": ["rmse", "mae"],
    }[task]  # fmt: skip
    assert result.learning_curve.columns == ["train_rows", "split", *metric_cols]
    assert result.learning_curve.height == 4
    assert result.learning_curve[metric_cols[0]].is_not_null().all()
    top = result.importance["feature"].head(3).to_list()
    assert not {"x4", "x5", "region"} & set(top), result.importance
    assert result.importance["importance_mean"].max() > 0


def test_segment_metrics_table_has_the_task_columns(trained):
    """Check that the per-segment table of training has one row per region and task columns."""
    task, _, _, result, _ = trained
    seg = result.segment_metrics
    assert seg["value"].to_list() == sorted(REGIONS)
    if task == "ranking":
        assert "ndcg_at_k" in seg.columns
    else:
        assert not any(c.endswith("_at_k") for c in seg.columns)
    main = {"binary": "roc_auc", "ranking": "roc_auc", "multiclass": "f1_macro",
            "regression": "rmse"}[task]  # fmt: skip
    assert seg[main].is_not_null().all()


def test_saved_artifacts_are_byte_identical_for_the_same_inputs(trained, tmp_path):
    """Check that training twice gives the same skops bytes (sha256) and a faithful reload."""
    task, df, spec, result, holdout = trained
    first = save_model(result.pipeline, result.signature, tmp_path / "a.skops")
    again = train(df, spec, curve_points=1, importance_repeats=1)
    second = save_model(again.pipeline, again.signature, tmp_path / "b.skops")
    assert first == second
    assert hashlib.sha256((tmp_path / "b.skops").read_bytes()).hexdigest() == first
    pipeline, signature = load_model(tmp_path / "a.skops", expected_sha256=first)
    assert predict(pipeline, holdout, spec).equals(predict(result.pipeline, holdout, spec))
    assert signature.names == list(spec.features)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_linear_estimators_train_per_task(task, one_thread, tmp_path):
    """Check that logreg (multiclass) and linear = Ridge (regression) train and round-trip."""
    df = make_frame(task, seed=5, n=2000)
    estimator = "logreg" if task == "multiclass" else "linear"
    spec = make_spec(task, estimator=estimator, params={})
    result = train(df, spec, curve_points=1, importance_repeats=1)
    algorithm = type(result.pipeline.steps[-1][1]).__name__
    assert algorithm == ("LogisticRegression" if task == "multiclass" else "Ridge")
    name, _ = primary_metric(spec)
    assert result.metrics[name] > (0.6 if task == "multiclass" else 0.0)
    sha = save_model(result.pipeline, result.signature, tmp_path / "m.skops")
    assert sha == save_model(result.pipeline, result.signature, tmp_path / "n.skops")


BAD_TARGETS = [
    ("binary", pl.lit(2), r"target 'y' must be 0/1, found \[2\]"),
    ("binary", pl.lit(0), r"target 'y' has one class in the training rows"),
    ("multiclass", pl.col("x0"), r"multiclass target 'y' must hold class labels .* not Float64"),
    ("multiclass", pl.lit("fern"), r"target 'y' has one class in the training rows"),
    ("regression", pl.lit("high"), r"regression target 'y' is not numeric \(String\)"),
    ("regression", pl.lit(3.0), r"regression target 'y' is constant in the training rows"),
    (
        "regression",
        pl.when(pl.col("row_id") < 3).then(None).otherwise(pl.col("y")),
        r"target 'y' has 3 null\(s\)",
    ),
]


@pytest.mark.parametrize(("task", "value", "message"), BAD_TARGETS)
def test_bad_targets_are_refused_naming_the_column_and_rule(task, value, message):
    """Check that a target that breaks the task's rule is refused with a clear message."""
    df = make_frame(task, n=2000).with_columns(value.alias("y"))
    with pytest.raises(HortusError, match=message):
        train(df, make_spec(task), curve_points=1)


# ---------------------------------------------------------------- model checks


def test_segment_metrics_ci_judges_every_region_with_the_task_metric(trained):
    """Check that each task's segment check judges all regions (none insufficient) and passes."""
    task, _, spec, result, holdout = trained
    res = segment_metrics_ci(
        result.pipeline, holdout, spec, n_boot=50, min_segment_size=100, max_gap=0.1
    )
    assert res.stats["metric"] == TASKS[task].segment_metric
    assert res.table["status"].to_list() == ["ok"] * 4, res.detail
    assert res.passed and res.stats["judged"] == 4
    if task == "multiclass":
        outputs = model_outputs(result.pipeline, holdout, spec)
        for row in res.table.iter_rows(named=True):
            mask = (holdout["region"] == row["value"]).to_numpy()
            want = f1_score(holdout["y"].to_numpy()[mask], outputs[mask], average="macro")
            assert row["estimate"] == pytest.approx(want, abs=1e-12)
    if task == "regression":  # lower is better: the bound is above overall
        assert res.threshold > res.stats["overall"] and res.stats["relative_gap"]


def test_segment_metrics_ci_flags_a_region_with_larger_regression_errors(one_thread):
    """Check that a region whose errors are higher fails (higher RMSE is worse)."""
    df = make_frame("regression", seed=2)
    spec = make_spec("regression")
    result = train(df, spec, curve_points=1, importance_repeats=1)
    _, holdout, _ = time_split(df, spec)
    noise = np.random.default_rng(0).normal(0, 60, holdout.height)
    noisy = holdout.with_columns(
        pl.when(pl.col("region") == "east").then(pl.col("y") + noise).otherwise(pl.col("y"))
    )
    res = segment_metrics_ci(result.pipeline, noisy, spec, n_boot=50, max_gap=0.1)
    assert not res.passed
    assert "segment region='east': rmse" in res.detail and "significantly above" in res.detail
    assert res.value > res.threshold
    mae = segment_metrics_ci(result.pipeline, noisy, spec, metric="mae", n_boot=50)
    assert not mae.passed and mae.stats["metric"] == "mae"


def test_fairness_is_computed_per_task_and_not_zero(trained):
    """Check that fairness across regions measures real rates for every task."""
    task, df, spec, result, _ = trained
    # every row (750 per region): the region is random, so the rates should agree
    outputs = model_outputs(result.pipeline, df, spec)
    res = task_fairness(outputs, df, spec, "region", min_group_size=100)
    table = res.table
    assert res.passed, res.detail
    assert res.value is not None and 0.8 <= res.value <= 1.0
    if task in ("binary", "ranking"):
        assert (table["selection_rate"] > 0).all() and (table["true_positive_rate"] > 0).all()
    if task == "ranking":
        assert res.stats["exposure"]["judged"] and "false_positive_rate" not in table.columns
    elif task == "binary":
        assert "mean_exposure" not in table.columns and "exposure" not in res.stats
        assert res.stats["false_positive_parity"]["judged"]
        assert 0 < table["selection_rate"].mean() < 1
    elif task == "multiclass":
        assert table["class"].unique().sort().to_list() == list(CLASSES)
        assert table.height == 3 * len(REGIONS)
        assert (table["selection_rate"] > 0.2).all()
        assert res.stats["false_positive_parity"]["class"] in CLASSES
    else:
        assert {"mae", "mean_prediction"} <= set(table.columns)
        assert res.stats["error_parity"]["judged"] and res.stats["prediction_parity"]["judged"]
        assert (table["mae"] > 0).all()


def test_binary_fairness_ignores_top_k_and_says_so(one_thread):
    """Check that a configured top_k does not apply to a binary model (threshold instead)."""
    _, _, spec, result, holdout = _trained("binary")
    outputs = model_outputs(result.pipeline, holdout, spec)
    res = task_fairness(outputs, holdout, spec, "region", top_k=5, min_group_size=100)
    assert res.stats["ignored_settings"] == ["top_k"]
    assert "['top_k'] do not apply to a binary model" in res.detail
    assert (res.table["selection_rate"] > 0.2).all()  # not 5 rows of a 600-row frame


def test_fairness_regression_fails_when_one_group_gets_larger_errors():
    """Check the MAE ratio across groups, and that a mixed-sign mean prediction has no ratio."""
    rng = np.random.default_rng(1)
    group = np.repeat(["a", "b"], 500)
    y = rng.normal(100, 10, 1000)
    pred = y + rng.normal(0, np.where(group == "a", 1.0, 3.0))
    df = pl.DataFrame({"g": group, "y": y})
    res = fairness_regression(pred, df, "g", "y")
    assert not res.passed and "error parity: MAE ratio" in res.detail
    mae_a = mean_absolute_error(y[group == "a"], pred[group == "a"])
    mae_b = mean_absolute_error(y[group == "b"], pred[group == "b"])
    assert res.stats["error_parity"]["ratio"] == pytest.approx(mae_a / mae_b, rel=1e-9)
    centred = fairness_regression(pred - 100, df.with_columns(pl.col("y") - 100), "g", "y")
    assert not centred.stats["prediction_parity"]["judged"]
    assert "not positive in every group" in centred.stats["prediction_parity"]["reason"]


def test_behavioural_uses_values_and_class_probabilities(trained):
    """Check directional tests on regression values and on a declared multiclass class."""
    task, _, spec, result, holdout = trained
    if task == "regression":  # make_regression's coefficients are positive
        res = behavioural(
            result.pipeline, holdout, spec, invariance=["row_id"],
            directional=[{"feature": "x0", "direction": "increase", "delta": 1.0}],
        )  # fmt: skip
        assert res.passed, res.detail
        assert res.table.filter(pl.col("test") == "directional")["mean_change"][0] > 1
    elif task == "multiclass":
        base = predict(result.pipeline, holdout, spec)
        shifted = predict(result.pipeline, holdout.with_columns(pl.col("x0") + 1), spec)
        up = max(CLASSES, key=lambda c: (shifted[f"proba_{c}"] - base[f"proba_{c}"]).mean())
        res = behavioural(
            result.pipeline, holdout, spec, invariance=["row_id"],
            directional=[{"feature": "x0", "direction": "increase", "delta": 1.0, "class": up},
                         {"feature": "x1", "direction": "increase", "delta": 1.0}],
            max_wrong_share=0.4,  # trees are not monotone: some rows move the other way
        )  # fmt: skip
        assert res.passed and "skipped directional[1] 'x1'" in res.detail
        assert res.table["class"].to_list() == [None, up]
        orchid = {"feature": "x0", "direction": "increase", "delta": 1, "class": "orchid"}
        with pytest.raises(HortusError, match="names class 'orchid', not a class of the model"):
            behavioural(result.pipeline, holdout, spec, directional=[orchid])
    else:
        res = behavioural(result.pipeline, holdout, spec, invariance=["row_id"])
        assert res.passed
        with pytest.raises(HortusError, match=f"names a class, but a {task} model"):
            behavioural(result.pipeline, holdout, spec, directional=[
                {"feature": "x0", "direction": "increase", "delta": 1, "class": 1}])  # fmt: skip


def test_gate_runs_every_model_check_for_each_task(trained):
    """Check the gate on each task with plant-shop-like settings that fit only ranking."""
    task, df, spec, result, _ = trained
    config = g.GateConfig(
        model=ModelCheckConfig.from_dict(
            {
                "sensitive": ["region"],
                "segment_metrics": {
                    "metric": "roc_auc",
                    "n_boot": 50,
                    "min_segment_size": 100,
                    "max_gap": 0.1,
                },
                "fairness": {"min_ratio": 0.8, "min_group_size": 100},
                "importance": {"max_share": 0.9, "n_repeats": 1},
                "efficiency": {"rows": 3, "repeats": 2, "batch": 50, "leak_calls": 2},
                "behavioural": {"invariance": ["row_id"]},
            }  # fmt: skip
        )
    )
    res = g.run_gate(
        model_name=f"synthetic-{task}", version=1, pipeline=result.pipeline,
        signature=result.signature, spec=spec, evaluation=df, config=config,
    )  # fmt: skip
    names = [c.name for c in res.checks]
    assert names == [
        "segment_metrics_ci", "fairness[region]", "importance_check", "schema_conflicts",
        "efficiency", "behavioural",
    ]  # fmt: skip
    assert res.passed, [c.summary() for c in res.failed]
    segments = res.checks[0]
    if task in ("multiclass", "regression"):
        assert f"'roc_auc' does not fit a {task} model" in segments.detail
        assert segments.stats["metric"] == TASKS[task].segment_metric
    else:
        assert "does not fit" not in segments.detail
    json.dumps(res.to_dict(), default=str)  # the recorded result stays JSON
    assert f"synthetic-{task} v1: PASSED" in res.to_markdown()


def test_run_model_checks_for_ranking_keeps_top_k_fairness(one_thread):
    """Check that a ranking model's fairness still selects the top k of each list."""
    _, _, spec, result, holdout = _trained("ranking")
    cfg = ModelCheckConfig.from_dict({"sensitive": ["region"], "fairness": {"min_group_size": 100}})
    fair = next(
        c for c in run_model_checks(result.pipeline, holdout, spec, cfg) if c.name.startswith("fa")
    )
    assert fair.table["selected"].sum() == spec.k * holdout["list_id"].n_unique()


def test_model_card_shows_ranking_metrics_only_for_ranking_models():
    """Check that @k metrics of an old binary registration are dropped from its card."""
    metrics = {"roc_auc": 0.9, "ndcg_at_k": 1.0, "precision_at_k": 0.0, "k": 5, "n": 10}
    assert task_metrics(metrics, ModelSpec("y", ("a",))) == {"roc_auc": 0.9, "n": 10}
    assert task_metrics(metrics, ModelSpec("y", ("a",), group="g")) == metrics


def test_binary_threshold_metrics_follow_the_spec_threshold(one_thread):
    """Check that precision rises and recall falls with a stricter decision threshold."""
    _, _, spec, result, holdout = _trained("binary")
    strict = ModelSpec(**(spec.to_dict() | {"features": spec.features, "categorical": (
        "region",), "segments": ("region",), "threshold": 0.9}))  # fmt: skip
    loose = evaluate(result.pipeline, holdout, spec)
    tight = evaluate(result.pipeline, holdout, strict)
    assert tight["threshold"] == 0.9 and loose["threshold"] == 0.5
    assert tight["precision"] > loose["precision"] and tight["recall"] < loose["recall"]
    assert (
        loose["roc_auc"]
        == tight["roc_auc"]
        == pytest.approx(
            roc_auc_score(holdout["y"], predict_scores(result.pipeline, holdout, spec))
        )
    )


def test_fairness_compares_a_many_valued_numeric_attribute_in_quartile_bands():
    """Check that age in years is judged in four bands instead of dozens of tiny groups."""
    import numpy as np

    from hortus.checks.model_checks import task_fairness
    from hortus.models.modeling import ModelSpec

    rng = np.random.default_rng(0)
    n = 4000
    df = pl.DataFrame({"age": rng.integers(18, 90, n), "y": rng.integers(0, 2, n)})
    spec = ModelSpec(target="y", features=("age",), task="binary")
    result = task_fairness(rng.uniform(size=n), df, spec, "age", min_group_size=300)
    assert "age compared in quartile bands" in result.detail
    assert result.table["group"].n_unique() == 4
    assert result.table["judged"].all()  # every band is large enough to judge
