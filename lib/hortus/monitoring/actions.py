"""Event actions: the one hook through which an operations event makes something happen.

Alert rules *notify* about events; actions *act* on them.  An action is a function
``action(lh, event) -> str | None`` (the returned text is a note for the record) bound
to event types, either in params.yaml

```yaml
alerts:
  actions:
    model_promoted: [rescore]          # built-in: rescore the new champion
    table_committed: ["mypkg.hooks:refresh_online_store"]
```

or in code, with `register_action("model_promoted", fn)`.  `hortus.monitoring.events.emit`
runs the actions of an event's type right after its alert rules, in order, synchronously,
in the emitting process.  Each run is recorded as an event of its own,
``action_succeeded`` or ``action_failed`` (subject ``<action>:<event subject>``, detail
with the triggering event, the note or the error), so a failed action is never lost: it
is in ops.events, printed on stderr, and rules subscribed to ``action_failed`` alert on
it (resolved by the next success).  A failing action never undoes or fails the event
that triggered it (the promotion stands).  Actions are not run for ``action_*`` events.

Built-in actions
----------------
``rescore``: on ``model_promoted`` or ``model_rolled_back`` of the ``champion`` alias,
runs ``hortus score --model <name>`` in a subprocess, in the project root, as the
project's service user (``HORTUS_ACTION_USER``, else ``pipeline``: scoring reads the
features in the clear, which the promoting ML engineer may only see masked; the
promotion itself already needed the promote grant and four eyes, and the note records
who promoted) (skipped, with a note, for a promotion by the gate stage: in `dvc repro`
the score stage follows it).  A subprocess rather than an in-process call of the score stage because
the library must not import the pipeline layer (stages use the library, never the
reverse); because the scoring run is then exactly what an operator would run, recorded
in ops.pipeline_runs with its own ``stage_failed``/``stage_succeeded`` event; and
because a crash or memory blow-up while scoring cannot take the promoting process
down.  The cost is the start-up of one Python process (about 2 s) on a promotion.

``refresh_online``: on ``stage_succeeded`` of the ``watch`` stage (each micro-batch),
updates the online store for the entities the batch touched
(`hortus.features.online_refresh`), in the watching process; bind it with
``stage_succeeded: [refresh_online]``.  Other stages' successes are not applicable to it
and leave no record (an action returning `NotApplicable` is not recorded).

Examples
--------
>>> register_action("model_promoted", lambda lh, e: f"saw {e.subject}", name="note")
>>> [a.name for a in actions_for({}, "model_promoted")]
['note']
>>> clear_registered()
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hortus.errors import HortusError
from hortus.monitoring.event_types import check_event_type

if TYPE_CHECKING:
    from hortus.monitoring.events import Event

CHAMPION = "champion"
# the user actions run as (HORTUS_ACTION_USER overrides): the pipeline's service account
ACTION_USER = "pipeline"
RESCORE_TIMEOUT_S = 3600.0
# stages whose promotions the pipeline's own `score` stage follows (dvc repro): no rescore
SCORED_NEXT = ("gate",)
# stages after whose success refresh_online updates the online store incrementally
REFRESH_STAGES = ("watch",)

ActionFn = Callable[[Any, "Event"], "str | None"]


class ActionError(HortusError):
    """An action is misconfigured, or it ran and failed."""


@dataclass(frozen=True)
class Action:
    """An action bound to an event type: its name (built-in or `module:function`) and function."""

    name: str
    fn: ActionFn


@dataclass(frozen=True)
class ActionOutcome:
    """One run of an action on an event: ok or failed, with a note or the error."""

    action: str
    event_type: str
    subject: str
    ok: bool
    note: str


# ------------------------------------------------------------------ built-ins
def rescore(lh: Any, event: Event) -> str:
    """Rescore a model whose champion moved: run `hortus score --model NAME` in a subprocess.

    Acts on ``model_promoted`` / ``model_rolled_back`` events of the champion alias (other
    aliases and events are skipped with a note).  Raises ActionError with the command's
    exit code and the end of its stderr when scoring fails.
    """
    alias = event.detail.get("alias", CHAMPION)
    model = str(event.detail.get("model") or event.subject.split(":")[0])
    if event.type not in ("model_promoted", "model_rolled_back") or alias != CHAMPION:
        return f"skipped: rescore acts on champion moves, not {event.type} of {alias}"
    if lh.stage in SCORED_NEXT:
        return f"skipped: promoted by the {lh.stage} stage; the pipeline's score stage follows"
    root = lh.paths.root
    cmd = [sys.executable, "-m", "hortus.cli", "--root", str(root), "score", "--model", model]
    user = os.environ.get("HORTUS_ACTION_USER") or ACTION_USER
    env = os.environ | {"HORTUS_USER": user}
    try:
        proc = subprocess.run(
            cmd, cwd=root, env=env, capture_output=True, text=True, timeout=RESCORE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise ActionError(
            f"`hortus score --model {model}` did not finish within {RESCORE_TIMEOUT_S:g} s"
        ) from None
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise ActionError(f"`hortus score --model {model}` exited {proc.returncode}: {tail}")
    return (
        f"`hortus score --model {model}` ok as {user} (champion v{event.detail.get('version')}, "
        f"moved by {lh.user})"
    )


class NotApplicable(str):
    """An action's note saying it had nothing to do with this event: the run is not recorded.

    For actions bound to a frequent event of which they handle a few (``refresh_online``
    on ``stage_succeeded`` acts on the watch stage only): recording "skipped" after every
    other stage would fill ops.events with non-events.
    """


def refresh_online(lh: Any, event: Event) -> str:
    """Update the online store for the entities the last watch batch touched.

    Bound to ``stage_succeeded`` (params.yaml ``alerts.actions``); acts on the stages in
    `REFRESH_STAGES` (the watcher's micro-batches) and is not applicable to others (not
    recorded).  Runs in the watching process (`hortus.features.online_refresh.refresh_project`:
    only the touched entities are recomputed, a few hundred milliseconds for a batch of the
    demo), so served features are as old as the last batch.  With no online store yet
    (the features stage never ran) it is not applicable either.
    """
    if event.type != "stage_succeeded" or event.subject not in REFRESH_STAGES:
        return NotApplicable(f"refresh_online acts on {', '.join(REFRESH_STAGES)} batches")
    from hortus.features.online_refresh import refresh_project

    report = refresh_project(lh)
    if report.skipped:
        return NotApplicable(report.note)
    return report.note


BUILTIN: dict[str, ActionFn] = {"rescore": rescore, "refresh_online": refresh_online}

# actions bound in code, by event type (process-wide)
_REGISTERED: dict[str, list[Action]] = {}


def register_action(event_type: str, fn: ActionFn | str, *, name: str | None = None) -> None:
    """Bind an action (a function, a built-in name or 'module:function') to an event type."""
    check_event_type(event_type, where="register_action")
    action = resolve(fn, where=f"action for {event_type}") if isinstance(fn, str) else None
    if action is None:
        assert callable(fn)
        action = Action(name or getattr(fn, "__name__", "action"), fn)
    _REGISTERED.setdefault(event_type, []).append(action)


def clear_registered() -> None:
    """Forget every action bound in code (tests; a notebook starting over)."""
    _REGISTERED.clear()


def resolve(ref: str, *, where: str) -> Action:
    """Return the action a name stands for: a built-in, or an importable 'module:function'."""
    if ref in BUILTIN:
        return Action(ref, BUILTIN[ref])
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ActionError(
            f"{where}: unknown action {ref!r}; use a built-in ({', '.join(sorted(BUILTIN))}) "
            "or 'module:function'"
        )
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ActionError(f"{where}: cannot load action {ref!r}: {exc}") from None
    if not callable(fn):
        raise ActionError(f"{where}: action {ref!r} is not callable")
    return Action(ref, fn)


def load_actions(spec: Mapping[str, Any] | None, *, source: str = "alerts.actions") -> dict:
    """Parse `{event_type: [action, ...]}` (params.yaml `alerts.actions`) into Actions."""
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise ActionError(f"{source}: expected a mapping of event type -> actions, got {spec!r}")
    out: dict[str, tuple[Action, ...]] = {}
    for event_type, refs in spec.items():
        check_event_type(str(event_type), where=source)
        refs = [refs] if isinstance(refs, str) else refs
        if not isinstance(refs, Sequence) or not all(isinstance(r, str) for r in refs):
            raise ActionError(f"{source}.{event_type}: expected a list of action names")
        out[str(event_type)] = tuple(resolve(r, where=f"{source}.{event_type}") for r in refs)
    return out


def actions_for(configured: Mapping[str, Sequence[Action]], event_type: str) -> list[Action]:
    """Return the actions of an event type: configured ones first, then those bound in code."""
    if event_type.startswith("action_"):
        return []  # an action's own outcome never triggers actions (no loops)
    return [*configured.get(event_type, ()), *_REGISTERED.get(event_type, ())]


def run_actions(lh: Any, event: Event, actions: Sequence[Action]) -> list[ActionOutcome]:
    """Run actions on an event in order; return each outcome (a failure is reported, not raised).

    A failure is printed on stderr here and recorded by the caller as an
    ``action_failed`` event (`hortus.monitoring.events.emit`).
    """
    outcomes = []
    for action in actions:
        try:
            note = action.fn(lh, event) or "ok"
            ok = True
        except Exception as exc:  # reported on stderr and recorded as action_failed
            note = f"{type(exc).__name__}: {exc}"
            ok = False
            print(
                f"hortus: action {action.name!r} on {event.type} {event.subject!r} failed: {note}",
                file=sys.stderr,
            )
        if ok and isinstance(note, NotApplicable):
            continue  # nothing done: no action_succeeded event (see NotApplicable)
        outcomes.append(ActionOutcome(action.name, event.type, event.subject, ok, note))
    return outcomes
