"""Model monitors: how stale each champion is (age, drift, newer data) and its feature drift."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl

from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring._monitor_base import (
    MonitorError,
    _can_read,
    _long,
    _project,
    _utc,
    empty_metrics,
)
from hortus.monitoring.drift import (
    P_VALUE_TESTS,
    CalibrationConfig,
    DriftConfig,
    calibrated_compare,
    compare,
    increments_for,
)


def training_table(
    lh: Lakehouse, model: str, receipt: Mapping[str, Any] | None = None
) -> str | None:
    """Return the table a registered model trains on.

    The model's `table` in the project definition when the project declares the
    model; else, from its build receipt, the one table it hashed (``content_hashes``)
    or read (``tables_read``).  None when that cannot be told.
    """
    project = _project(lh)
    if project is not None and model in project.models:
        return project.model(model).table
    receipt = receipt or {}
    for key in ("content_hashes", "tables_read"):
        tables = [t for t in (receipt.get(key) or {}) if not t.startswith("ops.")]
        if len(tables) == 1:
            return tables[0]
    return None


# ------------------------------------------------------------ model staleness
def staleness_score(
    age_days: float,
    drift_share: float,
    newer_data: bool,
    *,
    max_age_days: float = 30.0,
    weights: Sequence[float] = (0.3, 0.5, 0.2),
) -> float:
    """Combine age, drift and newer data into one staleness score in [0, 1].

    ``score = w_age * min(age_days / max_age_days, 1) + w_drift * drift_share
    + w_new * newer_data`` with the weights normalised to sum to 1 (default
    0.3, 0.5, 0.2).  ``drift_share`` is the share of the model's features that
    drifted between its training rows and the rows that arrived after them;
    ``newer_data`` is 1 when rows newer than the training data exist.  0 is a
    model trained just now on the newest data; 1 a model at least `max_age_days`
    old whose every feature drifted, with newer data waiting.

    Examples
    --------
    >>> staleness_score(0.0, 0.0, False)
    0.0
    >>> staleness_score(60.0, 1.0, True)
    1.0
    """
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise MonitorError(
            f"staleness weights must be three non-negative numbers (age, drift, newer data) "
            f"with a positive sum, got {list(weights)}"
        )
    if max_age_days <= 0:
        raise MonitorError(f"staleness max_age_days must be > 0, got {max_age_days}")
    if not 0.0 <= drift_share <= 1.0:
        raise MonitorError(f"staleness drift_share must be in [0, 1], got {drift_share}")
    w_age, w_drift, w_new = (w / sum(weights) for w in weights)
    age = min(max(age_days, 0.0) / max_age_days, 1.0)
    return float(w_age * age + w_drift * drift_share + w_new * float(bool(newer_data)))


def staleness_inputs(
    training: pl.DataFrame,
    latest: pl.DataFrame,
    *,
    features: Sequence[str],
    time: str,
    drift: DriftConfig | None = None,
    calibration: CalibrationConfig | None = None,
    increments: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Return drift_share, newer_rows and newer_data of a model trained on `training`.

    The rows of `latest` whose `time` is after the newest training time are the
    newer data; the share of `features` that drifted (distribution or null share)
    is measured between the training rows and them (0 when there are none) by
    `hortus.monitoring.drift.calibrated_compare`: the newer rows against the training
    rows' last week (or the newer rows' length when longer), thresholds from a null
    fitted to the training rows' like-window pairs (the gate's and the dashboard's
    decision too); window aggregates in `increments` (feature -> entity key columns,
    which both frames then hold) are judged on their per-entity increments too;
    ``calibration=CalibrationConfig(enabled=False)`` compares with every training row
    at the fixed thresholds.
    """
    for name, frame in (("training", training), ("latest", latest)):
        missing = [c for c in (*features, time) if c not in frame.columns]
        if missing:
            raise MonitorError(f"staleness: {name} rows lack column(s) {', '.join(missing)}")
    if not features:
        raise MonitorError("staleness: no features given to measure drift on")
    trained_until = training[time].max()
    newer = latest.filter(pl.col(time) > trained_until) if trained_until is not None else latest
    report = None
    if newer.height and training.height:
        both = set(training.columns) & set(latest.columns)
        increments = {f: ks for f, ks in (increments or {}).items() if all(k in both for k in ks)}
        keys = [k for ks in increments.values() for k in ks]
        wanted = list(dict.fromkeys([*features, time, *keys]))
        report, _ = calibrated_compare(
            training.select(wanted),
            newer.select(wanted),
            list(features),
            time=time,
            config=drift,
            calibration=calibration,
            increments=increments,
        )
    return _inputs(report, features, newer.height, trained_until)


def _training_rows(
    lh: Lakehouse,
    table: str,
    receipt: Mapping[str, Any],
    version: int,
    latest: pl.DataFrame,
    time: str | None,
) -> tuple[pl.DataFrame | None, str]:
    """Return the champion's training rows and how they were found ("version" or "rows").

    Normally they are `table` at the Delta version the receipt read, checked against
    the receipt's content hash.  `dvc repro` rebuilds the table from scratch (its
    Delta history starts again), so when that version is missing or holds other rows,
    the training rows are the first ``rows=N`` rows (from the receipt's content hash)
    of the current table in `time` order: a rebuild from more landing days keeps the
    earlier examples.  No content hash and no matching version: MonitorError.  A
    model without a time column has no such order: (None, "none").
    """
    expected = (receipt.get("content_hashes") or {}).get(table)
    if version <= lh.version(table) and (
        expected is None or lh.content_hash(table, version=version) == expected
    ):
        return lh.read(table, version=version), "version"
    if time is None:
        return None, "none"
    rows = re.match(r"rows=(\d+);", expected or "")
    if rows is None:
        raise MonitorError(
            f"{table} v{version} read by the champion is gone or changed, and its "
            "receipt has no content hash to find the training rows by"
        )
    n = int(rows.group(1))
    if n == 0 or latest.height < n:
        raise MonitorError(
            f"{table} has {latest.height} rows, fewer than the {n} the champion "
            "was trained on: the table was rebuilt from less data"
        )
    cutoff = latest.select(pl.col(time).sort().gather(n - 1)).item()
    return latest.filter(pl.col(time) <= cutoff), "rows"


def _untimed_inputs(
    training: pl.DataFrame | None,
    latest: pl.DataFrame,
    *,
    features: Sequence[str],
    drift: DriftConfig | None,
) -> dict[str, Any]:
    """Staleness inputs of a model without a time column: its training rows against the table now.

    Without a time there is no "after the training data": the newer rows are the
    rows the table gained since (its row count less the training rows'), and drift
    is measured between the training rows and every current row when it gained some.
    Training rows that cannot be found give no drift and no newer data.
    """
    newer_rows = 0 if training is None else max(latest.height - training.height, 0)
    report = None
    if newer_rows and training is not None and training.height:
        report = compare(training.select(features), latest.select(features), config=drift)
    return _inputs(report, features, newer_rows, None)


def _inputs(report: Any, features: Sequence[str], newer_rows: int, trained_until: Any) -> dict:
    """Return the staleness inputs: per-feature drift of `report` (None: not measured)."""
    drifted = report.drifted_columns if report is not None else []
    per_feature = (
        report.to_frame().filter(pl.col("segment").is_null() & pl.col("window_start").is_null())
        if report is not None
        else None
    )
    return {
        "per_feature": per_feature,
        "drift_share": len(drifted) / len(features),
        "drifted_features": drifted,
        "newer_rows": newer_rows,
        "newer_data": newer_rows > 0,
        "trained_until": trained_until,
    }


def model_staleness(
    lh: Lakehouse,
    at: datetime,
    *,
    model: str | None = None,
    max_age_days: float = 30.0,
    weights: Sequence[float] = (0.3, 0.5, 0.2),
    drift: DriftConfig | None = None,
    calibration: CalibrationConfig | None = None,
) -> pl.DataFrame:
    """Measure how stale each champion is: age, drift since its training data, newer data.

    `model` None measures the champion of every registered model (`registry.model_names`).
    A champion's training rows are its training table (`training_table`: the model's
    table in the project definition, else the one its receipt read) at the Delta
    version its receipt read (``tables_read``); the newer rows are those of the
    current version after the training rows' newest time (the spec's time column; a
    model without one: see `_untimed_inputs`).  Drift is measured on the features of
    its registered spec, whatever its task.  No champion, or no training table in its
    receipt: no rows for that model.  Score: `staleness_score`.
    """
    from hortus.models.registry import VERSIONS, model_names

    if not _can_read(lh, "ops.model_aliases"):
        return empty_metrics()
    names = [model] if model is not None else model_names(lh) if _can_read(lh, VERSIONS) else []
    frames = [  # a loop over models
        _champion_staleness(
            lh,
            at,
            name,
            max_age_days=max_age_days,
            weights=weights,
            drift=drift,
            calibration=calibration,
        )
        for name in names
    ]
    return pl.concat([empty_metrics(), *frames])


def _champion_staleness(
    lh: Lakehouse,
    at: datetime,
    model: str,
    *,
    max_age_days: float,
    weights: Sequence[float],
    drift: DriftConfig | None,
    calibration: CalibrationConfig | None = None,
) -> pl.DataFrame:
    """Return the staleness and feature drift rows of one model's champion (see above)."""
    from hortus.models.registry import Registry

    registry = Registry(lh, model)
    champion = registry.aliases().get("champion")
    if champion is None:
        return empty_metrics()
    mv = registry.get(champion)
    table = training_table(lh, model, mv.receipt)
    version_read = (mv.receipt.get("tables_read") or {}).get(table) if table else None
    if version_read is None or not _can_read(lh, table):
        return empty_metrics()
    spec = mv.spec or {}
    features = list(spec.get("features") or [])
    time = spec.get("time") or None
    if not features:
        raise MonitorError(
            f"model {model} v{mv.version}: its spec lists no features to measure drift on"
        )
    have = set(lh.scan(table).collect_schema().names())
    # window aggregates are judged on per-entity increments too (their keys are read)
    increments = {
        f: keys
        for f, keys in increments_for(_project(lh), features).items()
        if all(k in have for k in keys)
    }
    keys = list(dict.fromkeys(k for ks in increments.values() for k in ks if k not in features))
    columns = [*features, *([time] if time else []), *keys]
    missing = [c for c in columns if c not in have]
    if missing:
        raise MonitorError(
            f"model {model} v{mv.version}: its training table {table} has no column(s) "
            f"{', '.join(missing)} of its spec"
        )
    latest = lh.read(table, columns=columns)
    training, snapshot = _training_rows(lh, table, mv.receipt, int(version_read), latest, time)
    if time is not None:
        training = training.select(*features, time, *keys)
        got = staleness_inputs(
            training, latest, features=features, time=time, drift=drift,
            calibration=calibration, increments=increments,
        )  # fmt: skip
    else:
        training = None if training is None else training.select(*features)
        got = _untimed_inputs(training, latest, features=features, drift=drift)
    age_days = (_utc(at) - _utc(mv.created_at)).total_seconds() / 86400.0
    score = staleness_score(
        age_days,
        got["drift_share"],
        got["newer_data"],
        max_age_days=max_age_days,
        weights=weights,
    )
    wide = pl.DataFrame(
        {
            "model": [model],
            "version": [mv.version],
            "age_days": [age_days],
            "drift_share": [got["drift_share"]],
            "newer_data": [float(got["newer_data"])],
            "newer_rows": [float(got["newer_rows"])],
            "staleness_score": [score],
            "drifted_features": [",".join(got["drifted_features"])],
            "training_version": [int(version_read)],
            "training_snapshot": [snapshot],
        }
    )
    staleness = _long(
        wide,
        monitor="model_staleness",
        at=at,
        subject=pl.col("model"),
        values=("age_days", "drift_share", "newer_data", "newer_rows", "staleness_score"),
        labels=("version", "training_version", "training_snapshot", "drifted_features"),
    )
    per_feature = got["per_feature"]
    if per_feature is None or per_feature.height == 0:
        return staleness
    drifted = pl.col("drifted") | pl.col("null_drifted").fill_null(False)
    rows = per_feature.select(
        "column",
        "statistic",
        "value",
        "threshold",
        "p_value",
        # p-value tests drift when the adjusted p-value is below alpha, distances when the
        # value reaches the threshold: both scores are >= 1 exactly when the column drifted
        drift_score=pl.when(pl.col("statistic").is_in(P_VALUE_TESTS))
        .then(pl.col("threshold") / pl.col("p_value_adjusted").clip(lower_bound=1e-300))
        .when(pl.col("threshold") > 0)
        .then(pl.col("value") / pl.col("threshold"))
        .otherwise(None),
        feature_drifted=drifted.cast(pl.Float64),
        model=pl.lit(model),
        version=pl.lit(mv.version),
    )
    return pl.concat(
        [
            staleness,
            _long(
                rows,
                monitor="feature_drift",
                at=at,
                subject=pl.col("column"),
                values=("drift_score", "feature_drifted"),
                labels=("model", "version", "statistic", "value", "threshold", "p_value"),
            ),
        ]
    )
