"""The executor protocol, the in-process executor and how a project chooses one.

An executor maps a function over work items (landing files, bronze chunks, time
slices, entity shards) and yields the results in item order (`map`) or as they
finish (`map_unordered`).  The driver keeps every decision that touches the
lakehouse: it checks the access policy, writes the audit record, resolves what
each worker reads (`hortus.executor.plan.TableRead`: table path, Delta version,
columns, masks, row filter) and makes the one Delta commit per table write from
the results, so a failed task leaves no partial table and a rerun converges.

- `LocalExecutor` (the default) runs in this process, as Hortus always did;
  `ahead` > 0 reads that many items ahead in threads (ingest's read-ahead).
- `hortus.executor.ray.RayExecutor` runs the same functions as Ray tasks, on a
  local Ray instance it starts or on an existing cluster (`address`).

Choice (`executor_for`): params.yaml's `executor` section, overridden by the
environment (HORTUS_EXECUTOR=local|ray, HORTUS_RAY_ADDRESS), which the stage
commands' `--executor ray --address ...` set.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from hortus.executor.config import ExecutorConfig

T = TypeVar("T")
R = TypeVar("R")


@runtime_checkable
class Executor(Protocol):
    """Runs a function over work items; results in item order or as they finish."""

    kind: str
    config: ExecutorConfig

    def map(
        self,
        fn: Callable[..., R],
        items: Iterable[T],
        *,
        shared: tuple[Any, ...] = (),
        ahead: int = 0,
        settle: bool = False,
    ) -> Iterator[R]:
        """Yield fn(item, *shared) for each item, in item order.

        `settle`: every item has finished before the first result is yielded, so a
        failed item raises before the caller commits anything.
        """
        ...

    def map_unordered(
        self, fn: Callable[..., R], items: Iterable[T], *, shared: tuple[Any, ...] = ()
    ) -> Iterator[tuple[int, R]]:
        """Yield (index, fn(item, *shared)) as each finishes."""
        ...

    def distributes(self, rows: int) -> bool:
        """Return whether work of this many rows goes to tasks (else: in-process)."""
        ...

    def shutdown(self) -> None:
        """Release what the executor started (a local Ray instance)."""
        ...


class LocalExecutor:
    """Run every item in this process (the default: Hortus's behaviour before executors)."""

    kind = "local"

    def __init__(self, config: ExecutorConfig | None = None) -> None:
        self.config = config or ExecutorConfig()

    def map(
        self,
        fn: Callable[..., R],
        items: Iterable[T],
        *,
        shared: tuple[Any, ...] = (),
        ahead: int = 0,
        settle: bool = False,
    ) -> Iterator[R]:
        """Yield fn(item, *shared) in order; with `ahead`, that many items run ahead in threads.

        Threads help where the work releases the GIL (zlib, polars); at most
        ahead + 1 results are held.  `settle` is not needed in-process: an item
        fails before the next one runs, as before executors existed.
        """
        if ahead <= 0:
            for item in items:
                yield fn(item, *shared)
            return
        with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="hortus-map") as pool:
            pending: deque[Future[R]] = deque()
            for item in items:
                pending.append(pool.submit(fn, item, *shared))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def map_unordered(
        self, fn: Callable[..., R], items: Iterable[T], *, shared: tuple[Any, ...] = ()
    ) -> Iterator[tuple[int, R]]:
        """Yield (index, result) of each item; in-process that is item order."""
        for i, item in enumerate(items):
            yield i, fn(item, *shared)

    def distributes(self, rows: int) -> bool:
        """Never: everything runs here."""
        return False

    def shutdown(self) -> None:
        """Nothing to release."""


def load_config(root: Path | None) -> ExecutorConfig:
    """Return params.yaml's `executor` section at `root` (defaults without one)."""
    from hortus.params import read_params

    path = Path(root) / "params.yaml" if root is not None else None
    if path is None or not path.exists():
        return ExecutorConfig()
    return ExecutorConfig.from_mapping(read_params(path).get("executor"))


_CURRENT: dict[tuple, Executor] = {}


def make_executor(config: ExecutorConfig) -> Executor:
    """Return an executor for a config (Ray is imported only when chosen)."""
    if config.kind == "ray":
        from hortus.executor.ray import RayExecutor

        return RayExecutor(config)
    return LocalExecutor(config)


def executor_for(root: Path | None = None, *, env: Mapping[str, str] | None = None) -> Executor:
    """Return the project's executor: params.yaml's `executor`, then the environment.

    One per configuration and process, so the stages of one process share one Ray
    connection.  Without an `executor` section and HORTUS_EXECUTOR: local.
    """
    config = load_config(root).with_env(env)
    if config.kind == "ray" and config.temp_dir and root is not None:
        temp = Path(config.temp_dir)
        config = replace(config, temp_dir=str(temp if temp.is_absolute() else Path(root) / temp))
    key = tuple(getattr(config, f.name) for f in fields(config))
    if key not in _CURRENT:
        _CURRENT[key] = make_executor(config)
    return _CURRENT[key]
