"""Data monitors: quality of each landed table's batches, and freshness against its SLA."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

import polars as pl

from hortus.lakehouse.contracts import check_frame
from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring._monitor_base import (
    _can_read,
    _long,
    _utc,
    empty_metrics,
)

QUARANTINE = "quarantine.rows"
_META_COLUMNS = ("_source_file", "_line", "_batch_id", "_file_date", "_ingested_at")


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
