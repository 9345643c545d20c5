"""Publishing: data dictionary, docs site, model cards, notebooks as reports.

Public names are re-exported lazily (PEP 562): `from hortus.publishing import X` imports
only the module that defines X.  Patch a name in its defining module, not here.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "data_dictionary": "hortus.publishing.docs",
    "build_site": "hortus.publishing.site",
    "ModelCard": "hortus.publishing.model_card",
    "run_notebook": "hortus.publishing.notebooks",
    "publish_notebook": "hortus.publishing.notebooks",
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
