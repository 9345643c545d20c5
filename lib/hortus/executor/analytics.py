"""Analytics on the executor: drift, bootstrap intervals and permutation importance.

These run in the stage's process unless three things hold: a stage made an
executor the analytics executor (`use`; the gate and monitor stages and `hortus
drift` do, with the project's executor), that executor is Ray (or a local one
with `split_local`, which the tests use to run the split path in-process), and
the work reaches the size threshold of its kind in params.yaml's `executor`
section, where it outweighs a task's overhead (scheduling, shipping the inputs, a
fresh worker's imports):

- ``drift``: `drift_min_rows` rows of the frame profiled or compared.  Per
  column (or group of small segment / window parts of columns) tasks over the
  exact statistics (`drift_map`, called by the drift module's one map of
  per-column work); each task gets only the columns it reads.
- ``bootstrap``: `bootstrap_min_rows` evaluation rows.  One task per segment
  value, in replicate batches where the replicates resample rows
  (`hortus.checks._segments`); the champion comparison's paired bootstrap one
  task per scope (overall, a segment value) or replicate batch
  (`hortus.checks._champion`).
- ``importance``: `importance_min_rows` sampled rows.  One task per feature
  (`hortus.checks._importance`); the fitted model goes to the workers through
  the object store as the in-memory object (never a file).

Results are the same whichever executor runs them and however the work is
split: the per-column statistics are deterministic, each bootstrap replicate
(segment intervals, champion comparison) draws from its own seed (SeedSequence
spawn key: segment, value, replicate), and each feature is permuted with the
seed scikit-learn gives every feature.  The driver keeps the access checks and
the audit: workers get frames or arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import polars as pl

from hortus.executor.base import Executor

#: work kind -> the `ExecutorConfig` key of its threshold (rows)
THRESHOLDS = {
    "drift": "drift_min_rows",
    "bootstrap": "bootstrap_min_rows",
    "importance": "importance_min_rows",
}

# the analytics executor of this process: (executor, split_local) or None.  A plain
# module global, not a context variable: the drift module maps columns on threads too.
_CURRENT: list[tuple[Executor, bool] | None] = [None]


@contextmanager
def use(executor: Executor | None, *, split_local: bool = False) -> Iterator[Executor | None]:
    """Make `executor` the analytics executor inside the block (None: in-process).

    `split_local`: a local executor splits the work too (in this process, task by
    task): the tests compare the split path with the unsplit one this way.
    """
    before = _CURRENT[0]
    _CURRENT[0] = None if executor is None else (executor, split_local)
    try:
        yield executor
    finally:
        _CURRENT[0] = before


def executor_for_work(kind: str, rows: int) -> Executor | None:
    """Return the executor to split work of `kind` over `rows` rows on, or None (in-process)."""
    current = _CURRENT[0]
    if current is None:
        return None
    executor, split_local = current
    if executor.kind == "local" and not split_local:
        return None
    if rows < getattr(executor.config, THRESHOLDS[kind]):
        return None
    return executor


def driver_threads() -> dict[str, int]:
    """Return this process's thread count per loaded BLAS / OpenMP library.

    Keyed by the library's file prefix (e.g. libscipy_openblas64_, libgomp), which is
    what `threadpoolctl.threadpool_limits` matches; the same wheels on every node
    have the same prefixes.
    """
    from threadpoolctl import threadpool_info

    return {lib["prefix"]: lib["num_threads"] for lib in threadpool_info()}


def _as_driver(item: Any, fn: Callable[..., Any], threads: dict[str, int], *shared: Any) -> Any:
    """Task body: fn(item, *shared) with the driver's BLAS / OpenMP thread counts."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return fn(item, *shared)


def run(
    executor: Executor, fn: Callable[..., Any], items: Sequence[Any], shared: tuple = ()
) -> Iterator[Any]:
    """Yield fn(item, *shared) per item in order, as `executor` tasks run like the driver.

    Each task sets the BLAS and OpenMP libraries to the driver's thread counts
    (`driver_threads`): OpenBLAS splits a dot product or a matrix-vector product
    by its thread count, so a Ray worker (OMP_NUM_THREADS = its CPUs, 1 here)
    would otherwise sum in another order than the driver and differ in the last
    bits.  (Nodes of another CPU architecture may pick other kernels: identical
    results assume the driver's hardware on every node.)
    """
    return executor.map(_as_driver, items, shared=(fn, driver_threads(), *shared))


# ------------------------------------------------------------------------ drift
def _slim(item: tuple) -> tuple:
    """Cut each frame of a work item to the columns the item names (its string arguments).

    The per-column functions of the drift module read only their own column of
    the frame they get (and its height), so a task need not carry the others.
    """
    names = {a for a in item if isinstance(a, str)}
    return tuple(
        a.select([c for c in a.columns if c in names]) if isinstance(a, pl.DataFrame) else a
        for a in item
    )


def _rows(item: tuple) -> int:
    return max((a.height for a in item if isinstance(a, pl.DataFrame)), default=0)


def _run_batch(batch: list[tuple], fn: Callable[..., Any]) -> list[Any]:
    """Task: fn over the items of one batch, in order."""
    return [fn(*item) for item in batch]


def drift_map(fn: Callable[..., Any], items: Sequence[tuple], rows: int) -> list[Any] | None:
    """Return [fn(*item) ...] computed as executor tasks, or None when it stays in-process.

    A task is one item (a column of the frame, or of one segment / window part),
    or consecutive items whose frames hold fewer than `executor.chunk_rows` rows
    together (small parts); results come back in item order.  A frame with a column
    of Python objects (dtype Object, which polars cannot serialise) stays in-process.
    """
    executor = executor_for_work("drift", rows)
    if executor is None or len(items) < 2:
        return None
    items = [_slim(item) for item in items]
    if any(pl.Object in a.dtypes for item in items for a in item if isinstance(a, pl.DataFrame)):
        return None  # Python objects in a column: polars cannot ship them; in-process
    batches: list[list[tuple]] = []
    size = executor.config.chunk_rows
    held = size
    for item in items:
        n = _rows(item)
        if held + n > size:
            batches.append([])
            held = 0
        batches[-1].append(item)
        held += n
    out: list[Any] = []
    for part in run(executor, _run_batch, batches, shared=(fn,)):
        out += part
    return out


def bootstrap_map(
    fn: Callable[..., np.ndarray],
    items: Sequence[Any],
    n_boot: int,
    seed: int,
    rows: int,
    batch: Callable[[Any, int], int],
) -> list[np.ndarray]:
    """Return the `n_boot` replicates of each item, in-process or as executor tasks.

    ``fn((i, start, stop), items, seed)`` returns replicates start..stop-1 of item i,
    each from its own seed, so that any split gives the same values.  In-process (below
    ``executor.bootstrap_min_rows`` evaluation rows, or without an analytics executor):
    one call per item.  On the executor: tasks of ``batch(item, chunk_rows)``
    replicates each; the items go to the object store once.
    """
    executor = executor_for_work("bootstrap", rows)
    if executor is None:
        return [fn((i, 0, n_boot), items, seed) for i in range(len(items))]
    tasks: list[tuple[int, int, int]] = []
    for i, item in enumerate(items):
        per = max(1, batch(item, executor.config.chunk_rows))
        tasks += [(i, a, min(a + per, n_boot)) for a in range(0, n_boot, per)]
    out: list[list[np.ndarray]] = [[] for _ in items]
    parts = run(executor, fn, tasks, shared=(items, seed))
    for (i, _, _), part in zip(tasks, parts, strict=True):
        out[i].append(part)
    return [np.concatenate(p) if p else np.empty(0) for p in out]
