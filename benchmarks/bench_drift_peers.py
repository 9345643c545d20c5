"""Benchmark: hortus drift against Evidently and Deepchecks on 1M and 5M rows x 30 columns.

Two seeded tables per size (reference and current; 20 float, 5 integer and 5 string
columns, the current shifted in 7 of them, two float columns with 1% nulls) are written
to Parquet in the workdir.  Each measurement then runs in its own child process, so its
peak memory (VmHWM of that process) is its own:

- ``hortus drift REF CUR --json OUT`` as typed (whole process: interpreter start,
  imports, reading both files, every statistic, the JSON report);
- hortus in-process from the files: ``compare(scan_parquet(REF), scan_parquet(CUR))``
  and the JSON-able report (imports excluded, as for the peers);
- hortus against a stored reference profile: ``Profile.load(JSON)`` + the current file
  (the profile is built once, in a separate process, and its time shown);
- Evidently ``Report([DataDriftPreset()]).run(current, reference)`` (pandas reads the
  files; numerical and categorical columns declared);
- Deepchecks ``FeatureDrift`` (the drift check of its train-test validation suite, with
  the suite's condition), on every row (``n_samples=None``) and with its default
  100,000-row sample.

Peers run at the first size (1M) and at the next ones only if they took under
``--peer-max-seconds`` there; each peer run is stopped after ``--timeout`` seconds or
above ``--peer-max-mb`` resident memory (the machine is shared), and a peer that fails
at the first size is run on a separate, smaller table pair (``--fallback-rows``) and
labelled as such.  Ratios are seconds divided by hortus in-process at the same size.

Usage: python benchmarks/bench_drift_peers.py [--rows 1000000,5000000]
    [--workdir /tmp/bench-drift] [--timeout 900] [--peer-max-mb 12000]
    [--peers evidently,deepchecks,deepchecks-default] [--json OUT.json]
    [--deepchecks-python .bench-peers-deepchecks/bin/python]
(`make bench-peers` builds the peer environments and runs it.)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import REPO, cpu_seconds, machine_line, peak_rss_mb, rss_mb

RESULT_TAG = "BENCH-RESULT "
DATA_VERSION = 3  # bump when make_tables changes, so cached Parquet files are rebuilt
NOT_INSTALLED = 3  # child exit status: the tool does not import in that interpreter
FLOATS = [f"f{j:02d}" for j in range(20)]
INTEGERS = [f"i{j:02d}" for j in range(5)]
CATEGORICALS = [f"c{j:02d}" for j in range(5)]
NUMERIC = FLOATS + INTEGERS
PLANTED = ["f00", "f05", "f08", "f10", "i02", "c01", "c04"]
TOOLS = {
    "hortus-cli": "hortus drift REF CUR --json (CLI, whole process)",
    "hortus-files": "hortus compare(scan REF, scan CUR), in process",
    "hortus-build-profile": "hortus Profile.from_frame + save (once per REF)",
    "hortus-profile": "hortus stored profile (JSON) vs CUR, in process",
    "evidently": "Evidently DataDriftPreset",
    "deepchecks": "Deepchecks FeatureDrift, all rows",
    "deepchecks-default": "Deepchecks FeatureDrift, default 100k sample",
}
PEERS = ("evidently", "deepchecks", "deepchecks-default")
TARGET_SECONDS = {1_000_000: 2.0, 5_000_000: 10.0}  # issue 5


# ------------------------------------------------------------------------ data
def make_tables(rows: int, seed: int):
    """Return (reference, current) polars frames; the current drifts in `PLANTED`.

    Floats cycle through normal, lognormal, prices in cents (gamma, many ties) and
    uniform; integers are counts, ages, ids and binomials; strings have 3 to 40
    categories.  Shifts: f00 mean +0.25 sd, f05 heavier lognormal tail, f10 prices up
    about 9%, f08 sd x1.25, i02 Poisson mean 20 -> 23, c01 channel shares move, c04 a
    new tier at 10%.  f03 and f07 have 1% nulls on both sides.
    """
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)

    def floats(j: int, drift: bool) -> np.ndarray:
        kind = j % 4
        if kind == 0:
            return rng.normal(
                0.25 if drift and j == 0 else 0.0, 1.25 if drift and j == 8 else 1.0, rows
            )
        if kind == 1:
            return rng.lognormal(0.0, 1.0 if drift and j == 5 else 0.8, rows)
        if kind == 2:
            return np.round(rng.gamma(3.0, 7.6 if drift and j == 10 else 7.0, rows), 2)
        return rng.uniform(0.0, 100.0, rows)

    def integers(j: int, drift: bool) -> np.ndarray:
        return [
            lambda: rng.poisson(3.0, rows),
            lambda: rng.integers(18, 90, rows),
            lambda: rng.poisson(23.0 if drift else 20.0, rows),
            lambda: rng.integers(0, 10_000, rows),
            lambda: rng.binomial(40, 0.3, rows),
        ][j]()

    family = 1.0 / np.arange(1, 41)
    cats = [
        ([f"region_{k}" for k in range(6)], np.full(6, 1 / 6), None),
        (["web", "app", "store"], np.array([0.5, 0.3, 0.2]), np.array([0.3, 0.5, 0.2])),
        ([f"family_{k:02d}" for k in range(40)], family / family.sum(), None),
        (["desktop", "mobile", "tablet"], np.array([0.45, 0.45, 0.1]), None),
        (
            ["free", "basic", "pro", "team", "enterprise"],
            np.array([0.55, 0.25, 0.15, 0.05, 0.0]),
            np.array([0.5, 0.2, 0.15, 0.05, 0.1]),
        ),
    ]

    def frame(drift: bool) -> pl.DataFrame:
        cols = []
        for j, name in enumerate(FLOATS):
            s = pl.Series(name, floats(j, drift))
            if name in ("f03", "f07"):
                s = s.scatter(np.flatnonzero(rng.random(rows) < 0.01), None)
            cols.append(s)
        cols += [pl.Series(n, integers(j, drift), dtype=pl.Int64) for j, n in enumerate(INTEGERS)]
        for name, (labels, p_ref, p_cur) in zip(CATEGORICALS, cats, strict=True):
            p = p_cur if drift and p_cur is not None else p_ref
            codes = rng.choice(len(labels), rows, p=p)
            cols.append(pl.Series(name, labels, dtype=pl.String).gather(codes))
        return pl.DataFrame(cols)

    return frame(False), frame(True)


def child_make_data(args: argparse.Namespace) -> dict:
    """Write ref.parquet / cur.parquet for `--rows` (reused when already there)."""
    import polars as pl

    out = Path(args.data)
    meta_path = out / "meta.json"
    wanted = {"rows": args.rows, "seed": args.seed, "version": DATA_VERSION}
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in wanted} == wanted:
            return {**meta, "reused": True}
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    ref, cur = make_tables(args.rows, args.seed)
    ref.write_parquet(out / "ref.parquet")
    cur.write_parquet(out / "cur.parquet")
    # the in-memory size of the two tables as read back from the files
    sizes = [pl.read_parquet(out / f).estimated_size() for f in ("ref.parquet", "cur.parquet")]
    meta = {
        **wanted,
        "bytes_in_memory": int(sum(sizes)),
        "bytes_parquet": sum((out / f).stat().st_size for f in ("ref.parquet", "cur.parquet")),
        "seconds_to_make": round(time.perf_counter() - t, 2),
    }
    meta_path.write_text(json.dumps(meta))
    return {**meta, "reused": False}


# --------------------------------------------------------------------- children
def _drifted_from_report(report: dict) -> list[str]:
    return [c["column"] for c in report["columns"] if c["drifted"] or c["null_drifted"]]


def child_hortus_cli(args: argparse.Namespace) -> dict:
    """Run `hortus drift REF CUR --json OUT` in this process (the parent times the process)."""
    from hortus.cli.core import main

    out = Path(args.data) / "hortus-cli-report.json"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        status = main(["drift", args.ref, args.cur, "--json", str(out)])
    if status not in (0, 1):
        raise SystemExit(f"hortus drift exited {status}: {printed.getvalue()[-500:]}")
    return {"drifted": _drifted_from_report(json.loads(out.read_text()))}


def child_hortus_files(args: argparse.Namespace) -> dict:
    """Time compare() on the two Parquet files, scanned lazily as the CLI does."""
    import polars as pl
    import scipy.special  # noqa: F401  (imported lazily by the p-values; kept out of the time)
    import scipy.stats  # noqa: F401

    from hortus.monitoring.drift import compare

    base = peak_rss_mb()
    t, cpu0 = time.perf_counter(), cpu_seconds()
    report = compare(
        pl.scan_parquet(args.ref),
        pl.scan_parquet(args.cur),
        reference_name=args.ref,
        current_name=args.cur,
    ).to_dict()
    return {
        "seconds": time.perf_counter() - t,
        "base_mb": base,
        "cpu_seconds": cpu_seconds() - cpu0,
        "drifted": _drifted_from_report(report),
    }


def child_hortus_build_profile(args: argparse.Namespace) -> dict:
    """Time building the reference profile from the file and saving it as JSON."""
    import polars as pl

    from hortus.monitoring.drift import Profile

    base = peak_rss_mb()
    t, cpu0 = time.perf_counter(), cpu_seconds()
    path = Profile.from_frame(pl.scan_parquet(args.ref), source=args.ref).save(
        Path(args.data) / "ref-profile.json"
    )
    return {
        "seconds": time.perf_counter() - t,
        "base_mb": base,
        "cpu_seconds": cpu_seconds() - cpu0,
        "profile_bytes": path.stat().st_size,
    }


def child_hortus_profile(args: argparse.Namespace) -> dict:
    """Time loading the stored profile and comparing the current file against it."""
    import polars as pl
    import scipy.special  # noqa: F401
    import scipy.stats  # noqa: F401

    from hortus.monitoring.drift import Profile, compare

    base = peak_rss_mb()
    t, cpu0 = time.perf_counter(), cpu_seconds()
    profile = Profile.load(Path(args.data) / "ref-profile.json")
    report = compare(profile, pl.scan_parquet(args.cur), current_name=args.cur).to_dict()
    return {
        "seconds": time.perf_counter() - t,
        "base_mb": base,
        "cpu_seconds": cpu_seconds() - cpu0,
        "drifted": _drifted_from_report(report),
    }


def child_evidently(args: argparse.Namespace) -> dict:
    """Time Evidently's data drift preset on the two files (pandas reads them)."""
    try:
        import pandas as pd
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    except ImportError as exc:
        return {"error": f"not installed here: {exc}", "status": NOT_INSTALLED}
    import evidently

    base = peak_rss_mb()
    t, cpu0 = time.perf_counter(), cpu_seconds()
    ref, cur = pd.read_parquet(args.ref), pd.read_parquet(args.cur)
    read = time.perf_counter() - t
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICALS)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    result = snapshot.dict()
    seconds = time.perf_counter() - t
    drifted, methods = [], set()
    for m in result["metrics"]:
        cfg = m["config"]
        if not cfg["type"].endswith("ValueDrift"):
            continue
        methods.add(cfg["method"])
        p_value_test = "p_value" in cfg["method"].lower()
        if (m["value"] < cfg["threshold"]) if p_value_test else (m["value"] >= cfg["threshold"]):
            drifted.append(cfg["column"])
    return {
        "seconds": seconds,
        "read_seconds": read,
        "base_mb": base,
        "cpu_seconds": cpu_seconds() - cpu0,
        "drifted": drifted,
        "version": evidently.__version__,
        "methods": sorted(methods),
    }


def _deepchecks(args: argparse.Namespace, n_samples: int | None) -> dict:
    try:
        import deepchecks
        import pandas as pd
        from deepchecks.tabular import Dataset
        from deepchecks.tabular.checks import FeatureDrift
    except ImportError as exc:
        return {"error": f"not installed here: {exc}", "status": NOT_INSTALLED}

    base = peak_rss_mb()
    t, cpu0 = time.perf_counter(), cpu_seconds()
    ref, cur = pd.read_parquet(args.ref), pd.read_parquet(args.cur)
    read = time.perf_counter() - t
    train = Dataset(ref, cat_features=CATEGORICALS, label=None)
    test = Dataset(cur, cat_features=CATEGORICALS, label=None)
    kwargs = {} if n_samples == -1 else {"n_samples": n_samples}
    check = FeatureDrift(**kwargs).add_condition_drift_score_less_than()  # as in its suite
    result = check.run(train_dataset=train, test_dataset=test, with_display=False)
    seconds = time.perf_counter() - t
    drifted = [c for c, v in result.value.items() if v["Drift score"] >= 0.2]
    return {
        "seconds": seconds,
        "read_seconds": read,
        "base_mb": base,
        "cpu_seconds": cpu_seconds() - cpu0,
        "drifted": drifted,
        "version": deepchecks.__version__,
        "methods": sorted({v["Method"] for v in result.value.values()}),
        "n_samples": check.n_samples,
    }


def child_deepchecks(args: argparse.Namespace) -> dict:
    """Time Deepchecks' FeatureDrift on every row (n_samples=None)."""
    return _deepchecks(args, None)


def child_deepchecks_default(args: argparse.Namespace) -> dict:
    """Time Deepchecks' FeatureDrift with its default sample of 100,000 rows per side."""
    return _deepchecks(args, -1)


CHILDREN = {
    "make-data": child_make_data,
    "hortus-cli": child_hortus_cli,
    "hortus-files": child_hortus_files,
    "hortus-build-profile": child_hortus_build_profile,
    "hortus-profile": child_hortus_profile,
    "evidently": child_evidently,
    "deepchecks": child_deepchecks,
    "deepchecks-default": child_deepchecks_default,
}


def run_as_child(args: argparse.Namespace) -> None:
    """Child mode: run one measurement and print its result as one tagged JSON line."""
    out = CHILDREN[args.child](args)
    out["peak_mb"] = peak_rss_mb()
    out.setdefault("cpu_seconds", cpu_seconds())  # the CLI: the whole process
    print(RESULT_TAG + json.dumps(out), flush=True)
    sys.exit(out.get("status", 0))


# ----------------------------------------------------------------------- parent
def run_child(
    python: str,
    tool: str,
    data: Path,
    args: argparse.Namespace,
    rows: int,
    timeout: float,
    max_mb: float = float("inf"),
) -> dict:
    """Run one child process; return its result with the process wall time or an error.

    The child is stopped when it runs longer than `timeout` seconds or its resident
    memory (polled every 0.2 s) exceeds `max_mb`: the machine is shared.
    """
    cmd = [python, str(Path(__file__).resolve()), "--child", tool, "--data", str(data)]
    cmd += ["--ref", str(data / "ref.parquet"), "--cur", str(data / "cur.parquet")]
    cmd += ["--rows", str(rows), "--seed", str(args.seed)]
    env = {**os.environ, "DO_NOT_TRACK": "1", "PYTHONWARNINGS": "ignore"}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    base = {"tool": tool, "rows": rows, "load": load}
    if not Path(python).is_file():
        return {**base, "error": f"not installed: no interpreter {python} (make bench-peers)"}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    while True:
        try:
            stdout, stderr = proc.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            rss = rss_mb(proc.pid)
            over = rss > max_mb
            if over or time.perf_counter() - t > timeout:
                proc.kill()
                proc.communicate()
                why = (
                    f"stopped at {rss:,.0f} MB resident (> {max_mb:,.0f} MB cap)"
                    if over
                    else f"timed out after {timeout:g} s"
                )
                return {**base, "error": why}
    wall = time.perf_counter() - t
    tagged = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if not tagged:
        tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
        return {**base, "error": f"exit {proc.returncode}: {tail}"}
    out = json.loads(tagged[-1][len(RESULT_TAG) :])
    out.update(base, process_seconds=wall)
    if "seconds" not in out and "error" not in out:
        out["seconds"] = wall  # the CLI: the whole process is the measurement
    return out


def fmt_row(r: dict, hortus_s: float | None, data_mb: float) -> str:
    """Format one result line of the printed table."""
    label = TOOLS[r["tool"]]
    if r.get("note"):
        label += f" [{r['note']}]"
    if "error" in r:
        dashes = " ".join(f"{'-':>{w}}" for w in (8, 7, 7, 8, 7, 9))
        return f"{label:<62} {r['rows']:>10,}  {dashes}  {r['error']}"
    read = f"{r['read_seconds']:.2f}" if "read_seconds" in r else "-"
    ratio = f"{r['seconds'] / hortus_s:.1f}x" if hortus_s else "-"
    drifted = f"{len(r['drifted'])}/30" if "drifted" in r else "-"
    return (
        f"{label:<62} {r['rows']:>10,}  {r['seconds']:>8.2f} {r['cpu_seconds']:>7.2f} {read:>7} "
        f"{r['peak_mb']:>8,.0f} "
        f"{r['peak_mb'] / data_mb:>6.2f}x {ratio:>9}  {drifted:>7} {r['load']:>5.2f}"
    )


def main() -> None:
    """Parse options; in the parent, make the data, run every measurement, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1000000,5000000", help="comma list of table sizes")
    ap.add_argument("--workdir", default="/tmp/bench-drift", help="Parquet files and reports")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peers", default=",".join(PEERS), help="comma list; '' for hortus only")
    ap.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds per peer child process (imports included)",
    )
    ap.add_argument(
        "--peer-max-mb",
        type=float,
        default=12_000.0,
        help="stop a peer whose resident memory exceeds this (the machine is shared)",
    )
    ap.add_argument(
        "--peer-max-seconds",
        type=float,
        default=300.0,
        help="run a peer at the larger sizes only if it took under this at the first size",
    )
    ap.add_argument("--fallback-rows", type=int, default=100_000)
    ap.add_argument("--python", default=sys.executable, help="interpreter of hortus + Evidently")
    ap.add_argument(
        "--deepchecks-python",
        default=str(REPO / ".bench-peers-deepchecks" / "bin" / "python"),
        help="interpreter of the Deepchecks environment",
    )
    ap.add_argument("--json", dest="json_out", help="also write every result to this file")
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--ref", help=argparse.SUPPRESS)
    ap.add_argument("--cur", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.rows = int(args.rows)
        run_as_child(args)
        return

    sizes = [int(r) for r in args.rows.split(",") if r.strip()]
    peers = [p for p in args.peers.split(",") if p.strip()]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        ap.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    workdir = Path(args.workdir)
    print(machine_line())
    print(f"hortus + Evidently interpreter: {args.python}")
    print(f"Deepchecks interpreter: {args.deepchecks_python}")
    print(f"planted drift in {', '.join(PLANTED)}; workdir {workdir}\n")

    def python_for(tool: str) -> str:
        return args.deepchecks_python if tool.startswith("deepchecks") else args.python

    results: list[dict] = []
    data_mb: dict[int, float] = {}

    def measure(rows: int, tools: list[str], note: str = "") -> None:
        data = workdir / f"rows-{rows}"
        made = run_child(args.python, "make-data", data, args, rows, 3600)
        if "error" in made:
            raise SystemExit(f"making the {rows:,}-row tables failed: {made['error']}")
        data_mb[rows] = made["bytes_in_memory"] / 1024**2
        how = "reused" if made["reused"] else f"made in {made['seconds_to_make']:.1f} s"
        print(
            f"data {rows:,} rows x 30 columns: two tables {data_mb[rows]:,.0f} MB in memory "
            f"(polars estimated_size), {made['bytes_parquet'] / 1024**2:,.0f} MB Parquet ({how})"
        )
        for tool in tools:
            peer = tool in PEERS
            r = run_child(
                python_for(tool),
                tool,
                data,
                args,
                rows,
                args.timeout if peer else 3600,
                args.peer_max_mb if peer else float("inf"),
            )
            if note:
                r["note"] = note
            results.append(r)
            shown = r.get("error") or f"{r['seconds']:.2f} s, peak {r['peak_mb']:,.0f} MB"
            print(f"  {TOOLS[tool]}: {shown}", flush=True)

    hortus_tools = ["hortus-cli", "hortus-files", "hortus-build-profile", "hortus-profile"]
    first_peer: dict[str, dict] = {}
    skipped: list[str] = []
    for i, rows in enumerate(sizes):
        run_peers = []
        for peer in peers:
            prev = first_peer.get(peer)
            if i == 0:
                run_peers.append(peer)
            elif prev is None or "error" in prev:
                skipped.append(f"{TOOLS[peer]} at {rows:,}: it did not run at {sizes[0]:,}")
            elif prev["seconds"] > args.peer_max_seconds:
                skipped.append(
                    f"{TOOLS[peer]} at {rows:,}: took {prev['seconds']:.0f} s at "
                    f"{sizes[0]:,} (> {args.peer_max_seconds:g} s)"
                )
            else:
                run_peers.append(peer)
        measure(rows, hortus_tools + run_peers)
        if i == 0:
            first_peer = {r["tool"]: r for r in results if r["tool"] in peers}
    failed = [
        p
        for p, r in first_peer.items()
        if "error" in r and r.get("status") != NOT_INSTALLED and "not installed" not in r["error"]
    ]
    if failed and args.fallback_rows < sizes[0]:
        print(f"\n{', '.join(failed)} failed at {sizes[0]:,} rows: measuring on a smaller pair")
        measure(
            args.fallback_rows,
            ["hortus-files", *failed],
            note=f"SMALLER TABLES: failed at {sizes[0]:,}",
        )

    print(f"\n{'tool':<62} {'rows':>10}  {'seconds':>8} {'cpu s':>7} {'read s':>7} ", end="")
    print(f"{'peak MB':>8} ", end="")
    print(f"{'x data':>7} {'x hortus':>9}  {'drifted':>7} {'load':>5}")
    for rows in sorted({r["rows"] for r in results}):
        base = [r for r in results if r["rows"] == rows and r["tool"] == "hortus-files"]
        hortus_s = base[0].get("seconds") if base else None
        for r in results:
            if r["rows"] == rows:
                print(fmt_row(r, hortus_s, data_mb[rows]))
    print(
        "seconds: in process from reading the Parquet files to the result (imports excluded),"
        " except the CLI row (the whole `hortus drift` process); cpu s: user + system CPU"
        " seconds of the same span, all threads (on an idle 2-core machine the wall time"
        " cannot be below half of it); read s: of which pandas"
        " reading the files; peak MB: VmHWM of the child process; x data: peak / in-memory"
        " size of the two tables; x hortus: seconds / hortus in process at the same size;"
        " load: 1-min load average when the run started"
    )
    for line in skipped:
        print(f"not run: {line}")
    for r in results:
        if r["tool"] in PEERS and "version" in r and r["rows"] == sizes[0]:
            print(f"{r['tool']} {r['version']}: methods {', '.join(r['methods'])}")
    print("drifted columns (planted: " + ", ".join(PLANTED) + "):")
    for r in results:
        if "drifted" in r and r["rows"] == sizes[0]:
            print(f"  {r['tool']:<20} {', '.join(r['drifted'])}")
    for rows in sizes:
        target = TARGET_SECONDS.get(rows)
        if target is None:
            continue
        for tool in ("hortus-files", "hortus-cli", "hortus-profile"):
            [r] = [r for r in results if r["rows"] == rows and r["tool"] == tool] or [{}]
            if "seconds" in r:
                verdict = "met" if r["seconds"] < target else "MISSED"
                print(
                    f"target {rows:,} rows < {target:g} s, {tool}: {r['seconds']:.2f} s "
                    f"({verdict});"
                    f" peak {r['peak_mb'] / data_mb[rows]:.2f}x the data (< 2x: "
                    f"{'met' if r['peak_mb'] < 2 * data_mb[rows] else 'MISSED'})"
                )
    ev = [r for r in results if r["tool"] == "evidently" and r["rows"] == sizes[0]]
    hf = [r for r in results if r["tool"] == "hortus-files" and r["rows"] == sizes[0]]
    if ev and hf and "seconds" in ev[0]:
        ratio = ev[0]["seconds"] / hf[0]["seconds"]
        verdict = "met" if ratio >= 50 else "MISSED"
        print(f"target >= 50x faster than Evidently at {sizes[0]:,}: {ratio:.1f}x ({verdict})")
    print(machine_line().replace("machine:", "at the end:"))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"data_mb": data_mb, "results": results}))


if __name__ == "__main__":
    main()
