"""Four-eyes approvals of model versions, checked against the access policy.

`approve` needs the `approve` grant and an approver who is not the version's
author (`hortus.governance.access.check_four_eyes`); the approval is appended to
`ops.model_approvals`.  `_ApprovalsMixin` holds these methods of
`hortus.models.registry.Registry` (and the policy look-ups promotion shares); it
relies on the registry's `_lh`, `name`, `get` and `_append`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

import polars as pl

from hortus.errors import HortusError
from hortus.governance.access import AccessDenied, Decision, check_four_eyes
from hortus.models._registry_base import APPROVALS, VERSIONS, ModelVersion, model_flag


class ApprovalRequired(HortusError):
    """A promotion to champion without an approval by an approver who is not the author."""


@dataclass(frozen=True)
class Approval:
    """One four-eyes approval of a model version (a row of ops.model_approvals).

    `recorded` is False when the approver had already approved the version and
    nothing new was written (the fields are then those of the earlier approval).
    """

    name: str
    version: int
    approver: str
    author: str
    approved_at: datetime
    reason: str
    policy_version: str
    recorded: bool = True

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict (approved_at as ISO 8601)."""
        d = asdict(self)
        d["approved_at"] = self.approved_at.isoformat()
        return d


_APPROVAL_FIELDS = tuple(f for f in Approval.__dataclass_fields__ if f != "recorded")


class _ApprovalsMixin:
    """The four-eyes methods of `Registry`: policy decisions, approvals and what is missing."""

    def _decide(self, action: str, user: str | None = None) -> Decision:
        """Return the policy's decision on `action` for a user (default: acting); no audit."""
        assert self._lh.policy is not None
        return self._lh.policy.decide(user or self._lh.user, action, self.name)

    def _holders_of(self, action: str, *, but: str | None = None) -> list[str]:
        """Return the policy's users holding a model grant (for hints), except `but`."""
        assert self._lh.policy is not None
        users = sorted(self._lh.policy.users)
        return [u for u in users if u != but and self._decide(action, u).allowed]

    def _deny(self, decision: Decision, missing: str) -> AccessDenied:
        """Audit a refused attempt (written before returning) and return the error to raise."""
        refused = replace(decision, allowed=False, grant=None, missing=missing)
        return self._lh._refuse(refused)

    def _flag(self) -> str:
        """Return the `--model NAME` a printed command needs (none for the default model)."""
        return model_flag(self._lh.paths.root, self.name)

    def approvals(self, ref: str | int | None = None) -> pl.DataFrame:
        """Return the approvals of this model (or of one version), oldest first."""
        frame = self._lh.scan_or_empty(APPROVALS).filter(pl.col("name") == self.name)
        if ref is not None:
            frame = frame.filter(pl.col("version") == self.get(ref).version)
        return frame.sort("approved_at").collect()

    def approve(self, ref: str | int, *, reason: str = "") -> Approval:
        """Approve a version as the acting user (four eyes); return the approval.

        The acting user (`Lakehouse.user`) must hold the `approve` grant on the
        model and must not be the version's author, else AccessDenied naming
        approver, author and version (audited as a denied `approve`).  The
        approval is appended to ops.model_approvals and audited; approving a
        version one has already approved records nothing new (`recorded` False).

        Examples
        --------
        >>> reg = Registry(Lakehouse.open(user="paula"), "churn")  # doctest: +SKIP
        >>> reg.approve(3, reason="report read").author        # doctest: +SKIP
        'mia'
        """
        mv = self.get(ref)
        user = self._lh.user
        assert self._lh.policy is not None
        try:
            check_four_eyes(user, mv.author, self._lh.policy, model=self.name)
        except AccessDenied as exc:
            who = f"model {self.name} v{mv.version}, author {mv.author!r}, approver {user!r}"
            raise self._deny(exc.decision, f"{exc.decision.missing} ({who})") from None
        earlier = self.approvals(mv.version).filter(pl.col("approver") == user)
        if earlier.height:
            self._lh.authorize(
                "approve",
                self.name,
                detail=f"v{mv.version} author={mv.author} already approved; nothing recorded",
            )
            row = earlier.row(0, named=True)
            return Approval(**{k: row[k] for k in _APPROVAL_FIELDS}, recorded=False)
        decision = self._lh.authorize(
            "approve", self.name, detail=f"v{mv.version} author={mv.author}"
        )
        row = {
            "name": self.name,
            "version": mv.version,
            "approver": user,
            "author": mv.author,
            "approved_at": datetime.now(UTC),
            "reason": reason,
            "policy_version": decision.policy_version,
        }
        inputs = {VERSIONS: self._lh.version(VERSIONS)}
        self._append(APPROVALS, row, inputs=inputs, note=f"approve {self.name} v{mv.version}")
        return Approval(**row)

    def _approval_status(self, mv: ModelVersion) -> tuple[tuple[str, ...], str | None]:
        """Return the approvers that count for a version, or what is missing."""
        approvers = self.approvals(mv.version)["approver"].unique(maintain_order=True).to_list()
        valid = tuple(a for a in approvers if a != mv.author and self._decide("approve", a).allowed)
        if valid:
            return valid, None
        eligible = ", ".join(self._holders_of("approve", but=mv.author)) or "none in the policy"
        v, flag = mv.version, self._flag()
        problem = (
            f"model {self.name} v{v} needs approval by an approver who is not {mv.author}: "
            f"`HORTUS_USER=<approver> hortus models approve {v}{flag}`, then "
            f"`hortus models promote {v}{flag}` (approvers: {eligible})"
        )
        ignored = [
            f"{a} (the author)" if a == mv.author else f"{a} (no approve grant now)"
            for a in approvers
        ]
        if ignored:
            problem += f"; approvals not counted: {', '.join(ignored)}"
        return (), problem
