"""Unit tests of hortus.publishing.train_views (the logic behind notebooks/train.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from hortus.models import modeling
from hortus.models.modeling import ModelSpec
from hortus.publishing import train_views


def _frame(n: int = 400, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "t": [start + timedelta(hours=6 * i) for i in range(n)],
            "x": x,
            "seg": rng.choice(["a", "b"], n),
            "y": (x + rng.normal(scale=0.5, size=n) > 0).astype(int),
            "cls": np.where(x > 0.5, "hi", np.where(x < -0.5, "lo", "mid")),
            "v": 3.0 * x + rng.normal(size=n),
        }
    )


def test_effective_params_apply_per_model_values_then_explicit_overrides():
    """Check that per-model values beat the section and a differing given value beats both."""
    train = {"estimator": "hgb", "max_iter": 200, "k": 5, "models": {"m": {"max_iter": 50}}}
    same = train_views.effective_train_params(train, "m", {"max_iter": 200, "k": 5})
    assert same == {"estimator": "hgb", "max_iter": 50, "k": 5}
    assert train_views.effective_train_params(train, "m", {"max_iter": 80})["max_iter"] == 80
    assert train_views.effective_train_params(train, "other", {"k": None})["k"] == 5


@pytest.mark.parametrize(
    ("task", "target", "expected"),
    [
        ("binary", "y", "positive"),
        ("multiclass", "cls", "3 classes"),
        ("regression", "v", "`v` mean"),
    ],
)
def test_data_summary_describes_the_target_by_task(task, target, expected):
    """Check that the summary names rows, the table, the target by task and the time range."""
    spec = ModelSpec(target, ("x",), time="t", task=task)
    text = train_views.data_summary(_frame(), spec, table="gold.t")
    assert text.startswith("400 labelled rows of `gold.t`")
    assert expected in text and "from 2025-01-01 to 2025-04-10" in text


def test_daily_rows_needs_a_time_column():
    """Check that rows per day are counted with the target mean, and None without time."""
    daily = train_views.daily_rows(_frame(), ModelSpec("y", ("x",), time="t"))
    assert daily.columns == ["day", "rows", "target_mean"] and daily["rows"].sum() == 400
    assert train_views.daily_rows(_frame(), ModelSpec("y", ("x",))) is None


def test_curve_metric_and_importance_title_follow_the_task():
    """Check that regression is measured in RMSE (a rise) and binary in ROC AUC (a drop)."""
    reg = ModelSpec("v", ("x",), task="regression", estimator="linear")
    assert train_views.curve_metric(reg) == "rmse"
    assert train_views.importance_title(reg) == "rise in RMSE when permuted"
    assert train_views.importance_title(ModelSpec("y", ("x",))) == "drop in ROC AUC when permuted"


def test_binary_run_gets_segments_fairness_and_every_output_file(tmp_path):
    """Check segment intervals, fairness at the threshold and the files of write_run."""
    spec = ModelSpec("y", ("x",), time="t", segments=("seg",), params={"max_iter": 20})
    result = modeling.train(_frame(), spec, importance_repeats=2)
    check, note = train_views.segment_check(result, n_boot=20, min_segment_size=10)
    assert check is not None and note == check.detail
    table, measure, rule = train_views.fairness_table(result, ["seg", "missing"], min_group_size=10)
    assert (measure, rule) == ("selection_rate", "share of rows scored >= 0.5")
    assert set(table["attribute"]) == {"seg"} and set(table["group"]) == {"a", "b"}
    assert train_views.metrics_table(result)["metric"].to_list() == list(result.metrics)
    sha = train_views.write_run(
        tmp_path, result, model_name="m", table="gold.t", settings={"k": 5},
        tables_read={"gold.t": 3}, content_hashes={"gold.t": "abc"},
    )  # fmt: skip
    run = json.loads((tmp_path / "run.json").read_text())
    assert (run["sha256"], run["model_name"], run["task"], run["table"]) == (
        sha, "m", "binary", "gold.t"
    )  # fmt: skip
    for name in ("model.skops", "learning_curve.csv", "importance.csv", "segment_metrics.csv",
                 "metrics.json"):  # fmt: skip
        assert (tmp_path / name).is_file()


@pytest.mark.parametrize(
    ("task", "target", "measure"),
    [("regression", "v", "mae"), ("multiclass", "cls", "selection_rate")],
)
def test_other_tasks_get_their_own_fairness_and_segment_metric(task, target, measure):
    """Check that regression compares errors and multiclass the predicted class per group."""
    spec = ModelSpec(target, ("x",), time="t", segments=("seg",), task=task,
                     params={"max_iter": 20})  # fmt: skip
    result = modeling.train(_frame(), spec, importance_repeats=2)
    table, got, _ = train_views.fairness_table(result, ["seg"], min_group_size=10)
    assert got == measure and measure in table.columns and table.height >= 2
    check, note = train_views.segment_check(result, n_boot=20, min_segment_size=10)
    assert check is not None and note == check.detail
    assert train_views.curve_metric(spec) in result.learning_curve.columns
