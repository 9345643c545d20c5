"""Executors: where the naturally partitioned work of the stages runs.

In-process (`LocalExecutor`, the default) or as Ray tasks (`RayExecutor`), chosen
by params.yaml's `executor` section or HORTUS_EXECUTOR / HORTUS_RAY_ADDRESS; see
`hortus.executor.base` and docs/scale-out.md.  Public names are re-exported lazily
(PEP 562): Ray is imported only when a Ray executor is used.
"""

from __future__ import annotations

from hortus._lazy import lazy_exports

_EXPORTS = {
    "Executor": "hortus.executor.base",
    "ExecutorConfig": "hortus.executor.config",
    "LocalExecutor": "hortus.executor.base",
    "executor_for": "hortus.executor.base",
    "make_executor": "hortus.executor.base",
    "RayExecutor": "hortus.executor.ray",
    "TableRead": "hortus.executor.plan",
    "resolve_read": "hortus.executor.plan",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
