"""Audit log: signed hash chain on a Delta table; every tampering is detected and located.

Key versions, rotation (also interrupted), anchors and the migration of a legacy HMAC
log are here too; the audit writer process and the OS-user test are in
tests/test_audit_writer.py.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from deltalake import DeltaTable

from hortus.governance._audit_keys import KeyStore, TrustStore, derived_key, key_id_of
from hortus.governance.access import Policy
from hortus.governance.audit import (
    DEMO_AUDIT_KEY,
    GENESIS,
    HASHED_FIELDS,
    AuditError,
    AuditLog,
    AuditRecord,
    canonical,
    content_hash,
    load_audit_key,
    record_hash,
    signed_message,
    write_demo_audit_key,
)

KEY = b"test-audit-key"
T0 = datetime(2025, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)
POLICY = Path(__file__).resolve().parents[1] / "access_policy.yaml"


def records(n: int, start: int = 0) -> list[AuditRecord]:
    """Return n distinct records, every third one denied."""
    return [
        AuditRecord(
            user=["alex", "dana", "sam"][i % 3],
            action=["read", "write", "read"][i % 3],
            object=f"silver.t{i}",
            outcome="denied" if i % 3 == 2 else "allowed",
            detail=f"detail {i}",
            policy_version="v" * 64,
            ts=T0 + timedelta(seconds=i),
        )
        for i in range(start, start + n)
    ]


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    """Return a log of six records written in two batches (3 + 3)."""
    log = AuditLog(tmp_path / "ops" / "audit_log", KEY)
    log.append(*records(3))
    log.append(*records(3, start=3))
    return log


def stored(log: AuditLog) -> pl.DataFrame:
    """Read the raw Delta table behind the log, in seq order."""
    return pl.read_delta(str(log.path)).sort("seq")


def rewrite(log: AuditLog, df: pl.DataFrame) -> None:
    """Rewrite the whole Delta table (what someone with write access could do)."""
    df.write_delta(str(log.path), mode="overwrite")


def rechain(df: pl.DataFrame, start_seq: int, digest) -> pl.DataFrame:
    """Recompute prev_hash/hash from start_seq onward with `digest(canonical bytes)`."""
    rows = df.sort("seq").to_dicts()
    prev = rows[start_seq - 2]["hash"] if start_seq > 1 else GENESIS
    for row in rows[start_seq - 1 :]:
        row["prev_hash"] = prev
        row["hash"] = prev = digest(canonical(row))
    return pl.DataFrame(rows, schema=df.schema)


def test_append_then_verify_is_ok(log):
    """Check that an untouched log verifies and its chain links seq 1..n."""
    result = log.verify()
    assert result.ok and result.checked == 6 and result.broken_at is None
    df = stored(log)
    assert df["seq"].to_list() == [1, 2, 3, 4, 5, 6]
    assert df["prev_hash"].to_list() == [GENESIS, *df["hash"].to_list()[:-1]]
    assert result.head == (6, df["hash"][-1]) == log.head()
    assert df["ts"].to_list()[0] == T0  # microseconds and UTC survive the Delta round trip


def test_hash_is_sha256_of_canonical_json_and_each_commit_head_is_signed(log):
    """Check hash = SHA-256(canonical JSON incl. prev_hash, key_id, os_user) and that the
    last record of each commit (seq 3 and 6) carries an Ed25519 signature of its hash."""
    import os
    import pwd

    pub = derived_key(KEY).public_key()
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert set(TrustStore(log.trust.dir).public_keys()) == {key_id_of(pub)}
    for row in stored(log).to_dicts():
        assert row["key_id"] == key_id_of(pub)
        assert row["os_user"] == me
        assert row["hash"] == hashlib.sha256(canonical(row)).hexdigest()
        assert b'"prev_hash":"' + row["prev_hash"].encode() in canonical(row)
        assert b'"key_id":"' + row["key_id"].encode() in canonical(row)
        assert b'"os_user":"' + me.encode() in canonical(row)
        if row["seq"] in (3, 6):
            pub.verify(bytes.fromhex(row["sig"]), signed_message(row["hash"]))  # raises if bad
        else:
            assert row["sig"] is None


def test_append_continues_the_chain_from_another_instance(log):
    """Check that a new AuditLog on the same path appends seq 7 linked to seq 6."""
    again = AuditLog(log.path, KEY)
    head = log.head()
    out = again.append(AuditRecord("paula", "approve", "recommender"))
    assert out["seq"].to_list() == [7] and out["prev_hash"][0] == head[1]
    assert again.verify().ok and again.verify().checked == 7


def test_interleaved_appends_from_two_instances_keep_one_chain_and_policy_changes(log):
    """Check that the cached tail of one instance is not reused after another appended."""
    other = AuditLog(log.path, KEY)
    first = AuditRecord("alex", "read", "silver.a", policy_version="p1")
    second = AuditRecord("alex", "read", "silver.b", policy_version="p2")
    log.append(first, track_policy=True)  # v -> p1: a policy_change record first
    other.append(second, track_policy=True)  # p1 -> p2, seen by the other instance
    log.append(AuditRecord("sam", "read", "silver.c", policy_version="p2"), track_policy=True)
    log.append(AuditRecord("sam", "read", "silver.d", policy_version="p2"), track_policy=True)
    assert log.verify().ok and log.verify().checked == stored(log).height
    changes = stored(log).filter(pl.col("action") == "policy_change")["detail"]
    assert changes.str.extract(r"^policy_version (\S+ -> \S+)").to_list() == [
        "v" * 64 + " -> p1",
        "p1 -> p2",
    ]  # p2 -> p2 is no change, and log saw other's p1 -> p2
    assert stored(log)["seq"].to_list() == list(range(1, stored(log).height + 1))


def test_show_returns_all_or_only_denied_records(log):
    """Check that show() lists the records in seq order and can keep denied ones only."""
    everything = log.show()
    assert everything["seq"].to_list() == [1, 2, 3, 4, 5, 6]
    denied = log.show(denied_only=True)
    assert denied["seq"].to_list() == [3, 6]
    assert set(denied["outcome"]) == {"denied"}
    assert log.show(user="dana")["seq"].to_list() == [2, 5]


def test_verify_detects_an_edited_record(log):
    """Check that editing one field of seq 4 in the Delta table breaks the chain at 4."""
    df = stored(log).with_columns(
        detail=pl.when(pl.col("seq") == 4).then(pl.lit("nothing to see")).otherwise("detail")
    )
    rewrite(log, df)
    result = log.verify()
    assert not result.ok and result.broken_at == 4 and result.checked == 3
    assert "hash of seq 4" in result.reason and "edited" in result.reason


def test_verify_detects_a_deleted_record(log):
    """Check that deleting seq 3 breaks the chain at 4 and names the missing seq."""
    rewrite(log, stored(log).filter(pl.col("seq") != 3))
    result = log.verify()
    assert not result.ok and result.broken_at == 4 and result.checked == 2
    assert "seq 3 missing between 2 and 4" in result.reason


def test_verify_detects_deletion_of_the_first_record(log):
    """Check that deleting seq 1 breaks the chain at 2."""
    rewrite(log, stored(log).filter(pl.col("seq") != 1))
    result = log.verify()
    assert not result.ok and result.broken_at == 2 and "expected 1" in result.reason


def test_verify_detects_swapped_records(log):
    """Check that swapping the positions (seq) of records 3 and 4 breaks the chain at 3."""
    swapped = stored(log).with_columns(
        seq=pl.when(pl.col("seq") == 3)
        .then(4)
        .when(pl.col("seq") == 4)
        .then(3)
        .otherwise(pl.col("seq"))
    )
    rewrite(log, swapped)
    result = log.verify()
    assert not result.ok and result.broken_at == 3 and result.checked == 2
    assert "reordered" in result.reason


def test_verify_detects_a_duplicated_record(log):
    """Check that a replayed copy of seq 5 (or a forked writer) is reported at seq 5."""
    df = stored(log)
    rewrite(log, pl.concat([df, df.filter(pl.col("seq") == 5)]))
    result = log.verify()
    assert not result.ok and result.broken_at == 5 and "appears twice" in result.reason


def test_verify_detects_a_plain_sha256_rewrite_from_the_edited_record(log):
    """Check that an edit at seq 3 with the chain recomputed by plain SHA-256 fails the
    signed head of its commit (seq 3): reported as seq 1..3, after the last good head."""
    df = stored(log).with_columns(
        outcome=pl.when(pl.col("seq") == 3).then(pl.lit("allowed")).otherwise("outcome")
    )
    forged = rechain(df, 3, lambda b: hashlib.sha256(b).hexdigest())
    rewrite(log, forged)
    # the forged chain is internally consistent: every link matches
    assert forged["prev_hash"].to_list()[1:] == forged["hash"].to_list()[:-1]
    result = log.verify()
    assert not result.ok and result.broken_at == 1 and result.checked == 0
    assert "plain unkeyed SHA-256" in result.reason and "seq 1..3" in result.reason
    assert "chain head at seq 3" in result.reason


def test_verify_detects_a_rewrite_with_another_key(log):
    """Check that a chain recomputed from seq 2 with a guessed HMAC key breaks at 2."""
    wrong = b"guessed-key"
    df = stored(log).with_columns(
        user=pl.when(pl.col("seq") == 2).then(pl.lit("nobody")).otherwise("user")
    )
    rewrite(log, rechain(df, 2, lambda b: hmac.new(wrong, b, hashlib.sha256).hexdigest()))
    # the audit secret plays no part in checking signed records: any verifier agrees
    assert AuditLog(log.path, wrong).verify().broken_at == 2
    result = log.verify()
    assert not result.ok and result.broken_at == 2 and "another key" in result.reason


def resign(df: pl.DataFrame, start_seq: int, key: Ed25519PrivateKey) -> pl.DataFrame:
    """Rewrite from start_seq onward as a forger with their own Ed25519 key would."""
    rows = df.sort("seq").with_columns(pl.col("ts").dt.epoch("us")).to_dicts()
    prev = rows[start_seq - 2]["hash"] if start_seq > 1 else GENESIS
    for row in rows[start_seq - 1 :]:
        row |= {"prev_hash": prev, "key_id": key_id_of(key.public_key())}
        row["hash"] = prev = content_hash(row)
        row["sig"] = key.sign(signed_message(prev)).hex()
    out = pl.DataFrame(rows).with_columns(pl.from_epoch("ts", "us").dt.replace_time_zone("UTC"))
    return out.select(df.columns).cast(dict(df.schema))


@pytest.mark.parametrize("start", [1, 4])
def test_verify_fails_a_rewrite_re_signed_with_an_unknown_key(log, start):
    """Check that a consistent chain signed by a key nobody published fails at its first record."""
    forged = stored(log).with_columns(
        detail=pl.when(pl.col("seq") == start).then(pl.lit("forged")).otherwise("detail")
    )
    rewrite(log, resign(forged, start, Ed25519PrivateKey.generate()))
    result = log.verify(anchors=False)  # the signatures alone catch it
    assert not result.ok and result.broken_at == start and result.checked == start - 1
    assert "unknown" in result.reason and f"seq {start}" in result.reason


def test_verify_detects_a_truncated_tail_against_the_latest_anchor(log):
    """Check that dropping the last commit's records passes the chain alone but fails the
    anchor, and that dropping only its signed head fails even without anchors."""
    anchor = log.head()
    df = stored(log)
    assert log.trust.latest_anchor()["seq"] == 6  # written by the append
    rewrite(log, df.filter(pl.col("seq") != 6))
    cut = log.verify(anchors=False)  # seq 4..5 are left without their signed head
    assert not cut.ok and cut.broken_at == 4 and cut.checked == 3
    assert "seq 4..5 carry no signed chain head" in cut.reason
    rewrite(log, df.filter(pl.col("seq") <= 3))
    assert log.verify(anchors=False).ok  # a shorter chain of whole commits is still a chain
    result = log.verify()  # anchored by default
    assert not result.ok and result.broken_at == 6 and "truncated" in result.reason
    explicit = log.verify(anchor=anchor, anchors=False)
    assert not explicit.ok and explicit.broken_at == 6


def test_verify_detects_a_deleted_last_commit(log):
    """Check that removing the last Delta commit (and its files) fails against the anchor."""
    version = DeltaTable(str(log.path)).version()
    (log.path / "_delta_log" / f"{version:020d}.json").unlink()
    assert stored(log)["seq"].to_list() == [1, 2, 3]  # the second batch is gone
    result = AuditLog(log.path, KEY).verify()
    assert not result.ok and result.broken_at == 6 and "deleted last commit" in result.reason


def test_append_refuses_a_log_cut_below_its_last_anchor(log):
    """Check that an append never re-anchors a cut tail (which would hide the cut)."""
    rewrite(log, stored(log).filter(pl.col("seq") <= 4))
    with pytest.raises(AuditError, match=r"head \(seq 4\) does not reach the last anchor"):
        AuditLog(log.path, KEY).append(*records(1))
    assert stored(log).height == 4 and log.trust.latest_anchor()["seq"] == 6
    assert not log.verify().ok


def test_verify_fails_without_anchors_file_and_with_a_forged_anchor(log):
    """Check that a deleted anchors file, or an anchor signed by another key, fails verify."""
    line = log.trust.anchors_path.read_text().splitlines()[-1]
    log.trust.anchors_path.unlink()
    result = log.verify()
    assert not result.ok and "no anchor" in result.reason
    TrustStore(log.trust.dir).anchor(Ed25519PrivateKey.generate(), 6, log.head()[1], 2)
    result = log.verify()
    assert not result.ok and "not signed by an audit key" in result.reason
    log.trust.anchors_path.write_text(line + "\n")  # the writer's own anchor again
    assert log.verify().ok


# ------------------------------------------------------------------ key rotation
def test_rotation_records_before_and_after_verify_and_the_old_key_is_retired(log, tmp_path):
    """Check a rotation end to end: both key versions verify, the retired key cannot sign."""
    store = KeyStore(tmp_path / "keys")
    out = log.rotate_key(store)
    old_id, new_id = key_id_of(derived_key(KEY).public_key()), out["to"]
    assert out["from"] == old_id and new_id != old_id and not out["resumed"]
    assert (store.dir.stat().st_mode & 0o777, store.current_id()) == (0o700, new_id)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in store.dir.glob("*.pem"))
    rotated = AuditLog(log.path, KEY, key_dir=store.dir)
    rotated.append(*records(2, start=10))
    df = stored(log)
    assert df["key_id"].to_list() == [old_id] * 7 + [new_id] * 2
    rotation = df.row(6, named=True)
    assert rotation["action"] == "key_rotation" and new_id in rotation["detail"]
    result = AuditLog(log.path, None).verify()  # a reader with no key at all
    assert result.ok and result.checked == 9
    # the old key alone can no longer append ...
    with pytest.raises(AuditError, match=f"active audit key is {new_id}"):
        AuditLog(log.path, KEY).append(*records(1))
    # ... and a record it signs after the rotation (a leaked old key) does not verify
    forged = resign(df.filter(pl.col("seq") <= 8), 8, derived_key(KEY))
    rewrite(log, forged)
    result = log.verify(anchors=False)
    assert not result.ok and result.broken_at == 8 and "unknown or retired key" in result.reason


@pytest.mark.parametrize("crash", ["before_record", "after_record"])
def test_interrupted_rotation_resumes_with_the_same_key(log, tmp_path, monkeypatch, crash):
    """Check that a rotation killed before or after its log record finishes on a rerun."""
    store = KeyStore(tmp_path / "keys")
    target = "_append_signed" if crash == "before_record" else None

    def boom(*a, **k):
        raise RuntimeError("killed")

    if target:
        monkeypatch.setattr(AuditLog, target, boom)
    else:
        monkeypatch.setattr(KeyStore, "save", boom)
    with pytest.raises(RuntimeError, match="killed"):
        log.rotate_key(store)
    monkeypatch.undo()
    pending = key_id_of(store.pending().public_key())
    rotations = stored(log).filter(pl.col("action") == "key_rotation").height
    assert rotations == (0 if crash == "before_record" else 1)
    out = log.rotate_key(store)
    assert out["resumed"] and out["to"] == pending and store.current_id() == pending
    assert not store.pending_path.exists()
    assert stored(log).filter(pl.col("action") == "key_rotation").height == 1
    AuditLog(log.path, KEY, key_dir=store.dir).append(*records(1, start=20))
    assert log.verify().ok and stored(log)["key_id"][-1] == pending


def test_rotation_without_the_active_key_is_refused(log, tmp_path):
    """Check that a key folder that does not hold the active key cannot rotate."""
    stranger = AuditLog(log.path, b"not-the-secret")
    with pytest.raises(AuditError, match="do not hold it"):
        stranger.rotate_key(KeyStore(tmp_path / "keys"))
    assert log.verify().ok


# ------------------------------------------------------------ legacy HMAC logs
def legacy_log(path: Path, n: int) -> None:
    """Write a log as Hortus wrote it before signatures (HMAC chain, no key_id/sig)."""
    rows, prev = [], GENESIS
    for i, r in enumerate(records(n)):
        row = {
            "seq": i + 1,
            "ts": r.ts,
            "user": r.user,
            "action": r.action,
            "object": r.object,
            "outcome": r.outcome,
            "detail": r.detail,
            "policy_version": r.policy_version,
            "prev_hash": prev,
        }
        row["hash"] = prev = record_hash(row, KEY)
        rows.append(row)
    schema = {c: t for c, t in stored_schema().items() if c in [*HASHED_FIELDS, "hash"]}
    pl.DataFrame(rows, schema=schema).write_delta(str(path))


def stored_schema() -> pl.Schema:
    from hortus.governance.audit import SCHEMA

    return SCHEMA


def test_a_legacy_hmac_log_is_sealed_at_the_first_signed_append(tmp_path):
    """Check the migration: legacy records verify with the secret, or without it by digest."""
    path = tmp_path / "ops" / "audit_log"
    legacy_log(path, 4)
    log = AuditLog(path, KEY)
    log.append(*records(2, start=4))
    df = stored(log)
    assert df["key_id"].null_count() == 4 and df["action"][4] == "audit_migration"
    assert '"legacy_hmac_check":"ok"' in df["detail"][4] and '"legacy_records":4' in df["detail"][4]
    assert log.show()["key_id"].to_list()[:4] == ["hmac-v0"] * 4
    assert log.verify().ok and log.verify().checked == 7
    assert AuditLog(path, None).verify().ok  # no secret: checked against the signed digest
    # an edit of a legacy record: named with the secret, caught by the digest without it
    rewrite(log, df.with_columns(
        detail=pl.when(pl.col("seq") == 2).then(pl.lit("edited")).otherwise("detail")
    ))  # fmt: skip
    with_key = log.verify()
    assert not with_key.ok and with_key.broken_at == 2 and "legacy seq 2" in with_key.reason
    without = AuditLog(path, None).verify()
    assert not without.ok and "differ from the digest signed at the migration" in without.reason


def test_a_legacy_log_without_secret_or_migration_does_not_verify(tmp_path):
    """Check that unsigned legacy records are not taken on trust by a reader without the secret."""
    path = tmp_path / "audit_log"
    legacy_log(path, 3)
    assert AuditLog(path, KEY).verify().ok  # the old key still checks them
    result = AuditLog(path, None).verify()
    assert not result.ok and "only be checked with the old audit secret" in result.reason


def test_records_from_decisions_carry_outcome_and_policy_version(tmp_path):
    """Check that an access decision is logged with its outcome, detail and policy version."""
    policy = Policy.load(POLICY)
    log = AuditLog(tmp_path / "audit_log", KEY)
    log.append(
        AuditRecord.from_decision(policy.decide("alex", "read", "bronze.users")),
        AuditRecord.from_decision(policy.decide("alex", "read", "gold.kpi_daily")),
    )
    denied = log.show(denied_only=True)
    assert denied["object"].to_list() == ["bronze.users"]
    assert denied["detail"][0].startswith("missing: membership of a restricted-zone owner")
    assert set(log.show()["policy_version"]) == {policy.version}
    assert log.verify().ok


@pytest.mark.parametrize(
    ("record", "match"),
    [
        (AuditRecord("alex", "read", "t", outcome="maybe"), "outcome must be one of"),
        (AuditRecord("alex", "Read!", "t"), "action must be a lower-case word"),
        (AuditRecord("", "read", "t"), "user and object must be non-empty"),
        (AuditRecord("alex", "read", "t", ts=datetime(2025, 1, 1)), "ts .* has no time zone"),
    ],
)
def test_append_refuses_a_bad_record_and_writes_nothing(tmp_path, record, match):
    """Check that a malformed record is refused with its position, and nothing is written."""
    log = AuditLog(tmp_path / "audit_log", KEY)
    with pytest.raises(AuditError, match=f"record 2 of the batch: {match}"):
        log.append(AuditRecord("alex", "read", "ok"), record)
    assert not log.exists()


def test_audit_key_comes_from_env_then_file(tmp_path, monkeypatch):
    """Check key lookup order (env, then file), the demo key label and the missing-key error."""
    monkeypatch.delenv("HORTUS_AUDIT_KEY", raising=False)
    secrets = tmp_path / ".hortus" / "secrets"
    with pytest.raises(AuditError, match="no audit key: set HORTUS_AUDIT_KEY"):
        load_audit_key(secrets)
    path = write_demo_audit_key(secrets)
    assert "DEMO-ONLY" in DEMO_AUDIT_KEY and path.stat().st_mode & 0o777 == 0o600
    assert load_audit_key(secrets) == DEMO_AUDIT_KEY.encode()
    path.write_text("mine\n", encoding="utf-8")
    write_demo_audit_key(secrets)  # never overwrites an existing key
    assert load_audit_key(secrets) == b"mine"
    monkeypatch.setenv("HORTUS_AUDIT_KEY", "from-env")
    assert AuditLog.open(tmp_path / "log", secrets_dir=secrets).key == b"from-env"


# ------------------------------------------------- tail reads and per-commit signatures
def test_appends_read_only_the_tail_files_of_a_long_log(tmp_path):
    """Check that an append to a log of 40 commits opens the file of the last seq (and, when
    that record names no policy_version, the newest file that does), not every file, and
    still tracks the policy version and chains on the head."""
    path = tmp_path / "ops" / "audit_log"
    writer = AuditLog(path, KEY)
    for i in range(40):  # the last commit's record names no policy_version
        writer.append(*records(2, start=2 * i), track_policy=True)
    writer.append(AuditRecord("hortus", "maintain", "ops.audit_log"))
    fresh = AuditLog(path, KEY)  # a new process: no cached tail
    assert fresh.head() == (82, stored(fresh)["hash"][-1]) and fresh.tail_files_read == 1
    assert fresh.last_policy_version() == "v" * 64 and fresh.tail_files_read == 2
    out = fresh.append(*records(1, start=100), track_policy=True)
    assert fresh.tail_files_read == 2  # not the 41 files of the log
    assert out["seq"].to_list() == [83]  # same policy version: no policy_change record
    changed = AuditLog(path, KEY).append(
        AuditRecord("alex", "read", "t", policy_version="w" * 64), track_policy=True
    )
    assert changed["action"].to_list() == ["policy_change", "read"]
    assert f"{'v' * 64} -> {'w' * 64}" in changed["detail"][0]
    assert AuditLog(path, KEY).verify().ok


def test_concurrent_appenders_on_one_long_log_re_chain_instead_of_forking(tmp_path):
    """Check that several processes appending at once (tail reads each) keep one chain."""
    import subprocess
    import sys

    path = tmp_path / "ops" / "audit_log"
    AuditLog(path, KEY).append(*records(3))
    code = (
        "import sys; from hortus.governance.audit import AuditLog, AuditRecord\n"
        "log = AuditLog(sys.argv[1], b'test-audit-key')\n"
        "for i in range(5): log.append(AuditRecord(sys.argv[2], 'read', f't{i}'))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), f"user{j}"]) for j in range(3)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    log = AuditLog(path, KEY)
    df = stored(log)
    assert df["seq"].to_list() == list(range(1, 19))
    assert log.verify().ok


def test_an_edit_re_chained_inside_a_commit_is_reported_as_the_range_of_that_commit(log):
    """Check that an edit at seq 5 with a consistent re-chain (plain SHA-256) is reported as
    seq 4..6: after the last good signed head (seq 3) up to the head that fails (seq 6)."""
    df = stored(log).with_columns(
        detail=pl.when(pl.col("seq") == 5).then(pl.lit("nothing")).otherwise("detail")
    )
    rewrite(log, rechain(df, 5, lambda b: hashlib.sha256(b).hexdigest()))
    result = log.verify(anchors=False)
    assert not result.ok and result.broken_at == 4 and result.checked == 3
    assert "seq 4..6" in result.reason and "last good signed head, seq 3" in result.reason


def test_an_unsigned_record_appended_with_a_valid_hash_is_reported(log):
    """Check that a record added at the end with the right prev_hash and hash but no
    signature (no key) fails as unsigned, even without anchors."""
    rows = stored(log).to_dicts()
    extra = rows[-1] | {"seq": 7, "prev_hash": rows[-1]["hash"], "detail": "added", "sig": None}
    extra["hash"] = content_hash(extra)
    rewrite(log, pl.DataFrame([*rows, extra], schema=stored(log).schema))
    result = log.verify(anchors=False)
    assert not result.ok and result.broken_at == 7 and result.checked == 6
    assert "seq 7 carry no signed chain head" in result.reason


def test_a_log_signed_on_every_record_still_verifies_and_appends(log):
    """Check the format written earlier in session 8 (a signature on every record): each
    signature is checked, and a per-commit append continues it."""
    key = derived_key(KEY)
    rows = stored(log).to_dicts()
    for row in rows:
        row["sig"] = key.sign(signed_message(row["hash"])).hex()
    rewrite(log, pl.DataFrame(rows, schema=stored(log).schema))
    assert log.verify().ok
    rows[1]["sig"] = Ed25519PrivateKey.generate().sign(signed_message(rows[1]["hash"])).hex()
    rewrite(log, pl.DataFrame(rows, schema=stored(log).schema))
    bad = log.verify()
    assert not bad.ok and bad.broken_at == 2 and "chain head at seq 2" in bad.reason
    rows[1]["sig"] = key.sign(signed_message(rows[1]["hash"])).hex()
    rewrite(log, pl.DataFrame(rows, schema=stored(log).schema))
    AuditLog(log.path, KEY).append(*records(2, start=6))
    assert log.verify().ok and log.verify().checked == 8
