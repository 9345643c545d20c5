"""Growth of the operations tables: a process's first audit append and `catalog show`.

Issue 18 item 9: at 1,628 audit commits a process's first audit append took 10.6x
longer and `catalog show` 2.1x longer than at 88.  This grows an audit log to ~90 and
~1,600 one-record commits (as many small stage runs do) and measures, each in a fresh
process (median of --repeat runs):

- ``full read``: the head read the way appends did before (every file of the log);
- ``first append``: `AuditLog.append` now (the tail file the log's statistics name);
- ``catalog show``: `hortus catalog show ops.prediction_log` in-process (its reads are
  audited, so it appends to the audit log);

at ~90 commits, at ~1,600, and at ~1,600 after `hortus maintain` (compaction and a
checkpoint), and prints the ratios against ~90.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ops_growth.py [--small 90 --large 1600]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import REPO, as_pipeline, machine_line  # noqa: E402

PROBE = r"""
import sys, time
t0 = time.perf_counter()
from pathlib import Path
root, what = Path(sys.argv[1]), sys.argv[2]
from hortus.governance.audit import AuditLog, AuditRecord
path = root / "lakehouse" / "ops" / "audit_log"
t_import = time.perf_counter()
if what == "full":
    log = AuditLog.open(path, secrets_dir=root / ".hortus" / "secrets")
    t = time.perf_counter()  # every file's columns, as head()/last_policy_version() did
    log._columns("seq", "hash", "policy_version", "key_id", "action", "detail")
elif what == "append":
    log = AuditLog.open(path, secrets_dir=root / ".hortus" / "secrets")
    t = time.perf_counter()
    log.append(AuditRecord("pipeline", "read", "bench", policy_version="p1"), track_policy=True)
    print("files", log.tail_files_read, file=sys.stderr)
else:
    import contextlib, io
    from hortus.cli.core import main
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["--root", str(root), "catalog", "show", "ops.prediction_log"]) == 0
print(time.perf_counter() - t)
"""


def probe(root: Path, what: str, repeat: int) -> float:
    """Return the median seconds of `what` in fresh processes."""
    times = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", PROBE, str(root), what],
            capture_output=True, text=True, check=True, cwd=root, env=os.environ.copy(),
        )  # fmt: skip
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def grow(root: Path, commits: int) -> None:
    """Append one-record commits until the audit log has `commits` versions."""
    from deltalake import DeltaTable

    from hortus.governance.audit import AuditLog, AuditRecord

    path = root / "lakehouse" / "ops" / "audit_log"
    log = AuditLog.open(path, secrets_dir=root / ".hortus" / "secrets")
    have = DeltaTable(str(path)).version() + 1 if log.exists() else 0
    for i in range(have, commits):
        log.append(AuditRecord("pipeline", "read", f"t{i}", policy_version="p1"))


def measure(root: Path, repeat: int) -> dict[str, float]:
    probe(root, "append", 1)  # warm the file cache (not timed)
    return {what: probe(root, what, repeat) for what in ("full", "append", "show")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=90)
    ap.add_argument("--large", type=int, default=1600)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hortus-bench-ops-"))
    try:
        root = tmp / "project"
        as_pipeline(root)
        shutil.copy(REPO / "hortus.yaml", root / "hortus.yaml")
        (root / "data").mkdir()
        os.chdir(root)
        import polars as pl

        from hortus.lakehouse.tables import Lakehouse

        lh = Lakehouse.open(root, stage="bench")
        lh.write("ops.prediction_log", _log_rows(pl), mode="append")
        lh.close()
        grow(root, args.small)
        small = measure(root, args.repeat)
        grow(root, args.large)
        large = measure(root, args.repeat)
        from hortus.lakehouse.maintain import maintain

        lh = Lakehouse.open(root, stage="bench")
        maintain(lh)
        lh.close()
        after = measure(root, args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(machine_line())
    print(f"audit log commits: ~{args.small} vs ~{args.large}; median of {args.repeat} "
          "fresh processes each (seconds, ratio against ~small)")  # fmt: skip
    names = {"full": "head by full read (the old append path)", "append": "first audit append",
             "show": "catalog show ops.prediction_log"}  # fmt: skip
    for key, label in names.items():
        s, big, m = small[key], large[key], after[key]
        print(
            f"  {label:<42} {s:7.3f} s | {big:7.3f} s ({big / s:4.1f}x) | after maintain "
            f"{m:7.3f} s ({m / s:4.1f}x)"
        )


def _log_rows(pl):
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return pl.DataFrame(
        {
            "batch_id": ["b"], "model_name": ["churn"], "model_version": [1],
            "request": ["{}"], "features": [None], "score": [0.5], "rank": [1],
            "as_of": [now], "logged_at": [now], "prediction": [None], "caller": [None],
            "latency_ms": [None],
        },
        schema_overrides={"features": pl.String, "prediction": pl.String, "caller": pl.String,
                          "latency_ms": pl.Float64},
    )  # fmt: skip


if __name__ == "__main__":
    main()
