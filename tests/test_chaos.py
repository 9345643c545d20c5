"""Fault suite (issue 18, "Must show"): the probe's crashes, races and hostile files, repeated.

Run with `make test-chaos` (marker `chaos`, left out of the default run).  A small
simulated shop (every fault of the simulator, so quarantine gets rows) is built once
cleanly, through the CLI in subprocesses, as the reference.  Every case then builds
the same landing in a fresh project root, with a fault, and checks:

- landed = accepted + quarantined for every table (`silver.reconcile`);
- no primary key twice in silver, no (file, sha256) twice in the file log, no bronze
  row twice (its key: `_source_file`, `_line`);
- the content hash of every bronze, silver and quarantine table (`frame_hash`, the hash
  `pin_tables` writes to reports/tables/<stage>.json) equal to the clean build's, over
  every column but the run bookkeeping (`BOOKKEEPING`: the batch id hashes the list of
  files a run took, so files split over two runs by a crash carry another batch id, and
  the file log notes a file recorded by a later run).  Where the landing was taken in
  one run as in the clean build (silver kills, two writers), every column: the full
  hashes and the pinned reports themselves are equal;
- the peak RSS of every ingest and silver process that runs to its end (not the killed
  ones, nor `monitor watch`, which runs both in one process, nor the two writers started
  together) under the bound its module states, over the same stage's peak on an empty
  landing (`baselines`): ingest's (hortus.lakehouse.landing, `_bound_mb`: 2x the
  largest JSON-lines file the caps let in + 6x the CSV bytes + 160 MB) and silver's
  (hortus.lakehouse.silver, `memory_bound_mb`: 8x the bytes + 1 KB x the rows of the
  largest chunk the run takes + 160 MB).  The margins are the bounds' own (the
  benchmark measured 0.3-0.7 of them, benchmarks/README.md); the closing table prints
  the largest share of its bound each case reached.

Kill points.  The code has no fault-injection hook, so each stage runs as
`python -c WRAP hortus-args...` (`WRAP` patches one function, then calls
`hortus.cli.core.main`, exactly what .venv/bin/hortus does) and the patched function
sends itself SIGKILL (kill -9: no cleanup, no finally) at its Nth call:

- ingest `mid_stream`: at the 3rd chunk of the stream of events-2025-03-04 (chunks made
  16 KiB, `landing.CHUNK_BYTES`, 2 MiB otherwise, so that the kill comes inside the
  file: 115 KB), files read ahead in threads; the read-ahead submits that file only
  after the first bronze flush (day 1) was committed; the rerun reads with 2 MiB chunks;
- ingest `after_bronze`: right after the 2nd bronze.events commit (flush_rows is small),
  before the file log;
- ingest `after_file_log`: right after the bronze.landing_files commit, before the
  reports and the pinned hashes;
- silver `mid_table`: inside the 3rd `silver.process` call (a table's later chunks not
  processed, earlier chunks committed);
- silver `silver_then_quarantine`: just before the 2nd quarantine.rows commit: that
  chunk's accepted rows are in silver, its quarantined rows not;
- silver `between_chunks`: right after the 2nd quarantine.rows commit (chunk_rows is
  small, so the table's next chunk is not processed);
- watch `mid_batch_bronze`: `monitor watch`, right after its bronze.events commit
  (before the file log and silver);
- watch `mid_batch_silver`: `monitor watch`, just before its 2nd quarantine.rows commit.

Two writers: two ingests, two silvers, and a watcher beside an ingest (the README's
scenario) start together with --wait; both exit 0 and the build equals the clean one
(leases, hortus.lakehouse.lease); with --wait 0 the loser exits 2 naming the holder;
an ingest killed with -9 while holding the lease, a second one waiting: the second
takes the expired lease over (its token incremented) and lands the rest.
Hostile files (the probe's gzip bombs of zeros and of event lines, 20 million blank
lines, a 20 MB line, a CSV with an extra field and an unclosed quote, a binary "CSV")
beside the normal landing: refused or quarantined, the rest lands as in the clean build.

After the kill the stage (or the watcher, for one batch) runs again normally and
ingest/silver finish the build.  Leases expire after HORTUS_LEASE_TTL=3 s here
(a killed holder does not renew) and the reruns wait for them (--wait).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import polars as pl
import pytest

from conftest import TEST_AUDIT_KEY, TEST_KEY, USERS_HEADER, with_policy
from hortus.config import Paths
from hortus.lakehouse import silver
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.ingest import FILES_TABLE
from hortus.lakehouse.silver import QUARANTINE
from hortus.lakehouse.tables import Lakehouse, frame_hash

pytestmark = pytest.mark.chaos

SIM = {"seed": 5, "days": 4, "users": 150, "plants": 30, "fault_rate": 0.01}
CHUNK_ROWS = 400
PARAMS = f"ingest:\n  flush_rows: 400\nsilver:\n  chunk_rows: {CHUNK_ROWS}\n"
MB = 1_000_000
RESULTS: list[tuple[str, str, str]] = []  # (case, outcome, detail) for the closing table

WRAP = r"""
import json, os, resource, signal, sys
def _peak():
    path = os.environ.get("CHAOS_PEAK")
    if path:
        with open(path, "w") as f:
            f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))  # KiB
spec = json.loads(os.environ.get("CHAOS_KILL") or "null")
if spec:
    import importlib
    for target, value in spec.get("set", {}).items():
        mod_name, attr = target.split(":")
        setattr(importlib.import_module(mod_name), attr, value)
    mod_name, attr = spec["target"].split(":")
    owner = importlib.import_module(mod_name)
    *path, name = attr.split(".")
    for p in path:
        owner = getattr(owner, p)
    real = getattr(owner, name)
    calls = [0]
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    if spec.get("generator"):
        def patched(*a, **k):
            hit = spec.get("file") is None or spec["file"] in str(a[1])  # (path, rel, limits)
            for chunk in real(*a, **k):
                calls[0] += hit
                if hit and calls[0] == spec["nth"]:
                    die()
                yield chunk
    else:
        def patched(*a, **k):
            # a method's first argument is self: the table name comes after it
            hit = spec.get("table") is None or spec["table"] in a[:2]
            if hit:
                calls[0] += 1
            if hit and calls[0] == spec["nth"] and spec["when"] == "before":
                die()
            out = real(*a, **k)
            if hit and calls[0] == spec["nth"] and spec["when"] == "after":
                die()
            return out
    setattr(owner, name, patched)
from hortus.cli.core import main
sys.argv = ["hortus", *sys.argv[1:]]
try:
    code = main()
finally:
    _peak()
sys.exit(code)
"""

KILLS = {
    "ingest/mid_stream": (
        "ingest", {"target": "hortus.lakehouse.landing:stream_file", "generator": True, "nth": 3,
                   "file": "events-2025-03-04",
                   "set": {"hortus.lakehouse.landing:CHUNK_BYTES": 16384}}),
    "ingest/after_bronze": (
        "ingest", {"target": "hortus.lakehouse.tables:Lakehouse.write", "table": "bronze.events",
                   "nth": 2, "when": "after"}),
    "ingest/after_file_log": (
        "ingest", {"target": "hortus.lakehouse.tables:Lakehouse.write", "table": FILES_TABLE,
                   "nth": 1, "when": "after"}),
    "silver/mid_table": (
        "silver", {"target": "hortus.lakehouse.silver:process", "nth": 3, "when": "before"}),
    "silver/silver_then_quarantine": (
        "silver", {"target": "hortus.lakehouse.tables:Lakehouse.write",
                   "table": "quarantine.rows", "nth": 2, "when": "before"}),
    "silver/between_chunks": (
        "silver", {"target": "hortus.lakehouse.tables:Lakehouse.write",
                   "table": "quarantine.rows", "nth": 2, "when": "after"}),
    "watch/mid_batch_bronze": (
        "watch", {"target": "hortus.lakehouse.tables:Lakehouse.write", "table": "bronze.events",
                  "nth": 1, "when": "after"}),
    "watch/mid_batch_silver": (
        "watch", {"target": "hortus.lakehouse.tables:Lakehouse.write",
                  "table": "quarantine.rows", "nth": 2, "when": "before"}),
}  # fmt: skip


#: what each kill leaves behind (checked, so a kill point that moved is noticed)
EXPECT_LEFT = {
    "ingest/mid_stream": lambda x: x["bronze.events"] > 0 and x["logged"] == 0,
    "ingest/after_bronze": lambda x: x["bronze.events"] > 0 and x["logged"] == 0,
    "ingest/after_file_log": lambda x: x["logged"] > 0 and not x["pinned"],
    "silver/mid_table": lambda x: 0 < x["silver+quarantine"] < x["bronze"],
    "silver/silver_then_quarantine": lambda x: x["partial_batches"] > 0,
    "silver/between_chunks": lambda x: 0 < x["silver+quarantine"] < x["bronze"],
    "watch/mid_batch_bronze": lambda x: x["bronze.events"] > 0 and x["silver+quarantine"] == 0,
    "watch/mid_batch_silver": lambda x: x["partial_batches"] > 0,
}


# ------------------------------------------------------------------ helpers
def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HORTUS_", "CHAOS_"))}
    env |= {"HORTUS_USER": "pipeline", "HORTUS_PII_KEY": TEST_KEY, "OMP_NUM_THREADS": "1"}
    env |= {"HORTUS_AUDIT_KEY": TEST_AUDIT_KEY, "HORTUS_LEASE_TTL": "3", "DVC_NO_ANALYTICS": "1"}
    return env | extra


def _argv(root: Path, stage: str, *more: str) -> list[str]:
    if stage == "watch":
        return ["--root", str(root), "monitor", "watch", "--interval", "0.2",
                "--max-batches", "1", *more]  # fmt: skip
    return ["--root", str(root), stage, "--wait", "60", *more]


#: each stage's peak RSS (MB) on an empty landing, measured once (`baselines`)
BASELINE: dict[str, float] = {}
#: per test: the largest share of its bound a measured ingest or silver process reached
SHARE: dict[str, float] = {}


def hortus(root: Path, stage: str, *more: str, kill: dict | None = None):
    """Run one `hortus` stage in a child (through WRAP); with `kill`, expect it to die by -9.

    An ingest or silver run to its end is measured: its peak RSS over the stage's
    baseline is asserted under the bound stated for it (set on the result as `extra`
    and `bound`, MB).
    """
    measured = kill is None and stage in ("ingest", "silver") and stage in BASELINE
    if measured and stage == "silver":  # the chunks this run will take, read before it
        bound = silver.memory_bound_mb(silver.chunk_sizes(_lh(root), CHUNK_ROWS))
    elif measured:
        bound = _bound_mb(root / "data")
    peak = root.parent / f".peak-{root.name}-{stage}.kb"
    env = _env(CHAOS_KILL=json.dumps(kill) if kill else "", CHAOS_PEAK=str(peak))
    done = subprocess.run([sys.executable, "-c", WRAP, *_argv(root, stage, *more)], cwd=root,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    if kill:
        assert done.returncode == -9, f"{stage} was not killed at {kill}:\n{done.stderr[-3000:]}"
    else:
        assert done.returncode == 0, f"{stage} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    if measured:
        done.extra = int(peak.read_text()) / 1024 - BASELINE[stage]
        done.bound = bound
        assert done.extra <= bound, (
            f"{stage} peaked {done.extra:.0f} MB over its {BASELINE[stage]:.0f} MB baseline, "
            f"above its stated bound {bound:.0f} MB"
        )
        case = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].split("::")[-1]
        SHARE[case] = max(SHARE.get(case, 0.0), done.extra / bound)
    return done


def new_root(tmp: Path, landing: Path) -> Path:
    """Return a fresh project root whose data/ is a copy of `landing`."""
    shutil.copytree(landing, tmp / "data")
    with_policy(tmp)
    (tmp / "params.yaml").write_text(PARAMS)
    return tmp


def _lh(root: Path) -> Lakehouse:
    return Lakehouse(paths=Paths.at(root), catalog=Catalog.load(), stage="test", user="pipeline")


#: which run landed a row, and the file log's note that a later run recorded a file: the
#: only columns a crash (or any split of the landing into several runs) may change
BOOKKEEPING = ("_batch_id", "batch_id", "warnings")


def state(root: Path, *, data_only: bool = False) -> dict[str, str]:
    """Return the content hash of every bronze, silver and quarantine table of a root.

    With `data_only`, of every column but the run bookkeeping (`BOOKKEEPING`).
    """
    lh = _lh(root)
    names = [n for layer in ("bronze", "silver", "quarantine") for n in lh.catalog.names(layer)]
    if not data_only:
        return {n: lh.content_hash(n) for n in names if lh.exists(n)}
    return {
        n: frame_hash(lh.read(n).drop(BOOKKEEPING, strict=False)) for n in names if lh.exists(n)
    }


def check_books(root: Path) -> list[dict]:
    """Assert landed = accepted + quarantined, no duplicate keys, files or bronze rows."""
    lh = _lh(root)
    checks = silver.reconcile(lh)
    assert checks and all(c["reconciles"] for c in checks), checks
    for contract in lh.catalog.landed():
        if lh.exists(contract.full_name):
            keys = lh.read(contract.full_name).select(contract.primary_key)
            assert keys.is_duplicated().sum() == 0, f"duplicate keys in {contract.full_name}"
        bronze = "bronze." + contract.name
        if lh.exists(bronze):
            rows = lh.read(bronze).select("_source_file", "_line")
            assert rows.is_duplicated().sum() == 0, f"a bronze row landed twice in {bronze}"
    log = lh.read(FILES_TABLE).select("source_file", "file_sha256")
    assert log.is_duplicated().sum() == 0, "a file recorded twice in bronze.landing_files"
    return checks


def left_behind(root: Path) -> dict[str, int]:
    """Return what a killed run left: bronze rows, files logged, silver + quarantine rows."""
    lh = _lh(root)

    def rows(name: str) -> int:
        return lh.scan(name).select(pl.len()).collect().item() if lh.exists(name) else 0

    contracts = list(lh.catalog.landed())
    partial = sum(silver.partial_batches(lh, c).height for c in contracts)
    return {
        "bronze": sum(rows("bronze." + c.name) for c in contracts),
        "bronze.events": rows("bronze.events"),
        "logged": rows(FILES_TABLE),
        "silver+quarantine": sum(rows(c.full_name) for c in contracts) + rows(QUARANTINE),
        "partial_batches": partial,
        "pinned": int((root / "reports/tables/ingest.json").exists()),
    }


def pinned(root: Path) -> dict[str, dict]:
    """Return reports/tables/{ingest,silver}.json of a root (what the stages pinned)."""
    out = {}
    for stage in ("ingest", "silver"):
        path = root / "reports" / "tables" / f"{stage}.json"
        if path.exists():
            out[stage] = json.loads(path.read_text())
    return out


def assert_same(got: dict[str, str], want: dict[str, str], tables: list[str] | None = None):
    """Assert equal content hashes (of `tables`, default all), naming the tables that differ."""
    names = tables or sorted(set(got) | set(want))
    differ = [n for n in names if got.get(n) != want.get(n)]
    assert not differ, {n: (got.get(n), want.get(n)) for n in differ}


# ------------------------------------------------------------------ the clean build
@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    """Simulate the small shop's landing export once (every fault of the simulator)."""
    from hortus.domains.plantshop.simulate import FAULTS, SimConfig, simulate

    folder = tmp_path_factory.mktemp("landing") / "data"
    simulate(SimConfig(**SIM, faults=FAULTS), folder)
    return folder


@pytest.fixture(scope="module")
def baselines(tmp_path_factory) -> dict[str, float]:
    """Measure each stage's peak RSS on an empty landing once (the fixed cost: imports...)."""
    root = tmp_path_factory.mktemp("baseline")
    (root / "data").mkdir()
    with_policy(root)
    (root / "params.yaml").write_text(PARAMS)
    for stage in ("ingest", "silver"):
        hortus(root, stage)
        BASELINE[stage] = int((root.parent / f".peak-{root.name}-{stage}.kb").read_text()) / 1024
    return BASELINE


@pytest.fixture(scope="module")
def clean(landing, baselines, tmp_path_factory) -> dict:
    """Build the landing cleanly (hortus ingest, hortus silver); return hashes and reports."""
    root = new_root(tmp_path_factory.mktemp("clean"), landing)
    t0 = time.perf_counter()
    hortus(root, "ingest")
    hortus(root, "silver")
    checks = check_books(root)
    quarantined = sum(c["quarantined"] for c in checks)
    assert quarantined > 0  # the kill points between silver and quarantine commits exist
    lh = _lh(root)
    assert lh.history("bronze.events").height > 2  # flush_rows small: several commits
    RESULTS.append(("clean build", "reference",
                    f"{sum(c['landed'] for c in checks)} landed, {quarantined} quarantined, "
                    f"{time.perf_counter() - t0:.0f} s"))  # fmt: skip
    return {"root": root, "state": state(root), "data": state(root, data_only=True),
            "pinned": pinned(root)}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _table(request):
    """Print the table of cases at the end of the module (past pytest's output capture)."""
    yield
    width = max((len(c) for c, _, _ in RESULTS), default=4)
    lines = [f"{'case':<{width}}  {'outcome':<13}  detail"]
    lines += [f"{c:<{width}}  {o:<13}  {d}" for c, o, d in RESULTS]
    lines += ["", "largest share of the stated memory bound reached (ingest, silver) per test: "
              + ", ".join(f"{k} {v:.2f}" for k, v in SHARE.items())]  # fmt: skip
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n\nchaos cases\n" + "\n".join(lines))


# ------------------------------------------------------------------ kill -9
@pytest.mark.parametrize("case", list(KILLS))
def test_kill_9_then_rerun_converges_to_the_clean_build(case, landing, clean, tmp_path):
    """Kill the stage with SIGKILL at one point; rerun; books balance, hashes equal clean."""
    stage, kill = KILLS[case]
    root = new_root(tmp_path, landing)
    t0 = time.perf_counter()
    if stage == "silver":
        hortus(root, "ingest")
    hortus(root, stage, kill=kill)
    left = left_behind(root)
    assert EXPECT_LEFT[case](left), left  # the kill came where the case says
    if stage == "watch":
        hortus(root, "watch")  # a fresh watcher: its first batch catches up
        hortus(root, "ingest")  # nothing new: pins the bronze hashes
    else:
        hortus(root, stage)
        if stage == "ingest":
            hortus(root, "ingest")  # a second run lands nothing more
    hortus(root, "silver")
    checks = check_books(root)
    assert_same(state(root, data_only=True), clean["data"])
    full = state(root)
    if stage == "silver":  # bronze as clean: silver's batch ids too, so every hash is equal
        assert_same(full, clean["state"])
        assert pinned(root) == clean["pinned"]
    same = sorted(n for n in full if full[n] == clean["state"].get(n))
    RESULTS.append((f"kill -9 {case}", "converged",
                    f"left {left['bronze']} bronze/{left['logged']} logged/"
                    f"{left['silver+quarantine']} silver+q/{left['partial_batches']} partial; "
                    f"{sum(c['landed'] for c in checks)} landed, data hashes = clean; full hashes "
                    f"= clean for {len(same)}/{len(full)} tables"
                    + (" (the others differ in batch ids only)" if len(same) < len(full) else "")
                    + f", {time.perf_counter() - t0:.0f} s"))  # fmt: skip


# ------------------------------------------------------------------ two writers at once
def _together(root: Path, *runs: list[str]) -> list[subprocess.Popen]:
    procs = [
        subprocess.Popen([sys.executable, "-c", WRAP, *_argv(root, *run)], cwd=root, env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for run in runs
    ]  # fmt: skip
    for p in procs:
        p.wait(timeout=600)
    return procs


@pytest.mark.parametrize(
    "pair",
    [("ingest", "ingest"), ("silver", "silver"), ("watch", "ingest")],
    ids=["two_ingests", "two_silvers", "watch_beside_ingest"],
)
def test_two_writers_at_once_land_each_row_once(pair, landing, clean, tmp_path):
    """Start two writers together (--wait): both finish, no row twice, hashes equal clean."""
    root = new_root(tmp_path, landing)
    if pair[0] == "silver":
        hortus(root, "ingest")
    procs = _together(root, [pair[0]], [pair[1]])
    for p in procs:
        assert p.returncode == 0, p.stdout.read() + p.stderr.read()
    hortus(root, "ingest")  # nothing new either way: pins bronze
    hortus(root, "silver")
    check_books(root)
    assert_same(state(root), clean["state"])
    assert pinned(root) == clean["pinned"]
    RESULTS.append((f"two writers {'+'.join(pair)}", "one at a time",
                    "both exit 0, each row once, hashes = clean"))  # fmt: skip


def test_a_second_writer_without_wait_exits_2_naming_the_holder(landing, clean, tmp_path):
    """Two ingests with --wait 0: the loser exits 2 naming the holder, the winner lands all."""
    root = new_root(tmp_path, landing)
    procs = _together(root, ["ingest", "--wait", "0"], ["ingest", "--wait", "0"])
    codes = sorted(p.returncode for p in procs)
    outs = [p.stdout.read() + p.stderr.read() for p in procs]
    if codes == [0, 2]:
        loser = outs[[p.returncode for p in procs].index(2)]
        assert "pipeline" in loser and "Traceback" not in loser, loser
    else:  # the first finished before the second started: both fine, one landed nothing
        assert codes == [0, 0], outs
    hortus(root, "silver")
    check_books(root)
    assert_same(state(root), clean["state"])
    RESULTS.append(("two writers ingest --wait 0", "refused" if codes == [0, 2] else "serial",
                    f"exit codes {codes}; hashes = clean"))  # fmt: skip


def test_a_writer_killed_while_another_waits_is_taken_over(landing, clean, tmp_path):
    """kill -9 an ingest holding the lease while a second one waits: it takes over, lands all."""
    root = new_root(tmp_path, landing)
    record = Paths.at(root).lakehouse / "_leases" / "bronze.json"
    kill = json.dumps(KILLS["ingest/after_bronze"][1])
    argv = [sys.executable, "-c", WRAP, *_argv(root, "ingest")]
    pipe = subprocess.PIPE
    first = subprocess.Popen(argv, cwd=root, env=_env(CHAOS_KILL=kill), stdout=pipe, stderr=pipe)
    deadline = time.monotonic() + 120
    while not record.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    held = json.loads(record.read_text())
    assert held["pid"] == first.pid, held  # the second starts while the first holds the lease
    second = subprocess.run(argv, cwd=root, env=_env(), capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    first.wait(timeout=600)
    assert first.returncode == -9, first.stderr.read()
    assert second.returncode == 0, second.stdout + second.stderr
    taken = json.loads(record.read_text())
    assert taken["pid"] != first.pid and taken["token"] > held["token"], (held, taken)
    hortus(root, "silver")
    check_books(root)
    assert_same(state(root, data_only=True), clean["data"])
    RESULTS.append(("kill -9 holder, 2nd waits", "taken over",
                    f"token {held['token']} -> {taken['token']}; the waiting ingest landed the "
                    "rest, data hashes = clean"))  # fmt: skip


# ------------------------------------------------------------------ hostile files
def _gzip_repeat(path: Path, block: bytes, total: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    with open(path, "wb") as f:
        for _ in range(total // len(block)):
            f.write(z.compress(block))
        f.write(z.flush())


def _hostile(data: Path) -> dict[str, str]:
    """Write the probe's hostile files beside the normal ones; return {file: expected rule}."""
    with gzip.open(data / "events/events-2025-03-01.jsonl.gz") as f:
        first = json.loads(f.readline())
    line = (json.dumps(first) + "\n").encode()
    _gzip_repeat(data / "events/events-2025-03-09.jsonl.gz", bytes(MB), 1000 * MB)
    _gzip_repeat(data / "events/events-2025-03-10.jsonl.gz", line * 4000, 1000 * MB)
    blank = data / "events/events-2025-03-11.jsonl.gz"
    blank.write_bytes(gzip.compress(b"\n" * 20_000_000, compresslevel=9, mtime=0))
    long = data / "events/events-2025-03-12.jsonl.gz"
    long.write_bytes(gzip.compress(json.dumps(first | {"order_id": "o" * 20 * MB}).encode()))
    existing = (data / "users/users-2025-03-01.csv").read_text().splitlines()[1:3]
    (data / "users/users-2025-03-09.csv").write_text(
        USERS_HEADER + "\n" + existing[0] + ",one field too many\n" + existing[1] + "\n"
        + existing[1].replace(",", ',"', 1) + "\n"  # an unclosed quote swallows the rest
    )  # fmt: skip
    (data / "users/users-2025-03-10.csv").write_bytes(b"\x00\xff\xfe" * 1000)  # not a CSV
    return {
        "events/events-2025-03-09.jsonl.gz": "line_too_long",  # 1 GB of zeros, one "line"
        "events/events-2025-03-10.jsonl.gz": "too_large",  # 1 GB of event lines
        "events/events-2025-03-11.jsonl.gz": "too_large",  # 20 million blank lines
        "events/events-2025-03-12.jsonl.gz": "line_too_long",  # a 20 MB order_id
        "users/users-2025-03-10.csv": "",  # refused: whatever the rule, recorded
    }


def _bound_mb(data: Path) -> float:
    """The bound stated in hortus.lakehouse.landing for a landing, in MB over the baseline.

    2 x the bytes the caps let the largest JSON-lines file be read (its decompressed
    size, at most min(max_file_mb, max_ratio x its compressed size, line cap for a
    file of one line)) + 6 x the CSV bytes (parsed whole) + 160 MB.
    """
    from hortus.lakehouse.landing import RATIO_FLOOR, IngestLimits

    limits = IngestLimits()
    held = 0
    for p in data.rglob("*.jsonl*"):
        cap = limits.max_file_bytes
        if p.name.endswith(".gz"):
            cap = min(cap, max(RATIO_FLOOR, int(limits.max_ratio * p.stat().st_size)))
        held = max(held, min(cap, p.stat().st_size if not p.name.endswith(".gz") else cap))
    csv = sum(p.stat().st_size for p in data.rglob("*.csv"))
    return (2 * held + 6 * csv) / MB + 160


def test_hostile_files_are_refused_the_rest_lands_within_the_memory_bound(landing, clean,
                                                                         tmp_path):  # fmt: skip
    """Gzip bombs, a blank flood, a huge line, malformed CSVs beside normal files."""
    root = new_root(tmp_path, landing)
    expected = _hostile(root / "data")
    t0 = time.perf_counter()
    ingested = hortus(root, "ingest")  # peak asserted under ingest's bound
    seconds = time.perf_counter() - t0
    report = json.loads((root / "reports/ingest.json").read_text())
    refused = {r["file"]: r["reason"] for r in report["refused"]}
    for name, rule in expected.items():
        assert name in refused, (name, refused)
        assert refused[name].startswith(rule), (name, refused[name])
    silvered = hortus(root, "silver")  # peak asserted under silver's bound
    checks = check_books(root)
    lh = _lh(root)
    log = lh.read(FILES_TABLE)
    for name in expected:  # recorded once, with its reason
        assert log.filter(pl.col("source_file") == name)["status"].to_list() == ["refused"]
    q = lh.read("quarantine.rows").filter(pl.col("source_file") == "users/users-2025-03-09.csv")
    assert q.height == 3, q  # the extra field, the duplicate, the unclosed quote: quarantined
    # the batch id hashes the batch's file list, which holds the hostile files here
    got, want = state(root, data_only=True), clean["data"]
    normal = [n for n in want if not n.startswith(("quarantine.", "bronze."))]
    assert_same(got, want, normal + ["bronze.events", "bronze.reviews", "bronze.plants"])
    RESULTS.append(("hostile files", "refused",
                    f"{len(expected)} refused, 3 CSV rows quarantined, silver = clean, "
                    f"reconciles ({len(checks)} tables); ingest {seconds:.0f} s, "
                    f"{_memory(ingested)}, silver {_memory(silvered)}"))  # fmt: skip


def _memory(done) -> str:
    return f"{done.extra:.0f} MB over baseline (bound {done.bound:.0f} MB)"


def _past_ingest(data: Path) -> dict[str, str]:
    """Write files under every ingest cap that silver must quarantine; return {file: rule}.

    The largest events day landed again under a later date (every row a duplicate, in
    a later chunk than its first copy), 200,000 lines that are not JSON, and 20 events
    whose `order_id` is 0.9 MB (under the 1 MiB line cap, over its max_length).
    """
    rng = random.Random(3)
    largest = max((data / "events").glob("*.jsonl.gz"), key=lambda p: p.stat().st_size)
    shutil.copy(largest, data / "events/events-2025-03-20.jsonl.gz")
    with gzip.open(largest) as f:
        first = json.loads(f.readline())
    junk = b"\n".join(rng.randbytes(20).hex().encode() for _ in range(200_000))
    (data / "events/events-2025-03-21.jsonl.gz").write_bytes(gzip.compress(junk, mtime=0))
    wide = "\n".join(json.dumps(first | {"order_id": rng.randbytes(450_000).hex()})
                     for _ in range(20))  # fmt: skip
    (data / "events/events-2025-03-22.jsonl.gz").write_bytes(gzip.compress(wide.encode(), mtime=0))
    return {
        "events/events-2025-03-20.jsonl.gz": "duplicate",
        "events/events-2025-03-21.jsonl.gz": "json",
        "events/events-2025-03-22.jsonl.gz": "max_length",
    }


def test_files_past_ingest_are_quarantined_within_silvers_memory_bound(landing, clean, tmp_path):
    """A day landed twice, non-JSON lines, 0.9 MB values: quarantined; silver = clean."""
    root = new_root(tmp_path, landing)
    expected = _past_ingest(root / "data")
    ingested = hortus(root, "ingest")
    refused = {r["file"] for r in json.loads((root / "reports/ingest.json").read_text())["refused"]}
    assert not refused & set(expected), refused  # under every cap: they land
    silvered = hortus(root, "silver")  # the junk file is one chunk of 200,000 rows
    checks = check_books(root)
    q = _lh(root).read("quarantine.rows")
    for name, rule in expected.items():
        rules = q.filter(pl.col("source_file") == name)["rule"].unique().to_list()
        assert rule in rules, (name, rules)
    junk = q.filter(pl.col("source_file") == "events/events-2025-03-21.jsonl.gz")
    assert junk.height == 200_000 and junk["raw"].str.len_bytes().min() == 40  # text kept
    got, want = state(root, data_only=True), clean["data"]
    assert_same(got, want, [n for n in want if n.startswith("silver.")])
    RESULTS.append(("files past ingest", "quarantined",
                    f"{sum(c['quarantined'] for c in checks)} quarantined, silver = clean; "
                    f"ingest {_memory(ingested)}, silver {_memory(silvered)}"))  # fmt: skip
