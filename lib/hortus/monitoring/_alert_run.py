"""The whole alerting loop: load state, evaluate, notify, persist."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from hortus.monitoring._alert_evaluate import evaluate
from hortus.monitoring._alert_rules import AlertRule
from hortus.monitoring._alert_sinks import DELIVERIES_TABLE, Sink, check_sinks, notify
from hortus.monitoring._alert_state import ALERTS_TABLE, AlertEvent, AlertState, events_frame


@dataclass(frozen=True)
class AlertRun:
    """What one alerting pass did: its outcomes, deliveries and the new state."""

    events: list[AlertEvent]
    deliveries: pl.DataFrame
    state: AlertState

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
    process does not notify again for alerts already firing.
    """
    check_sinks(rules, sinks)
    state = AlertState.load(lh) if state is None else state
    events = evaluate(rules, metrics, state, now=now)
    deliveries = notify(events, sinks)
    persist(lh, events, deliveries)
    return AlertRun(events, deliveries, state.apply(events))
