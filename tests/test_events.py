"""Operations events emitted by the code paths that cause them, alerts that resolve, actions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml

from hortus.config import Paths
from hortus.errors import HortusError
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.tables import Lakehouse, pending_commits
from hortus.models.registry import CHAMPION, Registry
from hortus.monitoring import actions, events
from hortus.monitoring.alerts import AlertState, run_alerts
from hortus.monitoring.runlog import record_run
from test_alerts import Hook
from test_four_eyes import gate, register

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def hook() -> Iterator[Hook]:
    """Return a loopback webhook server that answers 200."""
    h = Hook([200])
    yield h
    h.close()


@pytest.fixture(autouse=True)
def _no_actions_in_code() -> Iterator[None]:
    """Start and end every test with no action bound in code and no installed config."""
    actions.clear_registered()
    events.configure(None)
    yield
    actions.clear_registered()
    events.configure(None)


def write_alerts(root: Path, hook: Hook, **extra: object) -> None:
    """Write a params.yaml whose `alerts` section posts event rules to the loopback hook."""
    rule = {"condition": "> 0", "severity": "critical", "sinks": ["hook"]}
    alerts = {
        "sinks": {"hook": {"type": "webhook", "url": hook.url}},
        "rules": [
            rule | {"name": "stage-failed", "metric": "event.stage_failed",
                    "for_events": ["stage_failed"]},
            rule | {"name": "gate-failed", "metric": "event.gate_failed",
                    "for_events": ["gate_failed"]},
            rule | {"name": "action-failed", "metric": "event.action_failed",
                    "for_events": ["action_failed"]},
        ],
    } | extra  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump({"alerts": alerts}))


def read_events(lh: Lakehouse, *types: str) -> pl.DataFrame:
    """Return the ops.events rows of the given types, oldest first."""
    return lh.read("ops.events").filter(pl.col("type").is_in(types)).sort("at")


def test_record_run_emits_stage_failed_and_the_original_error_propagates(
    project: Paths, lakehouse: Lakehouse, hook: Hook
):
    """Check that a raising stage emits stage_failed, alerts at once, and still raises its error."""
    write_alerts(project.root, hook)
    with pytest.raises(ValueError, match="bad silver batch"), record_run(lakehouse, "silver"):
        raise ValueError("bad silver batch")
    failed = read_events(lakehouse, "stage_failed").row(0, named=True)
    assert (failed["subject"], failed["actor"]) == ("silver", "pipeline")
    assert json.loads(failed["detail"])["error"] == "ValueError: bad silver batch"
    assert [(b["rule"], b["subject"], b["status"]) for b in hook.bodies] == [
        ("stage-failed", "silver", "firing")
    ]


def test_stage_failed_alert_resolves_when_the_stage_later_succeeds(
    project: Paths, lakehouse: Lakehouse, hook: Hook
):
    """Check that the next successful run of a stage resolves its stage_failed alert."""
    write_alerts(project.root, hook)
    with pytest.raises(RuntimeError), record_run(lakehouse, "kpis"):
        raise RuntimeError("disk full")
    with record_run(lakehouse, "ingest"):  # another stage's success resolves nothing
        pass
    with record_run(lakehouse, "kpis") as run:
        run.rows_out = 3
    assert [(b["subject"], b["status"]) for b in hook.bodies] == [
        ("kpis", "firing"),
        ("kpis", "resolved"),
    ]
    assert AlertState.load(lakehouse).firing.height == 0
    ok = read_events(lakehouse, "stage_succeeded")
    assert ok["subject"].to_list() == ["ingest", "kpis"]


def test_event_that_cannot_be_emitted_never_hides_the_stage_error(
    project: Paths, lakehouse: Lakehouse, capsys
):
    """Check that a broken alerts section leaves the stage's own exception, with a note."""
    (project.root / "params.yaml").write_text("alerts:\n  rules: [{name: x}]\n")
    with pytest.raises(KeyError) as info, record_run(lakehouse, "silver"):
        raise KeyError("user_id")
    assert any("stage_failed event of silver was not emitted" in n for n in info.value.__notes__)
    assert "stage_failed event of silver was not emitted" in capsys.readouterr().err
    assert lakehouse.read("ops.pipeline_runs")["status"].to_list() == ["failed"]


def test_stage_stays_successful_when_its_events_cannot_be_dispatched(
    project: Paths, lakehouse: Lakehouse, hook: Hook, capsys, monkeypatch
):
    """Check that an unset webhook token warns on stderr but neither fails nor loses the event."""
    monkeypatch.delenv("HOOK_TOKEN", raising=False)
    write_alerts(project.root, hook)
    params = project.root / "params.yaml"
    doc = yaml.safe_load(params.read_text())
    doc["alerts"]["sinks"]["hook"]["headers_from_env"] = {"Authorization": "HOOK_TOKEN"}
    params.write_text(yaml.safe_dump(doc))
    with record_run(lakehouse, "kpis"):
        pass
    assert "stage kpis succeeded, but its events were not dispatched" in capsys.readouterr().err
    assert read_events(lakehouse, "stage_succeeded")["subject"].to_list() == ["kpis"]
    assert lakehouse.read("ops.pipeline_runs")["status"].to_list() == ["ok"]


def test_lakehouse_write_emits_table_committed_for_silver_and_gold_only(
    project: Paths, lakehouse: Lakehouse
):
    """Check that a gold commit records table_committed (version, rows) and ops writes do not."""
    pending_commits()  # forget commits of earlier tests in this process
    frame = pl.DataFrame({"day": [datetime(2026, 3, 1).date()], "orders": [4]})
    v = lakehouse.write("gold.kpi_daily", frame, mode="overwrite")
    with record_run(lakehouse, "kpis"):  # ops.pipeline_runs: bookkeeping, no table_committed
        pass
    committed = read_events(lakehouse, "table_committed")
    assert committed["subject"].to_list() == ["gold.kpi_daily"]
    detail = json.loads(committed["detail"][0])
    assert detail == {"mode": "overwrite", "rows": 1, "stage": "test", "version": v}
    assert pending_commits() == []  # record_run dispatched it when the stage ended
    # the event is written under the grant of the write that caused it, and audited
    other = Lakehouse(paths=project, catalog=Catalog.load(), stage="test", user="sam")
    other.write("gold.training_set", pl.DataFrame({"x": [1.0]}), mode="overwrite")
    assert read_events(lakehouse, "table_committed")["actor"].to_list() == ["pipeline", "sam"]


def test_table_committed_runs_actions_when_the_writing_stage_ends(
    project: Paths, lakehouse: Lakehouse
):
    """Check that actions on table_committed run at the end of the stage that wrote the table."""
    seen: list[str] = []
    actions.register_action("table_committed", lambda lh, e: seen.append(e.subject), name="see")
    pending_commits()
    with record_run(lakehouse, "kpis"):
        lakehouse.write("gold.kpi_daily", pl.DataFrame({"orders": [1]}), mode="overwrite")
        assert seen == []  # the write itself reads no configuration and runs nothing
    assert seen == ["gold.kpi_daily"]
    ok = read_events(lakehouse, "action_succeeded").row(0, named=True)
    assert ok["subject"] == "see:gold.kpi_daily"


def approved(project: Paths, *versions: int) -> Registry:
    """Return mia's registry of `recommender` with these versions registered, gated, approved."""
    catalog = Catalog.load()
    mia = Registry(
        Lakehouse(paths=project, catalog=catalog, stage="cli", user="mia"), "recommender"
    )
    paula = Registry(Lakehouse(paths=project, catalog=catalog, stage="cli", user="paula"),
                     "recommender")  # fmt: skip
    for v in versions:
        register(mia, v)
        paula.approve(v)
        gate(mia, v, passed=True)
    return mia


def test_promote_emits_model_promoted_and_rescore_failure_is_recorded(
    project: Paths, lakehouse: Lakehouse, hook: Hook
):
    """Check that promotion emits model_promoted and runs rescore, recording why it failed."""
    write_alerts(project.root, hook, actions={"model_promoted": ["rescore"]})
    mia = approved(project, 1)
    assert mia.promote(1, reason="first").version == 1  # the promotion stands
    promoted = read_events(lakehouse, "model_promoted").row(0, named=True)
    assert (promoted["subject"], promoted["actor"]) == ("recommender:v1", "mia")
    detail = json.loads(promoted["detail"])
    assert (detail["alias"], detail["version"], detail["previous_version"]) == ("champion", 1, None)
    assert detail["approved_by"] == "paula"
    # this project was never built: `hortus score` fails, and says why, in ops.events
    failed = read_events(lakehouse, "action_failed").row(0, named=True)
    assert failed["subject"] == "rescore:recommender:v1"
    note = json.loads(failed["detail"])["note"]
    assert note.startswith("ActionError: `hortus score --model recommender` exited")
    assert [(b["rule"], b["subject"]) for b in hook.bodies] == [("action-failed", "rescore")]
    assert mia.aliases() == {CHAMPION: 1}


def test_promote_and_rollback_run_the_bound_action_with_the_new_champion(project: Paths):
    """Check that an action bound in code sees each champion move (promote and rollback)."""
    moves: list[tuple[str, int]] = []

    def on_move(lh, event):
        moves.append((event.type, event.detail["version"]))
        return f"saw v{event.detail['version']}"

    actions.register_action("model_promoted", on_move)
    actions.register_action("model_rolled_back", on_move)
    mia = approved(project, 1, 2)
    mia.promote(1)
    mia.promote(2)
    mia.rollback(reason="latency")
    assert moves == [("model_promoted", 1), ("model_promoted", 2), ("model_rolled_back", 1)]
    done = read_events(mia._lh, "action_succeeded")
    assert json.loads(done["detail"][-1])["note"] == "saw v1"


def test_gate_failed_alert_resolves_after_a_later_passing_gate(
    project: Paths, lakehouse: Lakehouse, hook: Hook
):
    """Check that gate_failed of v2 fires once per model and gate_passed of v3 resolves it."""
    write_alerts(project.root, hook)
    events.emit(lakehouse, "gate_failed", "recommender:v2", {"failed": ["auc"]}, at=T0)
    events.emit(lakehouse, "gate_failed", "recommender:v2", at=T0 + timedelta(minutes=1))
    events.emit(lakehouse, "gate_passed", "churn:v1", at=T0 + timedelta(minutes=2))
    assert [(b["subject"], b["status"]) for b in hook.bodies] == [("recommender", "firing")]
    events.emit(lakehouse, "gate_passed", "recommender:v3", at=T0 + timedelta(minutes=3))
    assert [(b["subject"], b["status"]) for b in hook.bodies] == [
        ("recommender", "firing"),
        ("recommender", "resolved"),
    ]


def test_monitor_run_judges_recorded_events_it_was_not_told_about(
    project: Paths, lakehouse: Lakehouse, hook: Hook
):
    """Check that run_alerts sees ops.events: a recorded failure fires, its clearing resolves."""
    write_alerts(project.root, hook)
    config = events.load_config(project.root)
    rules = [r for r in config.rules if r.name == "gate-failed"]
    empty = pl.DataFrame(schema={"at": pl.Datetime("us", "UTC"), "metric": pl.String,
                                 "subject": pl.String, "value": pl.Float64})  # fmt: skip
    events.record(lakehouse, events.Event("gate_failed", "recommender:v4", at=T0))
    run = run_alerts(lakehouse, rules, empty, config.sinks, now=T0 + timedelta(minutes=1))
    assert [(e.subject, e.status, e.notify) for e in run.events] == [
        ("recommender", "firing", True)
    ]
    events.record(
        lakehouse, events.Event("gate_passed", "recommender:v5", at=T0 + timedelta(minutes=2))
    )
    run = run_alerts(lakehouse, rules, empty, config.sinks, now=T0 + timedelta(minutes=3))
    assert [(e.status, e.notify) for e in run.events] == [("resolved", True)]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"model_promoted": ["page_someone"]}, r"alerts.actions.model_promoted: unknown action"),
        ({"disk_full": ["rescore"]}, r"unknown event type 'disk_full'"),
        ({"model_promoted": ["nosuchmodule:fn"]}, r"cannot load action 'nosuchmodule:fn'"),
    ],
)
def test_bad_action_config_is_refused_naming_the_key(spec: dict, match: str):
    """Check that alerts.actions refuses unknown actions, event types and imports."""
    with pytest.raises(HortusError, match=match):
        actions.load_actions(spec)


def test_rescore_skips_promotions_made_by_the_gate_stage(project: Paths):
    """Check that rescore leaves a gate-stage promotion to the pipeline's score stage."""
    lh = Lakehouse(paths=project, catalog=Catalog.load(), stage="gate")
    event = events.Event("model_promoted", "recommender:v1", {"alias": CHAMPION, "version": 1})
    assert actions.rescore(lh, event).startswith("skipped: promoted by the gate stage")
    other = events.Event("model_promoted", "recommender:v1", {"alias": "challenger"})
    assert actions.rescore(lh, other).startswith("skipped: rescore acts on champion moves")
