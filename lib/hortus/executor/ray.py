"""Ray as the executor: the same functions as Ray tasks, on a local instance or a cluster.

Settings that fit a small machine (params.yaml `executor`): one CPU and about 1 GB
of object store per node, Ray's session files under the project (`.hortus/ray`),
no dashboard, worker logs not streamed to the driver, no usage statistics
(RAY_USAGE_STATS_ENABLED=0: offline, no telemetry).  `address` None starts a
local instance on first use; "auto" or "ray://host:10001" joins a running
cluster (`make cluster-up`, KubeRay), whose nodes must reach the lakehouse root
at the same path or URI.

Tasks run with `max_retries`: a task whose worker process dies (killed, out of
memory, node lost) is run again; a task that raises is not (a bad file fails the
same way twice).  Shared arguments (a model, feature logs) are put in the object
store once and passed by reference.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from hortus.errors import HortusError
from hortus.executor.config import ExecutorConfig

T = TypeVar("T")
R = TypeVar("R")

# offline and quiet, before ray is imported
_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}


def _import_ray():
    for k, v in _ENV.items():
        os.environ.setdefault(k, v)
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a locked dependency
        raise HortusError(f"executor ray: the ray package is not installed ({exc})") from None
    return ray


#: what an object store's error says when a node has no usable credentials (the
#: instance-metadata endpoint is where S3 clients look last)
_NO_CREDENTIALS = ("169.254.169.254", "credential", "imds")


def _run(fn: Callable[..., R], item: Any, *shared: Any) -> R:
    """Run one item; a read refused for want of credentials on this node says so."""
    try:
        return fn(item, *shared)
    except Exception as exc:
        text = str(exc)
        if not any(s in text.lower() for s in _NO_CREDENTIALS):
            raise
        import socket

        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        raise HortusError(
            f"a task on node {socket.gethostname()} could not read the object store: this "
            "node's environment has no usable AWS credentials (give every Ray node the AWS_* "
            "variables, as `make cluster-up` does: none travel with the tasks; "
            f"docs/scale-out.md). The store said: {first[:300]}"
        ) from exc


def _call(fn: Callable[..., R], item: Any, *shared: Any) -> R:
    """The task body: run one item (module level, so Ray pickles it by reference)."""
    return _run(fn, item, *shared)


def _call_settled(fn: Callable[..., R], item: Any, *shared: Any) -> tuple[bool, R]:
    """The task body of a settled map: a small done flag, then the result (two objects)."""
    return True, _run(fn, item, *shared)


class RayExecutor:
    """Run work items as Ray tasks; see the module docstring."""

    kind = "ray"

    def __init__(self, config: ExecutorConfig | None = None) -> None:
        self.config = config or ExecutorConfig(kind="ray")
        self._ray = None
        self._started = False  # whether this executor started the Ray instance
        self._remote = None
        self._settled = None

    # ------------------------------------------------------------------ life
    def connect(self):
        """Start or join Ray (once); return the ray module."""
        if self._ray is not None:
            return self._ray
        cfg = self.config
        token = Path(cfg.temp_dir or ".") / "auth_token"
        if cfg.address and cfg.temp_dir and token.is_file():  # make cluster-up's token
            os.environ.setdefault("RAY_AUTH_MODE", "token")  # read when ray is imported
            os.environ.setdefault("RAY_AUTH_TOKEN_PATH", str(token.resolve()))
            os.environ.setdefault("RAY_TMPDIR", str(Path(cfg.temp_dir).resolve()))  # for auto
        ray = _import_ray()
        if not ray.is_initialized():
            quiet: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
            if cfg.address:  # join a running cluster: its nodes have their own settings
                ray.init(address=cfg.address, **quiet)
            else:
                if cfg.temp_dir:
                    Path(cfg.temp_dir).mkdir(parents=True, exist_ok=True)
                    # ray.init takes no temp dir for the node it starts: Ray reads it here
                    os.environ.setdefault("RAY_TMPDIR", str(Path(cfg.temp_dir).resolve()))
                ray.init(
                    num_cpus=cfg.num_cpus,
                    object_store_memory=cfg.object_store_mb * 1024 * 1024,
                    include_dashboard=False,
                    **quiet,
                )
            self._started = True
        self._ray = ray
        self._remote = ray.remote(max_retries=cfg.max_retries)(_call)
        self._settled = ray.remote(max_retries=cfg.max_retries, num_returns=2)(_call_settled)
        return ray

    def shutdown(self) -> None:
        """Disconnect; stop the local instance if this executor started it."""
        if self._ray is not None and self._started:
            self._ray.shutdown()
        self._ray, self._remote, self._started = None, None, False

    def cpus(self) -> int:
        """Return the CPUs of the cluster (at least 1)."""
        ray = self.connect()
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def distributes(self, rows: int) -> bool:
        """Return whether work of this many rows goes to tasks (`min_rows`)."""
        return rows >= self.config.min_rows

    # ------------------------------------------------------------------- map
    def _shared(self, shared: tuple[Any, ...]) -> tuple[Any, ...]:
        ray = self.connect()
        return tuple(ray.put(s) for s in shared)  # top-level refs: Ray resolves them

    def map(
        self,
        fn: Callable[..., R],
        items: Iterable[T],
        *,
        shared: tuple[Any, ...] = (),
        ahead: int = 0,
        settle: bool = False,
    ) -> Iterator[R]:
        """Yield fn(item, *shared) in item order, keeping a bounded number of tasks in flight.

        At most max(ahead, 2 x cluster CPUs) results wait in the object store, so a
        long list of items does not fill it.  With `settle` every task runs first
        (results wait in the object store, which spills to disk) and only once all
        have succeeded (after their retries) are the results fetched, one at a
        time: a task that fails for good raises before the caller commits anything.
        """
        ray = self.connect()
        refs = self._shared(shared)
        if settle:
            pairs = [self._settled.remote(fn, item, *refs) for item in items]
            ray.get([flag for flag, _ in pairs])  # raises the first failure, fetches flags only
            for _, result in pairs:
                yield ray.get(result)
            return
        window = max(ahead, 2 * self.cpus(), 2)
        pending: deque = deque()
        for item in items:
            pending.append(self._remote.remote(fn, item, *refs))
            if len(pending) >= window:
                yield ray.get(pending.popleft())
        while pending:
            yield ray.get(pending.popleft())

    def map_unordered(
        self, fn: Callable[..., R], items: Iterable[T], *, shared: tuple[Any, ...] = ()
    ) -> Iterator[tuple[int, R]]:
        """Yield (index, result) as tasks finish."""
        ray = self.connect()
        refs = self._shared(shared)
        index = {}
        for i, item in enumerate(items):
            index[self._remote.remote(fn, item, *refs)] = i
        waiting = list(index)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            yield index[done[0]], ray.get(done[0])
