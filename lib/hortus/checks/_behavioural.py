"""Invariance and directional expectations on the model outputs (`behavioural`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from hortus.checks._inputs import _need_columns, _scores_of
from hortus.checks._result import CheckResult, _decide
from hortus.errors import HortusError
from hortus.models.modeling import ModelSpec, class_probabilities, predict_scores


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
