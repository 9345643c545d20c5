"""Features: feature definitions (offline and online alike) and the feature store.

Public names are re-exported lazily (PEP 562): `from hortus.features.definitions import X` imports
only the module that defines X.  Patch a name in its defining module, not here.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FeatureGroup": "hortus.features.definitions",
    "FeatureSet": "hortus.features.definitions",
    "point_in_time": "hortus.features.definitions",
    "OnlineStore": "hortus.features.store",
    "training_set": "hortus.features.store",
    "skew_check": "hortus.features.store",
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
