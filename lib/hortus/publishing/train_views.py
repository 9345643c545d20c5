"""The logic behind notebooks/train.py, for any model of any project and task.

The notebook orchestrates and displays; these functions decide and compute:

- `effective_train_params`: params.yaml's `train` section for one model, with the
  values given to the notebook (papermill) and its controls applied;
- `data_summary` and `daily_rows`: what the examples table holds (rows, the target's
  distribution by task, the time range and lists) and its rows per day;
- `curve_metric` and `importance_title`: the metric the learning curve and the
  permutation importance are measured in, with readable labels;
- `segment_check` and `fairness_table`: hold-out metrics per segment with bootstrap
  intervals and selection rates per group, through `hortus.checks.model_checks` (the gate's
  own functions), chosen by task;
- `write_run`: the run's output files (model, curves, metrics, run.json).

Nothing here names a domain: the model's table, target, time, group, segments and
task come from its `ModelSpec` (built by `hortus.project.definition.spec_for`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from hortus.models import modeling
from hortus.models.modeling import ModelSpec, TrainResult

#: the train params a notebook run may override (its parameters cell names them)
TUNABLE = (
    "estimator",
    "max_iter",
    "learning_rate",
    "max_leaf_nodes",
    "l2_regularization",
    "min_samples_leaf",
    "holdout_fraction",
    "k",
    "seed",
    "threads",
)

_LABELS = {
    "roc_auc": "ROC AUC",
    "ndcg_at_k": "NDCG@k",
    "f1_macro": "F1 macro",
    "rmse": "RMSE",
    "mae": "MAE",
    "log_loss": "log loss",
    "average_precision": "average precision",
    "accuracy": "accuracy",
}


def metric_label(name: str) -> str:
    """Return the readable name of a metric (its own name when not known).

    Examples
    --------
    >>> metric_label("roc_auc"), metric_label("r2")
    ('ROC AUC', 'r2')
    """
    return _LABELS.get(name, name)


def effective_train_params(
    train: Mapping[str, Any], model: str, given: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return the train params of one model, in params.yaml's key order.

    Starts from the `train` section's top-level values, applies
    `train.models.<model>` (per-model overrides), then every value of `given`
    (the notebook's parameters, e.g. injected by papermill) that is not None and
    differs from the section's top-level value, so an explicit override wins
    while the stage's plain copy of the section keeps the per-model values.  The
    result has no `models` key: pass it to `spec_for` as is.

    Examples
    --------
    >>> train = {"max_iter": 200, "k": 5, "models": {"m": {"max_iter": 50}}}
    >>> effective_train_params(train, "m", {"max_iter": 200, "k": 10})
    {'max_iter': 50, 'k': 10}
    """
    base = {k: v for k, v in train.items() if k != "models"}
    per_model = dict((train.get("models") or {}).get(model) or {})
    out = base | per_model
    for key, value in (given or {}).items():
        if value is not None and (key not in base or value != base[key]):
            out[key] = value
    return out


def curve_metric(spec: ModelSpec) -> str:
    """Return the learning-curve and importance metric of the spec's task (a column name).

    Examples
    --------
    >>> curve_metric(ModelSpec("y", ("x",), task="regression"))
    'rmse'
    """
    return modeling.TASKS[spec.task].curve_metric


def importance_title(spec: ModelSpec | str) -> str:
    """Return the axis title of permutation importance: the drop (or rise) of the metric.

    `spec` is a ModelSpec or a task name.

    Examples
    --------
    >>> importance_title(ModelSpec("y", ("x",))), importance_title("regression")
    ('drop in ROC AUC when permuted', 'rise in RMSE when permuted')
    """
    task = modeling.TASKS[spec if isinstance(spec, str) else spec.task]
    direction = "rise" if task.curve_metric in ("rmse", "mae", "log_loss") else "drop"
    return f"{direction} in {metric_label(task.curve_metric)} when permuted"


def _target_text(frame: pl.DataFrame, spec: ModelSpec) -> str:
    y = frame[spec.target]
    if spec.task in ("binary", "ranking"):
        positives = int(y.cast(pl.Int64).sum())
        share = positives / frame.height if frame.height else 0.0
        return f"{positives:,} positive ({share:.2%})"
    if spec.task == "multiclass":
        counts = (
            frame.group_by(pl.col(spec.target).cast(pl.String).alias("c"))
            .len()
            .sort(["len", "c"], descending=[True, False])
        )
        shown = ", ".join(f"{c} {n / frame.height:.1%}" for c, n in counts.head(6).iter_rows())
        more = f", ... ({counts.height} classes)" if counts.height > 6 else ""
        return f"{counts.height} classes: {shown}{more}"
    values = y.cast(pl.Float64)
    return f"`{spec.target}` mean {values.mean():.4g}, std {values.std():.4g}"


def data_summary(frame: pl.DataFrame, spec: ModelSpec, *, table: str) -> str:
    """Return a markdown paragraph on the examples: rows, target, time range, lists.

    The target is described by task: positives and their share (binary,
    ranking), the class shares (multiclass) or mean and standard deviation
    (regression).

    Examples
    --------
    >>> f = pl.DataFrame({"y": [1, 0, 0, 1], "x": [1, 2, 3, 4]})
    >>> data_summary(f, ModelSpec("y", ("x",)), table="gold.t")
    '4 labelled rows of `gold.t`, 2 positive (50.00%).'
    """
    if frame.height == 0:
        return f"`{table}` has no rows."
    parts = [f"{frame.height:,} labelled rows of `{table}`, {_target_text(frame, spec)}"]
    if spec.time and spec.time in frame.columns:
        lo, hi = frame[spec.time].min(), frame[spec.time].max()
        parts.append(f"from {lo:%Y-%m-%d} to {hi:%Y-%m-%d}")
    text = ", ".join(parts)
    if spec.group and spec.group in frame.columns:
        text += f"; {frame[spec.group].n_unique():,} lists (`{spec.group}`)"
    return text + "."


def daily_rows(frame: pl.DataFrame, spec: ModelSpec) -> pl.DataFrame | None:
    """Return rows per day (day, rows, and target_mean except for multiclass), or None.

    None when the spec has no time column (nothing to plot over time).

    Examples
    --------
    >>> from datetime import datetime
    >>> f = pl.DataFrame({"t": [datetime(2025, 1, 1, 8), datetime(2025, 1, 1, 9)],
    ...                   "y": [1, 0], "x": [0.1, 0.2]})
    >>> daily_rows(f, ModelSpec("y", ("x",), time="t")).rows()
    [(datetime.date(2025, 1, 1), 2, 0.5)]
    """
    if not spec.time or spec.time not in frame.columns:
        return None
    aggs = [pl.len().alias("rows")]
    if spec.task != "multiclass":
        aggs.append(pl.col(spec.target).cast(pl.Float64).mean().alias("target_mean"))
    return frame.group_by(pl.col(spec.time).cast(pl.Date).alias("day")).agg(aggs).sort("day")


def metrics_table(result: TrainResult) -> pl.DataFrame:
    """Return one row per metric: metric, hold-out and train values (numbers only).

    Examples
    --------
    >>> class R: metrics = {"rmse": 1.5, "k": 5}; train_metrics = {"rmse": 1.0}
    >>> metrics_table(R()).rows()
    [('rmse', 1.5, 1.0), ('k', 5.0, None)]
    """
    rows = [
        {"metric": m, "hold-out": _num(v), "train": _num(result.train_metrics.get(m))}
        for m, v in result.metrics.items()
    ]
    return pl.DataFrame(
        rows, schema={"metric": pl.String, "hold-out": pl.Float64, "train": pl.Float64}
    )


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def outputs(result: TrainResult) -> Any:
    """Return the hold-out outputs the checks judge: predicted class (multiclass), else score."""
    column = modeling.PREDICTION if result.spec.task == "multiclass" else modeling.SCORE
    return result.predictions[column].to_numpy()


def segment_check(
    result: TrainResult, *, n_boot: int = 200, min_segment_size: int = 100
) -> tuple[Any, str]:
    """Return the task's metric per segment with bootstrap intervals, and a note.

    Uses `hortus.checks.model_checks.segment_metrics_ci` (as the gate) on the hold-out
    predictions with the task's segment metric (`TASKS[task].segment_metric`):
    (CheckResult, its detail); (None, why) when the spec has no segments.
    """
    from hortus.checks.model_checks import segment_metrics_ci

    if not result.spec.segments:
        return None, "the model has no segment columns"
    check = segment_metrics_ci(
        None,
        result.predictions,
        result.spec,
        scores=outputs(result),
        n_boot=n_boot,
        min_segment_size=min_segment_size,
    )
    return check, check.detail


def fairness_table(
    result: TrainResult, columns: Sequence[str], *, min_group_size: int = 100
) -> tuple[pl.DataFrame | None, str, str | None]:
    """Return fairness per group of each column as the gate judges it, what is compared, and how.

    `hortus.checks.model_checks.task_fairness` picks the check by task: ranking selects
    the top `spec.k` of each list, binary the rows scored at or above
    `spec.threshold`, multiclass the predicted class (one row per class and
    group), regression compares errors and mean predictions.  Returns (table with
    an `attribute` column, the measure to chart: selection_rate or mae, a
    sentence on the rule); (None, None, why) when no column is in the hold-out.
    """
    from hortus.checks.model_checks import task_fairness

    spec = result.spec
    present = [c for c in columns if c in result.predictions.columns]
    if not present:
        return None, None, "no sensitive or segment column in the hold-out"
    rule = {
        "ranking": f"share of rows in the top {spec.k} of their list",
        "binary": f"share of rows scored >= {spec.threshold}",
        "multiclass": "share of rows predicted as each class",
        "regression": "mean absolute error per group",
    }[spec.task]
    parts = [
        task_fairness(
            outputs(result), result.predictions, spec, col, min_group_size=min_group_size
        ).table.with_columns(pl.lit(col).alias("attribute"))
        for col in present
    ]
    table = pl.concat(parts, how="diagonal_relaxed")
    table = table.select("attribute", *[c for c in table.columns if c != "attribute"])
    # shown rounded: polars' parallel group sums may differ in the last bit between runs,
    # and the executed notebook must be the same bytes on a rebuild (dvc.lock)
    table = table.with_columns(pl.col(pl.Float64, pl.Float32).round(12))
    measure = "selection_rate" if "selection_rate" in table.columns else "mae"
    return table, measure, rule


def write_run(
    out_dir: Path,
    result: TrainResult,
    *,
    model_name: str,
    table: str,
    settings: Mapping[str, Any],
    tables_read: Mapping[str, int],
    content_hashes: Mapping[str, str],
) -> str:
    """Write a training run's outputs to `out_dir` and return the model's sha256.

    Files: model.skops (+ its signature), learning_curve.csv, importance.csv,
    segment_metrics.csv, metrics.json (numeric metrics rounded to 6 places) and
    run.json (artifact, sha256, spec, settings, metrics, tables read and their
    content hashes, row counts, cutoff, model_name, task and table).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sha256 = modeling.save_model(result.pipeline, result.signature, out / "model.skops")
    result.learning_curve.write_csv(out / "learning_curve.csv")
    result.importance.write_csv(out / "importance.csv")
    result.segment_metrics.write_csv(out / "segment_metrics.csv")
    rounded = {
        k: round(v, 6) if isinstance(v, float) else v
        for k, v in result.metrics.items()
        if not isinstance(v, dict | list)
    }
    (out / "metrics.json").write_text(json.dumps(rounded, indent=2, sort_keys=True) + "\n")
    run = {
        "artifact": str(out / "model.skops"),
        "sha256": sha256,
        "model_name": model_name,
        "task": result.spec.task,
        "table": table,
        "spec": result.spec.to_dict(),
        "settings": dict(settings),
        "metrics": result.metrics,
        "tables_read": dict(tables_read),
        "content_hashes": dict(content_hashes),
        "n_train": result.n_train,
        "n_test": result.n_test,
        "cutoff": str(result.cutoff),
    }
    (out / "run.json").write_text(json.dumps(run, indent=2, sort_keys=True, default=str))
    return sha256
