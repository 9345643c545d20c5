"""A metric per segment value with bootstrap confidence intervals (`segment_metrics_ci`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from hortus.checks._inputs import _binary, _need_columns, _outputs_of, _positive_int, _scores_of
from hortus.checks._result import CheckResult, _decide
from hortus.errors import HortusError
from hortus.models.modeling import TASKS, ModelSpec, target_values

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
# row resampling (the fallback) is done in chunks of replicates of at most this many drawn rows
_BOOT_CELLS = 4_000_000
# the bootstrap draws counts per cell: at most this many cells (multinomial draws) per replicate
_MAX_CELLS = 512
# ROC AUC with more distinct scores than this is bootstrapped on this many score levels
# (the variation left out shrinks as 1 / _LEVELS^2: measured on 3,000 rows with 40,000
# replicates, the bootstrap SD was 2.8% low with 4 levels, 0.4% with 8, within the 0.5%
# Monte Carlo error from 16 levels on)
_LEVELS = 128
_EPS = 1e-15


def _auc_from_counts(pos: np.ndarray, neg: np.ndarray, within: np.ndarray | None) -> np.ndarray:
    """Return ROC AUC per row of (replicates x ascending score levels) label counts.

    AUC = sum_l P_l (N below l + N_l r_l) / (sum P sum N), where r_l is the share
    of (positive, negative) pairs of level l ordered right (ties one half): 1/2
    for a level of one distinct score (`within` None), the pairs of the rows
    themselves for a level that groups several scores.  NaN without both labels.
    """
    n_pos, n_neg = pos.sum(axis=-1), neg.sum(axis=-1)
    below = np.cumsum(neg, axis=-1) - neg
    same = 0.5 * neg if within is None else neg * within
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (pos * (below + same)).sum(axis=-1) / (n_pos * n_neg)
    return np.where((n_pos == 0) | (n_neg == 0), np.nan, out)


def _ap_from_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Return average precision per row of (replicates x ascending score levels) counts.

    The sum over levels, descending, of P_l / sum P times the precision at that
    threshold (sklearn's step definition); NaN without a positive.
    """
    pos_d, neg_d = pos[:, ::-1], neg[:, ::-1]
    tp, fp = np.cumsum(pos_d, axis=1), np.cumsum(neg_d, axis=1)
    n_pos = pos.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
        out = (pos_d * precision).sum(axis=1) / n_pos
    return np.where(n_pos == 0, np.nan, out)


def _f1_from_counts(cm: np.ndarray) -> np.ndarray:
    """Return macro F1 per confusion matrix (replicates x true x predicted counts)."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    denom = cm.sum(axis=1) + cm.sum(axis=2)  # predicted + actual = 2 tp + fp + fn
    present = denom > 0
    f1 = np.where(present, 2 * tp / np.maximum(denom, 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return f1.sum(axis=1) / present.sum(axis=1)


def _per_row(metric: str, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Return the per-row values whose mean is the metric (the root of it for rmse)."""
    if metric == "accuracy":  # y, s: class codes
        return (y == s).astype(np.float64)
    if metric == "mae":
        return np.abs(s - y)
    if metric == "rmse":
        return (s - y) ** 2
    if metric == "log_loss":
        p = np.clip(s, _EPS, 1 - _EPS)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return (s - y) ** 2  # brier


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
    if metric == "f1_macro":  # y, s: class codes; mean over classes true or predicted
        k = int(max(y.max(), s.max())) + 1 if n else 1
        key = (np.arange(b)[:, None] * k * k + y[idx] * k + s[idx]).ravel()
        return _f1_from_counts(np.bincount(key, minlength=b * k * k).reshape(b, k, k))
    if metric in ("accuracy", "rmse", "mae", "log_loss", "brier"):
        out = _per_row(metric, y, s)[idx].mean(axis=1)
        return np.sqrt(out) if metric == "rmse" else out
    levels, inverse = np.unique(s, return_inverse=True)
    width = len(levels)
    key = (np.arange(b)[:, None] * width + inverse[idx]).ravel()
    labels = y[idx].ravel().astype(np.float64)
    pos = np.bincount(key, weights=labels, minlength=b * width).reshape(b, width)
    neg = np.bincount(key, weights=1.0 - labels, minlength=b * width).reshape(b, width)
    if metric == "roc_auc":
        return _auc_from_counts(pos, neg, None)
    return _ap_from_counts(pos, neg)


def _auc_levels(
    y: np.ndarray, s: np.ndarray, max_levels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Return (positives, negatives, within) per ascending score level, at most `max_levels`.

    With more distinct scores than `max_levels`, consecutive distinct scores are
    grouped into levels of about equal row counts (ties never split) and `within`
    is each level's share of its (positive, negative) pairs ordered right, ties
    one half, from the rows themselves: `_auc_from_counts` of these counts is
    the exact ROC AUC.
    """
    return auc_level_groups(y, s, max_levels)[1:]


def auc_level_groups(
    y: np.ndarray, s: np.ndarray, max_levels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Return (level of each row, positives, negatives, within) of `_auc_levels`."""
    levels, inverse = np.unique(s, return_inverse=True)
    width = len(levels)
    rows = np.bincount(inverse, minlength=width)
    pos = np.bincount(inverse, weights=y.astype(np.float64), minlength=width)
    neg = rows - pos
    if width <= max_levels:
        return inverse, pos, neg, None
    before = np.cumsum(rows) - rows  # rows at lower scores
    group = before * max_levels // len(y)  # non-decreasing, ties in one group
    group = np.concatenate([[0], np.cumsum(group[1:] != group[:-1])])
    size = int(group[-1]) + 1
    pos_g = np.bincount(group, weights=pos, minlength=size)
    neg_g = np.bincount(group, weights=neg, minlength=size)
    neg_before_group = (np.cumsum(neg_g) - neg_g)[group]
    neg_below = np.cumsum(neg) - neg - neg_before_group  # negatives below, same group
    pairs = np.bincount(group, weights=pos * (neg_below + 0.5 * neg), minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        within = np.where(pos_g * neg_g > 0, pairs / (pos_g * neg_g), 0.5)
    return group[inverse], pos_g, neg_g, within


def _drawn_counts(counts: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Return `n_boot` multinomial redraws of `counts` (rows of the same total).

    Resampling n rows with replacement and counting them per cell gives counts
    Multinomial(n, counts / n): the same distribution, drawn per cell, not per row.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n = int(round(counts.sum()))
    return rng.multinomial(n, counts / n, size=n_boot).astype(np.float64)


def _cells(
    metric: str,
    y: np.ndarray,
    s: np.ndarray,
    levels: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
) -> tuple[np.ndarray, tuple] | None:
    """Return (counts per cell, how `_from_counts` finishes), or None where rows must be drawn.

    The cells of `_cell_bootstrap`: (label, score level) for ROC AUC, (label,
    distinct score) for average precision, (true, predicted class) for F1, the
    distinct per-row values of a mean metric.
    """
    if metric == "roc_auc":
        pos, neg, within = _auc_levels(y, s, _LEVELS) if levels is None else levels
        return np.concatenate([pos, neg]), ("auc", len(pos), within)
    if metric == "average_precision":
        distinct, inverse = np.unique(s, return_inverse=True)
        if 2 * len(distinct) > _MAX_CELLS:
            return None
        width = len(distinct)
        pos = np.bincount(inverse, weights=y.astype(np.float64), minlength=width)
        return np.concatenate([pos, np.bincount(inverse) - pos]), ("ap", width)
    if metric == "f1_macro":
        k = int(max(y.max(), s.max())) + 1
        if k * k > _MAX_CELLS:
            return None
        return np.bincount(y * k + s, minlength=k * k), ("f1", k)
    values, inverse = np.unique(_per_row(metric, y, s), return_inverse=True)
    if len(values) > _MAX_CELLS:
        return None
    return np.bincount(inverse), ("mean", values, len(y), metric == "rmse")


def _from_counts(drawn: np.ndarray, how: tuple) -> np.ndarray:
    """Return the metric of each row of drawn cell counts (`_cells` says how)."""
    if how[0] == "auc":
        width, within = how[1], how[2]
        return _auc_from_counts(drawn[:, :width], drawn[:, width:], within)
    if how[0] == "ap":
        return _ap_from_counts(drawn[:, : how[1]], drawn[:, how[1] :])
    if how[0] == "f1":
        return _f1_from_counts(drawn.reshape(len(drawn), how[1], how[1]))
    values, n, root = how[1], how[2], how[3]
    out = drawn @ values / n
    return np.sqrt(out) if root else out


def _cell_bootstrap(
    metric: str,
    y: np.ndarray,
    s: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
    levels: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
) -> np.ndarray | None:
    """Return bootstrap replicates drawn as counts per cell, or None where rows must be drawn.

    Each metric here depends on the resampled rows only through their counts per
    cell (a class pair, a distinct per-row value, a (label, score) pair), so drawing
    the counts (`_drawn_counts`) is the plain resampling bootstrap in distribution,
    at the cost of the cells, not the rows.  ROC AUC with more than `_LEVELS`
    distinct scores draws counts per (label, score level) (`_auc_levels`) and
    takes each level's within-level pairs at their share in the data: the
    replicate is the expectation of the plain replicate given those counts
    (same point estimate and mean; it leaves out only the variation of pairs
    inside one level, of relative order 1 / `_LEVELS`^2 of the variance, far
    below the Monte Carlo error of a few hundred replicates;
    tests/test_bootstrap_agreement.py checks the agreement).  `levels`: the
    result of `_auc_levels` if already computed.
    """
    cells = _cells(metric, y, s, levels)
    if cells is None:
        return None
    return _from_counts(_drawn_counts(cells[0], n_boot, rng), cells[1])


def _bootstrap(
    metric: str,
    y: np.ndarray,
    s: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
    levels: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
) -> np.ndarray:
    """Return `n_boot` resampled metric values, all drawn from one generator `rng`.

    Counts per cell where the metric allows it (`_cell_bootstrap`), otherwise
    rows drawn with replacement (index arrays drawn at once, chunked by size).
    `segment_metrics_ci` draws each replicate from its own seed instead
    (`_replicates`), so that the intervals do not depend on how the work is split.
    """
    drawn = _cell_bootstrap(metric, y, s, n_boot, rng, levels)
    if drawn is not None:
        return drawn
    n = len(y)
    per_chunk = max(1, _BOOT_CELLS // max(n, 1))
    parts = []
    for start in range(0, n_boot, per_chunk):
        size = min(per_chunk, n_boot - start)
        parts.append(_boot_metric(metric, y, s, rng.integers(0, n, size=(size, n))))
    return np.concatenate(parts)


@dataclass(frozen=True)
class _Draws:
    """What one segment value's replicates are drawn from: cell counts, or its rows."""

    metric: str
    key: tuple[int, ...]  # (segment column, value) indices: the replicates' spawn key
    cells: tuple[np.ndarray, tuple] | None
    y: np.ndarray | None = None
    s: np.ndarray | None = None


def _replicates(task: tuple[int, int, int], draws: Sequence[_Draws], seed: int) -> np.ndarray:
    """Task: replicates start..stop-1 of segment value `draws[i]`, for task (i, start, stop).

    Replicate r draws from its own generator, `SeedSequence(seed, spawn_key=(*key,
    r))`: the same values whichever process draws it and in whatever batch.  Cells:
    one multinomial redraw of the counts (`_drawn_counts`); rows: n row indices
    with replacement, at most `_BOOT_CELLS` drawn rows at a time.
    """
    i, start, stop = task
    d = draws[i]
    rngs = [
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*d.key, r)))
        for r in range(start, stop)
    ]
    if d.cells is not None:
        drawn = np.concatenate([_drawn_counts(d.cells[0], 1, rng) for rng in rngs])
        return _from_counts(drawn, d.cells[1])
    n = len(d.y)
    per_chunk = max(1, _BOOT_CELLS // max(n, 1))
    parts = []
    for at in range(0, len(rngs), per_chunk):
        idx = np.stack([rng.integers(0, n, size=n) for rng in rngs[at : at + per_chunk]])
        parts.append(_boot_metric(d.metric, d.y, d.s, idx))
    return np.concatenate(parts)


def _run_replicates(draws: list[_Draws], n_boot: int, seed: int, rows: int) -> list[np.ndarray]:
    """Return the `n_boot` replicates of each segment value, in-process or as executor tasks.

    On the analytics executor (`hortus.executor.analytics`, from
    `executor.bootstrap_min_rows` evaluation rows): one task per segment value,
    and a value whose replicates resample rows in batches of about
    `executor.chunk_rows` x 10 drawn rows; the values' inputs go to the object
    store once.  Identical to the in-process replicates (`_replicates`).
    """
    from hortus.executor.analytics import bootstrap_map

    def batch(d: _Draws, chunk_rows: int) -> int:
        return n_boot if d.cells is not None else 10 * chunk_rows // len(d.y)

    return bootstrap_map(_replicates, draws, n_boot, seed, rows, batch)


def _point(
    metric: str,
    y: np.ndarray,
    s: np.ndarray,
    levels: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
) -> float:
    """Return the metric of the rows (ROC AUC from its score levels, `_auc_levels`)."""
    if metric == "roc_auc":
        pos, neg, within = _auc_levels(y, s, _LEVELS) if levels is None else levels
        return float(_auc_from_counts(pos, neg, within))
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

    Replicate r of the j-th value of the i-th segment column draws from its own
    generator, seeded by `seed` with spawn key (i, j, r): the intervals are the
    same whether they are computed in this process or as executor tasks (on
    Ray from `executor.bootstrap_min_rows` rows, `hortus.executor.analytics`).

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
    rows: list[dict[str, Any]] = []
    draws: list[_Draws] = []  # the segment values to bootstrap
    judged_rows: list[dict[str, Any]] = []  # their rows, in the same order
    for si, seg in enumerate(segments):
        parts = (
            df.select(pl.col(seg).cast(pl.String).alias("_value"))
            .with_row_index("_i")
            .group_by("_value")
            .agg(pl.col("_i"))
            .sort("_value", nulls_last=True)
        )
        flat = parts["_i"].explode().to_numpy().astype(np.int64)  # no Python lists of rows
        ends = np.cumsum(parts["_i"].list.len().to_numpy().astype(np.int64))
        starts = np.concatenate([[0], ends[:-1]])
        for vi, (value, start, end) in enumerate(zip(parts["_value"], starts, ends, strict=True)):
            rows_of = flat[start:end]
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
            levels = _auc_levels(ys, ss, _LEVELS) if metric == "roc_auc" else None
            estimate = _point(metric, ys, ss, levels)
            if math.isfinite(estimate):
                row["estimate"] = estimate
            if len(rows_of) >= min_segment_size and math.isfinite(estimate):
                cells = _cells(metric, ys, ss, levels)
                rows_drawn = (None, None) if cells is not None else (ys, ss)
                draws.append(_Draws(metric, (si, vi), cells, *rows_drawn))
                judged_rows.append(row)
            rows.append(row)
    # every replicate from its own seed: the same intervals in-process and as tasks
    boots = _run_replicates(draws, n_boot, seed, df.height)
    for row, boot in zip(judged_rows, boots, strict=True):
        defined = boot[np.isfinite(boot)]
        row["undefined_replicates"] = int(n_boot - len(defined))
        if 2 * len(defined) < n_boot:
            continue  # e.g. a rare class missing from most resamples: insufficient
        low, high = np.quantile(defined, [alpha, 1 - alpha])
        worse = high < bound if higher else low > bound
        row |= {"ci_low": float(low), "ci_high": float(high), "status": "worse" if worse else "ok"}
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
