"""Ingest: landing files -> bronze (restricted zone), append-only and idempotent.

A landing file is identified by its content (SHA-256).  Ingesting a file whose
content is already in bronze adds nothing; a new file (or a new version of a
file) appends.  Every file seen is recorded in `bronze.landing_files`, refused
ones with their reason.  Rows get ingestion metadata: source file, line,
file hash, export date from the file name, batch id and ingestion time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from hortus.executor.base import Executor, LocalExecutor, executor_for
from hortus.lakehouse.contracts import Contract
from hortus.lakehouse.landing import (
    IngestLimits,
    LandedFile,
    file_date,
    file_sha256_of,
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
    #: files a stopped run committed to bronze but not to the file log, recorded now
    recorded_late: list[LandedFile] = field(default_factory=list)

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
            "blank_lines_skipped": sum(f.blank_lines for f in self.files),
            "files_recorded_late": [f.source_file for f in self.recorded_late],
            "warnings": [w for f in self.recorded_late + self.files for w in f.warnings],
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
    return _in_bronze(lh) | _logged(lh)


def _in_bronze(lh: Lakehouse) -> set[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    keys = ["_source_file", "_file_sha256"]
    for contract in lh.catalog.landed():
        name = "bronze." + contract.name
        if lh.exists(name):
            done = lh.scan(name).select(keys).unique().collect()
            seen |= set(done.iter_rows())
    return seen


def _logged(lh: Lakehouse) -> set[tuple[str, str]]:
    if not lh.exists(FILES_TABLE):
        return set()
    return set(lh.scan(FILES_TABLE).select("source_file", "file_sha256").collect().iter_rows())


def record_unlogged(
    lh: Lakehouse,
    landing: Path,
    *,
    now: datetime,
    sizes: dict[tuple[str, str], int] | None = None,
    missing: set[tuple[str, str]] | None = None,
) -> list[LandedFile]:
    """Record in the file log the files whose rows are in bronze but that it lacks; return them.

    An ingest killed between its bronze commit and its file-log commit leaves such
    files; their rows carry `_source_file`, `_file_sha256`, `_batch_id` and
    `_ingested_at`, so the next run records them as accepted, with that batch and time.
    """
    missing = _in_bronze(lh) - _logged(lh) if missing is None else missing
    if not missing:
        return []
    sizes = sizes or {}
    wanted = pl.DataFrame(sorted(missing), schema=["_source_file", "_file_sha256"], orient="row")
    found: list[LandedFile] = []
    rows = []
    for contract in lh.catalog.landed():
        name = "bronze." + contract.name
        if not lh.exists(name):
            continue
        per_file = (
            lh.scan(name)
            .join(wanted.lazy(), on=["_source_file", "_file_sha256"], how="semi")
            .group_by("_source_file", "_file_sha256")
            .agg(pl.len().alias("rows"), pl.first("_batch_id"), pl.min("_ingested_at"))
            .sort("_source_file")
            .collect()
        )
        for r in per_file.iter_rows(named=True):
            key = (r["_source_file"], r["_file_sha256"])
            size = sizes[key] if key in sizes else _size_if_same(landing, *key)
            info = LandedFile(key[0], key[1], size, contract.full_name, rows=r["rows"])
            info.warnings.append(
                f"{key[0]}: recorded by a later run (its rows were committed to {name} by "
                f"batch {r['_batch_id']}, the file log was not)"
            )
            found.append(info)
            rows.append((r["_batch_id"], r["_ingested_at"] or now))
    if found:
        frame = _files_frame(found, "", now).with_columns(
            pl.Series("batch_id", [b for b, _ in rows], dtype=pl.String),
            pl.Series("ingested_at", [at for _, at in rows]).cast(pl.Datetime("us", "UTC")),
        )
        lh.write(FILES_TABLE, frame, mode="append", note="files landed by a run that stopped")
    return found


def _size_if_same(landing: Path, rel: str, sha: str) -> int:
    """Return the size of landing/rel if it still holds those bytes, else 0 (unknown)."""
    path = Path(landing) / rel
    try:
        return path.stat().st_size if file_sha256_of(path) == sha else 0
    except OSError:
        return 0


def _outside(path: Path, allowed: list[Path]) -> Path | None:
    """Return where `path` really points when that is outside every allowed folder."""
    real = path.resolve()
    return None if any(real.is_relative_to(a) for a in allowed) else real


def ingest(
    landing: Path,
    lh: Lakehouse,
    *,
    now: datetime | None = None,
    flush_rows: int = 2_000_000,
    limits: IngestLimits | None = None,
    within: Path | None = None,
    executor: Executor | None = None,
) -> IngestReport:
    """Ingest every new landing file into bronze; return the report.

    Files are read one at a time as streams, each stopped at the caps of `limits`
    (params.yaml `ingest`); rows are appended to bronze in commits of about
    `flush_rows` rows, so memory stays bounded for large landings.  A file (or a
    link) that resolves outside `within` (default: the landing folder; the
    project's DVC cache is allowed too) is refused unread (`outside_landing`).
    Files a crashed run committed to bronze but not to the file log are recorded
    first (`record_unlogged`).

    Files are read and checked by the `executor` (default: the project's,
    `hortus.executor.executor_for`; in-process, two files ahead in threads), in
    file order; only this process writes to bronze.
    """
    executor = executor or executor_for(lh.paths.root)
    now = now or datetime.now(UTC)
    limits = limits or IngestLimits()
    landing = Path(landing)
    allowed = [Path(within or landing).resolve(), (lh.paths.root / ".dvc" / "cache").resolve()]
    candidates = discover(landing, lh)
    escaped = {rel: real for p, rel, _ in candidates if (real := _outside(p, allowed))}
    hashes = {rel: _link_sha(p) if rel in escaped else _sha_or_error(p) for p, rel, _ in candidates}
    in_bronze, logged = _in_bronze(lh), _logged(lh)
    seen = in_bronze | logged
    sizes = {(rel, hashes[rel]): _size_or_0(p) for p, rel, _ in candidates if rel not in escaped}
    late = record_unlogged(lh, landing, now=now, sizes=sizes, missing=in_bronze - logged)
    new = [(p, rel, t) for p, rel, t in candidates if (rel, hashes[rel]) not in seen]
    batch_id = (
        "b"
        + hashlib.sha256(
            "\n".join(f"{rel}:{hashes[rel]}" for _, rel, _ in new).encode()
        ).hexdigest()[:12]
    )
    report = IngestReport(
        batch_id=batch_id,
        skipped=[rel for _, rel, _ in candidates if (rel, hashes[rel]) in seen],
        recorded_late=late,
    )
    buffers: dict[str, list[pl.DataFrame]] = {}

    def flush(table: str) -> None:
        if buffers.get(table):
            lh.write(table, pl.concat(buffers.pop(table), how="diagonal_relaxed"), mode="append")

    tasks = [
        (p, rel, lh.catalog.get(t) if t else None, hashes[rel], escaped.get(rel), allowed[0])
        for p, rel, t in new
    ]
    reads = executor.map(_read_file, tasks, shared=(limits,), ahead=2)
    for (_path, rel, table), (df, info) in zip(new, reads, strict=True):
        report.files.append(info)
        if df is None or table is None:
            continue
        target = "bronze." + lh.catalog.get(table).name
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
    # Rows first, then the file log (see already_ingested and record_unlogged).
    if report.files:
        lh.write(FILES_TABLE, _files_frame(report.files, report.batch_id, now), mode="append")
    return report


def _sha_or_error(path: Path) -> str:
    """Return a file's SHA-256; a file that cannot be read gets one of its error instead.

    The read that follows fails the same way and refuses that file alone (read_error),
    recorded once per error; the run goes on.
    """
    try:
        return file_sha256_of(path)
    except OSError as exc:
        return hashlib.sha256(f"unreadable:{exc.errno}:{exc.strerror}".encode()).hexdigest()


def _size_or_0(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _link_sha(path: Path) -> str:
    """Identify a link by where it points (its target is not read)."""
    return hashlib.sha256(f"link:{path.resolve()}".encode()).hexdigest()


_Read = tuple[pl.DataFrame | None, LandedFile]


def _read_file(
    task: tuple[Path, str, Contract | None, str, Path | None, Path], limits: IngestLimits
) -> _Read:
    """Read one landing file (a task: in-process or on a worker); refusals say why.

    `task` is (path, relative name, contract or None, sha256, where a link escaping
    the landing folder points or None, the landing folder).
    """
    path, rel, contract, sha, escaped_to, landing = task
    if escaped_to is not None:
        info = LandedFile(rel, sha, 0, contract.full_name if contract else None)
        return None, info.refuse(
            "outside_landing", f"{rel} is a link to {escaped_to}, outside {landing}"
        )
    if contract is None:
        info = LandedFile(rel, sha, _size_or_0(path), None)
        return None, info.refuse("no_contract", f"{rel} matches no table's landing pattern")
    return read_landing_file(path, rel, contract, limits, sha)


def _read_ahead(
    files: list[tuple[Path, str, str | None]],
    read: Callable[[Path, str, str | None], _Read],
    depth: int = 2,
) -> Iterator[_Read]:
    """Yield `read(path, rel, table)` of each file in order, `depth` files ahead in threads.

    zlib and polars release the GIL, so the next files are read and parsed while the
    current one is appended; at most depth + 1 files are in memory.
    """
    yield from LocalExecutor().map(lambda f: read(*f), files, ahead=depth)


def _files_frame(files: list[LandedFile], batch_id: str, now: datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "source_file": [f.source_file for f in files],
            "file_sha256": [f.file_sha256 for f in files],
            "table": [f.table for f in files],
            "status": [f.status for f in files],
            "reason": [f.reason for f in files],
            "warnings": ["; ".join(f.warnings) or None for f in files],
            "rows": [f.rows for f in files],
            "size_bytes": [f.size_bytes for f in files],
            "batch_id": [batch_id] * len(files),
            "ingested_at": [now] * len(files),
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
