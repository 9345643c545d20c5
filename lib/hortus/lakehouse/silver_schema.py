"""The contract of a table as silver stores it: tokens and generalised columns.

Kept apart from `hortus.lakehouse.silver` so that the table API can classify silver columns
for masking without importing the silver stage (which imports the table API).
"""

from __future__ import annotations

from dataclasses import replace

from hortus.lakehouse.contracts import Column, Contract

AGE_BANDS = (
    (0, 18, "<18"),
    (18, 25, "18-24"),
    (25, 35, "25-34"),
    (35, 45, "35-44"),
    (45, 55, "45-54"),
    (55, 65, "55-64"),
    (65, 200, "65+"),
)


def stored_contract(contract: Contract) -> Contract:
    """Return the contract of the table as silver stores it (tokens, generalised columns)."""
    cols: list[Column] = []
    for c in contract.columns:
        if c.pii == "direct":
            cols.append(
                replace(
                    c,
                    pattern=None,
                    allowed=None,
                    description=f"{c.description} Keyed token (HMAC-SHA256) in silver.",
                )
            )
        elif c.generalise == "age_band":
            cols.append(
                Column(
                    "age_band",
                    "string",
                    c.nullable,
                    sensitive=c.sensitive,
                    allowed=tuple(b[2] for b in AGE_BANDS),
                    pii="quasi",
                    description=f"Age band at {contract.order_by or 'row time'}, "
                    f"generalised from {c.name}.",
                )
            )
            cols.append(
                Column(
                    "birth_year",
                    "int",
                    c.nullable,
                    pii="quasi",
                    min=1900,
                    description=f"Year of {c.name} (generalised).",
                )
            )
        else:
            cols.append(c)
    return replace(contract, columns=tuple(cols))
