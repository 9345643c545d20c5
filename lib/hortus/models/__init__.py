"""Models: training and evaluation, the model registry, reproduction from receipts.

Public names are re-exported lazily (PEP 562): `from hortus.models import X` imports
only the module that defines X.  Patch a name in its defining module, not here.
"""

from __future__ import annotations

from hortus._lazy import lazy_exports

_EXPORTS = {
    "ModelSpec": "hortus.models.modeling",
    "train": "hortus.models.modeling",
    "load_model": "hortus.models.modeling",
    "predict_scores": "hortus.models.modeling",
    "Registry": "hortus.models.registry",
    "Receipt": "hortus.models.registry",
    "reproduce": "hortus.models.reproduce",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
