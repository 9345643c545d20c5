"""Compatibility alias: `hortus.modeling` is `hortus.models.modeling` (the same module object)."""

import sys

from hortus.models import modeling as _module

sys.modules[__name__] = _module
