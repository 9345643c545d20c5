"""What `hortus init` infers from a table: the draft of every column and of the project.

The thresholds of the inference, `InitError`, `ColumnDraft` and `Draft`.
Re-exported by `hortus.project.scaffold`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from hortus.errors import HortusError

TASKS = ("binary", "multiclass", "regression")
MAX_CLASSES = 20  # at most this many distinct target values is classification
MAX_ALLOWED = 20  # strings with at most this many distinct values get an allowed list
MIN_ROWS = 20  # fewer rows than this cannot train and judge a model
SCAN_ROWS = 5000  # rows sampled by the PII scanner
ID_NAME_RE = re.compile(
    r"(?i)^(id|uuid|guid|key|index|row|rownum|row_?id)$|(_id|_uuid|_key|Id|ID)$"
)
NAME_COLUMN_RE = re.compile(
    r"(?i)^(full_?name|first_?name|last_?name|given_?name|family_?name|surname|"
    r"customer_?name|client_?name|person_?name|name)$"
)
ADDRESS_RE = re.compile(r"(?i)(^|_)(address|street|postcode|zip_?code|postal_?code)($|_)")
BIRTH_RE = re.compile(r"(?i)birth|(^|_)dob($|_)")
#: column names that suggest a sensitive (protected) attribute; confirm each
SENSITIVE_NAMES = frozenset({
    "sex", "gender", "race", "ethnicity", "ethnic_group", "ethnic_origin", "age", "age_band",
    "age_group", "religion", "nationality", "citizenship", "disability", "marital_status",
    "sexual_orientation", "pregnancy", "pregnant", "skin_colour", "skin_color", "caste",
    "political_opinion", "union_membership", "national_origin",
})  # fmt: skip
#: PII scanner kinds that make a column a direct identifier when most values match
DIRECT_KINDS = ("EMAIL", "PHONE", "IP", "IBAN", "CARD", "NAME")
DIRECT_SHARE = 0.5  # share of non-null sampled values that must match
_ISO_LAYOUT = "%Y-%m-%dT%H:%M:%S%.6fZ"  # how normalised datetimes are written to landing
#: extra datetime layouts accepted from the source (normalised to ISO UTC in landing)
_EXTRA_LAYOUTS = ("%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f",
                  "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%d/%m/%Y %H:%M:%S",
                  "%m/%d/%Y %H:%M:%S")  # fmt: skip
_EXTRA_DATES = ("%Y/%m/%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y")


class InitError(HortusError):
    """`hortus init` cannot make a project from this input; the message says what to change."""


@dataclass
class ColumnDraft:
    """What init inferred about one column of the source table."""

    name: str
    type: str
    nullable: bool
    distinct: int
    min: Any = None
    max: Any = None
    allowed: list | None = None
    pii: str = "none"
    sensitive: bool = False
    role: str = "feature"  # feature | target | time | id | pii | sensitive | constant
    why: str = ""  # the reason for the role / PII class, written as a comment

    def contract(self, *, time: bool) -> dict:
        """Return the contract mapping of this column."""
        out: dict[str, Any] = {"type": self.type, "nullable": self.nullable}
        if time:
            out["min"] = "@shop_opened"
            out["max"] = "@export"
        elif self.min is not None and self.pii == "none":
            out["min"], out["max"] = self.min, self.max
        if self.allowed is not None:
            out["allowed"] = self.allowed
        if self.pii != "none":
            out["pii"] = self.pii
        if self.sensitive:
            out["sensitive"] = True
        out["description"] = _describe(self)
        return out


@dataclass
class Draft:
    """Everything `init_project` writes, inferred from one table."""

    source: Path
    name: str  # project and model name
    table: str  # silver table name
    task: str
    target: str
    time: str | None
    columns: list[ColumnDraft]
    landing: bytes  # the CSV bytes written to data/<table>/
    landing_name: str  # data/<table>/<landing_name>
    rows: int
    shop_opened: str | None
    notes: list[str] = field(default_factory=list)

    def role(self, role: str) -> list[str]:
        """Return the names of the columns with a role."""
        return [c.name for c in self.columns if c.role == role]

    @property
    def features(self) -> list[str]:
        return self.role("feature")

    @property
    def ids(self) -> list[str]:
        return self.role("id")

    @property
    def sensitive(self) -> list[str]:
        return [c.name for c in self.columns if c.sensitive]

    @property
    def segments(self) -> list[str]:
        """Low-cardinality string columns (sensitive ones included) that are not roles."""
        return [
            c.name
            for c in self.columns
            if c.type in ("string", "bool")
            and c.allowed is not None
            and 2 <= c.distinct <= MAX_ALLOWED
            and c.role in ("feature", "sensitive")
        ]

    @property
    def direct(self) -> list[str]:
        return [c.name for c in self.columns if c.pii == "direct"]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return float(value)
    return value


def _describe(c: ColumnDraft) -> str:
    return f"TODO: what {c.name} means ({c.distinct:,} distinct values in the source)."
