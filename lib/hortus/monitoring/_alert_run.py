"""The whole alerting loop: load state, evaluate, notify, persist."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from hortus.monitoring._alert_evaluate import evaluate, normalize_metrics
from hortus.monitoring._alert_events import event_metrics
from hortus.monitoring._alert_rules import AlertRule
from hortus.monitoring._alert_sinks import DELIVERIES_TABLE, Sink, check_sinks, notify
from hortus.monitoring._alert_state import ALERTS_TABLE, AlertEvent, AlertState, events_frame


@dataclass(frozen=True)
class AlertRun:
    """What one alerting pass did: its outcomes, deliveries and the new state.

    `actions` holds the outcomes of the event actions an emitted event ran
    (`hortus.monitoring.actions`); empty for a scheduled pass.
    """

    events: list[AlertEvent]
    deliveries: pl.DataFrame
    state: AlertState
    actions: list = field(default_factory=list)

    @property
    def notifications(self) -> list[AlertEvent]:
        """Return the outcomes that were sent to sinks (fired or resolved)."""
        return [e for e in self.events if e.notify]


def persist(lh: Any, events: Sequence[AlertEvent], deliveries: pl.DataFrame) -> None:
    """Append evaluation outcomes to ops.alerts and delivery outcomes to ops.alert_deliveries."""
    if events:
        lh.write(ALERTS_TABLE, events_frame(events), mode="append")
    if deliveries.height:
        lh.write(DELIVERIES_TABLE, deliveries, mode="append")


def run_alerts(
    lh: Any,
    rules: Sequence[AlertRule],
    metrics: pl.DataFrame | pl.LazyFrame,
    sinks: Mapping[str, Sink],
    *,
    state: AlertState | None = None,
    now: datetime | None = None,
) -> AlertRun:
    """Load the alert state, evaluate rules, notify sinks and persist both; return the run.

    `state` defaults to `AlertState.load(lh)` (ops.alerts), so a restarted
    process does not notify again for alerts already firing.  Rules on event
    metrics (``event.<type>``) also see the events recorded in ops.events, the
    latest per subject (`event_metrics`): events recorded
    without dispatch (e.g. ``table_committed``) are judged here, and an alert whose
    clearing event (``gate_passed``, ``stage_succeeded``) came last resolves.
    """
    check_sinks(rules, sinks)
    state = AlertState.load(lh) if state is None else state
    recorded = event_metrics(lh, rules)
    if recorded is not None:
        metrics = pl.concat([normalize_metrics(metrics), normalize_metrics(recorded)])
    events = evaluate(rules, metrics, state, now=now)
    deliveries = notify(events, sinks)
    persist(lh, events, deliveries)
    return AlertRun(events, deliveries, state.apply(events))
