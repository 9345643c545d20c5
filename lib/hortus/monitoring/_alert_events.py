"""Operations events as alert metrics: what rules with `for_events` see of ops.events.

Each event counts as one metric row of the long format: metric ``event.<type>``,
value 1.0, or, for an event that clears another (`CLEARS`: ``gate_passed`` clears
``gate_failed``), metric ``event.<cleared type>`` and value 0.0.  The row's subject
is the event's object: its subject up to the first ``:`` (``recommender`` for
``recommender:v3``), so alerts are kept per model, stage or table, and a later
passed gate of a model resolves the alert of an earlier failed version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from hortus.monitoring._alert_rules import AlertRule
from hortus.monitoring.event_types import CLEARS, alert_type

EVENTS_TABLE = "ops.events"
EVENT_METRIC_PREFIX = "event."


def alert_subject(subject: str) -> str:
    """Return the object an event's subject names: the part before the first ':'."""
    return subject.split(":", 1)[0]


def rows_to_metrics(rows: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Return ops.events rows (at, type, subject) as metric rows (at, monitor, metric, ...)."""
    clearing = pl.col("type").is_in(list(CLEARS))
    cleared = pl.col("type").replace_strict(CLEARS, default=pl.col("type"), return_dtype=pl.String)
    return rows.lazy().select(
        "at",
        monitor=pl.lit("events"),
        metric=pl.lit(EVENT_METRIC_PREFIX) + cleared,
        subject=pl.col("subject").str.split(":").list.first(),
        value=pl.when(clearing).then(0.0).otherwise(1.0),
    )


def subscribers(rules: Sequence[AlertRule], event_type: str) -> list[AlertRule]:
    """Return the rules an event of this type triggers: subscribed to it or to what it clears."""
    wanted = {event_type, alert_type(event_type)}
    return [r for r in rules if wanted & set(r.for_events)]


def event_metrics(lh: Any, rules: Sequence[AlertRule]) -> pl.LazyFrame | None:
    """Return ops.events as metric rows for the rules on ``event.<type>`` metrics (None if none).

    Only the event types those metrics name (and their clearing types) are read.
    None too when ops.events was never written or this user may not read it.
    """
    prefix = EVENT_METRIC_PREFIX
    types = {r.metric.removeprefix(prefix) for r in rules if r.metric.startswith(prefix)}
    if not types:
        return None
    types |= {c for c, t in CLEARS.items() if t in types}
    if not lh.exists(EVENTS_TABLE) or not lh.policy.decide(lh.user, "read", EVENTS_TABLE).allowed:
        return None
    rows = lh.scan(EVENTS_TABLE).filter(pl.col("type").is_in(sorted(types)))
    return rows_to_metrics(rows)
