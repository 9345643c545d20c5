"""Operations event types: the registry shared by events and alert rules.

Kept apart from `hortus.monitoring.events` so that alert rules can check the event types they
subscribe to without importing the events module (which imports the alerts module).
"""

from __future__ import annotations

import re

from hortus.errors import HortusError

EVENT_TYPES: set[str] = {"table_committed", "model_promoted", "stage_failed", "gate_failed"}
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class EventError(HortusError):
    """An event is malformed or of an unknown type."""


def register_event_type(name: str) -> None:
    """Add an event type (lower_snake_case) that events and rules may use."""
    if not _TYPE_NAME.match(name):
        raise EventError(f"event type {name!r} must be lower_snake_case, e.g. drift_detected")
    EVENT_TYPES.add(name)


def check_event_type(name: str, *, where: str = "event") -> None:
    """Refuse an unknown event type, naming where it was used and the known types."""
    if name not in EVENT_TYPES:
        raise EventError(
            f"{where}: unknown event type {name!r}; known: {sorted(EVENT_TYPES)} "
            "(register_event_type adds one)"
        )
