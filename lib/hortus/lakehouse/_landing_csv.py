"""Parse a CSV landing file row by row: good rows, malformed rows and blank lines apart.

A malformed row (a record whose field count is not the header's, a quote never
closed, a quote in the middle of a field) is kept aside with its line and why, so
ingest lands it in bronze for silver to quarantine, while the other rows land; a
file whose header cannot be read at all raises `CsvUnparseable`.  Each row carries
the 1-based line where its record starts, so `_line` stays right after a quoted
newline.  Blank lines are skipped and counted.

Two paths give the same answer:
- fast (vectorised): record ends are the newlines with an even number of quotes
  before them, fields are counted by the commas outside quotes, and polars reads the
  good records;
- exact (Python `csv`, strict), only for a file the fast path cannot settle (an odd
  number of quotes, a quote inside a field, a carriage return inside a line, a record
  over several lines with the wrong field count, a file polars refuses): a bad record
  is set aside one line at a time and reading resumes on the next line, so one
  unclosed quote costs one row, not the rest of the file.  Lines are decoded one at a
  time and rows become frames in batches, so memory stays about the payload's.
A fuzz test checks that both paths agree wherever the fast one answers.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

_NL, _CR, _QUOTE, _COMMA = 10, 13, 34, 44
_SPECIAL = np.zeros(256, dtype=bool)
_SPECIAL[[_NL, _CR, _QUOTE, _COMMA]] = True


class CsvUnparseable(ValueError):
    """The file has no readable header row."""


@dataclass
class CsvRows:
    """A parsed CSV file: header names, good rows, malformed rows and blank lines."""

    header: list[str]
    good: pl.DataFrame  # one String column per header name, plus `_line`
    bad: pl.DataFrame  # `_line`, `_raw` (the record's text), `_csv_error` (why)
    blank: int


def parse_csv(payload: bytes, *, max_record_bytes: int) -> CsvRows:
    """Return the rows of a CSV payload (header first); see the module docstring."""
    try:
        fast = _parse_fast(payload)
    except pl.exceptions.PolarsError:
        fast = None
    return fast if fast is not None else _parse_exact(payload, max_record_bytes)


def _bad_frame(lines: list[int], raws: list[str], errors: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"_line": lines, "_raw": raws, "_csv_error": errors},
        schema={"_line": pl.Int64, "_raw": pl.String, "_csv_error": pl.String},
    )


def _header(text: str) -> list[str]:
    try:
        names = next(csv.reader([text.removeprefix("\ufeff")], strict=True))  # a BOM: not a name
    except (csv.Error, StopIteration) as exc:
        raise CsvUnparseable(f"the header row cannot be read ({exc})") from None
    names = [n.strip() for n in names]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes or not any(names):
        what = f"repeats column(s) {dupes}" if dupes else "names no column"
        raise CsvUnparseable(f"the header row {what}")
    return names


def _parse_fast(payload: bytes) -> CsvRows | None:
    """Vectorised parse, or None when the exact path must decide."""
    data = np.frombuffer(payload, dtype=np.uint8)
    n = len(payload)
    # one pass over the bytes: where the newlines, quotes, commas and carriage returns are
    special = np.flatnonzero(_SPECIAL[data])
    kind = data[special]
    nl, quotes = special[kind == _NL], special[kind == _QUOTE]
    commas, cr = special[kind == _COMMA], special[kind == _CR]
    del special, kind
    ends = nl if (n == 0 or payload[-1] == _NL) else np.append(nl, n)  # line ends (exclusive)
    starts = np.concatenate(([0], nl + 1))[: len(ends)]
    if len(quotes) % 2:
        return None  # a quote never closed
    if len(quotes):  # a quote inside a field (x"y, "a"b): csv's own rules decide
        edge = np.array([_COMMA, _NL, _CR, _QUOTE], dtype=np.uint8)
        before = (quotes == 0) | np.isin(data[np.maximum(quotes - 1, 0)], edge)
        after = (quotes == n - 1) | np.isin(data[np.minimum(quotes + 1, n - 1)], edge)
        if not (before | after).all():
            return None
    if len(cr) and ((cr < n - 1) & (data[np.minimum(cr + 1, n - 1)] != _NL)).any():
        return None  # a carriage return not ending a line
    closes = np.searchsorted(quotes, ends) % 2 == 0  # outside quotes at the line's end
    last_lines = np.flatnonzero(closes)
    first_lines = np.concatenate(([0], last_lines[:-1] + 1)).astype(np.int64)
    rec_start, rec_stop = starts[first_lines], ends[last_lines]
    # fields: the commas of each record, less those inside its quoted spans, + 1
    fields = np.searchsorted(commas, rec_stop) - np.searchsorted(commas, rec_start) + 1
    if len(quotes):
        opens, closes_at = quotes[0::2], quotes[1::2]
        inside = np.searchsorted(commas, closes_at) - np.searchsorted(commas, opens)
        owner = np.searchsorted(rec_start, opens, side="right") - 1
        fields -= np.bincount(owner, weights=inside, minlength=len(fields)).astype(np.int64)
    del commas
    whole = pa.LargeStringArray.from_buffers(
        1, pa.py_buffer(np.array([0, n], dtype=np.int64)), pa.py_buffer(payload)
    )
    try:
        whole.validate(full=True)  # UTF-8, checked over the payload without a copy
    except pa.ArrowInvalid:
        return None  # bytes that are not UTF-8: the exact path decodes them lossily
    # a record's text ends before its newline and a carriage return before that
    stop = rec_stop - ((rec_stop > rec_start) & (data[np.maximum(rec_stop - 1, 0)] == _CR))

    def text(k: int) -> str:
        return payload[rec_start[k] : stop[k]].decode()

    # blank: empty, or white space only (no comma, no quote: one field; decoded to tell)
    blank = stop == rec_start
    for k in np.flatnonzero(~blank & (fields == 1)).tolist():
        blank[k] = not text(k).strip()
    filled = np.flatnonzero(~blank)
    if not len(filled):
        raise CsvUnparseable("the file has no header row (only blank lines)")
    head = int(filled[0])
    header = _header(text(head))
    data_idx = filled[1:]
    ok = fields[data_idx] == len(header)
    multi = last_lines[data_idx] > first_lines[data_idx]
    if (~ok & multi).any():
        return None  # a record over several lines with the wrong count: an unclosed quote?
    good_idx, bad_idx = data_idx[ok], data_idx[~ok]
    source = payload
    dropped = np.flatnonzero(blank)[np.flatnonzero(blank) > head]
    dropped = np.sort(np.concatenate((dropped, bad_idx)))
    if head or len(dropped):  # the file without its blank and bad records: the gaps between
        nxt = np.append(rec_start[1:], n)
        pieces, at = [], int(rec_start[head])
        for k in dropped.tolist():
            pieces.append(payload[at : rec_start[k]])
            at = int(nxt[k])
        pieces.append(payload[at:])
        source = b"".join(pieces)
        if source and not source.endswith(b"\n"):
            source += b"\n"
    good = pl.read_csv(
        source, has_header=True, infer_schema=False, encoding="utf8-lossy", quote_char='"'
    )
    if good.height != len(good_idx) or good.width != len(header):
        return None
    good = good.rename(dict(zip(good.columns, header, strict=True))).with_columns(
        pl.Series("_line", first_lines[good_idx] + 1, dtype=pl.Int64)
    )
    bad = _bad_frame(
        (first_lines[bad_idx] + 1).tolist(),
        [text(k) for k in bad_idx.tolist()],
        [f"{f} fields, expected {len(header)}" for f in fields[bad_idx].tolist()],
    )
    return CsvRows(header, good, bad, int(blank.sum()))


#: rows gathered in Python lists before they become a polars frame (bounds memory)
_BATCH_ROWS = 50_000


class _Lines:
    """The physical lines of a payload, decoded one at a time (no list of every line)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        nl = np.flatnonzero(np.frombuffer(payload, dtype=np.uint8) == _NL)
        self.starts = np.concatenate(([0], nl + 1))
        self.ends = np.append(nl, len(payload))
        if len(payload) and self.starts[-1] == len(payload):  # the last newline adds no line
            self.starts, self.ends = self.starts[:-1], self.ends[:-1]
        self.n = len(self.starts)
        self.pos = 0  # the next line a reader gets

    def text(self, j: int) -> str:
        return self.payload[self.starts[j] : self.ends[j]].decode("utf-8", errors="replace")

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.pos >= self.n:
            raise StopIteration
        self.pos += 1
        return self.text(self.pos - 1) + "\n"


def _parse_exact(payload: bytes, max_record_bytes: int) -> CsvRows:
    """Python `csv` (strict), record by record, resuming on the line after a bad one.

    Memory stays about the payload's: lines are decoded one at a time and rows become
    polars frames every _BATCH_ROWS rows.
    """
    lines = _Lines(payload)
    csv.field_size_limit(max(max_record_bytes, 1024))
    header: list[str] | None = None
    frames: list[pl.DataFrame] = []
    rows: list[list[str]] = []
    good_lines: list[int] = []
    bad: tuple[list[int], list[str], list[str]] = ([], [], [])
    blank = 0
    reader = csv.reader(lines, strict=True)
    while lines.pos < lines.n:
        i = lines.pos
        try:
            record, error = next(reader), None
        except csv.Error as exc:
            why = str(exc)
            if "unexpected end of data" in why:
                why = "the quote is never closed"
            record, error = [], f"bad quoting: {why}"
        used = lines.pos - i
        if used == 1 and error is None and not lines.text(i).strip():
            blank += 1  # an empty or white-space line
            continue
        if header is None:
            if error is not None or used != 1:
                raise CsvUnparseable(f"the header row cannot be read ({error or 'a quote'})")
            header = _header(lines.text(i))
            continue
        if error is None and len(record) != len(header):
            error = f"{len(record)} fields, expected {len(header)}"
        if error is not None:
            if used > 1:
                error = f"unclosed quote: a quote on this line runs over {used} lines ({error})"
            bad[0].append(i + 1)
            bad[1].append(lines.text(i).removesuffix("\r"))
            bad[2].append(error)
            lines.pos = i + 1  # resume on the next line, with a fresh reader
            reader = csv.reader(lines, strict=True)
            continue
        rows.append(record)
        good_lines.append(i + 1)
        if len(rows) >= _BATCH_ROWS:
            frames.append(_rows_frame(header, rows, good_lines))
            rows, good_lines = [], []
    if header is None:
        raise CsvUnparseable("the file has no header row (only blank lines)")
    frames.append(_rows_frame(header, rows, good_lines))
    return CsvRows(header, pl.concat(frames), _bad_frame(*bad), blank)


def _rows_frame(header: list[str], rows: list[list[str]], lines: list[int]) -> pl.DataFrame:
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(header)
    return pl.DataFrame(
        [pl.Series(name, list(col), dtype=pl.String) for name, col in zip(header, columns,
                                                                          strict=True)]
        + [pl.Series("_line", lines, dtype=pl.Int64)]
    )  # fmt: skip
