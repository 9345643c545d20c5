"""Batch monitors and the pipeline run log (hortus.monitoring), `hortus monitor run`."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from conftest import TEST_KEY, event, write_jsonl
from hortus.cli.core import main
from hortus.domains.plantshop.kpis import daily_kpis
from hortus.governance.access import AccessDenied
from hortus.lakehouse import silver
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.ingest import ingest
from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring import monitors
from hortus.monitoring.runlog import RUN_SCHEMA, RUNS_TABLE, read_runs, record_run


def _metric(df: pl.DataFrame, metric: str, subject: str | None = None) -> pl.DataFrame:
    out = df.filter(pl.col("metric") == metric)
    return out if subject is None else out.filter(pl.col("subject") == subject)


def _value(df: pl.DataFrame, metric: str, subject: str) -> float:
    rows = _metric(df, metric, subject)
    assert rows.height == 1, f"{metric} {subject}: {rows}"
    return rows["value"][0]


def test_freshness_flags_table_older_than_its_sla_only(shop):
    """Check that freshness flags tables older than their SLA and not tables within it."""
    commits = monitors.last_commits(shop)
    at = commits["last_commit"].max() + timedelta(hours=36)
    m = monitors.freshness(shop, at)
    stale = _metric(m, "stale")
    slas = _metric(m, "sla_hours").select("subject", pl.col("value").alias("sla"))
    joined = stale.join(slas, on="subject")
    short = joined.filter(pl.col("sla") < 36)
    long = joined.filter(pl.col("sla") > 40)
    assert short.height and long.height, joined
    assert short["value"].to_list() == [1.0] * short.height
    assert long["value"].to_list() == [0.0] * long.height
    assert _value(m, "age_hours", short["subject"][0]) == pytest.approx(36, abs=0.05)


def test_data_quality_counts_match_silver_reconcile(project, lakehouse):
    """Check that batch counts and quarantine rates match silver.reconcile and nothing is lost."""
    options = silver.SilverOptions(key=TEST_KEY.encode())
    write_jsonl(project.data / "events/events-2025-03-01.jsonl", [event(1), event(2), "{oops"])
    ingest(project.data, lakehouse)
    silver.build(lakehouse, options)
    later = "2025-03-02T01:00:00.000000Z"
    write_jsonl(
        project.data / "events/events-2025-03-02.jsonl",
        [event(2, ts=later), event(3, ts=later, plant_id=None)],  # 2 is a duplicate
    )
    second = ingest(project.data, lakehouse).batch_id
    silver.build(lakehouse, options)
    m = monitors.data_quality(lakehouse, datetime.now(UTC), all_batches=True)
    totals = (
        m.filter(pl.col("metric").str.starts_with("rows_"))
        .group_by("subject", "metric")
        .agg(pl.col("value").sum())
        .pivot("metric", index="subject", values="value")
    )
    expected = pl.DataFrame(silver.reconcile(lakehouse)).filter(pl.col("landed") > 0)
    both = expected.join(totals, left_on="table", right_on="subject")
    assert both.height == expected.height == 1
    assert both.select("rows_landed", "rows_accepted", "rows_quarantined").row(0) == (5, 3, 2)
    assert both.select("landed", "accepted", "quarantined").row(0) == (5, 3, 2)
    assert (both["rows_unaccounted"] == 0).all()
    latest = monitors.data_quality(lakehouse, datetime.now(UTC))
    rate = _metric(latest, "quarantine_rate", "silver.events")
    assert rate["value"].to_list() == [0.5] and rate["batch_id"].to_list() == [second]
    assert _value(latest, "null_rate", "silver.events.plant_id") == 1.0  # the one accepted row
    assert _value(latest, "null_rate", "silver.events.event_id") == 0.0
    violations = _metric(latest, "contract_violations", "silver.events")
    assert violations.filter(pl.col("labels") == '{"rule":"*"}')["value"].to_list() == [0.0]


def test_record_run_writes_ok_and_failed_rows(lakehouse):
    """Check that record_run records ok and failed runs (error re-raised, kept in the row)."""
    with record_run(lakehouse, "kpis", rows_in=10, git_commit="abc123") as run:
        time.sleep(0.02)
        run.rows_out = 4
    with pytest.raises(ValueError, match="boom"), record_run(lakehouse, "train", rows_in=3):
        raise ValueError("boom at row 3")
    runs = read_runs(lakehouse).sort("started_at")
    assert runs.schema == RUN_SCHEMA
    ok, failed = runs.row(0, named=True), runs.row(1, named=True)
    assert (ok["stage"], ok["status"], ok["rows_in"], ok["rows_out"]) == ("kpis", "ok", 10, 4)
    assert ok["error"] is None and ok["git_commit"] == "abc123"
    assert ok["duration_s"] >= 0.02 and ok["peak_memory_mb"] > 10
    assert (failed["stage"], failed["status"]) == ("train", "failed")
    assert failed["error"] == "ValueError: boom at row 3"
    assert failed["finished_at"] >= failed["started_at"]
    health = monitors.pipeline_health(lakehouse, datetime.now(UTC))
    assert _value(health, "failed_runs", "train") == 1
    assert _value(health, "last_failed", "train") == 1
    assert _value(health, "failed_runs", "kpis") == 0
    assert "boom" in json.loads(_metric(health, "runs", "train")["labels"][0])["last_error"]


def _runs(stage: str, peaks: list[float], start: datetime) -> pl.DataFrame:
    n = len(peaks)
    return pl.DataFrame(
        {
            "run_id": [f"{stage}{i}" for i in range(n)],
            "stage": [stage] * n,
            "status": ["ok"] * n,
            "started_at": [start + timedelta(hours=i) for i in range(n)],
            "finished_at": [start + timedelta(hours=i, minutes=1) for i in range(n)],
            "duration_s": [60.0] * n,
            "rows_in": [100] * n,
            "rows_out": [100] * n,
            "peak_memory_mb": peaks,
            "error": [None] * n,
            "git_commit": ["abc"] * n,
        },
        schema=RUN_SCHEMA,
    )


def test_memory_regression_flags_run_three_times_the_median(lakehouse):
    """Check that a run at 3x the median of its stage's previous runs is flagged, others not."""
    start = datetime(2025, 3, 1, tzinfo=UTC)
    runs = pl.concat(
        [
            _runs("train", [100.0, 500.0, 110.0, 90.0, 100.0, 100.0, 300.0], start),
            _runs("silver", [200.0, 210.0, 190.0, 230.0], start),
        ]
    )
    lakehouse.write(RUNS_TABLE, runs, mode="append")
    m = monitors.memory_regression(lakehouse, start + timedelta(days=1), window=5, threshold=2.0)
    # previous five train runs: 500, 110, 90, 100, 100 -> median 100
    assert _value(m, "memory_ratio", "train") == pytest.approx(3.0)
    assert _value(m, "memory_regression", "train") == 1
    assert _value(m, "memory_regression", "silver") == 0
    assert _value(m, "peak_memory_mb", "silver") == 230
    # as of before the 3x run, train was not regressing
    earlier = monitors.memory_regression_frame(runs, start + timedelta(hours=5, minutes=30))
    assert _value(earlier, "memory_regression", "train") == 0


def test_staleness_score_increases_with_newer_data_and_drift():
    """Check that the staleness score grows with newer data, then drift, and stays in [0, 1]."""
    rng = np.random.default_rng(7)
    t0 = datetime(2025, 3, 1, tzinfo=UTC)

    def rows(n: int, start: datetime, shift: float) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "price": rng.normal(20 + shift, 5, n),
                "region": rng.choice(["N", "S"] if shift == 0 else ["N", "E"], n),
                "ts": [start + timedelta(minutes=i) for i in range(n)],
            }
        )

    training = rows(2000, t0, 0.0)
    later = t0 + timedelta(days=10)
    same = pl.concat([training, rows(2000, later, 0.0)])
    drifted = pl.concat([training, rows(2000, later, 15.0)])
    features = ["price", "region"]
    scores = []
    for latest in (training, same, drifted):
        got = monitors.staleness_inputs(training, latest, features=features, time="ts")
        scores.append(monitors.staleness_score(5.0, got["drift_share"], got["newer_data"]))
    inputs = monitors.staleness_inputs(training, drifted, features=features, time="ts")
    assert inputs["drift_share"] == 1.0 and inputs["newer_rows"] == 2000
    assert 0.0 <= scores[0] < scores[1] < scores[2] <= 1.0
    assert monitors.staleness_score(10, 0, False) < monitors.staleness_score(20, 0, False)
    with pytest.raises(monitors.MonitorError, match="drift_share must be in"):
        monitors.staleness_score(1, 1.5, False)
    with pytest.raises(monitors.MonitorError, match="lack column"):
        monitors.staleness_inputs(training, same, features=["nope"], time="ts")


def test_kpi_out_of_range_is_flagged(shop, lakehouse):
    """Check that a KPI outside its expected range is flagged and one inside is not."""
    kpis = daily_kpis(shop.scan("silver.events"), shop.scan("silver.users")).collect()
    lakehouse.write("gold.kpi_daily", kpis, mode="overwrite")
    last = kpis.filter(pl.col("region") == "ALL").sort("date").row(-1, named=True)
    ranges = {
        "conversion_rate": [last["conversion_rate"] + 0.05, 1.0],
        "sessions": [0, last["sessions"] + 1],
    }
    m = monitors.kpi_ranges(lakehouse, datetime.now(UTC), ranges, where={"region": "ALL"})
    assert _value(m, "out_of_range", "gold.kpi_daily.conversion_rate") == 1
    assert _value(m, "out_of_range", "gold.kpi_daily.sessions") == 0
    assert _value(m, "value", "gold.kpi_daily.sessions") == last["sessions"]
    with pytest.raises(monitors.MonitorError, match="'revenu'.*no such column"):
        monitors.kpi_ranges_frame(kpis, {"revenu": [0, 1]}, datetime.now(UTC))
    with pytest.raises(monitors.MonitorError, match="no column 'segment'"):
        monitors.kpi_ranges_frame(kpis, ranges, datetime.now(UTC), where={"segment": "ALL"})


def test_denied_attempts_are_counted_by_user_and_table(lakehouse):
    """Check that denied reads in the audit log are counted per table and user."""
    stranger = Lakehouse(paths=lakehouse.paths, catalog=Catalog.load(), user="mallory")
    analyst = Lakehouse(paths=lakehouse.paths, catalog=Catalog.load(), user="alex")
    for _ in range(2):
        with pytest.raises(AccessDenied):
            stranger.read("silver.events")
    with pytest.raises(AccessDenied):
        analyst.read("bronze.users")
    m = monitors.denied_access(lakehouse, datetime.now(UTC) + timedelta(seconds=1))
    by = m.with_columns(pl.col("labels").str.json_path_match("$.user").alias("user")).select(
        "subject", "user", "value"
    )
    assert sorted(by.rows()) == [("bronze.users", "alex", 1.0), ("silver.events", "mallory", 2.0)]
    later = monitors.denied_access(lakehouse, datetime.now(UTC) + timedelta(days=2))
    assert later.height == 0  # outside the 24-hour window


def test_monitor_run_cli_writes_metrics_and_flags(lakehouse, capsys):
    """Check that `hortus monitor run --json` appends metrics and exits 1 on flagged rows."""
    with pytest.raises(RuntimeError), record_run(lakehouse, "score"):
        raise RuntimeError("scoring failed")
    root = str(lakehouse.paths.root)
    assert main(["--root", root, "monitor", "run", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["written_version"] is not None and out["rows"] > 0
    flagged = {(f["monitor"], f["metric"], f["subject"]) for f in out["flagged"]}
    assert ("pipeline", "failed_runs", "score") in flagged
    written = lakehouse.read(monitors.METRICS_TABLE)
    assert written.height == out["rows"]
    assert set(written["monitor"]) >= {"pipeline", "memory", "freshness"}
    assert main(["--root", root, "monitor", "run", "--no-write", "--model", "nope"]) == 2
    assert "no model 'nope'" in capsys.readouterr().err
    (lakehouse.paths.root / "params.yaml").write_text("monitor:\n  kpi_rangez: {}\n")
    assert main(["--root", root, "monitor", "run"]) == 2
    assert "unknown key(s) kpi_rangez" in capsys.readouterr().err


@pytest.mark.parametrize("newer", ["appended", "rebuilt"])
def test_champion_staleness_reports_drift_per_feature(lakehouse, tmp_path, newer):
    """Check that a shifted feature after the champion's training rows is flagged, alone."""
    from hortus.models.registry import Registry
    from test_registry import SIGNATURE, _artifact, _receipt, acting_as, approve, pass_gate

    rng = np.random.default_rng(11)
    n = 4000
    start = datetime(2025, 3, 1, tzinfo=UTC)

    def rows(first_minute: int, shift: float) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "ts": pl.Series(
                    [start + timedelta(minutes=first_minute + i) for i in range(n)],
                    dtype=pl.Datetime("us", "UTC"),
                ),
                "spend": rng.normal(10.0 + shift, 2.0, n),
                "region": rng.choice(["DACH", "UKI", "FR"], n),
                "label": rng.integers(0, 2, n),
            }
        )

    lakehouse.write("gold.training_set", rows(0, 0.0), mode="overwrite", inputs={})
    trained_on = lakehouse.version("gold.training_set")
    reg = acting_as(Registry(lakehouse, "recommender"), "mia")
    spec = {"target": "label", "features": ["spend", "region"], "time": "ts"}
    path, sha = _artifact(tmp_path / "build", 1)
    mv = reg.register(
        path,
        sha256=sha,
        signature=SIGNATURE,
        metrics={"roc_auc": 0.7},
        receipt=_receipt(
            1,
            tables_read={"gold.training_set": trained_on},
            content_hashes={"gold.training_set": lakehouse.content_hash("gold.training_set")},
        ),
        spec=spec,
    )
    pass_gate(reg, mv.version, tmp_path / "gates")
    approve(reg, mv.version)
    reg.promote(mv.version, reason="test champion")
    # newer rows arrive: spend moved by 1.5 standard deviations, region did not change
    if newer == "appended":
        lakehouse.write("gold.training_set", rows(n, 3.0), mode="append", inputs={})
    else:  # `dvc repro` rebuilt the table from more landing days: its history starts again
        again = pl.concat([lakehouse.read("gold.training_set"), rows(n, 3.0)])
        shutil.rmtree(lakehouse.path("gold.training_set"))
        lakehouse.write("gold.training_set", again, mode="overwrite", inputs={})
        assert lakehouse.version("gold.training_set") == 0
    m = monitors.model_staleness(lakehouse, datetime.now(UTC))
    drift = m.filter(pl.col("monitor") == "feature_drift")
    flags = dict(_metric(drift, "feature_drifted").select("subject", "value").iter_rows())
    scores = dict(_metric(drift, "drift_score").select("subject", "value").iter_rows())
    assert flags == {"spend": 1.0, "region": 0.0}
    assert scores["spend"] >= 1.0 > scores["region"]
    assert _value(m, "drift_share", "recommender") == 0.5
    assert _value(m, "newer_rows", "recommender") == n
    assert "feature_drifted" in monitors.FLAG_METRICS
    labels = json.loads(_metric(drift, "drift_score", "spend")["labels"][0])
    assert labels["version"] == str(mv.version) and labels["statistic"]
    found = json.loads(_metric(m, "drift_share", "recommender")["labels"][0])
    assert found["training_snapshot"] == {"appended": "version", "rebuilt": "rows"}[newer]


def test_data_quality_as_a_masked_reader_reports_no_false_violations(project, lakehouse):
    """Check that masked columns (tokens for mia) are not checked against their rules."""
    from conftest import USERS_HEADER, user_row

    (project.data / "users").mkdir()
    (project.data / "users/users-2025-03-01.csv").write_text(
        "\n".join([USERS_HEADER, user_row(1), user_row(2)]) + "\n", encoding="utf-8"
    )
    ingest(project.data, lakehouse)
    silver.build(lakehouse, silver.SilverOptions(key=TEST_KEY.encode()))
    mia = Lakehouse(paths=project, catalog=Catalog.load(), stage="test", user="mia")
    assert "region" in mia.masked_columns("silver.users")  # mia reads region as a token
    at = datetime.now(UTC)
    for reader in (lakehouse, mia):
        m = monitors.data_quality(reader, at)
        assert _value(m, "contract_violations", "silver.users") == 0, reader.user


TWO_MODELS_CONTRACTS = """
version: 1
domain: lending
tables:
  loans:
    layer: gold
    owner: credit
    primary_key: [loan_id]
    columns:
      loan_id: {type: string, nullable: false}
      applied_at: {type: datetime, nullable: false}
      income: {type: float, nullable: true}
      channel: {type: string, nullable: true}
      approved: {type: int, nullable: true}
  houses:
    layer: gold
    owner: pricing
    primary_key: [house_id]
    columns:
      house_id: {type: string, nullable: false}
      rooms: {type: float, nullable: true}
      price: {type: float, nullable: true}
"""


def test_staleness_runs_for_every_registered_model_on_its_own_table(tmp_path):
    """Check that two champions are measured, each against its own training table.

    `approval` is declared in hortus.yaml (table gold.loans, time applied_at);
    `pricing` is only registered: its table comes from its receipt, and without a
    time column the newer rows are the rows its table gained since training.
    """
    import yaml

    from conftest import with_policy
    from hortus.config import Paths
    from hortus.models.registry import Registry, model_names
    from test_registry import SIGNATURE, _artifact, _receipt, acting_as, approve, pass_gate

    (tmp_path / "contracts.yaml").write_text(TWO_MODELS_CONTRACTS, encoding="utf-8")
    model = {
        "task": "binary",
        "table": "gold.loans",
        "target": "approved",
        "features": ["income", "channel"],
        "time": "applied_at",
        "ids": ["loan_id"],
    }
    doc = {"name": "lending", "contracts": "contracts.yaml", "models": {"approval": model}}
    (tmp_path / "hortus.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with_policy(tmp_path)
    paths = Paths.at(tmp_path)
    lh = Lakehouse(paths=paths, catalog=Catalog.load(root=tmp_path), stage="test")
    rng = np.random.default_rng(3)
    n = 3000
    start = datetime(2025, 3, 1, tzinfo=UTC)

    def loans(first: int, shift: float) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "loan_id": [f"l{first + i}" for i in range(n)],
                "applied_at": pl.Series(
                    [start + timedelta(minutes=first + i) for i in range(n)],
                    dtype=pl.Datetime("us", "UTC"),
                ),
                "income": rng.normal(50.0 + shift, 5.0, n),
                "channel": rng.choice(["web", "branch"], n),
                "approved": rng.integers(0, 2, n),
            }
        )

    def houses(first: int, shift: float) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "house_id": [f"h{first + i}" for i in range(n)],
                "rooms": rng.normal(4.0 + shift, 1.0, n),
                "price": rng.normal(300.0, 50.0, n),
            }
        )

    champions = {}
    for name, table, rows, spec in (
        ("approval", "gold.loans", loans(0, 0.0),
         {"task": "binary", "target": "approved", "features": ["income", "channel"],
          "time": "applied_at"}),
        ("pricing", "gold.houses", houses(0, 0.0),
         {"task": "regression", "target": "price", "features": ["rooms"], "time": None}),
    ):  # fmt: skip
        lh.write(table, rows, mode="overwrite", inputs={})
        reg = acting_as(Registry(lh, name), "mia")
        path, sha = _artifact(tmp_path / "build" / name, 1)
        mv = reg.register(
            path,
            sha256=sha,
            signature=SIGNATURE,
            metrics={"roc_auc": 0.7} if name == "approval" else {"rmse": 40.0},
            receipt=_receipt(
                1,
                tables_read={table: lh.version(table)},
                content_hashes={table: lh.content_hash(table)},
            ),
            spec=spec,
        )
        pass_gate(reg, mv.version, tmp_path / "gates")
        approve(reg, mv.version)
        reg.promote(mv.version, reason="test champion")
        champions[name] = mv.version
    assert model_names(lh) == ["approval", "pricing"]
    assert monitors.training_table(lh, "approval") == "gold.loans"  # from hortus.yaml
    receipt = Registry(lh, "pricing").get(1).receipt
    assert monitors.training_table(lh, "pricing", receipt) == "gold.houses"  # from the receipt
    # newer rows: income shifts for the loans, rooms for the houses
    lh.write("gold.loans", loans(n, 15.0), mode="append", inputs={})
    lh.write("gold.houses", houses(n, 3.0), mode="append", inputs={})
    m = monitors.model_staleness(lh, datetime.now(UTC))
    assert set(_metric(m, "staleness_score")["subject"]) == {"approval", "pricing"}
    assert _value(m, "newer_rows", "approval") == n
    assert _value(m, "newer_rows", "pricing") == n
    assert _value(m, "drift_share", "approval") == 0.5  # income drifted, channel did not
    assert _value(m, "drift_share", "pricing") == 1.0
    drift = m.filter(pl.col("monitor") == "feature_drift").with_columns(
        pl.col("labels").str.json_path_match("$.model").alias("model")
    )
    flagged = drift.filter((pl.col("metric") == "feature_drifted") & (pl.col("value") > 0))
    assert sorted(flagged.select("model", "subject").rows()) == [
        ("approval", "income"),
        ("pricing", "rooms"),
    ]
    # one model only, as `hortus monitor run --model approval` asks
    only = monitors.model_staleness(lh, datetime.now(UTC), model="approval")
    assert set(_metric(only, "staleness_score")["subject"]) == {"approval"}
    config = monitors.MonitorConfig.from_dict({"monitors": ["model_staleness"]})
    assert config.model is None
    every = monitors.run_all(lh, config)
    assert set(_metric(every, "staleness_score")["subject"]) == {"approval", "pricing"}
