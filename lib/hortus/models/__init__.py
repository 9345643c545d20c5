"""Models: training and evaluation, the model registry, reproduction from receipts.

Public names are re-exported lazily (PEP 562): `from hortus.models import X` imports
only the module that defines X.  Patch a name in its defining module, not here.
"""

from __future__ import annotations

import importlib

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


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
