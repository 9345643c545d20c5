"""Compatibility alias: `hortus.drift` is `hortus.monitoring.drift` (the same module object)."""

import sys

from hortus.monitoring import drift as _module

sys.modules[__name__] = _module
