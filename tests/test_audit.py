"""Audit log: keyed hash chain on a Delta table; every tampering is detected and located."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from hortus.governance.access import Policy
from hortus.governance.audit import (
    DEMO_AUDIT_KEY,
    GENESIS,
    AuditError,
    AuditLog,
    AuditRecord,
    canonical,
    load_audit_key,
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


def test_hash_is_hmac_of_canonical_json_with_prev_hash(log):
    """Check that each stored hash is HMAC-SHA256(key, canonical JSON incl. prev_hash)."""
    for row in stored(log).to_dicts():
        assert row["hash"] == hmac.new(KEY, canonical(row), hashlib.sha256).hexdigest()
        assert b'"prev_hash":"' + row["prev_hash"].encode() in canonical(row)


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
    """Check that an edit at seq 3 with the chain recomputed by plain SHA-256 breaks at 3."""
    df = stored(log).with_columns(
        outcome=pl.when(pl.col("seq") == 3).then(pl.lit("allowed")).otherwise("outcome")
    )
    forged = rechain(df, 3, lambda b: hashlib.sha256(b).hexdigest())
    rewrite(log, forged)
    # the forged chain is internally consistent: every link matches
    assert forged["prev_hash"].to_list()[1:] == forged["hash"].to_list()[:-1]
    result = log.verify()
    assert not result.ok and result.broken_at == 3 and result.checked == 2
    assert "plain unkeyed SHA-256" in result.reason


def test_verify_detects_a_rewrite_with_another_key(log):
    """Check that a chain recomputed from seq 2 with a wrong key breaks at 2."""
    wrong = b"guessed-key"
    df = stored(log).with_columns(
        user=pl.when(pl.col("seq") == 2).then(pl.lit("nobody")).otherwise("user")
    )
    rewrite(log, rechain(df, 2, lambda b: hmac.new(wrong, b, hashlib.sha256).hexdigest()))
    assert AuditLog(log.path, wrong).verify().broken_at == 1  # seq 1 still has the real key
    result = log.verify()
    assert not result.ok and result.broken_at == 2 and "another key" in result.reason


def test_verify_with_anchor_detects_a_truncated_tail(log):
    """Check that dropping the last record passes the chain but fails against the anchor."""
    anchor = log.head()
    rewrite(log, stored(log).filter(pl.col("seq") != 6))
    assert log.verify().ok  # documented limitation: a shorter chain is still a chain
    result = log.verify(anchor=anchor)
    assert not result.ok and result.broken_at == 6 and "truncated" in result.reason


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
