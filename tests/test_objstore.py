"""The lakehouse on object storage (issue 16 item 2; issue 18 item 4's fence on S3).

Against a real S3-compatible server (moto, started on 127.0.0.1 by `s3server`):
the atomic primitive (conditional PUTs), the table API on ``s3://`` (writes, reads
by version, appends, deletes, policy and masking), two processes appending to one
table, and the lease fence inside the Delta commit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from deltalake import CommitProperties

from hortus.errors import HortusError
from hortus.governance.access import AccessDenied
from hortus.lakehouse import lease
from hortus.lakehouse._objstore import S3Store, TableLocation
from hortus.lakehouse.tables import Lakehouse

pytest_plugins = ("s3server",)  # the S3 server fixtures: s3_server, s3_lake

USERS = "silver.users"


def _users(lh: Lakehouse, ids: range, region: str = "DACH") -> pl.DataFrame:
    schema = lh.catalog.get(USERS).schema
    n = len(ids)
    cols = {
        "user_id": [f"u{i:06d}" for i in ids],
        "name": [f"tok_name{i}" for i in ids],
        "email": [f"tok_mail{i}" for i in ids],
        "region": [region if i % 2 == 0 else "US_WEST" for i in ids],
        "country": ["DE"] * n,
        "signup_at": [datetime(2025, 3, 1, tzinfo=UTC)] * n,
    }
    return pl.DataFrame({c: cols.get(c, [None] * n) for c in schema}, schema=schema)


def _bronze_frame(lh: Lakehouse, source: str = "f") -> pl.DataFrame:
    schema = lh.catalog.get("bronze.events").schema
    row = {"_raw": "{}", "_source_file": source, "_line": 1}
    return pl.DataFrame([{c: row.get(c) for c in schema}], schema=schema)


# ------------------------------------------------------------------ primitive
def test_s3store_puts_if_absent_and_compares_and_swaps(s3_lake):
    """Check the AtomicStore contract on S3: create once, swap only on the current etag."""
    store = S3Store(f"{s3_lake}/_leases")
    assert store.get("x") is None
    etag = store.put_if_absent("x", b"one")
    assert etag and store.put_if_absent("x", b"two") is None  # exists: refused
    assert store.get("x") == (b"one", etag)
    new = store.compare_and_swap("x", etag, b"three")
    assert new and new != etag
    assert store.compare_and_swap("x", etag, b"four") is None  # stale etag: refused
    assert store.compare_and_swap("absent", etag, b"x") is None
    assert store.get("x")[0] == b"three"
    with pytest.raises(HortusError, match="fenced inside the Delta commit"), store.exclusive("x"):
        pass


def test_s3store_compare_and_swap_loses_no_update_under_contention(s3_lake):
    """Check 4 threads x 5 increments by read + CAS retry: the counter ends at exactly 20."""
    store = S3Store(f"{s3_lake}/_leases")
    store.put_if_absent("counter", b"0")

    def bump() -> None:
        for _ in range(5):
            while True:
                data, etag = store.get("counter")
                if store.compare_and_swap("counter", etag, str(int(data) + 1).encode()):
                    break

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("counter")[0] == b"20"


# --------------------------------------------------------------- table API
def test_the_table_api_on_s3_writes_reads_versions_appends_and_deletes(project, s3_lake, s3_server):
    """Check Lakehouse(lakehouse=s3://...): versions, time travel, delete, nothing on disk."""
    lh = Lakehouse.open(project.root, lakehouse=s3_lake, stage="test")
    assert lh.paths.lakehouse_uri == s3_lake
    assert not lh.exists(USERS)
    assert lh.write(USERS, _users(lh, range(4)), mode="overwrite") == 0
    assert lh.write(USERS, _users(lh, range(4, 6))) == 1
    assert lh.read(USERS).height == 6
    assert lh.read(USERS, version=0)["user_id"].to_list() == [f"u{i:06d}" for i in range(4)]
    assert lh.delete_rows(USERS, "user_id", ["u000001", "u000004"], note="undo") == 2
    assert sorted(lh.read(USERS)["user_id"]) == ["u000000", "u000002", "u000003", "u000005"]
    history = lh.history(USERS)
    assert history["version"].to_list() == [0, 1, 2] and set(history["stage"]) == {"test"}
    prefix = s3_lake.removeprefix(f"s3://{s3_server.bucket}/")
    keys = s3_server.keys(f"{prefix}/silver/users/")
    assert f"{prefix}/silver/users/_delta_log/00000000000000000002.json" in keys
    assert sum(k.endswith(".parquet") for k in keys) >= 2
    assert not (project.root / "lakehouse" / "silver").exists()  # nothing written locally
    with pytest.raises(HortusError, match="lives on object storage"):
        lh.path(USERS)  # no local folder to hand out: reads go through the API
    with pytest.raises(HortusError, match="needs a lakehouse on local disk"):
        lh.paths.table("silver", "users")  # nor to code that still wants folders
    assert lh.content_hash(USERS) == lh.content_hash(USERS, version=2)
    lh.close()


def test_policy_masking_and_row_filters_apply_on_s3(project, s3_lake):
    """Check reads from S3 as other users: masked columns, row filters, denial audited."""
    lh = Lakehouse.open(project.root, lakehouse=s3_lake, stage="test")
    lh.write(USERS, _users(lh, range(6)), mode="overwrite")
    alex = Lakehouse.open(project.root, lakehouse=s3_lake, user="alex")
    seen = alex.read(USERS)
    assert seen.height == 6 and "email" in alex.masked_columns(USERS)
    assert not set(seen["email"].drop_nulls()) & set(lh.read(USERS)["email"])
    elena = Lakehouse.open(project.root, lakehouse=s3_lake, user="elena")
    assert set(elena.read(USERS)["region"]) == {"DACH"}  # EU regions only
    outsider = Lakehouse.open(project.root, lakehouse=s3_lake, user="shop-web")
    with pytest.raises(AccessDenied):
        outsider.read(USERS)
    from hortus.governance.audit import AuditLog, default_path

    for reader in (lh, alex, elena):
        reader.close()
    log = AuditLog.open(default_path(lh.paths), secrets_dir=project.secrets).show()
    assert {"alex", "elena"} <= set(log.filter(pl.col("action") == "read")["user"])
    denied = log.filter(pl.col("outcome") == "denied")
    assert denied.filter(pl.col("user") == "shop-web").height == 1


APPENDER = """
import sys
from datetime import UTC, datetime
from pathlib import Path
import polars as pl
from hortus.lakehouse.tables import Lakehouse
root, lake, who, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lh = Lakehouse.open(root, lakehouse=lake, stage="appender")
schema = lh.catalog.get("ops.events").schema
for i in range(n):
    row = {"at": datetime.now(UTC), "type": "probe", "subject": who, "detail": str(i), "actor": who}
    lh.write("ops.events", pl.DataFrame([row], schema=schema))
lh.close()
"""


def _run_appenders(root: Path, lake: str, n: int) -> None:
    """Run two APPENDER processes at once; fail with each one's output if one fails.

    The wait is generous (a loaded 2-core machine starts and runs them several times
    slower than an idle one); what is asserted after it does not depend on timing.
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(root), lake, who, str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for who in ("a", "b")
    ]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    failed = [
        f"appender {who} exit {p.returncode}:\n{out}"
        for who, p, out in zip("ab", procs, outs, strict=True)
        if p.returncode != 0
    ]
    assert not failed, "\n".join(failed)


def test_two_processes_appending_to_one_s3_table_lose_no_commit(project, s3_lake):
    """Check 2 processes x 6 appends to one new S3 table: 12 rows, 12 versions, none lost."""
    n = 6
    _run_appenders(project.root, s3_lake, n)
    lh = Lakehouse.open(project.root, lakehouse=s3_lake, stage="test")
    events = lh.read("ops.events")
    assert events.height == 2 * n
    for who in ("a", "b"):
        got = events.filter(pl.col("subject") == who)["detail"].cast(pl.Int64).sort()
        assert got.to_list() == list(range(n))
    assert lh.version("ops.events") == 2 * n - 1  # one commit per append, none overwritten
    lh.close()


def test_the_audit_chain_on_s3_appended_by_two_processes_verifies(project, s3_lake, s3_server):
    """Check the audit log in the bucket: both processes' records chained once, chain intact."""
    from hortus.governance.audit import AuditLog, default_path

    n = 6
    _run_appenders(project.root, s3_lake, n)
    lh = Lakehouse.open(project.root, lakehouse=s3_lake, stage="test")
    path = default_path(lh.paths)
    assert path == f"{s3_lake}/ops/audit_log"
    prefix = s3_lake.removeprefix(f"s3://{s3_server.bucket}/")
    assert any(k.endswith(".json") for k in s3_server.keys(f"{prefix}/ops/audit_log/_delta_log/"))
    log = AuditLog.open(path, secrets_dir=project.secrets)
    rows = log.show()
    writes = rows.filter((pl.col("action") == "write") & (pl.col("object") == "ops.events"))
    assert writes.height == 2 * n
    assert rows["seq"].sort().to_list() == list(range(1, rows.height + 1))  # no fork, no gap
    result = log.verify()
    assert result.ok, str(result)
    lh.close()


def test_audit_appends_racing_on_s3_rechain_instead_of_forking(project, s3_lake):
    """Check 2 writers x 8 appends at once to a new S3 audit log: 16 records, one chain.

    No flock reaches object storage: an append that lost the race to the next Delta
    version (txn conflict) re-reads the head and chains again.
    """
    from hortus.governance import audit

    uri = f"{s3_lake}/ops/audit_log"
    attempts: list[str] = []
    once = audit.AuditLog._append_once

    def counted(self, rows, **kw):
        attempts.append("try")
        return once(self, rows, **kw)

    audit.AuditLog._append_once = counted
    try:

        def run(who: str) -> None:
            log = audit.AuditLog.open(uri, secrets_dir=project.secrets)
            for i in range(8):
                log.append(audit.AuditRecord(who, "read", "silver.users", detail=f"{who}{i}"))

        threads = [threading.Thread(target=run, args=(w,)) for w in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        audit.AuditLog._append_once = once
    log = audit.AuditLog.open(uri, secrets_dir=project.secrets)
    rows = log.show()
    assert sorted(rows["detail"]) == sorted(f"{w}{i}" for w in "ab" for i in range(8))
    assert rows["seq"].sort().to_list() == list(range(1, 17))
    assert log.verify().ok
    assert len(attempts) >= 16  # every append once, plus the retries of those that lost


# -------------------------------------------------------------------- fence
def test_a_takeover_on_s3_fences_the_old_holders_commit(project, s3_lake):
    """Check S3 fencing: after a takeover the old holder's write and delete raise LeaseLost."""
    lh = Lakehouse.open(project.root, lakehouse=s3_lake, stage="ingest")
    frame = _bronze_frame(lh)
    with lease.hold(s3_lake, ["bronze"], holder="old", stage="ingest", ttl=0.5) as held:
        lh.write("bronze.events", frame)  # under our lease: committed, token in the commit
        dt = lh.location("bronze.events").delta()
        assert dt.transaction_version("hortus-lease/bronze") == 1
        assert dt.history(1)[0]["hortus.lease"] == "bronze#1"
        held[0]._stop.set()  # the old holder stalls: no more renewals
        held[0]._thread.join()
        time.sleep(0.6)
        new = lease.acquire(s3_lake, "bronze", holder="new", stage="ingest", wait=0)
        assert new.token == 2
        fenced = lh.location("bronze.events").delta()
        assert fenced.transaction_version("hortus-lease/bronze") == 2  # the fence commit
        version = fenced.version()
        with pytest.raises(lease.LeaseLost, match="taken over by new"):
            lh.write("bronze.events", frame)
        with pytest.raises(lease.LeaseLost):
            lh.delete_rows("bronze.events", "_source_file", ["f"], note="undo")
        assert lh.version("bronze.events") == version  # nothing committed
        assert lh.read("bronze.events").height == 1
    new.release()
    lh.close()


def test_a_commit_racing_the_fence_on_s3_fails_inside_the_commit(project, s3_lake):
    """Check the fence is in the commit: the old holder read its snapshot, then the takeover
    fenced the table, then the old holder commits on that snapshot: refused, nothing lands."""
    lh = Lakehouse.open(project.root, lakehouse=s3_lake, stage="ingest")
    with lease.hold(s3_lake, ["bronze"], holder="old", stage="ingest", ttl=0.5) as held:
        lh.write("bronze.events", _bronze_frame(lh))
        held[0]._stop.set()
        held[0]._thread.join()
        time.sleep(0.6)
        where = lh.location("bronze.events")
        fence = lease.CommitFence("bronze", held[0].token, "bronze.events")
        taken: list[lease.Lease] = []

        def commit_after_takeover(dt):
            # the old holder passed the token checks on snapshot dt; now the takeover lands
            taken.append(lease.acquire(s3_lake, "bronze", holder="new", stage="ingest", wait=0))
            props = CommitProperties(app_transactions=fence.transactions())
            _bronze_frame(lh, "late").write_delta(
                dt, mode="append", delta_write_options={"commit_properties": props}
            )

        with pytest.raises(lease.LeaseLost, match="token 2"):
            fence.commit(where, commit_after_takeover)
    assert len(taken) == 1 and taken[0].token == 2
    rows = lh.read("bronze.events")
    assert rows["_source_file"].to_list() == ["f"]  # the late commit never landed
    taken[0].release()
    lh.close()


HOLDER = """
import sys, time
from hortus.lakehouse import lease
lease.acquire(sys.argv[1], "gold.kpi_daily", holder="other", stage="kpis", ttl=60)
print("held", flush=True)
time.sleep(60)
"""


def test_an_unleased_write_into_a_held_s3_scope_is_refused(project, s3_lake):
    """Check another process's live lease on S3 refuses a write without a lease (LeaseHeld)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), s3_lake], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        lh = Lakehouse.open(project.root, lakehouse=s3_lake, stage="kpis")
        schema = lh.catalog.get("gold.kpi_daily").schema
        with pytest.raises(lease.LeaseHeld, match="being written by other"):
            lh.write("gold.kpi_daily", pl.DataFrame(schema=schema))
        assert not lh.exists("gold.kpi_daily")
        lh.close()
    finally:
        proc.kill()
        proc.wait()


def test_table_location_refuses_an_unsupported_scheme():
    """Check a lakehouse URI of another scheme fails with a clear message."""
    with pytest.raises(HortusError, match="expected a local folder or s3://bucket/prefix"):
        TableLocation.of("gs://bucket/lake")


# ------------------------------------------------------------------ aliases
def test_alias_compare_and_set_holds_across_machines_on_s3(project, s3_lake, tmp_path, monkeypatch):
    """Check two "machines" (two project folders, two local locks) moving one alias in a
    bucket: the move that decided on the older events is refused inside its Delta commit
    (txn per model) and, re-decided, says the alias moved; no event is written twice."""
    from conftest import with_policy
    from hortus.models._aliases import AliasMoved
    from hortus.models.registry import Registry
    from test_registry import _register

    monkeypatch.setenv("HORTUS_USER", "mia")
    other = tmp_path / "machine-b"
    other.mkdir()
    with_policy(other)
    here = Registry(Lakehouse.open(project.root, lakehouse=s3_lake, user="mia"), "recommender")
    there = Registry(Lakehouse.open(other, lakehouse=s3_lake, user="mia"), "recommender")
    for i in (1, 2):
        _register(here, tmp_path, i)
    write = here._write_move

    def rival_first(alias: str, version: int):  # machine B moves it after A read the events
        def move(*args, **kwargs):
            here._write_move = write  # once
            there.promote(version, alias=alias, reason="rival")
            return write(*args, **kwargs)

        return move

    # the alias table does not exist yet when A decides: B creates it first
    here._write_move = rival_first("staging", 1)
    with pytest.raises(AliasMoved, match="staging of model recommender moved from unset to v1"):
        here.promote(2, alias="staging")
    # the table exists: A's commit is made on the snapshot it decided on, B's came after
    here._write_move = rival_first("qa", 2)
    with pytest.raises(AliasMoved, match="qa of model recommender moved from unset to v2"):
        here.promote(1, alias="qa")
    assert there.history("staging")["version"].to_list() == [1]  # A's events never landed
    assert there.history("qa")["version"].to_list() == [2]
    assert here.aliases() == {"qa": 2, "staging": 1}
    events = there._events()
    assert events["seq"].to_list() == [1, 2]  # no seq written twice
    here._lh.close()
    there._lh.close()


# ------------------------------------------------------------------ registry
def test_registry_artifacts_live_in_the_bucket_and_load_verified_on_another_machine(
    project, s3_lake, s3_server, tmp_path, monkeypatch
):
    """Check a model registered by one "machine" is stored in the bucket beside the lakehouse,
    content-addressed by its sha256 (nothing on local disk), loads from there on another
    machine (another project folder) with the same predictions, and altered or missing
    bytes in the bucket are refused before anything is deserialised."""
    import hashlib
    import re

    import numpy as np

    from conftest import with_policy
    from hortus.errors import ArtifactError
    from hortus.models import modeling
    from hortus.models.registry import Receipt, Registry

    monkeypatch.setenv("HORTUS_USER", "mia")
    other = tmp_path / "machine-b"
    other.mkdir()
    with_policy(other)
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    df = pl.DataFrame({"x": x, "y": (x + rng.normal(size=300) > 0).astype(int)})
    spec = modeling.ModelSpec(target="y", features=("x",), estimator="logreg", seed=1)
    result = modeling.train(df, spec, curve_points=2, importance_repeats=1)
    build = tmp_path / "build"
    sha = modeling.save_model(result.pipeline, result.signature, build / "m.skops")
    here = Registry(Lakehouse.open(project.root, lakehouse=s3_lake, user="mia"), "recommender")
    register = dict(
        sha256=sha, signature=result.signature.to_dict(), metrics={},
        receipt=Receipt.collect(tmp_path, params={}, tables_read={}),
    )  # fmt: skip
    mv = here.register(build / "m.skops", **register)
    assert mv.version == 1 and here.register(build / "m.skops", **register).version == 1
    prefix = s3_lake.removeprefix(f"s3://{s3_server.bucket}/") + "/ops/models/recommender/"
    assert [k.removeprefix(prefix) for k in s3_server.keys(prefix)] == [
        f"sha256/{sha}.signature.json",
        f"sha256/{sha}.skops",
        "v1.claim",
    ]
    uri = f"{s3_lake}/ops/models/recommender/sha256/{sha}.skops"
    assert mv.artifact_path == uri and here.verify(1) == uri
    assert not (project.root / ".hortus" / "objstore" / "ops" / "models").exists()
    there = Registry(Lakehouse.open(other, lakehouse=s3_lake, user="mia"), "recommender")
    pipeline, signature = there.load(1)
    want = modeling.predict_scores(result.pipeline, df, spec)
    assert np.array_equal(modeling.predict_scores(pipeline, df, spec), want)
    assert list(signature.names) == ["x"]
    # a second version of other bytes claims v2; the first stays as it was
    _, sha2 = _dummy_artifact(tmp_path / "build2", result.signature.to_dict())
    v2 = there.register(tmp_path / "build2" / "model2.skops", **(register | {"sha256": sha2}))
    assert v2.version == 2 and v2.artifact_path.endswith(f"/sha256/{sha2}.skops")
    assert there.get(1).artifact_sha256 == sha
    # altered bytes in the bucket are refused, naming both digests; nothing is built
    key = uri.removeprefix(f"s3://{s3_server.bucket}/")
    client = s3_server.client()
    altered = client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()[:-1] + b"!"
    client.put_object(Bucket=s3_server.bucket, Key=key, Body=altered)
    have = hashlib.sha256(altered).hexdigest()
    expected = re.escape(f"expected sha256 {sha}, actual {have}; refusing to load it")
    for reg in (here, there):
        with pytest.raises(ArtifactError, match=expected):
            reg.load(1)
        with pytest.raises(ArtifactError, match=expected):
            reg.verify(1)
    client.delete_object(Bucket=s3_server.bucket, Key=key)
    with pytest.raises(ArtifactError, match=re.escape(f"is missing: {uri} not found")):
        there.load(1)
    assert there.load(2)[0] is not None  # the other version is untouched
    here._lh.close()
    there._lh.close()


def _dummy_artifact(folder: Path, signature: dict) -> tuple[Path, str]:
    """Write test_registry's dummy skops archive 2 with a signature recording its sha256."""
    import hashlib
    import json

    from test_registry import dummy_model_bytes

    folder.mkdir(parents=True)
    data = dummy_model_bytes(2)
    sha = hashlib.sha256(data).hexdigest()
    (folder / "model2.skops").write_bytes(data)
    sidecar = signature | {"model_sha256": sha}
    (folder / "model2.signature.json").write_text(json.dumps(sidecar))
    return folder / "model2.skops", sha


# ------------------------------------------------------------------- stages
def test_ingest_and_silver_stages_into_a_bucket_equal_a_local_build(
    project, s3_lake, s3_server, monkeypatch
):
    """Check the ingest and silver stages with HORTUS_LAKEHOUSE=s3://...: under their leases
    in the bucket, and the same silver content (hashes) as the same landing built on disk."""
    from conftest import USERS_HEADER, event, user_row, write_jsonl
    from hortus.config import Paths
    from hortus.pipeline import stages

    for d in range(2):
        rows = [
            event(d * 100 + i, ts=f"2025-03-0{d + 1}T08:00:00.000000Z", user_id="u000001")
            for i in range(30)
        ]
        write_jsonl(project.data / f"events/events-2025-03-0{d + 1}.jsonl.gz", rows)
    users = project.data / "users/users-2025-03-01.csv"
    users.parent.mkdir(parents=True)
    users.write_text("\n".join([USERS_HEADER, user_row(1), user_row(2)]) + "\n")
    tables = ["silver.events", "silver.users", "quarantine.rows"]
    hashes = {}
    for where in ("local", "s3"):
        if where == "s3":
            monkeypatch.setenv("HORTUS_LAKEHOUSE", s3_lake)
        paths = Paths.at(project.root)
        stages.ingest(paths, {})
        stages.silver(paths, {})
        lh = Lakehouse.open(project.root, stage="test")
        assert (lh.paths.lakehouse_uri is not None) == (where == "s3")
        hashes[where] = {t: lh.content_hash(t) for t in tables}
        lh.close()
    assert hashes["s3"] == hashes["local"]
    assert hashes["s3"]["silver.events"].startswith("rows=60;")
    prefix = s3_lake.removeprefix(f"s3://{s3_server.bucket}/")
    leases = s3_server.keys(f"{prefix}/_leases/")
    assert leases == [f"{prefix}/_leases/bronze.json", f"{prefix}/_leases/silver.json"]
    lh = Lakehouse.open(project.root, stage="test", lakehouse=s3_lake)
    assert lh.location("silver.events").delta().history(1)[0]["hortus.lease"] == "silver#1"
    lh.close()


def test_maintain_compacts_checkpoints_and_vacuums_tables_in_the_bucket(
    project, s3_lake, s3_server
):
    """Check hortus maintain on S3: small files compacted, a checkpoint, old files vacuumed
    out of the bucket, the same rows, and the audit chain still verifies after its turn."""
    from hortus.governance.audit import AuditLog, default_path
    from hortus.lakehouse.maintain import MaintainConfig, maintain

    lh = Lakehouse.open(project.root, lakehouse=s3_lake, stage="maintain")
    schema = lh.catalog.get("ops.events").schema
    for i in range(4):
        row = {"at": datetime.now(UTC), "type": "probe", "subject": "s", "detail": str(i)}
        lh.write("ops.events", pl.DataFrame([row | {"actor": "a"}], schema=schema))
    before = lh.content_hash("ops.events")
    prefix = s3_lake.removeprefix(f"s3://{s3_server.bucket}/")

    def parquet(table: str) -> int:
        keys = s3_server.keys(f"{prefix}/ops/{table}/")
        return sum(k.endswith(".parquet") and "/_delta_log/" not in k for k in keys)

    assert parquet("events") == 4
    report = maintain(lh, config=MaintainConfig(vacuum_hours=0), tables=["ops.events"])
    (events,) = report.tables
    assert events.error is None and events.compacted and events.vacuumed == 4
    assert events.checkpoint is not None
    assert lh.content_hash("ops.events") == before
    assert parquet("events") == 1  # the four small files left the bucket
    keys = s3_server.keys(f"{prefix}/ops/events/_delta_log/")
    assert any(k.endswith(".checkpoint.parquet") for k in keys)
    report = maintain(lh, config=MaintainConfig(vacuum_hours=0), tables=["ops.audit_log"])
    assert report.tables[0].error is None
    lh.close()
    log = AuditLog.open(default_path(lh.paths), secrets_dir=project.secrets)
    assert log.verify().ok


STAGE_HOLDER = """
import sys, time
from hortus.lakehouse import lease
lease.acquire(sys.argv[1], "bronze", holder="other", stage="ingest", ttl=600)
print("held", flush=True)
time.sleep(600)  # killed by the test; alive (and unexpired) however slow the machine is
"""


def test_a_stage_waits_for_a_lease_held_in_the_bucket_then_takes_it_over(
    project, s3_lake, monkeypatch
):
    """Check `hortus ingest` on S3 beside a live holder: exit 2 naming it; with --wait it takes
    the lease over once the holder dies (token 3) and fences the scope's tables first."""
    from conftest import event, write_jsonl
    from hortus.lakehouse._objstore import S3Store

    hortus = Path(sys.executable).with_name("hortus")
    shutil.copy(Path(__file__).resolve().parents[1] / "params.yaml", project.root)
    monkeypatch.setenv("HORTUS_LAKEHOUSE", s3_lake)
    write_jsonl(project.data / "events/events-2025-03-01.jsonl.gz", [event(i) for i in range(5)])

    def cli(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(hortus), "--root", str(project.root), "ingest", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=os.environ | {"OMP_NUM_THREADS": "1"},
        )

    first = cli()
    assert first.wait(timeout=300) == 0, first.stdout.read()  # token 1, released
    write_jsonl(project.data / "events/events-2025-03-02.jsonl.gz", [event(i) for i in range(5, 9)])
    holder = subprocess.Popen(
        [sys.executable, "-c", STAGE_HOLDER, s3_lake], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"  # token 2
        started = time.monotonic()
        refused = cli()
        out = refused.communicate(timeout=300)[0]
        to_refusal = time.monotonic() - started  # start-up to the lease check, at this load
        assert refused.returncode == 2, out
        assert f"bronze is being written by other (pid {holder.pid}" in out
        # the holder's ttl (600 s) outlasts the wait: only its death can free the lease
        waiting = cli("--wait", "300")
        # let the waiter reach the held lease before the holder dies: as long as the
        # refused run needed to get there, measured at the same load (not a fixed sleep)
        time.sleep(max(1.0, 1.2 * to_refusal))
        assert waiting.poll() is None, waiting.stdout.read()  # still waiting, not refused
    finally:
        holder.kill()  # its pid is gone from this host: the lease may be taken over
        holder.wait()
    out = waiting.communicate(timeout=300)[0]
    assert waiting.returncode == 0, out
    record = S3Store(f"{s3_lake}/_leases").get("bronze")
    assert lease.LeaseRecord.from_bytes(record[0]).token == 3
    lh = Lakehouse.open(project.root, stage="test")
    dt = lh.location("bronze.events").delta()
    assert dt.transaction_version("hortus-lease/bronze") == 3
    notes = [h.get("hortus.note") for h in dt.history()]
    assert "lease fence bronze#3" in notes  # the takeover fenced the table first
    assert lh.read("bronze.events").height == 9
    lh.close()


# ------------------------------------------------------------------ DVC remote
@pytest.mark.slow  # ~25 s on the loaded 2-core machine: six dvc processes
@pytest.mark.integration
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_dvc_remote_in_the_bucket_pushes_and_a_fresh_clone_pulls_the_same_bytes(
    s3_lake, s3_server, tmp_path
):
    """Check a real DVC repo with its remote at s3://<bucket>/<prefix>/dvcstore on the S3
    server (dvc-s3; endpointurl in the repo's config, credentials only in the environment):
    `dvc push` puts the pinned files in the bucket, and a fresh git clone's `dvc pull` gets
    the same bytes back."""
    import hashlib

    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}  # config's, not env's
    env |= {"DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}

    def run(cwd: Path, *args: str) -> str:
        out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    def git(cwd: Path, *args: str) -> str:
        return run(cwd, "git", "-c", "user.name=t", "-c", "user.email=t@t", *args)

    def dvc(cwd: Path, *args: str) -> str:
        return run(cwd, sys.executable, "-m", "dvc", *args)

    repo, clone = tmp_path / "repo", tmp_path / "clone"
    repo.mkdir()
    git(repo, "init", "-q")
    dvc(repo, "init", "-q")
    data = repo / "data"
    (data / "sub").mkdir(parents=True)
    files = {
        "events.jsonl": b"".join(b'{"i": %d}\n' % i for i in range(2000)),
        "sub/blob.bin": bytes(range(256)) * 64,
        "sub/empty.txt": b"",
    }
    for rel, body in files.items():
        (data / rel).write_bytes(body)
    dvc(repo, "add", "-q", "data")
    remote = f"{s3_lake}/dvcstore"
    dvc(repo, "remote", "add", "-d", "bucket", remote)
    dvc(repo, "remote", "modify", "bucket", "endpointurl", s3_server.endpoint)
    config = (repo / ".dvc" / "config").read_text()
    assert remote in config and s3_server.endpoint in config
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in config.replace(s3_server.endpoint, "")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pin data")
    dvc(repo, "push", "-q")
    prefix = remote.removeprefix(f"s3://{s3_server.bucket}/") + "/"
    keys = s3_server.keys(prefix)
    md5s = {hashlib.md5(body).hexdigest() for body in files.values()}
    stored = {k.removeprefix(prefix).replace("files/md5/", "").replace("/", "") for k in keys}
    assert md5s <= stored  # every file's content is an object in the bucket
    assert len(keys) == len(md5s) + 1  # and the directory listing (.dir) beside them
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert not (clone / "data").exists()
    dvc(clone, "pull", "-q")
    for rel, body in files.items():
        assert (clone / "data" / rel).read_bytes() == body, rel
    assert sorted(p.relative_to(clone / "data").as_posix() for p in (clone / "data").rglob("*")
                  if p.is_file()) == sorted(files)  # fmt: skip


def test_a_task_on_a_node_without_credentials_says_so(s3_lake, monkeypatch):
    """A Ray node started without the AWS_* variables (none travel with a task) fails
    its read with a message saying what is missing, not the store's metadata-endpoint
    error; the same task body is run here in-process on a real S3 server."""
    from hortus.executor.plan import TableRead
    from hortus.executor.ray import _call
    from hortus.lakehouse._objstore import TableLocation

    uri = f"{s3_lake}/silver/t"
    pl.DataFrame({"a": [1, 2]}).write_delta(uri, **TableLocation.of(uri).write_kwargs())
    plan = TableRead("silver.t", uri, 0, None, (pl.col("a"),), ("a",))
    assert _call(TableRead.read, plan).height == 2  # with credentials
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    with pytest.raises(HortusError, match="no usable AWS credentials") as err:
        _call(TableRead.read, plan)
    assert "AWS_*" in str(err.value) and "docs/scale-out.md" in str(err.value)
    # any other failure of a task is raised as it was
    with pytest.raises(ZeroDivisionError):
        _call(lambda item: item / 0, 1)
