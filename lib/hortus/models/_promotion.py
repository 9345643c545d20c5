"""Promotion of a version to an alias, and the gate runs promotion to champion needs.

`ops.gate_results` holds every gate run (`hortus gate VERSION`, see
`hortus.checks.gate`).  Pointing `champion` at a version needs the `promote`
grant, that version's latest gate run passed (else `GateRequired`) and an
approval by an approver who is not its author (else `ApprovalRequired`).
`_PromotionMixin` holds these methods of `hortus.models.registry.Registry`; it
relies on the registry's aliases and approvals methods.

Every move of an alias by `promote` or `rollback` is an operations event,
``model_promoted`` or ``model_rolled_back`` (subject ``name:vN``; detail: model,
alias, version, previous version, reason, actor's approvers and gate run), emitted
after the move is recorded: alert rules and actions (e.g. ``rescore`` of a new
champion, `hortus.monitoring.actions`) act on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl

from hortus.errors import HortusError
from hortus.governance.access import Decision
from hortus.models._approvals import ApprovalRequired
from hortus.models._registry_base import CHAMPION, GATES, VERSIONS, ModelVersion


class GateRequired(HortusError):
    """A promotion to champion without a passed gate; `failed` lists the failed checks."""

    def __init__(self, message: str, failed: list[dict] | None = None):
        super().__init__(message)
        self.failed = failed or []


@dataclass(frozen=True)
class _Readiness:
    """What promoting a version to champion relies on, and what is missing."""

    gate: dict | None  # the latest gate run, if it passed
    gate_problem: str | None
    failed: list[dict]
    approvers: tuple[str, ...]  # valid approvers, in approval order
    approval_problem: str | None


class _PromotionMixin:
    """The promotion methods of `Registry`: readiness, promote, gates and the promote grant."""

    def _readiness(self, mv: ModelVersion) -> _Readiness:
        gate, gate_problem, failed = self._gate_status(mv.version)
        approvers, approval_problem = self._approval_status(mv)
        return _Readiness(gate, gate_problem, failed, approvers, approval_problem)

    def _grant_problem(self, decision: Decision) -> str:
        holders = ", ".join(self._holders_of("promote")) or "nobody in the policy"
        return (
            f"user {self._lh.user!r} may not promote model {self.name} "
            f"(missing: {decision.missing}; users who may: {holders})"
        )

    def promote_allowed(self, ref: str | int, alias: str = CHAMPION) -> tuple[bool, str]:
        """Return whether the acting user may `promote` a version to an alias now, and why.

        Checks what `promote` checks (the `promote` grant; for `champion` also a
        passed gate and a four-eyes approval) without moving the alias or
        auditing a decision (the reads it makes are audited as reads).  The
        message names every missing piece with the command that supplies it,
        e.g. "needs approval by an approver who is not pipeline:
        `HORTUS_USER=<approver> hortus models approve 3`, then `hortus models
        promote 3`".

        Examples
        --------
        >>> ok, why = registry.promote_allowed(3)            # doctest: +SKIP
        >>> ok or print(why)                                   # doctest: +SKIP
        """
        mv = self.get(ref)
        self._check_alias(alias)
        target = f"model {self.name} v{mv.version}"
        current = self.aliases().get(alias)
        decision = self._decide("promote")
        missing = [] if decision.allowed else [self._grant_problem(decision)]
        ready = None
        if alias == CHAMPION and current != mv.version:
            ready = self._readiness(mv)
            missing += [p for p in (ready.gate_problem, ready.approval_problem) if p]
        if missing:
            return False, f"{target} cannot be promoted to {alias} yet: " + "; ".join(missing)
        if current == mv.version:
            return True, f"{alias} of model {self.name} already points to v{mv.version}"
        if ready is not None and ready.gate is not None:
            return True, (
                f"{target} may be promoted to {alias} by {self._lh.user}: gate run "
                f"{ready.gate['run_id']} passed, approved by {', '.join(ready.approvers)}"
            )
        return True, f"{target} may be pointed at {alias} by {self._lh.user} (promote grant)"

    def _refuse_champion(
        self, mv: ModelVersion, ready: _Readiness, decision: Decision, move: str
    ) -> HortusError:
        """Audit a refused promotion to champion; return GateRequired or ApprovalRequired."""
        missing = []
        if ready.gate_problem:
            failed = ",".join(c["name"] for c in ready.failed)
            why = f"failed: {failed}" if failed else "no gate result"
            missing.append(f"a passed gate of v{mv.version} ({why})")
        if ready.approval_problem:
            missing.append(f"an approval of v{mv.version} by an approver who is not {mv.author}")
        self._deny(decision, f"{'; '.join(missing)} (to move {move})")  # audited; not raised
        if ready.gate_problem:
            text = ready.gate_problem
            if ready.approval_problem:
                text += f"\n{ready.approval_problem}"
            return GateRequired(text, failed=ready.failed)
        return ApprovalRequired(f"{ready.approval_problem}; not promoted to {CHAMPION}")

    def promote(self, ref: str | int, *, alias: str = CHAMPION, reason: str = "") -> ModelVersion:
        """Point an alias at a version, recording the previous holder; return the version.

        Needs the `promote` grant (else AccessDenied); `champion` also needs the
        version's latest gate run passed (else GateRequired) and an approval by
        an approver who is not its author (else ApprovalRequired).  The event
        records the approvers and gate run relied on; every attempt is audited.
        Promoting the version the alias already points to records nothing.
        """
        mv = self.get(ref)
        self._check_alias(alias)
        current = self.aliases().get(alias)
        move = f"{alias} {'v' + str(current) if current else 'unset'} -> v{mv.version}"
        decision = self._decide("promote")
        if not decision.allowed:
            raise self._deny(decision, f"{decision.missing} (to move {move})")
        if current == mv.version:
            self._lh.authorize("promote", self.name, detail=f"{move}: nothing recorded")
            return self.get(mv.version)
        approved_by = gate_run_id = None
        if alias == CHAMPION:
            ready = self._readiness(mv)
            if ready.gate_problem or ready.approval_problem:
                raise self._refuse_champion(mv, ready, decision, move)
            assert ready.gate is not None
            approved_by, gate_run_id = ",".join(ready.approvers), ready.gate["run_id"]
        detail = move
        if approved_by:
            detail += f" approved_by={approved_by} gate_run={gate_run_id}"
        self._lh.authorize("promote", self.name, detail=detail)
        self._move(
            alias,
            mv.version,
            action="promote",
            reason=reason,
            approved_by=approved_by,
            gate_run_id=gate_run_id,
            expected=current,  # compare-and-set: a promotion that lost a race says so
        )
        self._announce(
            "model_promoted",
            alias,
            mv.version,
            current,
            reason,
            approved_by=approved_by,
            gate_run_id=gate_run_id,
        )
        return self.get(mv.version)

    def _announce(
        self,
        event_type: str,
        alias: str,
        version: int,
        previous: int | None,
        reason: str,
        **extra: object,
    ) -> None:
        """Emit the event of an alias move (already recorded); its rules and actions run now.

        A failing action is recorded as ``action_failed`` and does not fail the move; an
        event that cannot be emitted at all (e.g. a malformed `alerts` section) raises,
        saying that the move itself stands.
        """
        from hortus.monitoring.events import emit

        detail = {"model": self.name, "alias": alias, "version": version,
                  "previous_version": previous, "reason": reason} | extra  # fmt: skip
        try:
            emit(self._lh, event_type, f"{self.name}:v{version}", detail)
        except HortusError as exc:
            raise HortusError(
                f"{alias} of model {self.name} now points to v{version} (recorded), but its "
                f"{event_type} event failed: {exc}"
            ) from exc

    # ----------------------------------------------------------------- gates
    def record_gate(self, version: int, row: dict) -> None:
        """Append one gate run of `version` to ops.gate_results (see `hortus.checks.gate`)."""
        mv = self.get(version)
        row = dict(row) | {"name": self.name, "version": mv.version}
        inputs = {VERSIONS: self._lh.version(VERSIONS)}
        self._append(GATES, row, inputs=inputs, note=f"gate {self.name} v{mv.version}")

    def gates(self, ref: str | int | None = None) -> pl.DataFrame:
        """Return the gate runs of this model (or of one version), oldest first."""
        frame = self._lh.scan_or_empty(GATES).filter(pl.col("name") == self.name)
        if ref is not None:
            frame = frame.filter(pl.col("version") == self.get(ref).version)
        return frame.sort("finished_at").collect()

    def newest_gated(self) -> int | None:
        """Return the newest version whose latest gate run passed (None if no version did).

        What scores and reports fall back to before any champion exists.
        """
        passed = (
            self.gates()
            .group_by("version")
            .agg(pl.col("passed").last())  # gates() is oldest first: last = latest run
            .filter(pl.col("passed"))
        )
        return int(passed["version"].max()) if passed.height else None

    def _gate_status(self, version: int) -> tuple[dict | None, str | None, list[dict]]:
        """Return (latest run if it passed, what is wrong otherwise, its failed checks)."""
        runs = self.gates(version)
        if runs.height == 0:
            return (
                None,
                (
                    f"model {self.name} v{version} has no gate result: run "
                    f"`hortus gate {version}` before promoting it to {CHAMPION}"
                ),
                [],
            )
        last = runs.row(-1, named=True)
        if last["passed"]:
            return last, None, []
        failed = [c for c in json.loads(last["results"]) if not c["passed"]]
        lines = "".join(
            f"\n  - {c['name']}: value {c['value']}, threshold {c['threshold']}: {c['detail']}"
            for c in failed
        )
        return (
            None,
            (
                f"model {self.name} v{version} failed its gate (run {last['run_id']}, "
                f"{len(failed)} failed check(s)); not promoted to {CHAMPION}:{lines}"
            ),
            failed,
        )

    def require_gate(self, ref: str | int) -> dict:
        """Return the latest gate run of a version if it passed; else raise GateRequired."""
        mv = self.get(ref)
        last, problem, failed = self._gate_status(mv.version)
        if problem is not None:
            raise GateRequired(problem, failed=failed)
        assert last is not None
        return last

    def _require_promote(self, what: str) -> Decision:
        """Refuse (audited) unless the acting user holds the promote grant."""
        decision = self._decide("promote")
        if not decision.allowed:
            raise self._deny(decision, f"{decision.missing} (to {what})")
        return decision
