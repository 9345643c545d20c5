"""The rebuilt hold-out of a version: metrics, segments, fairness, importance, drift.

Re-exported by `hortus.publishing.model_card`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import polars as pl

from hortus.checks.gate import GateConfig, drift_check
from hortus.checks.model_checks import (
    importance_check,
    model_outputs,
    segment_metrics_ci,
    task_fairness,
)
from hortus.errors import TableNotFound
from hortus.lakehouse.tables import Lakehouse, read_contract
from hortus.models.modeling import ModelSpec, evaluate, time_split


def _time_range(frame: pl.DataFrame, time: str | None) -> tuple[Any, Any]:
    if not time or time not in frame.columns or frame.height == 0:
        return None, None
    return frame[time].min(), frame[time].max()


def _sensitive(lh: Lakehouse, table: str, frame: pl.DataFrame, config: GateConfig) -> list[str]:
    """Return the declared sensitive columns (config, else the table's contract) present."""
    if config.model.sensitive:
        return [c for c in config.model.sensitive if c in frame.columns]
    try:
        contract = read_contract(lh.catalog, table)
    except TableNotFound:
        return []
    return [c.name for c in contract.columns if c.sensitive and c.name in frame.columns]


def _fairness(
    scores: Any, test: pl.DataFrame, spec: ModelSpec, columns: Sequence[str], config: GateConfig
) -> tuple[pl.DataFrame | None, list[dict[str, Any]]]:
    """Return fairness per attribute as the gate judges it for the spec's task."""
    tables, checks = [], []
    for col in columns:
        result = task_fairness(scores, test, spec, col, **config.model.fairness)
        checks.append({k: v for k, v in result.to_dict().items() if k != "table"})
        if result.table is not None:
            tables.append(result.table.with_columns(pl.lit(col).alias("attribute")))
    if not tables:
        return None, checks
    frame = pl.concat(tables, how="diagonal_relaxed")
    return frame.select("attribute", *[c for c in frame.columns if c != "attribute"]), checks


def _drift(
    lh: Lakehouse,
    table: str,
    version: int,
    snapshot: pl.DataFrame,
    train: pl.DataFrame,
    test: pl.DataFrame,
    cutoff: Any,
    spec: ModelSpec,
    config: GateConfig,
) -> tuple[dict[str, Any], pl.DataFrame | None, str]:
    """Compare the training rows with the newest rows the model was not trained on."""
    newest_version = lh.version(table)
    newer = newest_version != version
    newest = lh.read(table) if newer else snapshot
    reference = train
    if spec.time and cutoff is not None:
        if config.reference_days is not None:
            reference = train.filter(
                pl.col(spec.time) >= cutoff - timedelta(days=config.reference_days)
            )
        current = newest.filter(pl.col(spec.time) >= cutoff)
        what = (
            f"rows of {table} v{newest_version} (newest) at or after the training cut-off {cutoff}"
        )
    else:
        current = newest if newer else test
        what = f"{table} v{newest_version} (newest)" if newer else "the hold-out rows"
    if not newer:
        what += f" (no version of {table} newer than v{version}: the hold-out period)"
    ref_what = (
        f"the last {config.reference_days:g} day(s) of the training rows"
        if spec.time and config.reference_days is not None
        else "the training rows"
    )
    columns = [c for c in (*spec.features, spec.target) if c in current.columns]
    calibrated = config.calibration is not None and spec.time is not None
    if calibrated:
        # the gate's decision: the whole training history calibrates the thresholds
        reference = train
        ref_what = "the training rows (thresholds calibrated on their own variation)"
    result = drift_check(
        reference,
        current,
        columns,
        max_drifted_share=config.max_drifted_share,
        critical=config.critical,
        config=config.drift,
        time=spec.time if calibrated else None,
        calibration=config.calibration if calibrated else None,
        increments=_increments(lh, columns) if calibrated else None,
    )
    summary = {k: v for k, v in result.to_dict().items() if k != "table"}
    summary |= {"reference": ref_what, "current": what, "reference_rows": reference.height,
                "current_rows": current.height}  # fmt: skip
    return summary, result.table, f"{ref_what} ({reference.height:,} rows) against {what}"


def _increments(lh: Lakehouse, columns: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Return the window aggregates among `columns` with their entity keys (as the gate)."""
    from hortus.monitoring._monitor_base import _project
    from hortus.monitoring.drift import increments_for

    return increments_for(_project(lh), columns)


@dataclass
class _Evaluation:
    """What the rebuilt hold-out (or, failing that, the gate's record) says about a version."""

    evaluation: dict[str, Any] = field(default_factory=dict)
    recomputed: dict[str, Any] | None = None
    segments: pl.DataFrame | None = None
    segment_check: dict[str, Any] | None = None
    fairness: pl.DataFrame | None = None
    fair_checks: list[dict[str, Any]] = field(default_factory=list)
    fair_source: str = "recomputed on the hold-out"
    importance: pl.DataFrame | None = None
    drift: dict[str, Any] | None = None
    drift_table: pl.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def _evaluate(
    lh: Lakehouse,
    table: str,
    version: int,
    snapshot: pl.DataFrame,
    spec: ModelSpec,
    pipeline: Any,
    config: GateConfig,
    stored_importance: pl.DataFrame | None,
) -> _Evaluation:
    """Rebuild the hold-out from the training snapshot and evaluate the verified model on it."""
    ev = _Evaluation()
    train, test, cutoff = time_split(snapshot, spec)
    scores = model_outputs(pipeline, test, spec)
    ev.recomputed = evaluate(pipeline, test, spec)
    first, last = _time_range(test, spec.time)
    if spec.task in ("binary", "ranking"):
        target = {
            "positives": int(test[spec.target].sum()),
            "base_rate": float(test[spec.target].mean()) if test.height else None,
        }
    elif spec.task == "multiclass":
        counts = test[spec.target].cast(pl.String).value_counts(sort=True)
        target = {"class_counts": dict(counts.iter_rows())}
    else:
        target = {"mean_target": float(test[spec.target].mean()) if test.height else None}
    ev.evaluation = {
        "table": table,
        "version": version,
        "split": "time" if spec.time else f"seeded random (seed {spec.seed})",
        "cutoff": cutoff,
        "train_rows": train.height,
        "train_from": _time_range(train, spec.time)[0],
        "holdout_rows": test.height,
        "holdout_from": first,
        "holdout_to": last,
        "task": spec.task,
    } | target
    seg_cols = spec.segments if config.model.segments is None else config.model.segments
    if seg_cols:
        result = segment_metrics_ci(
            None, test, spec, seg_cols, scores=scores, **config.model.segment_metrics
        )
        ev.segments = result.table
        ev.segment_check = {k: v for k, v in result.to_dict().items() if k != "table"}
    sensitive = _sensitive(lh, table, test, config)
    attributes = sensitive or [c for c in spec.segments if c in test.columns]
    if not sensitive and attributes:
        ev.notes.append(
            f"no sensitive attribute declared for {table}: fairness shown across the "
            f"segments {attributes}"
        )
    ev.fairness, ev.fair_checks = _fairness(scores, test, spec, attributes, config)
    given = None
    if stored_importance is not None:
        given = stored_importance.select("feature", "importance_mean", "importance_std")
        ev.notes.append(
            "permutation importance as measured by the train stage for this artifact "
            "(same sha256); shares and proxies computed on the hold-out"
        )
    ev.importance = importance_check(
        pipeline, test, spec, sensitive=sensitive, proxies=config.model.proxies,
        importance=given, **config.model.importance,
    ).table  # fmt: skip
    ev.drift, ev.drift_table, how = _drift(
        lh, table, version, snapshot, train, test, cutoff, spec, config
    )
    ev.notes.append(f"drift since training: {how}")
    return ev
