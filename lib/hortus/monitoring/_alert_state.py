"""Alert state: evaluation outcomes and the current alert of each (rule, subject).

State is the latest row per (rule, subject) of the append-only table
`ops.alerts`, so deduplication survives restarts (`AlertState.load`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

ALERTS_TABLE = "ops.alerts"
_TS = pl.Datetime("us", "UTC")
ALERT_SCHEMA = pl.Schema(
    {
        "alert_id": pl.String(),
        "rule": pl.String(),
        "metric": pl.String(),
        "subject": pl.String(),
        "severity": pl.String(),
        "status": pl.String(),
        "notified": pl.Boolean(),
        "first_seen": _TS,
        "last_seen": _TS,
        "resolved_at": _TS,
        "value": pl.Float64(),
        "threshold": pl.Float64(),
        "condition": pl.String(),
        "message": pl.String(),
        "updated_at": _TS,
    }
)


@dataclass(frozen=True)
class AlertEvent:
    """One evaluation outcome of a rule for a subject.

    `status` is firing or resolved; `notify` is true when the alert just fired or
    just resolved (the notifications), false for a repeat while firing.
    """

    alert_id: str
    rule: str
    metric: str
    subject: str
    severity: str
    status: str
    notify: bool
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    value: float | None
    threshold: float
    condition: str
    message: str
    updated_at: datetime
    sinks: tuple[str, ...] = ()

    def payload(self) -> dict[str, Any]:
        """Return the JSON-ready notification sent to sinks."""
        out: dict[str, Any] = {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "metric": self.metric,
            "subject": self.subject,
            "severity": self.severity,
            "status": self.status,
            "value": self.value,
            "threshold": self.threshold,
            "condition": self.condition,
            "message": self.message,
        }
        for k in ("first_seen", "last_seen", "resolved_at", "updated_at"):
            v = getattr(self, k)
            out[k] = v.isoformat() if v is not None else None
        return out

    def row(self) -> dict[str, Any]:
        """Return the ops.alerts row of this outcome."""
        return {k: (self.notify if k == "notified" else getattr(self, k)) for k in ALERT_SCHEMA}


@dataclass(frozen=True)
class AlertState:
    """The current alert of each (rule, subject): the latest row of ops.alerts per pair."""

    frame: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ALERT_SCHEMA))

    @classmethod
    def load(cls, lh: Any) -> AlertState:
        """Load the current state from ops.alerts (empty if never written)."""
        return cls.from_rows(lh.scan_or_empty(ALERTS_TABLE).collect())

    @classmethod
    def from_rows(cls, rows: pl.DataFrame) -> AlertState:
        """Reduce ops.alerts rows to the latest row per (rule, subject)."""
        latest = (
            rows.select(list(ALERT_SCHEMA))
            .sort("updated_at", maintain_order=True)
            .unique(["rule", "subject"], keep="last", maintain_order=True)
        )
        return cls(latest.cast(dict(ALERT_SCHEMA)))

    @property
    def firing(self) -> pl.DataFrame:
        """Return the alerts currently firing."""
        return self.frame.filter(pl.col("status") == "firing")

    def apply(self, events: Sequence[AlertEvent]) -> AlertState:
        """Return the state after these evaluation outcomes (this state is not changed)."""
        if not events:
            return self
        return AlertState.from_rows(pl.concat([self.frame, events_frame(events)]))


def events_frame(events: Sequence[AlertEvent]) -> pl.DataFrame:
    """Return evaluation outcomes as ops.alerts rows."""
    return pl.DataFrame([e.row() for e in events], schema=ALERT_SCHEMA)
