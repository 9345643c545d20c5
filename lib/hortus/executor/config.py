"""params.yaml's `executor` section and the environment variables that override it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from hortus.errors import HortusError

ENV_KIND = "HORTUS_EXECUTOR"
ENV_ADDRESS = "HORTUS_RAY_ADDRESS"


def _int(v: Any, least: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


#: what each key accepts (said in the message) and the check
_RULES: dict[str, tuple[str, Any]] = {
    "kind": ("one of local, ray", lambda v: v in ("local", "ray")),
    "address": (
        "null, auto or a Ray address (ray://host:10001, host:6379)",
        lambda v: v is None or (isinstance(v, str) and bool(v.strip())),
    ),
    "num_cpus": ("int >= 1", lambda v: _int(v, 1)),
    "object_store_mb": ("int >= 75 (Ray's minimum)", lambda v: _int(v, 75)),
    "temp_dir": ("a folder (relative: under the project)", lambda v: isinstance(v, str) and v),
    "min_rows": ("int >= 0", lambda v: _int(v, 0)),
    "chunk_rows": ("int >= 1", lambda v: _int(v, 1)),
    "slices": ("int >= 1", lambda v: _int(v, 1)),
    "max_retries": ("int >= 0", lambda v: _int(v, 0)),
    "drift_min_rows": ("int >= 0", lambda v: _int(v, 0)),
    "bootstrap_min_rows": ("int >= 0", lambda v: _int(v, 0)),
    "importance_min_rows": ("int >= 0", lambda v: _int(v, 0)),
}


@dataclass(frozen=True)
class ExecutorConfig:
    """params.yaml's `executor` section (checked here; `hortus params check` too).

    kind: local (default) or ray.  address: None starts a local Ray instance with
    `num_cpus` and `object_store_mb`; "auto" joins the cluster started on this
    machine (`ray start`, `make cluster-up`); "ray://host:10001" a remote one
    (KubeRay's head service).  temp_dir: Ray's session folder (relative: under the
    project).  min_rows: below this many rows a stage runs in-process even on Ray
    (a task costs tens of milliseconds).  chunk_rows: rows per task (silver chunks,
    feature-log and scoring shards); slices: time slices of the training-set build.  max_retries:
    how often Ray reruns a task whose worker died.

    The analytics (`hortus.executor.analytics`) go to tasks only on Ray and only
    from a size where the work outweighs a task's overhead: drift from
    `drift_min_rows` rows of the compared frame, the segment bootstrap and the
    champion comparison from `bootstrap_min_rows` evaluation rows, permutation
    importance from `importance_min_rows` sampled rows; below, in-process as before.
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
    drift_min_rows: int = 1_000_000
    bootstrap_min_rows: int = 1_000_000
    importance_min_rows: int = 100_000

    @classmethod
    def from_mapping(cls, body: Mapping[str, Any] | None) -> ExecutorConfig:
        """Build from a params mapping; a wrong key or value is refused, naming it."""
        body = dict(body or {})
        known = [f.name for f in fields(cls)]
        problems = [f"params.yaml: executor.{k}: unknown key; valid: {', '.join(known)}"
                    for k in body if k not in known]  # fmt: skip
        for key, value in body.items():
            if key in _RULES and not _RULES[key][1](value):
                problems.append(
                    f"params.yaml: executor.{key}: expected {_RULES[key][0]}, got {value!r}"
                )
        if problems:
            raise HortusError("\n".join(problems))
        return cls(**body)

    def with_env(self, env: Mapping[str, str] | None = None) -> ExecutorConfig:
        """Return this config with HORTUS_EXECUTOR / HORTUS_RAY_ADDRESS applied."""
        env = os.environ if env is None else env
        kind = env.get(ENV_KIND, "").strip().lower() or self.kind
        if kind not in ("local", "ray"):
            raise HortusError(f"{ENV_KIND}: expected local or ray, got {kind!r}")
        address = env.get(ENV_ADDRESS, "").strip() or self.address
        return replace(self, kind=kind, address=address)
