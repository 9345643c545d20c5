"""Fairness across sensitive groups, per task (`fairness`, `task_fairness`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from hortus.checks._inputs import _binary, _need_columns, _positive_int
from hortus.checks._result import CheckResult, _decide
from hortus.errors import HortusError
from hortus.models.modeling import ModelSpec


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
    if exposure and ranked:
        table = table.drop("mean_exposure").join(
            _mean_exposure(frame), on="group", how="left", nulls_equal=True
        )
    else:
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
    df, banded = band_numeric(df, sensitive_col)

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
    if banded:
        result.detail += f"; {sensitive_col} compared in {banded}"
    return result


#: a numeric sensitive attribute with more distinct values than this is compared in bands
MAX_NUMERIC_GROUPS = 20
BANDS = 4


def band_numeric(df: pl.DataFrame, column: str) -> tuple[pl.DataFrame, str]:
    """Return `df` with a many-valued numeric `column` replaced by its quartile bands.

    Fairness compares groups; an attribute such as age in years has dozens of values,
    each too small to judge, so nothing would be compared.  Such a column (numeric,
    more than MAX_NUMERIC_GROUPS distinct values) is cut at its quartiles into bands
    labelled by their range, e.g. "(34, 48]"; other columns are returned unchanged.
    Returns the frame and a note saying how it was banded ("" when it was not).

    Examples
    --------
    >>> f = pl.DataFrame({"age": list(range(18, 98))})
    >>> out, note = band_numeric(f, "age")
    >>> out["age"].n_unique(), note
    (4, 'quartile bands (more than 20 distinct values)')
    """
    s = df[column] if column in df.columns else None
    if s is None or not s.dtype.is_numeric() or s.n_unique() <= MAX_NUMERIC_GROUPS:
        return df, ""
    values = s.cast(pl.Float64)
    qs = [values.quantile(i / BANDS, interpolation="lower") for i in range(1, BANDS)]
    breaks = np.unique(np.asarray([q for q in qs if q is not None], dtype=float))
    edges = [-np.inf, *breaks, np.inf]
    names = np.asarray(
        [f"[{_num(lo)}, {_num(hi)})" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    )
    codes = np.searchsorted(breaks, values.fill_null(np.nan).to_numpy(), side="right")
    labels = pl.Series(column, names[np.minimum(codes, len(names) - 1)])
    labels = labels.set(values.is_null() | values.is_nan().fill_null(False), None)
    note = f"quartile bands (more than {MAX_NUMERIC_GROUPS} distinct values)"
    return df.with_columns(labels), note


def _num(x: float) -> str:
    return "-inf" if x == -np.inf else "inf" if x == np.inf else f"{x:g}"


def _mean_exposure(frame: pl.DataFrame) -> pl.DataFrame:
    """Return each group's mean exposure, the same bits whatever the row order or threads.

    A parallel float mean sums in an order that varies from run to run (the last digit
    of the gate report moved between identical runs).  Exposure depends on the rank only,
    so the rows are counted per (group, rank), exactly, and each group's mean is the
    correctly rounded sum (`math.fsum`) of count x exposure over its ranks, divided by its
    rows.  The loop runs over groups, not rows.
    """
    counts = (
        frame.group_by("_a", "_rank")
        .agg(c=pl.len())
        .with_columns(w=pl.col("c") / (pl.col("_rank").cast(pl.Float64) + 1.0).log(2))
    )
    rows = []
    for (group,), part in counts.partition_by("_a", as_dict=True, maintain_order=False).items():
        total = int(part["c"].sum())
        rows.append({"group": group, "mean_exposure": math.fsum(part["w"].to_list()) / total})
    return pl.DataFrame(
        rows, schema={"group": pl.String, "mean_exposure": pl.Float64}, orient="row"
    )
