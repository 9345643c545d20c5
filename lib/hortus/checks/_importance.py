"""Permutation importance: a dominant feature, sensitive features and proxies (`importance_check`).

A proxy is a feature whose association with a sensitive column reaches
`proxy_threshold`: bias-corrected Cramér's V (category x category),
adjusted correlation ratio (number x category; adjusted so that an
ID-like category does not look associated with everything), |Spearman|
(number x number).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from sklearn.inspection import permutation_importance
from sklearn.metrics import check_scoring
from sklearn.utils import Bunch, check_array

from hortus.checks._inputs import _binary, _need_columns, _positive_int
from hortus.checks._result import CheckResult, _decide
from hortus.errors import HortusError
from hortus.models.modeling import TASKS, ModelSpec, target_values, to_model_input


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


def _permuted_scores(
    col: int, pipeline: Any, x: np.ndarray, y: np.ndarray, scoring: str, seed: int, repeats: int
) -> np.ndarray:
    """Task: the scores of `repeats` shuffles of feature column `col` (scikit-learn's steps).

    As `sklearn.inspection.permutation_importance` does for each feature: a
    RandomState of the shared per-feature seed shuffles one index array again
    for each repeat and the column is permuted cumulatively on a copy.
    """
    scorer = check_scoring(pipeline, scoring=scoring)
    rs = np.random.RandomState(seed)
    permuted = x.copy()
    order = np.arange(permuted.shape[0])
    scores = []
    for _ in range(repeats):
        rs.shuffle(order)
        permuted[:, col] = permuted[order, col]
        scores.append(scorer(pipeline, permuted, y))
    return np.array(scores)


def _permutation(
    pipeline: Any, x: np.ndarray, y: np.ndarray, spec: ModelSpec, repeats: int, seed: int
) -> Any:
    """Return permutation importances (importances_mean, importances_std) of every feature.

    In-process with scikit-learn; on the analytics executor (Ray, from
    `executor.importance_min_rows` sampled rows, `hortus.executor.analytics`) one
    task per feature, the fitted model and the rows shipped once through the
    object store (in memory, no file): the same numbers, since every feature is
    shuffled with the seed scikit-learn derives from `seed` for each feature.
    """
    from hortus.executor.analytics import executor_for_work, run

    scoring = TASKS[spec.task].scoring
    executor = executor_for_work("importance", len(y))
    if executor is None:
        return permutation_importance(
            pipeline, x, y, scoring=scoring, n_repeats=repeats, random_state=seed
        )
    x = check_array(x, ensure_all_finite="allow-nan", dtype=None)
    feature_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    baseline = check_scoring(pipeline, scoring=scoring)(pipeline, x, y)
    shared = (pipeline, x, y, scoring, feature_seed, repeats)
    scores = np.array(list(run(executor, _permuted_scores, range(x.shape[1]), shared=shared)))
    drops = baseline - scores
    return Bunch(
        importances_mean=np.mean(drops, axis=1),
        importances_std=np.std(drops, axis=1),
        importances=drops,
    )


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
        result = _permutation(pipeline, to_model_input(sample, spec), y, spec, n_repeats, seed)
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
