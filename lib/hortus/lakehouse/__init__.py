"""Lakehouse and contracts: tables, catalog, contracts, landing -> bronze -> silver.

Public names are re-exported lazily (PEP 562): `from hortus.lakehouse import X` imports
only the module that defines X.  Patch a name in its defining module, not here.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Lakehouse": "hortus.lakehouse.tables",
    "read_contract": "hortus.lakehouse.tables",
    "frame_hash": "hortus.lakehouse.tables",
    "Catalog": "hortus.lakehouse.catalog",
    "Column": "hortus.lakehouse.contracts",
    "Contract": "hortus.lakehouse.contracts",
    "load_contracts": "hortus.lakehouse.contracts",
    "check_frame": "hortus.lakehouse.contracts",
    "ingest": "hortus.lakehouse.ingest",
    "stored_contract": "hortus.lakehouse.silver_schema",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
