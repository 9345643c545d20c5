"""The operations event bus: record events in ops.events and run the alert rules subscribed to them.

Event types: `table_committed`, `model_promoted`, `stage_failed`, `gate_failed`
(`register_event_type` adds more).  An event is recorded in the append-only
table `ops.events` (at, type, subject, detail JSON, actor) and dispatched at
once: the alert rules whose `for_events` lists its type are evaluated right away
instead of waiting for the next scheduled monitoring run.

For dispatch each event also counts as one metric row of the long format
(`events_to_metrics`): monitor ``events``, metric ``event.<type>``, subject the
event's subject, value 1.0.  So a rule

```yaml
{name: gate-failed, metric: event.gate_failed, condition: ">= 1", severity: critical,
 sinks: [ops-webhook], for_events: [gate_failed]}
```

notifies the critical sink as soon as a gate fails, once per subject while it
stays firing (the usual deduplication of `hortus.monitoring.alerts`).  Such an alert
resolves when a clearing value for that subject (e.g. ``event.gate_failed`` = 0
written by the gate monitor after a passed run) is evaluated.  Rules on ordinary
metrics can subscribe too, e.g. a freshness rule re-evaluated on
`table_committed`.

Examples
--------
>>> emit(lh, "gate_failed", "churn v3", {"failed": ["auc"]},
...      rules=rules, sinks=sinks)                                  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from hortus.monitoring.alerts import (
    DELIVERY_SCHEMA,
    METRICS_TABLE,
    AlertRule,
    AlertRun,
    AlertState,
    Sink,
    check_sinks,
    evaluate,
    normalize_metrics,
    notify,
    persist,
)
from hortus.monitoring.event_types import EVENT_TYPES as EVENT_TYPES  # re-exported
from hortus.monitoring.event_types import EventError, check_event_type
from hortus.monitoring.event_types import register_event_type as register_event_type
from hortus.provenance import current_user

EVENTS_TABLE = "ops.events"
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
    """Return one metric row per event: monitor events, metric event.<type>, value 1.0."""
    return events_frame(events).select(
        "at",
        monitor=pl.lit("events"),
        metric=pl.lit("event.") + pl.col("type"),
        subject="subject",
        value=pl.lit(1.0),
    )


def record(lh: Any, events: Event | Sequence[Event]) -> int:
    """Append events to ops.events; return the new table version."""
    batch = [events] if isinstance(events, Event) else list(events)
    if not batch:
        raise EventError("record: no events given")
    return lh.write(EVENTS_TABLE, events_frame(batch), mode="append")


def subscribers(rules: Sequence[AlertRule], event_type: str) -> list[AlertRule]:
    """Return the rules that subscribe to an event type (`for_events`)."""
    return [r for r in rules if event_type in r.for_events]


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
    rules: Sequence[AlertRule],
    sinks: Mapping[str, Sink],
    metrics: pl.DataFrame | pl.LazyFrame | None = None,
    actor: str | None = None,
    at: datetime | None = None,
) -> AlertRun:
    """Record an event in ops.events and dispatch it at once; persist alerts and deliveries.

    `metrics` defaults to the rows of ops.monitor_metrics for the metrics the
    subscribed rules watch; the alert state is loaded from ops.alerts.
    """
    event = Event(
        type=type,
        subject=subject,
        detail=dict(detail or {}),
        actor=actor or lh.user,
        at=at or datetime.now(UTC),
    )
    record(lh, event)
    subscribed = subscribers(rules, type)
    if not subscribed:
        return AlertRun([], pl.DataFrame(schema=DELIVERY_SCHEMA), AlertState())
    if metrics is None:
        watched = sorted({r.metric for r in subscribed})
        metrics = lh.scan_or_empty(METRICS_TABLE).filter(pl.col("metric").is_in(watched))
    run = dispatch([event], subscribed, metrics, AlertState.load(lh), sinks, now=event.at)
    persist(lh, run.events, run.deliveries)
    return run
