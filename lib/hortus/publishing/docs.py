"""Generated documentation: the data dictionary from the catalog's contracts."""

from __future__ import annotations

import json

import polars as pl

from hortus.config import RESTRICTED_LAYERS
from hortus.lakehouse.contracts import Column, Contract
from hortus.lakehouse.silver import stored_contract
from hortus.lakehouse.tables import Lakehouse

LAYER_ORDER = {"bronze": 0, "quarantine": 1, "silver": 2, "gold": 3, "ops": 4}


def _rules(c: Column) -> str:
    parts = []
    if not c.nullable:
        parts.append("required")
    if c.min is not None:
        parts.append(f"≥ {c.min}")
    if c.max is not None:
        parts.append(f"≤ {c.max}")
    if c.allowed is not None:
        parts.append("in {" + ", ".join(map(str, c.allowed)) + "}")
    if c.pattern:
        parts.append(f"matches `{c.pattern}`")
    if c.max_length is not None:
        parts.append(f"at most {c.max_length} characters")
    return "; ".join(parts).replace("|", "\\|")


def _pii(c: Column, layer: str) -> str:
    if c.pii == "none":
        return ""
    if layer in RESTRICTED_LAYERS:
        return f"{c.pii} (raw)"
    return {"direct": "direct → token", "quasi": "quasi", "free_text": "free text → redacted"}[
        c.pii
    ]


def table_markdown(contract: Contract, lh: Lakehouse) -> str:
    """Render one table's contract, size and lineage as markdown."""
    shown = stored_contract(contract) if contract.layer == "silver" else contract
    zone = "restricted" if contract.layer in RESTRICTED_LAYERS else "governed"
    lines = [f"## `{contract.full_name}`", "", contract.description or "", ""]
    meta = [
        ("Zone", zone),
        ("Owner", contract.owner),
        ("Primary key", ", ".join(contract.primary_key) or "-"),
        (
            "Freshness SLA",
            f"{contract.freshness_sla_hours} h" if contract.freshness_sla_hours else "-",
        ),
    ]
    if contract.landing:
        meta.append(("Landing", f"`data/{contract.landing.glob}` ({contract.landing.format})"))
    if lh.exists(contract.full_name):
        hist = lh.history(contract.full_name)
        last = hist.row(-1, named=True)
        rows = lh.scan(contract.full_name).select(pl.len()).collect().item()
        inputs = ", ".join(f"`{k}`" for k in json.loads(last["inputs"] or "{}")) or "-"
        meta += [
            ("Rows", f"{rows:,}"),
            ("Versions", str(hist.height)),
            ("Written by stage", f"`{last['stage']}` from {inputs}"),
        ]
    else:
        meta.append(("Rows", "not built yet"))
    lines += [f"- **{k}:** {v}" for k, v in meta]
    lines += ["", "| column | type | rules | PII | description |", "|---|---|---|---|---|"]
    for c in shown.columns:
        desc = c.description.replace("|", "\\|")
        sens = " *(sensitive attribute)*" if c.sensitive else ""
        lines.append(
            f"| `{c.name}` | {c.type} | {_rules(c)} | {_pii(c, contract.layer)} | {desc}{sens} |"
        )
    return "\n".join(lines) + "\n"


def data_dictionary(lh: Lakehouse) -> str:
    """Render the data dictionary of every catalogued table as one markdown page."""
    contracts = sorted(lh.catalog, key=lambda c: (LAYER_ORDER[c.layer], c.name))
    head = [
        "# Data dictionary",
        "",
        "Generated from the data contracts by `hortus docs` (DVC stage `docs`); do not edit.",
        "Restricted tables hold raw personal data and are readable only by their owners;",
        "in silver and gold, direct identifiers are keyed tokens and free text is redacted.",
        "",
        "| table | zone | owner | description |",
        "|---|---|---|---|",
    ]
    for c in contracts:
        zone = "restricted" if c.layer in RESTRICTED_LAYERS else "governed"
        head.append(
            f"| [`{c.full_name}`](#{c.full_name.replace('.', '')}) | {zone} | "
            f"{c.owner} | {c.description} |"
        )
    return "\n".join(head) + "\n\n" + "\n".join(table_markdown(c, lh) for c in contracts)
