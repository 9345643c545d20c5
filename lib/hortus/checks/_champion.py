"""The candidate against the champion on the same hold-out, and absolute floors.

`champion_comparison` scores the champion on the candidate's hold-out and compares the
two on the task's primary metric (`hortus.models.modeling.primary_metric`) with a paired
bootstrap: every replicate draws one set of rows (ranked lists for a ranking model) and
computes both models' metric on it, so the interval is that of the difference. Replicate
r of a scope draws from its own generator, `SeedSequence(seed, spawn_key=(segment
column, value, r))` (overall: (0, 0, r)), so the interval is the same in the gate's
process and as tasks on the analytics executor (on Ray from
`executor.bootstrap_min_rows` hold-out rows, `hortus.executor.analytics`), however the
replicates are batched. ROC AUC draws counts, not rows: each replicate is one
multinomial redraw of the counts per (label, candidate score level, champion score
level) cell (`_joint_levels`, at most 2 x `_PAIR_LEVELS`^2 cells, only the occupied
ones), from which both models' AUC follow, as the segment bootstrap draws counts per
(label, score level) (`hortus.checks._segments`); at 1M rows that is the cost of the
cells, not of sorting a million drawn rows per replicate. It runs overall and per
segment value; the candidate fails where it is significantly worse by more than
`margin`: the whole interval of (candidate - champion), signed so that positive means
better, lies below -margin. For RMSE and MAE (in target units) the margin is a share of
the champion's value.

`floors_check` judges a first version, which has no champion: its hold-out metrics
against configured minimums (maximums for lower-is-better metrics) and its scoring
latency (the efficiency check's `row_p99_ms`, `batch_p99_ms`) against maximums.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from hortus.checks._result import CheckResult
from hortus.checks._segments import (
    _BOOT_CELLS,
    _LEVELS,
    _auc_from_counts,
    _boot_metric,
    auc_level_groups,
)
from hortus.errors import HortusError
from hortus.models.modeling import (
    METRIC_DIRECTIONS,
    ModelSpec,
    predict,
    predict_scores,
    primary_metric,
    ranking_per_group,
    target_values,
)

#: latency figures of the efficiency check that a floor may bound (milliseconds, maximum)
LATENCY_KEYS = ("row_p99_ms", "batch_p99_ms")
_RELATIVE = frozenset({"rmse", "mae"})
_BOOT_METRIC = {"roc_auc": "roc_auc", "f1_macro": "f1_macro", "rmse": "rmse"}
#: score levels per model of the paired ROC AUC bootstrap's cells (`_joint_levels`)
_PAIR_LEVELS = _LEVELS


def _units(df: pl.DataFrame, spec: ModelSpec, pipeline: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (y, model output) per row, or (ones, NDCG@k per list) for a ranking model."""
    if spec.task == "ranking":
        frame = df.select(spec.group, spec.target).with_columns(
            pl.Series("_s", predict_scores(pipeline, df, spec))
        )
        lists = ranking_per_group(frame, spec.group, spec.target, "_s", spec.k)
        ndcg = (lists["dcg"] / lists["idcg"]).fill_nan(None).to_numpy()
        return lists["_g"].to_numpy(), ndcg
    if spec.task == "multiclass":
        return target_values(df, spec), predict(pipeline, df, spec)["prediction"].to_numpy()
    return target_values(df, spec), predict_scores(pipeline, df, spec)


@dataclass(frozen=True)
class _Pair:
    """One scope's paired units: the replicates' spawn key and what a replicate reads.

    `metric` is a `_boot_metric` name, or ``ndcg_at_k`` (then `y` marks the lists
    with a positive and `a`, `b` are the two models' NDCG per list, 0 where none).
    """

    metric: str
    key: tuple[int, ...]
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    cells: _JointLevels | None = None


@dataclass(frozen=True)
class _JointLevels:
    """Counts per occupied (label, level of a, level of b) cell, and how AUC follows.

    `label`, `level_a`, `level_b` name each cell; `within_a`, `within_b` are each
    model's within-level shares of ordered pairs (`auc_level_groups`), taken at
    their share in the data as the segment bootstrap does.
    """

    counts: np.ndarray
    label: np.ndarray
    level_a: np.ndarray
    level_b: np.ndarray
    width_a: int
    width_b: int
    within_a: np.ndarray | None
    within_b: np.ndarray | None

    def auc(self, drawn: np.ndarray) -> np.ndarray:
        """Return AUC of a minus AUC of b per row of drawn cell counts."""
        out = []
        for level, width, within in ((self.level_a, self.width_a, self.within_a),
                                     (self.level_b, self.width_b, self.within_b)):  # fmt: skip
            r = len(drawn)
            key = (np.arange(r)[:, None] * width + level[None, :]).ravel()
            pos_w = (drawn * self.label[None, :]).ravel()
            pos = np.bincount(key, weights=pos_w, minlength=r * width).reshape(r, width)
            neg_w = (drawn * (1.0 - self.label)[None, :]).ravel()
            neg = np.bincount(key, weights=neg_w, minlength=r * width).reshape(r, width)
            out.append(_auc_from_counts(pos, neg, within))
        return out[0] - out[1]


def _joint_levels(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> _JointLevels:
    """Return the occupied (label, score level of a, score level of b) cells of the rows."""
    ga, _, _, within_a = auc_level_groups(y, a, _PAIR_LEVELS)
    gb, _, _, within_b = auc_level_groups(y, b, _PAIR_LEVELS)
    wa, wb = int(ga.max()) + 1 if len(ga) else 1, int(gb.max()) + 1 if len(gb) else 1
    label = (np.asarray(y) > 0).astype(np.int64)
    cell, counts = np.unique((label * wa + ga) * wb + gb, return_counts=True)
    return _JointLevels(
        counts.astype(np.float64), (cell // (wa * wb)).astype(np.float64),
        (cell // wb) % wa, cell % wb, wa, wb, within_a, within_b,
    )  # fmt: skip


def _pair(metric: str, key: tuple[int, ...], y: np.ndarray, a: np.ndarray, b: np.ndarray):
    """Return (metric of a, metric of b, the scope's `_Pair`) on the units of one scope."""
    if metric == "ndcg_at_k":  # a, b: NDCG of each list (NaN: no positive, not averaged)
        keep = ~np.isnan(a)
        pair = _Pair(metric, key, keep, np.where(keep, a, 0.0), np.where(keep, b, 0.0))
        return float(np.nanmean(a)), float(np.nanmean(b)), pair
    name = _BOOT_METRIC[metric]
    if metric == "f1_macro":  # classes as shared integer codes
        ys, as_, bs = (np.asarray(v).astype(str) for v in (y, a, b))
        labels = np.unique(np.concatenate([ys, as_, bs]))
        y, a, b = (np.searchsorted(labels, v) for v in (ys, as_, bs))
    whole = np.arange(len(a))[None, :]
    point_a = float(_boot_metric(name, y, a, whole)[0])
    point_b = float(_boot_metric(name, y, b, whole)[0])
    cells = _joint_levels(y, a, b) if name == "roc_auc" else None
    return point_a, point_b, _Pair(name, key, y, a, b, cells)


def _differences(idx: np.ndarray, p: _Pair) -> np.ndarray:
    """Return the metric of a minus that of b on each resample (rows of `idx`)."""
    if p.metric == "ndcg_at_k":
        counts = p.y[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (p.a[idx].sum(axis=1) - p.b[idx].sum(axis=1)) / counts
    return _boot_metric(p.metric, p.y, p.a, idx) - _boot_metric(p.metric, p.y, p.b, idx)


def _paired_replicates(task: tuple[int, int, int], pairs: Sequence[_Pair], seed: int) -> np.ndarray:
    """Task: replicates start..stop-1 of scope `pairs[i]` (a - b), for task (i, start, stop).

    Replicate r draws its units with replacement from its own generator,
    `SeedSequence(seed, spawn_key=(*key, r))`, and both models are scored on
    those units: the same values whichever process draws it and in whatever
    batch.  At most `_BOOT_CELLS` drawn units at a time.  ROC AUC draws its
    cells' counts instead (one multinomial redraw per replicate, `_JointLevels`).
    """
    i, start, stop = task
    p = pairs[i]
    n = len(p.a)
    if p.cells is not None:
        share = p.cells.counts / n
        drawn = np.stack([
            np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*p.key, r)))
            .multinomial(n, share).astype(np.float64)
            for r in range(start, stop)
        ]) if stop > start else np.empty((0, len(share)))  # fmt: skip
        return p.cells.auc(drawn)
    per_chunk = max(1, _BOOT_CELLS // max(n, 1))
    parts = []
    for at in range(start, stop, per_chunk):
        idx = np.stack([
            np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*p.key, r)))
            .integers(0, n, size=n)
            for r in range(at, min(at + per_chunk, stop))
        ])  # fmt: skip
        parts.append(_differences(idx, p))
    return np.concatenate(parts) if parts else np.empty(0)


def _run_paired(pairs: list[_Pair], n_boot: int, seed: int, rows: int) -> list[np.ndarray]:
    """Return the `n_boot` replicates of each scope, in-process or as executor tasks.

    On the analytics executor (`hortus.executor.analytics`, from
    `executor.bootstrap_min_rows` hold-out rows): one task per scope, or per
    batch of its replicates of about `executor.chunk_rows` x 10 drawn units; the
    scopes' units go to the object store once.  Identical to the in-process
    replicates (`_paired_replicates`).
    """
    from hortus.executor.analytics import bootstrap_map

    def batch(p: _Pair, chunk_rows: int) -> int:
        return n_boot if p.cells is not None else 10 * chunk_rows // max(len(p.a), 1)

    return bootstrap_map(_paired_replicates, pairs, n_boot, seed, rows, batch)


def champion_comparison(
    candidate: Any,
    spec: ModelSpec,
    champion: Any,
    champion_spec: ModelSpec,
    holdout: pl.DataFrame,
    *,
    champion_version: int,
    margin: float = 0.01,
    n_boot: int = 200,
    confidence: float = 0.95,
    min_segment_size: int = 300,
    seed: int = 0,
) -> CheckResult:
    """Compare the candidate with the champion on the candidate's hold-out (paired bootstrap).

    Fails when the champion cannot be scored on the hold-out (its features are
    missing), and where the candidate is significantly worse than the champion by
    more than `margin`, overall or in a segment value of at least `min_segment_size`
    rows (ranked lists for a ranking model).
    """
    metric, higher = primary_metric(spec)
    name = "champion"
    missing = [c for c in champion_spec.features if c not in holdout.columns]
    if missing:
        return CheckResult(
            name, False, None, None,
            f"champion v{champion_version} needs feature(s) {missing[:10]} missing from the "
            "candidate's hold-out: the two cannot be compared on the same rows",
        )  # fmt: skip
    if champion_spec.task != spec.task:
        return CheckResult(
            name, False, None, None,
            f"champion v{champion_version} is a {champion_spec.task} model, the candidate "
            f"{spec.task}: their {metric} cannot be compared",
        )  # fmt: skip
    if not 0 < confidence < 1:
        raise HortusError(f"champion comparison: confidence must be in (0, 1), got {confidence}")
    keys, cand = _units(holdout, spec, candidate)
    _, champ = _units(holdout, champion_spec, champion)
    sign = 1.0 if higher else -1.0
    lo_q, hi_q = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100
    # (column, value, units of the scope, spawn key of its replicates)
    scopes: list[tuple[str, str, np.ndarray, tuple[int, int]]] = [
        ("overall", "", np.ones(len(cand), bool), (0, 0))
    ]
    for ci, column in enumerate(spec.segments, start=1):
        if column not in holdout.columns:
            continue
        if spec.task == "ranking":  # a list's segment value: its first row's
            per_list = (
                holdout.select(spec.group, column).group_by(spec.group).agg(pl.col(column).first())
            )
            values = (
                pl.DataFrame({spec.group: keys})
                .join(per_list, on=spec.group, how="left")[column]
                .cast(pl.String)
                .to_numpy()
            )
        else:
            values = holdout[column].cast(pl.String).to_numpy()
        for vi, value in enumerate(sorted({v for v in values if v is not None})):
            scopes.append((column, str(value), values == value, (ci, vi)))
    rows: list[dict[str, Any]] = []
    judged: list[tuple[dict[str, Any], float, float]] = []
    pairs: list[_Pair] = []
    for column, value, mask, key in scopes:
        n = int(mask.sum())
        row: dict[str, Any] = {"segment": column, "value": value, "n": n, "status": "too small"}
        rows.append(row)
        if column != "overall" and n < min_segment_size:
            continue
        point_c, point_h, pair = _pair(metric, key, keys[mask], cand[mask], champ[mask])
        judged.append((row, point_c, point_h))
        pairs.append(pair)
    # every replicate from its own seed: the same interval in-process and as tasks
    failed = []
    for (row, point_c, point_h), reps in zip(
        judged, _run_paired(pairs, n_boot, seed, holdout.height), strict=True
    ):
        column, value, n = row["segment"], row["value"], row["n"]
        reps = sign * reps[np.isfinite(reps)]
        diff = sign * (point_c - point_h)
        low, high = (
            (float(np.percentile(reps, lo_q)), float(np.percentile(reps, hi_q)))
            if reps.size
            else (float("nan"), float("nan"))
        )
        allowed = margin * abs(point_h) if metric in _RELATIVE else margin
        worse = bool(np.isfinite(high) and high < -allowed)
        label = "overall" if column == "overall" else f"{column}={value}"
        if worse:
            failed.append(f"{label}: {metric} {point_c:.4f} vs champion {point_h:.4f}")
        del row["status"]  # (the table's last column)
        row |= {
            "candidate": point_c, "champion": point_h, "difference": diff, "ci_low": low,
            "ci_high": high, "status": "worse" if worse else "ok",
        }  # fmt: skip
    table = pl.DataFrame(rows, strict=False)
    overall = rows[0]
    better = "higher" if higher else "lower"
    detail = (
        f"significantly worse than champion v{champion_version} by more than {margin} "
        f"({metric}, {better} is better, {confidence:.0%} paired bootstrap, {n_boot} "
        f"replicates): {'; '.join(failed)}"
        if failed
        else f"{metric} {overall['candidate']:.4f} vs champion v{champion_version} "
        f"{overall['champion']:.4f} (difference {overall['difference']:+.4f}, "
        f"{confidence:.0%} interval [{overall['ci_low']:+.4f}, {overall['ci_high']:+.4f}], "
        f"positive = better); no segment significantly worse by more than {margin}"
    )
    return CheckResult(
        name,
        not failed,
        overall["difference"],
        -margin,
        detail,
        table=table,
        stats={
            "metric": metric,
            "champion_version": champion_version,
            "n_boot": n_boot,
            "candidate": overall["candidate"],
            "champion": overall["champion"],
        },  # fmt: skip
    )


def floors_check(
    metrics: Mapping[str, Any], efficiency_stats: Mapping[str, Any], floors: Mapping[str, float]
) -> CheckResult:
    """Judge a version without a champion against absolute floors.

    `floors` maps a hold-out metric to its minimum (its maximum when lower is better,
    e.g. rmse or log_loss) and `row_p99_ms` / `batch_p99_ms` to the largest scoring
    latency allowed.  A floor whose metric was not measured fails and says so.
    """
    rows, failed = [], []
    for key, bound in floors.items():
        if key in LATENCY_KEYS:
            value, higher = efficiency_stats.get(key), False
        else:
            if key not in METRIC_DIRECTIONS:
                raise HortusError(
                    f"gate.champion.floors: unknown metric {key!r}; known: "
                    f"{', '.join(sorted([*METRIC_DIRECTIONS, *LATENCY_KEYS]))}"
                )
            value, higher = metrics.get(key), METRIC_DIRECTIONS[key]
        ok = value is not None and (value >= bound if higher else value <= bound)
        rows.append({"floor": key, "value": value, "bound": float(bound),
                     "kind": "minimum" if higher else "maximum", "passed": ok})  # fmt: skip
        if not ok:
            shown = "not measured" if value is None else f"{value:.4g}"
            failed.append(f"{key} {shown} {'<' if higher else '>'} {bound}")
    detail = (
        f"no champion: absolute floors not met: {'; '.join(failed)}"
        if failed
        else "no champion: every absolute floor met ("
        + ", ".join(f"{r['floor']} {r['value']:.4g}" for r in rows)
        + ")"
        if rows
        else "no champion and no floors configured (gate.champion.floors)"
    )
    return CheckResult(
        "floors", not failed, None, None, detail, table=pl.DataFrame(rows, strict=False)
    )
