"""One writer at a time (issue 18 item 4): leases with expiry and fencing, ops tables without.

Two writing stages at once: the second waits or exits 2 naming the holder, nothing
lands twice; a killed holder's lease is taken over after expiry; a writer whose
lease was taken over cannot commit (nothing written); processes appending to the
operations tables at once all land and the audit chain still verifies; a
promotion that lost a race says so and moves nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from conftest import USERS_HEADER, event, user_row, write_jsonl
from hortus.lakehouse import lease
from hortus.lakehouse.tables import Lakehouse
from hortus.models.registry import Registry
from test_registry import _register, acting_as

HORTUS = Path(sys.executable).with_name("hortus")
PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def _landing(data: Path, files: int = 3, per_file: int = 40) -> int:
    """Write a small landing (events over several days and a users file); return event rows."""
    for d in range(files):
        rows = [
            event(d * 1000 + i, ts=f"2025-03-0{d + 1}T08:00:00.000000Z", user_id="u000001")
            for i in range(per_file)
        ]
        write_jsonl(data / f"events/events-2025-03-0{d + 1}.jsonl.gz", rows)
    users = data / "users/users-2025-03-01.csv"
    users.parent.mkdir(parents=True, exist_ok=True)
    users.write_text("\n".join([USERS_HEADER, user_row(1), user_row(2)]) + "\n")
    return files * per_file


def _cli(root: Path, *args: str) -> subprocess.Popen:
    if not (root / "params.yaml").exists():
        shutil.copy(PARAMS, root / "params.yaml")
    return subprocess.Popen(
        [str(HORTUS), "--root", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append((p.returncode, stdout + stderr))
    return out


def _holder(root: Path, scope: str, ttl: float = 60.0, host: str | None = None) -> subprocess.Popen:
    """Start another process that takes a lease and sleeps (the test kills it).

    With `host`, the holder says it runs on another machine: its death cannot be
    seen from here, only the expiry frees its lease.
    """
    fake = f"socket.gethostname = lambda: {host!r}" if host else ""
    code = textwrap.dedent(
        f"""
        import socket, time
        {fake}
        from hortus.lakehouse import lease
        lease.acquire({str(root)!r}, {scope!r}, holder="other", stage="ingest", ttl={ttl})
        print("held", flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _frame(lh: Lakehouse, table: str, rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=lh.catalog.get(table).schema)


# ------------------------------------------------------------------ stages
def test_two_ingests_then_two_silvers_at_once_land_each_row_once(project):
    """Check two `hortus ingest` then two `hortus silver` at once: no file twice, no dup id.

    Without --wait the loser exits 2 naming the holder (or runs after it and finds
    nothing new); with --wait both silver runs succeed, one after the other.
    """
    rows = _landing(project.data)
    results = _finish([_cli(project.root, "ingest"), _cli(project.root, "ingest")])
    for code, out in results:
        assert code in (0, 2), out
        if code == 2:
            assert "bronze is being written by pipeline (pid" in out and "--wait" in out, out
    assert 0 in [code for code, _ in results]
    lh = Lakehouse.open(project.root, stage="test")
    events = lh.read("bronze.events")
    assert events.height == rows
    assert events.select("_source_file", "_line").is_duplicated().sum() == 0
    files = lh.read("bronze.landing_files")
    assert files.height == 4 and files["source_file"].n_unique() == 4

    results = _finish([_cli(project.root, "silver", "--wait", "60") for _ in range(2)])
    assert [code for code, _ in results] == [0, 0], results
    assert not any("rows lost" in out for _, out in results)
    events = lh.read("silver.events")
    assert events.height == rows and events["event_id"].n_unique() == rows


def test_a_held_lease_refuses_the_stage_then_wait_gets_it(project):
    """Check ingest exits 2 naming the holder; with --wait it runs once the holder ends."""
    _landing(project.data, files=1)
    other = _holder(project.lakehouse, "bronze")
    try:
        code, out = _finish([_cli(project.root, "ingest")])[0]
        assert code == 2, out
        assert f"bronze is being written by other (pid {other.pid}" in out
        assert "stage ingest" in out and "--wait SECONDS" in out and "Traceback" not in out
        waiting = _cli(project.root, "ingest", "--wait", "60")
        time.sleep(0.5)
    finally:
        other.kill()  # kill -9: not released, but its process is gone from this host
        other.wait()
    code, out = _finish([waiting])[0]
    assert code == 0, out
    store = lease.LocalStore(lease.lease_root(project.lakehouse))
    assert lease.LeaseRecord.from_bytes(store.get("bronze")[0]).token == 2  # taken over


def test_a_killed_holder_on_this_host_is_taken_over_at_once(project):
    """Check a lease whose holder process is gone from this host does not block."""
    other = _holder(project.lakehouse, "silver")
    os.kill(other.pid, signal.SIGKILL)
    other.wait()
    got = lease.acquire(project.lakehouse, "silver", holder="me", stage="silver", wait=0)
    assert got.token == 2
    got.release()


def test_a_killed_holder_elsewhere_is_taken_over_after_expiry(project):
    """Check a lease of a process killed on another host blocks until it expires."""
    other = _holder(project.lakehouse, "silver", ttl=1.5, host="elsewhere")
    os.kill(other.pid, signal.SIGKILL)
    other.wait()
    with pytest.raises(
        lease.LeaseHeld, match=f"silver is being written by other \\(pid {other.pid}"
    ):
        lease.acquire(project.lakehouse, "silver", holder="me", stage="silver", wait=0)
    got = lease.acquire(project.lakehouse, "silver", holder="me", stage="silver", wait=5)
    try:
        assert got.token == 2 and got.record.holder == "me"
    finally:
        got.release()
    again = lease.acquire(project.lakehouse, "silver", holder="me", stage="silver", wait=0)
    assert again.token == 3  # a released lease is free at once; tokens only grow
    again.release()


def test_an_unleased_write_into_a_held_scope_is_refused(project, lakehouse):
    """Check a notebook-style write into silver while another process holds it is refused."""
    other = _holder(project.lakehouse, "silver")
    try:
        with pytest.raises(lease.LeaseHeld, match="not committed to silver.events"):
            lakehouse.write("silver.events", _frame(lakehouse, "silver.events", []))
        assert not lakehouse.exists("silver.events")
        # an operations table takes no lease
        lakehouse.write("ops.events", _frame(lakehouse, "ops.events", []))
    finally:
        other.kill()
        other.wait()


def test_watch_waits_for_a_stage_holding_its_tables_without_counting_failures(project):
    """Check a watch batch beside a stage holding silver waits, then lands when it ends."""
    from hortus.monitoring.watch import watch

    rows = _landing(project.data, files=1)
    other = _holder(project.lakehouse, "silver", ttl=1.5, host="elsewhere")
    os.kill(other.pid, signal.SIGKILL)  # on "another host": its lease stays live until expiry
    other.wait()
    t0 = time.monotonic()
    results = watch(project, interval=0.2, max_batches=1, max_failures=1)
    assert time.monotonic() - t0 >= 1.0  # waited for the expiry; max_failures=1 not hit
    assert results[0].rows_landed == rows + 2 and results[0].reconciles


# ----------------------------------------------------------------- fencing
def test_a_commit_with_a_stale_token_fails_and_writes_nothing(project, lakehouse):
    """Check fencing: after a takeover, the old holder's commit raises LeaseLost, no version."""
    rows = [event(1) | {"_source_file": "f", "_line": 1}]
    frame = pl.DataFrame(rows).select(
        [pl.lit(None, t).alias(c) for c, t in lakehouse.catalog.get("bronze.events").schema.items()]
    )
    with lease.hold(project.lakehouse, ["bronze"], holder="old", stage="ingest", ttl=0.4) as held:
        lakehouse.write("bronze.events", frame)  # under our lease: committed
        version = lakehouse.version("bronze.events")
        from deltalake import DeltaTable

        last = DeltaTable(str(lakehouse.path("bronze.events"))).history(1)[0]
        assert last["hortus.lease"] == "bronze#1"  # the token the commit was made under
        held[0]._stop.set()  # the old holder stalls: no more renewals
        held[0]._thread.join()
        time.sleep(0.5)
        new = lease.acquire(project.lakehouse, "bronze", holder="new", stage="ingest", wait=0)
        with pytest.raises(lease.LeaseLost, match="taken over by new"):
            lakehouse.write("bronze.events", frame)
        with pytest.raises(lease.LeaseLost):
            lakehouse.delete_rows("bronze.events", "_source_file", ["f"], note="undo")
        assert lakehouse.version("bronze.events") == version  # nothing committed
    new.release()


def test_a_takeover_waits_for_a_commit_in_flight(project):
    """Check the check and the commit are one step: a takeover cannot land between them."""
    with lease.hold(project.lakehouse, ["gold.x"], holder="a", stage="kpis", ttl=0.3) as held:
        held[0]._stop.set()
        held[0]._thread.join()
        order: list[str] = []

        def take() -> None:
            time.sleep(0.4)  # expired by now, but the commit below still holds the lock
            got = lease.acquire(project.lakehouse, "gold.x", holder="b", stage="kpis", wait=0)
            order.append("takeover")
            got.release()

        with lease.fenced_commit(project.lakehouse, "gold.x", "gold.x"):
            thread = threading.Thread(target=take)
            thread.start()
            time.sleep(0.8)
            order.append("commit")
        thread.join()
        assert order == ["commit", "takeover"]


# ---------------------------------------------------------- ops: no lease
APPENDER = """
import sys
from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring.runlog import record_run
lh = Lakehouse.open(sys.argv[1], stage="appender")
for i in range(int(sys.argv[2])):
    with record_run(lh, f"appender{sys.argv[3]}"):
        lh.authorize("read", "silver.events", detail=f"append {sys.argv[3]}.{i}")
lh.close()
"""


def test_concurrent_appends_to_ops_tables_all_land_and_the_chain_verifies(project):
    """Check 3 processes appending runs and audit records at once: all land, chain intact."""
    from hortus.governance.audit import AuditLog, default_path

    n, procs = 4, 3
    # the same new lakehouse for all: the first commits race to create the tables
    running = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(project.root), str(n), str(k)])
        for k in range(procs)
    ]
    assert [p.wait(timeout=120) for p in running] == [0] * procs
    lh = Lakehouse.open(project.root, stage="test")
    runs = lh.read("ops.pipeline_runs")
    assert runs.height == n * procs and runs["run_id"].n_unique() == n * procs
    log = AuditLog.open(default_path(project), secrets_dir=project.secrets)
    details = log.show()["detail"].to_list()
    for k in range(procs):
        for i in range(n):
            assert any(f"append {k}.{i}" in d for d in details)
    result = log.verify()
    assert result.ok, str(result)


# ------------------------------------------------------------------ aliases
@pytest.fixture
def registry(lakehouse, monkeypatch) -> Registry:
    """Return a registry of the model `recommender` acting as mia (as in test_registry)."""
    monkeypatch.setenv("HORTUS_USER", "mia")
    return acting_as(Registry(lakehouse, "recommender"), "mia")


def test_a_promotion_that_lost_a_race_says_so_and_moves_nothing(registry, tmp_path):
    """Check compare-and-set: v2 -> staging loses to a v3 promotion made meanwhile."""
    from hortus.models._aliases import AliasMoved

    for i in (1, 2):
        _register(registry, tmp_path, i)
    rival = acting_as(registry, "mia")
    decide = registry._decide

    def race(action):  # the rival promotes while this promotion is deciding
        rival.promote(1, alias="staging", reason="rival")
        return decide(action)

    registry._decide = race
    with pytest.raises(
        AliasMoved, match=r"staging of model recommender moved from unset to v1 by mia"
    ) as exc:
        registry.promote(2, alias="staging")
    assert "nothing changed (staging was not moved to v2)" in str(exc.value)
    history = registry.history("staging")
    assert history["version"].to_list() == [1]  # v2 never recorded
    assert registry.aliases()["staging"] == 1
