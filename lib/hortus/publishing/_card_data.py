"""The model card as data: its inputs (`CardText`), checklist items and the card itself.

Re-exported by `hortus.publishing.model_card`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from hortus.checks.gate import GATE_SECTIONS, GateConfig
from hortus.checks.model_checks import (
    _plain,  # one JSON conversion (NaN, numpy, dates) for check results and cards
)
from hortus.errors import HortusError

SCHEMA = "hortus.model_card/1"
RECEIPT_FIELDS = ("git_commit", "dvc_lock_sha256", "data_md5", "uv_lock_sha256")
CHECKLIST = {
    "gate_passed": "The latest gate run of the version passed",
    "four_eyes": "Approved by an approver who is not the author (four eyes)",
    "artifact_verified": "The stored artifact matches its registered sha256",
    "receipt_complete": "The build receipt is complete",
    "clean_build": "Built from a committed, clean git tree",
    "training_data_verified": "The training data at the recorded versions hashes as recorded",
    "no_pii_features": "No personal data (PII) among the features",
    "segments_ok": "No segment significantly worse than overall",
    "fairness": "Fairness ratios within the threshold",
    "drift": "Drift since training below the threshold",
    "documented": "Owners, intended use and limitations are stated",
}


# -------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class CardText:
    """What people write about a model: owners, intended use, limitations.

    Examples
    --------
    >>> CardText.from_dict({"owners": ["ml-engineers"], "intended_use": "ranking"}).owners
    ('ml-engineers',)
    """

    owners: tuple[str, ...] = ()
    intended_use: str = ""
    out_of_scope: str = ""
    limitations: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None, where: str = "model_card") -> CardText:
        """Build the text from a params section, refusing unknown keys by name."""
        doc = dict(doc or {})
        unknown = sorted(set(doc) - set(cls.__dataclass_fields__))
        if unknown:
            raise HortusError(
                f"{where}: unknown key(s) {unknown}; expected {sorted(cls.__dataclass_fields__)}"
            )

        def strings(key: str) -> tuple[str, ...]:
            value = doc.get(key) or ()
            return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)

        return cls(
            owners=strings("owners"),
            intended_use=str(doc.get("intended_use") or "").strip(),
            out_of_scope=str(doc.get("out_of_scope") or "").strip(),
            limitations=strings("limitations"),
        )


def settings_from_params(doc: Mapping[str, Any], model: str) -> tuple[CardText, GateConfig]:
    """Return the card text of `model` and the gate thresholds from a parsed params.yaml.

    The text is `model_card.<model>` (empty when absent); the thresholds come from the
    `gate` section (its drift, pii, skew and model_checks keys), so the checklist
    judges with the same numbers as the promotion gate.
    """
    cards = dict(doc.get("model_card") or {})
    text = CardText.from_dict(cards.get(model), where=f"params.yaml model_card.{model}")
    gate = dict(doc.get("gate") or {})
    config = GateConfig.from_dict(
        {k: gate[k] for k in GATE_SECTIONS if k in gate}, where="params.yaml gate"
    )
    return text, config


# -------------------------------------------------------------------- result
@dataclass(frozen=True)
class CheckItem:
    """One governance checklist item: passed or failed, and why."""

    name: str
    passed: bool
    detail: str

    @property
    def title(self) -> str:
        """Return the item's human title."""
        return CHECKLIST.get(self.name, self.name)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict."""
        return {
            "name": self.name,
            "title": self.title,
            "passed": self.passed,
            "detail": self.detail,
        }


@dataclass
class ModelCard:
    """Every section of a model report for one version, as data (see the module docstring)."""

    model: str
    version: int
    aliases: tuple[str, ...]
    viewer: str
    generated_at: datetime
    details: dict[str, Any]
    text: CardText
    receipt: dict[str, Any]
    training: pl.DataFrame
    evaluation: dict[str, Any]
    metrics: dict[str, Any]
    recomputed: dict[str, Any] | None
    segments: pl.DataFrame | None
    fairness: pl.DataFrame | None
    fairness_checks: list[dict[str, Any]]
    importance: pl.DataFrame | None
    gate_runs: pl.DataFrame
    gate_checks: list[dict[str, Any]]
    drift: dict[str, Any] | None
    drift_table: pl.DataFrame | None
    approvals: pl.DataFrame
    checklist: list[CheckItem]
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Return True when every checklist item passed."""
        return all(item.passed for item in self.checklist)

    @property
    def failed(self) -> list[CheckItem]:
        """Return the failed checklist items."""
        return [item for item in self.checklist if not item.passed]

    def checklist_frame(self) -> pl.DataFrame:
        """Return the checklist as a frame: item, title, result (PASS/FAIL), detail."""
        return pl.DataFrame(
            {
                "item": [i.name for i in self.checklist],
                "check": [i.title for i in self.checklist],
                "result": ["PASS" if i.passed else "FAIL" for i in self.checklist],
                "detail": [i.detail for i in self.checklist],
            },
            schema={"item": pl.String, "check": pl.String, "result": pl.String,
                    "detail": pl.String},
        )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """Return the machine-readable card (`hortus notebooks publish` writes it as card.json)."""
        latest = self.gate_runs.row(-1, named=True) if self.gate_runs.height else None
        return _plain(
            {
                "schema": SCHEMA,
                "model": self.model,
                "version": self.version,
                "aliases": list(self.aliases),
                "author": self.details.get("author"),
                "created_at": self.details.get("created_at"),
                "artifact_sha256": self.details.get("artifact_sha256"),
                "algorithm": self.details.get("algorithm"),
                "owners": list(self.text.owners),
                "intended_use": self.text.intended_use,
                "limitations": list(self.text.limitations),
                "metrics": self.metrics,
                "gate": None
                if latest is None
                else {
                    "run_id": latest["run_id"],
                    "passed": latest["passed"],
                    "finished_at": latest["finished_at"],
                },
                "approved_by": sorted(set(self.approvals["approver"].to_list()))
                if self.approvals.height
                else [],
                "passed": self.passed,
                "verdict": "pass" if self.passed else "fail",
                "failed": [i.name for i in self.failed],
                "checklist": [i.to_dict() for i in self.checklist],
                "viewer": self.viewer,
                "generated_at": self.generated_at,
            }
        )
