"""Shared set-up of the benchmark scripts (imported as `_common` from benchmarks/)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def as_pipeline(root: Path) -> None:
    """Run as the pipeline service user under the repository's access policy (audited)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "access_policy.yaml", root / "access_policy.yaml")
    os.environ.setdefault("HORTUS_USER", "pipeline")
    os.environ.setdefault("HORTUS_AUDIT_KEY", "bench-only-audit-key")
    os.environ.setdefault("HORTUS_PII_KEY", "bench-only-pii-key")


def peak_rss_mb() -> float:
    """Return this process's peak resident memory in MB.

    Reads VmHWM from /proc/self/status (Linux): the high-water mark of this process's
    own address space, reset by exec, so a child started from a large parent does not
    inherit the parent's peak (`ru_maxrss` does).  Falls back to `ru_maxrss` elsewhere.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_line() -> str:
    """Return one line: architecture, cores, memory, load averages and Python version."""
    import platform

    mem = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total_kb = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        mem = f", {total_kb / 1024**2:.0f} GB"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    loads = "?" if load is None else " / ".join(f"{v:.2f}" for v in load)
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores{mem}, load average "
        f"(1/5/15 min) {loads}, Python {platform.python_version()}"
    )


def rss_mb(pid: int) -> float:
    """Return the current resident memory of process `pid` in MB (0 if it is gone)."""
    status = Path(f"/proc/{pid}/status")
    try:
        text = status.read_text()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds() -> float:
    """Return the CPU time (user + system, all threads) this process has used so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
