"""hortus maintain: compaction and checkpoints of operations tables, retention with receipts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from deltalake import DeltaTable

from hortus.errors import ContractError
from hortus.governance.audit import AuditLog, AuditRecord
from hortus.lakehouse import maintain as mt
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.contracts import Contract, with_retention
from hortus.lakehouse.tables import Lakehouse

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
LOG = "ops.prediction_log"


def log_rows(n: int, start: datetime, step: timedelta, batch: str) -> pl.DataFrame:
    times = [start + i * step for i in range(n)]
    return pl.DataFrame(
        {
            "batch_id": [batch] * n,
            "model_name": ["churn"] * n,
            "model_version": [1] * n,
            "request": [json.dumps({"user_id": f"u{i}"}) for i in range(n)],
            "features": [None] * n,
            "score": [0.5] * n,
            "rank": [1] * n,
            "as_of": times,
            "logged_at": times,
            "prediction": [None] * n,
            "caller": [None] * n,
            "latency_ms": [None] * n,
        },
        schema_overrides={
            "as_of": pl.Datetime("us", "UTC"),
            "logged_at": pl.Datetime("us", "UTC"),
            "features": pl.String,
            "prediction": pl.String,
            "caller": pl.String,
            "latency_ms": pl.Float64,
        },  # fmt: skip
    )


@pytest.mark.parametrize("commits", [120, pytest.param(300, marks=pytest.mark.slow)])
def test_audit_compaction_keeps_chain_and_append_reads_the_tail(
    lakehouse: Lakehouse, monkeypatch, commits: int
):
    log = lakehouse._audit.log()
    for i in range(commits):  # small audit commits (past deltalake's automatic checkpoint)
        log.append(AuditRecord("pipeline", "read", f"t{i}", policy_version="p1"))
    path = lakehouse.path("ops.audit_log")
    old_version = DeltaTable(str(path)).version()
    before = DeltaTable(str(path)).get_add_actions().num_rows
    report = mt.maintain(lakehouse, tables=["ops.audit_log"])
    row = next(t for t in report.tables if t.table == "ops.audit_log")
    assert row.compacted and row.compacted["files_removed"] >= commits
    dt = DeltaTable(str(path))
    assert dt.get_add_actions().num_rows < before
    assert dt.version() - mt._last_checkpoint(path) <= 1  # checkpointed (+ maintain's record)
    fresh = AuditLog(path, log.key)
    assert fresh.verify().ok
    # an old version (what a receipt could name) still opens after compaction and vacuum
    assert DeltaTable(str(path), version=old_version).to_pyarrow_table().num_rows >= commits

    # a new process's first append opens the one file that holds the head, not every file
    def full_read(*a, **k):
        raise AssertionError("append read every file of the log")

    monkeypatch.setattr(AuditLog, "_columns", full_read)
    fresh.append(AuditRecord("pipeline", "read", "after", policy_version="p1"))
    assert fresh.tail_files_read == 1
    monkeypatch.undo()
    assert AuditLog(path, log.key).verify().ok


def test_retention_deletes_old_rows_and_reports(lakehouse: Lakehouse, monkeypatch):
    monkeypatch.setattr(mt, "receipt_versions", lambda lh: {})
    lakehouse.write(LOG, log_rows(10, NOW - timedelta(days=200), timedelta(days=10), "old"))
    lakehouse.write(LOG, log_rows(5, NOW - timedelta(days=5), timedelta(days=1), "new"))
    assert lakehouse.catalog.get(LOG).retention.days == 90  # the plant shop's declaration
    # days 200..110 are past 90; 5 recent rows stay
    dry = mt.maintain(lakehouse, tables=[LOG], now=NOW, dry_run=True)
    version = lakehouse.version(LOG)
    assert dry.tables[0].retention["rows_due"] == 10
    assert lakehouse.version(LOG) == version  # dry run: nothing changed
    assert lakehouse.read(LOG).height == 15
    done = mt.maintain(lakehouse, tables=[LOG], now=NOW)
    ret = done.tables[0].retention
    assert ret["rows_deleted"] == 10 and ret["status"] == "ok"
    assert lakehouse.read(LOG)["batch_id"].unique().to_list() == ["new"]
    assert done.tables[0].vacuumed >= 1  # the files that held the old rows are gone
    status = mt.retention_status(lakehouse, now=NOW).filter(pl.col("table") == LOG)
    assert status["rows_due"][0] == 0 and status["rows"][0] == 5
    audit = lakehouse._audit.log().show().filter(pl.col("object") == LOG)
    assert audit.filter(pl.col("action") == "delete")["detail"].str.contains("retention").any()


def test_retention_shorter_than_a_receipt_needs_is_refused(lakehouse: Lakehouse, monkeypatch):
    lakehouse.write(LOG, log_rows(10, NOW - timedelta(days=200), timedelta(days=10), "old"))
    read = lakehouse.version(LOG)
    lakehouse.write(LOG, log_rows(5, NOW - timedelta(days=5), timedelta(days=1), "new"))
    monkeypatch.setattr(mt, "receipt_versions", lambda lh: {LOG: [("churn@v1", read)]})
    report = mt.maintain(lakehouse, tables=[LOG], now=NOW)
    ret = report.tables[0].retention
    assert ret["status"] == "refused" and ret["rows_deleted"] == 0
    assert "churn@v1" in ret["message"] and f"{LOG}@v{read}" in ret["message"]
    assert "keep_for_receipts: false" in ret["message"]
    assert report.refused and lakehouse.read(LOG).height == 15  # nothing lost
    path = lakehouse.path(LOG)  # the receipt's version still reads
    assert DeltaTable(str(path), version=read).to_pyarrow_table().num_rows == 10

    # the policy allows it: rows go, and the receipt's version is recorded as removed
    contract = lakehouse.catalog.get(LOG)
    lakehouse.catalog._contracts[LOG] = Contract(**{
        **contract.__dict__,
        "retention": mt_retention(contract, keep=False),
    })  # fmt: skip
    report = mt.maintain(lakehouse, tables=[LOG], now=NOW)
    ret = report.tables[0].retention
    assert ret["rows_deleted"] == 10 and ret["receipts_removed"] == [f"churn@v1 ({LOG}@v{read})"]
    assert "removed by retention" in (mt.removed_by_retention(lakehouse, LOG, read) or "")


def mt_retention(contract: Contract, *, keep: bool):
    from dataclasses import replace

    return replace(contract.retention, keep_for_receipts=keep)


def test_retention_declarations_are_checked():
    contracts = {c.full_name: c for c in Catalog.load()}
    with pytest.raises(ContractError, match="positive number"):
        with_retention(dict(contracts), {LOG: {"days": 0, "column": "logged_at"}}, "x.yaml")
    with pytest.raises(ContractError, match="date or datetime column"):
        with_retention(dict(contracts), {LOG: {"days": 9, "column": "score"}}, "x.yaml")
    with pytest.raises(ContractError, match="unknown table"):
        with_retention(dict(contracts), {"ops.nope": {"days": 9, "column": "at"}}, "x.yaml")
    with pytest.raises(ContractError, match="unknown key"):
        with_retention(dict(contracts), {LOG: {"days": 9, "column": "logged_at", "x": 1}}, "x.yaml")


def test_maintain_dry_run_changes_nothing(lakehouse: Lakehouse):
    log = lakehouse._audit.log()
    for i in range(20):
        log.append(AuditRecord("pipeline", "read", f"t{i}", policy_version="p1"))
    path = lakehouse.path("ops.audit_log")
    lakehouse.flush_audit()
    version = DeltaTable(str(path)).version()
    files = sorted(p.name for p in path.iterdir())
    report = mt.maintain(lakehouse, tables=["ops.audit_log"], dry_run=True)
    assert report.tables[0].compacted is not None  # would compact
    # no data file written or removed, no commit
    assert sorted(p.name for p in path.iterdir() if p.suffix == ".parquet") == [
        f for f in files if f.endswith(".parquet")
    ]
    assert DeltaTable(str(path)).version() == version


def test_cli_maintain_dry_run_json_and_report(lakehouse: Lakehouse, capsys):
    from hortus.cli.core import main

    root = lakehouse.paths.root
    log = lakehouse._audit.log()
    for i in range(5):
        log.append(AuditRecord("pipeline", "read", f"t{i}", policy_version="p1"))
    path = lakehouse.path("ops.audit_log")
    version = DeltaTable(str(path)).version()
    assert main(["--root", str(root), "maintain", "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] and any(t["table"] == "ops.audit_log" for t in out["tables"])
    assert main(["--root", str(root), "maintain"]) == 0
    text = capsys.readouterr().out
    assert "ops.audit_log" in text
    assert DeltaTable(str(path)).version() > version
    assert AuditLog(path, log.key).verify().ok


def test_retention_monitor_reports_status_per_table(lakehouse: Lakehouse, monkeypatch):
    from hortus.monitoring import monitors

    monkeypatch.setattr(mt, "receipt_versions", lambda lh: {})
    lakehouse.write(LOG, log_rows(10, NOW - timedelta(days=200), timedelta(days=10), "old"))
    lakehouse.write(LOG, log_rows(5, NOW - timedelta(days=5), timedelta(days=1), "new"))
    rows = monitors.retention(lakehouse, NOW).filter(pl.col("subject") == LOG)
    got = dict(zip(rows["metric"], rows["value"], strict=True))
    assert got["retention_days"] == 90 and got["rows"] == 15
    assert got["rows_past_retention"] == 10 and round(got["oldest_age_days"]) == 200
    assert monitors.flags(rows).height == 1  # rows past retention are a flag
    mt.maintain(lakehouse, tables=[LOG], now=NOW)
    after = monitors.retention(lakehouse, NOW).filter(pl.col("metric") == "rows_past_retention")
    assert after.filter(pl.col("subject") == LOG)["value"][0] == 0


def test_monitor_stage_runs_maintain(lakehouse: Lakehouse):
    from hortus.pipeline import stages

    log = lakehouse._audit.log()
    for i in range(30):
        log.append(AuditRecord("pipeline", "read", f"t{i}", policy_version="p1"))
    out = stages.monitor(lakehouse.paths, {})
    assert out["maintain"]["tables_compacted"] >= 1 and not out["maintain"]["errors"]
    written = lakehouse.read("ops.monitor_metrics")
    assert (
        "retention" in set(written["monitor"]) or not mt.retention_status(lakehouse)["built"].any()
    )


def test_maintain_params_are_checked(tmp_path):
    from hortus.errors import HortusError

    (tmp_path / "params.yaml").write_text("maintain:\n  vacuum_hours: soon\n", encoding="utf-8")
    with pytest.raises(HortusError, match="maintain.vacuum_hours"):
        mt.config_from_params(tmp_path)
    (tmp_path / "params.yaml").write_text("maintain:\n  enabled: false\n", encoding="utf-8")
    assert mt.config_from_params(tmp_path, vacuum_hours=1).vacuum_hours == 1
    assert not mt.config_from_params(tmp_path).enabled


def test_vacuum_keeps_every_version_a_receipt_reads(lakehouse: Lakehouse, monkeypatch):
    recent = NOW - timedelta(days=1)
    lakehouse.write(LOG, log_rows(3, recent, timedelta(hours=1), "a"))
    read = lakehouse.version(LOG)
    lakehouse.write(LOG, log_rows(3, recent, timedelta(hours=1), "b"), mode="overwrite")
    lakehouse.write(LOG, log_rows(3, recent, timedelta(hours=1), "c"), mode="overwrite")
    unread = lakehouse.version(LOG) - 1
    monkeypatch.setattr(mt, "receipt_versions", lambda lh: {LOG: [("churn@v1", read)]})
    config = mt.MaintainConfig(vacuum_hours=0)
    report = mt.maintain(lakehouse, tables=[LOG], now=NOW, config=config)
    assert report.tables[0].vacuumed >= 1  # the unread version's file went
    path = str(lakehouse.path(LOG))
    got = pl.from_arrow(DeltaTable(path, version=read).to_pyarrow_table())
    assert got["batch_id"].unique().to_list() == ["a"]  # the receipt's version still reads
    # and other writers' checkpoints will not delete its commit files after 30 days
    assert DeltaTable(path).metadata().configuration["delta.enableExpiredLogCleanup"] == "false"
    with pytest.raises(Exception):  # noqa: B017 - a version no receipt names may go
        DeltaTable(path, version=unread).to_pyarrow_table()


def test_reading_a_version_removed_by_retention_says_so(lakehouse: Lakehouse, monkeypatch):
    from hortus.errors import HortusError

    lakehouse.write(LOG, log_rows(10, NOW - timedelta(days=200), timedelta(days=10), "old"))
    read = lakehouse.version(LOG)
    lakehouse.write(LOG, log_rows(5, NOW - timedelta(days=5), timedelta(days=1), "new"))
    monkeypatch.setattr(mt, "receipt_versions", lambda lh: {LOG: [("churn@v1", read)]})
    contract = lakehouse.catalog.get(LOG)
    lakehouse.catalog._contracts[LOG] = Contract(
        **{**contract.__dict__, "retention": mt_retention(contract, keep=False)}
    )
    mt.maintain(lakehouse, tables=[LOG], now=NOW)
    with pytest.raises(HortusError, match="removed by retention"):
        lakehouse.read(LOG, version=read)
    # an older version no receipt names, vacuumed by maintain, says that instead
    lakehouse.write(LOG, log_rows(2, NOW, timedelta(hours=1), "x"), mode="overwrite")
    gone = lakehouse.version(LOG) - 1
    monkeypatch.setattr(mt, "receipt_versions", lambda lh: {})
    mt.maintain(lakehouse, tables=[LOG], now=NOW, config=mt.MaintainConfig(vacuum_hours=0))
    with pytest.raises(HortusError, match="vacuumed|removed by retention"):
        lakehouse.read(LOG, version=gone)
