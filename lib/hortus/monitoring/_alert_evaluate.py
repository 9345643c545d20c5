"""Evaluation of alert rules over the long-format metrics frame, one polars pass per rule.

`evaluate` is pure: it compares each rule with the latest value per subject (or
the age of that value, for `absent_for` rules) and with the current state, and
returns the alerts that fire, stay firing or resolve.  See
`hortus.monitoring.alerts` for the semantics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl

from hortus.errors import HortusError
from hortus.monitoring._alert_rules import AlertRule
from hortus.monitoring._alert_state import _TS, AlertEvent, AlertState

METRICS_TABLE = "ops.monitor_metrics"
METRIC_COLUMNS = ("at", "metric", "subject", "value")


def normalize_metrics(metrics: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Return the metric columns rules use (at, monitor, metric, subject, value), typed."""
    lf = metrics.lazy()
    names = lf.collect_schema().names()
    missing = [c for c in METRIC_COLUMNS if c not in names]
    if missing:
        raise HortusError(
            f"metrics frame lacks column(s) {missing} (needs {list(METRIC_COLUMNS)}, "
            f"the long format of {METRICS_TABLE}); has {names}"
        )
    if "monitor" not in names:
        lf = lf.with_columns(monitor=pl.lit(None, pl.String))
    return lf.select(
        pl.col("at").cast(_TS),
        pl.col("monitor").cast(pl.String),
        pl.col("metric").cast(pl.String),
        pl.col("subject").cast(pl.String),
        pl.col("value").cast(pl.Float64),
    )


def _current(rule: AlertRule, metrics: pl.LazyFrame, now: datetime) -> pl.DataFrame:
    """Return subject, value, breach for one rule at `now` (latest value per subject)."""
    lf = metrics.filter(pl.col("metric") == rule.metric, pl.col("at") <= now)
    if rule.monitor is not None:
        lf = lf.filter(pl.col("monitor") == rule.monitor)
    if rule.subjects:
        lf = lf.filter(pl.col("subject").is_in(list(rule.subjects)))
    latest = (
        lf.sort("at").group_by("subject").agg(pl.col("value").last(), pl.col("at").last()).collect()
    )
    if rule.absent_for is None:
        return latest.select("subject", "value", breach=rule.breach(pl.col("value")))
    expected = list(rule.subjects) if rule.subjects else ["*"] if latest.is_empty() else []
    if expected:
        latest = pl.DataFrame({"subject": expected}, schema={"subject": pl.String}).join(
            latest, on="subject", how="full", coalesce=True
        )
    age = (pl.lit(now, _TS) - pl.col("at")).dt.total_microseconds() / 60e6
    return latest.select(
        "subject",
        value=age,  # minutes since last seen; null if never seen
        breach=age.is_null() | (age > rule.absent_for),
    )


def _alert_id(rule: str, subject: str, first_seen: datetime) -> str:
    key = f"{rule}\x1f{subject}\x1f{first_seen.isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def evaluate(
    rules: Sequence[AlertRule],
    metrics: pl.DataFrame | pl.LazyFrame,
    state: AlertState | None = None,
    *,
    now: datetime | None = None,
) -> list[AlertEvent]:
    """Evaluate rules over a long-format metrics frame; return fired, repeated and resolved alerts.

    Pure: `state` is not changed (use `state.apply(events)` or `run_alerts`).
    Only outcomes with `notify=True` are notifications.

    Examples
    --------
    >>> m = pl.DataFrame({"at": [datetime(2026, 1, 1, tzinfo=UTC)], "metric": ["psi"],
    ...                   "subject": ["price"], "value": [0.4]})
    >>> r = AlertRule.from_dict({"name": "psi", "metric": "psi", "condition": "> 0.2",
    ...                          "severity": "warning", "sinks": ["log"]})
    >>> [(e.status, e.notify) for e in evaluate([r], m, now=datetime(2026, 1, 2, tzinfo=UTC))]
    [('firing', True)]
    """
    now = now or datetime.now(UTC)
    state = state or AlertState()
    lf = normalize_metrics(metrics)
    firing = state.firing
    out: list[AlertEvent] = []
    for rule in rules:
        current = _current(rule, lf, now)
        previous = firing.filter(pl.col("rule") == rule.name).select(
            "subject", "alert_id", "first_seen", "last_seen", was_firing=pl.lit(True)
        )
        merged = current.join(previous, on="subject", how="left").filter(
            pl.col("breach") | pl.col("was_firing").fill_null(False)
        )
        merged = merged.with_columns(
            status=pl.when(pl.col("breach")).then(pl.lit("firing")).otherwise(pl.lit("resolved")),
            notify=pl.col("breach") != pl.col("was_firing").fill_null(False),
            first_seen=pl.col("first_seen").fill_null(pl.lit(now, _TS)),
        )
        for r in merged.to_dicts():  # alerts of one rule, not data rows
            out.append(_event(rule, r, now))
    return out


def _event(rule: AlertRule, r: dict[str, Any], now: datetime) -> AlertEvent:
    firing = r["status"] == "firing"
    value = r["value"]
    shown = "never seen" if value is None else f"{value:.6g}"
    if rule.absent_for is not None:
        what = (
            f"{rule.metric} of {r['subject']} last seen {shown} min ago "
            f"(absent_for {rule.absent_for:g})"
        )
    else:
        what = f"{rule.metric} of {r['subject']} = {shown} ({rule.condition})"
    return AlertEvent(
        alert_id=r["alert_id"] or _alert_id(rule.name, r["subject"], r["first_seen"]),
        rule=rule.name,
        metric=rule.metric,
        subject=r["subject"],
        severity=rule.severity,
        status=r["status"],
        notify=r["notify"],
        first_seen=r["first_seen"],
        last_seen=now if firing else r["last_seen"],  # resolved: last time it was true
        resolved_at=None if firing else now,
        value=value,
        threshold=rule.absent_for if rule.absent_for is not None else rule.threshold,
        condition=rule.condition,
        message=f"[{rule.severity}] {rule.name} {'FIRING' if firing else 'resolved'}: {what}",
        updated_at=now,
        sinks=rule.sinks,
    )
