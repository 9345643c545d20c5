"""End to end: a table that misses its freshness SLA raises one alert, which clears when fresh.

Real components only: landing files ingested into Delta tables, `hortus monitor run`
through the command line with params.yaml's alert rules, a JSONL sink and a webhook
served by a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml

from conftest import USERS_HEADER, event, user_row, write_jsonl
from hortus.cli.core import main
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.tables import Lakehouse
from test_alerts import Hook


@pytest.fixture
def landed(project, monkeypatch, capsys):
    """Return a project whose events and users were ingested into silver by the CLI stages."""
    monkeypatch.setenv("HORTUS_ROOT", str(project.root))
    shutil.copy(Path(__file__).resolve().parents[1] / "hortus.yaml", project.root)  # the shop
    write_jsonl(project.data / "events/events-2025-03-01.jsonl", [event(1), event(2)])
    (project.data / "users").mkdir()
    (project.data / "users/users-2025-03-01.csv").write_text(
        USERS_HEADER + "\n" + user_row(1) + "\n", encoding="utf-8"
    )
    (project.root / "params.yaml").write_text(
        yaml.safe_dump({"ingest": {}, "silver": {}}), encoding="utf-8"
    )
    assert main(["ingest"]) == 0 and main(["silver"]) == 0
    capsys.readouterr()
    return project


def _params(project, url: str) -> None:
    """Write params.yaml with the freshness monitor and a stale-table rule to log + webhook."""
    doc = {
        "ingest": {},
        "silver": {},
        "monitor": {"monitors": ["freshness"]},
        "alerts": {
            "sinks": {
                "log": {"type": "jsonl", "path": "reports/alerts.jsonl"},
                "hook": {"type": "webhook", "url": url, "timeout": 2, "retries": 1},
            },
            "rules": [
                {
                    "name": "table-stale",
                    "metric": "stale",
                    "condition": "> 0",
                    "severity": "warning",
                    "sinks": ["log", "hook"],
                }
            ],
        },
    }
    (project.root / "params.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")


def _sla_hours(table: str) -> float:
    return float(Catalog.load().get(table).freshness_sla_hours)


def _backdate_commits(lh: Lakehouse, tables: list[str], hours: float) -> None:
    """Move every Delta commit of `tables` `hours` into the past (as if committed then).

    The commit time lives in the commitInfo action of each `_delta_log/*.json` file;
    it is rewritten there, which is exactly what an old table looks like on disk.
    """
    shift_ms = int(hours * 3_600_000)
    for table in tables:
        for commit in sorted((lh.path(table) / "_delta_log").glob("*.json")):
            actions = [json.loads(x) for x in commit.read_text("utf-8").splitlines() if x]
            for action in actions:
                if "commitInfo" in action:
                    action["commitInfo"]["timestamp"] -= shift_ms
                if "add" in action:
                    action["add"]["modificationTime"] -= shift_ms
            commit.write_text("\n".join(json.dumps(a) for a in actions) + "\n", "utf-8")


def test_a_stale_table_raises_one_alert_until_it_is_fresh_again(landed, capsys):
    """Check stale -> one notification per table (log and webhook), no repeat, then resolved."""
    hook = Hook([200])
    try:
        _params(landed, hook.url)
        # every table was last committed 30 h ago: silver.events (SLA 24 h) is stale and
        # silver.users (SLA 168 h) is not
        assert _sla_hours("silver.events") < 30 < _sla_hours("silver.users")
        lh = Lakehouse(paths=landed, catalog=Catalog.load(), stage="test")
        landed_tables = ["bronze.events", "silver.events", "bronze.users", "silver.users"]
        _backdate_commits(lh, landed_tables, hours=30)
        ages = {t: datetime.now(UTC) - lh.history(t)["timestamp"].max() for t in landed_tables}
        lh.close()
        assert all(timedelta(hours=29.9) < age < timedelta(hours=31) for age in ages.values())
        assert main(["monitor", "run"]) == 1  # flagged: exit 1
        out = capsys.readouterr().out
        assert "FLAG freshness/stale silver.events = 1" in out
        assert "firing table-stale [silver.events]" in out
        stale_hooks = [b for b in hook.bodies if b.get("subject") == "silver.events"]
        assert len(stale_hooks) == 1 and stale_hooks[0]["rule"] == "table-stale"
        assert stale_hooks[0]["status"] == "firing"
        assert not [b for b in hook.bodies if b.get("subject") == "silver.users"]
        log = landed.root / "reports" / "alerts.jsonl"
        lines = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
        assert ("silver.events", "firing") in {(x["subject"], x["status"]) for x in lines}
        sent, logged = len(hook.bodies), len(lines)
        # still stale on the next run: deduplicated, nobody is notified again
        assert main(["monitor", "run"]) == 1
        assert "firing table-stale" not in capsys.readouterr().out.split("alerts:")[1]
        assert len(hook.bodies) == sent
        assert len(log.read_text(encoding="utf-8").splitlines()) == logged
        # a new file lands and silver.events is committed again: the alert resolves
        write_jsonl(
            landed.data / "events/events-2025-03-02.jsonl",
            [event(3, ts="2025-03-02T08:00:00.000000Z")],
        )
        assert main(["ingest"]) == 0 and main(["silver"]) == 0
        capsys.readouterr()
        assert main(["monitor", "run"]) == 0
        out = capsys.readouterr().out
        assert "alerts: 0 firing" in out and "resolved table-stale [silver.events]" in out
        lh = Lakehouse(paths=landed, catalog=Catalog.load(), stage="test")
        alerts = lh.read("ops.alerts").filter(pl.col("subject") == "silver.events")
        lh.close()
        statuses = alerts.sort("updated_at")["status"].to_list()
        assert statuses == ["firing", "firing", "resolved"]  # opened, still open, cleared
    finally:
        hook.close()


def test_freshness_uses_the_time_of_the_last_commit_not_of_the_data(landed, capsys):
    """Check that a table just committed is fresh even though its rows are from 2025."""
    _params(landed, "http://127.0.0.1:9/unused")
    assert main(["monitor", "run", "--no-alerts"]) == 0
    assert "FLAG" not in capsys.readouterr().out
