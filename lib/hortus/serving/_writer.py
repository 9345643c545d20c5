"""The service's background writer: prediction log and audit records, never on the request path.

A request only appends to in-memory buffers (a lock and a list append, microseconds);
one daemon thread flushes them every `interval` seconds (or sooner when `batch`
prediction rows wait):

- prediction rows go to ``ops.prediction_log`` as one Delta append per flush (a
  micro-batch).  The buffer is bounded (`capacity` rows): beyond it rows go straight to
  the spill file instead of memory, so a stalled lakehouse never grows the process
  without end and never blocks a request;
- when the append fails (lakehouse unwritable, disk full, a policy that refuses the
  write...), the batch is appended to a local JSON-lines spill file
  (``.hortus/serve/prediction_log.spill.jsonl`` by default: outside the lakehouse, which
  may be what failed; if even that file cannot be written the rows stay in memory) and
  the error is counted; every later flush, and the next start of the service, first replays the
  spill file into the table and truncates it only after the append succeeded, so no
  prediction is lost (at worst a batch whose commit succeeded but whose
  acknowledgement failed is written twice);
- audit records of allowed and denied calls go to ``ops.audit_log`` through the
  existing `AuditBuffer` (the one of the Lakehouse that appends the prediction rows, so
  the calls and the append's own write record are one hash-chained commit per flush),
  so auditing costs a request nothing but the append;
- `stop` flushes everything (prediction rows, spill file, audit records) before it
  returns: the service calls it on shutdown.

`backlog` (rows in memory plus rows in the spill file) is exported by /metrics.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import polars as pl

from hortus.governance.audit import AuditBuffer, AuditRecord


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


class AuditSink:
    """Stands in for an `AuditBuffer` of another reader (the online store's policy wrapper).

    `add` queues the record with the writer (never writes on the caller's thread);
    `flush` is a no-op: the writer's thread flushes.
    """

    def __init__(self, writer: BackgroundWriter):
        self._writer = writer
        self.pending: list[AuditRecord] = []  # always empty: records go to the writer

    def log(self):
        return self._writer.audit.log() if self._writer.audit is not None else None

    def add(self, record: AuditRecord) -> None:
        self._writer.audit_record(record)

    def flush(self) -> int:
        return 0


class BackgroundWriter:
    """Buffer prediction rows and audit records; flush them from one daemon thread."""

    def __init__(
        self,
        write: Callable[[pl.DataFrame], object],
        schema: dict[str, pl.DataType],
        spill: Path,
        *,
        audit: AuditBuffer | None = None,
        capacity: int = 50_000,
        batch: int = 5_000,
        interval: float = 2.0,
    ):
        self._write = write
        self.schema = dict(schema)
        self.spill = Path(spill)
        self.audit = audit
        self.capacity = capacity
        self.batch = batch
        self.interval = interval
        self._rows: list[dict] = []
        self._records: list[AuditRecord] = []
        self._lock = threading.Lock()  # guards the two buffers and the spill file
        self._flushing = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0  # rows appended to the table (replays included)
        self.spilled = 0  # rows that went to the spill file
        self.failures = 0  # failed appends
        self.last_error: str | None = None
        self._spilled_lines = self._count_spill()

    # ---------------------------------------------------------------- request path
    def add(self, rows: list[dict]) -> None:
        """Queue prediction rows (never blocks on I/O unless the buffer is full)."""
        with self._lock:
            if len(self._rows) + len(rows) <= self.capacity:
                self._rows.extend(rows)
                if len(self._rows) >= self.batch:
                    self._wake.set()
                return
        self._keep(rows)  # full: straight to disk, never dropped

    def audit_record(self, record: AuditRecord) -> None:
        """Queue one audit record (written at the next flush)."""
        with self._lock:
            self._records.append(record)

    def sink(self) -> AuditSink:
        """Return an AuditBuffer stand-in whose records this writer flushes (see AuditSink)."""
        return AuditSink(self)

    @property
    def backlog(self) -> int:
        """Return the prediction rows not yet in the table (memory plus spill file)."""
        return len(self._rows) + self._spilled_lines

    # --------------------------------------------------------------------- flushing
    def _count_spill(self) -> int:
        if not self.spill.is_file():
            return 0
        with open(self.spill, "rb") as f:
            return sum(1 for line in f if line.strip())

    def _keep(self, rows: list[dict]) -> None:
        """Spill rows to disk; if even that fails, keep them in memory (over the bound)."""
        try:
            self._to_spill(rows)
        except OSError as exc:
            self.last_error = f"spill file {self.spill}: {exc}"
            print(f"hortus serve: warning: {len(rows)} prediction row(s) kept in memory: "
                  f"{self.last_error}", file=sys.stderr)  # fmt: skip
            with self._lock:
                self._rows[:0] = rows  # first in line for the next flush

    def _to_spill(self, rows: list[dict]) -> None:
        if not rows:
            return
        text = "".join(json.dumps(r, default=_json_default) + "\n" for r in rows)
        with self._lock:
            self.spill.parent.mkdir(parents=True, exist_ok=True)
            with open(self.spill, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
            self._spilled_lines += len(rows)
            self.spilled += len(rows)

    def _frame(self, rows: list[dict]) -> pl.DataFrame:
        """Return the rows as a frame of the table's schema.

        Rows built by the service carry exact types: one `from_dicts` (Rust, about 1 ms
        for 2,000 rows, where building each column from Python values held the
        interpreter ~50x longer and stalled the request thread).  Rows read back from
        the spill file (times as ISO text) or of unexpected types: column by column.
        """
        try:
            frame = pl.from_dicts(rows, schema=self.schema, strict=True)
        except Exception:  # noqa: BLE001 - the careful path below decides
            return self._frame_by_column(rows)
        return frame

    def _frame_by_column(self, rows: list[dict]) -> pl.DataFrame:
        out = {}
        for name, dtype in self.schema.items():
            values = [r.get(name) for r in rows]
            if isinstance(dtype, pl.Datetime):
                values = [datetime.fromisoformat(v) if isinstance(v, str) else v for v in values]
            out[name] = pl.Series(name, values, dtype=dtype, strict=False)
        return pl.DataFrame(out)

    def _append(self, rows: list[dict]) -> bool:
        try:
            self._write(self._frame(rows))
        except Exception as exc:  # any failure: keep the rows on disk, retry later
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        self.written += len(rows)
        return True

    def _replay(self) -> None:
        """Append the spill file's rows to the table; truncate it only once they are in."""
        with self._lock:
            if not self.spill.is_file():
                return
            text = self.spill.read_text(encoding="utf-8")
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        if rows and not self._append(rows):
            return
        with self._lock:  # rows spilled meanwhile stay in the file
            now = self.spill.read_text(encoding="utf-8")
            rest = now[len(text) :]
            if rest:
                self.spill.write_text(rest, encoding="utf-8")
            else:
                self.spill.unlink(missing_ok=True)
            self._spilled_lines = sum(1 for line in rest.splitlines() if line.strip())

    def flush(self) -> int:
        """Write what waits (spill file first, then memory, then audit); return rows written."""
        with self._flushing:
            before = self.written
            if self._spilled_lines:
                self._replay()
            with self._lock:
                rows, self._rows = self._rows, []
                records, self._records = self._records, []
            if self.audit is not None:  # before the rows: the append's own audit flush
                self.audit.pending.extend(records)  # writes them in the same commit
            for i in range(0, len(rows), self.batch):
                chunk = rows[i : i + self.batch]
                if self._spilled_lines or not self._append(chunk):
                    self._keep(chunk)  # keep order: behind what already waits on disk
            if self.audit is not None and self.audit.pending:
                try:
                    self.audit.flush()
                except Exception as exc:  # records stay pending in the AuditBuffer
                    self.last_error = f"audit: {type(exc).__name__}: {exc}"
                    print(f"hortus serve: warning: audit flush failed: {exc}", file=sys.stderr)
            return self.written - before

    # ---------------------------------------------------------------------- thread
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # the writer never dies of one bad flush
                self.last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(self.interval)

    def start(self) -> BackgroundWriter:
        """Start the flushing thread (replaying a spill file left by an earlier run)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="hortus-serve-writer",
                                            daemon=True)  # fmt: skip
            self._thread.start()
            self._wake.set()
        return self

    def stop(self) -> None:
        """Stop the thread and flush everything that waits."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()
