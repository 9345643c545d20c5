"""What the `hortus` command prints after an error so the user knows what to do next.

- An access denial names the users (and their groups) who may do the action and
  the command line to act as one (``HORTUS_USER=NAME hortus ...``).
- A user the policy does not list gets one hint: set HORTUS_USER to a user of the
  policy (with the users and their groups), instead of one denial per command.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from hortus.governance.access import AccessDenied, Policy

#: at most this many users are named in a hint (the policy may list many)
MAX_NAMED = 6


def _policy(args: argparse.Namespace | None) -> Policy | None:
    from hortus.cli._common import _paths

    try:
        paths = _paths(args) if args is not None else None
        return Policy.for_project(paths.policy) if paths is not None else None
    except Exception:  # noqa: BLE001 - a hint must never hide the error itself
        return None


def _users(policy: Policy, names: list[str]) -> str:
    shown = [f"{u} ({', '.join(policy.users[u])})" for u in names[:MAX_NAMED]]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def denial_hint(exc: AccessDenied, args: argparse.Namespace | None, argv: list[str]) -> list[str]:
    """Return the lines to print after an access denial (empty when there is nothing to add).

    Examples
    --------
    For `mia` approving a model only approvers may approve::

        hint: approve on recommender is granted to olivia (ml-engineers, approvers),
              paula (approvers); act as one of them:
                HORTUS_USER=paula hortus models approve 1
    """
    policy = _policy(args)
    if policy is None or policy.absent:
        return []  # no policy file: the denial already says to create one
    d = exc.decision
    command = shlex.join(["hortus", *argv])
    source = Path(policy.source).name
    allowed = []
    for user in policy.users:
        if user == d.user:
            continue  # e.g. the author of a version may not approve it (four eyes)
        try:
            if policy.decide(user, d.action, d.object).allowed:
                allowed.append(user)
        except Exception:  # noqa: BLE001
            return []
    if d.user not in policy.users:
        example = allowed[0] if allowed else next(iter(policy.users), "NAME")
        lines = [
            f"hint: you act as {d.user!r}, who is not in {source}, so every access is "
            "denied: set HORTUS_USER to a user of the policy (HORTUS_USER is who you act as; "
            "it defaults to the OS user)",
            f"  users: {_users(policy, list(policy.users))}",
        ]
        if allowed:
            lines.append(f"  may {d.action} {d.object}: {_users(policy, allowed)}")
        lines.append(f"  e.g.  HORTUS_USER={example} {command}")
        lines.append(f"  (or for the whole shell:  export HORTUS_USER={example})")
        return lines
    if not allowed:
        return [
            f"hint: no user of {source} may {d.action} {d.object}; a grant in {source} "
            "is needed (`hortus access check USER ACTION OBJECT` explains a decision)"
        ]
    return [
        f"hint: {d.action} on {d.object} is allowed to {_users(policy, allowed)}; "
        "act as one of them:",
        f"  HORTUS_USER={allowed[0]} {command}",
    ]
