"""Operations event types: the registry shared by events and alert rules.

Kept apart from `hortus.monitoring.events` so that alert rules can check the event types they
subscribe to without importing the events module (which imports the alerts module).

Some events clear others (`CLEARS`): ``gate_passed`` clears ``gate_failed`` (a later gate of
the same model passed), ``stage_succeeded`` clears ``stage_failed`` (a later run of the same
stage succeeded) and ``action_succeeded`` clears ``action_failed``.  A rule subscribed to
an event type is evaluated on its clearing events too, and sees them as the value 0, so
its alert resolves (see `hortus.monitoring.events`).
"""

from __future__ import annotations

import re

from hortus.errors import HortusError

EVENT_TYPES: set[str] = {
    "table_committed",  # Lakehouse.write committed a table outside ops (subject: the table)
    "model_promoted",  # Registry.promote moved an alias (subject: model:vN)
    "model_rolled_back",  # Registry.rollback moved an alias back (subject: model:vN)
    "stage_failed",  # record_run: a stage raised (subject: the stage)
    "stage_succeeded",  # record_run: a stage ran to the end (clears stage_failed)
    "gate_failed",  # the gate stage: a version failed its gate (subject: model:vN)
    "gate_passed",  # the gate stage: a version passed (clears gate_failed of the model)
    "action_failed",  # an event action raised (subject: action:event subject)
    "action_succeeded",  # an event action ran to the end (clears action_failed)
}
CLEARS: dict[str, str] = {
    "gate_passed": "gate_failed",
    "stage_succeeded": "stage_failed",
    "action_succeeded": "action_failed",
}
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class EventError(HortusError):
    """An event is malformed or of an unknown type."""


def register_event_type(name: str, *, clears: str | None = None) -> None:
    """Add an event type (lower_snake_case) that events and rules may use.

    `clears` names the event type whose alerts this one resolves (e.g. a
    ``drift_gone`` that clears ``drift_detected``).
    """
    if not _TYPE_NAME.match(name):
        raise EventError(f"event type {name!r} must be lower_snake_case, e.g. drift_detected")
    if clears is not None:
        check_event_type(clears, where=f"event type {name!r} (clears)")
        CLEARS[name] = clears
    EVENT_TYPES.add(name)


def check_event_type(name: str, *, where: str = "event") -> None:
    """Refuse an unknown event type, naming where it was used and the known types."""
    if name not in EVENT_TYPES:
        raise EventError(
            f"{where}: unknown event type {name!r}; known: {sorted(EVENT_TYPES)} "
            "(register_event_type adds one)"
        )


def alert_type(name: str) -> str:
    """Return the event type whose alerts an event of type `name` raises or clears."""
    return CLEARS.get(name, name)
