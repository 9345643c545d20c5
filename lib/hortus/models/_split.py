"""The hold-out: a time split that keeps whole groups on one side.

Re-exported by `hortus.models.modeling`.
"""

from __future__ import annotations

import math
from datetime import date, datetime

import numpy as np
import polars as pl

from hortus.errors import HortusError
from hortus.models._spec import ModelSpec


def _check_columns(df: pl.DataFrame, spec: ModelSpec, *, roles: bool = True) -> None:
    """Raise if `df` lacks a feature, the target or the group (or time/segments if `roles`)."""
    cols = [*spec.features, spec.target, spec.group]
    if roles:
        cols += [spec.time, *spec.segments]
    missing = [c for c in dict.fromkeys(cols) if c is not None and c not in df.columns]
    if missing:
        raise HortusError(f"the frame lacks column(s) {missing} named by the model spec")


def time_split(
    df: pl.DataFrame, spec: ModelSpec
) -> tuple[pl.DataFrame, pl.DataFrame, datetime | date | None]:
    """Split a frame into train and hold-out, keeping whole groups on one side.

    With `spec.time`, each row is placed by the first time of its group (its own
    time without a group); the cut-off is the time at the `1 - holdout_fraction`
    quantile of those per-row times, and rows at or after it form the hold-out.
    Every hold-out group therefore starts at or after the cut-off and every train
    group before it.  Without `spec.time`, a seeded random `holdout_fraction` of
    the groups (of the rows without a group) is held out.

    Returns
    -------
    train, holdout, cutoff
        Row order is kept; `cutoff` is None without a time column.

    Examples
    --------
    >>> df = pl.DataFrame({"t": [1, 2, 3, 4, 5], "g": [1, 1, 2, 3, 3], "y": [0, 1, 0, 1, 0]})
    >>> tr, te, cut = time_split(df, ModelSpec("y", ("t",), time="t", group="g"))
    >>> tr["g"].to_list(), te["g"].to_list(), cut
    ([1, 1, 2], [3, 3], 4)
    """
    _check_columns(df, spec)
    if df.height < 2:
        raise HortusError(f"cannot split {df.height} row(s) into train and hold-out")
    if spec.time is None:
        return (*_random_split(df, spec), None)
    if df[spec.time].null_count():
        raise HortusError(f"time column {spec.time!r} has nulls: rows cannot be placed in time")
    key = pl.col(spec.time).min().over(spec.group) if spec.group else pl.col(spec.time)
    placed = df.with_columns(key.alias("_split_time"))
    times = placed["_split_time"].sort()
    cutoff = times[min(len(times) - 1, math.floor(len(times) * (1 - spec.holdout_fraction)))]
    is_test = pl.col("_split_time") >= cutoff
    train = placed.filter(~is_test).drop("_split_time")
    test = placed.filter(is_test).drop("_split_time")
    if train.is_empty():
        raise HortusError(
            f"no training rows before the cut-off {cutoff}: too many rows share the first "
            f"{spec.time!r}; lower holdout_fraction or check the time column"
        )
    return train, test, cutoff


def _random_split(df: pl.DataFrame, spec: ModelSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(spec.seed)
    if spec.group is None:
        n_test = max(1, min(df.height - 1, round(df.height * spec.holdout_fraction)))
        flags = np.zeros(df.height, dtype=bool)
        flags[rng.permutation(df.height)[:n_test]] = True
        marked = df.with_columns(pl.Series("_test", flags))
    else:
        groups = df.select(pl.col(spec.group).unique().sort(nulls_last=True))
        if groups.height < 2:
            raise HortusError(f"cannot split a single group of {spec.group!r}")
        n_test = max(1, min(groups.height - 1, round(groups.height * spec.holdout_fraction)))
        flags = np.zeros(groups.height, dtype=bool)
        flags[rng.permutation(groups.height)[:n_test]] = True
        marked = df.join(
            groups.with_columns(pl.Series("_test", flags)),
            on=spec.group,
            how="left",
            nulls_equal=True,
            maintain_order="left",
        )
    return (
        marked.filter(~pl.col("_test")).drop("_test"),
        marked.filter(pl.col("_test")).drop("_test"),
    )


def _training_order(df: pl.DataFrame, spec: ModelSpec) -> pl.DataFrame:
    """Return rows in time order (stable), or in a seeded random order without time."""
    if spec.time is not None:
        return df.sort(spec.time, maintain_order=True)
    rng = np.random.default_rng(spec.seed)
    return df[rng.permutation(df.height)]
