"""Governance: access policy (grants, masking, row filters) and the audit log.

Public names are re-exported lazily (PEP 562): `from hortus.governance import X` imports
only the module that defines X.  Patch a name in its defining module, not here.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Policy": "hortus.governance.access",
    "AccessDenied": "hortus.governance.access",
    "AuditLog": "hortus.governance.audit",
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
