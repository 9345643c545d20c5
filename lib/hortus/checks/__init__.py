"""Checks and gates: data and model tests, PII scan, the promotion gate.

Public names are re-exported lazily (PEP 562): `from hortus.checks import X` imports
only the module that defines X.  Patch a name in its defining module, not here.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "run_gate": "hortus.checks.gate",
    "GateConfig": "hortus.checks.gate",
    "run_model_checks": "hortus.checks._runner",
    "ModelCheckConfig": "hortus.checks._runner",
    "scan_lakehouse": "hortus.checks.pii_scan",
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
