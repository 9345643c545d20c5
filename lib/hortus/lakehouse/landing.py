"""Read landing files into bronze frames, refusing whole files that cannot be trusted.

File-level decisions (the file is refused, recorded with its reason, and the
other files go on):
- empty file (0 bytes, or no data row)                   -> rule `empty_file`
- truncated or corrupt gzip stream                        -> rule `truncated_compressed`
- changed schema: a required column missing from the CSV
  header, or absent from every sampled JSON line, or a
  known column absent while a look-alike appears
  (a rename upstream, e.g. price -> unit_price)        -> rule `changed_schema`
- unexpected extra columns when the contract says refuse  -> rule `extra_column`
Row-level problems (malformed JSON, wrong types, bad bytes, out-of-range or
duplicate values) are not decided here: the rows land in bronze as they are and
silver quarantines them, so no row is lost.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import json
import re
import zlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from hortus.lakehouse.contracts import Contract

_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")
SAMPLE_LINES = 1000


@dataclass
class LandedFile:
    """What ingest learned about one landing file."""

    source_file: str
    file_sha256: str
    size_bytes: int
    table: str | None
    status: str = "accepted"
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    rows: int = 0

    def refuse(self, rule: str, detail: str) -> LandedFile:
        """Mark the file refused with a rule name and a detail naming the problem."""
        self.status, self.reason = "refused", f"{rule}: {detail}"
        return self


def file_sha256(data: bytes) -> str:
    """Return the hex SHA-256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def file_date(name: str) -> date | None:
    """Return the export date in a file name like events-2025-03-01.jsonl.gz, if any."""
    m = _DATE_IN_NAME.search(Path(name).name)
    return date.fromisoformat(m.group(1)) if m else None


def _decompress(data: bytes, name: str) -> bytes:
    if not name.endswith(".gz"):
        return data
    return gzip.decompress(data)


@dataclass(frozen=True)
class LoadedFile:
    """A landing file's bytes, with its decompressed payload or why there is none."""

    raw: bytes
    payload: bytes | None
    error: str | None = None


def load_file(path: Path, rel: str) -> LoadedFile:
    """Read a landing file and decompress it (ingest runs this ahead, in a thread)."""
    raw = path.read_bytes()
    try:
        return LoadedFile(raw, _decompress(raw, rel))
    except (EOFError, OSError, zlib.error) as exc:
        return LoadedFile(raw, None, str(exc))


def read_landing_file(
    path: Path, rel: str, contract: Contract, loaded: LoadedFile | None = None
) -> tuple[pl.DataFrame | None, LandedFile]:
    """Read one landing file into a bronze frame (raw strings, 1-based `_line`).

    Returns (frame or None when refused, the file record).
    """
    loaded = loaded or load_file(path, rel)
    data = loaded.raw
    info = LandedFile(rel, file_sha256(data), len(data), contract.full_name)
    if not data:
        return None, info.refuse("empty_file", f"{rel} is empty (0 bytes)")
    payload = loaded.payload
    if payload is None:
        return None, info.refuse(
            "truncated_compressed", f"{rel} is not a complete gzip stream ({loaded.error})"
        )
    assert contract.landing is not None
    if contract.landing.format == "csv":
        df = _read_csv(payload, rel, contract, info)
    else:
        df = _read_jsonl(payload, rel, contract, info)
    if df is None:
        return None, info
    if df.height == 0:
        return None, info.refuse("empty_file", f"{rel} has no data rows")
    info.rows = df.height
    return df, info


def _check_columns(
    present: set[str], rel: str, contract: Contract, info: LandedFile, what: str
) -> bool:
    expected = set(contract.column_names)
    missing_required = [c for c in contract.required if c not in present]
    missing_optional = sorted(expected - present - set(missing_required))
    extra = sorted(present - expected)
    if missing_required:
        detail = (
            f"{rel}: {what} lacks required column(s) {missing_required} of {contract.full_name}"
        )
        if extra:
            detail += f"; unexpected column(s) {extra}"
        info.refuse("changed_schema", detail)
        return False
    renamed = _likely_renames(missing_optional, extra)
    if renamed:
        # a known column vanished while a look-alike appeared: a rename upstream
        # (e.g. price -> unit_price) would otherwise load as nulls with only a warning
        pairs = ", ".join(f"{old!r} -> {new!r}" for old, new in renamed)
        info.refuse(
            "changed_schema",
            f"{rel}: {what} lacks column(s) {[o for o, _ in renamed]} of {contract.full_name} "
            f"and has unexpected column(s) {[n for _, n in renamed]}: renamed? ({pairs})",
        )
        return False
    if extra and contract.on_extra_columns == "refuse":
        info.refuse("extra_column", f"{rel}: unexpected column(s) {extra} in {what}")
        return False
    if extra:
        info.warnings.append(f"{rel}: unexpected column(s) {extra} ignored (kept raw in bronze)")
    if missing_optional and what == "the header":  # JSON often omits null keys
        info.warnings.append(f"{rel}: optional column(s) {missing_optional} absent (null)")
    return True


def _likely_renames(missing: list[str], extra: list[str]) -> list[tuple[str, str]]:
    """Pair each missing column with an extra one whose name contains it or is close to it."""
    pairs = []
    for old in missing:
        for new in extra:
            close = difflib.SequenceMatcher(None, old, new).ratio() >= 0.75
            if old in new or new in old or close:
                pairs.append((old, new))
                break
    return pairs


def _read_csv(
    payload: bytes, rel: str, contract: Contract, info: LandedFile
) -> pl.DataFrame | None:
    df = pl.read_csv(payload, infer_schema=False, encoding="utf8-lossy")
    if not _check_columns(set(df.columns), rel, contract, info, "the header"):
        return None
    cols = [
        pl.col(c) if c in df.columns else pl.lit(None, pl.String).alias(c)
        for c in contract.column_names
    ]
    extra = [c for c in df.columns if c not in contract.column_names]
    return df.select(
        *cols,
        *[pl.col(c) for c in extra],
        pl.int_range(2, pl.len() + 2, dtype=pl.Int64).alias("_line"),
    )


def split_lines(payload: bytes) -> pl.Series:
    """Return the lines of a text payload (the newline ending the last line adds none).

    Valid UTF-8 is laid out as Arrow strings straight over the payload, one offset
    per newline (no Python string per line); bytes that are not UTF-8 are decoded
    with U+FFFD in their place, which silver's encoding rule quarantines.
    """
    data = np.frombuffer(payload, dtype=np.uint8)
    offsets = np.concatenate(([0], np.flatnonzero(data == 10) + 1)).astype(np.int64)
    if offsets[-1] != len(payload):
        offsets = np.append(offsets, len(payload))  # a last line without a newline
    arr = pa.LargeStringArray.from_buffers(
        len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(payload)
    )
    try:
        arr.validate(full=True)  # UTF-8 of every line
    except pa.ArrowInvalid:
        text = payload.decode("utf-8", errors="replace")
        lines = pl.Series("_raw", [text]).str.split("\n").explode()
        return lines.head(lines.len() - 1) if text.endswith("\n") else lines
    return pl.Series("_raw", arr).str.strip_suffix("\n")


def _read_jsonl(
    payload: bytes, rel: str, contract: Contract, info: LandedFile
) -> pl.DataFrame | None:
    lines = split_lines(payload).to_frame("_raw")
    lines = lines.with_row_index("_line", offset=1).with_columns(pl.col("_line").cast(pl.Int64))
    sample = lines.head(SAMPLE_LINES).filter(pl.col("_raw").str.json_path_match("$").is_not_null())[
        "_raw"
    ]
    keys: set[str] = set()
    if sample.len():
        decoded = sample.str.json_decode(infer_schema_length=None)
        if isinstance(decoded.dtype, pl.Struct):
            keys = {f.name for f in decoded.dtype.fields}
    if sample.len() and not _check_columns(keys, rel, contract, info, "every sampled line"):
        return None
    return lines.select("_raw", "_line")


def csv_row_as_json(columns: list[str]) -> pl.Expr:
    """Return an expression rendering CSV string columns of a row as a JSON object text."""
    return pl.struct(columns).struct.json_encode()


def dumps(obj: object) -> str:
    """Serialise to stable JSON (sorted keys)."""
    return json.dumps(obj, sort_keys=True, default=str)
