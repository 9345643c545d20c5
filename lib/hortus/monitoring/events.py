"""The operations event bus: record events in ops.events, run the rules and actions on them.

Where each event is emitted (subject = the object; ``model:vN`` names a version):

- ``table_committed`` (subject ``layer.table``): `Lakehouse.write`, for every table
  outside ``ops``; recorded only (one small append, no configuration read in that hot
  path) and dispatched when the stage that wrote it ends (`record_run` calls
  `dispatch_pending`), or judged at the next monitor run (`run_alerts`);
- ``stage_failed`` / ``stage_succeeded`` (subject the stage): `record_run`, when a
  stage raises (the original error still propagates) or ends;
- ``model_promoted`` / ``model_rolled_back`` (``name:vN``): `Registry.promote` and
  `Registry.rollback`, when an alias moves;
- ``gate_failed`` / ``gate_passed`` (``name:vN``): the gate stage;
- ``action_failed`` / ``action_succeeded`` (``action:subject``): `emit`, for each action
  an event ran.

An event is recorded in the append-only table `ops.events` (at, type, subject,
detail JSON, actor) and dispatched at once: the alert rules whose `for_events` lists
its type (or the type it clears) are evaluated right away instead of waiting for the
next scheduled monitoring run, then the actions bound to its type run
(`hortus.monitoring.actions`: params.yaml `alerts.actions` or `register_action`).

For dispatch each event counts as one metric row of the long format (see
`hortus.monitoring._alert_events`): metric ``event.<type>``, value 1.0, subject the
object (the subject up to ``:``); a clearing event (``gate_passed`` for
``gate_failed``, ``stage_succeeded`` for ``stage_failed``) gives value 0.0.  So a rule

```yaml
{name: gate-failed, metric: event.gate_failed, condition: ">= 1", severity: critical,
 sinks: [ops-webhook], for_events: [gate_failed]}
```

notifies the critical sink as soon as a gate of a model fails, once per model while it
stays firing (the usual deduplication of `hortus.monitoring.alerts`), and resolves
when a later gate of that model passes.  Rules on ordinary metrics can subscribe too,
e.g. a freshness rule re-evaluated on `table_committed`.

The rules, sinks and actions come from the caller (the gate and monitor stages pass
theirs), else from the configuration installed in this process (`configure`), else
from the project's params.yaml `alerts` section (`load_config`), read when an event is
dispatched, not when it is recorded.

Examples
--------
>>> emit(lh, "gate_failed", "churn:v3", {"failed": ["auc"]},
...      rules=rules, sinks=sinks)                                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from hortus.errors import HortusError
from hortus.monitoring import actions as act
from hortus.monitoring._alert_events import EVENTS_TABLE, rows_to_metrics
from hortus.monitoring._alert_events import alert_subject as alert_subject  # re-exported
from hortus.monitoring._alert_events import event_metrics as event_metrics  # re-exported
from hortus.monitoring._alert_events import subscribers as subscribers  # re-exported
from hortus.monitoring.alerts import (
    DELIVERY_SCHEMA,
    METRICS_TABLE,
    AlertRule,
    AlertRun,
    AlertState,
    Sink,
    build_sinks,
    check_sinks,
    evaluate,
    load_rules,
    normalize_metrics,
    notify,
    persist,
)
from hortus.monitoring.event_types import CLEARS as CLEARS  # re-exported
from hortus.monitoring.event_types import EVENT_TYPES as EVENT_TYPES  # re-exported
from hortus.monitoring.event_types import EventError, check_event_type
from hortus.monitoring.event_types import register_event_type as register_event_type
from hortus.provenance import current_user

_TS = pl.Datetime("us", "UTC")
EVENT_SCHEMA = pl.Schema(
    {
        "at": _TS,
        "type": pl.String(),
        "subject": pl.String(),
        "detail": pl.String(),
        "actor": pl.String(),
    }
)


@dataclass(frozen=True)
class Event:
    """One operations event: what happened (type), to what (subject), details, who, when."""

    type: str
    subject: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    actor: str = field(default_factory=current_user)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        check_event_type(self.type, where=f"event on {self.subject!r}")
        if not isinstance(self.subject, str) or not self.subject:
            raise EventError(f"event {self.type}: `subject` must be a non-empty string")
        if self.at.tzinfo is None:
            raise EventError(f"event {self.type} on {self.subject!r}: `at` must be timezone-aware")

    def row(self) -> dict[str, Any]:
        """Return the ops.events row of this event (detail as JSON)."""
        return {
            "at": self.at,
            "type": self.type,
            "subject": self.subject,
            "detail": json.dumps(dict(self.detail), sort_keys=True, default=str),
            "actor": self.actor,
        }


def events_frame(events: Sequence[Event]) -> pl.DataFrame:
    """Return events as ops.events rows."""
    return pl.DataFrame([e.row() for e in events], schema=EVENT_SCHEMA)


def events_to_metrics(events: Sequence[Event]) -> pl.DataFrame:
    """Return one metric row per event: metric event.<type> (1.0) or what it clears (0.0)."""
    return rows_to_metrics(events_frame(events)).collect()


def record(lh: Any, events: Event | Sequence[Event]) -> int:
    """Append events to ops.events; return the new table version."""
    batch = [events] if isinstance(events, Event) else list(events)
    if not batch:
        raise EventError("record: no events given")
    return lh.write(EVENTS_TABLE, events_frame(batch), mode="append")


@dataclass(frozen=True)
class EventConfig:
    """What dispatching an event uses: alert rules, their sinks, and actions by event type."""

    rules: tuple[AlertRule, ...] = ()
    sinks: Mapping[str, Sink] = field(default_factory=dict)
    actions: Mapping[str, tuple[act.Action, ...]] = field(default_factory=dict)


_INSTALLED: EventConfig | None = None
_LOADED: dict[tuple[str, int], EventConfig] = {}


def load_config(root: Path, params_file: Path | None = None) -> EventConfig:
    """Return the rules, sinks and actions of params.yaml's `alerts` section (empty if none).

    JSONL sink paths are relative to the project root.  Cached per file and
    modification time, so emitting many events reads the file once.
    """
    from hortus.params import read_params

    path = Path(params_file or Path(root) / "params.yaml")
    if not path.exists():
        return EventConfig()
    key = (str(path.resolve()), os.stat(path).st_mtime_ns)
    if key not in _LOADED:
        section = read_params(path).get("alerts") or {}
        if not isinstance(section, dict):  # as the params schema says it (no import cycle)
            raise HortusError(f"{path.name}: alerts: expected a mapping of keys, got {section!r}")
        sinks_cfg = {
            name: dict(spec) | ({"path": str(Path(root) / spec["path"])} if "path" in spec else {})
            for name, spec in (section.get("sinks") or {}).items()
        }
        sinks = build_sinks(sinks_cfg)
        rules = load_rules(section.get("rules") or [], sinks=sinks)
        actions = act.load_actions(section.get("actions"), source=f"{path.name} alerts.actions")
        _LOADED[key] = EventConfig(tuple(rules), sinks, actions)
    return _LOADED[key]


def configure(config: EventConfig | None) -> None:
    """Install the event configuration of this process (None: back to the project's params)."""
    global _INSTALLED
    _INSTALLED = config


def config_for(root: Path) -> EventConfig:
    """Return the installed configuration, else the project's params.yaml `alerts` section."""
    return _INSTALLED if _INSTALLED is not None else load_config(root)


def dispatch(
    events: Sequence[Event],
    rules: Sequence[AlertRule],
    metrics: pl.DataFrame | pl.LazyFrame | None,
    state: AlertState | None,
    sinks: Mapping[str, Sink],
    *,
    now: datetime | None = None,
) -> AlertRun:
    """Evaluate, for each event in order, the rules subscribed to its type and notify their sinks.

    The metrics seen by the rules are `metrics` plus the events so far as metric
    rows (`events_to_metrics`).  Nothing is persisted (see `emit`); the returned
    run carries every outcome, the deliveries and the new state.
    """
    check_sinks(rules, sinks)
    state = state or AlertState()
    base = None if metrics is None else normalize_metrics(metrics)
    outcomes = []
    deliveries = []
    for i, event in enumerate(events):  # events, not data rows: each triggers its rules
        subscribed = subscribers(rules, event.type)
        if not subscribed:
            continue
        seen = normalize_metrics(events_to_metrics(events[: i + 1]))
        frame = seen if base is None else pl.concat([base, seen])
        when = max(now or datetime.now(UTC), event.at)
        found = evaluate(subscribed, frame, state, now=when)
        deliveries.append(notify(found, sinks))
        state = state.apply(found)
        outcomes.extend(found)
    sent = pl.concat(deliveries) if deliveries else pl.DataFrame(schema=DELIVERY_SCHEMA)
    return AlertRun(outcomes, sent, state)


def emit(
    lh: Any,
    type: str,
    subject: str,
    detail: Mapping[str, Any] | None = None,
    *,
    rules: Sequence[AlertRule] | None = None,
    sinks: Mapping[str, Sink] | None = None,
    actions: Mapping[str, Sequence[act.Action]] | None = None,
    metrics: pl.DataFrame | pl.LazyFrame | None = None,
    actor: str | None = None,
    at: datetime | None = None,
) -> AlertRun:
    """Record an event in ops.events and dispatch it at once: rules, sinks, then actions.

    Alerts and deliveries are persisted (ops.alerts, ops.alert_deliveries); each action
    run is recorded as an ``action_succeeded``/``action_failed`` event, itself dispatched
    to its rules.  `rules`/`sinks`/`actions` default to `config_for(lh.paths.root)`.
    `metrics` defaults to the rows of ops.monitor_metrics for the metrics the subscribed
    rules watch; the alert state is loaded from ops.alerts.
    """
    event = Event(
        type=type,
        subject=subject,
        detail=dict(detail or {}),
        actor=actor or lh.user,
        at=at or datetime.now(UTC),
    )
    record(lh, event)
    return _dispatch_recorded(lh, [event], rules, sinks, actions, metrics)


def dispatch_pending(lh: Any, rows: Sequence[Mapping[str, Any]]) -> AlertRun | None:
    """Dispatch events already recorded in ops.events (e.g. `pending_commits`); None if none.

    For the ``table_committed`` events `Lakehouse.write` records without reading any
    configuration: the stage that wrote the tables calls this when it ends.
    """
    if not rows:
        return None
    batch = [
        Event(
            type=r["type"],
            subject=r["subject"],
            detail=json.loads(r["detail"]),
            actor=r["actor"],
            at=r["at"],
        )
        for r in rows
    ]
    return _dispatch_recorded(lh, batch, None, None, None, None)


def _dispatch_recorded(
    lh: Any,
    batch: list[Event],
    rules: Sequence[AlertRule] | None,
    sinks: Mapping[str, Sink] | None,
    actions: Mapping[str, Sequence[act.Action]] | None,
    metrics: pl.DataFrame | pl.LazyFrame | None,
) -> AlertRun:
    """Run the rules and then the actions of recorded events; record the action outcomes."""
    if rules is None or sinks is None or actions is None:
        config = config_for(lh.paths.root)
        rules = config.rules if rules is None else rules
        sinks = config.sinks if sinks is None else sinks
        actions = config.actions if actions is None else actions
    subscribed = [r for r in rules if any(r in subscribers(rules, e.type) for e in batch)]
    if subscribed:
        if metrics is None:
            watched = sorted({r.metric for r in subscribed})
            metrics = lh.scan_or_empty(METRICS_TABLE).filter(pl.col("metric").is_in(watched))
        now = max(e.at for e in batch)
        run = dispatch(batch, subscribed, metrics, AlertState.load(lh), sinks, now=now)
        persist(lh, run.events, run.deliveries)
    else:
        run = AlertRun([], pl.DataFrame(schema=DELIVERY_SCHEMA), AlertState())
    for event in batch:
        outcomes = act.run_actions(lh, event, act.actions_for(actions, event.type))
        run.actions.extend(outcomes)
        for o in outcomes:
            emit(
                lh,
                "action_succeeded" if o.ok else "action_failed",
                f"{o.action}:{event.subject}",
                {"event": event.type, "subject": event.subject, "note": o.note},
                rules=rules,
                sinks=sinks,
                actions=actions,
            )
    return run
