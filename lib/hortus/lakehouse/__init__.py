"""Lakehouse and contracts: tables, catalog, contracts, landing -> bronze -> silver.

Public names are re-exported lazily (PEP 562): `from hortus.lakehouse import X` imports
only the module that defines X.  Patch a name in its defining module, not here.
"""

from __future__ import annotations

from hortus._lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
