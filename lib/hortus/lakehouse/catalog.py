"""The catalog: every table's contract, its location and its lineage.

Contracts come from the project's contract file (named by `contracts` in the
project definition `hortus.yaml`; `HORTUS_CONTRACTS` or an explicit path override
it) plus the built-in tables of Hortus itself; bronze contracts are derived from the silver ones
(raw strings plus ingestion metadata).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import replace
from pathlib import Path

import yaml

from hortus.errors import ContractError, TableNotFound
from hortus.lakehouse.contracts import Column, Contract, load_contracts, with_retention

HERE = Path(__file__).parent
BUILTIN_CONTRACTS = HERE / "builtin_contracts.yaml"

# Ingestion metadata carried by every bronze row.
BRONZE_META = (
    Column("_source_file", "string", False, description="Landing file, relative to data/."),
    Column("_line", "int", False, min=1, description="1-based line in the file (CSV header = 1)."),
    Column("_file_sha256", "string", False, description="SHA-256 of the landing file."),
    Column("_file_date", "date", True, description="Export date parsed from the file name."),
    Column("_batch_id", "string", False, description="Ingest batch id (content-derived)."),
    Column("_ingested_at", "datetime", False, description="Ingestion time (UTC); not content."),
)
# Columns excluded from content hashes (they depend on when, not on what).
VOLATILE_COLUMNS = ("_ingested_at", "ingested_at")


def bronze_contract(silver: Contract) -> Contract:
    """Derive the bronze contract (raw, restricted) of a landed silver table."""
    assert silver.landing is not None
    if silver.landing.format == "jsonl":
        payload = (
            Column(
                "_raw",
                "string",
                True,
                pii="free_text",
                description="The raw JSON line, personal data in the clear.",
            ),
        )
    else:
        payload = tuple(
            replace(
                c,
                type="string",
                nullable=True,
                min=None,
                max=None,
                allowed=None,
                pattern=None,
                generalise=None,
                max_length=None,  # bronze keeps the value as landed; silver enforces it
            )
            for c in silver.columns
        )
    return replace(
        silver,
        layer="bronze",
        columns=payload + BRONZE_META,
        description=f"Raw landed rows of {silver.full_name} (restricted zone).",
        primary_key=("_source_file", "_line"),
        order_by=None,
    )


def derived_contracts(path: Path, contracts: dict[str, Contract]) -> list[Contract]:
    """Return contracts derived from definitions (feature logs, training sets).

    The contract file names providers under `derived:` as "module:function"; each
    function takes the contracts so far and returns new ones.
    """
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    refs = doc.get("derived") or []
    out: list[Contract] = []
    for ref in [refs] if isinstance(refs, str) else refs:
        module, _, attr = str(ref).partition(":")
        if not attr:
            raise ContractError(f"{path}: derived entry {ref!r} must look like 'module:function'")
        out += getattr(importlib.import_module(module), attr)(dict(contracts))
    return out


class Catalog:
    """Contracts of every table, by `layer.name`.

    Examples
    --------
    >>> cat = Catalog.load()                      # the project of the working directory
    >>> cat.get("ops.audit_log").primary_key
    ('seq',)
    """

    def __init__(self, contracts: dict[str, Contract]):
        self._contracts = dict(sorted(contracts.items()))

    @classmethod
    def load(cls, domain: Path | None = None, *, root: Path | None = None) -> Catalog:
        """Load a project's contracts and the built-in ones.

        The contract file is `domain`, else `HORTUS_CONTRACTS`, else the one the project
        definition of `root` (default: the project of the working directory) names.
        """
        path, project = domain or os.environ.get("HORTUS_CONTRACTS"), None
        if not path:
            from hortus.project.definition import Project

            project = Project.load(root)
            path = project.contracts_path
        path = Path(path)
        contracts = load_contracts(BUILTIN_CONTRACTS) | load_contracts(path)
        for c in list(contracts.values()):
            if c.landing is not None:
                b = bronze_contract(c)
                contracts[b.full_name] = b
        for c in derived_contracts(path, contracts):
            contracts[c.full_name] = c
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        with_retention(contracts, doc.get("retention"), str(path))  # domain's retention: section
        if project is not None:
            from hortus.project.definition import predictions_contract

            for m in project.models.values():
                if m.scoring.build is None and m.scoring.table not in contracts:
                    source = contracts.get(m.scoring.source)
                    if source is not None:
                        contracts[m.scoring.table] = predictions_contract(m, source)
        catalog = cls(contracts)
        if project is not None:  # a definition naming an unknown table or column: refused now
            project.validate(catalog)
        return catalog

    def get(self, name: str) -> Contract:
        """Return one contract, or raise TableNotFound listing the known tables."""
        try:
            return self._contracts[name]
        except KeyError:
            known = ", ".join(self._contracts)
            raise TableNotFound(
                f"no table {name!r} in the catalog; known tables: {known}"
            ) from None

    def names(self, layer: str | None = None) -> list[str]:
        """Return table names, optionally of one layer."""
        return [n for n, c in self._contracts.items() if layer is None or c.layer == layer]

    def landed(self) -> list[Contract]:
        """Return the silver contracts that have landing files, in dependency order."""
        return [
            c for c in self._contracts.values() if c.landing is not None and c.layer == "silver"
        ]

    def __iter__(self):
        return iter(self._contracts.values())
