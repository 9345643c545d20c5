"""The partitioned stages on an executor: feature logs and scoring per entity shard,
the training-set build per time slice.

Each function is called by the stage's own code (`hortus.features.store.build_offline`,
`hortus.features.store.training_set`, `hortus.serving.batch.batch_score`) when the
project's executor distributes work.
The driver resolves and audits every read (`hortus.executor.plan.resolve_read`),
the tasks compute, the driver concatenates in task order and makes the one write.
Both results equal the in-process ones row for row (tests/test_executor_ray.py):

- a feature log is computed per entity (group-by, running sums and forward fills
  over the entity), so partitioning the prepared source rows by a hash of the
  entity columns and concatenating the shards' logs gives the same rows;
- point-in-time joins are row-wise (each spine row takes the log state strictly
  before its own time), so slicing the spine into contiguous time ranges and
  joining each against the logs read up to the slice's last time is exact;
- scoring is row-wise (`score_frame`), so any partition of the selected rows is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl

from hortus.executor.base import Executor, LocalExecutor
from hortus.executor.plan import TableRead, resolve_read
from hortus.features.definitions import FeatureGroup, FeatureSet, point_in_time
from hortus.lakehouse.tables import Lakehouse


# ------------------------------------------------------------------ feature logs
def shard_key(columns: list[str] | tuple[str, ...]) -> pl.Expr:
    """Return a process-independent hash of `columns` (cast to text: categorical codes differ
    between processes, their text does not)."""
    return pl.struct([pl.col(c).cast(pl.String) for c in columns]).hash(seed=0)


@dataclass(frozen=True)
class LogShard:
    """One task of the feature-log build: shard `index` of `of` of one group's entities."""

    group: FeatureGroup
    source: TableRead
    others: dict[str, TableRead]  # the tables the group's `prepare` reads
    schema: dict[str, pl.DataType]  # the log table's contract schema
    index: int
    of: int


def _log_shard(task: LogShard) -> pl.DataFrame:
    """Task: the feature log of one entity shard of one group (the rows `build_offline` writes)."""
    g = task.group
    src = task.source.scan()
    if g.prepare is not None:
        src = g.prepare(src, lambda name: task.others[name].scan())
    if task.of > 1:
        src = src.filter(shard_key(g.entity) % task.of == task.index)
    log = g.log(src).collect()
    return log.select([pl.col(c).cast(t) for c, t in task.schema.items()])


def _resolve_group(lh: Lakehouse, g: FeatureGroup) -> tuple[TableRead, dict[str, TableRead]]:
    """Resolve (check, audit) the source of a group and every table its `prepare` reads.

    `prepare` is called once on the driver to build its lazy plan only (nothing is
    collected): the tables it asks for are resolved as it asks, as `lh.scan` would.
    """
    source = resolve_read(lh, g.source)
    others: dict[str, TableRead] = {}

    def read(name: str) -> pl.LazyFrame:
        if name not in others:
            others[name] = resolve_read(lh, name)
        return others[name].scan()

    if g.prepare is not None:
        g.prepare(source.scan(), read)
    return source, others


def feature_logs(
    lh: Lakehouse, fs: FeatureSet, executor: Executor, *, shards: int | None = None
) -> Iterator[tuple[FeatureGroup, pl.DataFrame, dict[str, int]]]:
    """Yield (group, log, reads) per group: its feature log built per entity shard on `executor`.

    The driver resolves every read first (versions, row filters, masks; audited
    once each); a group of n source rows gets max(2, n / `executor.config.chunk_rows`)
    shards (`shards` to choose), one task each; one shard below
    `executor.config.min_rows`, and in-process when no group reaches it.  Every
    task has finished (`settle`) before the first log is yielded, so a task that
    fails leaves every table as it was.  `reads`
    are the Delta versions read (the lineage of the group's write).
    """
    tasks: list[LogShard] = []
    lineage: list[dict[str, int]] = []
    counts: list[int] = []
    for g in fs.groups:
        lh.reads.clear()
        source, others = _resolve_group(lh, g)
        lineage.append(dict(lh.reads))
        rows = source.scan().select(pl.len()).collect().item()
        if shards is not None:
            n = max(1, shards)
        elif executor.distributes(rows):
            n = max(2, math.ceil(rows / executor.config.chunk_rows))
        else:
            n = 1
        schema = dict(lh.catalog.get(g.table).schema)
        tasks += [LogShard(g, source, others, schema, i, n) for i in range(n)]
        counts.append(n)
    if shards is None and max(counts, default=1) == 1:  # nothing worth a task: in-process
        executor = LocalExecutor(executor.config)
    results = executor.map(_log_shard, tasks, settle=True)
    for gi, g in enumerate(fs.groups):
        parts = [next(results) for _ in range(counts[gi])]
        log = pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]
        yield g, log.sort("ts", maintain_order=True), lineage[gi]


# ------------------------------------------------------------------ training set
def _join_slice(
    spine: pl.DataFrame, fs: FeatureSet, logs: dict[str, TableRead], time_col: str
) -> pl.DataFrame:
    """Task: join every feature to one time slice of the spine, reading logs up to it."""
    if spine.height == 0:
        frames = {name: plan.scan().head(0).collect() for name, plan in logs.items()}
    else:
        last = spine[time_col].max()
        frames = {name: plan.sliced(pl.col("ts") < last).read() for name, plan in logs.items()}
    return point_in_time(fs, frames, spine, time_col)


def training_set(
    lh: Lakehouse, fs: FeatureSet, spine: pl.DataFrame, time_col: str, executor: Executor
) -> pl.DataFrame:
    """Return the point-in-time training set, built per time slice on `executor`.

    The spine is cut into `executor.config.slices` contiguous row ranges (time
    slices when it is ordered by time, as the examples hooks return it); its row
    order is kept.
    """
    logs = {g.name: resolve_read(lh, g.table) for g in fs.groups}
    n = max(1, min(executor.config.slices, spine.height))
    size = math.ceil(spine.height / n) if spine.height else 0
    slices = [spine.slice(i * size, size) for i in range(n)] if size else [spine]
    parts = list(executor.map(_join_slice, slices, shared=(fs, logs, time_col)))
    return pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]


# ----------------------------------------------------------------------- scoring
def _score_shard(shard: TableRead, pipeline: Any, signature: Any, spec: Any) -> pl.DataFrame:
    """Task: score one entity shard of the selected rows."""
    from hortus.models.modeling import score_frame

    return score_frame(pipeline, signature, shard.read(), spec)


def selection(plan: TableRead, how: str, target: str, time: str | None) -> pl.Expr | None:
    """Return the row filter of `scoring.select` over a whole table (as `select_rows`).

    `latest` needs the table's latest time: the driver reads that one value.
    """
    if how == "unlabelled":
        return pl.col(target).is_null() if target in plan.columns else None
    if how == "latest":
        latest = plan.scan().select(pl.col(time).max()).collect().item()
        return pl.col(time) == pl.lit(latest, plan.scan().collect_schema()[time])
    return None


def score_sharded(
    plan: TableRead,
    keys: list[str],
    pipeline: Any,
    signature: Any,
    spec: Any,
    executor: Executor,
) -> pl.DataFrame:
    """Score the rows of `plan` in entity shards (hash of `keys`) on `executor`.

    n = rows / `executor.config.chunk_rows` shards (at least two, at most one per
    row); shard i holds the rows whose key hash is i modulo n.
    """
    rows = plan.scan().select(pl.len()).collect().item()
    if not executor.distributes(rows):
        return _score_shard(plan, pipeline, signature, spec)
    n = max(2, math.ceil(rows / executor.config.chunk_rows))
    n = min(n, max(rows, 1))
    key = pl.struct(keys).hash(seed=0) if keys else pl.int_range(pl.len()).cast(pl.UInt64)
    shards = [plan.sliced(key % n == i) for i in range(n)]
    parts = list(executor.map(_score_shard, shards, shared=(pipeline, signature, spec)))
    return pl.concat(parts, how="vertical")


def scoring_read(lh: Lakehouse, source: str, how: str, target: str, time: str | None) -> TableRead:
    """Resolve (check, audit) the read of a scoring source with its selection applied."""
    plan = resolve_read(lh, source)
    where = selection(plan, how, target, time)
    return plan if where is None else plan.sliced(where)


# ------------------------------------------------- scoring a spine (project hooks)
def _score_spine_shard(
    spine: pl.DataFrame,
    fs: FeatureSet,
    logs: dict[str, TableRead],
    time_col: str,
    pipeline: Any,
    signature: Any,
    spec: Any,
) -> pl.DataFrame:
    """Task: join the features to one entity shard of a scoring spine, then score it."""
    from hortus.models.modeling import score_frame

    return score_frame(pipeline, signature, _join_slice(spine, fs, logs, time_col), spec)


def score_spine(
    lh: Lakehouse,
    fs: FeatureSet,
    spine: pl.DataFrame,
    time_col: str,
    keys: list[str],
    pipeline: Any,
    signature: Any,
    spec: Any,
    executor: Executor,
    *,
    shards: int | None = None,
) -> pl.DataFrame:
    """Return `spine` with its point-in-time features and the model's scores, per entity shard.

    For a project's own scoring hook whose rows are built on the driver (a spine of
    candidates) rather than read from one table: the driver resolves (and audits)
    every feature log, cuts the spine by a hash of `keys` into
    max(2, rows / `executor.config.chunk_rows`) shards (`shards` to choose), and each
    task joins its shard's features (logs read before the shard's last time) and
    scores it.  Shards come back in shard order; a result that depends on rows of
    one key only (a top-k per user, with `keys` the user) is the in-process one.
    """
    logs = {g.name: resolve_read(lh, g.table) for g in fs.groups}
    n = shards or max(2, math.ceil(spine.height / executor.config.chunk_rows))
    n = max(1, min(n, spine.height))
    shard = shard_key(keys) % n
    parts = [p for p in (spine.filter(shard == i) for i in range(n)) if p.height] or [spine]
    shared = (fs, logs, time_col, pipeline, signature, spec)
    scored = list(executor.map(_score_spine_shard, parts, shared=shared))
    return pl.concat(scored, how="vertical") if len(scored) > 1 else scored[0]
