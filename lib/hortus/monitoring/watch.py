"""Streaming monitoring: follow the landing folder and process each arrival as a micro-batch.

`watch` polls ``data/`` (standard library only: file names, sizes and mtimes).
A file is taken once its size and mtime are the same in two consecutive polls,
so a file still being written is left for a later poll.  The stable new files
form one micro-batch: they are ingested into bronze (`hortus.lakehouse.ingest.ingest`),
silver processes the new bronze batch (`hortus.lakehouse.silver.build`, incremental over
bronze batch ids), the configured monitors run (`hortus.monitoring.monitors.run_all`), their
metrics are appended to ops.monitor_metrics and the alert rules are evaluated
(`hortus.monitoring.alerts.run_alerts`).  Each batch is one run in ops.pipeline_runs
(stage ``watch``) and one log line.

Restart and crash safety.  Nothing the watcher keeps in memory decides what is
ingested: the poller only tells which files *may* be new, and `ingest` skips every
(file, sha256) already in bronze or in bronze.landing_files.  A fresh watcher
therefore offers every stable file once, re-ingests nothing and misses nothing
that arrived while it was stopped.  A malformed file is refused by `ingest`,
recorded in bronze.landing_files with its reason and never offered again (same
sha256); watching continues.  A crash mid-batch cannot double count:

- bronze rows are trusted as well as the file log (`already_ingested`), so a crash
  between the rows and the log does not land the file twice;
- silver processes only bronze batch ids not yet present in silver or quarantine
  and drops primary keys already accepted, so a crash between bronze and silver
  is caught up by the next batch (the startup batch runs silver even with no new
  file), and a re-run never appends the same rows again.

A crash inside `silver.build` itself (accepted rows committed, quarantine rows not
yet, or a batch's later chunks not yet processed) leaves a batch whose silver and
quarantine rows do not add up to its bronze rows; the next build finds it
(`silver.partial_batches`), deletes its rows from both tables in visible Delta
commits and processes it again as a whole, so the counts reconcile again.

Examples
--------
>>> stop = threading.Event()                                          # doctest: +SKIP
>>> t = threading.Thread(target=watch, args=(paths,), kwargs={"stop": stop})  # doctest: +SKIP
>>> t.start()                                                         # doctest: +SKIP
>>> stop.set(); t.join()   # the current batch finishes first         # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hortus.config import Paths
from hortus.errors import HortusError
from hortus.lakehouse import lease, silver
from hortus.lakehouse.ingest import ingest
from hortus.lakehouse.landing import IngestLimits
from hortus.lakehouse.pii import load_key
from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring import monitors
from hortus.monitoring.runlog import record_run

log = logging.getLogger("hortus.monitoring.watch")

#: monitors run after each micro-batch unless configured otherwise
DEFAULT_MONITORS = ("data_quality", "freshness")
STAGE = "watch"


class WatchError(HortusError):
    """The watcher cannot start or keeps failing (names the folder and the cause)."""


@dataclass(frozen=True)
class BatchResult:
    """What one micro-batch did: files, row counts, metrics, alerts and its duration."""

    number: int
    batch_id: str | None
    files: list[str]
    refused: list[tuple[str, str]]
    skipped: int
    rows_landed: int
    rows_accepted: int
    rows_quarantined: int
    metric_rows: int
    alerts_notified: int
    reconciles: bool
    seconds: float
    error: str | None = None

    def line(self) -> str:
        """Return the one-line log summary of this batch."""
        head = f"watch batch {self.number} {self.batch_id or '-'}"
        if self.error:
            return f"{head}: FAILED after {self.seconds:.2f}s: {self.error}"
        refused = (
            " refused=[" + ", ".join(f"{f} ({why})" for f, why in self.refused) + "]"
            if self.refused
            else ""
        )
        return (
            f"{head}: files={len(self.files)} skipped={self.skipped} "
            f"landed={self.rows_landed} accepted={self.rows_accepted} "
            f"quarantined={self.rows_quarantined} metrics={self.metric_rows} "
            f"alerts={self.alerts_notified} reconciles={self.reconciles} "
            f"{self.seconds:.2f}s{refused}"
        )


@dataclass
class LandingPoller:
    """Tell which landing files are stable and not yet offered to ingest.

    A file is stable when its (size, mtime) is unchanged between two polls.
    Names whose path has a part starting with ``.`` or ``_`` (temporary files,
    the manifest) and ``*.dvc`` files are ignored, as `hortus.lakehouse.ingest.discover` does.
    The memory here only avoids offering the same unchanged file twice in one
    process; what was ingested is decided by the lakehouse.
    """

    landing: Path
    _last: dict[str, tuple[int, int]] = field(default_factory=dict)
    _offered: dict[str, tuple[int, int]] = field(default_factory=dict)

    def scan(self) -> dict[str, tuple[int, int]]:
        """Return {relative name: (size, mtime_ns)} of the landing files now."""
        out: dict[str, tuple[int, int]] = {}
        if not self.landing.is_dir():
            raise WatchError(f"{self.landing}: landing folder not found")
        for p in self.landing.rglob("*"):  # a loop over files, not rows
            rel = p.relative_to(self.landing)
            if any(part.startswith((".", "_")) for part in rel.parts) or p.name.endswith(".dvc"):
                continue
            try:
                st = p.stat()
            except FileNotFoundError:  # removed between listing and stat: not there
                continue
            if p.is_file():
                out[rel.as_posix()] = (st.st_size, st.st_mtime_ns)
        return out

    def poll(self) -> tuple[list[str], list[str]]:
        """Return (stable files not offered yet, files still changing), both sorted."""
        now = self.scan()
        stable = [r for r, sig in now.items() if self._last.get(r) == sig]
        pending = sorted(r for r in stable if self._offered.get(r) != now[r])
        changing = sorted(r for r, sig in now.items() if self._last.get(r) != sig)
        self._last = now
        return pending, changing

    def offered(self, names: Sequence[str]) -> None:
        """Remember that these files (at their current signature) went to ingest."""
        for r in names:
            if r in self._last:
                self._offered[r] = self._last[r]


def _stage_files(landing: Path, names: Sequence[str], into: Path) -> None:
    """Mirror the chosen landing files into `into` as symlinks (same relative names)."""
    for rel in names:
        link = into / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink((landing / rel).resolve(), link)


def run_batch(
    lh: Lakehouse,
    landing: Path,
    names: Sequence[str],
    *,
    number: int,
    silver_options: silver.SilverOptions,
    monitor_config: monitors.MonitorConfig,
    rules: Sequence = (),
    sinks: Mapping | None = None,
    flush_rows: int = 2_000_000,
    chunk_rows: int = 2_000_000,
    ingest_limits: IngestLimits | None = None,
) -> BatchResult:
    """Ingest the named landing files, build silver, run monitors and alerts; return the result.

    Only `names` are offered to ingest (through a folder of symlinks), so files
    still being written are not read; files already in bronze are skipped by sha256.
    The batch is recorded in ops.pipeline_runs (stage ``watch``), failed or not.
    """
    from hortus.monitoring.alerts import run_alerts

    t0 = time.perf_counter()
    # one writer at a time: the batch holds bronze and silver (a stage holding them: LeaseHeld)
    with (
        lease.hold(lh.paths.lakehouse_root, ["bronze", "silver"], holder=lh.user, stage=STAGE),
        record_run(lh, STAGE) as run,
    ):
        with tempfile.TemporaryDirectory(prefix="hortus-watch-") as tmp:
            _stage_files(Path(landing), names, Path(tmp))
            # files must resolve inside the landing folder (not only inside tmp)
            report = ingest(
                Path(tmp), lh, flush_rows=flush_rows, limits=ingest_limits, within=Path(landing)
            )
        tables = silver.build(lh, silver_options, chunk_rows=chunk_rows)
        checks = silver.reconcile(lh)
        landed = sum(t["landed"] for t in tables)
        run.rows_in = landed
        run.rows_out = sum(t["accepted"] for t in tables)
        metrics = monitors.run_all(lh, monitor_config)
        monitors.write_metrics(lh, metrics)
        notified = 0
        if rules:
            alert_run = run_alerts(lh, list(rules), metrics, dict(sinks or {}))
            notified = len(alert_run.notifications)
    lh.close()
    result = BatchResult(
        number=number,
        batch_id=report.batch_id if report.files else None,
        files=[f.source_file for f in report.files],
        refused=[(f.source_file, f.reason or "") for f in report.refused],
        skipped=len(report.skipped),
        rows_landed=landed,
        rows_accepted=sum(t["accepted"] for t in tables),
        rows_quarantined=sum(t["quarantined"] for t in tables),
        metric_rows=metrics.height,
        alerts_notified=notified,
        reconciles=all(c["reconciles"] for c in checks),
        seconds=time.perf_counter() - t0,
    )
    if not result.reconciles:
        broken = [c for c in checks if not c["reconciles"]]
        log.error("watch batch %d: bronze and silver do not reconcile: %s", number, broken)
    return result


def watch(
    paths: Paths,
    *,
    interval: float = 1.0,
    max_batches: int | None = None,
    stop: threading.Event | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    monitor_config: monitors.MonitorConfig | None = None,
    silver_options: silver.SilverOptions | None = None,
    rules: Sequence = (),
    sinks: Mapping | None = None,
    flush_rows: int = 2_000_000,
    chunk_rows: int = 2_000_000,
    ingest_limits: IngestLimits | None = None,
    max_failures: int = 3,
    idle_every: float | None = None,
) -> list[BatchResult]:
    """Follow `paths.data` and process each set of newly stable files as a micro-batch.

    Polls every `interval` seconds until `stop` is set or `max_batches` batches ran;
    returns the batch results.  The first batch after start runs as soon as the
    files present are stable, even if none is new, so silver catches up on bronze
    rows a crashed run left behind.  `monitor_config` defaults to the data_quality
    and freshness monitors; `silver_options` to the project's PII key.  A failing
    batch is recorded (ops.pipeline_runs, log) and retried at the next poll; after
    `max_failures` failures in a row a `WatchError` is raised.  With `idle_every`
    seconds, a batch with no files (silver catch-up, monitors, alerts) also runs
    after that long without one, so freshness goes stale when nothing arrives.
    """
    if interval <= 0:
        raise WatchError(f"watch interval must be > 0 seconds, got {interval}")
    if idle_every is not None and idle_every <= 0:
        raise WatchError(f"idle_every must be > 0 seconds, got {idle_every}")
    if max_batches is not None and max_batches < 1:
        raise WatchError(f"max_batches must be >= 1, got {max_batches}")
    stop = stop or threading.Event()
    config = monitor_config or monitors.MonitorConfig(monitors=DEFAULT_MONITORS)
    options = silver_options or silver.SilverOptions(key=load_key(paths.secrets))
    lh = Lakehouse.open(paths.root, stage=STAGE)
    poller = LandingPoller(Path(paths.data))
    results: list[BatchResult] = []
    failures = 0
    started = False
    polls = 0
    last_batch = time.monotonic()
    log.info("watching %s every %.2fs", paths.data, interval)
    while not stop.is_set():
        pending, _changing = poller.poll()
        polls += 1
        # from the second poll on (sizes compared): new stable files, or the catch-up batch
        idle = idle_every is not None and time.monotonic() - last_batch >= idle_every
        if polls >= 2 and (pending or not started or idle):
            number = len(results) + 1
            t0 = time.perf_counter()
            try:
                result = run_batch(
                    lh,
                    paths.data,
                    pending,
                    number=number,
                    silver_options=options,
                    monitor_config=config,
                    rules=rules,
                    sinks=sinks,
                    flush_rows=flush_rows,
                    chunk_rows=chunk_rows,
                    ingest_limits=ingest_limits,
                )
            except lease.LeaseHeld as exc:  # another writer: not a failure, try again later
                log.info("watch batch %d waits: %s", number, exc)
                stop.wait(interval)
                continue
            except Exception as exc:  # recorded in ops.pipeline_runs by record_run
                failures += 1
                result = BatchResult(
                    number, None, list(pending), [], 0, 0, 0, 0, 0, 0, False,
                    time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}",
                )  # fmt: skip
                log.error(result.line())
                if on_batch:
                    on_batch(result)
                if failures >= max_failures:
                    raise WatchError(
                        f"watching {paths.data}: {failures} batches failed in a row; "
                        f"last error: {result.error}"
                    ) from exc
                stop.wait(interval)
                continue
            failures = 0
            started = True
            last_batch = time.monotonic()
            poller.offered(pending)
            results.append(result)
            log.info(result.line())
            if on_batch:
                on_batch(result)
            if max_batches is not None and len(results) >= max_batches:
                break
        stop.wait(interval)
    lh.close()
    log.info("watch stopped after %d batch(es)", len(results))
    return results
