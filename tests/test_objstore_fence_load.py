"""A load test of the object-storage fence (issue 16 item 2, issue 18 item 4).

Several processes (not threads: separate "machines", each with its own project folder and
local locks) commit to one leased table and move one alias at once, against the real S3
server (moto on 127.0.0.1, `s3server`).  Two of them stall, once each, while holding the
lease (the heartbeat stops) until another writer has taken the lease over, then try to
commit: each must fail with LeaseLost and write nothing.  Leases expire on their own too when a
heartbeat is late on the loaded machine: every such write must fail the same way.

Each process keeps a journal of what it was told (committed at version v under token t,
fenced, alias moved from a to b, alias move refused); the test then reconciles the table
and the alias log against the journals: no lost commit, no duplicate, no row of a fenced
write, tokens never going back along the table's versions, every alias move chained on
the one before it and none lost.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import with_policy
from hortus.lakehouse.tables import Lakehouse

pytest_plugins = ("s3server",)  # the S3 server fixtures: s3_server, s3_lake

TABLE = "silver.users"
SCOPE = "silver"
MODEL = "loadmodel"

WORKER = r"""
import json, subprocess, sys, threading, time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from hortus.lakehouse import lease
from hortus.lakehouse.tables import Lakehouse
from hortus.models._aliases import AliasMoved
from hortus.models.registry import Registry

RESCUER = (
    "import sys; from hortus.lakehouse import lease; "
    "lease.acquire(sys.argv[1], 'silver', holder='rescuer', stage='load', wait=60).release()"
)
root, lake, who, index, rounds, per, stall, journal, ttl = sys.argv[1:]
index, rounds, per, stall, ttl = int(index), int(rounds), int(per), int(stall), float(ttl)
lh = Lakehouse.open(Path(root), lakehouse=lake, stage="load", user="pipeline")
schema = lh.catalog.get("silver.users").schema
out = open(journal, "a")
journal_lock = threading.Lock()


def log(**kw):
    with journal_lock:
        out.write(json.dumps(kw) + "\n")
        out.flush()


def frame(ids):
    n = len(ids)
    cols = {"user_id": ids, "name": [who] * n, "email": [f"tok_{i}" for i in ids],
            "region": ["DACH"] * n, "country": ["DE"] * n,
            "signup_at": [datetime(2025, 3, 1, tzinfo=UTC)] * n}
    return pl.DataFrame({c: cols.get(c, [None] * n) for c in schema}, schema=schema)


def move_alias():
    # move the alias from this process's own registry view, all the while (compare-and-set)
    reg = Registry(Lakehouse.open(Path(root), lakehouse=lake, stage="load", user="pipeline"),
                   "loadmodel")
    for m in range(rounds * per):
        current = reg.aliases().get("champion")
        target = (index + 1) * 1000 + m
        try:
            reg._move("champion", target, action="promote", reason="load", expected=current)
        except AliasMoved:
            log(kind="alias_refused", expected=current, to=target)
        else:
            log(kind="alias", previous=current, to=target)


mover = threading.Thread(target=move_alias)
mover.start()
for r in range(rounds):
    with lease.hold(lake, ["silver"], holder=who, stage="load", ttl=ttl, wait=300):
        mine = lease.held(lake, "silver")
        log(kind="acquired", token=mine.token)
        for i in range(per):
            ids = [f"{who}-{r}-{i}-{j}" for j in range(3)]
            if r == stall and i == 1:  # stall holding the lease until it is taken over
                mine._stop.set()
                mine._thread.join()
                store = lease.store_for(lake)
                deadline = time.monotonic() + 4 * ttl + 20
                while lease.LeaseRecord.from_bytes(store.get("silver")[0]).token == mine.token:
                    if time.monotonic() > deadline:  # the others are done: one more process
                        subprocess.run([sys.executable, "-c", RESCUER, lake], check=True)
                    time.sleep(0.1)
                log(kind="stalled", token=mine.token)
            try:
                version = lh.write("silver.users", frame(ids))
            except lease.LeaseLost as exc:
                log(kind="fenced", ids=ids, token=mine.token, why=str(exc)[:300])
                break
            log(kind="commit", ids=ids, version=version, token=mine.token)
mover.join()
lh.close()
log(kind="done")
"""


def _journal(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow  # four processes against one S3 server: ~40-90 s on 2 shared cores
def test_writers_on_s3_lose_no_commit_and_a_fenced_writer_writes_nothing(
    tmp_path, s3_lake, s3_server
):
    """Check 4 processes x 3 rounds x 3 commits to one leased table plus CAS moves of one
    alias, with two stalled holders taken over mid-run: the table reconciles with what each
    process was told, the fenced write left nothing, tokens never go back along versions."""
    writers, rounds, per, ttl = 4, 3, 3, 2.0
    procs, journals = [], []
    started = time.monotonic()
    for k in range(writers):
        root = tmp_path / f"machine-{k}"
        (root / "data").mkdir(parents=True)
        with_policy(root)
        journal = tmp_path / f"journal-{k}.jsonl"
        journals.append(journal)
        stall = {0: 0, 1: 1}.get(k, -1)  # machine-0 stalls in its 1st round, machine-1 in its 2nd
        argv = [root, s3_lake, f"w{k}", k, rounds, per, stall, journal, ttl]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, *map(str, argv)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outs = [p.communicate(timeout=600)[0] for p in procs]
    elapsed = time.monotonic() - started
    assert [p.returncode for p in procs] == [0] * writers, "\n".join(outs)
    entries = [dict(e, writer=k) for k, j in enumerate(journals) for e in _journal(j)]
    commits = [e for e in entries if e["kind"] == "commit"]
    fenced = [e for e in entries if e["kind"] == "fenced"]
    assert sum(e["kind"] == "done" for e in entries) == writers

    lh = Lakehouse.open(tmp_path / "machine-0", lakehouse=s3_lake, stage="test", user="pipeline")
    rows = lh.read(TABLE)
    ids = rows["user_id"]
    # no duplicate, no lost commit, nothing of a fenced write
    assert ids.n_unique() == rows.height
    told = {i for e in commits for i in e["ids"]}
    assert set(ids) == told
    assert not told & {i for e in fenced for i in e["ids"]}
    assert rows.height == 3 * len(commits)
    # each stalled holder was taken over and fenced; its rows of that write are absent
    stalled = [e for e in entries if e["kind"] == "stalled"]
    assert sorted(e["writer"] for e in stalled) == [0, 1]
    for st in stalled:
        assert any(e["writer"] == st["writer"] and e["token"] == st["token"] for e in fenced)
    # every commit the processes were told of is one version of the table, each its own
    versions = [e["version"] for e in commits]
    assert len(set(versions)) == len(versions)
    dt = lh.location(TABLE).delta()
    history = sorted(dt.history(), key=lambda h: h["version"])
    data = [h for h in history if h.get("hortus.stage") == "load"]
    assert sorted(h["version"] for h in data) == sorted(versions)
    # the fence: along the versions, the lease token never goes back
    tokens = []
    for h in history:
        if h.get("hortus.stage") == "load":
            tokens.append(int(h["hortus.lease"].split("#")[1]))
        elif h.get("hortus.stage") == "lease":
            tokens.append(int(h["hortus.note"].rsplit("#", 1)[1]))
    assert tokens == sorted(tokens), tokens
    by_version = {e["version"]: e["token"] for e in commits}
    assert all(int(h["hortus.lease"].split("#")[1]) == by_version[h["version"]] for h in data)
    takeovers = sum(h.get("hortus.stage") == "lease" for h in history)
    assert takeovers >= len(stalled)
    assert dt.transaction_version(f"hortus-lease/{SCOPE}") == max(tokens)

    # the alias: every move chained on the one before, none lost, none written twice
    from hortus.models.registry import Registry

    events = Registry(lh, MODEL).history("champion")
    moved = [e for e in entries if e["kind"] == "alias"]
    refused = [e for e in entries if e["kind"] == "alias_refused"]
    assert events.height == len(moved)
    assert events["seq"].to_list() == list(range(1, events.height + 1))
    chain = events.select("previous_version", "version").rows()
    assert all(chain[i][0] == chain[i - 1][1] for i in range(1, len(chain)))
    assert chain[0][0] is None
    assert Counter((e["previous"], e["to"]) for e in moved) == Counter(chain)
    lh.close()
    print(
        f"\nfence load: {writers} processes, {len(commits)} commits "
        f"({rows.height} rows), {len(fenced)} fenced write(s), {takeovers} takeover(s) "
        f"(fence commits), {len(moved)} alias moves + {len(refused)} refused, "
        f"{elapsed:.1f} s"
    )
