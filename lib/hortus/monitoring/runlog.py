"""The pipeline run log: one row per stage run in `ops.pipeline_runs`, failures included.

Wrap a stage's work in `record_run`; the row is written when the block ends, with
status ``ok`` or ``failed`` (the error re-raised after it is recorded), the
duration, the rows in and out, the peak memory and the git commit.

Each run is also an operations event (`hortus.monitoring.events`): ``stage_failed`` when
the block raises, ``stage_succeeded`` when it ends (which resolves a ``stage_failed``
alert of that stage), dispatched at once to the rules and actions of the project's
`alerts` section; at the end of the block the ``table_committed`` events of the tables
written meanwhile in this process are dispatched too.  Events never hide a stage's
error: if emitting fails after a failed stage, the stage's exception is raised with a
note saying why; if dispatching fails after a successful one (a misconfigured `alerts`
section), a warning says why on stderr and the stage stays successful.

Peak memory is ``resource.getrusage(...).ru_maxrss`` of the process and of its
waited-for children, whichever is larger, in MiB: a high-water mark since the
process started, so a stage run in its own process (as `dvc repro` does) reports
its own peak, while stages run one after another in one process report at least
the peak of the earlier ones.

Examples
--------
>>> with record_run(lh, "kpis", rows_in=events.height) as run:   # doctest: +SKIP
...     kpis = compute(events)
...     run.rows_out = kpis.height
"""

from __future__ import annotations

import resource
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from hortus.config import Paths
from hortus.errors import HortusError
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.tables import Lakehouse, pending_commits
from hortus.provenance import git_state

RUNS_TABLE = "ops.pipeline_runs"
STATUSES = ("ok", "failed")
RUN_SCHEMA = pl.Schema(
    {
        "run_id": pl.String,
        "stage": pl.String,
        "status": pl.String,
        "started_at": pl.Datetime("us", "UTC"),
        "finished_at": pl.Datetime("us", "UTC"),
        "duration_s": pl.Float64,
        "rows_in": pl.Int64,
        "rows_out": pl.Int64,
        "peak_memory_mb": pl.Float64,
        "error": pl.String,
        "git_commit": pl.String,
    }
)


def peak_memory_mb() -> float:
    """Return the peak resident memory of this process or its children so far, in MiB."""
    per_mib = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # bytes vs KiB
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / per_mib


@dataclass
class Run:
    """One stage run being recorded; set `rows_out` (and `rows_in`) inside the block."""

    run_id: str
    stage: str
    started_at: datetime
    git_commit: str
    rows_in: int | None = None
    rows_out: int | None = None
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    def row(self, status: str, error: str | None) -> pl.DataFrame:
        """Return this run as one ops.pipeline_runs row, finished now."""
        return pl.DataFrame(
            [
                {
                    "run_id": self.run_id,
                    "stage": self.stage,
                    "status": status,
                    "started_at": self.started_at,
                    "finished_at": datetime.now(UTC),
                    "duration_s": time.perf_counter() - self._t0,
                    "rows_in": self.rows_in,
                    "rows_out": self.rows_out,
                    "peak_memory_mb": peak_memory_mb(),
                    "error": error,
                    "git_commit": self.git_commit,
                }
            ],
            schema=RUN_SCHEMA,
        )


def _lakehouse(lh_or_paths: Lakehouse | Paths, stage: str) -> Lakehouse:
    if isinstance(lh_or_paths, Lakehouse):
        return lh_or_paths
    return Lakehouse(paths=lh_or_paths, catalog=Catalog.load(root=lh_or_paths.root), stage=stage)


@contextmanager
def record_run(
    lh_or_paths: Lakehouse | Paths,
    stage: str,
    *,
    rows_in: int | None = None,
    git_commit: str | None = None,
) -> Iterator[Run]:
    """Record one run of `stage` in ops.pipeline_runs, as ok or failed, and yield it.

    The row is appended when the block ends.  An exception inside the block is
    recorded (status ``failed``, ``error`` = type and message) and re-raised.
    `git_commit` defaults to the project's HEAD (``unknown`` outside git).  Given
    `Paths`, a Lakehouse is opened as the current user with stage `stage`.

    Examples
    --------
    >>> with record_run(paths, "silver", rows_in=1000) as run:   # doctest: +SKIP
    ...     run.rows_out = 990
    """
    lh = _lakehouse(lh_or_paths, stage)
    run = Run(
        run_id=uuid.uuid4().hex[:16],
        stage=stage,
        started_at=datetime.now(UTC),
        git_commit=git_commit or git_state(lh.paths.root)[0],
        rows_in=rows_in,
    )
    from hortus.monitoring import events  # events -> alerts -> ...: keep this module light

    try:
        yield run
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        lh.write(RUNS_TABLE, run.row("failed", message), mode="append", inputs={})
        detail = {"run_id": run.run_id, "error": message, "git_commit": run.git_commit}
        try:
            events.dispatch_pending(lh, pending_commits())
            events.emit(lh, "stage_failed", stage, detail)
        except Exception as emit_exc:  # the stage's own error must surface, not this one
            note = (
                f"hortus: the stage_failed event of {stage} was not emitted: "
                f"{type(emit_exc).__name__}: {emit_exc}"
            )
            print(note, file=sys.stderr)
            exc.add_note(note)
        raise
    lh.write(RUNS_TABLE, run.row("ok", None), mode="append", inputs={})
    try:
        events.emit(lh, "stage_succeeded", stage, {"run_id": run.run_id, "rows_out": run.rows_out})
        events.dispatch_pending(lh, pending_commits())
    except HortusError as exc:  # e.g. a webhook token unset: the stage itself succeeded
        # the events are in ops.events already; `hortus monitor run` judges them later
        print(
            f"hortus: warning: stage {stage} succeeded, but its events were not dispatched: {exc}",
            file=sys.stderr,
        )


def read_runs(lh: Lakehouse) -> pl.DataFrame:
    """Return every recorded run (empty with the run schema if none was recorded yet)."""
    return lh.scan_or_empty(RUNS_TABLE).select(list(RUN_SCHEMA)).collect()
