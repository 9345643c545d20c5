"""Model checks of a promotion gate: segments, fairness, importance, schema, efficiency, behaviour.

Everything runs on a synthetic applicant table (not the plant shop) to show the
checks are generic: three informative numbers, a region, an age band (the
sensitive attribute), a district that mostly follows the age band (a proxy),
a row id, a token and ranked lists of ten.  Each check passes on a model
trained on honest data and fails, for the right reason, on a crafted bad case.

scikit-learn's OpenMP code runs on one thread here: on a shared 2-core machine
its default thread count makes a small fit or a single-row predict tens of
times slower (spinning threads compete), which would only slow the tests.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import polars as pl
import pytest
import yaml
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score
from threadpoolctl import threadpool_limits

from hortus.checks.model_checks import (
    CheckResult,
    ModelCheckConfig,
    behavioural,
    efficiency,
    fairness,
    importance_check,
    run_model_checks,
    schema_conflicts,
    segment_metrics_ci,
)
from hortus.errors import HortusError, SignatureError
from hortus.models.modeling import ModelSpec, predict_scores, save_model, score_frame, train

REGIONS = ("north", "south", "east", "west")
AGE_BANDS = ("18-34", "35-54", "55+")
BASE = ("x0", "x1", "x2", "region")
FAST = {"max_iter": 30}

# memory kept by the leaky scorer below; emptied by the test that fills it
RETAINED: list[np.ndarray] = []


def make_frame(
    n: int,
    seed: int,
    *,
    noisy_region: str | None = None,
    age_effect: float = 0.0,
    id_effect: float = 0.0,
) -> pl.DataFrame:
    """Return n synthetic applicants with a 0/1 label `y` driven by x0, x1 and -x2.

    noisy_region: that region's labels are coin flips (the model cannot rank
    them); age_effect: older bands get a lower logit (a biased label);
    id_effect: the label drifts with the row id (a model may learn the id).
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    age = rng.integers(0, len(AGE_BANDS), n)
    row_id = np.arange(n)
    logit = 1.2 * x[:, 0] + 1.0 * x[:, 1] - 1.0 * x[:, 2] - age_effect * age
    logit += id_effect * (row_id / n - 0.5) * 4
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    region = rng.choice(REGIONS, n)
    if noisy_region is not None:
        noisy = region == noisy_region
        y[noisy] = (rng.random(int(noisy.sum())) < 0.5).astype(np.int64)
    # 90% of applicants live in the district of their age band: a proxy of age
    district = np.where(rng.random(n) < 0.9, age, rng.integers(0, len(AGE_BANDS), n))
    return pl.DataFrame(
        {
            "row_id": row_id,
            "token": [f"tok-{v:08x}" for v in rng.integers(0, 2**32, n)],
            "list_id": row_id // 10,
            "region": region,
            "age_band": np.array(AGE_BANDS)[age],
            "district": np.array(["d-a", "d-b", "d-c"])[district],
            "x0": x[:, 0],
            "x1": x[:, 1],
            "x2": x[:, 2],
            "leak": y + rng.normal(scale=0.3, size=n),
            "y": y,
        }
    )


def fit(df: pl.DataFrame, features=BASE, categorical=("region",)):
    """Train a small HGB model through hortus.models.modeling.train."""
    spec = ModelSpec(
        target="y",
        features=tuple(features),
        categorical=tuple(categorical),
        group="list_id",
        segments=("region", "age_band"),
        k=3,
        params=FAST,
    )
    return train(df, spec, curve_points=1, importance_repeats=1, importance_rows=500)


@pytest.fixture(scope="module")
def one_thread():
    """Limit scikit-learn's OpenMP and BLAS pools to one thread for the module."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def good(one_thread):
    """Return a model trained on honest data."""
    return fit(make_frame(6000, seed=1))


@pytest.fixture(scope="module")
def holdout():
    """Return fresh honest evaluation rows."""
    return make_frame(3000, seed=2)


class LeakyScorer(ClassifierMixin, BaseEstimator):
    """A classifier that keeps a copy of every output it returns (a memory leak)."""

    def __init__(self, model=None):
        self.model = model

    @property
    def classes_(self):
        return self.model.classes_

    def predict_proba(self, x):
        proba = self.model.predict_proba(x)
        RETAINED.append(proba.copy())
        return proba


class SlowScorer(ClassifierMixin, BaseEstimator):
    """A classifier that waits `delay` seconds on every call."""

    def __init__(self, model=None, delay=0.1):
        self.model = model
        self.delay = delay

    @property
    def classes_(self):
        return self.model.classes_

    def predict_proba(self, x):
        time.sleep(self.delay)
        return self.model.predict_proba(x)


# ---------------------------------------------------------------- result


def test_check_result_to_dict_is_json_friendly():
    """Check that a CheckResult serialises its table, NaN and numpy scalars to JSON."""
    result = CheckResult(
        "demo",
        False,
        np.float64(0.5),
        0.8,
        "ratio 0.5 < 0.8",
        pl.DataFrame({"group": ["a", "b"], "rate": [0.5, float("nan")]}),
        {"n": np.int64(3), "values": np.array([1.0, 2.0])},
    )
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["table"] == [{"group": "a", "rate": 0.5}, {"group": "b", "rate": None}]
    assert doc["stats"] == {"n": 3, "values": [1.0, 2.0]}
    assert result.summary().startswith("FAIL demo: value 0.5, threshold 0.8")


# ---------------------------------------------------------------- 1. segments


def test_segment_metrics_ci_passes_on_a_model_without_a_weak_segment(good, holdout):
    """Check that every region and age band of an honest model is judged and none is worse."""
    result = segment_metrics_ci(good.pipeline, holdout, good.spec, n_boot=200, seed=3)
    assert result.passed, result.detail
    table = result.table
    assert set(table["status"]) == {"ok"}
    assert table.height == len(REGIONS) + len(AGE_BANDS)
    assert (table["ci_low"] <= table["estimate"]).all()
    assert (table["estimate"] <= table["ci_high"]).all()
    assert result.threshold == pytest.approx(result.stats["overall"] - 0.05)


@pytest.mark.parametrize(
    ("metric", "reference"),
    [
        ("roc_auc", roc_auc_score),
        ("average_precision", average_precision_score),
        ("log_loss", log_loss),
    ],
)
def test_segment_metrics_ci_point_estimates_match_sklearn(good, holdout, metric, reference):
    """Check that the overall and per-segment metric equal scikit-learn's on the same rows."""
    scores = predict_scores(good.pipeline, holdout, good.spec)
    result = segment_metrics_ci(
        None, holdout, good.spec, ["region"], metric=metric, scores=scores, n_boot=20
    )
    y = holdout["y"].to_numpy()
    assert result.stats["overall"] == pytest.approx(reference(y, scores), abs=1e-12)
    for row in result.table.iter_rows(named=True):
        mask = (holdout["region"] == row["value"]).to_numpy()
        assert row["estimate"] == pytest.approx(reference(y[mask], scores[mask]), abs=1e-12)


def test_segment_metrics_ci_is_deterministic_for_a_seed(good, holdout):
    """Check that the same seed gives the same intervals and another seed different ones."""
    args = (good.pipeline, holdout, good.spec, ["region"])
    first = segment_metrics_ci(*args, n_boot=50, seed=7).table
    again = segment_metrics_ci(*args, n_boot=50, seed=7).table
    other = segment_metrics_ci(*args, n_boot=50, seed=8).table
    assert first.equals(again)
    assert not first["ci_low"].equals(other["ci_low"])


def test_segment_metrics_ci_fails_on_a_region_with_noise_labels(one_thread):
    """Check that a region whose labels are noise fails with its interval below the bound."""
    model = fit(make_frame(6000, seed=4, noisy_region="east"))
    rows = make_frame(3000, seed=5, noisy_region="east")
    result = segment_metrics_ci(model.pipeline, rows, model.spec, ["region"], seed=0)
    assert not result.passed
    assert "segment region='east'" in result.detail
    assert "significantly below overall" in result.detail
    worse = result.table.filter(pl.col("status") == "worse")
    assert worse["value"].to_list() == ["east"]
    assert result.value == pytest.approx(worse["ci_high"][0])
    assert result.value < result.threshold


def test_segment_metrics_ci_reports_small_segments_as_insufficient(good, holdout):
    """Check that a segment value below min_segment_size is reported but not judged."""
    rare = holdout.with_columns(
        region=pl.when(pl.col("row_id") < 40).then(pl.lit("islands")).otherwise("region")
    )
    result = segment_metrics_ci(good.pipeline, rare, good.spec, ["region"], n_boot=50)
    row = result.table.filter(pl.col("value") == "islands").row(0, named=True)
    assert row["status"] == "insufficient" and row["n"] == 40 and row["ci_low"] is None
    assert result.passed and "1 segment value(s) not judged" in result.detail


def test_segment_metrics_ci_lower_is_better_metric_fails_above_the_bound(one_thread):
    """Check that log loss, where lower is better, fails on the lower bound above overall."""
    model = fit(make_frame(6000, seed=4, noisy_region="east"))
    rows = make_frame(3000, seed=5, noisy_region="east")
    result = segment_metrics_ci(
        model.pipeline, rows, model.spec, ["region"], metric="log_loss", max_gap=0.02
    )
    assert not result.passed and "significantly above overall" in result.detail
    assert result.value > result.threshold


def test_segment_metrics_ci_refuses_an_unknown_metric(good, holdout):
    """Check that an unknown metric name is refused with the accepted names."""
    with pytest.raises(HortusError, match="metric must be one of"):
        segment_metrics_ci(good.pipeline, holdout, good.spec, metric="auc_pr")


def test_segment_metrics_ci_replaces_a_metric_of_another_task_and_says_so(good, holdout):
    """Check that a multiclass metric on a ranking model falls back to roc_auc, with a note."""
    result = segment_metrics_ci(good.pipeline, holdout, good.spec, metric="accuracy", n_boot=20)
    assert result.stats["metric"] == "roc_auc"
    assert "'accuracy' does not fit a ranking model, 'roc_auc' is used instead" in result.detail


# ---------------------------------------------------------------- 2. fairness


def test_fairness_computes_rates_and_exposure_by_definition():
    """Check selection rate, true positive rate and exposure on a hand-built ranked list."""
    frame = pl.DataFrame(
        {
            "list": [1, 1, 1, 1, 2, 2],
            "who": ["a", "b", "a", "b", "a", "b"],
            "label": [1, 0, 0, 1, 1, 1],
            "score": [0.9, 0.8, 0.7, 0.6, 0.2, 0.3],
        }
    )
    result = fairness(
        "score", frame, "who", "label", top_k=2, group="list", min_group_size=1, min_positives=1
    )
    rows = {r["group"]: r for r in result.table.iter_rows(named=True)}
    # list 1 ranks a, b, a, b; list 2 ranks b, a; the top 2 of each are selected
    assert rows["a"]["selection_rate"] == pytest.approx(2 / 3)
    assert rows["b"]["selection_rate"] == pytest.approx(2 / 3)
    assert rows["a"]["true_positive_rate"] == pytest.approx(2 / 2)
    assert rows["b"]["true_positive_rate"] == pytest.approx(1 / 2)
    exposure_a = (1 / math.log2(2) + 1 / math.log2(4) + 1 / math.log2(3)) / 3
    exposure_b = (1 / math.log2(3) + 1 / math.log2(5) + 1 / math.log2(2)) / 3
    assert rows["a"]["mean_exposure"] == pytest.approx(exposure_a)
    assert rows["b"]["mean_exposure"] == pytest.approx(exposure_b)
    assert result.stats["equal_opportunity"]["ratio"] == pytest.approx(0.5)
    assert not result.passed and result.detail.startswith("equal opportunity")
    assert result.value == pytest.approx(0.5) and result.threshold == 0.8


def test_fairness_passes_on_an_unbiased_model(good, holdout):
    """Check that an honest model selects age bands at similar rates in every list."""
    scores = predict_scores(good.pipeline, holdout, good.spec)
    result = fairness(scores, holdout, "age_band", "y", top_k=3, group="list_id")
    assert result.passed, result.detail
    assert result.stats["demographic_parity"]["ratio"] >= 0.8
    assert result.stats["exposure"]["judged"] and result.stats["excluded_groups"] == []


def test_fairness_fails_demographic_parity_on_a_biased_model(one_thread):
    """Check that a model that learned an age penalty fails the four-fifths rule."""
    train_rows = make_frame(6000, seed=6, age_effect=1.0)
    model = fit(train_rows, (*BASE, "age_band"), ("region", "age_band"))
    rows = make_frame(3000, seed=7, age_effect=1.0)
    scores = predict_scores(model.pipeline, rows, model.spec)
    result = fairness(scores, rows, "age_band", "y", top_k=3, group="list_id")
    assert not result.passed
    assert result.detail.startswith("demographic parity: selection rate ratio")
    assert "age_band='55+'" in result.detail
    assert result.value < 0.8 and result.threshold == 0.8


def test_fairness_excludes_and_lists_small_groups(good, holdout):
    """Check that a group below min_group_size is excluded from the ratios and listed."""
    rows = holdout.with_columns(
        age_band=pl.when(pl.col("row_id") < 5).then(pl.lit("90+")).otherwise("age_band")
    )
    scores = predict_scores(good.pipeline, rows, good.spec)
    result = fairness(scores, rows, "age_band", "y", threshold=0.5, min_group_size=30)
    assert result.stats["excluded_groups"] == ["90+"]
    excluded = result.table.filter(pl.col("group") == "90+").row(0, named=True)
    assert excluded["n"] == 5 and not excluded["judged"]
    assert "90+" in result.detail
    assert not result.stats["exposure"]["judged"]  # no ranked lists without a group


def test_fairness_needs_one_selection_rule(holdout):
    """Check that float scores need exactly one of top_k or threshold."""
    scores = np.linspace(0, 1, holdout.height)
    with pytest.raises(HortusError, match="exactly one of top_k or threshold"):
        fairness(scores, holdout, "age_band", "y")
    with pytest.raises(HortusError, match="exactly one of top_k or threshold"):
        fairness(scores, holdout, "age_band", "y", top_k=3, threshold=0.5)


# ---------------------------------------------------------------- 3. importance


def test_importance_check_passes_without_dominance_or_sensitive_features(good, holdout):
    """Check that an honest model spreads importance and uses no sensitive proxy."""
    result = importance_check(
        good.pipeline, holdout, good.spec, sensitive=["age_band"], max_rows=2000
    )
    assert result.passed, result.detail
    assert result.value <= 0.5
    assert result.table["proxy_of"].null_count() == result.table.height
    assoc = {(a["feature"], a["measure"]) for a in result.stats["association"]}
    assert ("x0", "correlation_ratio") in assoc and ("region", "cramers_v") in assoc


def test_importance_check_flags_a_feature_that_leaks_the_label(one_thread):
    """Check that a label leak holding most of the importance fails as dominating."""
    model = fit(make_frame(6000, seed=8), (*BASE, "leak"))
    rows = make_frame(2000, seed=9)
    result = importance_check(model.pipeline, rows, model.spec, max_rows=2000)
    assert not result.passed
    assert result.detail.startswith("feature 'leak' dominates")
    assert result.value > result.threshold == 0.5
    assert result.table["feature"][0] == "leak"


def test_importance_check_flags_a_proxy_and_a_sensitive_feature(one_thread):
    """Check that a district standing for age, and age itself, fail when ranked high."""
    rows = make_frame(6000, seed=10, age_effect=2.0)
    model = fit(rows, (*BASE, "district"), ("region", "district"))
    result = importance_check(
        model.pipeline, rows, model.spec, sensitive=["age_band"], max_rows=2000
    )
    assert not result.passed
    assert "feature 'district', a proxy of sensitive 'age_band'" in result.detail
    assert result.stats["proxies"] == {"district": "age_band"}
    district = result.table.filter(pl.col("feature") == "district").row(0, named=True)
    assert district["association"] >= 0.5 and district["rank"] <= 3
    assert result.value == district["rank"] and result.threshold == 3
    direct = fit(rows, (*BASE, "age_band"), ("region", "age_band"))
    flagged = importance_check(
        direct.pipeline, rows, direct.spec, sensitive=["age_band"], max_rows=2000
    )
    assert "feature 'age_band', a sensitive attribute" in flagged.detail


def test_importance_check_passes_a_proxy_the_model_barely_uses(one_thread):
    """Check that a detected proxy ranked below sensitive_rank is listed but passes."""
    rows = make_frame(6000, seed=1)
    model = fit(rows, (*BASE, "district"), ("region", "district"))
    result = importance_check(
        model.pipeline, rows, model.spec, sensitive=["age_band"], max_rows=2000
    )
    assert result.passed, result.detail
    assert result.stats["proxies"] == {"district": "age_band"}
    district = result.table.filter(pl.col("feature") == "district").row(0, named=True)
    assert district["rank"] > 3 and "['district'] are not among the top 3" in result.detail


def test_importance_check_ignores_an_id_like_category_as_proxy(good, holdout):
    """Check that a unique token is not a proxy of age (bias-corrected Cramér's V is ~0)."""
    spec = ModelSpec("y", (*BASE, "token"), categorical=("region", "token"), params=FAST)
    importance = pl.DataFrame(
        {"feature": list(spec.features), "importance_mean": [0.3, 0.2, 0.2, 0.01, 0.0]}
    )
    result = importance_check(
        None, holdout, spec, sensitive=["age_band"], importance=importance, max_rows=1000
    )
    values = {a["feature"]: a["value"] for a in result.stats["association"]}
    assert values["token"] < 0.1
    assert result.stats["proxies"] == {}


# ---------------------------------------------------------------- 4. schema


def test_schema_conflicts_pass_on_the_training_shape(good, holdout):
    """Check that serving rows shaped like training rows pass (extras are only warnings)."""
    serving = holdout.select(*good.spec.features, "token")
    result = schema_conflicts(good.signature, serving)
    assert result.passed, result.detail
    # fresh normal draws may fall outside the training range: a warning too
    assert "extra" in result.table["kind"].to_list()
    assert set(result.table["kind"]) <= {"extra", "out_of_range"}
    assert not result.table["blocking"].any()
    assert not result.stats["scorer_rejects"]
    strict = schema_conflicts(good.signature, serving, fail_on_warnings=True)
    assert not strict.passed and "extra column(s) ['token']" in strict.detail


def test_schema_conflicts_fail_and_the_scorer_refuses_them(good, holdout):
    """Check that an unseen category, a missing and an extra column fail and block scoring."""
    serving = (
        holdout.select(*good.spec.features)
        .with_columns(region=pl.when(pl.col("x0") > 2).then(pl.lit("atlantis")).otherwise("region"))
        .drop("x2")
        .with_columns(debug_flag=pl.lit(True))
    )
    result = schema_conflicts(good.signature, serving)
    assert not result.passed
    assert set(result.table["kind"]) == {"missing", "unseen_category", "extra"}
    assert "column 'x2' is missing" in result.detail
    assert "unseen category ['atlantis']" in result.detail
    assert result.stats["scorer_rejects"] and "atlantis" in result.stats["refusal"]
    assert result.value == 2.0 and result.threshold == 0.0
    with pytest.raises(SignatureError, match="unseen category"):
        score_frame(good.pipeline, good.signature, serving, good.spec)


# ---------------------------------------------------------------- 5. efficiency


def test_efficiency_reports_figures_and_passes_against_itself(good, holdout, tmp_path):
    """Check that an honest model reports its figures, keeps no memory and matches itself."""
    first = efficiency(good.pipeline, holdout, good.spec, rows=10, repeats=3, leak_calls=5)
    assert first.passed, first.detail
    stats = first.stats
    assert stats["batch_rows"] == 1000 and stats["throughput_rows_per_s"] > 0
    assert stats["row_p50_ms"] <= stats["row_p99_ms"] and stats["peak_memory_bytes"] > 0
    save_model(good.pipeline, good.signature, tmp_path / "m.skops")
    assert stats["model_bytes"] == (tmp_path / "m.skops").stat().st_size
    # timing may jitter on a shared machine; memory and size are compared at 1.5x
    again = efficiency(
        good.pipeline,
        holdout,
        good.spec,
        baseline=first.to_dict(),
        rows=10,
        repeats=3,
        leak_calls=5,
        max_ratios={"row_p50_ms": 20.0, "peak_memory_bytes": 1.5, "model_bytes": 1.0},
    )
    assert again.passed, again.detail
    assert again.table["ratio"].is_not_null().all()


def test_efficiency_fails_a_scorer_that_keeps_memory_per_call(good, holdout, tmp_path):
    """Check that a scorer keeping each output fails the memory growth bound."""
    save_model(good.pipeline, good.signature, tmp_path / "m.skops")
    try:
        result = efficiency(
            LeakyScorer(good.pipeline),
            holdout,
            good.spec,
            rows=2,
            repeats=2,
            leak_calls=10,
            model_bytes=(tmp_path / "m.skops").stat().st_size,
        )
    finally:
        RETAINED.clear()
    assert not result.passed
    assert "the scorer keeps memory per call" in result.detail
    # each 1,000-row call keeps a 1000 x 2 float64 copy
    assert result.value >= 16_000 and result.threshold == 4096


def test_efficiency_fails_a_slower_scorer_relative_to_the_baseline(good, holdout):
    """Check that a candidate much slower than a champion measured in this run fails."""
    champion = efficiency(good.pipeline, holdout, good.spec, rows=10, repeats=2, leak_calls=1)
    result = efficiency(
        SlowScorer(good.pipeline, delay=0.1),
        holdout,
        good.spec,
        baseline=champion,
        rows=6,
        repeats=2,
        warmup=1,
        leak_calls=1,
        model_bytes=champion.stats["model_bytes"],
        max_ratios={"row_p50_ms": 2.0},
    )
    assert not result.passed
    assert result.detail.startswith("row_p50_ms")
    assert result.value > 2.0 and result.threshold == 2.0


# ---------------------------------------------------------------- 6. behavioural


def test_behavioural_passes_invariance_and_declared_directions(good, holdout):
    """Check that ids and tokens do not move scores and x0/x2 move them as declared."""
    result = behavioural(
        good.pipeline,
        holdout,
        good.spec,
        invariance=["row_id", "token"],
        directional=[
            {"feature": "x0", "direction": "increase", "delta": 1.0},
            {"feature": "x2", "direction": "decrease", "delta": 1.0},
        ],
    )
    assert result.passed, result.detail
    inv = result.table.filter(pl.col("test") == "invariance")
    assert (inv["input_rows_changed"] == holdout.height).all()
    assert (inv["max_abs_change"] == 0).all()


def test_behavioural_fails_invariance_for_a_model_using_the_id(one_thread):
    """Check that a model that learned the row id fails when the ids are shuffled."""
    model = fit(make_frame(6000, seed=11, id_effect=1.0), (*BASE, "row_id"))
    rows = make_frame(3000, seed=12, id_effect=1.0)
    result = behavioural(model.pipeline, rows, model.spec, invariance=["row_id", "token"])
    assert not result.passed
    assert result.detail.startswith("invariance of 'row_id' broken")
    assert "'token'" not in result.detail
    assert result.value > result.threshold


def test_behavioural_fails_a_wrong_direction_expectation(good, holdout):
    """Check that declaring x0 lowers the score fails: the model raises it."""
    result = behavioural(
        good.pipeline,
        holdout,
        good.spec,
        directional=[{"feature": "x0", "direction": "decrease", "delta": 1.0}],
    )
    assert not result.passed
    assert "expected the score to decrease" in result.detail
    assert "move against the expected decrease" in result.detail
    assert result.value > 0


def test_behavioural_refuses_a_categorical_directional_feature(good, holdout):
    """Check that a directional test on a categorical feature is refused by name."""
    with pytest.raises(HortusError, match=r"directional\[0\] feature 'region'"):
        behavioural(
            good.pipeline,
            holdout,
            good.spec,
            directional=[{"feature": "region", "direction": "increase", "delta": 1}],
        )


# ---------------------------------------------------------------- config and runner

PARAMS = """
model_checks:
  sensitive: [age_band]
  segment_metrics: {n_boot: 100, max_gap: 0.05, min_segment_size: 100}
  fairness: {top_k: 3, min_ratio: 0.8}
  importance: {n_repeats: 2, max_share: 0.5}
  efficiency: {rows: 5, repeats: 2, leak_calls: 3}
  behavioural:
    invariance: [row_id, token]
    directional:
      - {feature: x0, direction: increase, delta: 1.0}
"""


def test_config_maps_a_params_section_and_runs_every_check(good, holdout):
    """Check that a params.yaml section drives every check and all pass on a good model."""
    config = ModelCheckConfig.from_dict(yaml.safe_load(PARAMS)["model_checks"])
    assert config.fairness == {"top_k": 3, "min_ratio": 0.8}
    results = run_model_checks(good.pipeline, holdout, good.spec, config, signature=good.signature)
    names = [r.name for r in results]
    assert names == [
        "segment_metrics_ci",
        "fairness[age_band]",
        "importance_check",
        "schema_conflicts",
        "efficiency",
        "behavioural",
    ]
    assert all(r.passed for r in results), [r.summary() for r in results if not r.passed]
    assert results[0].stats["n_boot"] == 100
    json.dumps([r.to_dict() for r in results])


def test_config_refuses_unknown_keys_by_name():
    """Check that a misspelt threshold or section is refused naming it and the choices."""
    with pytest.raises(
        HortusError, match=r"model_checks.fairness: unknown key\(s\) \['min_ration'\]"
    ):
        ModelCheckConfig.from_dict({"fairness": {"min_ration": 0.8}})
    with pytest.raises(HortusError, match=r"unknown key\(s\) \['latency'\]"):
        ModelCheckConfig.from_dict({"latency": {}})
    with pytest.raises(HortusError, match="sensitive must be a list"):
        ModelCheckConfig.from_dict({"sensitive": "age_band"})


def test_mean_exposure_has_the_same_bits_whatever_the_row_order():
    """A parallel float mean moved the last digit of mean exposure between identical runs;
    counted per rank and summed exactly, it is the same for any order of the rows."""
    rng = np.random.default_rng(3)
    n = 200_000
    df = pl.DataFrame(
        {
            "a": rng.choice(["x", "y", "z"], n),
            "y": (rng.random(n) < 0.3).astype(int),
            "g": rng.integers(0, 4000, n),
        }
    )
    scores = pl.Series(rng.random(n))
    seen = set()
    for i in range(6):
        order = rng.permutation(n) if i % 2 else np.arange(n)
        r = fairness(scores[order], df[order], "a", "y", group="g", top_k=5, exposure=True,
                     min_group_size=1, min_positives=1)  # fmt: skip
        seen.add(tuple(r.stats["exposure"][k] for k in ("ratio", "difference")))
    assert len(seen) == 1
    # and it is the mean of 1 / log2(rank + 1) over each group's rows
    frame = df.with_columns(s=scores).with_columns(
        rank=pl.col("s").rank("ordinal", descending=True).over("g")
    )
    expect = frame.group_by("a").agg((1.0 / (pl.col("rank") + 1.0).log(2)).mean().alias("m"))
    means = dict(expect.iter_rows())
    ratio, difference = seen.pop()
    assert difference == pytest.approx(max(means.values()) - min(means.values()), rel=1e-12)
    assert ratio == pytest.approx(min(means.values()) / max(means.values()), rel=1e-12)
