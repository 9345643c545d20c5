"""The registry's tables, names and version records.

The table names of the registry in the operations plane, the patterns a model
name, an alias and a version reference must match, the file digest that guards
every stored artifact, `ModelVersion` (one row of ops.model_versions), and the
project-level helpers that list registered models and name the default one.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from hortus.lakehouse.tables import Lakehouse

VERSIONS = "ops.model_versions"
ALIASES = "ops.model_aliases"
GATES = "ops.gate_results"
APPROVALS = "ops.model_approvals"
CHAMPION = "champion"
CHALLENGER = "challenger"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ALIAS = re.compile(r"[a-z][a-z0-9_-]*")
_VERSION_REF = re.compile(r"[vV]?(\d+)")


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version (a row of ops.model_versions plus its current aliases)."""

    version: int
    name: str
    created_at: datetime
    author: str
    artifact_path: str  # relative to the project root (absolute elsewhere; s3:// in a bucket)
    artifact_sha256: str
    signature: dict
    params: dict
    metrics: dict
    receipt: dict
    aliases: tuple[str, ...]
    notes: str
    spec: dict | None = None

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict (created_at as ISO 8601, aliases as a list)."""
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        d["aliases"] = list(self.aliases)
        return d

    @classmethod
    def _from_row(cls, row: dict, aliases: tuple[str, ...]) -> ModelVersion:
        return cls(
            version=row["version"],
            name=row["name"],
            created_at=row["created_at"],
            author=row["author"],
            artifact_path=row["artifact_path"],
            artifact_sha256=row["artifact_sha256"],
            signature=json.loads(row["signature"]),
            params=json.loads(row["params"]),
            metrics=json.loads(row["metrics"]),
            receipt=json.loads(row["receipt"]),
            aliases=aliases,
            notes=row["notes"],
            spec=json.loads(row["spec"]) if row.get("spec") else None,
        )


def model_names(lakehouse: Lakehouse) -> list[str]:
    """Return the names of every model with a registered version, sorted.

    Reads ops.model_versions as the Lakehouse's user (an empty list before the first
    registration).
    """
    return (
        lakehouse.scan_or_empty(VERSIONS)
        .select(pl.col("name").unique())
        .collect()["name"]
        .sort()
        .to_list()
    )


def default_model(root: Path) -> str | None:
    """Return the default model of the project at `root` (its hortus.yaml), or None.

    The definition is found as the catalog finds it (`Project.load`: `root`, else the
    project of the working directory); None when there is none or it is invalid.
    """
    from hortus.project.definition import Project, ProjectError

    try:
        return Project.load(Path(root)).default_model
    except ProjectError:
        return None


def model_flag(root: Path, name: str) -> str:
    """Return " --model NAME" for printed commands, or "" when NAME is the project's default.

    Examples
    --------
    >>> model_flag(Path("/nonexistent"), "a-model-no-project-declares")
    ' --model a-model-no-project-declares'
    """
    return "" if name == default_model(root) else f" --model {name}"
