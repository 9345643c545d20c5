"""Resolved read plans: what a worker reads, decided and audited by the driver.

A worker never opens a `Lakehouse` (no policy file, no audit key, no PII key on a
worker node).  The driver checks the `read` grant, writes the audit record (the
same `read` record a `Lakehouse.scan` writes, saying the read runs on the
executor) and hands each task a `TableRead`: the table's location, the Delta
version read, the user's row filter and masking expressions, the columns and an
extra row filter of the task (its time slice or entity shard).  Every task reads
that version, so tasks that run later or again see the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import polars as pl

from hortus.lakehouse._objstore import TableLocation
from hortus.lakehouse.tables import Lakehouse


@dataclass(frozen=True)
class TableRead:
    """One table as a worker reads it: location, version, filter, masking, columns."""

    table: str
    uri: str
    version: int
    row_filter: pl.Expr | None
    select: tuple[pl.Expr, ...]
    columns: tuple[str, ...]
    where: pl.Expr | None = None  # the task's own slice of the rows

    def scan(self) -> pl.LazyFrame:
        """Return the rows of this plan, lazily (policy filter, masks, then the slice)."""
        # on object storage the worker's own environment gives the credentials
        # (AWS_*): none travel with the plan
        options = TableLocation.of(self.uri).write_kwargs()
        lf = pl.scan_delta(self.uri, version=self.version, **options)
        if self.row_filter is not None:
            lf = lf.filter(self.row_filter)
        lf = lf.select(list(self.select))
        if self.where is not None:
            lf = lf.filter(self.where)
        return lf.select(list(self.columns))

    def read(self) -> pl.DataFrame:
        """Return the rows of this plan."""
        return self.scan().collect()

    def sliced(self, where: pl.Expr) -> TableRead:
        """Return this plan restricted to the rows `where` holds (one task's share)."""
        return replace(self, where=where if self.where is None else self.where & where)


def resolve_read(
    lh: Lakehouse, name: str, columns: list[str] | None = None, *, version: int | None = None
) -> TableRead:
    """Check, audit and resolve a read of `name` by `lh.user` for workers to run.

    Raises AccessDenied (audited) like `Lakehouse.scan`; records the version read in
    `lh.reads` (the lineage of the next write).
    """
    lf = lh.scan(name, version=version)  # grant, plan, audit record, lh.reads
    read_version = lh.reads[name]
    plan = lh._plan(name, lf.collect_schema().names(), lh._read_contract(name))
    names = tuple(columns) if columns else tuple(lf.collect_schema().names())
    return TableRead(
        table=name,
        uri=lh.location(name).uri,
        version=read_version,
        row_filter=plan.row_filter,
        select=plan.select,
        columns=names,
    )
