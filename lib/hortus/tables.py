"""Compatibility alias: `hortus.tables` is `hortus.lakehouse.tables` (the same module object)."""

import sys

from hortus.lakehouse import tables as _module

sys.modules[__name__] = _module
