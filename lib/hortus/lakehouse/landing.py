"""Read landing files into bronze frames, refusing whole files that cannot be trusted.

Files are read as a stream (decompressed chunk by chunk), so a small hostile file
cannot fill memory: reading stops at the first cap passed.

File-level decisions (the file is refused, recorded with its reason, and the
other files go on):
- empty file (0 bytes, or no data row)                   -> rule `empty_file`
- truncated or corrupt gzip stream                        -> rule `truncated_compressed`
- decompresses past `ingest.max_file_mb`, or a .gz past
  `ingest.max_ratio` x its size (a gzip bomb)            -> rule `too_large`
- a line longer than `ingest.max_line_kb`                 -> rule `line_too_long`
- a CSV whose header cannot be read, or none of whose
  rows can                                                -> rule `unparseable`
- changed schema: a required column missing from the CSV
  header, or absent from every sampled JSON line, or a
  known column absent while a look-alike appears
  (a rename upstream, e.g. price -> unit_price)        -> rule `changed_schema`
- unexpected extra columns when the contract says refuse  -> rule `extra_column`
- any other error while reading the file                  -> rule `read_error`
  (ingest adds `no_contract` and `outside_landing`, a link to a file outside data/)
Blank lines are skipped and counted (a warning of the file, and the ingest report).

Memory bound (benchmarks/bench_hostile_ingest.py, each case in a fresh process; a slow
test runs it, and `make test-chaos` asserts it in every ingest run it completes):
ingest's peak RSS over its process baseline stays within

    2 x the decompressed bytes it holds for one bronze commit (the files read until
        `flush_rows` rows, at least the largest file; a CSV counts 6x as it is parsed
        whole)                                               -- the read: line frames
        as they grow chunk by chunk + their concatenation (measured 1.85x for 72 MB of
        0.9 MB lines; 1.73-1.84x for a 1M-event day)
  + 160 MB = ~50 MB fixed (opening and reading a file at all: a refused 1 GB gzip of
        zeros peaks 47 MB over) + ~55 MB for the Parquet write of one row group (row
        groups are cut at `delta_append.ROW_GROUP_BYTES`, 8 MiB, + one line of at most
        `max_line_kb`, so the writer holds a few times 9 MiB, whatever the file: 25-55
        MB measured) + ~55 MB margin for allocator noise (glibc arenas, the read-ahead
        threads); or one chunk of empty lines instead of the write,

and no file is read past min(max_file_mb, max_ratio x its compressed size).  Before the
row groups were cut by bytes (e049cf8), the write of one row group held the whole
frame 3-4 times: 80 lines of 0.9 MB peaked 363-374 MB over the baseline, above this
bound (304 MB); after, 203 MB, and a 200k-event day 183 MB (0.73 of 249; it measured
226-253 before) in the 200k-event run of benchmarks/README.md.  Measured before that
change (the write only shrank since): one 222 MB day of 1M events, 1.84x its size; the
demo's 28 days (46 MB, one commit), 240 MB over; a 142 MB CSV, 4.0x.  With the default
caps a 1 GB gzip bomb of event lines (3.9 MB) stops at 388 MB read, 459 MB over the
baseline (the probe saw 9.9 GB); the probe's 19 KB gzip of 20M blank lines at 16.8 MB,
148 MB over (12.3 GB and 20M rows before); a gzip of 1 GB of zeros or a 20 MB line at the
line cap, 47 MB over.  Not covered: the bound counts bytes, not rows, and a row costs
~30 bytes besides its text (a 16-byte string view, an 8-byte line number), so a file of
very short lines costs more per byte (200k lines of 40 characters, 8.2 MB: 142 MB
over, 0.81 of the bound); a per-row term is still to be stated.

Row-level problems (malformed JSON lines and CSV rows, wrong types, bad bytes,
out-of-range or duplicate values) are not decided here: the rows land in bronze as
they are (a malformed CSV row as its text in `_raw`, why in `_csv_error`) and silver
quarantines them, so no row is lost.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from hortus.lakehouse._landing_csv import CsvUnparseable, parse_csv
from hortus.lakehouse.contracts import Contract

_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")
SAMPLE_LINES = 1000
SAMPLE_BYTES = 4 << 20  # the schema sample of a JSON-lines file: at most this many bytes


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
    blank_lines: int = 0

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


MiB = 1 << 20
#: bytes read (after decompression) at a time: the line frames grow chunk by chunk, and
#: one chunk's temporaries stay small even when it holds only short lines
CHUNK_BYTES = 2 * MiB
#: decompressed bytes below which the compression ratio is not judged (small files)
RATIO_FLOOR = 16 * MiB


@dataclass(frozen=True)
class IngestLimits:
    """Caps that stop a hostile landing file before it fills memory (params.yaml `ingest`).

    `max_file_mb`: largest decompressed size of one file, in MiB; `max_line_kb`: longest
    line (a CSV record's physical line), in KiB; `max_ratio`: largest decompressed /
    compressed size of a `.gz` file, judged once past RATIO_FLOOR (16 MiB) decompressed.
    A file over any is refused (`too_large`, `line_too_long`) as soon as the cap is
    passed, without reading on.  The defaults are far above any real export of the
    project (a day of events is a few MB compressed about 9x; a line a few hundred
    bytes), while a gzip bomb stops at 100x its size instead of at max_file_mb.
    """

    max_file_bytes: int = 1024 * MiB
    max_line_bytes: int = 1 * MiB
    max_ratio: float = 100.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> IngestLimits:
        """Build the caps from the params.yaml `ingest` section (checked by its schema)."""
        params = params or {}
        return cls(
            max_file_bytes=int(float(params.get("max_file_mb", 1024)) * MiB),
            max_line_bytes=int(float(params.get("max_line_kb", 1024)) * 1024),
            max_ratio=float(params.get("max_ratio", 100)),
        )


class Refused(Exception):
    """A landing file is refused: `rule` and a detail naming the file and the problem."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule, self.detail = rule, detail


def file_sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in chunks (never whole in memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def stream_file(path: Path, rel: str, limits: IngestLimits) -> Iterator[bytes]:
    """Yield a landing file's bytes, decompressed (`.gz`), in chunks; refuse past the cap."""
    total = 0
    gz = rel.endswith(".gz")
    cap = limits.max_file_bytes
    if gz:  # a bomb: stop at max_ratio x the compressed size (small files not judged)
        by_ratio = max(RATIO_FLOOR, int(limits.max_ratio * path.stat().st_size))
        cap = min(cap, by_ratio)
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                total += len(chunk)
                if total > cap:
                    why = (
                        f"{_size(limits.max_file_bytes)} (ingest.max_file_mb)"
                        if cap == limits.max_file_bytes
                        else f"{limits.max_ratio:g}x its compressed size (ingest.max_ratio)"
                    )
                    raise Refused(
                        "too_large", f"{rel} decompresses to more than {why}; read no further"
                    )
                yield chunk
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise Refused(
            "truncated_compressed", f"{rel} is not a complete gzip stream ({exc})"
        ) from None


def _size(n: int) -> str:
    return f"{n / MiB:g} MiB" if n >= MiB else f"{n / 1024:g} KiB"


def read_landing_file(
    path: Path,
    rel: str,
    contract: Contract,
    limits: IngestLimits | None = None,
    sha256: str | None = None,
) -> tuple[pl.DataFrame | None, LandedFile]:
    """Read one landing file into a bronze frame (raw strings, 1-based `_line`).

    Returns (frame or None when refused, the file record).  Whatever goes wrong
    while reading this file refuses this file, with the error, never the run.
    """
    limits = limits or IngestLimits()
    info = LandedFile(rel, sha256 or "", 0, contract.full_name)
    try:
        info.size_bytes = path.stat().st_size
        info.file_sha256 = sha256 or file_sha256_of(path)
        if info.size_bytes == 0:
            return None, info.refuse("empty_file", f"{rel} is empty (0 bytes)")
        assert contract.landing is not None
        if contract.landing.format == "csv":
            df = _read_csv(path, rel, contract, info, limits)
        else:
            df = _read_jsonl(path, rel, contract, info, limits)
    except Refused as r:
        return None, info.refuse(r.rule, r.detail)
    except Exception as exc:  # one file's surprise refuses that file, never the run
        why = " ".join(str(exc).split())  # one line, for the log and the report
        return None, info.refuse("read_error", f"{rel}: {type(exc).__name__}: {why[:400]}")
    if info.blank_lines:
        info.warnings.append(f"{rel}: {info.blank_lines} blank line(s) skipped")
    if df is None:
        return None, info
    if df.height == 0:
        blank = f" ({info.blank_lines} blank line(s) skipped)" if info.blank_lines else ""
        return None, info.refuse("empty_file", f"{rel} has no data rows{blank}")
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
    path: Path, rel: str, contract: Contract, info: LandedFile, limits: IngestLimits
) -> pl.DataFrame | None:
    payload = b"".join(stream_file(path, rel, limits))
    nl = np.flatnonzero(np.frombuffer(payload, dtype=np.uint8) == 10)
    bounds = np.concatenate(([-1], nl, [len(payload)]))
    longest = int(np.diff(bounds).max()) - 1 if len(payload) else 0
    if longest > limits.max_line_bytes:
        line = int(np.diff(bounds).argmax()) + 1
        raise Refused("line_too_long", _too_long(rel, line, longest, limits))
    try:
        parsed = parse_csv(payload, max_record_bytes=limits.max_line_bytes)
    except CsvUnparseable as exc:
        raise Refused("unparseable", f"{rel}: {exc}") from None
    del payload
    info.blank_lines = parsed.blank
    if not _check_columns(set(parsed.header), rel, contract, info, "the header"):
        return None
    good, bad = parsed.good, parsed.bad
    if bad.height and not good.height:
        first = bad.row(0, named=True)
        raise Refused(
            "unparseable",
            f"{rel}: no row can be read ({bad.height} malformed; line {first['_line']}: "
            f"{first['_csv_error']})",
        )
    cols = [
        pl.col(c) if c in good.columns else pl.lit(None, pl.String).alias(c)
        for c in contract.column_names
    ]
    extra = [c for c in good.columns if c not in contract.column_names and c != "_line"]
    good = good.select(*cols, *[pl.col(c) for c in extra], pl.col("_line"))
    if not bad.height:
        return good
    # malformed rows land too, their text in `_raw` and why in `_csv_error`: silver
    # quarantines them (rule `csv`), so landed = accepted + quarantined still holds
    info.warnings.append(
        f"{rel}: {bad.height} malformed CSV row(s) (quarantined by silver), first at line "
        f"{bad['_line'][0]}: {bad['_csv_error'][0]}"
    )
    return pl.concat([good, bad], how="diagonal_relaxed").sort("_line")


def _too_long(rel: str, line: int, length: int, limits: IngestLimits, *, more: bool = False) -> str:
    size = f"over {length:,} bytes (read no further)" if more else f"{length:,} bytes"
    return (
        f"{rel}: line {line} is {size}, over the {_size(limits.max_line_bytes)} "
        f"line cap (ingest.max_line_kb)"
    )


def split_lines(payload: bytes) -> pl.Series:
    """Return the lines of a text payload (the newline ending the last line adds none).

    Valid UTF-8 is laid out as Arrow strings straight over the payload, one offset
    per newline (no Python string per line); bytes that are not UTF-8 are decoded
    with U+FFFD in their place, which silver's encoding rule quarantines.
    """
    return _split(payload)[0]


def _split(payload: bytes, *, drop_empty: bool = False) -> tuple[pl.Series, Any, int, int, int]:
    """Return (lines, their 0-based numbers or None for all, longest width, its index, count).

    With `drop_empty`, empty lines ("" or a lone carriage return) are dropped before
    the lines become polars strings, so a flood of them costs a few bytes per line.
    """
    data = np.frombuffer(payload, dtype=np.uint8)
    offsets = np.concatenate(([0], np.flatnonzero(data == 10) + 1)).astype(np.int64)
    if offsets[-1] != len(payload):
        offsets = np.append(offsets, len(payload))  # a last line without a newline
    widths = np.diff(offsets)
    n = len(widths)
    longest = int(widths.argmax()) if n else 0
    width = int(widths[longest]) if n else 0
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(payload))
    try:
        arr.validate(full=True)  # UTF-8 of every line
    except pa.ArrowInvalid:
        text = payload.decode("utf-8", errors="replace")
        lines = pl.Series("_raw", [text]).str.split("\n").explode()
        lines = lines.head(lines.len() - 1) if text.endswith("\n") else lines
        return lines, None, width, longest, lines.len()
    kept = None
    if drop_empty and n:
        first = data[offsets[:-1]]
        second = data[np.minimum(offsets[:-1] + 1, len(data) - 1)]
        empty = (first == 10) | ((widths == 2) & (first == 13) & (second == 10))
        if empty.any():
            kept = np.flatnonzero(~empty)
            arr = arr.take(pa.array(kept))
    return pl.Series("_raw", arr).str.strip_suffix("\n"), kept, width, longest, n


def _read_jsonl(
    path: Path, rel: str, contract: Contract, info: LandedFile, limits: IngestLimits
) -> pl.DataFrame | None:
    """Stream the lines of a JSON-lines file: blank lines skipped, every cap checked as read.

    Each chunk is cut at its last newline; the rest of the line waits for the next
    chunk, so a line longer than the cap is refused without reading it whole.
    """
    parts: list[pl.DataFrame] = []
    done = 0  # lines before the current chunk
    kept = 0
    checked = False
    carry = b""

    def add(body: bytes) -> None:
        nonlocal done, kept
        lines, numbers, width, at, n = _split(body, drop_empty=True)
        if width > limits.max_line_bytes + 1:  # + its newline
            raise Refused("line_too_long", _too_long(rel, done + at + 1, width - 1, limits))
        if numbers is None:
            numbers = np.arange(lines.len())
        frame = pl.DataFrame([lines, pl.Series("_line", numbers + (done + 1), dtype=pl.Int64)])
        done += n
        frame = frame.filter(pl.col("_raw").str.contains(r"\S"))  # white space only: blank
        info.blank_lines += n - frame.height
        kept += frame.height
        if frame.height:
            parts.append(frame)

    for chunk in stream_file(path, rel, limits):
        buf = carry + chunk if carry else chunk
        cut = buf.rfind(b"\n") + 1
        carry = buf[cut:]
        if cut:
            add(buf[:cut])
        if len(carry) > limits.max_line_bytes:
            raise Refused("line_too_long", _too_long(rel, done + 1, len(carry), limits, more=True))
        if not checked and kept >= SAMPLE_LINES:
            checked = True
            if not _check_jsonl_sample(parts, rel, contract, info):
                return None  # refused early: the rest of the file is not read
    if carry:
        add(carry)
    if not checked and not _check_jsonl_sample(parts, rel, contract, info):
        return None
    if not parts:
        return pl.DataFrame(schema={"_raw": pl.String, "_line": pl.Int64})
    return pl.concat(parts)


def _check_jsonl_sample(
    parts: list[pl.DataFrame], rel: str, contract: Contract, info: LandedFile
) -> bool:
    """Check the keys of the first SAMPLE_LINES (SAMPLE_BYTES) valid JSON lines vs the contract."""
    if not parts:
        return True  # no line: refused as empty by the caller
    head = pl.concat(parts).head(SAMPLE_LINES)
    # at most SAMPLE_BYTES of them (at least one line): 1,000 lines of up to 1 MiB would
    # be held twice more while decoded (80 lines of 0.9 MB: 340 MB read peak, now 156)
    size = pl.col("_raw").str.len_bytes().cast(pl.Int64).cum_sum()
    head = head.filter((size <= SAMPLE_BYTES) | (pl.int_range(pl.len()) == 0))
    sample = head.filter(pl.col("_raw").str.json_path_match("$").is_not_null())["_raw"]
    keys: set[str] = set()
    if sample.len():
        decoded = sample.str.json_decode(infer_schema_length=None)
        if isinstance(decoded.dtype, pl.Struct):
            keys = {f.name for f in decoded.dtype.fields}
    return not sample.len() or _check_columns(keys, rel, contract, info, "every sampled line")


def csv_row_as_json(columns: list[str]) -> pl.Expr:
    """Return an expression rendering CSV string columns of a row as a JSON object text."""
    return pl.struct(columns).struct.json_encode()


def dumps(obj: object) -> str:
    """Serialise to stable JSON (sorted keys)."""
    return json.dumps(obj, sort_keys=True, default=str)
