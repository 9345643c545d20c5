"""Model tests that a promotion gate runs on a trained model.

Every check takes a fitted pipeline (scored through `hortus.models.modeling`), a
frame of evaluation rows and the `ModelSpec`, and returns a `CheckResult`: its name,
whether it passed, the value and threshold of the criterion that decided it
(the first failed criterion, or the headline one when it passed), a detail
sentence naming every failed criterion with its own value and threshold, and
the supporting numbers (`table`, one row per segment/group/feature/test, and
`stats`, scalars).  Nothing here knows a domain: columns come from the spec
and the arguments.  Thresholds are explicit keyword arguments;
`ModelCheckConfig.from_dict` maps a params.yaml section onto them and
`run_model_checks` runs every check with it.

Task types
----------
Every check follows `spec.task` (`hortus.models.modeling.TASKS`).  The per-row model
output the checks judge (`model_outputs`) is the probability of class 1
(binary, ranking), the predicted class (multiclass) or the predicted value
(regression).  Per task:

============  ===================  ===========================================
task          segment metric       fairness (`task_fairness`)
============  ===================  ===========================================
ranking       roc_auc (default)    top `spec.k` of each list: selection rate,
                                   TPR, exposure (unchanged)
binary        roc_auc (default)    score >= `spec.threshold`: selection rate,
                                   TPR and FPR ratios (no top-k, no exposure)
multiclass    f1_macro, accuracy   one-vs-rest per class at the predicted
                                   class: selection rate, TPR, FPR ratios
regression    rmse, mae (lower is  MAE ratio and mean-prediction ratio across
              better)              groups (`fairness_regression`)
============  ===================  ===========================================

A setting that does not fit the task (a segment metric of another task, a
`top_k` for a binary model, a `threshold` for regression...) is replaced by
the task's default or dropped, and the check's detail says so; it never
crashes the gate.  Permutation importance uses the task's scorer (ROC AUC,
F1 macro, RMSE).  Behavioural tests judge the probability of class 1, the
predicted value (regression) or, for multiclass, the probability of the
class a directional test names (`class`); invariance compares every class
probability.

Checks
------
- `segment_metrics_ci`: a metric per value of each segment column (regions,
  countries, age bands...) with a percentile bootstrap confidence interval.
  All bootstrap index arrays of a segment are drawn at once; ROC AUC and
  average precision are computed from weighted counts per distinct score
  (a resample is a vector of row multiplicities), so a replicate costs no
  sort.  A segment fails when its interval lies entirely on the bad side of
  the overall metric by more than `max_gap` (significantly worse); segments
  below `min_segment_size` rows, or where the metric is undefined (one
  class), are `insufficient` and not judged.  For RMSE and MAE (regression)
  the gap is relative: worse means above overall x (1 + `max_gap`).
- `fairness`: per sensitive group, the selection rate (demographic parity),
  the true positive rate among positives (equal opportunity) and the mean
  exposure 1 / log2(1 + rank) within each ranked list; each as the largest
  difference and the smallest ratio across the groups large enough to judge.
  The default bound is the four-fifths rule (ratio >= 0.8).
- `importance_check`: permutation importance (ROC AUC drop on a seeded
  sample); fails when one feature holds more than `max_share` of the total
  positive importance (e.g. a feature that leaks the label), or when a
  sensitive attribute or a proxy of it ranks in the top `sensitive_rank`.
  A proxy is a feature whose association with a sensitive column reaches
  `proxy_threshold`: bias-corrected Cramér's V (category x category),
  adjusted correlation ratio (number x category; adjusted so that an
  ID-like category does not look associated with everything), |Spearman|
  (number x number).
- `schema_conflicts`: `Signature.check` as a check (missing columns, wrong
  types, nulls, unseen categories, out-of-range values, extra columns), and a
  confirmation that `Signature.validate` refuses the blocking ones with a
  `SignatureError` that lists each of them.
- `efficiency`: latency of single-row and batch scoring calls (p50/p99),
  throughput, traced peak memory of a batch call, artifact size (skops via
  `save_model`), and traced memory growth over repeated calls (a leak).
  Timing is reported, and judged only as a ratio to a baseline (the current
  champion's efficiency stats, measured in the same run), never absolutely.
- `behavioural`: invariance (a column such as an ID or token shuffled
  across rows must not change any score beyond `tolerance`) and directional
  expectations (adding `delta` to a numeric feature must move the mean score
  in the declared direction, with few rows moving the wrong way).

Memory is measured with `tracemalloc`, which sees Python objects and numpy
buffers (the model input, the estimator's arrays) but not memory that Rust
(polars) allocates itself.
"""

from __future__ import annotations

import gc
import inspect
import math
import tempfile
import time
import tracemalloc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.inspection import permutation_importance

from hortus.errors import HortusError, SignatureError
from hortus.models.modeling import (
    PREDICTION,
    TASKS,
    ModelSpec,
    Signature,
    class_probabilities,
    predict,
    predict_scores,
    save_model,
    target_values,
    to_model_input,
)

__all__ = [
    "CheckResult",
    "ModelCheckConfig",
    "behavioural",
    "efficiency",
    "fairness",
    "fairness_multiclass",
    "fairness_regression",
    "importance_check",
    "model_outputs",
    "run_model_checks",
    "schema_conflicts",
    "segment_metrics_ci",
    "task_fairness",
]

# metric -> True when higher is better (binary and ranking segment metrics)
METRICS = {"roc_auc": True, "average_precision": True, "log_loss": False, "brier": False}
# the segment metrics each task accepts
TASK_METRICS: dict[str, dict[str, bool]] = {
    "binary": METRICS,
    "ranking": METRICS,
    "multiclass": {"f1_macro": True, "accuracy": True},
    "regression": {"rmse": False, "mae": False},
}
_RELATIVE_GAP = frozenset({"rmse", "mae"})  # in target units: the gap is a share of overall
# bootstrap work is done in chunks of replicates of at most this many drawn rows
_BOOT_CELLS = 4_000_000
_EPS = 1e-15
_DEFAULT_RATIOS = {
    "row_p99_ms": 2.0,
    "batch_p99_ms": 2.0,
    "peak_memory_bytes": 2.0,
    "model_bytes": 2.0,
}


# ---------------------------------------------------------------- result


@dataclass
class CheckResult:
    """The outcome of one model check.

    Parameters
    ----------
    name
        Check name, e.g. "segment_metrics_ci" or "fairness[age_band]".
    passed
        False blocks promotion.
    value, threshold
        The measured value and the bound of the deciding criterion: the first
        failed one, or the headline criterion when the check passed.
    detail
        One sentence per failed criterion (with its own value and bound), or
        what was checked when it passed.
    table
        Supporting rows (one per segment value, group, feature or test).
    stats
        Supporting scalars.
    """

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str
    table: pl.DataFrame | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (NaN -> None, table as a list of row dicts)."""
        return {
            "name": self.name,
            "passed": bool(self.passed),
            "value": _plain(self.value),
            "threshold": _plain(self.threshold),
            "detail": self.detail,
            "table": None if self.table is None else _plain(self.table.to_dicts()),
            "stats": _plain(self.stats),
        }

    def summary(self) -> str:
        """Return one line: PASS/FAIL, name, value vs threshold and the detail."""
        word = "PASS" if self.passed else "FAIL"
        return (
            f"{word} {self.name}: value {_fmt(self.value)}, threshold {_fmt(self.threshold)}; "
            f"{self.detail}"
        )


def _plain(value: Any) -> Any:
    """Return `value` with numpy scalars, NaN, dates and containers made JSON-friendly."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, pl.DataFrame):
        return _plain(value.to_dicts())
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _decide(
    name: str,
    failures: list[tuple[str, float | None, float | None]],
    headline: tuple[float | None, float | None],
    ok_detail: str,
    table: pl.DataFrame | None,
    stats: dict[str, Any],
) -> CheckResult:
    """Build a result from (sentence, value, threshold) failures and a headline criterion."""
    if failures:
        _, value, threshold = failures[0]
        return CheckResult(
            name, False, value, threshold, "; ".join(f[0] for f in failures), table, stats
        )
    return CheckResult(name, True, headline[0], headline[1], ok_detail, table, stats)


# ---------------------------------------------------------------- helpers


def _need_columns(df: pl.DataFrame, columns: Sequence[str | None], what: str) -> None:
    missing = [c for c in dict.fromkeys(columns) if c is not None and c not in df.columns]
    if missing:
        raise HortusError(f"{what}: the frame lacks column(s) {missing}")


def _binary(s: pl.Series, what: str) -> np.ndarray:
    """Return a 0/1 label series as int64, or raise naming the column."""
    if s.null_count():
        raise HortusError(f"{what}: label column {s.name!r} has {s.null_count()} null(s)")
    if not (s.dtype == pl.Boolean or s.dtype.is_numeric()):
        raise HortusError(f"{what}: label column {s.name!r} must be 0/1 or bool, not {s.dtype}")
    as_float = s.cast(pl.Float64)
    bad = as_float.filter(~as_float.is_in([0.0, 1.0]))
    if len(bad):
        found = bad.unique().sort().to_list()[:5]
        raise HortusError(f"{what}: label column {s.name!r} must be 0/1, found {found}")
    return as_float.to_numpy().astype(np.int64)


def _positive_int(value: Any, name: str, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise HortusError(f"{what}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def model_outputs(pipeline: Any, df: pl.DataFrame, spec: ModelSpec) -> np.ndarray:
    """Return the per-row output the checks judge for the spec's task.

    binary/ranking: the probability of class 1; multiclass: the predicted
    class; regression: the predicted value.
    """
    if spec.task == "multiclass":
        return predict(pipeline, df, spec)[PREDICTION].to_numpy()
    return predict_scores(pipeline, df, spec)


def _outputs_of(
    pipeline: Any, df: pl.DataFrame, spec: ModelSpec, outputs: Any, what: str
) -> np.ndarray:
    """Return given outputs (checked) or `model_outputs` of `df` (labels for multiclass)."""
    if spec.task != "multiclass":
        return _scores_of(pipeline, df, spec, outputs, what)
    if outputs is None:
        return model_outputs(pipeline, df, spec)
    out = np.asarray(outputs.to_numpy() if isinstance(outputs, pl.Series) else outputs)
    if out.shape != (df.height,):
        raise HortusError(f"{what}: got {out.shape[0]} predictions for a frame of {df.height} rows")
    return out


def _scores_of(
    pipeline: Any, df: pl.DataFrame, spec: ModelSpec, scores: Any, what: str
) -> np.ndarray:
    """Return given scores (checked) or score `df` with the pipeline."""
    if scores is None:
        return predict_scores(pipeline, df, spec)
    out = np.asarray(scores.to_numpy() if isinstance(scores, pl.Series) else scores, dtype=float)
    if out.shape != (df.height,):
        raise HortusError(f"{what}: got {out.shape[0]} scores for a frame of {df.height} rows")
    if not np.isfinite(out).all():
        raise HortusError(f"{what}: scores hold NaN or infinite values")
    return out


# ---------------------------------------------------------------- 1. segments


def _boot_metric(metric: str, y: np.ndarray, s: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Return the metric of each resample (rows of `idx`); NaN where undefined.

    ROC AUC and average precision use weighted counts per distinct score: with
    P[b, l] and N[b, l] the positives and negatives of replicate b at score
    level l (ascending), AUC = sum_l P (N below l + N at l / 2) / (sum P sum N)
    (ties count one half, as the Mann-Whitney statistic), and AP = sum over
    levels, descending, of P / sum P times the precision at that threshold
    (sklearn's step definition).
    """
    b, n = idx.shape
    if metric == "accuracy":  # y, s: class codes
        return (y == s)[idx].mean(axis=1)
    if metric == "f1_macro":  # y, s: class codes; mean over classes true or predicted
        k = int(max(y.max(), s.max())) + 1 if n else 1
        key = (np.arange(b)[:, None] * k * k + y[idx] * k + s[idx]).ravel()
        cm = np.bincount(key, minlength=b * k * k).reshape(b, k, k)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        denom = cm.sum(axis=1) + cm.sum(axis=2)  # predicted + actual = 2 tp + fp + fn
        present = denom > 0
        f1 = np.where(present, 2 * tp / np.maximum(denom, 1), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return f1.sum(axis=1) / present.sum(axis=1)
    if metric in ("rmse", "mae"):  # y: target, s: prediction
        err = s - y
        if metric == "mae":
            return np.abs(err)[idx].mean(axis=1)
        return np.sqrt((err**2)[idx].mean(axis=1))
    if metric in ("log_loss", "brier"):
        p = np.clip(s, _EPS, 1 - _EPS)
        if metric == "log_loss":
            per_row = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        else:
            per_row = (s - y) ** 2
        return per_row[idx].mean(axis=1)
    levels, inverse = np.unique(s, return_inverse=True)
    width = len(levels)
    key = (np.arange(b)[:, None] * width + inverse[idx]).ravel()
    labels = y[idx].ravel().astype(np.float64)
    pos = np.bincount(key, weights=labels, minlength=b * width).reshape(b, width)
    neg = np.bincount(key, weights=1.0 - labels, minlength=b * width).reshape(b, width)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "roc_auc":
            below = np.cumsum(neg, axis=1) - neg
            out = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
            out[(n_pos == 0) | (n_neg == 0)] = np.nan
            return out
        pos_d, neg_d = pos[:, ::-1], neg[:, ::-1]
        tp, fp = np.cumsum(pos_d, axis=1), np.cumsum(neg_d, axis=1)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
        out = (pos_d * precision).sum(axis=1) / n_pos
        out[n_pos == 0] = np.nan
        return out


def _bootstrap(
    metric: str, y: np.ndarray, s: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Return `n_boot` resampled metric values (index arrays drawn at once, chunked by size)."""
    n = len(y)
    per_chunk = max(1, _BOOT_CELLS // max(n, 1))
    parts = []
    for start in range(0, n_boot, per_chunk):
        size = min(per_chunk, n_boot - start)
        parts.append(_boot_metric(metric, y, s, rng.integers(0, n, size=(size, n))))
    return np.concatenate(parts)


def _point(metric: str, y: np.ndarray, s: np.ndarray) -> float:
    value = _boot_metric(metric, y, s, np.arange(len(y))[None, :])[0]
    return float(value)


def segment_metrics_ci(
    pipeline: Any,
    df: pl.DataFrame,
    spec: ModelSpec,
    segments: Sequence[str] | None = None,
    *,
    metric: str | None = None,
    n_boot: int = 200,
    min_segment_size: int = 100,
    confidence: float = 0.95,
    max_gap: float = 0.05,
    seed: int = 0,
    scores: np.ndarray | pl.Series | None = None,
) -> CheckResult:
    """Compare a metric per segment value with the overall metric, with bootstrap intervals.

    `metric` defaults to the task's (`TASKS[spec.task].segment_metric`:
    roc_auc for binary and ranking, f1_macro for multiclass, rmse for
    regression); a metric of another task (see `TASK_METRICS`) is replaced by
    that default and the detail says so, an unknown name is refused.

    For each column of `segments` (default `spec.segments`) and each of its
    values (null is a value of its own), the rows of that value are
    resampled `n_boot` times; the interval is the central `confidence`
    percentile range of the resampled metric (replicates where it is
    undefined are dropped and counted).  A segment fails when it is
    significantly worse: for a higher-is-better metric (roc_auc,
    average_precision, f1_macro, accuracy) its upper bound is below overall -
    `max_gap`; for a lower-is-better one (log_loss, brier) its lower bound is
    above overall + `max_gap`, and for an error in target units (rmse, mae)
    above overall x (1 + `max_gap`).  Segments with fewer than `min_segment_size` rows, or where the
    metric is undefined on their rows or on more than half of the resamples
    (a rare class), are reported as "insufficient".

    Parameters
    ----------
    scores
        The model outputs of `df` if already computed (`model_outputs`: scores,
        predicted classes or predicted values); otherwise `pipeline` scores it.

    Returns
    -------
    CheckResult
        value = the worst judged bound, threshold = overall -/+ max_gap; table
        columns segment, value, n, positives, estimate, ci_low, ci_high,
        undefined_replicates, status (ok | worse | insufficient).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=400)
    >>> f = pl.DataFrame({"x": x, "r": ["a", "b"] * 200, "y": (x > 0).astype(int)})
    >>> spec = ModelSpec("y", ("x",), segments=("r",))
    >>> segment_metrics_ci(None, f, spec, scores=x, n_boot=50).passed
    True
    """
    what = "segment_metrics_ci"
    if isinstance(segments, str):
        raise HortusError(f"{what}: segments must be a sequence of column names")
    segments = tuple(spec.segments if segments is None else segments)
    known = sorted(set().union(*TASK_METRICS.values()))
    if metric is not None and metric not in known:
        raise HortusError(f"{what}: metric must be one of {known}, got {metric!r}")
    default = TASKS[spec.task].segment_metric
    replaced = ""
    if metric is None:
        metric = default
    elif metric not in TASK_METRICS[spec.task]:
        replaced = (
            f"; the configured metric {metric!r} does not fit a {spec.task} model, "
            f"{default!r} is used instead"
        )
        metric = default
    n_boot = _positive_int(n_boot, "n_boot", what, minimum=2)
    min_segment_size = _positive_int(min_segment_size, "min_segment_size", what)
    if not 0 < confidence < 1:
        raise HortusError(f"{what}: confidence must be in (0, 1), got {confidence}")
    if max_gap < 0:
        raise HortusError(f"{what}: max_gap must be >= 0, got {max_gap}")
    _need_columns(df, [spec.target, *segments], what)
    binary = spec.task in ("binary", "ranking")
    if binary:
        y = _binary(df[spec.target], what)
        s = _scores_of(pipeline, df, spec, scores, what)
    elif spec.task == "multiclass":
        y, s = _class_codes(df, spec, _outputs_of(pipeline, df, spec, scores, what))
    else:
        y = target_values(df, spec)
        s = _scores_of(pipeline, df, spec, scores, what)
    higher = TASK_METRICS[spec.task][metric]
    relative = metric in _RELATIVE_GAP
    overall = _point(metric, y, s) if df.height else float("nan")
    if not math.isfinite(overall):
        raise HortusError(
            f"{what}: {metric} is undefined on the {df.height} rows of the frame "
            f"(column {spec.target!r} holds one class only)"
        )
    if higher:
        bound = overall - max_gap
    else:
        bound = overall * (1 + max_gap) if relative else overall + max_gap
    alpha = (1 - confidence) / 2
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for seg in segments:
        parts = (
            df.select(pl.col(seg).cast(pl.String).alias("_value"))
            .with_row_index("_i")
            .group_by("_value")
            .agg(pl.col("_i"))
            .sort("_value", nulls_last=True)
        )
        for value, index in parts.iter_rows():
            rows_of = np.asarray(index, dtype=np.int64)
            ys, ss = y[rows_of], s[rows_of]
            row: dict[str, Any] = {
                "segment": seg,
                "value": value,
                "n": len(rows_of),
                "positives": int(ys.sum()) if binary else None,
                "estimate": None,
                "ci_low": None,
                "ci_high": None,
                "undefined_replicates": None,
                "status": "insufficient",
            }
            estimate = _point(metric, ys, ss)
            if math.isfinite(estimate):
                row["estimate"] = estimate
            if len(rows_of) >= min_segment_size and math.isfinite(estimate):
                boot = _bootstrap(metric, ys, ss, n_boot, rng)
                defined = boot[np.isfinite(boot)]
                row["undefined_replicates"] = int(n_boot - len(defined))
                if 2 * len(defined) < n_boot:
                    rows.append(row)  # e.g. a rare class missing from most resamples
                    continue
                low, high = np.quantile(defined, [alpha, 1 - alpha])
                worse = high < bound if higher else low > bound
                row |= {
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "status": "worse" if worse else "ok",
                }
            rows.append(row)
    schema = {
        "segment": pl.String,
        "value": pl.String,
        "n": pl.Int64,
        "positives": pl.Int64,
        "estimate": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
        "undefined_replicates": pl.Int64,
        "status": pl.String,
    }
    table = pl.DataFrame(rows, schema=schema, orient="row")
    judged = table.filter(pl.col("status") != "insufficient")
    side = "ci_high" if higher else "ci_low"
    worst = None
    if judged.height:
        worst = float(judged[side].min() if higher else judged[side].max())
    word, sign = ("below", "-") if higher else ("above", "+")
    gap = f"x (1 + max_gap {max_gap})" if relative else f"{sign} max_gap {max_gap}"
    failures = [
        (
            f"segment {r['segment']}={r['value']!r}: {metric} {r['estimate']:.4f} "
            f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}] is significantly {word} overall "
            f"{overall:.4f} {gap} = {bound:.4f} (n={r['n']})",
            r[side],
            bound,
        )
        for r in table.filter(pl.col("status") == "worse").iter_rows(named=True)
    ]
    insufficient = table.filter(pl.col("status") == "insufficient")
    note = (
        f"; {insufficient.height} segment value(s) not judged (fewer than "
        f"{min_segment_size} rows, or {metric} undefined on them or on most resamples)"
        if insufficient.height
        else ""
    ) + replaced
    ok_gap = f"x (1 + {max_gap})" if relative else f"{sign} {max_gap}"
    ok = (
        f"{judged.height} segment value(s) of {list(segments)} judged, none significantly "
        f"{word} overall {metric} {overall:.4f} {ok_gap}{note}"
        if judged.height
        else f"no segment value of {list(segments)} large enough to judge{note}"
    )
    stats = {
        "metric": metric,
        "overall": overall,
        "bound": bound,
        "max_gap": max_gap,
        "confidence": confidence,
        "n_boot": n_boot,
        "judged": judged.height,
        "insufficient": insufficient.height,
    }
    if relative:
        stats["relative_gap"] = True
    if replaced:
        stats["replaced_metric"] = replaced.removeprefix("; ")
    if failures:
        failures[-1] = (failures[-1][0] + note, failures[-1][1], failures[-1][2])
    return _decide(what, failures, (worst, bound), ok, table, stats)


def _class_codes(
    df: pl.DataFrame, spec: ModelSpec, predicted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return (true, predicted) classes of a multiclass spec as shared integer codes."""
    target_values(df, spec)  # the target rules, with their messages
    col = df[spec.target]
    if col.dtype == pl.Boolean:
        col = col.cast(pl.Int64)  # as the model was fitted
    truth = col.cast(pl.String).to_numpy().astype(str)
    pred = np.asarray(predicted).astype(str)
    labels = np.unique(np.concatenate([truth, pred]))
    return np.searchsorted(labels, truth), np.searchsorted(labels, pred)


# ---------------------------------------------------------------- 2. fairness


def fairness(
    scores: np.ndarray | pl.Series | str,
    df: pl.DataFrame,
    sensitive_col: str,
    label_col: str,
    *,
    top_k: int | None = None,
    threshold: float | None = None,
    group: str | None = None,
    min_group_size: int = 30,
    min_positives: int = 10,
    min_ratio: float = 0.8,
    max_difference: float | None = None,
    false_positive_rate: bool = False,
    max_fpr_difference: float = 0.1,
    exposure: bool = True,
) -> CheckResult:
    """Compare selection, true positive rates and exposure across sensitive groups.

    `scores` is one value per row of `df` (an array, a Series or the name of a
    column of `df`): float scores, or booleans meaning "selected".  With
    scores, a row is selected when it is in the top `top_k` of its ranked
    list (`group`; without it the frame is one list; ties by row order) or
    when its score is >= `threshold` (give exactly one of the two).

    Per value of `sensitive_col` (null is a value of its own):

    * selection rate = selected rows / rows (demographic parity);
    * true positive rate = selected positives / positives (equal opportunity);
      only groups with at least `min_positives` positives are compared;
    * mean exposure = mean of 1 / log2(1 + rank) (rank within the list by
      score descending); reported whenever scores are given and `exposure`
      is True, judged only when `group` names ranked lists;
    * with `false_positive_rate`: false positive rate = selected negatives /
      negatives (with the TPR: equalized odds); only groups with at least
      `min_positives` negatives are compared.  Its ratio is reported (as
      fairlearn's `equalized_odds_ratio` reads it) but, because a good
      classifier's false positive rates are small and their ratio swings with
      a few rows, it is judged on the difference: above
      `max_fpr_difference` fails.

    Groups with fewer than `min_group_size` rows are excluded and listed.  Each
    measure is summarised over the remaining groups as the largest difference
    and the smallest ratio (min / max); it fails when the ratio is below
    `min_ratio` (four-fifths rule by default) or the difference exceeds
    `max_difference` (when set).  A measure needs two groups to be judged.

    Examples
    --------
    >>> f = pl.DataFrame({"a": ["x", "x", "y", "y"], "y": [1, 0, 1, 0]})
    >>> r = fairness(pl.Series([True, False, True, True]), f, "a", "y", min_group_size=1,
    ...              min_positives=1)
    >>> r.passed, r.stats["demographic_parity"]["ratio"]
    (False, 0.5)
    """
    what = f"fairness[{sensitive_col}]"
    _need_columns(df, [sensitive_col, label_col, group], what)
    min_group_size = _positive_int(min_group_size, "min_group_size", what)
    min_positives = _positive_int(min_positives, "min_positives", what)
    if not 0 <= min_ratio <= 1:
        raise HortusError(f"{what}: min_ratio must be in [0, 1], got {min_ratio}")
    if isinstance(scores, str):
        _need_columns(df, [scores], what)
        scores = df[scores]
    values = scores if isinstance(scores, pl.Series) else pl.Series("_s", np.asarray(scores))
    if values.len() != df.height:
        raise HortusError(f"{what}: got {values.len()} scores for a frame of {df.height} rows")
    if values.null_count():
        raise HortusError(f"{what}: scores hold {values.null_count()} null(s)")
    y = _binary(df[label_col], what)
    frame = pl.DataFrame(
        {
            "_a": df[sensitive_col].cast(pl.String),
            "_y": y,
            "_g": df[group] if group else pl.repeat(0, df.height, eager=True),
        }
    )
    ranked = values.dtype != pl.Boolean
    if ranked:
        if (top_k is None) == (threshold is None):
            raise HortusError(f"{what}: give exactly one of top_k or threshold to select rows")
        s = values.cast(pl.Float64)
        if s.is_nan().any():
            raise HortusError(f"{what}: scores hold NaN values")
        frame = frame.with_columns(_s=s).with_columns(
            _rank=pl.col("_s").rank("ordinal", descending=True).over("_g")
        )
        if top_k is not None:
            top_k = _positive_int(top_k, "top_k", what)
            selected = pl.col("_rank") <= top_k
        else:
            selected = pl.col("_s") >= threshold
        frame = frame.with_columns(
            _sel=selected,
            _exp=1.0 / (pl.col("_rank").cast(pl.Float64) + 1.0).log(2)
            if exposure
            else pl.lit(None, dtype=pl.Float64),
        )
    else:
        if top_k is not None or threshold is not None:
            raise HortusError(f"{what}: scores are selection flags; top_k/threshold do not apply")
        frame = frame.with_columns(_sel=values, _exp=pl.lit(None, dtype=pl.Float64))
    table = (
        frame.lazy()
        .group_by("_a")
        .agg(
            n=pl.len(),
            positives=pl.col("_y").sum(),
            selected=pl.col("_sel").sum(),
            true_positives=(pl.col("_sel") & (pl.col("_y") == 1)).sum(),
            mean_exposure=pl.col("_exp").mean(),
        )
        .with_columns(
            selection_rate=pl.col("selected") / pl.col("n"),
            true_positive_rate=pl.when(pl.col("positives") > 0).then(
                pl.col("true_positives") / pl.col("positives")
            ),
            judged=pl.col("n") >= min_group_size,
        )
        .with_columns(judged_tpr=pl.col("judged") & (pl.col("positives") >= min_positives))
        .rename({"_a": "group"})
        .sort("group", nulls_last=True)
        .collect()
    )
    if false_positive_rate:
        negatives = (pl.col("n") - pl.col("positives")).alias("negatives")
        false_pos = frame.group_by("_a").agg(
            false_positives=(pl.col("_sel") & (pl.col("_y") == 0)).sum()
        )
        table = (
            table.join(false_pos.rename({"_a": "group"}), on="group", how="left", nulls_equal=True)
            .with_columns(negatives)
            .with_columns(
                false_positive_rate=pl.when(pl.col("negatives") > 0).then(
                    pl.col("false_positives") / pl.col("negatives")
                ),
                judged_fpr=pl.col("judged") & (pl.col("negatives") >= min_positives),
            )
            .sort("group", nulls_last=True)
        )
    if not exposure:
        table = table.drop("mean_exposure")
    measures = [
        ("demographic_parity", "selection_rate", "judged", "selection rate"),
        ("equal_opportunity", "true_positive_rate", "judged_tpr", "true positive rate"),
    ]
    if false_positive_rate:
        measures.append(
            ("false_positive_parity", "false_positive_rate", "judged_fpr", "false positive rate")
        )
    if ranked and exposure:
        measures.append(("exposure", "mean_exposure", "judged", "mean exposure"))
    failures: list[tuple[str, float | None, float | None]] = []
    stats: dict[str, Any] = {"sensitive": sensitive_col, "min_ratio": min_ratio}
    ratios = []
    for key, column, flag, words in measures:
        part = table.filter(pl.col(flag)).select("group", column).drop_nulls(column)
        if part.height < 2 or (key == "exposure" and group is None):
            reason = (
                "exposure is judged only within ranked lists (no group column)"
                if key == "exposure" and part.height >= 2
                else f"fewer than 2 groups to compare ({part.height})"
            )
            stats[key] = {"judged": False, "reason": reason}
            continue
        hi_row = part.sort(column, "group", descending=[True, False]).row(0)
        lo_row = part.sort(column, "group").row(0)
        high, low = float(hi_row[1]), float(lo_row[1])
        ratio = low / high if high > 0 else 1.0
        diff = high - low
        stats[key] = {
            "judged": True,
            "ratio": ratio,
            "difference": diff,
            "max_group": hi_row[0],
            "min_group": lo_row[0],
        }
        pair = (
            f"{sensitive_col}={lo_row[0]!r} {low:.4f} vs {sensitive_col}={hi_row[0]!r} {high:.4f}"
        )
        if key == "false_positive_parity":
            # a good classifier's false positive rates are small: their ratio swings with a
            # handful of rows, so the ratio is reported and the difference is judged
            stats[key]["judged_on"] = "difference"
            if diff > max_fpr_difference:
                failures.append(
                    (
                        f"false positive parity: false positive rate difference {diff:.4f} > "
                        f"max_fpr_difference {max_fpr_difference} ({pair})",
                        diff,
                        max_fpr_difference,
                    )
                )
        elif ratio < min_ratio:
            failures.append(
                (
                    f"{key.replace('_', ' ')}: {words} ratio {ratio:.4f} < min_ratio "
                    f"{min_ratio} ({pair})",
                    ratio,
                    min_ratio,
                )
            )
        if key != "false_positive_parity":
            ratios.append(ratio)
        if max_difference is not None and diff > max_difference:
            failures.append(
                (
                    f"{key.replace('_', ' ')}: {words} difference {diff:.4f} > "
                    f"max_difference {max_difference} ({pair})",
                    diff,
                    max_difference,
                )
            )
    excluded = table.filter(~pl.col("judged"))["group"].to_list()
    stats["excluded_groups"] = excluded
    stats["excluded_from_equal_opportunity"] = table.filter(
        pl.col("judged") & ~pl.col("judged_tpr")
    )["group"].to_list()
    if false_positive_rate:
        stats["excluded_from_false_positive_parity"] = table.filter(
            pl.col("judged") & ~pl.col("judged_fpr")
        )["group"].to_list()
    note = f"; excluded group(s) {excluded} (fewer than {min_group_size} rows)" if excluded else ""
    judged_names = [
        k for k, *_ in measures if stats.get(k, {}).get("judged") and k != "false_positive_parity"
    ]
    fpr_ok = (
        f", false positive rate difference <= {max_fpr_difference}"
        if stats.get("false_positive_parity", {}).get("judged")
        else ""
    )
    ok = (
        f"{', '.join(judged_names)} ratios >= {min_ratio}{fpr_ok} across {sensitive_col} "
        f"groups{note}"
        if judged_names
        else f"nothing judged across {sensitive_col} groups{note}"
    )
    if failures:
        failures[-1] = (failures[-1][0] + note, failures[-1][1], failures[-1][2])
    headline = (min(ratios) if ratios else None, min_ratio)
    return _decide(what, failures, headline, ok, table, stats)


def fairness_multiclass(
    predicted: np.ndarray | pl.Series,
    df: pl.DataFrame,
    sensitive_col: str,
    label_col: str,
    *,
    min_group_size: int = 30,
    min_positives: int = 10,
    min_ratio: float = 0.8,
    max_difference: float | None = None,
    max_fpr_difference: float = 0.1,
) -> CheckResult:
    """Compare one-vs-rest rates of every class across sensitive groups (multiclass).

    For each class c (the classes of `label_col` and of `predicted`, sorted),
    a row is selected when the model predicts c and positive when its label
    is c; `fairness` then gives per group the selection rate, the true
    positive rate and the false positive rate at that decision rule, each
    judged across groups as `fairness` judges them (ratios; the false positive
    rate on its difference).  The table has one row
    per class and group; stats hold, per measure, the worst judged class
    ("class" names it) and `per_class` every class's summary.

    Examples
    --------
    >>> f = pl.DataFrame({"a": ["x", "x", "y", "y"], "y": ["p", "q", "p", "q"]})
    >>> r = fairness_multiclass(np.array(["p", "q", "p", "q"]), f, "a", "y",
    ...                         min_group_size=1, min_positives=1)
    >>> r.passed, r.stats["demographic_parity"]["ratio"]
    (True, 1.0)
    """
    what = f"fairness[{sensitive_col}]"
    _need_columns(df, [sensitive_col, label_col], what)
    pred = np.asarray(predicted.to_numpy() if isinstance(predicted, pl.Series) else predicted)
    if pred.shape != (df.height,):
        raise HortusError(
            f"{what}: got {pred.shape[0]} predictions for a frame of {df.height} rows"
        )
    labels = df[label_col]
    if labels.null_count():
        raise HortusError(f"{what}: label column {label_col!r} has {labels.null_count()} null(s)")
    if labels.dtype == pl.Boolean:
        labels = labels.cast(pl.Int64)
    truth = labels.cast(pl.String).to_numpy().astype(str)
    pred = pred.astype(str)
    classes = np.unique(np.concatenate([truth, pred])).tolist()
    tables, failures, per_class = [], [], {}
    stats: dict[str, Any] = {"sensitive": sensitive_col, "min_ratio": min_ratio}
    for c in classes:
        frame = df.select(sensitive_col).with_columns(_y_class=pl.Series(truth == c).cast(pl.Int64))
        res = fairness(
            pl.Series("_selected", pred == c), frame, sensitive_col, "_y_class",
            min_group_size=min_group_size, min_positives=min_positives, min_ratio=min_ratio,
            max_difference=max_difference, false_positive_rate=True,
            max_fpr_difference=max_fpr_difference, exposure=False,
        )  # fmt: skip
        assert res.table is not None
        tables.append(res.table.select(pl.lit(c).alias("class"), pl.all()))
        per_class[c] = {k: v for k, v in res.stats.items() if isinstance(v, Mapping)}
        if not res.passed:
            failures.append((f"class {c!r}: {res.detail}", res.value, res.threshold))
    ratios = []
    for key in ("demographic_parity", "equal_opportunity", "false_positive_parity"):
        judged = [
            (s[key]["ratio"], c, s[key])
            for c, s in per_class.items()
            if s.get(key, {}).get("judged")
        ]
        if not judged:
            stats[key] = {"judged": False, "reason": "no class with 2 groups to compare"}
            continue
        if key == "false_positive_parity":  # judged on the difference
            _, c, worst = max(judged, key=lambda item: (item[2]["difference"], item[1]))
        else:
            ratio, c, worst = min(judged, key=lambda item: (item[0], item[1]))
            ratios.append(ratio)
        stats[key] = dict(worst) | {"class": c}
    stats["per_class"] = per_class
    stats["classes"] = classes
    table = pl.concat(tables, how="diagonal_relaxed") if tables else None
    ok = (
        f"selection rate and true positive rate ratios >= {min_ratio}, false positive rate "
        f"differences <= {max_fpr_difference} across {sensitive_col} groups for each of "
        f"{len(classes)} classes (one-vs-rest)"
    )
    headline = (min(ratios) if ratios else None, min_ratio)
    return _decide(what, failures, headline, ok, table, stats)


def fairness_regression(
    predictions: np.ndarray | pl.Series,
    df: pl.DataFrame,
    sensitive_col: str,
    label_col: str,
    *,
    min_group_size: int = 30,
    min_ratio: float = 0.8,
    max_difference: float | None = None,
) -> CheckResult:
    """Compare errors and mean predictions of a regression model across sensitive groups.

    Per value of `sensitive_col` (null is a value of its own): n, mean target,
    mean prediction, MAE and RMSE.  Two measures over the groups of at least
    `min_group_size` rows, each as the smallest ratio (min / max) and the
    largest difference:

    * error_parity: MAE (a group the model serves worse has a higher MAE);
    * prediction_parity: mean prediction (judged as a ratio only when every
      judged group's mean prediction is positive: a ratio of means of mixed
      sign means nothing; the difference is still reported and judged by
      `max_difference`).

    A ratio below `min_ratio` fails, as does a difference above
    `max_difference` (in target units, when set).
    """
    what = f"fairness[{sensitive_col}]"
    _need_columns(df, [sensitive_col, label_col], what)
    min_group_size = _positive_int(min_group_size, "min_group_size", what)
    if not 0 <= min_ratio <= 1:
        raise HortusError(f"{what}: min_ratio must be in [0, 1], got {min_ratio}")
    pred = np.asarray(
        predictions.to_numpy() if isinstance(predictions, pl.Series) else predictions, dtype=float
    )
    if pred.shape != (df.height,):
        raise HortusError(
            f"{what}: got {pred.shape[0]} predictions for a frame of {df.height} rows"
        )
    if not np.isfinite(pred).all():
        raise HortusError(f"{what}: predictions hold NaN or infinite values")
    y = df[label_col]
    if y.null_count() or not y.dtype.is_numeric():
        raise HortusError(f"{what}: label column {label_col!r} must be numeric without nulls")
    table = (
        pl.DataFrame(
            {"_a": df[sensitive_col].cast(pl.String), "_y": y.cast(pl.Float64), "_p": pred}
        )
        .lazy()
        .with_columns(_err=pl.col("_p") - pl.col("_y"))
        .group_by("_a")
        .agg(
            n=pl.len(),
            mean_target=pl.col("_y").mean(),
            mean_prediction=pl.col("_p").mean(),
            mae=pl.col("_err").abs().mean(),
            rmse=(pl.col("_err") ** 2).mean().sqrt(),
        )
        .with_columns(judged=pl.col("n") >= min_group_size)
        .rename({"_a": "group"})
        .sort("group", nulls_last=True)
        .collect()
    )
    judged = table.filter(pl.col("judged"))
    failures: list[tuple[str, float | None, float | None]] = []
    stats: dict[str, Any] = {"sensitive": sensitive_col, "min_ratio": min_ratio}
    ratios = []
    for key, column, words in (
        ("error_parity", "mae", "MAE"),
        ("prediction_parity", "mean_prediction", "mean prediction"),
    ):
        if judged.height < 2:
            stats[key] = {"judged": False, "reason": f"fewer than 2 groups ({judged.height})"}
            continue
        hi_row = judged.sort(column, "group", descending=[True, False]).row(0, named=True)
        lo_row = judged.sort(column, "group").row(0, named=True)
        high, low = float(hi_row[column]), float(lo_row[column])
        diff = high - low
        ratio = None
        if low > 0:
            ratio = low / high
        elif key == "error_parity" and high == 0:
            ratio = 1.0
        stats[key] = {
            "judged": ratio is not None or max_difference is not None,
            "ratio": ratio,
            "difference": diff,
            "max_group": hi_row["group"],
            "min_group": lo_row["group"],
        }
        pair = (
            f"{sensitive_col}={lo_row['group']!r} {low:.4g} vs "
            f"{sensitive_col}={hi_row['group']!r} {high:.4g}"
        )
        if ratio is None:
            stats[key]["reason"] = f"{words} is not positive in every group: no ratio"
        else:
            ratios.append(ratio)
            if ratio < min_ratio:
                failures.append(
                    (
                        f"{key.replace('_', ' ')}: {words} ratio {ratio:.4f} < min_ratio "
                        f"{min_ratio} ({pair})",
                        ratio,
                        min_ratio,
                    )
                )
        if max_difference is not None and diff > max_difference:
            failures.append(
                (
                    f"{key.replace('_', ' ')}: {words} difference {diff:.4g} > max_difference "
                    f"{max_difference} ({pair})",
                    diff,
                    max_difference,
                )
            )
    excluded = table.filter(~pl.col("judged"))["group"].to_list()
    stats["excluded_groups"] = excluded
    note = f"; excluded group(s) {excluded} (fewer than {min_group_size} rows)" if excluded else ""
    judged_names = [k for k in ("error_parity", "prediction_parity") if stats[k].get("judged")]
    ok = (
        f"{', '.join(judged_names)} ratios >= {min_ratio} across {sensitive_col} groups{note}"
        if judged_names
        else f"nothing judged across {sensitive_col} groups{note}"
    )
    if failures:
        failures[-1] = (failures[-1][0] + note, failures[-1][1], failures[-1][2])
    return _decide(what, failures, (min(ratios) if ratios else None, min_ratio), ok, table, stats)


def task_fairness(
    outputs: np.ndarray | pl.Series,
    df: pl.DataFrame,
    spec: ModelSpec,
    sensitive_col: str,
    **options: Any,
) -> CheckResult:
    """Run the fairness check that fits `spec.task` on model outputs (`model_outputs`).

    ranking: `fairness` on the top `top_k` (default `spec.k`) of each
    `spec.group` list, or a `threshold` if the options give one (as before
    tasks existed); binary: `fairness` at score >= `threshold` (default
    `spec.threshold`) with the false positive rate and without exposure;
    multiclass: `fairness_multiclass`; regression: `fairness_regression`.
    Options that do not apply to the task (`top_k` for binary, `top_k` and
    `threshold` for multiclass, those and `min_positives` for regression)
    are dropped and the detail says so.
    """
    options = dict(options)
    dropped: list[str] = []

    def drop(*keys: str) -> None:
        for key in keys:
            if key in options:
                options.pop(key)
                dropped.append(key)

    if spec.task == "ranking":
        if "top_k" not in options and "threshold" not in options:
            options["top_k"] = spec.k
        return fairness(outputs, df, sensitive_col, spec.target, group=spec.group, **options)
    if spec.task == "binary":
        drop("top_k")
        threshold = options.pop("threshold", spec.threshold)
        result = fairness(
            outputs, df, sensitive_col, spec.target, threshold=threshold,
            false_positive_rate=True, exposure=False, **options,
        )  # fmt: skip
        rule = f"selection is score >= {threshold}"
    elif spec.task == "multiclass":
        drop("top_k", "threshold")
        result = fairness_multiclass(outputs, df, sensitive_col, spec.target, **options)
        rule = "selection is the predicted class"
    else:
        drop("top_k", "threshold", "min_positives")
        result = fairness_regression(outputs, df, sensitive_col, spec.target, **options)
        rule = "errors and predictions are compared"
    if dropped:
        result.detail += (
            f"; setting(s) {dropped} do not apply to a {spec.task} model and were ignored ({rule})"
        )
        result.stats["ignored_settings"] = dropped
    return result


# ---------------------------------------------------------------- 3. importance


def _is_categorical(s: pl.Series, declared: bool) -> bool:
    return (
        declared
        or s.dtype in (pl.String, pl.Categorical, pl.Boolean)
        or isinstance(s.dtype, pl.Enum)
    )


def _codes(s: pl.Series) -> np.ndarray:
    """Return dense integer codes 0..k-1 of a (null-free) series."""
    return (s.cast(pl.String).rank("dense").cast(pl.Int64) - 1).to_numpy()


def _cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Return the bias-corrected Cramér's V (Bergsma 2013) of two code arrays."""
    n = len(a)
    ka, kb = int(a.max()) + 1, int(b.max()) + 1
    if n < 2 or ka < 2 or kb < 2:
        return 0.0
    table = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb).astype(np.float64)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    mask = expected > 0
    chi2 = float(((table[mask] - expected[mask]) ** 2 / expected[mask]).sum())
    phi2 = max(0.0, chi2 / n - (ka - 1) * (kb - 1) / (n - 1))
    ra = ka - (ka - 1) ** 2 / (n - 1)
    rb = kb - (kb - 1) ** 2 / (n - 1)
    denom = min(ra - 1, rb - 1)
    return float(math.sqrt(min(1.0, phi2 / denom))) if denom > 0 else 0.0


def _correlation_ratio(x: np.ndarray, codes: np.ndarray) -> float:
    """Return the adjusted correlation ratio (sqrt of epsilon squared) of x by category."""
    n = len(x)
    k = int(codes.max()) + 1 if n else 0
    total = float(((x - x.mean()) ** 2).sum()) if n else 0.0
    if n <= k or k < 2 or total == 0:
        return 0.0
    counts = np.bincount(codes, minlength=k)
    means = np.bincount(codes, weights=x, minlength=k) / np.maximum(counts, 1)
    within = float(((x - means[codes]) ** 2).sum())
    eps2 = 1 - (within / (n - k)) / (total / (n - 1))
    return float(math.sqrt(max(0.0, min(1.0, eps2))))


def _association(f: pl.Series, f_cat: bool, a: pl.Series, a_cat: bool) -> tuple[str, float]:
    """Return (measure, value in [0, 1]) of the association of two series (nulls dropped)."""
    pair = pl.DataFrame({"f": f, "a": a}).drop_nulls()
    if f_cat and a_cat:
        return "cramers_v", _cramers_v(_codes(pair["f"]), _codes(pair["a"]))
    if f_cat != a_cat:
        num, cat = (pair["a"], pair["f"]) if f_cat else (pair["f"], pair["a"])
        x = num.to_physical().cast(pl.Float64).to_numpy()
        keep = np.isfinite(x)
        return "correlation_ratio", _correlation_ratio(x[keep], _codes(cat.filter(keep)))
    ranks = pair.select(
        pl.col("f").to_physical().cast(pl.Float64).fill_nan(None).rank(),
        pl.col("a").to_physical().cast(pl.Float64).fill_nan(None).rank(),
    ).drop_nulls()
    if ranks.height < 3:
        return "spearman", 0.0
    rho = ranks.select(pl.corr("f", "a")).item()
    return "spearman", 0.0 if rho is None or not math.isfinite(rho) else abs(float(rho))


def importance_check(
    pipeline: Any,
    df: pl.DataFrame,
    spec: ModelSpec,
    *,
    sensitive: Sequence[str] = (),
    proxies: Mapping[str, str] | None = None,
    n_repeats: int = 5,
    seed: int = 0,
    max_rows: int = 5000,
    max_share: float = 0.5,
    sensitive_rank: int = 3,
    proxy_threshold: float = 0.5,
    importance: pl.DataFrame | None = None,
) -> CheckResult:
    """Flag a feature that dominates the model, and sensitive features or proxies ranked high.

    Permutation importance (the drop of the task's scorer: ROC AUC for binary
    and ranking, F1 macro for multiclass, negative RMSE for regression;
    `n_repeats` shuffles, seeded) is
    measured on a seeded sample of at most `max_rows` rows of `df`, unless a
    precomputed `importance` frame (feature, importance_mean,
    importance_std, e.g. `TrainResult.importance`) is given.  A feature's
    share is its importance over the sum of the positive importances.

    The check fails when the top share exceeds `max_share` (one feature
    carries the model: often a leak of the label), or when a feature that is
    a `sensitive` column, or a proxy of one, has positive importance and ranks
    in the top `sensitive_rank`.  Proxies are the features given in `proxies`
    (feature -> sensitive column it stands for) plus those whose association
    with a sensitive column of `df` reaches `proxy_threshold` (see the module
    docstring for the measures), measured on the same sample.
    """
    what = "importance_check"
    if isinstance(sensitive, str):
        raise HortusError(f"{what}: sensitive must be a sequence of column names")
    sensitive = tuple(sensitive)
    n_repeats = _positive_int(n_repeats, "n_repeats", what)
    max_rows = _positive_int(max_rows, "max_rows", what, minimum=2)
    sensitive_rank = _positive_int(sensitive_rank, "sensitive_rank", what)
    if not 0 < max_share <= 1:
        raise HortusError(f"{what}: max_share must be in (0, 1], got {max_share}")
    if not 0 < proxy_threshold <= 1:
        raise HortusError(f"{what}: proxy_threshold must be in (0, 1], got {proxy_threshold}")
    declared = dict(proxies or {})
    odd = sorted(set(declared) - set(spec.features))
    if odd:
        raise HortusError(f"{what}: proxies {odd} are not model features {list(spec.features)}")
    _need_columns(df, [*spec.features, spec.target, *sensitive], what)
    rng = np.random.default_rng(seed)
    sample = df
    if df.height > max_rows:
        sample = df[np.sort(rng.choice(df.height, size=max_rows, replace=False))]
    if importance is None:
        if spec.task in ("binary", "ranking"):
            y = _binary(sample[spec.target], what)
            if not 0 < y.sum() < len(y):
                raise HortusError(
                    f"{what}: the {len(y)} sampled rows hold one class of {spec.target!r}; "
                    "ROC AUC importance is undefined"
                )
        else:
            y = target_values(sample, spec)
            if spec.task == "multiclass" and len(np.unique(y)) < 2:
                raise HortusError(
                    f"{what}: the {len(y)} sampled rows hold one class of {spec.target!r}; "
                    "F1 macro importance is not informative"
                )
        result = permutation_importance(
            pipeline,
            to_model_input(sample, spec),
            y,
            scoring=TASKS[spec.task].scoring,
            n_repeats=n_repeats,
            random_state=seed,
        )
        importance = pl.DataFrame(
            {
                "feature": list(spec.features),
                "importance_mean": result.importances_mean,
                "importance_std": result.importances_std,
            }
        )
    else:
        _need_columns(importance, ["feature", "importance_mean"], f"{what} (importance frame)")
        if "importance_std" not in importance.columns:
            importance = importance.with_columns(importance_std=pl.lit(None, pl.Float64))
    # association of every feature with every sensitive column, on the sample
    assoc_rows = []
    for a in sensitive:
        a_cat = _is_categorical(sample[a], False)
        for f in spec.features:
            if f == a:
                continue
            measure, value = _association(
                sample[f], _is_categorical(sample[f], f in spec.categorical), sample[a], a_cat
            )
            assoc_rows.append({"feature": f, "sensitive": a, "measure": measure, "value": value})
    assoc = pl.DataFrame(
        assoc_rows,
        schema={
            "feature": pl.String,
            "sensitive": pl.String,
            "measure": pl.String,
            "value": pl.Float64,
        },
        orient="row",
    )
    detected = (
        assoc.filter(pl.col("value") >= proxy_threshold)
        .sort("value", descending=True)
        .unique("feature", keep="first", maintain_order=True)
    )
    proxy_of = {r["feature"]: r["sensitive"] for r in detected.iter_rows(named=True)} | declared
    strongest = assoc.group_by("feature").agg(pl.col("value").max().alias("association"))
    positive = float(importance.filter(pl.col("importance_mean") > 0)["importance_mean"].sum())
    table = (
        importance.select("feature", "importance_mean", "importance_std")
        .sort(["importance_mean", "feature"], descending=[True, False])
        .with_columns(
            share=pl.when(pl.col("importance_mean") > 0)
            .then(pl.col("importance_mean") / positive)
            .otherwise(0.0)
            if positive > 0
            else pl.lit(None, pl.Float64),
            rank=pl.int_range(1, pl.len() + 1),
            sensitive=pl.col("feature").is_in(list(sensitive)),
            proxy_of=pl.col("feature").replace_strict(
                proxy_of, default=None, return_dtype=pl.String
            ),
        )
        .join(strongest, on="feature", how="left", maintain_order="left")
    )
    failures: list[tuple[str, float | None, float | None]] = []
    top = table.row(0, named=True) if table.height else None
    top_share = top["share"] if top else None
    if top_share is not None and top_share > max_share:
        failures.append(
            (
                f"feature {top['feature']!r} dominates: {top_share:.1%} of the total positive "
                f"permutation importance (share {top_share:.4f} > max_share {max_share}); "
                "check it for a leak of the label",
                top_share,
                max_share,
            )
        )
    flagged = table.filter(
        (pl.col("sensitive") | pl.col("proxy_of").is_not_null())
        & (pl.col("rank") <= sensitive_rank)
        & (pl.col("importance_mean") > 0)
    )
    for r in flagged.iter_rows(named=True):
        role = (
            "sensitive attribute"
            if r["sensitive"]
            else f"proxy of sensitive {r['proxy_of']!r}"
            + (f" (association {r['association']:.3f})" if r["association"] is not None else "")
        )
        failures.append(
            (
                f"feature {r['feature']!r}, a {role}, ranks {r['rank']} by permutation "
                f"importance (rank {r['rank']} <= sensitive_rank {sensitive_rank})",
                float(r["rank"]),
                float(sensitive_rank),
            )
        )
    stats = {
        "top_feature": top["feature"] if top else None,
        "top_share": top_share,
        "max_share": max_share,
        "sensitive_rank": sensitive_rank,
        "proxy_threshold": proxy_threshold,
        "proxies": proxy_of,
        "association": assoc.to_dicts(),
        "rows": sample.height,
    }
    watched = sorted(set(sensitive) & set(spec.features) | set(proxy_of))
    ok = (
        f"top feature {top['feature']!r} holds {top_share:.1%} of the importance "
        f"(<= {max_share:.0%}); "
        if top and top_share is not None
        else "no feature has positive importance; "
    ) + (
        f"sensitive/proxy feature(s) {watched} are not among the top {sensitive_rank} "
        "features with positive importance"
        if watched
        else "no sensitive attribute or proxy among the features"
    )
    return _decide(what, failures, (top_share, max_share), ok, table, stats)


# ---------------------------------------------------------------- 4. schema


_PROBLEM_KINDS = (
    ("extra column", "extra"),
    ("is missing", "missing"),
    ("has type", "type"),
    ("null value", "null"),
    ("unseen categor", "unseen_category"),
    ("below the minimum", "out_of_range"),
    ("above the maximum", "out_of_range"),
)


def schema_conflicts(
    signature: Signature, serving_df: pl.DataFrame, *, fail_on_warnings: bool = False
) -> CheckResult:
    """Check a serving frame against a model signature and that the scorer refuses conflicts.

    Every problem `Signature.check` finds is listed with its kind (missing,
    type, null, unseen_category, out_of_range, extra) and whether it blocks
    scoring.  Then `Signature.validate`, the gate in front of the scorer, is
    run: with blocking problems it must raise `SignatureError` naming each of
    them, without them it must accept the frame; either surprise fails the
    check.  The check fails on blocking problems (on warnings too with
    `fail_on_warnings`).
    """
    what = "schema_conflicts"
    problems = signature.check(serving_df)
    kinds = []
    for p in problems:
        kinds.append(next((k for text, k in _PROBLEM_KINDS if text in p), "other"))
    table = pl.DataFrame(
        {
            "kind": kinds,
            "blocking": [not p.startswith("warning:") for p in problems],
            "problem": [p.removeprefix("warning: ") for p in problems],
        },
        schema={"kind": pl.String, "blocking": pl.Boolean, "problem": pl.String},
    )
    blocking = [p for p in problems if not p.startswith("warning:")]
    warnings = [p.removeprefix("warning: ") for p in problems if p.startswith("warning:")]
    failures: list[tuple[str, float | None, float | None]] = []
    refusal: str | None = None
    try:
        signature.validate(serving_df)
    except SignatureError as exc:
        refusal = str(exc)
    unnamed = [p for p in blocking if refusal is None or p not in refusal]
    if blocking:
        failures.append(
            (
                f"{len(blocking)} blocking conflict(s) with the model signature: "
                + "; ".join(blocking),
                float(len(blocking)),
                0.0,
            )
        )
        if refusal is None:
            failures.append(
                ("the scorer accepted a frame with blocking conflicts", float(len(blocking)), 0.0)
            )
        elif unnamed:
            failures.append(
                (f"the scorer's refusal does not name {unnamed}", float(len(unnamed)), 0.0)
            )
    elif refusal is not None:
        failures.append(
            (f"the scorer refused a frame without blocking conflicts: {refusal}", 1.0, 0.0)
        )
    if fail_on_warnings and warnings:
        failures.append(
            (
                f"{len(warnings)} warning(s) with fail_on_warnings: " + "; ".join(warnings),
                float(len(warnings)),
                0.0,
            )
        )
    stats = {
        "blocking": len(blocking),
        "warnings": len(warnings),
        "scorer_rejects": refusal is not None,
        "refusal": refusal,
        "rows": serving_df.height,
    }
    ok = f"{serving_df.height} row(s) match the signature of {len(signature.columns)} column(s)" + (
        f"; warning(s): {'; '.join(warnings)}" if warnings else ""
    )
    return _decide(what, failures, (float(len(blocking)), 0.0), ok, table, stats)


# ---------------------------------------------------------------- 5. efficiency


def _rows(df: pl.DataFrame, count: int, rng: np.random.Generator) -> pl.DataFrame:
    """Return `count` rows of `df`: a seeded sample, drawn with replacement if `df` is smaller."""
    if df.height == 0:
        raise HortusError("efficiency: the frame has no rows to score")
    replace = count > df.height
    return df[np.sort(rng.choice(df.height, size=count, replace=replace))]


def _traced(call: Any) -> tuple[int, int]:
    """Return (traced memory kept, traced peak above the start) of one call."""
    gc.collect()
    start, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    result = call()
    current, peak = tracemalloc.get_traced_memory()
    del result
    return current - start, peak - start


def efficiency(
    pipeline: Any,
    df: pl.DataFrame,
    spec: ModelSpec,
    *,
    baseline: Mapping[str, Any] | CheckResult | None = None,
    rows: int = 100,
    repeats: int = 10,
    batch: int = 1000,
    warmup: int = 3,
    leak_calls: int = 20,
    max_growth_per_call: int = 4096,
    max_ratios: Mapping[str, float] | None = None,
    model_bytes: int | None = None,
    seed: int = 0,
) -> CheckResult:
    """Measure scoring latency, throughput, memory, size and leaks, relative to a baseline.

    A scoring call is `predict_scores(pipeline, frame, spec)` (input
    conversion included).  Measured, after `warmup` untimed calls:

    * row_p50_ms / row_p99_ms: `rows` single-row calls on sampled rows;
    * batch_p50_ms / batch_p99_ms: `repeats` calls on `batch` sampled rows
      (drawn with replacement when `df` is smaller); throughput_rows_per_s =
      batch / median batch time;
    * peak_memory_bytes: tracemalloc peak of one batch call above its start;
    * model_bytes: size of the skops artifact `save_model` writes (to a
      temporary directory; the signature is derived from `df`), or the value
      given;
    * memory growth: traced memory kept after `leak_calls` batch calls,
      compared with after the warm-up; growth_per_call_bytes above
      `max_growth_per_call` fails (memory retained by every call, a leak).
      A scikit-learn pipeline retains a few hundred bytes per call in
      interpreter caches; one that keeps its 1,000-row output keeps 8 KB.

    Timing is never judged on its own: with a `baseline` (the stats, the
    `to_dict()` or the `CheckResult` of the champion's efficiency run,
    measured in the same run), each metric of `max_ratios` (default:
    row_p99_ms, batch_p99_ms, peak_memory_bytes, model_bytes at 2.0) fails
    when candidate / baseline exceeds its ratio.
    """
    what = "efficiency"
    rows = _positive_int(rows, "rows", what, minimum=2)
    repeats = _positive_int(repeats, "repeats", what, minimum=2)
    batch = _positive_int(batch, "batch", what)
    warmup = _positive_int(warmup, "warmup", what, minimum=0)
    leak_calls = _positive_int(leak_calls, "leak_calls", what)
    ratios = dict(_DEFAULT_RATIOS if max_ratios is None else max_ratios)
    _need_columns(df, spec.features, what)
    rng = np.random.default_rng(seed)
    singles = _rows(df, rows, rng)
    single_frames = [singles.slice(i, 1) for i in range(rows)]
    batch_frame = _rows(df, batch, rng)

    def score_batch() -> np.ndarray:
        return predict_scores(pipeline, batch_frame, spec)

    for _ in range(warmup):
        score_batch()
        predict_scores(pipeline, single_frames[0], spec)
    row_times = np.empty(rows)
    for i, frame in enumerate(single_frames):
        t0 = time.perf_counter()
        predict_scores(pipeline, frame, spec)
        row_times[i] = time.perf_counter() - t0
    batch_times = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        score_batch()
        batch_times[i] = time.perf_counter() - t0

    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        _, peak = _traced(score_batch)
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(leak_calls):
            score_batch()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        if started:
            tracemalloc.stop()
    growth = after - before
    if model_bytes is None:
        with tempfile.TemporaryDirectory(prefix="hortus-efficiency-") as tmp:
            path = Path(tmp) / "model.skops"
            save_model(pipeline, Signature.from_frame(df, spec), path)
            model_bytes = path.stat().st_size
    stats: dict[str, Any] = {
        "row_p50_ms": float(np.quantile(row_times, 0.5) * 1e3),
        "row_p99_ms": float(np.quantile(row_times, 0.99) * 1e3),
        "batch_p50_ms": float(np.quantile(batch_times, 0.5) * 1e3),
        "batch_p99_ms": float(np.quantile(batch_times, 0.99) * 1e3),
        "batch_rows": batch,
        "throughput_rows_per_s": float(batch / np.median(batch_times)),
        "peak_memory_bytes": int(peak),
        "model_bytes": int(model_bytes),
        "memory_growth_bytes": int(growth),
        "growth_per_call_bytes": float(growth / leak_calls),
        "leak_calls": leak_calls,
    }
    failures: list[tuple[str, float | None, float | None]] = []
    if stats["growth_per_call_bytes"] > max_growth_per_call:
        failures.append(
            (
                f"traced memory grew by {growth} bytes over {leak_calls} scoring calls of "
                f"{batch} rows ({stats['growth_per_call_bytes']:.0f} bytes per call > "
                f"max_growth_per_call {max_growth_per_call}): the scorer keeps memory per call",
                stats["growth_per_call_bytes"],
                float(max_growth_per_call),
            )
        )
    base = baseline.stats if isinstance(baseline, CheckResult) else baseline
    if isinstance(base, Mapping) and isinstance(base.get("stats"), Mapping):
        base = base["stats"]
    compared = []
    for key, bound in ratios.items():
        if key not in stats:
            raise HortusError(f"{what}: max_ratios names unknown metric {key!r}")
        ref = None if base is None else base.get(key)
        ratio = stats[key] / ref if ref else None
        passed = ratio is None or ratio <= bound
        compared.append(
            {
                "metric": key,
                "value": float(stats[key]),
                "baseline": None if ref is None else float(ref),
                "ratio": ratio,
                "max_ratio": float(bound),
                "passed": passed,
            }
        )
        if not passed:
            failures.append(
                (
                    f"{key} {stats[key]:.4g} is {ratio:.2f}x the baseline {ref:.4g} "
                    f"(> max ratio {bound})",
                    ratio,
                    float(bound),
                )
            )
    table = pl.DataFrame(
        compared,
        schema={
            "metric": pl.String,
            "value": pl.Float64,
            "baseline": pl.Float64,
            "ratio": pl.Float64,
            "max_ratio": pl.Float64,
            "passed": pl.Boolean,
        },
        orient="row",
    )
    ok = (
        f"row p99 {stats['row_p99_ms']:.3g} ms, batch p99 {stats['batch_p99_ms']:.3g} ms, "
        f"{stats['throughput_rows_per_s']:.0f} rows/s, peak {stats['peak_memory_bytes']} B, "
        f"model {stats['model_bytes']} B, growth {stats['growth_per_call_bytes']:.0f} B/call"
        + ("; within the baseline ratios" if base is not None else "; no baseline to compare")
    )
    headline = (stats["growth_per_call_bytes"], float(max_growth_per_call))
    return _decide(what, failures, headline, ok, table, stats)


# ---------------------------------------------------------------- 6. behavioural


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """Return source rows such that every row takes another row's value (a random cycle)."""
    order = rng.permutation(n)
    src = np.empty(n, dtype=np.int64)
    src[order] = np.roll(order, -1)
    return src


def behavioural(
    pipeline: Any,
    df: pl.DataFrame,
    spec: ModelSpec,
    *,
    invariance: Sequence[str] = (),
    directional: Sequence[Mapping[str, Any]] = (),
    tolerance: float = 1e-6,
    max_wrong_share: float = 0.1,
    seed: int = 0,
    scores: np.ndarray | pl.Series | None = None,
) -> CheckResult:
    """Run invariance and directional expectations on the model's scores.

    Invariance: each column of `invariance` (an ID, a token: anything whose
    value must not matter) is shuffled so every row takes another row's
    value; the check fails when any score moves by more than `tolerance`.  A
    column that is not a model input passes by construction (reported).

    Directional: each item {feature, direction: increase|decrease, delta}
    adds `delta` to a numeric feature (nulls stay null); the mean score
    change must move in `direction` by more than `tolerance`, and the share of
    rows moving the other way by more than `tolerance` must not exceed
    `max_wrong_share`.

    The score is the probability of class 1 (binary, ranking) or the
    predicted value (regression).  For multiclass, invariance compares every
    class probability, and a directional item names the class whose
    probability should move (`class`); an item without one is skipped and
    the detail says so.  The table gains a `class` column for multiclass.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> f = pl.DataFrame({"x": np.arange(20.0), "id": np.arange(20), "y": [0] * 10 + [1] * 10})
    >>> spec = ModelSpec("y", ("x",))
    >>> model = LogisticRegression().fit(f.select("x").to_numpy(), f["y"].to_numpy())
    >>> behavioural(model, f, spec, invariance=["id"],
    ...             directional=[{"feature": "x", "direction": "increase", "delta": 1}]).passed
    True
    """
    what = "behavioural"
    if isinstance(invariance, str):
        raise HortusError(f"{what}: invariance must be a sequence of column names")
    if tolerance < 0:
        raise HortusError(f"{what}: tolerance must be >= 0, got {tolerance}")
    if not 0 <= max_wrong_share <= 1:
        raise HortusError(f"{what}: max_wrong_share must be in [0, 1], got {max_wrong_share}")
    tests = []
    multiclass = spec.task == "multiclass"
    skipped: list[str] = []
    for i, item in enumerate(directional):
        if not isinstance(item, Mapping):
            raise HortusError(f"{what}: directional[{i}] must be a mapping, got {item!r}")
        unknown = sorted(set(item) - {"feature", "direction", "delta", "class"})
        lacking = sorted({"feature", "direction", "delta"} - set(item))
        if unknown or lacking:
            raise HortusError(
                f"{what}: directional[{i}] needs keys feature, direction, delta"
                + (" (and class for a multiclass model)" if multiclass else "")
                + (f"; lacks {lacking}" if lacking else "")
                + (f"; unknown {unknown}" if unknown else "")
            )
        if "class" in item and not multiclass:
            raise HortusError(
                f"{what}: directional[{i}] names a class, but a {spec.task} model has one score"
            )
        if multiclass and "class" not in item:
            skipped.append(f"directional[{i}] {item['feature']!r}")
            continue
        feat, direction, delta = item["feature"], item["direction"], item["delta"]
        if feat not in spec.features or feat in spec.categorical:
            raise HortusError(
                f"{what}: directional[{i}] feature {feat!r} must be a numeric model feature"
            )
        if direction not in ("increase", "decrease"):
            raise HortusError(
                f"{what}: directional[{i}] direction must be increase or decrease, "
                f"got {direction!r}"
            )
        if isinstance(delta, bool) or not isinstance(delta, int | float) or delta == 0:
            raise HortusError(f"{what}: directional[{i}] delta must be a non-zero number")
        tests.append((feat, direction, float(delta), item.get("class")))
    _need_columns(df, [*spec.features, *invariance], what)
    for feat, *_ in tests:
        dtype = df[feat].dtype
        if not (dtype.is_numeric() or dtype == pl.Boolean):
            raise HortusError(
                f"{what}: directional feature {feat!r} has type {dtype}; adding a delta needs "
                "an int or float column"
            )
    if df.height < 2:
        raise HortusError(f"{what}: need at least 2 rows, got {df.height}")
    classes: list[Any] = []
    if multiclass:
        classes, base = class_probabilities(pipeline, df, spec)
        names = [str(c) for c in classes]
        for feat, _, _, cls in tests:
            if str(cls) not in names:
                raise HortusError(
                    f"{what}: directional {feat!r} names class {cls!r}, not a class of the "
                    f"model {classes}"
                )
    else:
        base = _scores_of(pipeline, df, spec, scores, what)

    def output(frame: pl.DataFrame) -> np.ndarray:
        if multiclass:
            return class_probabilities(pipeline, frame, spec)[1]
        return predict_scores(pipeline, frame, spec)

    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    failures: list[tuple[str, float | None, float | None]] = []
    for col in invariance:
        shuffled = df[col].gather(_derangement(df.height, rng))
        changed = int(shuffled.ne_missing(df[col]).sum())
        change = output(df.with_columns(shuffled)) - base
        if change.ndim == 2:  # multiclass: the largest change of any class probability
            change = change[np.arange(len(change)), np.abs(change).argmax(axis=1)]
        worst = float(np.abs(change).max())
        moved = float((np.abs(change) > tolerance).mean())
        passed = worst <= tolerance and changed > 0
        rows.append(
            {
                "test": "invariance",
                "column": col,
                "direction": None,
                "delta": None,
                "input_rows_changed": changed,
                "mean_change": float(change.mean()),
                "max_abs_change": worst,
                "moved_share": moved,
                "wrong_share": None,
                "passed": passed,
            }
        )
        if changed == 0:
            failures.append(
                (
                    f"invariance of {col!r} untested: shuffling changed no row (one value only)",
                    0.0,
                    None,
                )
            )
        elif not passed:
            failures.append(
                (
                    f"invariance of {col!r} broken: shuffling it changes scores by up to "
                    f"{worst:.4g} (> tolerance {tolerance}) on {moved:.1%} of rows",
                    worst,
                    tolerance,
                )
            )
    for feat, direction, delta, cls in tests:
        s = df[feat]
        moved_input = s.cast(pl.Float64) + delta
        shifted = df.with_columns(moved_input.alias(feat))
        change = output(shifted) - base
        if change.ndim == 2:
            change = change[:, [str(c) for c in classes].index(str(cls))]
        valid = s.is_not_null().to_numpy()
        d = change[valid] if valid.any() else change
        sign = 1.0 if direction == "increase" else -1.0
        mean = float(d.mean())
        wrong = float((sign * d < -tolerance).mean())
        ok_mean = sign * mean > tolerance
        ok_wrong = wrong <= max_wrong_share
        rows.append(
            {
                "test": "directional",
                "column": feat,
                "direction": direction,
                "delta": delta,
                "input_rows_changed": int(valid.sum()),
                "mean_change": mean,
                "max_abs_change": float(np.abs(d).max()),
                "moved_share": float((np.abs(d) > tolerance).mean()),
                "wrong_share": wrong,
                "passed": ok_mean and ok_wrong,
            }
        )
        if not ok_mean:
            failures.append(
                (
                    f"directional {feat!r} {delta:+g}: expected the score to {direction}, "
                    f"mean change {mean:+.4g} (tolerance {tolerance})",
                    mean,
                    sign * tolerance,
                )
            )
        if not ok_wrong:
            failures.append(
                (
                    f"directional {feat!r} {delta:+g}: {wrong:.1%} of rows move against the "
                    f"expected {direction} (> max_wrong_share {max_wrong_share})",
                    wrong,
                    max_wrong_share,
                )
            )
    table = pl.DataFrame(
        rows,
        schema={
            "test": pl.String,
            "column": pl.String,
            "direction": pl.String,
            "delta": pl.Float64,
            "input_rows_changed": pl.Int64,
            "mean_change": pl.Float64,
            "max_abs_change": pl.Float64,
            "moved_share": pl.Float64,
            "wrong_share": pl.Float64,
            "passed": pl.Boolean,
        },
        orient="row",
    )
    if multiclass:
        row_classes = [None] * len(invariance) + [str(cls) for *_, cls in tests]
        table = table.with_columns(pl.Series("class", row_classes, dtype=pl.String))
    not_inputs = [c for c in invariance if c not in spec.features]
    note = (
        f"; skipped {', '.join(skipped)}: a multiclass directional test must name the "
        "class whose probability should move (key `class`)"
        if skipped
        else ""
    )
    ok = (
        f"{len(invariance)} invariance and {len(tests)} directional test(s) hold"
        + (f" ({not_inputs} are not model inputs)" if not_inputs else "")
        if rows
        else "no behavioural test declared"
    ) + note
    if failures and note:
        failures[-1] = (failures[-1][0] + note, failures[-1][1], failures[-1][2])
    worst_inv = table.filter(pl.col("test") == "invariance")["max_abs_change"].max()
    stats: dict[str, Any] = {
        "tolerance": tolerance,
        "max_wrong_share": max_wrong_share,
        "rows": df.height,
    }
    if skipped:
        stats["skipped"] = skipped
    return _decide(what, failures, (worst_inv, tolerance), ok, table, stats)


# ---------------------------------------------------------------- config and runner


# section -> (check function, keyword arguments the runner fills in itself)
_SECTIONS: dict[str, tuple[Any, frozenset[str]]] = {
    "segment_metrics": (segment_metrics_ci, frozenset({"scores"})),
    "fairness": (fairness, frozenset({"group", "false_positive_rate", "exposure"})),
    "importance": (importance_check, frozenset({"sensitive", "proxies", "importance"})),
    "schema": (schema_conflicts, frozenset()),
    "efficiency": (efficiency, frozenset({"baseline"})),
    "behavioural": (behavioural, frozenset({"scores"})),
}


def _keywords(func: Any, reserved: frozenset[str]) -> set[str]:
    params = inspect.signature(func).parameters.values()
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY} - reserved


@dataclass(frozen=True)
class ModelCheckConfig:
    """The model-check settings of a params.yaml section.

    `segments` (default: the spec's), `sensitive` (declared sensitive
    attributes: fairness and importance) and `proxies` (feature -> sensitive
    column) apply to several checks; each other key names a check section
    whose keys are that check's keyword arguments (its thresholds):
    segment_metrics -> `segment_metrics_ci`, fairness -> `fairness`,
    importance -> `importance_check`, schema -> `schema_conflicts`,
    efficiency -> `efficiency`, behavioural -> `behavioural`.

    Examples
    --------
    >>> cfg = ModelCheckConfig.from_dict(
    ...     {"sensitive": ["age_band"], "fairness": {"top_k": 5, "min_ratio": 0.8}}
    ... )
    >>> cfg.fairness["top_k"], cfg.sensitive
    (5, ('age_band',))
    """

    segments: tuple[str, ...] | None = None
    sensitive: tuple[str, ...] = ()
    proxies: dict[str, str] = field(default_factory=dict)
    segment_metrics: dict[str, Any] = field(default_factory=dict)
    fairness: dict[str, Any] = field(default_factory=dict)
    importance: dict[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] = field(default_factory=dict)
    efficiency: dict[str, Any] = field(default_factory=dict)
    behavioural: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(
        cls, doc: Mapping[str, Any] | None, where: str = "model_checks"
    ) -> ModelCheckConfig:
        """Build the config from a params section, refusing unknown keys by name."""
        doc = dict(doc or {})
        known = {"segments", "sensitive", "proxies", *_SECTIONS}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise HortusError(
                f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}"
            )
        out: dict[str, Any] = {}
        for key in ("segments", "sensitive"):
            value = doc.get(key)
            if value is None:
                continue
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise HortusError(f"{where}.{key} must be a list of column names, got {value!r}")
            out[key] = tuple(str(v) for v in value)
        proxies = doc.get("proxies") or {}
        if not isinstance(proxies, Mapping):
            raise HortusError(f"{where}.proxies must map feature -> sensitive column")
        out["proxies"] = {str(k): str(v) for k, v in proxies.items()}
        for section, (func, reserved) in _SECTIONS.items():
            body = doc.get(section) or {}
            if not isinstance(body, Mapping):
                raise HortusError(f"{where}.{section} must be a mapping, got {body!r}")
            allowed = _keywords(func, reserved)
            bad = sorted(set(body) - allowed)
            if bad:
                raise HortusError(
                    f"{where}.{section}: unknown key(s) {bad}; {func.__name__} accepts "
                    f"{sorted(allowed)}"
                )
            out[section] = dict(body)
        return cls(**out)


def run_model_checks(
    pipeline: Any,
    df: pl.DataFrame,
    spec: ModelSpec,
    config: ModelCheckConfig,
    *,
    signature: Signature | None = None,
    serving_df: pl.DataFrame | None = None,
    baseline: Mapping[str, Any] | CheckResult | None = None,
    importance: pl.DataFrame | None = None,
) -> list[CheckResult]:
    """Run every model check configured by `config` on evaluation rows `df`.

    The model outputs (`model_outputs`) are computed once; every check
    follows `spec.task`.  Runs `segment_metrics_ci` (when there are
    segments; a configured metric that does not fit the task is replaced by
    the task's and the detail says so), `task_fairness` per sensitive column
    (ranking: the top `spec.k` of each `spec.group` list unless the section
    sets top_k or threshold; binary: score >= `spec.threshold`; multiclass:
    one-vs-rest at the predicted class; regression: error and prediction
    ratios), `importance_check`, `schema_conflicts` (when a signature is
    given; on `serving_df`, default `df` without the target), `efficiency`
    (against `baseline`) and `behavioural` (when it declares tests).
    """
    scores = model_outputs(pipeline, df, spec)
    segments = spec.segments if config.segments is None else config.segments
    out = []
    if segments:
        out.append(
            segment_metrics_ci(
                pipeline, df, spec, segments, scores=scores, **config.segment_metrics
            )
        )
    for col in config.sensitive:
        out.append(task_fairness(scores, df, spec, col, **config.fairness))
    out.append(
        importance_check(
            pipeline,
            df,
            spec,
            sensitive=config.sensitive,
            proxies=config.proxies,
            importance=importance,
            **config.importance,
        )
    )
    if signature is not None:
        frame = df.drop(spec.target) if serving_df is None else serving_df
        out.append(schema_conflicts(signature, frame, **config.schema))
    out.append(efficiency(pipeline, df, spec, baseline=baseline, **config.efficiency))
    if config.behavioural.get("invariance") or config.behavioural.get("directional"):
        given = None if spec.task == "multiclass" else scores
        out.append(behavioural(pipeline, df, spec, scores=given, **config.behavioural))
    return out
