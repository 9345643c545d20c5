"""Cross-check the gate's fairness and segment metrics against fairlearn's definitions."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from hortus.checks.model_checks import fairness, segment_metrics_ci
from hortus.models import modeling

fairlearn_metrics = pytest.importorskip("fairlearn.metrics")


def _scored(n: int = 20_000, seed: int = 4) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1])
    y = rng.binomial(1, np.where(group == "d", 0.05, 0.12))
    score = rng.normal(size=n) + y * 1.2 - (group == "c") * 0.3
    return pl.DataFrame({"g": group, "y": y, "score": score})


def test_selection_rate_and_tpr_match_fairlearn_metricframe():
    """Check that per-group selection rate, TPR and parity ratios equal fairlearn's."""
    df = _scored()
    threshold = float(np.quantile(df["score"], 0.9))
    res = fairness("score", df, "g", "y", threshold=threshold, min_group_size=1, min_positives=1)
    selected = (df["score"] >= threshold).to_numpy().astype(int)
    frame = fairlearn_metrics.MetricFrame(
        metrics={
            "selection_rate": fairlearn_metrics.selection_rate,
            "tpr": fairlearn_metrics.true_positive_rate,
        },
        y_true=df["y"].to_numpy(),
        y_pred=selected,
        sensitive_features=df["g"].to_numpy(),
    )
    ours = res.table.sort("group")
    theirs = frame.by_group.sort_index()
    np.testing.assert_allclose(ours["selection_rate"], theirs["selection_rate"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours["true_positive_rate"], theirs["tpr"], rtol=0, atol=1e-12)
    dp_ratio = fairlearn_metrics.demographic_parity_ratio(
        df["y"].to_numpy(), selected, sensitive_features=df["g"].to_numpy()
    )
    assert res.stats["demographic_parity"]["ratio"] == pytest.approx(dp_ratio, abs=1e-12)
    eo = fairlearn_metrics.equal_opportunity_ratio(
        df["y"].to_numpy(), selected, sensitive_features=df["g"].to_numpy()
    )
    assert res.stats["equal_opportunity"]["ratio"] == pytest.approx(eo, abs=1e-12)


def test_segment_auc_matches_sklearn_through_fairlearn():
    """Check that per-segment ROC AUC equals fairlearn's MetricFrame with sklearn's metric."""
    from sklearn.metrics import roc_auc_score

    df = _scored()
    spec = modeling.ModelSpec(target="y", features=("score",), segments=("g",))
    res = segment_metrics_ci(None, df, spec, scores=df["score"].to_numpy(), n_boot=2)
    frame = fairlearn_metrics.MetricFrame(
        metrics=roc_auc_score,
        y_true=df["y"].to_numpy(),
        y_pred=df["score"].to_numpy(),
        sensitive_features=df["g"].to_numpy(),
    )
    ours = res.table.sort("value")
    np.testing.assert_allclose(ours["estimate"], frame.by_group.sort_index(), atol=1e-12)


def test_binary_false_positive_rates_match_fairlearn():
    """Check that per-group FPR and the equalized-odds ratios at a threshold equal fairlearn's."""
    df = _scored()
    threshold = float(np.quantile(df["score"], 0.8))
    res = fairness(
        "score", df, "g", "y", threshold=threshold, min_group_size=1, min_positives=1,
        false_positive_rate=True, exposure=False,
    )  # fmt: skip
    selected = (df["score"] >= threshold).to_numpy().astype(int)
    y, groups = df["y"].to_numpy(), df["g"].to_numpy()
    frame = fairlearn_metrics.MetricFrame(
        metrics=fairlearn_metrics.false_positive_rate,
        y_true=y,
        y_pred=selected,
        sensitive_features=groups,
    )
    ours = res.table.sort("group")
    np.testing.assert_allclose(
        ours["false_positive_rate"], frame.by_group.sort_index(), rtol=0, atol=1e-12
    )
    fpr = res.stats["false_positive_parity"]
    odds = fairlearn_metrics.equalized_odds_ratio(y, selected, sensitive_features=groups)
    assert min(fpr["ratio"], res.stats["equal_opportunity"]["ratio"]) == pytest.approx(odds)
    assert "mean_exposure" not in ours.columns and "exposure" not in res.stats
