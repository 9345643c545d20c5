"""Alert rules, sinks (JSONL file, webhook on a real loopback server) and the event bus."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from hortus.errors import HortusError
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring.alerts import (
    AlertRule,
    AlertState,
    JsonlSink,
    WebhookSink,
    build_sinks,
    evaluate,
    load_rules,
    run_alerts,
)
from hortus.monitoring.events import emit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PSI_RULE = {
    "name": "psi-high",
    "metric": "psi",
    "subject": "price",
    "condition": "> 0.2",
    "severity": "warning",
    "sinks": ["log"],
}
GATE_RULE = {
    "name": "gate-failed",
    "metric": "event.gate_failed",
    "condition": ">= 1",
    "severity": "critical",
    "sinks": ["ops-webhook", "log"],
    "for_events": ["gate_failed"],
}


class Hook:
    """A real HTTP server on 127.0.0.1 that records POSTed JSON and answers scripted statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.bodies.append(json.loads(body))
                hook.headers.append(dict(self.headers))
                status = hook.statuses.pop(0) if len(hook.statuses) > 1 else hook.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Keep the test output quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    """Return a loopback webhook server that answers 200."""
    h = Hook([200])
    yield h
    h.close()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """Return the URL of a server that accepts connections and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # the kernel completes connections; nobody ever reads or answers
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    sock.close()


def metrics(*rows: tuple[str, str, float | None, datetime]) -> pl.DataFrame:
    """Return a long-format metrics frame from (metric, subject, value, at) rows."""
    return pl.DataFrame(
        {
            "at": [r[3] for r in rows],
            "monitor": ["drift"] * len(rows),
            "metric": [r[0] for r in rows],
            "subject": [r[1] for r in rows],
            "value": [r[2] for r in rows],
            "labels": ["{}"] * len(rows),
            "batch_id": [None] * len(rows),
        },
        schema_overrides={"at": pl.Datetime("us", "UTC"), "value": pl.Float64},
    )


def read_jsonl(path: Path) -> list[dict]:
    """Return the JSON objects of a JSONL file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_webhook_posts_alert_json_to_loopback_server(hook: Hook, lakehouse: Lakehouse):
    """Check that a firing alert is POSTed as JSON to the webhook and the delivery is recorded."""
    rule = AlertRule.from_dict({**PSI_RULE, "sinks": ["ops-webhook"]})
    sinks = build_sinks({"ops-webhook": {"type": "webhook", "url": hook.url}})
    run = run_alerts(lakehouse, [rule], metrics(("psi", "price", 0.31, T0)), sinks, now=T0)
    assert len(hook.bodies) == 1
    body = hook.bodies[0]
    assert (body["rule"], body["subject"], body["status"]) == ("psi-high", "price", "firing")
    assert body["value"] == pytest.approx(0.31) and body["threshold"] == pytest.approx(0.2)
    assert body["alert_id"] == run.events[0].alert_id
    assert hook.headers[0]["Content-Type"] == "application/json"
    deliveries = lakehouse.read("ops.alert_deliveries")
    assert deliveries.select("sink", "ok", "attempts", "http_status").row(0) == (
        "ops-webhook",
        True,
        1,
        200,
    )


def test_webhook_retries_after_server_errors():
    """Check that the webhook retries 5xx answers with backoff and succeeds on the third try."""
    h = Hook([500, 500, 200])
    try:
        sink = WebhookSink(h.url, timeout=2.0, retries=3, backoff=0.05)
        start = time.monotonic()
        d = sink.send({"rule": "r", "status": "firing"})
        elapsed = time.monotonic() - start
    finally:
        h.close()
    assert (d.ok, d.attempts, d.http_status, d.error) == (True, 3, 200, None)
    assert len(h.bodies) == 3 and all(b == {"rule": "r", "status": "firing"} for b in h.bodies)
    assert elapsed >= 0.05 + 0.1  # backoff 0.05 then 0.1 seconds


def test_webhook_does_not_retry_client_errors():
    """Check that a 4xx answer is recorded as a failure after one attempt (no retry)."""
    h = Hook([404])
    try:
        d = WebhookSink(h.url, retries=3, backoff=0.01).send({"x": 1})
    finally:
        h.close()
    assert (d.ok, d.attempts, d.http_status) == (False, 1, 404)
    assert "HTTP 404" in d.error


def test_webhook_timeout_gives_up_and_monitoring_continues(
    silent_url: str, lakehouse: Lakehouse, tmp_path: Path
):
    """Check that a silent webhook is recorded as failed while the log sink still gets the alert."""
    log = tmp_path / "alerts.jsonl"
    sinks = build_sinks(
        {
            "log": {"type": "jsonl", "path": str(log)},
            "ops-webhook": {
                "type": "webhook",
                "url": silent_url,
                "timeout": 0.2,
                "retries": 1,
                "backoff": 0.05,
            },
        }
    )
    rule = AlertRule.from_dict({**PSI_RULE, "sinks": ["ops-webhook", "log"]})
    run = run_alerts(lakehouse, [rule], metrics(("psi", "price", 0.5, T0)), sinks, now=T0)
    assert [e.status for e in run.notifications] == ["firing"]
    assert [r["rule"] for r in read_jsonl(log)] == ["psi-high"]
    deliveries = lakehouse.read("ops.alert_deliveries").sort("sink")
    assert deliveries["sink"].to_list() == ["log", "ops-webhook"]
    assert deliveries["ok"].to_list() == [True, False]
    failed = deliveries.row(1, named=True)
    assert failed["attempts"] == 2 and failed["http_status"] is None
    assert "timed out" in failed["error"] and silent_url in failed["error"]
    assert lakehouse.read("ops.alerts")["status"].to_list() == ["firing"]


def test_jsonl_sink_appends_one_object_per_notification(tmp_path: Path):
    """Check that the JSONL sink appends one JSON object per line, keeping earlier lines."""
    path = tmp_path / "sub" / "alerts.jsonl"
    sink = JsonlSink(path, name="log")
    assert sink.send({"n": 1, "s": "a"}).ok
    assert sink.send({"n": 2, "s": "b\nc"}).ok
    assert read_jsonl(path) == [{"n": 1, "s": "a"}, {"n": 2, "s": "b\nc"}]


def test_breach_evaluated_three_times_notifies_once_then_resolves(
    lakehouse: Lakehouse, tmp_path: Path
):
    """Check that a persisting breach notifies once (last_seen moves) and clearing resolves once."""
    log = tmp_path / "alerts.jsonl"
    sinks = build_sinks({"log": {"type": "jsonl", "path": str(log)}})
    rules = load_rules([PSI_RULE], sinks=sinks)
    frames = [metrics(("psi", "price", 0.3 + i / 10, T0 + timedelta(hours=i))) for i in range(3)]
    for i, frame in enumerate(frames):
        run_alerts(lakehouse, rules, frame, sinks, now=T0 + timedelta(hours=i, minutes=1))
    assert [r["status"] for r in read_jsonl(log)] == ["firing"]
    state = AlertState.load(lakehouse).firing
    assert state.height == 1
    assert state["last_seen"][0] == T0 + timedelta(hours=2, minutes=1)
    assert state["first_seen"][0] == T0 + timedelta(minutes=1)
    assert state["value"][0] == pytest.approx(0.5)

    clear = metrics(("psi", "price", 0.1, T0 + timedelta(hours=3)))
    run_alerts(lakehouse, rules, clear, sinks, now=T0 + timedelta(hours=3, minutes=1))
    run_alerts(lakehouse, rules, clear, sinks, now=T0 + timedelta(hours=4))
    notes = read_jsonl(log)
    assert [r["status"] for r in notes] == ["firing", "resolved"]
    assert notes[0]["alert_id"] == notes[1]["alert_id"]
    assert notes[1]["resolved_at"] == (T0 + timedelta(hours=3, minutes=1)).isoformat()
    assert AlertState.load(lakehouse).firing.is_empty()


def test_alert_state_survives_a_restart(project, tmp_path: Path):
    """Check that a new Lakehouse (a restarted process) does not re-notify a firing alert."""
    log = tmp_path / "alerts.jsonl"
    sinks = build_sinks({"log": {"type": "jsonl", "path": str(log)}})
    rules = load_rules([PSI_RULE], sinks=sinks)
    breach = metrics(("psi", "price", 0.4, T0))
    first = Lakehouse(paths=project, catalog=Catalog.load(), stage="monitor")
    run_alerts(first, rules, breach, sinks, now=T0)
    first.close()

    again = Lakehouse.open(project.root, stage="monitor", user="pipeline")
    run = run_alerts(again, rules, breach, sinks, now=T0 + timedelta(minutes=5))
    assert run.notifications == [] and [e.status for e in run.events] == ["firing"]
    assert [r["status"] for r in read_jsonl(log)] == ["firing"]

    later = Lakehouse.open(project.root, stage="monitor", user="pipeline")
    clear = metrics(("psi", "price", 0.05, T0 + timedelta(minutes=9)))
    run = run_alerts(later, rules, clear, sinks, now=T0 + timedelta(minutes=10))
    assert [e.status for e in run.notifications] == ["resolved"]
    ids = {r["alert_id"] for r in read_jsonl(log)}
    assert len(ids) == 1


def test_evaluate_fires_per_subject_and_respects_operators():
    """Check that each subject is compared on its latest value and only breaching ones fire."""
    frame = metrics(
        ("null_rate", "price", 0.5, T0 - timedelta(hours=2)),
        ("null_rate", "price", 0.01, T0 - timedelta(hours=1)),  # latest value is fine
        ("null_rate", "qty", 0.2, T0 - timedelta(hours=1)),
        ("null_rate", "name", None, T0 - timedelta(hours=1)),  # not computable: no breach
        ("null_rate", "sku", 0.05, T0 - timedelta(hours=1)),
        ("other", "qty", 9.0, T0),
    )
    spec = {"name": "nulls", "metric": "null_rate", "severity": "info", "sinks": ["log"]}
    fired = {
        op: sorted(
            e.subject
            for e in evaluate(
                [AlertRule.from_dict({**spec, "condition": f"{op} 0.05"})], frame, now=T0
            )
        )
        for op in (">", ">=", "<", "<=", "==", "!=")
    }
    assert fired == {
        ">": ["qty"],
        ">=": ["qty", "sku"],
        "<": ["price"],
        "<=": ["price", "sku"],
        "==": ["sku"],
        "!=": ["price", "qty"],
    }


def test_absent_for_rule_fires_on_stale_and_missing_subjects():
    """Check that absent_for fires for a subject last seen too long ago or never seen."""
    frame = metrics(
        ("rows_logged", "recommender", 10.0, T0 - timedelta(minutes=120)),
        ("rows_logged", "ranker", 10.0, T0 - timedelta(minutes=30)),
    )
    rule = AlertRule.from_dict(
        {
            "name": "no-predictions",
            "metric": "rows_logged",
            "subject": ["recommender", "ranker", "search"],
            "condition": "absent_for 90",
            "severity": "critical",
            "sinks": ["log"],
        }
    )
    fired = {e.subject: e.value for e in evaluate([rule], frame, now=T0)}
    assert set(fired) == {"recommender", "search"}
    assert fired["recommender"] == pytest.approx(120.0) and fired["search"] is None
    anything = AlertRule.from_dict(
        {
            "name": "no-rows",
            "metric": "rows_logged",
            "condition": {"absent_for": 10},
            "severity": "critical",
            "sinks": ["log"],
        }
    )
    assert [e.subject for e in evaluate([anything], frame.clear(), now=T0)] == ["*"]


def test_gate_failed_event_notifies_subscribed_webhook(hook: Hook, lakehouse: Lakehouse, tmp_path):
    """Check that emitting gate_failed records the event and posts the subscribed rule at once."""
    log = tmp_path / "alerts.jsonl"
    sinks = build_sinks(
        {
            "log": {"type": "jsonl", "path": str(log)},
            "ops-webhook": {"type": "webhook", "url": hook.url},
        }
    )
    rules = load_rules([GATE_RULE, PSI_RULE | {"for_events": ["table_committed"]}], sinks=sinks)
    run = emit(
        lakehouse,
        "gate_failed",
        "recommender v3",
        {"failed": ["roc_auc"]},
        rules=rules,
        sinks=sinks,
        at=T0,
    )
    assert [(e.rule, e.status) for e in run.notifications] == [("gate-failed", "firing")]
    assert [(b["rule"], b["severity"], b["subject"]) for b in hook.bodies] == [
        ("gate-failed", "critical", "recommender v3")
    ]
    events = lakehouse.read("ops.events")
    assert events.select("type", "subject", "actor").row(0) == (
        "gate_failed",
        "recommender v3",
        "pipeline",
    )
    assert json.loads(events["detail"][0]) == {"failed": ["roc_auc"]}
    assert lakehouse.read("ops.alerts")["rule"].to_list() == ["gate-failed"]

    # an event no rule subscribes to is recorded but notifies nobody
    emit(lakehouse, "model_promoted", "recommender v2", rules=rules, sinks=sinks, at=T0)
    assert len(hook.bodies) == 1 and lakehouse.read("ops.events").height == 2
    # the same failure again while firing is deduplicated
    emit(
        lakehouse,
        "gate_failed",
        "recommender v3",
        rules=rules,
        sinks=sinks,
        at=T0 + timedelta(minutes=1),
    )
    assert len(hook.bodies) == 1


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"sinks": ["pager"]}, r"alert rule 'psi-high': unknown sink\(s\) \['pager'\]"),
        ({"condition": "> high"}, r"alert rule 'psi-high': bad condition '> high'"),
        ({"condition": "=> 0.2"}, r"alert rule 'psi-high': bad condition"),
        ({"condition": "absent_for 0"}, r"alert rule 'psi-high'.*absent_for > 0"),
        ({"condition": None}, r"alert rule 'psi-high': `condition` is required"),
        ({"severity": "fatal"}, r"alert rule 'psi-high': severity 'fatal'"),
        ({"for_events": ["disk_full"]}, r"alert rule 'psi-high': unknown event type 'disk_full'"),
        ({"thresold": 1}, r"alert rule 'psi-high': unknown key\(s\) \['thresold'\]"),
    ],
)
def test_bad_rule_is_refused_naming_the_rule(change: dict, match: str):
    """Check that a rule with an unknown sink, bad condition, severity or key is refused clearly."""
    with pytest.raises(HortusError, match=match):
        load_rules([PSI_RULE | change], sinks=["log"])


def test_run_refuses_rule_whose_sink_is_not_configured(lakehouse: Lakehouse):
    """Check that running a rule whose sink is missing from the sink config names the rule."""
    rule = AlertRule.from_dict(PSI_RULE)
    with pytest.raises(HortusError, match=r"alert rule 'psi-high': unknown sink\(s\) \['log'\]"):
        run_alerts(lakehouse, [rule], metrics(("psi", "price", 0.9, T0)), {}, now=T0)
    assert not lakehouse.exists("ops.alerts")


def test_webhook_token_comes_only_from_environment(hook: Hook):
    """Check that a webhook header comes from the named variable; literal secrets are refused."""
    spec = {"type": "webhook", "url": hook.url, "headers_from_env": {"Authorization": "HOOK_TOKEN"}}
    sinks = build_sinks({"ops-webhook": spec}, env={"HOOK_TOKEN": "Bearer s3cret"})
    assert sinks["ops-webhook"].send({"x": 1}).ok
    assert hook.headers[0]["Authorization"] == "Bearer s3cret"
    with pytest.raises(HortusError, match="alert sink 'ops-webhook'.*HOOK_TOKEN, which is not set"):
        build_sinks({"ops-webhook": spec}, env={})
    with pytest.raises(HortusError, match="alert sink 'w': secrets are not allowed"):
        build_sinks({"w": {"type": "webhook", "url": hook.url, "headers": {"Authorization": "x"}}})
