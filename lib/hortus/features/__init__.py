"""Features: feature definitions (offline and online alike) and the feature store.

Public names are re-exported lazily (PEP 562): `from hortus.features.definitions import X` imports
only the module that defines X.  Patch a name in its defining module, not here.
"""

from __future__ import annotations

from hortus._lazy import lazy_exports

_EXPORTS = {
    "FeatureGroup": "hortus.features.definitions",
    "FeatureSet": "hortus.features.definitions",
    "point_in_time": "hortus.features.definitions",
    "OnlineStore": "hortus.features.store",
    "training_set": "hortus.features.store",
    "skew_check": "hortus.features.store",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
