"""Tests of the service's prediction log writer: micro-batches, spill file, replay, no loss.

The writer appends to a real ``ops.prediction_log`` Delta table of a temporary project;
"the lakehouse cannot be written" is a write function that raises while a switch is on
(mid-stream, while producer threads keep adding rows), and "the process died" is a
writer that is dropped with rows on disk and a new one started on the same spill file.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import polars as pl

from hortus.lakehouse.tables import Lakehouse
from hortus.serving._writer import BackgroundWriter

LOG = "ops.prediction_log"


def rows(start: int, n: int) -> list[dict]:
    now = datetime.now(UTC)
    return [
        {"batch_id": f"r{i:06d}", "model_name": "m", "model_version": 1,
         "request": f'{{"row": {i}}}', "features": "{}", "score": i / 10, "rank": None,
         "as_of": now, "logged_at": now, "prediction": None, "caller": "shop-web",
         "latency_ms": 1.5}
        for i in range(start, start + n)
    ]  # fmt: skip


class Flaky:
    """A write function to the lakehouse that fails while `broken` is set."""

    def __init__(self, lh: Lakehouse):
        self.lh = lh
        self.broken = threading.Event()
        self.calls = 0
        self.failed = 0

    def __call__(self, df: pl.DataFrame) -> None:
        self.calls += 1
        if self.broken.is_set():
            self.failed += 1
            raise OSError("lakehouse unavailable (test)")
        self.lh.write(LOG, df, mode="append", inputs={})


def writer(lh: Lakehouse, write, spill, **kw) -> BackgroundWriter:
    return BackgroundWriter(write, lh.catalog.get(LOG).schema, spill, **kw)


def logged(lh: Lakehouse) -> pl.DataFrame:
    return (
        lh.read(LOG)
        if lh.exists(LOG)
        else pl.DataFrame({"batch_id": []}, schema={"batch_id": pl.String})
    )


def test_lakehouse_failure_mid_stream_spills_and_replays_every_row(lakehouse, tmp_path):
    """Check that rows added while appends fail are spilled, replayed and none is lost."""
    flaky = Flaky(lakehouse)
    w = writer(lakehouse, flaky, tmp_path / "spill.jsonl", interval=0.05, batch=200).start()
    total = 0

    def produce(first: int) -> None:
        for j in range(20):
            w.add(rows(first + j * 25, 25))
            time.sleep(0.005)

    threads = [threading.Thread(target=produce, args=(k * 1000,)) for k in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    flaky.broken.set()  # mid-stream: the lakehouse stops accepting writes
    time.sleep(0.3)
    flaky.broken.clear()
    for t in threads:
        t.join()
    total = 3 * 20 * 25
    w.stop()
    assert flaky.failed >= 1 and w.failures == flaky.failed and w.spilled > 0
    got = logged(lakehouse)["batch_id"]
    assert got.len() == total and got.n_unique() == total  # none lost, none twice
    assert w.backlog == 0 and not (tmp_path / "spill.jsonl").exists()
    assert set(logged(lakehouse)["caller"]) == {"shop-web"}


def test_rows_spilled_by_a_dead_writer_are_replayed_by_the_next_start(lakehouse, tmp_path):
    """Check that a writer stopped while the lakehouse is down leaves its rows for the next."""
    spill = tmp_path / "spill.jsonl"
    down = Flaky(lakehouse)
    down.broken.set()
    first = writer(lakehouse, down, spill, interval=60)
    first.add(rows(0, 120))
    first.stop()  # shutdown flush fails: everything goes to the spill file
    assert spill.exists() and first.backlog == 120 and not lakehouse.exists(LOG)
    second = writer(lakehouse, Flaky(lakehouse), spill, interval=0.05)
    assert second.backlog == 120  # counted from the file at start
    second.add(rows(120, 30))
    second.start()
    second.stop()
    got = logged(lakehouse).sort("batch_id")
    assert got["batch_id"].to_list() == [f"r{i:06d}" for i in range(150)]
    assert not spill.exists() and second.backlog == 0


def test_a_full_buffer_goes_to_disk_instead_of_blocking_or_dropping(lakehouse, tmp_path):
    """Check the bound: beyond `capacity` rows wait in the spill file, then all are written."""
    flaky = Flaky(lakehouse)
    w = writer(lakehouse, flaky, tmp_path / "spill.jsonl", capacity=100, batch=1000, interval=60)
    t0 = time.perf_counter()
    for k in range(5):
        w.add(rows(k * 50, 50))
    assert time.perf_counter() - t0 < 1.0
    assert len(w._rows) == 100 and w.spilled == 150 and w.backlog == 250
    w.flush()
    assert logged(lakehouse)["batch_id"].n_unique() == 250 and w.backlog == 0


def test_audit_records_are_written_by_the_flush_not_the_caller(lakehouse, tmp_path):
    """Check that queued audit records reach ops.audit_log in one flush, hash chain intact."""
    from hortus.governance.audit import AuditBuffer, AuditLog, AuditRecord, default_path

    paths = lakehouse.paths
    w = writer(lakehouse, Flaky(lakehouse), tmp_path / "s.jsonl",
               audit=AuditBuffer(default_path(paths), paths.secrets))  # fmt: skip
    for i in range(5):
        w.audit_record(AuditRecord(user="shop-web", action="predict", object="m",
                                   detail=f"request={i}", ts=datetime.now(UTC)))  # fmt: skip
    log = AuditLog.open(default_path(paths), secrets_dir=paths.secrets)
    before = log.show().filter(pl.col("action") == "predict").height if log.exists() else 0
    w.flush()
    shown = log.show().filter(pl.col("action") == "predict")
    assert shown.height == before + 5 and log.verify().ok


def test_rows_stay_in_memory_when_neither_lakehouse_nor_spill_file_can_be_written(
    lakehouse, tmp_path
):
    """Check the last resort: an unwritable spill path keeps the rows queued, then writes them."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the spill folder should be")
    flaky = Flaky(lakehouse)
    flaky.broken.set()
    w = writer(lakehouse, flaky, blocker / "spill.jsonl", interval=60)
    w.add(rows(0, 40))
    w.flush()
    assert w.backlog == 40 and "spill file" in w.last_error and not lakehouse.exists(LOG)
    flaky.broken.clear()
    w.flush()
    assert logged(lakehouse)["batch_id"].n_unique() == 40 and w.backlog == 0
