"""Batch monitors: each measures one aspect of the platform as long-format metric rows.

Every monitor is a function ``(lh, ..., at) -> pl.DataFrame`` returning rows of the
`ops.monitor_metrics` schema (``at, monitor, metric, subject, value, labels,
batch_id``); `write_metrics` appends them, `run_all` runs every monitor with one
`MonitorConfig`.  The computations that need no table live in pure ``*_frame`` /
`staleness_score` functions so they can be checked on small frames.

Monitors and their metrics (subject in brackets):

- ``data_quality`` [silver table, or ``table.column``]: rows_landed, rows_accepted,
  rows_quarantined, rows_unaccounted, quarantine_rate per ingest batch; null_rate
  per column and contract_violations (total and per rule) of the latest batch.
- ``freshness`` [table]: age_hours since the last Delta commit, sla_hours and
  stale (0/1) for tables whose contract sets ``freshness_sla_hours``.
- ``pipeline`` [stage]: runs, failed_runs, last_failed (0/1), last_duration_s,
  max_duration_s over a window of ops.pipeline_runs.
- ``memory`` [stage]: peak_memory_mb of the latest run, memory_ratio to the median
  of the previous runs, memory_regression (0/1).
- ``model_staleness`` [model name]: age_days, drift_share, newer_data (0/1),
  newer_rows, staleness_score (see `staleness_score`), for the champion of every
  registered model (or of the configured one).  Its training table is the model's
  `table` in the project definition (`hortus.yaml`), else the table its receipt read.
- ``feature_drift`` [feature of a champion]: drift_score (the gating statistic
  over its threshold; >= 1 is drift) and feature_drifted (0/1), with the model,
  statistic, value, threshold and p-value as labels; measured in the same comparison
  as the staleness drift (champion's training rows against the rows after them).
- ``kpi`` [``<kpi table>.<kpi>``]: value and out_of_range (0/1) per expected range of
  the project's KPI table (`kpis.table` of the project definition).
- ``access`` [table or object]: denied_attempts per user (label) in a window.

Metric rows are flags when the metric is one of `FLAG_METRICS` and the value is > 0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from hortus.errors import HortusError
from hortus.governance.access import Policy
from hortus.governance.audit import AuditLog, default_path
from hortus.lakehouse.contracts import check_frame
from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring.drift import P_VALUE_TESTS, DriftConfig, compare
from hortus.monitoring.runlog import RUNS_TABLE, read_runs
from hortus.params import refuse_unknown_keys

METRICS_TABLE = "ops.monitor_metrics"
QUARANTINE = "quarantine.rows"
METRIC_SCHEMA = pl.Schema(
    {
        "at": pl.Datetime("us", "UTC"),
        "monitor": pl.String,
        "metric": pl.String,
        "subject": pl.String,
        "value": pl.Float64,
        "labels": pl.String,
        "batch_id": pl.String,
    }
)
#: metrics whose positive value means something needs attention
FLAG_METRICS = (
    "rows_unaccounted",
    "contract_violations",
    "stale",
    "failed_runs",
    "last_failed",
    "memory_regression",
    "out_of_range",
    "denied_attempts",
    "feature_drifted",
)
_META_COLUMNS = ("_source_file", "_line", "_batch_id", "_file_date", "_ingested_at")


class MonitorError(HortusError):
    """A monitor's input or configuration is wrong (names the table, column or key)."""


# ------------------------------------------------------------------- helpers
def _utc(at: datetime) -> datetime:
    """Return `at` as an aware UTC datetime (naive values are taken as UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def empty_metrics() -> pl.DataFrame:
    """Return an empty frame of the ops.monitor_metrics schema."""
    return pl.DataFrame(schema=METRIC_SCHEMA)


def _long(
    df: pl.DataFrame,
    *,
    monitor: str,
    at: datetime,
    subject: pl.Expr,
    values: Sequence[str],
    labels: Sequence[str] = (),
    batch: str | None = None,
) -> pl.DataFrame:
    """Turn a wide frame (one row per subject) into metric rows, one per value column."""
    if df.height == 0 or not values:
        return empty_metrics()
    label_expr = (
        pl.struct([pl.col(c).cast(pl.String) for c in labels]).struct.json_encode()
        if labels
        else pl.lit("{}")
    )
    wide = df.select(
        subject.cast(pl.String).alias("subject"),
        label_expr.alias("labels"),
        (pl.col(batch).cast(pl.String) if batch else pl.lit(None, pl.String)).alias("batch_id"),
        *[pl.col(v).cast(pl.Float64) for v in values],
    )
    return (
        wide.unpivot(
            index=["subject", "labels", "batch_id"],
            on=list(values),
            variable_name="metric",
            value_name="_value",  # a value column may itself be called "value"
        )
        .rename({"_value": "value"})
        .drop_nulls("value")
        .with_columns(pl.lit(_utc(at)).alias("at"), pl.lit(monitor).alias("monitor"))
        .select(list(METRIC_SCHEMA))
        .cast(dict(METRIC_SCHEMA))
    )


def _project(lh: Lakehouse):
    """Return the project definition of the lakehouse's project, or None without one.

    The definition is found as the catalog finds its contracts (`Project.load` of the
    project root, else the project of the working directory); without any, models
    are monitored from their registry entries and receipts alone.
    """
    from hortus.project.definition import Project, ProjectError

    try:
        return Project.load(lh.paths.root)
    except ProjectError:
        return None


def kpi_table(lh: Lakehouse) -> str | None:
    """Return the project's KPI table (`kpis.table` of hortus.yaml), or None without one."""
    project = _project(lh)
    return project.kpis.table if project is not None and project.kpis else None


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


def _can_read(lh: Lakehouse, name: str) -> bool:
    """Return whether this user may read a table (asked of the policy; not audited)."""
    assert isinstance(lh.policy, Policy)
    return lh.exists(name) and lh.policy.decide(lh.user, "read", name).allowed


def write_metrics(lh: Lakehouse, metrics: pl.DataFrame) -> int | None:
    """Append metric rows to ops.monitor_metrics; return the new version (None if empty).

    Refuses a frame whose columns are not the ops.monitor_metrics ones.
    """
    missing = [c for c in METRIC_SCHEMA if c not in metrics.columns]
    if missing:
        raise MonitorError(
            f"metrics for {METRICS_TABLE}: column(s) {', '.join(missing)} missing; "
            f"expected {', '.join(METRIC_SCHEMA)}"
        )
    if metrics.height == 0:
        return None
    frame = metrics.select(list(METRIC_SCHEMA)).cast(dict(METRIC_SCHEMA))
    return lh.write(METRICS_TABLE, frame, mode="append", note="monitor metrics")


def flags(metrics: pl.DataFrame) -> pl.DataFrame:
    """Return the metric rows that need attention (a `FLAG_METRICS` metric with value > 0)."""
    return metrics.filter(pl.col("metric").is_in(FLAG_METRICS) & (pl.col("value") > 0))


# -------------------------------------------------------------- data quality
def data_quality(lh: Lakehouse, at: datetime, *, all_batches: bool = False) -> pl.DataFrame:
    """Measure each landed table's batches: counts, quarantine rate, null rates, violations.

    Batches are ingest batches (bronze ``_batch_id``, carried into silver and
    quarantine); the latest is the one ingested last (``_ingested_at``).  Counts
    come for the latest batch, or for every batch with `all_batches`;
    ``rows_unaccounted = landed - accepted - quarantined`` (0 when nothing was
    lost).  Null rates and contract violations (`hortus.lakehouse.contracts.check_frame`
    against the stored silver contract) are of the latest batch's silver rows.
    Bronze and quarantine are the restricted zone: without read access there are
    no counts and the null rates cover every silver row (batch_id null).  Columns the
    user reads masked are left out of the contract checks (their values are tokens or
    nulls); run it as the pipeline, which sees silver unmasked, for the full checks.
    """
    from hortus.lakehouse.silver import stored_contract

    out = []
    for contract in lh.catalog.landed():
        table = contract.full_name
        if not _can_read(lh, table):
            continue
        bronze = "bronze." + contract.name
        accepted = lh.scan(table).group_by("_batch_id").agg(pl.len().alias("rows_accepted"))
        latest: str | None = None
        if _can_read(lh, bronze):
            landed = (
                lh.scan(bronze)
                .group_by("_batch_id")
                .agg(pl.len().alias("rows_landed"), pl.col("_ingested_at").max().alias("_at"))
            )
            quarantined = (
                lh.scan(QUARANTINE)
                .filter(pl.col("table") == table)
                .group_by(pl.col("batch_id").alias("_batch_id"))
                .agg(pl.len().alias("rows_quarantined"))
                if _can_read(lh, QUARANTINE)
                else pl.LazyFrame(schema={"_batch_id": pl.String, "rows_quarantined": pl.UInt32})
            )
            counts = (
                landed.join(accepted, on="_batch_id", how="left")
                .join(quarantined, on="_batch_id", how="left")
                .with_columns(pl.col("rows_accepted", "rows_quarantined").fill_null(0))
                .with_columns(
                    (pl.col("rows_landed") - pl.col("rows_accepted") - pl.col("rows_quarantined"))
                    .cast(pl.Int64)
                    .alias("rows_unaccounted"),
                    pl.when(pl.col("rows_landed") > 0)
                    .then(pl.col("rows_quarantined") / pl.col("rows_landed"))
                    .alias("quarantine_rate"),
                )
                .sort("_at", "_batch_id")
                .collect()
            )
            if counts.height:
                latest = counts["_batch_id"][-1]
            if not all_batches:
                counts = counts.tail(1)
            out.append(
                _long(
                    counts,
                    monitor="data_quality",
                    at=at,
                    subject=pl.lit(table),
                    values=(
                        "rows_landed",
                        "rows_accepted",
                        "rows_quarantined",
                        "rows_unaccounted",
                        "quarantine_rate",
                    ),
                    batch="_batch_id",
                )
            )
        rows = lh.scan(table)
        if latest is not None:
            rows = rows.filter(pl.col("_batch_id") == latest)
        batch_rows = rows.collect()
        data_cols = [c for c in batch_rows.columns if c not in _META_COLUMNS]
        nulls = batch_rows.select(
            [(pl.col(c).null_count() / pl.len()).alias(c) for c in data_cols]
        ).transpose(include_header=True, header_name="column", column_names=["null_rate"])
        if batch_rows.height:
            out.append(
                _long(
                    nulls.with_columns(pl.lit(latest, pl.String).alias("_b")),
                    monitor="data_quality",
                    at=at,
                    subject=pl.lit(table + ".") + pl.col("column"),
                    values=("null_rate",),
                    batch="_b",
                )
            )
        # a masked column holds tokens or nulls, not values: its rules cannot be checked
        stored = stored_contract(contract)
        masked = set(lh.masked_columns(table))
        checked = replace(stored, columns=tuple(c for c in stored.columns if c.name not in masked))
        found = check_frame(batch_rows.drop(masked & set(batch_rows.columns)), checked)
        by_rule = found.group_by("rule").agg(pl.len().alias("contract_violations")).sort("rule")
        total = pl.DataFrame({"rule": ["*"], "contract_violations": [found.height]})
        out.append(
            _long(
                pl.concat([total, by_rule], how="vertical_relaxed").with_columns(
                    pl.lit(latest, pl.String).alias("_b")
                ),
                monitor="data_quality",
                at=at,
                subject=pl.lit(table),
                values=("contract_violations",),
                labels=("rule",),
                batch="_b",
            )
        )
    return pl.concat([empty_metrics(), *out])


# ----------------------------------------------------------------- freshness
def freshness_frame(last_commits: pl.DataFrame, at: datetime) -> pl.DataFrame:
    """Compute age_hours, sla_hours and stale (0/1) from (table, last_commit, sla_hours).

    A table is stale when its last commit is more than its SLA before `at`; tables
    without an SLA get age_hours only.
    """
    age = (pl.lit(_utc(at)) - pl.col("last_commit")).dt.total_microseconds() / 3.6e9
    wide = last_commits.with_columns(age.alias("age_hours")).with_columns(
        pl.when(pl.col("sla_hours").is_not_null())
        .then((pl.col("age_hours") > pl.col("sla_hours")).cast(pl.Float64))
        .alias("stale"),
        pl.col("last_commit").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("last_commit_at"),
    )
    return _long(
        wide,
        monitor="freshness",
        at=at,
        subject=pl.col("table"),
        values=("age_hours", "sla_hours", "stale"),
        labels=("last_commit_at", "version"),
    )


def last_commits(lh: Lakehouse, tables: Sequence[str] | None = None) -> pl.DataFrame:
    """Return (table, version, last_commit, sla_hours) of every written table this user may read.

    The last commit time comes from the Delta history (`Lakehouse.history`, audited).
    """
    names = list(tables) if tables is not None else [c.full_name for c in lh.catalog]
    rows = []
    for name in names:  # a loop over tables, not rows
        if not _can_read(lh, name):
            continue
        last = lh.history(name).sort("version").tail(1)
        rows.append(
            {
                "table": name,
                "version": int(last["version"][0]),
                "last_commit": last["timestamp"][0],
                "sla_hours": lh.catalog.get(name).freshness_sla_hours,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "table": pl.String,
            "version": pl.Int64,
            "last_commit": pl.Datetime("us", "UTC"),
            "sla_hours": pl.Float64,
        },
    )


def freshness(lh: Lakehouse, at: datetime, *, tables: Sequence[str] | None = None) -> pl.DataFrame:
    """Measure each table's age since its last commit against its freshness SLA."""
    return freshness_frame(last_commits(lh, tables), at)


# ------------------------------------------------------------ pipeline health
def pipeline_health_frame(
    runs: pl.DataFrame, at: datetime, *, window_hours: float = 24.0
) -> pl.DataFrame:
    """Summarise the runs started in the `window_hours` before `at`, per stage.

    Metrics: runs, failed_runs, last_failed (0/1, the latest run's status),
    last_duration_s, max_duration_s; the latest error is a label.
    """
    at = _utc(at)
    recent = runs.filter(
        pl.col("started_at").is_between(at - timedelta(hours=window_hours), at)
    ).sort("stage", "started_at")
    wide = recent.group_by("stage", maintain_order=True).agg(
        pl.len().alias("runs"),
        (pl.col("status") == "failed").sum().alias("failed_runs"),
        (pl.col("status").last() == "failed").cast(pl.Float64).alias("last_failed"),
        pl.col("duration_s").last().alias("last_duration_s"),
        pl.col("duration_s").max().alias("max_duration_s"),
        pl.col("run_id").last().alias("last_run_id"),
        pl.col("error").drop_nulls().last().alias("last_error"),
    )
    return _long(
        wide,
        monitor="pipeline",
        at=at,
        subject=pl.col("stage"),
        values=("runs", "failed_runs", "last_failed", "last_duration_s", "max_duration_s"),
        labels=("last_run_id", "last_error"),
    )


def pipeline_health(lh: Lakehouse, at: datetime, *, window_hours: float = 24.0) -> pl.DataFrame:
    """Report failed runs and durations per stage from ops.pipeline_runs."""
    if not _can_read(lh, RUNS_TABLE):
        return empty_metrics()
    return pipeline_health_frame(read_runs(lh), at, window_hours=window_hours)


# ---------------------------------------------------------- memory regression
def memory_regression_frame(
    runs: pl.DataFrame, at: datetime, *, window: int = 5, threshold: float = 2.0
) -> pl.DataFrame:
    """Compare each stage's latest peak memory with the median of its previous runs.

    ``memory_ratio = peak of the latest run / median peak of the up to `window`
    runs before it``; ``memory_regression`` is 1 when the ratio is at least
    `threshold`.  A stage with a single run gets peak_memory_mb only.  Runs after
    `at` are ignored.
    """
    if window < 1 or threshold <= 0:
        raise MonitorError(
            f"memory regression: window must be >= 1 and threshold > 0, got {window}, {threshold}"
        )
    at = _utc(at)
    ordered = runs.filter(pl.col("started_at") <= at).sort("stage", "started_at")
    previous = pl.col("peak_memory_mb").shift(1)
    wide = (
        ordered.with_columns(
            previous.rolling_median(window_size=window, min_samples=1)
            .over("stage")
            .alias("baseline_mb"),
            pl.int_range(pl.len()).over("stage").clip(upper_bound=window).alias("baseline_runs"),
        )
        .group_by("stage", maintain_order=True)
        .last()
        .with_columns((pl.col("peak_memory_mb") / pl.col("baseline_mb")).alias("memory_ratio"))
        .with_columns(
            pl.when(pl.col("memory_ratio").is_not_null())
            .then((pl.col("memory_ratio") >= threshold).cast(pl.Float64))
            .alias("memory_regression"),
            pl.lit(threshold).alias("threshold"),
        )
    )
    return _long(
        wide,
        monitor="memory",
        at=at,
        subject=pl.col("stage"),
        values=("peak_memory_mb", "memory_ratio", "memory_regression"),
        labels=("run_id", "baseline_mb", "baseline_runs", "threshold"),
    )


def memory_regression(
    lh: Lakehouse, at: datetime, *, window: int = 5, threshold: float = 2.0
) -> pl.DataFrame:
    """Flag stages whose latest peak memory is `threshold` x the median of previous runs."""
    if not _can_read(lh, RUNS_TABLE):
        return empty_metrics()
    return memory_regression_frame(read_runs(lh), at, window=window, threshold=threshold)


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
) -> dict[str, Any]:
    """Return drift_share, newer_rows and newer_data of a model trained on `training`.

    The rows of `latest` whose `time` is after the newest training time are the
    newer data; the share of `features` that drifted (`hortus.monitoring.drift.compare`,
    distribution or null share) is measured between the training rows and them
    (0 when there are none).
    """
    for name, frame in (("training", training), ("latest", latest)):
        missing = [c for c in (*features, time) if c not in frame.columns]
        if missing:
            raise MonitorError(f"staleness: {name} rows lack column(s) {', '.join(missing)}")
    if not features:
        raise MonitorError("staleness: no features given to measure drift on")
    trained_until = training[time].max()
    newer = latest.filter(pl.col(time) > trained_until) if trained_until is not None else latest
    drifted: list[str] = []
    per_feature = None
    if newer.height and training.height:
        report = compare(training.select(features), newer.select(features), config=drift)
        drifted = report.drifted_columns
        per_feature = report.to_frame().filter(
            pl.col("segment").is_null() & pl.col("window_start").is_null()
        )
    return {
        "per_feature": per_feature,
        "drift_share": len(drifted) / len(features),
        "drifted_features": drifted,
        "newer_rows": newer.height,
        "newer_data": newer.height > 0,
        "trained_until": trained_until,
    }


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
    drifted: list[str] = []
    per_feature = None
    if newer_rows and training is not None and training.height:
        report = compare(training.select(features), latest.select(features), config=drift)
        drifted = report.drifted_columns
        per_feature = report.to_frame().filter(
            pl.col("segment").is_null() & pl.col("window_start").is_null()
        )
    return {
        "per_feature": per_feature,
        "drift_share": len(drifted) / len(features),
        "drifted_features": drifted,
        "newer_rows": newer_rows,
        "newer_data": newer_rows > 0,
        "trained_until": None,
    }


def model_staleness(
    lh: Lakehouse,
    at: datetime,
    *,
    model: str | None = None,
    max_age_days: float = 30.0,
    weights: Sequence[float] = (0.3, 0.5, 0.2),
    drift: DriftConfig | None = None,
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
        _champion_staleness(lh, at, name, max_age_days=max_age_days, weights=weights, drift=drift)
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
    columns = [*features, *([time] if time else [])]
    have = set(lh.scan(table).collect_schema().names())
    missing = [c for c in columns if c not in have]
    if missing:
        raise MonitorError(
            f"model {model} v{mv.version}: its training table {table} has no column(s) "
            f"{', '.join(missing)} of its spec"
        )
    latest = lh.read(table, columns=columns)
    training, snapshot = _training_rows(lh, table, mv.receipt, int(version_read), latest, time)
    if time is not None:
        training = training.select(*features, time)
        got = staleness_inputs(training, latest, features=features, time=time, drift=drift)
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


# ---------------------------------------------------------------- business KPIs
def kpi_ranges_frame(
    kpis: pl.DataFrame,
    ranges: Mapping[str, Sequence[float]],
    at: datetime,
    *,
    where: Mapping[str, Any] | None = None,
    days: int = 1,
    table: str = "kpis",
    date: str = "date",
) -> pl.DataFrame:
    """Check the last `days` dates of daily KPIs against expected [min, max].

    Metrics per KPI and date: value and out_of_range (0/1; a null KPI value is out
    of range).  `ranges` maps a KPI column to [min, max] (either may be null);
    `where` keeps the rows whose columns hold the given values (e.g. the overall
    row of a table with one row per day and segment), its columns become labels.
    `table` names the KPI table in messages and subjects (``<table>.<kpi>``),
    `date` its date column.
    """
    where = dict(where or {})
    for col in (date, *where):
        if col not in kpis.columns:
            raise MonitorError(
                f"kpi ranges: no column {col!r} in {table} (columns: {', '.join(kpis.columns)})"
            )
    for kpi, bounds in ranges.items():
        if kpi not in kpis.columns:
            raise MonitorError(
                f"kpi range for {kpi!r}: no such column in {table} "
                f"(columns: {', '.join(kpis.columns)})"
            )
        if len(bounds) != 2:
            raise MonitorError(f"kpi range for {kpi!r}: expected [min, max], got {bounds!r}")
    if not ranges:
        return empty_metrics()
    rows = kpis.filter(*[pl.col(c) == v for c, v in where.items()]) if where else kpis
    dates = rows[date].unique().sort().tail(days)
    rows = rows.filter(pl.col(date).is_in(dates.implode()))
    bounds = pl.DataFrame(
        {
            "kpi": list(ranges),
            "min": [None if b[0] is None else float(b[0]) for b in ranges.values()],
            "max": [None if b[1] is None else float(b[1]) for b in ranges.values()],
        },
        schema={"kpi": pl.String, "min": pl.Float64, "max": pl.Float64},
    )
    keys = [date, *where]
    long = rows.select(*keys, *[pl.col(k).cast(pl.Float64) for k in ranges]).unpivot(
        index=keys, variable_name="kpi"
    )
    wide = long.join(bounds, on="kpi").with_columns(
        (
            pl.col("value").is_null()
            | (pl.col("value") < pl.col("min")).fill_null(False)
            | (pl.col("value") > pl.col("max")).fill_null(False)
        )
        .cast(pl.Float64)
        .alias("out_of_range")
    )
    return _long(
        wide,
        monitor="kpi",
        at=at,
        subject=pl.lit(table + ".") + pl.col("kpi"),
        values=("value", "out_of_range"),
        labels=(*keys, "min", "max"),
    )


def kpi_ranges(
    lh: Lakehouse,
    at: datetime,
    ranges: Mapping[str, Sequence[float]],
    *,
    where: Mapping[str, Any] | None = None,
    days: int = 1,
) -> pl.DataFrame:
    """Flag business KPIs of the project's KPI table outside their expected [min, max] ranges.

    The table is `kpis.table` of the project definition; ranges for a project that
    declares no KPIs are refused (MonitorError naming the key).
    """
    if not ranges:
        return empty_metrics()
    table = kpi_table(lh)
    if table is None:
        raise MonitorError(
            f"monitor kpi_ranges ({', '.join(ranges)}): the project declares no `kpis` table "
            "in hortus.yaml; drop kpi_ranges or declare kpis"
        )
    if not _can_read(lh, table):
        return empty_metrics()
    return kpi_ranges_frame(lh.read(table), ranges, at, where=where, days=days, table=table)


# ------------------------------------------------------------- denied access
def denied_access_frame(
    audit: pl.DataFrame, at: datetime, *, window_hours: float | None = 24.0
) -> pl.DataFrame:
    """Count denied attempts per object and user in the `window_hours` before `at` (None: all)."""
    at = _utc(at)
    denied = audit.filter(
        ((pl.col("outcome") == "denied") | (pl.col("action") == "denied")) & (pl.col("ts") <= at)
    )
    if window_hours is not None:
        denied = denied.filter(pl.col("ts") > at - timedelta(hours=window_hours))
    wide = (
        denied.group_by("object", "user")
        .agg(
            pl.len().alias("denied_attempts"),
            pl.col("action").unique().sort().str.join(",").alias("actions"),
            pl.col("ts").max().dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("last_at"),
        )
        .sort("object", "user")
    )
    return _long(
        wide,
        monitor="access",
        at=at,
        subject=pl.col("object"),
        values=("denied_attempts",),
        labels=("user", "actions", "last_at"),
    )


def denied_access(
    lh: Lakehouse, at: datetime, *, window_hours: float | None = 24.0
) -> pl.DataFrame:
    """Count denied access attempts by table and user from the audit log.

    Reading the audit log needs the read grant on ops.audit_log (audited).
    """
    lh.authorize("read", "ops.audit_log", detail="monitor: denied attempts")
    log = AuditLog.open(default_path(lh.paths), secrets_dir=lh.paths.secrets)
    return denied_access_frame(log.show(denied_only=True), at, window_hours=window_hours)


# ---------------------------------------------------------------------- run all
@dataclass(frozen=True)
class MonitorConfig:
    """Settings of `run_all`; a params.yaml ``monitor`` section maps onto it.

    Examples
    --------
    >>> MonitorConfig.from_dict({"kpi_ranges": {"conversion_rate": [0.01, 0.5]}}).model is None
    True
    """

    #: registered model whose champion is checked for staleness (default: every model)
    model: str | None = None
    #: KPI column of the project's KPI table (hortus.yaml `kpis.table`) -> [min, max]
    kpi_ranges: Mapping[str, Sequence[float]] = field(default_factory=dict)
    #: keep the KPI rows whose columns hold these values (e.g. the overall segment)
    kpi_where: Mapping[str, Any] = field(default_factory=dict)
    kpi_days: int = 1
    #: report counts of every ingest batch, not only the latest
    all_batches: bool = False
    pipeline_window_hours: float = 24.0
    memory_window: int = 5
    memory_threshold: float = 2.0
    staleness_max_age_days: float = 30.0
    staleness_weights: Sequence[float] = (0.3, 0.5, 0.2)
    #: hortus.monitoring.drift.DriftConfig settings for the staleness drift
    drift: Mapping[str, Any] = field(default_factory=dict)
    denied_window_hours: float | None = 24.0
    #: monitors to run (default: all of MONITORS)
    monitors: Sequence[str] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, source: str = "monitor config"):
        """Build a config from a mapping; refuse unknown keys and unknown monitors."""
        data = dict(data or {})
        refuse_unknown_keys(data, (f.name for f in fields(cls)), source=source, error=MonitorError)
        bad = sorted(set(data.get("monitors") or ()) - set(MONITORS))
        if bad:
            raise MonitorError(
                f"{source}: unknown monitor(s) {', '.join(bad)}; known: {', '.join(MONITORS)}"
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise MonitorError(f"{source}: {exc}") from None


MONITORS = (
    "data_quality",
    "freshness",
    "pipeline",
    "memory",
    "model_staleness",
    "kpi",
    "access",
)


def run_all(lh: Lakehouse, config: MonitorConfig, at: datetime | None = None) -> pl.DataFrame:
    """Run every configured monitor at `at` (default now) and return all metric rows.

    Nothing is written; pass the result to `write_metrics`.  Rows of one run share
    `at` and a batch_id ``monitor-<at>`` where the monitor has no batch of its own.
    """
    at = _utc(at or datetime.now(UTC))
    runners = {
        "data_quality": lambda: data_quality(lh, at, all_batches=config.all_batches),
        "freshness": lambda: freshness(lh, at),
        "pipeline": lambda: pipeline_health(lh, at, window_hours=config.pipeline_window_hours),
        "memory": lambda: memory_regression(
            lh, at, window=config.memory_window, threshold=config.memory_threshold
        ),
        "model_staleness": lambda: model_staleness(
            lh,
            at,
            model=config.model,
            max_age_days=config.staleness_max_age_days,
            weights=config.staleness_weights,
            drift=DriftConfig.from_dict(config.drift, source="monitor config drift"),
        ),
        "kpi": lambda: kpi_ranges(
            lh, at, config.kpi_ranges, where=config.kpi_where, days=config.kpi_days
        ),
        "access": lambda: denied_access(lh, at, window_hours=config.denied_window_hours),
    }
    chosen = config.monitors or MONITORS
    frames = [runners[name]() for name in chosen]  # a loop over monitors
    run_id = "monitor-" + at.strftime("%Y%m%dT%H%M%SZ")
    return pl.concat([empty_metrics(), *frames]).with_columns(pl.col("batch_id").fill_null(run_id))


def summary(metrics: pl.DataFrame) -> pl.DataFrame:
    """Return one row per monitor: metric rows, subjects and flagged rows."""
    return (
        metrics.with_columns(
            (pl.col("metric").is_in(FLAG_METRICS) & (pl.col("value") > 0)).alias("_flag")
        )
        .group_by("monitor")
        .agg(
            pl.len().alias("rows"),
            pl.col("subject").n_unique().alias("subjects"),
            pl.col("_flag").sum().alias("flagged"),
        )
        .sort("monitor")
    )


def labels_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return the labels of one metric row as a dict."""
    return json.loads(row["labels"] or "{}")
