"""params.yaml's `executor` section and the environment variables that override it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from hortus.errors import HortusError

ENV_KIND = "HORTUS_EXECUTOR"
ENV_ADDRESS = "HORTUS_RAY_ADDRESS"


@dataclass(frozen=True)
class ExecutorConfig:
    """params.yaml's `executor` section (hortus.params_schema checks the types).

    kind: local (default) or ray.  address: None starts a local Ray instance with
    `num_cpus` and `object_store_mb`; "auto" joins the cluster started on this
    machine (`ray start`, `make cluster-up`); "ray://host:10001" a remote one
    (KubeRay's head service).  temp_dir: Ray's session folder (relative: under the
    project).  min_rows: below this many rows a stage runs in-process even on Ray
    (a task costs tens of milliseconds).  chunk_rows: rows per task (silver chunks,
    scoring shards); slices: time slices of the training-set build.  max_retries:
    how often Ray reruns a task whose worker died.
    """

    kind: str = "local"
    address: str | None = None
    num_cpus: int = 1
    object_store_mb: int = 1024
    temp_dir: str = ".hortus/ray"
    min_rows: int = 0
    chunk_rows: int = 500_000
    slices: int = 4
    max_retries: int = 3

    @classmethod
    def from_mapping(cls, body: Mapping[str, Any] | None) -> ExecutorConfig:
        """Build from a params mapping; unknown keys are refused naming the valid ones."""
        body = dict(body or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise HortusError(
                f"params.yaml: executor: unknown key(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(known))}"
            )
        cfg = cls(**body)
        if cfg.kind not in ("local", "ray"):
            raise HortusError(
                f"params.yaml: executor.kind: expected local or ray, got {cfg.kind!r}"
            )
        return cfg

    def with_env(self, env: Mapping[str, str] | None = None) -> ExecutorConfig:
        """Return this config with HORTUS_EXECUTOR / HORTUS_RAY_ADDRESS applied."""
        env = os.environ if env is None else env
        kind = env.get(ENV_KIND, "").strip().lower() or self.kind
        if kind not in ("local", "ray"):
            raise HortusError(f"{ENV_KIND}: expected local or ray, got {kind!r}")
        address = env.get(ENV_ADDRESS, "").strip() or self.address
        return replace(self, kind=kind, address=address)
