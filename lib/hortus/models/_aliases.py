"""Aliases of a model: an append-only event log replayed into holders and stacks.

`ops.model_aliases` is an append-only event log (promote, rollback, register,
clear).  Each event records the version the alias points to afterwards and the
one before, so replaying the log gives the current aliases and each alias'
stack of holders, which is what rollback walks back through.

Rollback semantics
------------------
Replaying an alias' events builds a stack of holders: `promote`/`register`
push the new version (pointing an alias at its current holder is a no-op and
records nothing), `clear` pushes "nothing".  `rollback` pops the current
holder, and with it any entries under it that are "nothing" or the same
version, and points the alias at the version now on top; the event records
that version and the one left.  A second rollback therefore goes one further
back, and a version rolled back away from is gone from the stack, so a later
rollback never returns to it (promote 1, 2, 3; rollback -> 2; promote 4;
rollback -> 2; rollback -> 1; rollback -> error).  Rolling back a cleared
alias restores its last holder.  With no earlier version, rollback is an error.

`_AliasesMixin` holds these methods of `hortus.models.registry.Registry`; it
relies on the registry's `_lh`, `name`, `get`, `_append` and `_require_promote`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from hortus.errors import HortusError
from hortus.lakehouse.lease import LocalStore, lease_root
from hortus.lakehouse.tables import WriteConflict
from hortus.models._registry_base import (
    _ALIAS,
    _VERSION_REF,
    ALIASES,
    CHAMPION,
    VERSIONS,
    ModelVersion,
)

_ANY = object()  # _move without compare-and-set


class AliasMoved(HortusError):
    """An alias moved between the caller's read and its move (compare-and-set lost)."""


class _AliasesMixin:
    """The alias methods of `Registry`: read, replay, move, roll back and clear aliases."""

    def _events(self) -> pl.DataFrame:
        """Return this model's alias events in replay order.

        Columns added to the contract later (approved_by, gate_run_id) are null
        in events written before them.
        """
        events = self._lh.scan_or_empty(ALIASES)
        have = set(events.collect_schema().names())
        schema = self._lh.catalog.get(ALIASES).schema
        return (
            events.with_columns(
                pl.lit(None, dtype).alias(c) for c, dtype in schema.items() if c not in have
            )
            .filter(pl.col("name") == self.name)
            .sort("seq", "at")
            .collect()
        )

    def aliases(self) -> dict[str, int]:
        """Return the current alias -> version mapping (cleared aliases are left out)."""
        current = (
            self._events()
            .group_by("alias")
            .agg(pl.col("version").last())
            .drop_nulls("version")
            .sort("alias")
        )
        return dict(zip(current["alias"].to_list(), current["version"].to_list(), strict=True))

    def history(self, alias: str | None = None) -> pl.DataFrame:
        """Return the alias event log of this model (optionally of one alias), oldest first."""
        ev = self._events()
        return ev.filter(pl.col("alias") == alias) if alias else ev

    def _holders(self, alias: str) -> list[int | None]:
        """Replay one alias' events into its stack of holders (None = cleared)."""
        stack: list[int | None] = []
        for action, version in self.history(alias).select("action", "version").iter_rows():
            if action == "rollback":
                while stack and stack[-1] != version:
                    stack.pop()
                if not stack:  # only if the log was edited by hand: restart from the target
                    stack.append(version)
            elif not stack or stack[-1] != version:
                stack.append(version)
        return stack

    @staticmethod
    def _rollback_target(stack: list[int | None]) -> int | None:
        """Return the holder under the current one, skipping cleared and equal entries."""
        current = stack[-1] if stack else None
        below = [v for v in stack[:-1] if v is not None and v != current]
        return below[-1] if below else None

    @staticmethod
    def _check_alias(alias: str) -> None:
        if not _ALIAS.fullmatch(alias) or _VERSION_REF.fullmatch(alias):
            raise HortusError(
                f"alias {alias!r} is not valid: use lower-case letters, digits, '_' and '-', "
                "starting with a letter and not shaped like a version (v3)"
            )

    def _move(
        self,
        alias: str,
        version: int | None,
        *,
        action: str,
        reason: str,
        approved_by: str | None = None,
        gate_run_id: str | None = None,
        expected: object = _ANY,
    ) -> bool:
        """Append one alias event; return False (and write nothing) if nothing changes.

        Compare-and-set: with `expected` (the holder the caller saw when it decided),
        the alias is read again under the alias' lock and the event is written only
        if it still points there; else `AliasMoved` says who moved it (nothing written).
        The event is also committed on the snapshot it was decided on, with a Delta
        transaction identifier per model (`Lakehouse.write(guard=...)`): an alias event
        of the same model committed meanwhile (from another machine too: the lock is
        local, the lakehouse may be on object storage) refuses it, and the move is
        decided again on the new events.
        """
        self._check_alias(alias)
        # the model's alias lock (local disk: flock; the seq of its events is per model)
        with LocalStore(lease_root(self._lh.paths.lakehouse)).exclusive(f"aliases-{self.name}"):
            for _ in range(5):
                self._lh.reads.pop(ALIASES, None)
                events = self._events()  # one snapshot: the decision and the guard's version
                read = self._lh.reads.get(ALIASES)  # None: the table was not written yet
                last = events.filter(pl.col("alias") == alias).tail(1)
                previous = last["version"][0] if last.height else None
                if expected is not _ANY and previous != expected:
                    raise AliasMoved(self._moved(alias, expected, previous, version, events))
                if previous == version:
                    return False
                try:
                    self._write_move(alias, version, previous, events, action=action,
                                     reason=reason, approved_by=approved_by,
                                     gate_run_id=gate_run_id, read=read)  # fmt: skip
                except WriteConflict:
                    continue  # another move of this model came first: decide again
                return True
        raise HortusError(f"aliases of model {self.name}: too many concurrent moves, try again")

    def _moved(
        self, alias: str, expected: object, now: int | None, wanted: int | None, ev: pl.DataFrame
    ) -> str:
        last = ev.filter(pl.col("alias") == alias).tail(1)
        by = f" by {last['actor'][0]} ({last['action'][0]})" if last.height else ""

        def show(v: object) -> str:
            return f"v{v}" if v is not None else "unset"

        return (
            f"{alias} of model {self.name} moved from {show(expected)} to {show(now)}{by} "
            f"meanwhile; nothing changed ({alias} was not moved to {show(wanted)}): check "
            "the new holder and try again if still wanted"
        )

    def _write_move(
        self,
        alias: str,
        version: int | None,
        previous: int | None,
        events: pl.DataFrame,
        *,
        action: str,
        reason: str,
        approved_by: str | None,
        gate_run_id: str | None,
        read: int | None = None,
    ) -> None:
        row = {
            "seq": int(events["seq"].max() or 0) + 1,
            "name": self.name,
            "at": datetime.now(UTC),
            "alias": alias,
            "version": version,
            "previous_version": previous,
            "action": action,
            "actor": self._lh.user,
            "reason": reason,
            "approved_by": approved_by,
            "gate_run_id": gate_run_id,
        }
        inputs = {VERSIONS: self._lh.version(VERSIONS)} if self._lh.exists(VERSIONS) else {}
        guard = (f"hortus-aliases/{self.name}", row["seq"], read)
        self._append(ALIASES, row, inputs=inputs, note=f"{action} {self.name} {alias}", guard=guard)

    def rollback(self, *, alias: str = CHAMPION, reason: str = "") -> ModelVersion:
        """Point an alias back at its previous holder (see the module docstring); return it.

        Needs the `promote` grant (audited), but no new gate or approval.
        """
        self._check_alias(alias)
        self._require_promote(f"roll back {alias} of model {self.name}")
        stack = self._holders(alias)
        target = self._rollback_target(stack)
        current = stack[-1] if stack else None
        if target is None:
            where = f"it points to v{current}" if current else "it points to no version"
            raise HortusError(
                f"cannot roll back alias {alias!r} of model {self.name}: {where} and has "
                "no earlier holder to go back to"
            )
        was = f"v{current}" if current else "unset"
        self._lh.authorize("promote", self.name, detail=f"rollback {alias} {was} -> v{target}")
        self._move(alias, target, action="rollback", reason=reason, expected=current)
        self._announce("model_rolled_back", alias, target, current, reason)  # _PromotionMixin
        return self.get(target)

    def clear(self, alias: str, *, reason: str = "") -> None:
        """Make an alias point to no version (a later rollback restores its holder).

        Needs the `promote` grant (audited).
        """
        self._check_alias(alias)
        self._require_promote(f"clear {alias} of model {self.name}")
        current = self.aliases().get(alias)
        if current is None:
            raise HortusError(f"alias {alias!r} of model {self.name} is not set")
        self._lh.authorize("promote", self.name, detail=f"clear {alias} v{current} -> unset")
        self._move(alias, None, action="clear", reason=reason, expected=current)
