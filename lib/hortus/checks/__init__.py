"""Checks and gates: data and model tests, PII scan, the promotion gate.

Public names are re-exported lazily (PEP 562): `from hortus.checks import X` imports
only the module that defines X.  Patch a name in its defining module, not here.
"""

from __future__ import annotations

from hortus._lazy import lazy_exports

_EXPORTS = {
    "run_gate": "hortus.checks.gate",
    "GateConfig": "hortus.checks.gate",
    "run_model_checks": "hortus.checks._runner",
    "ModelCheckConfig": "hortus.checks._runner",
    "scan_lakehouse": "hortus.checks.pii_scan",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
