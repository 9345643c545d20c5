"""Lazy re-exports for the area packages (PEP 562), written once.

Each area package (`hortus.lakehouse`, `hortus.models`, ...) re-exports its public
names without importing every module at package import: `from hortus.models import
Registry` imports only the module that defines `Registry`.

Examples
--------
>>> getattr_, dir_ = lazy_exports("pkg", {"HortusError": "hortus.errors"}, {})
>>> getattr_("HortusError").__name__
'HortusError'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: Mapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a package's `__getattr__` and `__dir__` for `exports` (name -> module)."""

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
