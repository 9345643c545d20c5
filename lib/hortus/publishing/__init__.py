"""Publishing: data dictionary, docs site, model cards, notebooks as reports.

Public names are re-exported lazily (PEP 562): `from hortus.publishing import X` imports
only the module that defines X.  Patch a name in its defining module, not here.
"""

from __future__ import annotations

from hortus._lazy import lazy_exports

_EXPORTS = {
    "data_dictionary": "hortus.publishing.docs",
    "build_site": "hortus.publishing.site",
    "ModelCard": "hortus.publishing.model_card",
    "run_notebook": "hortus.publishing.notebooks",
    "publish_notebook": "hortus.publishing.notebooks",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
