"""Unit tests of hortus.publishing.report_views (the logic behind notebooks/model_report.py)."""

from __future__ import annotations

import polars as pl

from hortus.publishing import report_views as rv


def test_key_values_shows_nested_values_as_json():
    """Check that every value becomes text, mappings and lists as sorted JSON."""
    table = rv.key_values({"n": 3, "p": {"b": 1, "a": [1, 2]}, "none": None})
    assert table.rows() == [("n", "3"), ("p", '{"a": [1, 2], "b": 1}'), ("none", "None")]


def test_checks_frame_keeps_numbers_and_drops_the_rest():
    """Check that non-numeric values and thresholds become nulls, not a schema error."""
    checks = [
        {"name": "a", "passed": True, "value": 1, "threshold": 0.8, "detail": "ok"},
        {"name": "b", "passed": False, "value": "n/a", "threshold": None},
    ]
    table = rv.checks_frame(checks)
    assert table.rows() == [("a", True, 1.0, 0.8, "ok"), ("b", False, None, None, None)]
    assert rv.checks_frame([]).height == 0


def test_metrics_frame_lines_up_registered_and_recomputed():
    """Check that metrics are matched by name and nested values left out."""
    table = rv.metrics_frame({"rmse": 2.0, "classes": ["a"]}, {"rmse": 2.5, "mae": 1.0})
    assert table.rows() == [("mae", None, 1.0), ("rmse", 2.0, 2.5)]
    assert rv.metrics_frame({"r2": 0.5}, None).rows() == [("r2", 0.5, None)]


def test_target_text_by_task():
    """Check the hold-out target sentence for binary, multiclass and regression evaluations."""
    assert rv.target_text({"positives": 1200, "base_rate": 0.4}) == (
        "1,200 positive (base rate 0.4000)"
    )
    assert rv.target_text({"class_counts": {"a": 3, "b": 1}}) == "2 classes (a 3, b 1)"
    assert rv.target_text({"mean_target": 12.3456}) == "mean target 12.35"
    assert rv.target_text({}) == "target not summarised"


def test_fairness_words_follow_the_task():
    """Check the fairness sentence and chart measure for each task."""
    assert "top 5" in rv.fairness_text("ranking", k=5)
    assert "at or above 0.3" in rv.fairness_text("binary", threshold=0.3)
    assert "predicted as that class" in rv.fairness_text("multiclass")
    assert rv.fairness_text("regression").startswith("Mean absolute error")
    assert rv.fairness_measure(pl.DataFrame({"selection_rate": [0.5]}))[0] == "selection_rate"
    assert rv.segment_metric("multiclass") == "F1 macro"


def test_train_dir_prefers_the_model_folder(tmp_path):
    """Check that reports/train/<model>/ is used when it has a run, else reports/train/."""
    assert rv.train_dir(tmp_path, "m") == tmp_path / "train"
    (tmp_path / "train" / "m").mkdir(parents=True)
    (tmp_path / "train" / "m" / "run.json").write_text("{}")
    assert rv.train_dir(tmp_path, "m") == tmp_path / "train" / "m"
