"""The logic behind notebooks/model_report.py (the model report), for any model and task.

The notebook orchestrates and displays a `hortus.publishing.model_card.ModelCard`; these
functions turn its parts into tables and sentences:

- `key_values`: a mapping as a two-column table (field, value);
- `checks_frame`: gate or fairness check records as a table;
- `metrics_frame`: registered and recomputed metrics side by side;
- `target_text`: the hold-out's target by task (positives, classes or mean);
- `segment_metric`, `fairness_text`, `fairness_measure`: what the segment and fairness
  sections measure for the model's task;
- `train_dir`: the training run folder of a model (reports/train/<model>/).

Nothing here names a domain or a model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from hortus.models import modeling
from hortus.publishing.train_views import metric_label

_CHECK_SCHEMA = {
    "name": pl.String,
    "passed": pl.Boolean,
    "value": pl.Float64,
    "threshold": pl.Float64,
    "detail": pl.String,
}


def key_values(pairs: Mapping[str, Any]) -> pl.DataFrame:
    """Return a two-column table (field, value) of a mapping, values as text.

    Dicts and lists are shown as sorted JSON.

    Examples
    --------
    >>> key_values({"a": 1, "b": {"y": 2, "x": 1}}).rows()
    [('a', '1'), ('b', '{"x": 1, "y": 2}')]
    """
    text = [
        json.dumps(v, sort_keys=True, default=str) if isinstance(v, dict | list) else str(v)
        for v in pairs.values()
    ]
    return pl.DataFrame(
        {"field": list(pairs), "value": text}, schema={"field": pl.String, "value": pl.String}
    )


def checks_frame(checks: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Return check records (name, passed, value, threshold, detail) as a table.

    Examples
    --------
    >>> checks_frame([{"name": "f", "passed": True, "value": 0.9, "threshold": 0.8}]).row(0)
    ('f', True, 0.9, 0.8, None)
    """
    rows = [
        {
            "name": c.get("name"),
            "passed": c.get("passed"),
            "value": _float(c.get("value")),
            "threshold": _float(c.get("threshold")),
            "detail": c.get("detail"),
        }
        for c in checks
    ]
    return pl.DataFrame(rows, schema=_CHECK_SCHEMA, orient="row")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def metrics_frame(
    registered: Mapping[str, Any], recomputed: Mapping[str, Any] | None
) -> pl.DataFrame:
    """Return the metrics registered for a version beside those recomputed on the hold-out.

    Only numeric metrics are shown (class lists and the like are left out).

    Examples
    --------
    >>> metrics_frame({"rmse": 1.0, "k": None}, {"rmse": 1.0}).rows()
    [('k', None, None), ('rmse', 1.0, 1.0)]
    """
    now = recomputed or {}
    names = sorted(set(registered) | set(now))
    names = [n for n in names if not isinstance(registered.get(n, now.get(n)), dict | list)]
    return pl.DataFrame(
        {
            "metric": names,
            "registered": [_float(registered.get(m)) for m in names],
            "recomputed on the hold-out": [_float(now.get(m)) for m in names],
        },
        schema={
            "metric": pl.String,
            "registered": pl.Float64,
            "recomputed on the hold-out": pl.Float64,
        },
    )


def _float(value: Any) -> float | None:
    return float(value) if _number(value) else None


def target_text(evaluation: Mapping[str, Any]) -> str:
    """Return the hold-out's target in words: positives (binary, ranking), classes or mean.

    Examples
    --------
    >>> target_text({"positives": 30, "base_rate": 0.25})
    '30 positive (base rate 0.2500)'
    >>> target_text({"mean_target": 2.5})
    'mean target 2.5'
    """
    if evaluation.get("positives") is not None:
        rate = evaluation.get("base_rate")
        return f"{evaluation['positives']:,} positive" + (
            f" (base rate {rate:.4f})" if rate is not None else ""
        )
    if evaluation.get("class_counts"):
        counts = evaluation["class_counts"]
        shown = ", ".join(f"{c} {n:,}" for c, n in list(counts.items())[:6])
        return f"{len(counts)} classes ({shown}{', ...' if len(counts) > 6 else ''})"
    if evaluation.get("mean_target") is not None:
        return f"mean target {evaluation['mean_target']:.4g}"
    return "target not summarised"


def segment_metric(task: str | None) -> str:
    """Return the readable name of the per-segment metric of a task (binary when unknown).

    Examples
    --------
    >>> segment_metric("regression"), segment_metric(None)
    ('RMSE', 'ROC AUC')
    """
    return metric_label(modeling.TASKS[task or "binary"].segment_metric)


def fairness_text(task: str | None, *, k: int | None = None, threshold: float | None = None) -> str:
    """Return what the fairness section compares across groups for a task.

    Examples
    --------
    >>> fairness_text("ranking", k=5)
    'Selection rate (share of rows in the top 5 of their list), true positive rate and exposure'
    """
    task = task or "binary"
    if task == "ranking":
        return (
            f"Selection rate (share of rows in the top {k or 'k'} of their list), true "
            "positive rate and exposure"
        )
    if task == "binary":
        return (
            f"Selection rate (share of rows scored at or above {threshold or 'the threshold'}), "
            "true and false positive rates"
        )
    if task == "multiclass":
        return "Per class, the share of rows predicted as that class and its true positive rate"
    return "Mean absolute error and mean prediction"


def fairness_measure(table: pl.DataFrame) -> tuple[str, str]:
    """Return (column, title) of the fairness chart: the selection rate, else the MAE.

    Examples
    --------
    >>> fairness_measure(pl.DataFrame({"group": ["a"], "mae": [1.0]}))
    ('mae', 'MAE by group')
    """
    if "selection_rate" in table.columns:
        return "selection_rate", "Selection rate by group"
    return "mae", "MAE by group"


def train_dir(reports: Path, model: str) -> Path:
    """Return a model's training run folder: reports/train/<model>/, else reports/train/.

    The older single-model layout (reports/train/run.json) is used when the model
    has no folder of its own.
    """
    own = Path(reports) / "train" / model
    return own if (own / "run.json").is_file() else Path(reports) / "train"


def comparison_frame(checks: Iterable[Mapping[str, Any]]) -> tuple[pl.DataFrame | None, str]:
    """Return the gate's comparison with the champion (or its floors) as a table and a title.

    The gate keeps the table of its `champion` check (the candidate and the champion on
    the same hold-out, overall and per segment, paired bootstrap interval of the
    difference) or, for a first version, of its `floors` check; (None, "") without one.

    Examples
    --------
    >>> rows = [{"segment": "overall", "candidate": 0.8, "champion": 0.78}]
    >>> frame, title = comparison_frame([{"name": "champion", "table": rows,
    ...                                   "stats": {"champion_version": 2, "metric": "roc_auc"}}])
    >>> frame.height, title
    (1, 'Compared with champion v2 on roc_auc (paired bootstrap; difference > 0: better)')
    """
    for c in checks:
        if c.get("name") in ("champion", "floors") and c.get("table"):
            stats = c.get("stats") or {}
            title = (
                f"Compared with champion v{stats.get('champion_version')} on "
                f"{stats.get('metric')} (paired bootstrap; difference > 0: better)"
                if c["name"] == "champion"
                else "No champion yet: absolute floors"
            )
            return pl.DataFrame(c["table"], strict=False), title
    return None, ""
