"""Right to erasure and PII key rotation with the lakehouse in a bucket (issue 16 item 2).

The same guarantees as on disk (tests/test_erasure.py, tests/test_key_rotation.py), against
a real S3-compatible server (moto, started on 127.0.0.1 by `s3server`) with real Delta
tables: a small shop is ingested and built to silver, the feature logs, the online store, a
prediction log and a registered model version, all with ``HORTUS_LAKEHOUSE=s3://...``.

- `hortus erase`: afterwards no object of the lakehouse's prefix (every data file of every
  version, every Delta log entry and checkpoint; read here with the test's own S3 client,
  not Hortus's) holds the subject's id, raw identifiers or tokens; counts reconcile; the
  commits carry the lease token and the lineage; the audit log verifies;
- `hortus keys rotate pii`: every token re-keyed in one commit per table (with the lease
  token and lineage), joins, counts and re-identification kept; an interrupted rotation
  resumes; a takeover of its lease mid-run fences it (nothing more is written).
"""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from conftest import TEST_KEY, register_version, with_policy, write_prediction_log
from hortus.cli.core import main
from hortus.config import Paths
from hortus.errors import HortusError
from hortus.governance import erasure, rotation
from hortus.governance.audit import AuditLog, default_path
from hortus.lakehouse import lease
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.pii import (
    RotationInProgress,
    check_current,
    load_key,
    read_keyring,
    token,
    tokenize_series,
)
from hortus.lakehouse.silver import reconcile
from hortus.lakehouse.tables import Lakehouse

pytest_plugins = ("s3server",)  # the S3 server fixtures: s3_server, s3_lake

SHOP = {"seed": 3, "days": 6, "users": 120, "plants": 15}
OLD = TEST_KEY.encode()


def _build(root: Path, lake: str, *, full: bool = True) -> str:
    """Build a small shop into the bucket; return the data subject (a buyer who reviewed).

    Not `full`: bronze, silver and the prediction log only (what a rotation re-keys).
    """
    from hortus.domains.plantshop.features import FEATURES
    from hortus.domains.plantshop.simulate import SimConfig, simulate
    from hortus.features import store as feature_store
    from hortus.lakehouse import silver
    from hortus.lakehouse.ingest import ingest

    paths = Paths.at(root, lakehouse=lake)
    (root / "data").mkdir(parents=True, exist_ok=True)
    with_policy(root)
    simulate(SimConfig(**SHOP), paths.data)
    reviews = pl.read_ndjson(sorted((paths.data / "reviews").glob("*.jsonl"))[0])
    subject = reviews["user_id"].sort()[0]
    users = pl.concat(
        [pl.read_csv(f, infer_schema=False) for f in sorted((paths.data / "users").glob("*.csv"))]
    )
    me = users.filter(pl.col("user_id") == subject).row(0, named=True)
    other = users.filter(pl.col("user_id") != subject)["user_id"][0]
    # a rejected event of theirs (quarantined, raw JSON kept) and another buyer's review
    # naming them (raw in bronze, redacted there by the erasure)
    bad = {"event_id": "e00000000000000ff", "event_type": "bogus", "ts": "2025-03-02T10:00:00Z",
           "session_id": "s0000000000ff", "user_id": subject, "plant_id": "p0001"}  # fmt: skip
    (paths.data / "events" / "events-2025-03-06-late.jsonl").write_text(json.dumps(bad) + "\n")
    mention = {"review_id": "r0000999", "user_id": other, "plant_id": "p0001", "rating": 4,
               "text": f"A gift for {me['name']} ({me['email']}), she loved it.",
               "ts": "2025-03-05T10:00:00.000000Z"}  # fmt: skip
    (paths.data / "reviews" / "reviews-2025-03-05-late.jsonl").write_text(
        json.dumps(mention) + "\n"
    )
    lh = Lakehouse(paths=paths, catalog=Catalog.load(), stage="test", user="pipeline")
    ingest(paths.data, lh)
    silver.build(lh, silver.SilverOptions(key=OLD))
    offline = feature_store.build_offline(lh, FEATURES) if full else {"silver.events": 0}
    if full:
        at = lh.read("silver.events")["ts"].max()
        store = feature_store.OnlineStore(paths.online_store, FEATURES)
        store.materialize(
            feature_store.read_logs(lh, FEATURES), at + timedelta(microseconds=1),
            {c.full_name: c for c in lh.catalog},
            versions={t: v["version"] for t, v in offline.items()},
        )  # fmt: skip
        store.close()
        lh.location("silver.users").delta().create_checkpoint()  # hortus maintain makes them
    # a log whose JSON requests carry ids and tokens inside text
    logged = lh.read("silver.users").select("user_id", "email").sort("user_id")
    write_prediction_log(lh, [{"user_id": u, "email": e} for u, e in logged.iter_rows()])
    if not full:
        lh.close()
        return subject
    register_version(lh, next(iter(offline)))
    (paths.reports / "score").mkdir(parents=True)
    (paths.reports / "score" / "summary.json").write_text(
        json.dumps({"top": [subject], "note": "first buyers"}), encoding="utf-8"
    )
    lh.close()
    return subject


@pytest.fixture
def shop(tmp_path, s3_lake, monkeypatch) -> tuple[Path, str, str]:
    """Return (project root, lakehouse URI, subject) of a shop built into the bucket."""
    root = tmp_path / "proj"
    root.mkdir()
    subject = _build(root, s3_lake)
    monkeypatch.setenv("HORTUS_LAKEHOUSE", s3_lake)  # what every CLI run below reads
    return root, s3_lake, subject


@pytest.fixture
def small_shop(tmp_path, s3_lake, monkeypatch) -> tuple[Path, str, str]:
    """Return (root, lakehouse URI, subject) of a shop in the bucket: bronze, silver, a log."""
    root = tmp_path / "proj"
    root.mkdir()
    subject = _build(root, s3_lake, full=False)
    monkeypatch.setenv("HORTUS_LAKEHOUSE", s3_lake)
    return root, s3_lake, subject


def _cli(monkeypatch, capsys, root: Path, *argv: str, user: str = "dana") -> tuple[int, str]:
    monkeypatch.setenv("HORTUS_USER", user)
    code = main(["--root", str(root), *argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def _objects(s3_server, lake: str) -> dict[str, bytes]:
    """Return every object under the lakehouse prefix, read with the test's own S3 client."""
    client = s3_server.client()
    prefix = lake.removeprefix(f"s3://{s3_server.bucket}/") + "/"
    return {
        key: client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
        for key in s3_server.keys(prefix)
    }


def _holding(objects: dict[str, bytes], subject_id: str, needles: list[str]) -> list[str]:
    """Return the objects whose content names the subject (Parquet read as rows, else bytes)."""
    word = re.compile(rf"(?:^|[^A-Za-z0-9_]){re.escape(subject_id)}(?:$|[^A-Za-z0-9_])")
    found = []
    for key, data in objects.items():
        if key.endswith(".parquet"):
            df = pl.read_parquet(io.BytesIO(data))
            text = df.select(pl.all().cast(pl.String, strict=False)).write_ndjson()
        else:
            text = data.decode("utf-8", errors="replace")
        if word.search(text) or any(n in text for n in needles):
            found.append(key)
    return found


# ------------------------------------------------------------------ erasure
@pytest.mark.slow  # builds a shop into the bucket: ~20-40 s on 2 shared cores
def test_erase_in_a_bucket_removes_the_subject_from_every_object(
    shop, s3_server, monkeypatch, capsys
):
    """Check `hortus erase` on s3://: no object of the lakehouse holds the subject afterwards
    (every version's data files, Delta logs, the checkpoint), counts reconcile, the commits
    carry the lease token and lineage, and the audit log in the bucket verifies."""
    root, lake, subject_id = shop
    lh = Lakehouse.open(root, user="pipeline")
    assert lh.paths.lakehouse_uri == lake
    subject = erasure.resolve(lh, subject_id)
    raw = lh.read("bronze.users").filter(pl.col("user_id") == subject_id).row(0, named=True)
    assert raw["email"] in subject.raw and token(raw["email"], OLD) in subject.tokens
    needles = [*subject.raw, *subject.tokens]
    before_objects = _holding(_objects(s3_server, lake), subject_id, needles)
    assert any("/silver/events/" in k for k in before_objects)
    assert any("/restricted/bronze/users/" in k for k in before_objects)
    before = {r["table"]: r for r in reconcile(lh)}
    events_v = lh.version("silver.events")
    lh.close()

    code, text = _cli(monkeypatch, capsys, root, "erase", "--subject", subject_id,
                      "--reason", "DSR-17")  # fmt: skip
    assert code == 0, text
    assert "recommender@v1" in text and "reports redacted: reports/score/summary.json" in text
    assert subject_id not in text and raw["email"] not in text

    # the hidden-data scan, independent of Hortus: every object of the lakehouse's prefix
    assert _holding(_objects(s3_server, lake), subject_id, needles) == []
    lh = Lakehouse.open(root, user="pipeline")
    assert erasure.find_subject(lh, subject) == []  # Hortus's own scan agrees
    assert not lh.paths.online_store.read_bytes().count(subject_id.encode())
    kept = lh.read("bronze.reviews").filter(pl.col("_raw").str.contains("r0000999"))
    assert kept.height == 1 and "[ERASED]" in kept["_raw"][0]  # another buyer's review kept
    after = {r["table"]: r for r in reconcile(lh)}
    assert all(r["reconciles"] for r in after.values()), after
    assert after["silver.users"]["landed"] == before["silver.users"]["landed"] - 1
    rec = lh.read("ops.erasures").row(0, named=True)
    assert rec["subject_ref"] == subject.ref and rec["complete"] and rec["rows"] > 0
    assert json.loads(rec["models_affected"]) == ["recommender@v1"]
    # under the leases in the bucket: the token is inside each commit, with the lineage
    dt = lh.location("silver.events").delta()
    assert dt.transaction_version("hortus-lease/silver") is not None
    last = dt.history(1)[0]
    assert last["hortus.stage"] == "erase" and last["hortus.user"] == "dana"
    assert last["hortus.note"] == rec["erasure_id"] and "hortus.git_commit" in last
    assert json.loads(rec["tables"])["silver.events"]["versions_held"][-1] == events_v
    # time travel to a version that held them says so (its files left the bucket)
    with pytest.raises(HortusError, match="right-to-erasure request"):
        lh.read("silver.events", version=events_v)
    assert lh.read("silver.events", version=lh.version("silver.events")).height > 0
    # the audit log (in the bucket) verifies and says what was removed where
    audit = AuditLog.open(default_path(lh.paths), secrets_dir=lh.paths.secrets)
    assert audit.verify().ok
    log = audit.show()
    erased = log.filter(pl.col("action") == "erase")
    assert {"bronze.users", "silver.events", "ops.erasures"} <= set(erased["object"])
    assert not log["detail"].str.contains(subject_id).any()
    versions = {n: lh.version(n) for n in ("bronze.users", "silver.events", "ops.erasures")}
    lh.close()
    # erasing twice: a clear message, nothing changed
    code, text = _cli(monkeypatch, capsys, root, "erase", "--subject", subject_id,
                      "--reason", "DSR-17")  # fmt: skip
    assert code == 0 and "already erased" in text, text
    lh = Lakehouse.open(root, user="pipeline")
    assert {n: lh.version(n) for n in versions} == versions
    lh.close()


@pytest.mark.slow  # builds a shop into the bucket: ~20-40 s on 2 shared cores
def test_erase_in_a_bucket_waits_for_no_one_and_refuses_a_held_scope(shop, monkeypatch, capsys):
    """Check a live lease in the bucket (another writer on silver) refuses the erasure
    before anything changes, naming the holder; unknown subjects exit 2."""
    root, lake, subject_id = shop
    lh = Lakehouse.open(root, user="pipeline")
    v = {n: lh.version(n) for n in ("bronze.users", "silver.users")}
    lh.close()
    code, text = _cli(monkeypatch, capsys, root, "erase", "--subject", "u999999", "--reason", "x")
    assert code == 2 and "no data subject" in text, text
    held = lease.acquire(lake, "silver", holder="pipeline", stage="silver")
    try:
        code, text = _cli(monkeypatch, capsys, root, "erase", "--subject", subject_id,
                          "--reason", "x")  # fmt: skip
    finally:
        held.release()
    assert code == 2 and "pipeline" in text and "silver" in text, text
    lh = Lakehouse.open(root, user="pipeline")
    assert {n: lh.version(n) for n in v} == v
    lh.close()


# ----------------------------------------------------------------- rotation
def _raw(lh: Lakehouse, name: str) -> pl.DataFrame:
    """Return a table as stored in the bucket (no masking: tokens as they are)."""
    where = lh.location(name)
    return pl.read_delta(where.uri, **where.write_kwargs())


def _snapshot(root: Path) -> dict:
    """Return what a rotation must keep: counts, joins on tokens, re-identified values."""
    lh = Lakehouse.open(root, user="dana")
    users = _raw(lh, "silver.users")
    events = _raw(lh, "silver.events")
    joined = events.drop_nulls("ip_address").join(
        users.select("user_id", "ip_address"), on="ip_address", how="inner"
    )
    mine = users.sort("user_id").head(10)
    values = {
        col: lh.reidentify("silver.users", col, mine[col].to_list())["value"].to_list()
        for col in ("email", "name")
    }
    log = _raw(lh, "ops.prediction_log")
    emails = log["request"].str.json_path_match("$.email")
    logged = log.with_columns(emails.alias("email")).join(users, on="email", how="inner")
    counts = {
        c.full_name: _raw(lh, c.full_name).height
        for c in lh.catalog
        if lh.exists(c.full_name) and c.layer != "ops"
    }
    lh.close()
    return {
        "counts": counts,
        "ip_join": joined.select("event_id", "user_id").sort("event_id").to_dicts(),
        "reidentified": values,
        "logged_users": sorted(logged["user_id"].to_list()),
    }


def _old_tokens_left(root: Path) -> list[str]:
    lh = Lakehouse.open(root, user="dana")
    values, _ = rotation._raw_values(lh)
    olds = tokenize_series(values["v"].unique(), OLD)
    left = [
        f"{name}.{col}"
        for name, cols in rotation.token_tables(lh).items()
        for col in cols
        if rotation._tokens_in(lh, name, col).is_in(olds.implode()).any()
    ]
    lh.close()
    return left


@pytest.mark.slow  # builds a shop into the bucket: ~20-40 s on 2 shared cores
def test_rotation_in_a_bucket_rekeys_every_table_and_keeps_every_join(shop, monkeypatch, capsys):
    """Check `hortus keys rotate pii` on s3://: one fenced commit per table with lineage,
    no old-key token left, joins, counts and re-identification unchanged, audited."""
    root, lake, _ = shop
    before = _snapshot(root)
    lh = Lakehouse.open(root, user="dana")
    tables = sorted(rotation.token_tables(lh))
    versions = {t: lh.version(t) for t in tables}
    lh.close()
    assert {"silver.users", "silver.events", "ops.prediction_log"} <= set(tables)

    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii")
    assert code == 0, text
    assert _old_tokens_left(root) == []
    assert _snapshot(root) == before
    ring = read_keyring(Paths.at(root).secrets)
    assert ring["current"] == 2 and ring["rotation"] is None
    lh = Lakehouse.open(root, user="dana")
    for t in tables:
        assert lh.version(t) == versions[t] + 1, t  # one commit per table
        dt = lh.location(t).delta()
        last = dt.history(1)[0]
        assert last["hortus.stage"] == "rotate_keys" and last["hortus.pii_key_version"] == "2"
        assert json.loads(last["hortus.inputs"])[t] == versions[t]
        scope = lease.scope_for(lh.catalog.get(t).layer, t)
        if scope is not None:  # the lease token went into the commit (the fence)
            assert dt.transaction_version(f"hortus-lease/{scope}") is not None, t
    audit = AuditLog.open(default_path(lh.paths), secrets_dir=lh.paths.secrets)
    assert audit.verify().ok
    rotated = audit.show().filter(pl.col("action") == "rotate_keys")
    assert set(tables) <= set(rotated["object"])
    lh.close()


@pytest.mark.slow  # builds a shop into the bucket: ~20-40 s on 2 shared cores
def test_rotation_in_a_bucket_interrupted_resumes(shop, tmp_path, monkeypatch, capsys):
    """Check a rotation stopped after its first table (a crash) is refused until resumed, on
    every machine (the keyring is shared through the bucket), then `--resume` finishes it:
    one commit per table in all, joins kept; another machine then needs the new key."""
    root, _, _ = shop
    before = _snapshot(root)
    lh = Lakehouse.open(root, user="dana")
    tables = sorted(rotation.token_tables(lh))
    versions = {t: lh.version(t) for t in tables}

    class Stop(Exception):
        pass

    def stop(t: rotation.TableRekey) -> None:
        raise Stop(t.table)

    with pytest.raises(Stop) as first:
        rotation.rotate(lh, after_table=stop)
    lh.close()
    done = str(first.value)
    ring = read_keyring(Paths.at(root).secrets)
    assert ring["current"] == 1 and ring["rotation"]["tables"][done]["status"] == "done"
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii")
    assert code == 2 and "--resume" in text
    # another machine (its own secrets folder, the same bucket) may not tokenise meanwhile
    other = tmp_path / "machine-b" / ".hortus" / "secrets"
    with pytest.raises(RotationInProgress, match="--resume"):
        load_key(other)
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii", "--resume")
    assert code == 0 and "resumed and finished" in text, text
    lh = Lakehouse.open(root, user="dana")
    assert {t: lh.version(t) for t in tables} == {t: v + 1 for t, v in versions.items()}
    lh.close()
    # ... and afterwards it needs the new key: its old one is refused, not used
    with pytest.raises(HortusError, match="no PII tokenisation key v2: set HORTUS_PII_KEY_V2"):
        load_key(other)
    new = (Paths.at(root).secrets / "pii.v2.key").read_text().strip()
    monkeypatch.setenv("HORTUS_PII_KEY_V2", new)
    assert load_key(other) == new.encode()
    with pytest.raises(HortusError, match="not the current v2"):
        check_current(other, OLD)  # a process that loaded v1 before the rotation
    assert _snapshot(root) == before
    assert _old_tokens_left(root) == []


def test_a_rotation_whose_lease_is_taken_over_in_the_bucket_writes_nothing_more(small_shop):
    """Check the fence on s3://: the rotation's silver lease is taken over after its first
    table; its next commit into silver fails with LeaseLost and nothing lands there."""
    root, lake, _ = small_shop
    lh = Lakehouse.open(root, user="dana")
    tables = sorted(rotation.token_tables(lh))
    versions = {t: lh.version(t) for t in tables}
    silver_tables = [t for t in tables if t.startswith("silver.")]
    taken: list[lease.Lease] = []

    def take_over(t: rotation.TableRekey) -> None:
        if taken:
            return
        mine = lease.held(lake, "silver")
        mine._stop.set()  # the rotation stalls: its lease expires, another writer takes it
        mine._thread.join()
        got = lease.store_for(lake).get("silver")
        expired = lease.LeaseRecord.from_bytes(got[0])
        expired = lease.LeaseRecord(**{**expired.__dict__, "expires_at": 0.0})
        assert lease.store_for(lake).compare_and_swap("silver", got[1], expired.to_bytes())
        taken.append(lease.acquire(lake, "silver", holder="other", stage="silver", wait=0))

    first = tables[0]
    assert not first.startswith("silver.")  # the takeover happens before silver's turn
    with pytest.raises(lease.LeaseLost, match="taken over"):
        rotation.rotate(lh, after_table=take_over)
    lh.close()
    assert taken and taken[0].token >= 2
    # the rotation stays in progress, for every machine of the bucket: nothing tokenises
    with pytest.raises(RotationInProgress):
        load_key(root.parent / "machine-b" / ".hortus" / "secrets")
    lh = Lakehouse.open(root, user="pipeline")
    for t in silver_tables:  # the fence commit only: no re-keyed rows landed
        dt = lh.location(t).delta()
        assert dt.version() == versions[t] + 1, t
        assert dt.history(1)[0]["hortus.note"] == f"lease fence silver#{taken[0].token}"
    taken[0].release()
    lh.close()


# ------------------------------------------------------ the audit trust folder
ANCHORER = """
import sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hortus.governance._audit_keys import TrustStore

uri, start = sys.argv[1], int(sys.argv[2])
key = Ed25519PrivateKey.from_private_bytes(bytes(32))
trust = TrustStore(uri)
for seq in range(start, 41, 2):  # interleaved with the other writer's seqs
    trust.anchor(key, seq, f"{seq:064x}", seq)
    trust.anchor(key, max(1, seq - 7), f"{max(1, seq - 7):064x}", seq)  # a late, older one
"""


def _records(n: int, who: str = "alex") -> list:
    from hortus.governance.audit import AuditRecord

    return [AuditRecord(who, "read", "silver.users", detail=f"{who}{i}") for i in range(n)]


def test_the_audit_trust_is_in_the_bucket_and_another_machine_catches_a_cut_tail(
    project, s3_lake, s3_server, tmp_path, monkeypatch
):
    """Check the trust folder of a log in a bucket: public keys and anchors in the bucket
    (no private key there, nothing local); a second machine (another project folder,
    verifying only) verifies the same chain, and catches a cut last commit."""
    uri = f"{s3_lake}/ops/audit_log"
    a = AuditLog.open(uri, secrets_dir=project.secrets)
    for i in range(3):  # three commits, three anchors
        a.append(*_records(2, f"a{i}"))
    head = a.head()
    prefix = s3_lake.removeprefix(f"s3://{s3_server.bucket}/")
    trust = [k.removeprefix(f"{prefix}/ops/audit_log.trust/")
             for k in s3_server.keys(f"{prefix}/ops/audit_log.trust/")]  # fmt: skip
    assert [k for k in trust if k.startswith("keys/")] == [
        f"keys/{next(iter(a.trust.public_keys())).replace(':', '-')}.pub"
    ]
    assert "anchors/head.json" in trust and f"anchors/{head[0]:020d}.json" in trust
    client = s3_server.client()
    for key in s3_server.keys(f"{prefix}/ops/audit_log.trust/"):
        body = client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
        assert b"PRIVATE" not in body  # public material only
    assert not (project.root / ".hortus" / "audit_trust").exists()  # nothing kept locally
    assert json.loads(client.get_object(Bucket=s3_server.bucket,
                                        Key=f"{prefix}/ops/audit_log.trust/anchors/head.json")
                      ["Body"].read())["seq"] == head[0]  # fmt: skip

    # another machine: its own project folder, no trust folder, no signing key
    other = tmp_path / "machine-b"
    monkeypatch.delenv("HORTUS_AUDIT_KEY")
    b = AuditLog.open(uri, secrets_dir=other / ".hortus" / "secrets", signing=False)
    result = b.verify()
    assert result.ok, str(result)
    # the last commit of the log is cut in the bucket: machine B sees it
    last = s3_server.keys(f"{prefix}/ops/audit_log/_delta_log/")[-1]
    assert last.endswith(".json")
    client.delete_object(Bucket=s3_server.bucket, Key=last)
    result = AuditLog.open(uri, secrets_dir=other / ".hortus" / "secrets", signing=False).verify()
    assert not result.ok and "anchor" in str(result), str(result)
    # and machine A refuses to extend the cut log (it never re-anchors a cut tail)
    monkeypatch.setenv("HORTUS_AUDIT_KEY", "test-only-audit-key")
    a = AuditLog.open(uri, secrets_dir=project.secrets)
    with pytest.raises(Exception, match="does not reach the last anchor"):
        a.append(_records(1)[0])


def test_anchors_in_the_bucket_never_roll_back_with_two_writers(s3_lake, s3_server):
    """Check two processes anchoring interleaved (and late, older) seqs at once: the head
    ends at the greatest seq, every seq is kept; a head moved back by hand is overruled."""
    import subprocess
    import sys

    from hortus.governance._audit_keys import ANCHOR_HEAD, TrustStore

    uri = f"{s3_lake}/ops/audit_log.trust"
    procs = [
        subprocess.Popen([sys.executable, "-c", ANCHORER, uri, str(start)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for start in (1, 2)
    ]  # fmt: skip
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trust = TrustStore(uri)
    client = s3_server.client()
    prefix = s3_lake.removeprefix(f"s3://{s3_server.bucket}/")
    head_key = f"{prefix}/ops/audit_log.trust/{ANCHOR_HEAD}"
    head = json.loads(client.get_object(Bucket=s3_server.bucket, Key=head_key)["Body"].read())
    assert head["seq"] == 40  # the head object itself: never moved back by the late anchors
    assert trust.latest_anchor() == head
    kept = [k.rsplit("/", 1)[-1] for k in s3_server.keys(f"{prefix}/ops/audit_log.trust/anchors/")]
    assert kept == [f"{s:020d}.json" for s in range(1, 41)] + ["head.json"]
    # an older anchor put over the head by hand (not through TrustStore): the kept
    # anchors after it still name the true head
    old = client.get_object(
        Bucket=s3_server.bucket, Key=f"{prefix}/ops/audit_log.trust/anchors/{12:020d}.json"
    )["Body"]
    client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/ops/audit_log.trust/{ANCHOR_HEAD}",
                      Body=old.read())  # fmt: skip
    assert trust.latest_anchor()["seq"] == 40


def test_a_trust_folder_kept_locally_by_an_older_version_moves_to_the_bucket(
    project, s3_lake, tmp_path, monkeypatch
):
    """Check a log whose trust folder an older version kept on the writer's machine: the
    next open copies its public keys and last anchor into the bucket (once), and another
    machine then verifies the chain."""
    from hortus.governance import audit

    uri = f"{s3_lake}/ops/audit_log"
    local = audit._local_trust(uri, project.secrets)
    old = audit.AuditLog.open(uri, secrets_dir=project.secrets)
    old.trust_root = local  # where the older version put it
    old.append(*_records(3))
    trust_dir = f"{uri}.trust"
    assert (local / "anchors.jsonl").exists() and audit.TrustStore(
        trust_dir
    ).latest_anchor() is None
    audit.AuditLog.open(uri, secrets_dir=project.secrets)  # adopts it
    moved = audit.TrustStore(trust_dir)
    assert moved.latest_anchor()["seq"] == old.head()[0]
    assert set(moved.public_keys()) == set(audit.TrustStore(local).public_keys())
    monkeypatch.delenv("HORTUS_AUDIT_KEY")
    other = tmp_path / "machine-b" / ".hortus" / "secrets"
    result = audit.AuditLog.open(uri, secrets_dir=other, signing=False).verify()
    assert result.ok, str(result)


KILL_AFTER_COMMIT = r"""
import os, signal, sys
from hortus.governance import rotation
real, calls = rotation.rekey_table, [0]
def patched(*a, **k):
    out = real(*a, **k)
    calls[0] += 1
    if calls[0] == 2:  # the 2nd table committed in the bucket, the keyring not updated yet
        os.kill(os.getpid(), signal.SIGKILL)
    return out
rotation.rekey_table = patched
from hortus.cli.core import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # builds a shop into the bucket, then a rotation killed and resumed: ~40 s
def test_rotation_in_a_bucket_killed_after_a_commit_resumes_with_one_commit_per_table(
    shop, monkeypatch, capsys
):
    """Check kill -9 right after a table's commit in the bucket (before the keyring says so):
    `--resume` takes the dead process's leases over (fence commits), finishes, and every
    table holds exactly one re-key commit; joins and counts kept, no old token left."""
    import os
    import subprocess
    import sys

    root, _, _ = shop
    before = _snapshot(root)
    lh = Lakehouse.open(root, user="dana")
    tables = sorted(rotation.token_tables(lh))
    versions = {t: lh.version(t) for t in tables}
    lh.close()
    env = os.environ | {"HORTUS_USER": "dana", "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_COMMIT, "--root", str(root), "keys", "rotate", "pii"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    ring = read_keyring(Paths.at(root).secrets)
    assert [s["status"] for s in ring["rotation"]["tables"].values()].count("done") == 1
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii", "--resume")
    assert code == 0 and "resumed and finished" in text, text
    assert text.count("already re-keyed") == 2  # recorded, and found done from its data
    lh = Lakehouse.open(root, user="dana")
    for t in tables:
        later = [h for h in lh.location(t).delta().history() if h["version"] > versions[t]]
        stages = [h.get("hortus.stage") for h in later]
        assert stages.count("rotate_keys") == 1, (t, stages)  # the fence commits aside
        assert set(stages) <= {"rotate_keys", "lease"}, (t, stages)
    lh.close()
    assert _snapshot(root) == before
    assert _old_tokens_left(root) == []


KILL_ERASE = r"""
import os, signal, sys
from hortus.governance import erasure
real = erasure._erase_table
def patched(lh, c, *a, **k):
    out = real(lh, c, *a, **k)
    if c.full_name == "bronze.events":  # a table of raw values erased, bronze.users not yet
        os.kill(os.getpid(), signal.SIGKILL)
    return out
erasure._erase_table = patched
from hortus.cli.core import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # builds a shop into the bucket, then an erasure killed and run again: ~50 s
def test_erase_in_a_bucket_killed_part_way_is_finished_by_running_it_again(
    shop, s3_server, monkeypatch, capsys
):
    """Check kill -9 of `hortus erase` right after it erased bronze.events (every other table
    but bronze.users done, leases held, no record written): the same command again takes
    the leases over, finishes (the mention of their e-mail in another buyer's review is
    redacted: resolved from bronze.users), records one complete erasure, and no object of
    the lakehouse names the subject."""
    import os
    import subprocess
    import sys

    root, lake, subject_id = shop
    lh = Lakehouse.open(root, user="pipeline")
    subject = erasure.resolve(lh, subject_id)
    lh.close()
    argv = ["--root", str(root), "erase", "--subject", subject_id, "--reason", "DSR-9"]
    env = os.environ | {"HORTUS_USER": "dana", "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_ERASE, *argv], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    lh = Lakehouse.open(root, user="pipeline")
    records = erasure.erasures(lh)  # the intent: pending, the keyed reference only
    assert records.height == 1 and records["status"][0] == "pending"
    assert records["subject_ref"][0] == subject.ref
    assert lh.read("bronze.users").filter(pl.col("user_id") == subject_id).height == 1
    assert lh.read("silver.users").filter(pl.col("user_id") == subject_id).height == 0
    lh.close()
    code, text = _cli(monkeypatch, capsys, root, "erase", "--subject", subject_id,
                      "--reason", "DSR-9")  # fmt: skip
    assert code == 0, text
    needles = [*subject.raw, *subject.tokens]
    assert _holding(_objects(s3_server, lake), subject_id, needles) == []
    lh = Lakehouse.open(root, user="pipeline")
    records = erasure.erasures(lh)
    assert records.height == 1 and records["complete"][0] and records["status"][0] == "done"
    kept = lh.read("bronze.reviews").filter(pl.col("_raw").str.contains("r0000999"))
    assert kept.height == 1 and "[ERASED]" in kept["_raw"][0]
    assert all(r["reconciles"] for r in reconcile(lh))
    audit = AuditLog.open(default_path(lh.paths), secrets_dir=lh.paths.secrets)
    assert audit.verify().ok
    lh.close()


@pytest.mark.slow  # builds a shop into the bucket, then an erasure killed and run again: ~50 s
def test_erase_in_a_bucket_killed_before_its_record_is_finished_by_running_it_again(
    shop, s3_server, monkeypatch, capsys
):
    """Check kill -9 of `hortus erase` on s3:// after its last table, before its record is
    complete: ops.erasures in the bucket holds the pending intent (keyed reference only),
    the same command again completes that row (not "no data subject"): exactly one complete
    erasure row naming every table, no object of the lakehouse names the subject."""
    from test_erasure import kill_before_record

    root, lake, subject_id = shop
    lh = Lakehouse.open(root, user="pipeline")
    subject = erasure.resolve(lh, subject_id)
    lh.close()
    kill_before_record(root, subject_id, "DSR-23")
    needles = [*subject.raw, *subject.tokens]
    lh = Lakehouse.open(root, user="pipeline")
    pending = erasure.erasure_log(lh, pending=True)
    assert pending.height == 1 and pending["subject_ref"][0] == subject.ref
    assert not any(n in pending.write_json() for n in [subject_id, *needles])
    assert {"silver.events", "bronze.users"} <= set(json.loads(pending["tables"][0]))
    lh.close()
    code, text = _cli(monkeypatch, capsys, root, "erase", "--subject", subject_id,
                      "--reason", "DSR-23")  # fmt: skip
    assert code == 0 and "left pending" in text, text
    assert _holding(_objects(s3_server, lake), subject_id, needles) == []
    lh = Lakehouse.open(root, user="pipeline")
    records = erasure.erasures(lh)
    assert records.height == 1, records
    rec = records.row(0, named=True)
    assert rec["erasure_id"] == pending["erasure_id"][0] and rec["status"] == "done"
    assert rec["complete"] and rec["rows"] == pending["rows"][0] > 0
    assert json.loads(rec["models_affected"]) == ["recommender@v1"]
    assert erasure.find_subject(lh, subject) == []
    assert erasure.erasure_log(lh, pending=True).height == 0
    audit = AuditLog.open(default_path(lh.paths), secrets_dir=lh.paths.secrets)
    assert audit.verify().ok and not audit.show()["detail"].str.contains(subject_id).any()
    lh.close()


def test_a_lakehouse_opened_on_a_bucket_uses_the_bucket_keyring(
    tmp_path, s3_lake, s3_server, monkeypatch
):
    """Check the PII keyring follows the lakehouse given to `Lakehouse.open(lakehouse=...)`,
    with HORTUS_LAKEHOUSE unset: a rotation in progress recorded in the bucket stops another
    machine's silver and key loading, the bucket's current version is the one required;
    the same project opened on local disk keeps its own keyring."""
    from conftest import with_policy
    from hortus.lakehouse import silver
    from hortus.lakehouse.pii import SHARED_KEYRING, write_keyring

    monkeypatch.delenv("HORTUS_LAKEHOUSE", raising=False)
    machines = []
    for name in ("machine-a", "machine-b"):
        (tmp_path / name).mkdir()
        with_policy(tmp_path / name)
        machines.append(tmp_path / name)
    a = Lakehouse.open(machines[0], user="dana", lakehouse=s3_lake)
    assert a.paths.lakehouse_uri == s3_lake
    rotating = {"id": "KR-x", "from": 1, "to": 2, "tables": {"silver.users": {"status": "done"}}}
    ring = read_keyring(a.paths) | {"rotation": rotating}
    write_keyring(a.paths, ring)  # machine A's rotation, interrupted
    prefix = s3_lake.removeprefix(f"s3://{s3_server.bucket}/")
    assert s3_server.keys(f"{prefix}/{SHARED_KEYRING}") == [f"{prefix}/{SHARED_KEYRING}"]
    b = Lakehouse.open(machines[1], user="pipeline", lakehouse=s3_lake)
    assert not (b.paths.secrets / "pii.keyring.json").exists()  # nothing local on B
    with pytest.raises(RotationInProgress, match="KR-x"):
        load_key(b.paths)
    with pytest.raises(RotationInProgress):  # silver's own check, through the Lakehouse
        silver.build(b, silver.SilverOptions(key=OLD))
    assert rotation.status(b, scan=False)["rotation"]["id"] == "KR-x"
    assert b._key() is None  # masking refuses to tokenise too (masked strings become null)
    # the same project on local disk: its own (absent) keyring, v1 current
    local = Lakehouse.open(machines[1], user="pipeline", lakehouse=machines[1] / "lakehouse")
    assert load_key(local.paths) == OLD
    # finished in the bucket: B needs v2 and refuses the v1 it holds
    write_keyring(a.paths, read_keyring(a.paths) | {"rotation": None, "current": 2,
                                                    "retired": [1]})  # fmt: skip
    with pytest.raises(HortusError, match="no PII tokenisation key v2"):
        load_key(b.paths)
    monkeypatch.setenv("HORTUS_PII_KEY_V2", "the-new-key")  # given to machine B
    assert load_key(b.paths) == b"the-new-key"
    with pytest.raises(HortusError, match="not the current v2"):
        check_current(b.paths, OLD)  # a process of B that loaded v1 before


def test_audit_key_rotation_in_a_bucket_publishes_the_new_key_for_every_machine(
    project, s3_lake, s3_server, tmp_path, monkeypatch, capsys
):
    """Check `hortus audit rotate-key` with the log in a bucket: the new public key goes to
    the bucket's trust folder (the private one stays in the key folder on this machine),
    records after it are signed by it, and a machine holding no key verifies both versions."""
    monkeypatch.setenv("HORTUS_LAKEHOUSE", s3_lake)
    uri = f"{s3_lake}/ops/audit_log"
    AuditLog.open(uri, secrets_dir=project.secrets).append(*_records(3))
    code, text = _cli(monkeypatch, capsys, project.root, "audit", "rotate-key")
    assert code == 0 and "audit key rotated" in text, text
    log = AuditLog.open(uri, secrets_dir=project.secrets)  # signs with the stored new key
    log.append(*_records(2, "bo"))
    prefix = s3_lake.removeprefix(f"s3://{s3_server.bucket}/")
    keys = s3_server.keys(f"{prefix}/ops/audit_log.trust/keys/")
    assert len(keys) == 2 and all(k.endswith(".pub") for k in keys)
    assert not any(k.endswith(".pem") for k in s3_server.keys(prefix + "/"))  # no private key
    assert list((project.secrets / "audit_signing").glob("ed25519-*.pem"))  # kept here
    rows = log.show()
    assert rows["action"].to_list().count("key_rotation") == 1
    assert rows["key_id"].n_unique() == 2
    monkeypatch.delenv("HORTUS_AUDIT_KEY")
    other = tmp_path / "machine-b" / ".hortus" / "secrets"
    result = AuditLog.open(uri, secrets_dir=other, signing=False).verify()
    assert result.ok and result.checked == rows.height, str(result)
