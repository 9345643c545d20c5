"""Ingest: landing files -> bronze (restricted zone), append-only and idempotent.

A landing file is identified by its content (SHA-256).  Ingesting a file whose
content is already in bronze adds nothing; a new file (or a new version of a
file) appends.  Every file seen is recorded in `bronze.landing_files`, refused
ones with their reason.  Rows get ingestion metadata: source file, line,
file hash, export date from the file name, batch id and ingestion time.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from hortus.lakehouse.landing import (
    LandedFile,
    LoadedFile,
    file_date,
    file_sha256,
    load_file,
    read_landing_file,
)
from hortus.lakehouse.tables import Lakehouse

FILES_TABLE = "bronze.landing_files"


@dataclass
class IngestReport:
    """Counts of one ingest run."""

    batch_id: str
    files: list[LandedFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def refused(self) -> list[LandedFile]:
        """Files refused in this run."""
        return [f for f in self.files if f.status == "refused"]

    def rows_by_table(self) -> dict[str, int]:
        """Rows landed per bronze table in this run."""
        out: dict[str, int] = {}
        for f in self.files:
            if f.status == "accepted" and f.table:
                out[f.table] = out.get(f.table, 0) + f.rows
        return out

    def to_dict(self) -> dict:
        """Return a JSON-friendly summary."""
        return {
            "batch_id": self.batch_id,
            "files_new": len(self.files),
            "files_skipped_already_ingested": len(self.skipped),
            "files_refused": len(self.refused),
            "rows_landed": self.rows_by_table(),
            "refused": [{"file": f.source_file, "reason": f.reason} for f in self.refused],
            "warnings": [w for f in self.files for w in f.warnings],
        }


def discover(landing: Path, lh: Lakehouse) -> list[tuple[Path, str, str | None]]:
    """List landing files as (path, relative name, table or None), sorted by name."""
    out = []
    claimed: set[Path] = set()
    for contract in lh.catalog.landed():
        assert contract.landing is not None
        for p in sorted(landing.glob(contract.landing.glob)):
            if p.is_file() and p not in claimed:
                claimed.add(p)
                out.append((p, p.relative_to(landing).as_posix(), contract.full_name))
    for p in sorted(landing.rglob("*")):
        rel = p.relative_to(landing).as_posix()
        if (
            p.is_file()
            and p not in claimed
            and not rel.startswith(("_", "."))
            and not p.name.endswith(".dvc")
        ):
            out.append((p, rel, None))  # no contract claims it: refused, recorded
    return sorted(out, key=lambda t: t[1])


def already_ingested(lh: Lakehouse) -> set[tuple[str, str]]:
    """Return (file, sha256) of files already landed in bronze or already refused.

    Bronze rows are trusted as well as the file log, so a crash between writing
    the rows and writing the log does not land the same file twice.
    """
    seen: set[tuple[str, str]] = set()
    keys = ["_source_file", "_file_sha256"]
    for contract in lh.catalog.landed():
        name = "bronze." + contract.name
        if lh.exists(name):
            done = lh.scan(name).select(keys).unique().collect()
            seen |= set(done.iter_rows())
    if lh.exists(FILES_TABLE):
        logged = lh.scan(FILES_TABLE).select("source_file", "file_sha256").collect()
        seen |= set(logged.iter_rows())
    return seen


def ingest(
    landing: Path, lh: Lakehouse, *, now: datetime | None = None, flush_rows: int = 2_000_000
) -> IngestReport:
    """Ingest every new landing file into bronze; return the report.

    Files are read one at a time; rows are appended to bronze in commits of about
    `flush_rows` rows, so memory stays bounded for large landings.
    """
    now = now or datetime.now(UTC)
    candidates = discover(Path(landing), lh)
    seen = already_ingested(lh)
    hashes = {rel: file_sha256(p.read_bytes()) for p, rel, _ in candidates}
    new = [(p, rel, t) for p, rel, t in candidates if (rel, hashes[rel]) not in seen]
    batch_id = (
        "b"
        + hashlib.sha256(
            "\n".join(f"{rel}:{hashes[rel]}" for _, rel, _ in new).encode()
        ).hexdigest()[:12]
    )
    report = IngestReport(
        batch_id=batch_id, skipped=[rel for _, rel, _ in candidates if (rel, hashes[rel]) in seen]
    )
    buffers: dict[str, list[pl.DataFrame]] = {}

    def flush(table: str) -> None:
        if buffers.get(table):
            lh.write(table, pl.concat(buffers.pop(table), how="diagonal_relaxed"), mode="append")

    for (path, rel, table), loaded in zip(new, _read_ahead(new), strict=True):
        if table is None:
            info = LandedFile(rel, hashes[rel], len(loaded.raw), None)
            report.files.append(
                info.refuse("no_contract", f"{rel} matches no table's landing pattern")
            )
            continue
        contract = lh.catalog.get(table)
        df, info = read_landing_file(path, rel, contract, loaded)
        report.files.append(info)
        if df is None:
            continue
        target = "bronze." + contract.name
        buffers.setdefault(target, []).append(
            df.with_columns(
                pl.lit(rel).alias("_source_file"),
                pl.lit(info.file_sha256).alias("_file_sha256"),
                pl.lit(file_date(rel), pl.Date).alias("_file_date"),
                pl.lit(batch_id).alias("_batch_id"),
                pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("_ingested_at"),
            )
        )
        if sum(b.height for b in buffers[target]) >= flush_rows:
            flush(target)
    for target in list(buffers):
        flush(target)
    # Rows first, then the file log (see already_ingested).
    if report.files:
        lh.write(FILES_TABLE, _files_frame(report, now), mode="append")
    return report


def _read_ahead(files: list[tuple[Path, str, str | None]], depth: int = 2) -> Iterator[LoadedFile]:
    """Yield each file read and decompressed, `depth` files ahead in threads.

    zlib releases the GIL, so the next files are decompressed while the current
    one is split and checked; at most depth + 1 files are in memory.
    """
    with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="hortus-read") as pool:
        pending: deque[Future[LoadedFile]] = deque()
        for path, rel, _ in files:
            pending.append(pool.submit(load_file, path, rel))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _files_frame(report: IngestReport, now: datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "source_file": [f.source_file for f in report.files],
            "file_sha256": [f.file_sha256 for f in report.files],
            "table": [f.table for f in report.files],
            "status": [f.status for f in report.files],
            "reason": [f.reason for f in report.files],
            "warnings": ["; ".join(f.warnings) or None for f in report.files],
            "rows": [f.rows for f in report.files],
            "size_bytes": [f.size_bytes for f in report.files],
            "batch_id": [report.batch_id] * len(report.files),
            "ingested_at": [now] * len(report.files),
        },
        schema={
            "source_file": pl.String,
            "file_sha256": pl.String,
            "table": pl.String,
            "status": pl.String,
            "reason": pl.String,
            "warnings": pl.String,
            "rows": pl.Int64,
            "size_bytes": pl.Int64,
            "batch_id": pl.String,
            "ingested_at": pl.Datetime("us", "UTC"),
        },
    )
