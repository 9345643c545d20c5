"""Streaming monitoring: `hortus.monitoring.watch` follows data/ and processes micro-batches.

Real components throughout: a simulated landing, Delta tables on disk, the
watcher in a thread (and the CLI in a subprocess for Ctrl-C).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from conftest import TEST_KEY
from hortus.config import Paths
from hortus.domains.plantshop.simulate import SimConfig, simulate
from hortus.lakehouse import silver
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.ingest import FILES_TABLE, ingest
from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring import monitors
from hortus.monitoring.watch import BatchResult, LandingPoller, WatchError, watch

SIM = SimConfig(seed=5, start="2025-03-01", days=4, users=150, plants=30)
DAYS = ("2025-03-01", "2025-03-02", "2025-03-03", "2025-03-04")
TIMEOUT = 20.0  # seconds a batch may take on a loaded 2-core machine


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """Return a folder holding four simulated days of landing files (not yet landed)."""
    out = tmp_path_factory.mktemp("export")
    simulate(SIM, out)
    return out


def land(export: Path, data: Path, day: str) -> list[str]:
    """Move one day's files into the landing folder (copy to a temp name, then rename)."""
    names = []
    for src in sorted(export.rglob(f"*{day}*")):
        rel = src.relative_to(export)
        dest = data / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.part"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        names.append(rel.as_posix())
    return names


def wait_for(check: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Poll `check` until it holds or `timeout` seconds pass; return whether it held."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.1)
    return check()


class Watcher:
    """A `watch` running in a thread, collecting its batch results."""

    def __init__(self, paths: Paths, **kwargs) -> None:
        self.stop = threading.Event()
        self.results: list[BatchResult] = []
        self.error: BaseException | None = None

        def run() -> None:
            try:
                watch(
                    paths,
                    interval=0.2,
                    stop=self.stop,
                    on_batch=self.results.append,
                    silver_options=silver.SilverOptions(key=TEST_KEY.encode()),
                    **kwargs,
                )
            except BaseException as exc:  # surfaced by the test through self.error
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait_batches(self, n: int) -> list[BatchResult]:
        """Wait until `n` batches ran; return them (fail the test on timeout or error)."""
        ok = wait_for(lambda: len(self.results) >= n or self.error is not None)
        assert self.error is None, f"watcher failed: {self.error!r}"
        assert ok, f"only {len(self.results)} of {n} batches within {TIMEOUT}s"
        return self.results

    def close(self) -> None:
        """Stop the watcher and wait for its thread."""
        self.stop.set()
        self.thread.join(timeout=TIMEOUT)
        assert not self.thread.is_alive(), "watcher did not stop"
        assert self.error is None, f"watcher failed: {self.error!r}"


def lakehouse(paths: Paths) -> Lakehouse:
    """Open the project's lakehouse as the pipeline."""
    return Lakehouse(paths=paths, catalog=Catalog.load(), stage="test", user="pipeline")


def count(lh: Lakehouse, table: str) -> int:
    """Return the rows of a table (0 if it was never written)."""
    return lh.scan(table).select(pl.len()).collect().item() if lh.exists(table) else 0


def landed_rows(lh: Lakehouse) -> dict[str, int]:
    """Return rows per bronze table of the landed contracts."""
    return {c.name: count(lh, "bronze." + c.name) for c in lh.catalog.landed()}


def assert_reconciles(lh: Lakehouse) -> None:
    """Assert every landed table's bronze rows equal silver + quarantine rows."""
    broken = [c for c in silver.reconcile(lh) if not c["reconciles"]]
    assert not broken, broken


def test_poller_takes_a_file_only_when_its_size_is_stable(tmp_path: Path) -> None:
    """Check that a file still being written is not offered until two polls agree on it."""
    poller = LandingPoller(tmp_path)
    f = tmp_path / "events" / "events-2025-03-01.jsonl.gz"
    f.parent.mkdir()
    f.write_bytes(b"half")
    assert poller.poll()[0] == []  # first sight: size unknown before
    with f.open("ab") as out:
        out.write(b" more")
    assert poller.poll()[0] == []  # grew since the last poll
    (tmp_path / "_manifest.json").write_text("{}")
    assert poller.poll()[0] == ["events/events-2025-03-01.jsonl.gz"]  # stable; manifest ignored
    poller.offered(["events/events-2025-03-01.jsonl.gz"])
    assert poller.poll()[0] == []  # offered already, unchanged


def test_watch_ingests_each_new_day_and_updates_metrics_within_seconds(
    project: Paths, export: Path
) -> None:
    """Check that a day landed while watching reaches bronze, silver and metrics in seconds."""
    land(export, project.data, DAYS[0])
    land(export, project.data, DAYS[1])
    w = Watcher(project)
    try:
        first = w.wait_batches(1)[0]
        assert first.rows_landed > 0 and not first.refused
        lh = lakehouse(project)
        bronze0, silver0 = count(lh, "bronze.events"), count(lh, "silver.events")
        metrics0 = count(lh, monitors.METRICS_TABLE)
        assert metrics0 == first.metric_rows > 0
        names = land(export, project.data, DAYS[2])
        t0 = time.monotonic()
        second = w.wait_batches(2)[1]
        assert time.monotonic() - t0 < TIMEOUT
    finally:
        w.close()
    assert sorted(second.files) == names
    assert count(lh, "bronze.events") > bronze0
    assert count(lh, "silver.events") > silver0
    metrics = lh.scan(monitors.METRICS_TABLE).collect()
    assert metrics.height == metrics0 + second.metric_rows
    new = metrics.filter(
        (pl.col("batch_id") == second.batch_id) & (pl.col("metric") == "rows_landed")
    )
    assert new["value"].sum() == second.rows_landed  # data quality of the new batch
    assert set(metrics["monitor"]) == {"data_quality", "freshness"}
    assert_reconciles(lh)


def test_watch_refuses_a_malformed_file_and_keeps_watching(project: Paths, export: Path) -> None:
    """Check that a truncated gzip file is refused, recorded, and the next day still lands."""
    land(export, project.data, DAYS[0])
    w = Watcher(project)
    try:
        w.wait_batches(1)
        good = (export / "events" / f"events-{DAYS[1]}.jsonl.gz").read_bytes()
        bad = project.data / "events" / "events-2025-03-09.jsonl.gz"
        bad.write_bytes(good[: len(good) // 2])  # a truncated gzip stream
        refused = w.wait_batches(2)[1]
        assert refused.refused and refused.refused[0][0] == "events/events-2025-03-09.jsonl.gz"
        assert refused.rows_landed == 0
        names = land(export, project.data, DAYS[1])
        after = w.wait_batches(3)[2]
    finally:
        w.close()
    assert sorted(after.files) == names and after.rows_landed > 0
    lh = lakehouse(project)
    log = lh.scan(FILES_TABLE).filter(pl.col("source_file").str.ends_with(bad.name)).collect()
    assert log["status"].to_list() == ["refused"]
    assert log["reason"][0].startswith("truncated_compressed")
    assert_reconciles(lh)


def test_watch_restart_counts_nothing_twice_and_picks_up_files_landed_while_stopped(
    project: Paths, export: Path
) -> None:
    """Check that a restarted watcher re-ingests nothing and ingests what landed meanwhile."""
    land(export, project.data, DAYS[0])
    land(export, project.data, DAYS[1])
    w = Watcher(project)
    try:
        w.wait_batches(1)
    finally:
        w.close()
    lh = lakehouse(project)
    before = landed_rows(lh)
    silver_before = count(lh, "silver.events")
    names = land(export, project.data, DAYS[3])  # lands while nobody watches
    w = Watcher(project)
    try:
        catch_up = w.wait_batches(1)[0]
    finally:
        w.close()
    assert sorted(catch_up.files) == names  # only the new files, nothing again
    assert catch_up.skipped == len(list(project.data.rglob("*-2025-03-0[12]*")))
    after = landed_rows(lh)
    grew = {t: after[t] - before[t] for t in after}
    assert sum(grew.values()) == catch_up.rows_landed > 0
    bronze = lh.scan("bronze.events").select("_source_file", "_line").collect()
    assert bronze.is_duplicated().sum() == 0
    events = lh.scan("silver.events").select("event_id").collect()
    assert events["event_id"].is_duplicated().sum() == 0
    assert events.height > silver_before
    assert_reconciles(lh)


def test_watch_catches_up_silver_after_a_crash_between_bronze_and_silver(
    project: Paths, export: Path
) -> None:
    """Check that bronze rows left unprocessed by a crash reach silver once on restart."""
    land(export, project.data, DAYS[0])
    lh = lakehouse(project)
    report = ingest(project.data, lh)  # the crash: bronze written, silver never ran
    assert report.files and not lh.exists("silver.events")
    w = Watcher(project, max_batches=1)
    w.thread.join(timeout=TIMEOUT)
    w.close()
    (batch,) = w.results
    assert batch.files == [] and batch.skipped == len(report.files)  # nothing re-ingested
    assert batch.rows_landed == sum(report.rows_by_table().values())
    assert sum(landed_rows(lh).values()) == batch.rows_landed  # bronze not appended again
    assert_reconciles(lh)


def test_watch_runs_the_monitors_when_idle_for_idle_every_seconds(
    project: Paths, export: Path
) -> None:
    """Check that with idle_every a batch without files still appends monitor metrics."""
    land(export, project.data, DAYS[0])
    w = Watcher(project, idle_every=0.5, max_batches=2)
    w.thread.join(timeout=2 * TIMEOUT)
    w.close()
    first, idle = w.results
    assert first.files and idle.files == [] and idle.rows_landed == 0
    metrics = lakehouse(project).scan(monitors.METRICS_TABLE).collect()
    assert metrics.height == first.metric_rows + idle.metric_rows
    assert metrics["at"].n_unique() == 2  # two monitor runs


def test_watch_rejects_a_bad_interval(project: Paths) -> None:
    """Check that non-positive polling and idle intervals are refused with a clear message."""
    with pytest.raises(WatchError, match="interval must be > 0"):
        watch(project, interval=0)
    with pytest.raises(WatchError, match="idle_every must be > 0"):
        watch(project, idle_every=-1.0)


def test_cli_watch_stops_cleanly_on_ctrl_c(project: Paths, export: Path) -> None:
    """Check that `hortus monitor watch` prints a line per batch and exits 0 on SIGINT."""
    land(export, project.data, DAYS[0])
    cmd = [sys.executable, "-m", "hortus.cli.core", "--root", str(project.root), "monitor", "watch",
           "--interval", "0.2", "--monitors", "data_quality"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 2 * TIMEOUT
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("watch batch 1"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines) + out
    assert proc.returncode == 0, err
    assert "watch batch 1" in text and "reconciles=True" in text
    assert "stopped after 1 batch(es)" in text
    assert count(lakehouse(project), monitors.METRICS_TABLE) > 0


def test_cli_watch_help_names_its_options() -> None:
    """Check that `hortus monitor watch --help` documents interval, max-batches and monitors."""
    out = subprocess.run(
        [sys.executable, "-m", "hortus.cli.core", "monitor", "watch", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in ("--interval", "--max-batches", "--monitors"):
        assert option in out
