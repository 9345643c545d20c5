"""Governance: access policy (grants, masking, row filters) and the audit log.

Public names are re-exported lazily (PEP 562): `from hortus.governance import X` imports
only the module that defines X.  Patch a name in its defining module, not here.
"""

from __future__ import annotations

from hortus._lazy import lazy_exports

_EXPORTS = {
    "Policy": "hortus.governance.access",
    "AccessDenied": "hortus.governance.access",
    "AuditLog": "hortus.governance.audit",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
