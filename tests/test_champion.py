"""The gate's comparison with the champion (paired bootstrap) and the floors of a first version."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.datasets import make_classification, make_regression

from hortus.checks._champion import champion_comparison, floors_check
from hortus.checks.gate import GateConfig
from hortus.errors import HortusError
from hortus.models.modeling import ModelSpec, ranking_metrics, time_split, train


def _frame(task: str, n: int = 3000, seed: int = 0) -> pl.DataFrame:
    if task == "regression":
        x, y = make_regression(n_samples=n, n_features=4, n_informative=3, noise=5.0,
                               random_state=seed)  # fmt: skip
    else:
        x, y = make_classification(n_samples=n, n_features=4, n_informative=3, n_redundant=0,
                                   n_classes=3 if task == "multiclass" else 2,
                                   random_state=seed)  # fmt: skip
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            **{f"x{i}": x[:, i] for i in range(4)},
            "noise": rng.normal(size=n),
            "region": rng.choice(["N", "S"], size=n),
            "t": np.arange(n),
            "list_id": np.arange(n) // 10,
            "y": y,
        }
    )


def _spec(task: str, features: tuple[str, ...], **over) -> ModelSpec:
    group = "list_id" if task == "ranking" else None
    return ModelSpec(target="y", features=features, time="t", group=group, segments=("region",),
                     task=task, estimator="logreg" if task != "regression" else "linear",
                     holdout_fraction=0.3, seed=0, **over)  # fmt: skip


FEATURES = ("x0", "x1", "x2", "x3")


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression", "ranking"])
def test_a_worse_candidate_is_refused_and_an_equal_one_passes(task):
    """Check that a candidate trained on noise fails against a real champion, a twin passes."""
    df = _frame(task)
    champ = train(df, _spec(task, FEATURES))
    worse = train(df, _spec(task, ("noise",)))
    holdout = time_split(df, worse.spec)[1]  # the candidate's hold-out, every column
    refused = champion_comparison(worse.pipeline, worse.spec, champ.pipeline, champ.spec,
                                  holdout, champion_version=1, min_segment_size=100)  # fmt: skip
    assert not refused.passed, refused.detail
    assert "significantly worse than champion v1" in refused.detail
    assert refused.value < 0  # signed: positive = candidate better
    overall = refused.table.row(0, named=True)
    assert overall["segment"] == "overall" and overall["ci_high"] < -0.01
    twin = champion_comparison(champ.pipeline, champ.spec, champ.pipeline, champ.spec,
                               holdout, champion_version=1, min_segment_size=100)  # fmt: skip
    assert twin.passed, twin.detail
    assert twin.value == pytest.approx(0.0)
    assert set(twin.table["value"].drop_nulls()) >= {"N", "S"}  # segments judged


def test_champion_whose_features_are_missing_fails_saying_so():
    """Check that the check fails (not crashes) when the hold-out lacks a champion feature."""
    df = _frame("binary")
    champ = train(df, _spec("binary", FEATURES))
    cand = train(df.drop("x3"), _spec("binary", ("x0", "x1", "x2")))
    holdout = time_split(df.drop("x3"), cand.spec)[1]
    result = champion_comparison(cand.pipeline, cand.spec, champ.pipeline, champ.spec,
                                 holdout, champion_version=4)  # fmt: skip
    assert not result.passed
    assert "champion v4 needs feature(s) ['x3'] missing" in result.detail


def test_ranking_comparison_uses_the_same_ndcg_as_training_metrics():
    """Check that the per-list NDCG averaged by the check equals modeling's NDCG@k."""
    df = _frame("ranking")
    model = train(df, _spec("ranking", FEATURES, k=3))
    holdout = time_split(df, model.spec)[1]
    result = champion_comparison(model.pipeline, model.spec, model.pipeline, model.spec,
                                 holdout, champion_version=1)  # fmt: skip
    expected = ranking_metrics(model.predictions, "list_id", "y", "score", 3)["ndcg_at_k"]
    assert result.stats["candidate"] == pytest.approx(expected, abs=1e-12)
    assert result.stats["metric"] == "ndcg_at_k"


def test_floors_judge_metrics_by_direction_and_latency_as_a_maximum():
    """Check that floors use minimums, maximums for lower-is-better metrics, and latency."""
    ok = floors_check({"roc_auc": 0.8, "rmse": 2.0}, {"row_p99_ms": 3.0},
                      {"roc_auc": 0.7, "rmse": 2.5, "row_p99_ms": 50})  # fmt: skip
    assert ok.passed, ok.detail
    floors = {"roc_auc": 0.7, "rmse": 2.5, "row_p99_ms": 50, "f1_macro": 0.5}
    bad = floors_check({"roc_auc": 0.65, "rmse": 3.0}, {"row_p99_ms": 80.0}, floors)
    assert not bad.passed
    for part in ("roc_auc 0.65 < 0.7", "rmse 3 > 2.5", "row_p99_ms 80 > 50", "f1_macro not"):
        assert part in bad.detail
    with pytest.raises(HortusError, match="unknown metric 'auc'"):
        floors_check({}, {}, {"auc": 0.7})


def test_gate_config_reads_the_champion_section_and_refuses_typos():
    """Check that gate.champion's settings and floors are read and unknown keys refused."""
    cfg = GateConfig.from_dict({"champion": {"margin": 0.02, "floors": {"roc_auc": 0.7}}})
    assert cfg.champion == {"margin": 0.02} and cfg.floors == {"roc_auc": 0.7}
    with pytest.raises(HortusError, match=r"gate\.champion: unknown key\(s\) \['margni'\]"):
        GateConfig.from_dict({"champion": {"margni": 0.02}})
