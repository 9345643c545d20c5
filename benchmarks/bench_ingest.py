"""Benchmark: landing -> bronze -> silver throughput and peak memory.

For each size, a landing export is simulated once (not timed), then measured in
fresh child processes so peak RSS is per run:
- hortus: `ingest` + silver `build` (parse, type, validate, dedupe, tokenise, quarantine)
- peer:   polars `read_ndjson` of the same event files + `write_delta` (a raw copy,
          no validation): the floor that the governance work is compared with.

Usage: python benchmarks/bench_ingest.py [--events 1000000,10000000] [--workdir DIR]
       [--chunk-rows 2000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import as_pipeline

HORTUS = r"""
import json, resource, sys, time
from pathlib import Path
from hortus.lakehouse.catalog import Catalog
from hortus.config import Paths
from hortus.lakehouse.ingest import ingest
from hortus.lakehouse import silver
from hortus.lakehouse.tables import Lakehouse
root = Path(sys.argv[1])
lh = Lakehouse(paths=Paths.at(root), catalog=Catalog.load(), stage="bench")
t0 = time.perf_counter()
chunk = int(sys.argv[2])
report = ingest(root / "data", lh, flush_rows=chunk)
t1 = time.perf_counter()
tables = silver.build(lh, silver.SilverOptions(key=b"bench-key"), chunk_rows=chunk)
t2 = time.perf_counter()
ev = next(t for t in tables if t["table"] == "silver.events")
print(json.dumps({"ingest_s": t1 - t0, "silver_s": t2 - t1, "events": ev["landed"],
                  "accepted": ev["accepted"], "quarantined": ev["quarantined"],
                  "rows_all": sum(t["landed"] for t in tables),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PEER = r"""
import gzip, json, resource, sys, time
from pathlib import Path
import polars as pl
root = Path(sys.argv[1])
files = sorted((root / "data" / "events").glob("*.jsonl.gz"))
t0 = time.perf_counter()
n = skipped = 0
for f in files:
    try:
        text = gzip.decompress(f.read_bytes()).decode("utf-8", "replace")
    except (OSError, EOFError):
        skipped += 1  # the peer has no error handling: broken files are skipped
        continue
    # the cheapest line filter polars' reader needs (it fails on a malformed line)
    lines = pl.Series(text.splitlines())
    ok = lines.filter(lines.str.contains(r"^\{.*\}$"))
    df = pl.read_ndjson("\n".join(ok.to_list()).encode(), infer_schema_length=None,
                        ignore_errors=True)
    try:
        df.write_delta(str(root / "peer" / "events"), mode="append",
                       delta_write_options={"schema_mode": "merge"})
    except Exception:  # e.g. a file whose wrong-typed value made a column a string
        skipped += 1
        continue
    n += df.height
t1 = time.perf_counter()
print(json.dumps({"copy_s": t1 - t0, "events": n, "files_skipped": skipped,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def sim_config_for(events: int) -> dict:
    """Return simulator settings giving roughly `events` events (measured rate)."""
    # measured: 164,729 events for 1,500 users x 28 days (3.9 per user-day; the user base
    # grows by sign-ups), 10.96M for 40,000 users x 60 days (4.6 per user-day)
    days = 28 if events <= 2_000_000 else 60
    per_user_day = 3.9 if days == 28 else 4.6
    users = max(200, int(events / (per_user_day * days)))
    return {
        "seed": 7,
        "start": "2025-03-01",
        "days": days,
        "users": users,
        "plants": 300,
        "faults": ("malformed", "duplicates", "wrong_type"),
        "fault_rate": 0.001,
    }


def run_child(code: str, root: Path, *args: str) -> dict:
    """Run code in a fresh interpreter and return the JSON it prints."""
    out = subprocess.run(
        [sys.executable, "-c", code, str(root), *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run the benchmark and print a table of figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", default="1000000,10000000")
    ap.add_argument("--workdir", default=None)
    ap.add_argument(
        "--chunk-rows",
        type=int,
        default=2_000_000,
        help="rows per bronze commit and per silver chunk (params.yaml's default: 2,000,000)",
    )
    args = ap.parse_args()
    from hortus.domains.plantshop.simulate import SimConfig, simulate

    base = Path(args.workdir or tempfile.mkdtemp(prefix="hortus-bench-"))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    print(
        f"{'target':>10} {'events':>10} {'ingest s':>9} {'silver s':>9} {'total s':>8} "
        f"{'events/s':>10} {'peak MB':>8} | {'peer s':>7} {'peer MB':>8} {'x peer':>7}"
    )
    for target in [int(x) for x in args.events.split(",")]:
        root = base / f"e{target}"
        cfg = sim_config_for(target)
        if not (root / "data" / "_manifest.json").exists():
            shutil.rmtree(root, ignore_errors=True)
            t = time.perf_counter()
            simulate(SimConfig(**cfg), root / "data")
            print(f"  (simulated {cfg} in {time.perf_counter() - t:.1f} s, not timed)")
        for d in ("lakehouse", "peer"):
            shutil.rmtree(root / d, ignore_errors=True)
        as_pipeline(root)
        h = run_child(HORTUS, root, str(args.chunk_rows))
        p = run_child(PEER, root)
        total = h["ingest_s"] + h["silver_s"]
        print(
            f"{target:>10,} {h['events']:>10,} {h['ingest_s']:>9.2f} {h['silver_s']:>9.2f} "
            f"{total:>8.2f} {h['events'] / total:>10,.0f} {h['peak_mb']:>8.0f} | "
            f"{p['copy_s']:>7.2f} {p['peak_mb']:>8.0f} {total / p['copy_s']:>7.2f}"
        )
        print(
            f"  peer copied {p['events']:,} events (no validation; {p['files_skipped']} "
            "broken or unappendable files skipped)"
        )
        print(
            f"  all tables: {h['rows_all']:,} rows landed; events accepted "
            f"{h['accepted']:,}, quarantined {h['quarantined']:,}"
        )


if __name__ == "__main__":
    main()
