"""The candidate against the champion on the same hold-out, and absolute floors.

`champion_comparison` scores the champion on the candidate's hold-out and compares
the two on the task's primary metric (`hortus.models.modeling.primary_metric`) with a
paired bootstrap: every replicate draws one set of rows (ranked lists for a ranking
model) and computes both models' metric on it, so the interval is that of the
difference.  It runs overall and per segment value; the candidate fails where it is
significantly worse by more than `margin`: the whole interval of (candidate -
champion), signed so that positive means better, lies below -margin.  For RMSE and
MAE (in target units) the margin is a share of the champion's value.

`floors_check` judges a first version, which has no champion: its hold-out metrics
against configured minimums (maximums for lower-is-better metrics) and its scoring
latency (the efficiency check's `row_p99_ms`, `batch_p99_ms`) against maximums.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from hortus.checks._result import CheckResult
from hortus.checks._segments import _boot_metric
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


def _paired(
    metric: str,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[float, float, np.ndarray]:
    """Return (metric of a, metric of b, bootstrap replicates of a - b) on shared resamples."""
    n = len(a)
    idx = rng.integers(0, n, size=(n_boot, n))
    if metric == "ndcg_at_k":  # a, b: NDCG of each list (NaN: no positive, not averaged)
        keep = ~np.isnan(a)
        wa, wb = np.where(keep, a, 0.0), np.where(keep, b, 0.0)
        counts = keep[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = (wa[idx].sum(axis=1) - wb[idx].sum(axis=1)) / counts
        return float(np.nanmean(a)), float(np.nanmean(b)), reps
    name = _BOOT_METRIC[metric]
    if metric == "f1_macro":  # classes as shared integer codes
        ys, as_, bs = (np.asarray(v).astype(str) for v in (y, a, b))
        labels = np.unique(np.concatenate([ys, as_, bs]))
        y, a, b = (np.searchsorted(labels, v) for v in (ys, as_, bs))
    whole = np.arange(n)[None, :]
    point_a = float(_boot_metric(name, y, a, whole)[0])
    point_b = float(_boot_metric(name, y, b, whole)[0])
    reps = _boot_metric(name, y, a, idx) - _boot_metric(name, y, b, idx)
    return point_a, point_b, reps


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
    rng = np.random.default_rng(seed)
    lo_q, hi_q = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100
    scopes: list[tuple[str, str, np.ndarray]] = [("overall", "", np.ones(len(cand), bool))]
    for column in spec.segments:
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
        for value in sorted({v for v in values if v is not None}):
            scopes.append((column, str(value), values == value))
    rows, failed = [], []
    for column, value, mask in scopes:
        n = int(mask.sum())
        if column != "overall" and n < min_segment_size:
            rows.append({"segment": column, "value": value, "n": n, "status": "too small"})
            continue
        point_c, point_h, reps = _paired(metric, keys[mask], cand[mask], champ[mask], n_boot, rng)
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
        rows.append({
            "segment": column, "value": value, "n": n, "candidate": point_c,
            "champion": point_h, "difference": diff, "ci_low": low, "ci_high": high,
            "status": "worse" if worse else "ok",
        })  # fmt: skip
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
