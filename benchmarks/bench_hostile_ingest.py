"""Benchmark: peak memory of ingest and silver on hostile landing files vs legitimate ones.

Each case is one landing folder ingested by a fresh child process, then taken to silver
by another (`stages.silver`, as `hortus silver` runs it, pinned hashes included); peak
RSS = VmHWM of that process, so runs do not share a high-water mark:
- baseline: an empty landing (imports, catalog, policy: the fixed cost of each stage)
- legit:    one day of `--events` realistic events (JSON lines, gzip ~9x), the largest
            legitimate file; its extra peak over the baseline, divided by its
            decompressed size, is the multiple the others are compared with
- bomb_zeros: a gzip of 1 GB of zero bytes (~1 MB): refused at the line cap (1 MiB)
- bomb_lines: a gzip of 1 GB of one valid event line repeated (~1-3 MB): refused at
              max_ratio x its size
- blank_lines: the probe's ~19 KB gzip of 20 million blank lines: refused (ratio)
- long_line: a 20 MB `order_id` in one line: refused at the line cap
- csv_unclosed: a users CSV of `--users` rows with an unclosed quote on line 2 (exact
                parser path: one row quarantined, the rest lands)
Silver's own hostile cases (files under every ingest cap, so they reach silver):
- dup_day:    the legitimate day landed twice under two names: every row of the
              second a duplicate (two chunks, the second checked against silver's keys)
- junk_lines: `--events` lines that are not JSON (40 random hex characters): all
              quarantined with their text
- wide_rows:  80 events with a 0.9 MB `order_id` (under the line cap): quarantined
              (max_length), the raw lines kept
- history:    days 1-3 of `--events` each built first, then day 4 ingested and taken to
              silver (measured): silver's peak must not grow with the history

Usage: python benchmarks/bench_hostile_ingest.py [--events 1000000] [--users 100000]
       [--workdir DIR]
Prints two rows per case (ingest, silver) and exits non-zero if a case peaks above the
bound stated in hortus.lakehouse.landing (BOUND_X x the MB the caps let it read +
BOUND_CHUNK_MB) or in hortus.lakehouse.silver (`memory_bound_mb` of the chunks the run
takes, over the silver baseline).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import as_pipeline, machine_line

CHILD = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from _common import peak_rss_mb
from hortus.config import Paths
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.ingest import ingest
from hortus.lakehouse.tables import Lakehouse
root = Path(sys.argv[1])
lh = Lakehouse(paths=Paths.at(root), catalog=Catalog.load(), stage="bench")
t0 = time.perf_counter()
report = ingest(Path(sys.argv[2]), lh)
print(json.dumps({"s": time.perf_counter() - t0, "peak_mb": peak_rss_mb(),
                  "rows": report.rows_by_table(),
                  "refused": [f.reason[:90] for f in report.refused],
                  "warnings": len(report.to_dict()["warnings"])}))
"""

SILVER_CHILD = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from _common import peak_rss_mb
from hortus.config import Paths
from hortus.lakehouse import silver
from hortus.lakehouse.tables import Lakehouse
from hortus.pipeline import stages
root = Path(sys.argv[1])
chunks = silver.chunk_sizes(Lakehouse.open(root, stage="bench"))  # what the run will take
t0 = time.perf_counter()
summary = stages.silver(Paths.at(root), {})
print(json.dumps({"s": time.perf_counter() - t0, "peak_mb": peak_rss_mb(),
                  "totals": summary["totals"], "chunks": chunks}))
"""

MB = 1_000_000
CASES = ("baseline", "legit", "bomb_zeros", "bomb_lines", "blank_lines", "long_line",
         "csv_unclosed", "dup_day", "junk_lines", "wide_rows", "history")  # fmt: skip
HISTORY_DAYS, WIDE_ROWS = 3, 80


def _event(i: int, day: int = 1) -> dict:
    return {
        "event_id": f"e{i * 2654435761 % 2**64:016x}",
        "event_type": ("view", "rec_impression", "add_to_cart", "order")[i % 4],
        "ts": f"2025-03-{day:02d}T{i // 60000 % 24:02d}:{i // 1000 % 60:02d}:{i % 60:02d}."
        f"{i % 10**6:06d}Z",
        "session_id": f"s{i // 7 * 40503 % 2**48:012x}",
        "user_id": f"u{i // 31 % 10**6:06d}",
        "plant_id": f"p{i % 997:04d}",
        "rec_id": f"r{i // 3:010d}" if i % 4 == 1 else None,
        "price": round(3.5 + i % 200 * 0.75, 2) if i % 4 == 3 else None,
        "quantity": 1 + i % 3 if i % 4 == 3 else None,
    }


def _write_day(path: Path, events: int, day: int) -> None:
    """Write one day of `events` legitimate events (ids differ between days)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=6) as f:
        for start in range(0, events, 100_000):
            first = (day - 1) * events
            ids = range(first + start, first + min(events, start + 100_000))
            f.write(("\n".join(json.dumps(_event(i, day)) for i in ids) + "\n").encode())


def _gzip_repeat(path: Path, block: bytes, total: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=9) as f:
        for _ in range(total // len(block)):
            f.write(block)


def make_cases(base: Path, events: int, users: int) -> dict[str, Path]:
    """Write each case's landing folder under `base` (once); return {case: folder}."""
    cases = {name: base / name for name in CASES}
    if (base / "ready").exists():
        return cases
    shutil.rmtree(base, ignore_errors=True)
    for folder in cases.values():
        folder.mkdir(parents=True)
    legit = cases["legit"] / "events/events-2025-03-01.jsonl.gz"
    _write_day(legit, events, 1)
    # silver's hostile cases: files ingest lets through (under every cap)
    dup = cases["dup_day"] / "events"
    dup.mkdir()
    shutil.copy(legit, dup / legit.name)
    shutil.copy(legit, dup / "events-2025-03-02.jsonl.gz")  # every row a duplicate
    rng = random.Random(7)
    junk = cases["junk_lines"] / "events/events-2025-03-01.jsonl.gz"
    junk.parent.mkdir(parents=True)
    with gzip.open(junk, "wb", compresslevel=6) as f:  # not JSON: all quarantined (raw kept)
        for _ in range(events // 100_000 or 1):
            f.write(b"\n".join(rng.randbytes(20).hex().encode() for _ in range(100_000)) + b"\n")
    wide = cases["wide_rows"] / "events/events-2025-03-01.jsonl.gz"
    wide.parent.mkdir(parents=True)
    with gzip.open(wide, "wb", compresslevel=6) as f:  # 0.9 MB order_ids, under the line cap
        for i in range(WIDE_ROWS):
            order = rng.randbytes(450_000).hex()
            f.write((json.dumps(_event(i) | {"order_id": order}) + "\n").encode())
    for day in range(1, HISTORY_DAYS + 2):  # history: days 1..H, then H + 1 (measured)
        path = cases["history"] / f"events/events-2025-03-{day:02d}.jsonl.gz"
        if day == 1:
            path.parent.mkdir(parents=True)
            shutil.copy(legit, path)
        else:
            _write_day(path, events, day)
    line = (json.dumps(_event(1)) + "\n").encode()
    _gzip_repeat(cases["bomb_zeros"] / "events/events-2025-03-01.jsonl.gz", bytes(MB), 1000 * MB)
    _gzip_repeat(cases["bomb_lines"] / "events/events-2025-03-01.jsonl.gz", line * 4000, 1000 * MB)
    _gzip_repeat(cases["blank_lines"] / "events/events-2025-03-01.jsonl.gz", b"\n" * MB, 20 * MB)
    long = cases["long_line"] / "events/events-2025-03-01.jsonl.gz"
    long.parent.mkdir(parents=True)
    long.write_bytes(gzip.compress(json.dumps(_event(2) | {"order_id": "o" * 20 * MB}).encode()))
    header = ("user_id,name,email,phone,address,birth_date,ip_address,country,region,device,"
              "signup_at")  # fmt: skip
    rows = [
        f'u{i:06d},Jane Doe{i},jane{i}@example.com,+44 7700 900123,"{i} High St, London",'
        f"1987-02-03,10.0.0.1,GB,UKI,mobile,2025-03-01T10:00:00Z"
        for i in range(users)
    ]
    rows[0] = rows[0].replace("Jane Doe0", '"Jane Doe0')  # an unclosed quote on line 2
    csv_file = cases["csv_unclosed"] / "users/users-2025-03-01.csv"
    csv_file.parent.mkdir(parents=True)
    csv_file.write_text(header + "\n" + "\n".join(rows) + "\n")
    (base / "ready").write_text("")
    return cases


def _child(*argv: str) -> dict:
    out = subprocess.run([sys.executable, "-c", *argv], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_case(root: Path, landing: Path, *, fresh: bool = True) -> dict:
    """Ingest `landing` into a lakehouse under `root` in one child, silver in another.

    Returns the ingest child's figures, with the silver child's under "silver".  With
    `fresh`, the lakehouse is removed first.
    """
    if fresh:
        shutil.rmtree(root / "lakehouse", ignore_errors=True)
        shutil.rmtree(root / "reports", ignore_errors=True)
    as_pipeline(root)
    here = str(Path(__file__).parent)
    fig = _child(CHILD, str(root), str(landing), here)
    fig["silver"] = _child(SILVER_CHILD, str(root), here)
    return fig


def run_history(root: Path, landing: Path) -> tuple[dict, Path]:
    """Build days 1..H, then ingest and silver day H + 1; return its figures and file's folder.

    The landing is a copy under `root`/data, given the last day only for the second run.
    """
    days = sorted(landing.rglob("*.jsonl.gz"))
    data, last = root / "data", root / "last"
    for folder in (data, last, root / "lakehouse", root / "reports"):
        shutil.rmtree(folder, ignore_errors=True)
    (data / "events").mkdir(parents=True)
    (last / "events").mkdir(parents=True)
    for day in days[:-1]:
        shutil.copy(day, data / "events" / day.name)
    run_case(root, data)
    shutil.copy(days[-1], data / "events" / days[-1].name)
    shutil.copy(days[-1], last / "events" / days[-1].name)
    return run_case(root, data, fresh=False), last


def decompressed_size(folder: Path) -> int:
    """Return the decompressed bytes of every file under a folder (gzip streamed)."""
    total = 0
    for p in folder.rglob("*"):
        if p.is_file():
            if p.name.endswith(".gz"):
                with gzip.open(p, "rb") as f:
                    while chunk := f.read(64 * MB):
                        total += len(chunk)
            else:
                total += p.stat().st_size
    return total


#: the bound stated in hortus.lakehouse.landing: ingest's peak over the process baseline is
#: at most BOUND_X x the bytes the caps let the largest file be read (its decompressed size,
#: at most min(max_file_mb, max_ratio x its compressed size)) + BOUND_CHUNK_MB (~50 MB fixed,
#: ~55 MB to write one Parquet row group, cut at delta_append.ROW_GROUP_BYTES + one line,
#: ~55 MB margin for allocator noise; or one chunk of empty lines); x 2 for JSON lines
#: (streamed), x 6 for CSV (parsed whole; the shop's CSV exports are a few hundred KB)
BOUND_X, BOUND_CSV_X, BOUND_CHUNK_MB = 2.0, 6.0, 160


def readable_mb(landing: Path, decomp: int | None) -> float:
    """Return the MB the default caps let ingest read of a case's largest file."""
    from hortus.lakehouse.landing import RATIO_FLOOR, IngestLimits

    limits = IngestLimits()
    cap = limits.max_file_bytes
    for p in landing.rglob("*.gz"):
        cap = min(cap, max(RATIO_FLOOR, int(limits.max_ratio * p.stat().st_size)))
    return min(cap, decomp if decomp is not None else cap) / MB


def main(argv: list[str] | None = None) -> int:
    """Run every case; print the table; return 1 if a case peaks above the stated bound."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    from hortus.lakehouse import silver

    base = Path(args.workdir or tempfile.mkdtemp(prefix="hortus-hostile-"))
    print(machine_line())
    cases = make_cases(base / f"e{args.events}-u{args.users}", args.events, args.users)
    print(f"{'case':<13} {'file MB':>8} {'decomp MB':>10} {'read MB':>8} {'ingest s':>9} "
          f"{'peak MB':>8} {'extra MB':>9} {'bound MB':>9}  result")  # fmt: skip
    print(f"{'  silver':<13} {'':>8} {'chunk MB':>10} {'rows':>8} {'silver s':>9}")
    figures, over = {}, []
    for name, landing in cases.items():
        if name == "history":  # days 1..H first (not shown), then day H + 1 measured
            fig, landing = run_history(base / f"run-{name}", landing)
        else:
            fig = run_case(base / f"run-{name}", landing)
        figures[name] = fig
        size = sum(p.stat().st_size for p in landing.rglob("*") if p.is_file())
        decomp = decompressed_size(landing) if name not in ("bomb_zeros", "bomb_lines") else None
        fig["decomp"] = decomp
        readable = readable_mb(landing, decomp)
        extra = fig["peak_mb"] - figures["baseline"]["peak_mb"]
        is_csv = any(landing.rglob("*.csv*"))
        bound = (BOUND_CSV_X if is_csv else BOUND_X) * readable + BOUND_CHUNK_MB
        if extra > bound:
            over.append(name)
        result = "; ".join(fig["refused"]) or json.dumps(fig["rows"])
        shown = f"{decomp / MB:.1f}" if decomp is not None else "1000.0"
        print(f"{name:<13} {size / MB:>8.2f} {shown:>10} {readable:>8.1f} {fig['s']:>9.2f} "
              f"{fig['peak_mb']:>8.0f} {extra:>9.0f} {bound:>9.0f}  {result[:80]}")  # fmt: skip
        sv = fig["silver"]
        sv_extra = sv["peak_mb"] - figures["baseline"]["silver"]["peak_mb"]
        sv_bound = silver.memory_bound_mb(sv["chunks"])  # over the silver baseline
        big = max(sv["chunks"], default=[0, 0])
        if sv_extra > sv_bound:
            over.append(name + " (silver)")
        print(f"{'  silver':<13} {'chunk':>8} {big[0] / MB:>10.1f} {big[1]:>8} {sv['s']:>9.2f} "
              f"{sv['peak_mb']:>8.0f} {sv_extra:>9.0f} {sv_bound:>9.0f}  "
              f"{json.dumps(sv['totals'])}")  # fmt: skip
    base_mb = figures["baseline"]["peak_mb"]
    legit_extra = figures["legit"]["peak_mb"] - base_mb
    legit_mb = figures["legit"]["decomp"] / MB
    print(f"legitimate file: {legit_mb:.0f} MB decompressed, ingest peak {legit_extra:.0f} MB "
          f"over the baseline = {legit_extra / legit_mb:.2f}x its decompressed size")  # fmt: skip
    worst = max((n for n in figures if n not in ("baseline", "legit")),
                key=lambda n: figures[n]["peak_mb"])  # fmt: skip
    worst_extra = figures[worst]["peak_mb"] - base_mb
    print(f"worst hostile case: {worst}, {worst_extra:.0f} MB over the baseline "
          f"= {worst_extra / max(legit_extra, 1):.2f}x the legitimate file's")  # fmt: skip
    legit_sv = figures["legit"]["silver"]["peak_mb"] - figures["baseline"]["silver"]["peak_mb"]
    print(f"silver on the legitimate file: {legit_sv:.0f} MB over its baseline = "
          f"{legit_sv / legit_mb:.2f}x its decompressed size")  # fmt: skip
    hist = figures["history"]["silver"]["peak_mb"] - figures["baseline"]["silver"]["peak_mb"]
    print(f"silver of one new day on {HISTORY_DAYS} days of history: {hist:.0f} MB over its "
          f"baseline = {hist / max(legit_sv, 1):.2f}x the same day without history")  # fmt: skip
    print(
        f"bounds: ingest extra <= {BOUND_X:g} x read MB (CSV: {BOUND_CSV_X:g} x) + "
        f"{BOUND_CHUNK_MB} MB; silver extra <= {silver.BOUND_X:g} x chunk MB + "
        f"{silver.BOUND_ROW_BYTES} B x chunk rows + {silver.BOUND_FIXED_MB} MB: "
        + (f"EXCEEDED by {', '.join(over)}" if over else "held in every case")
    )
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
