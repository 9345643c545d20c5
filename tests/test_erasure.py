"""Right to erasure and subject access, end to end (issue 19 item 1).

A small shop is ingested, built to silver and the feature logs, materialised into the
online store, given a prediction log, a registered model version and a report naming the
subject; then `hortus erase` removes one buyer.  Afterwards no data file of any table
(every reachable Delta version), no Delta log, the online store file nor any report holds
their id, raw identifiers or tokens; bronze still reconciles with silver + quarantine; the
audit log verifies and records the erasure; older versions say they were erased.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from conftest import TEST_KEY, register_version, with_policy, write_prediction_log
from hortus.cli.core import main
from hortus.config import Paths
from hortus.errors import HortusError
from hortus.governance import erasure
from hortus.governance.audit import AuditLog, default_path
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.pii import token
from hortus.lakehouse.silver import reconcile
from hortus.lakehouse.tables import Lakehouse
from test_online_redis import redis_url  # noqa: F401 - the redis-server fixture

SHOP = {"seed": 3, "days": 8, "users": 120, "plants": 30}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Build a small shop: bronze, silver, quarantine, features, online store, logs, a model."""
    from hortus.domains.plantshop.features import FEATURES
    from hortus.domains.plantshop.simulate import SimConfig, simulate
    from hortus.features import store as feature_store
    from hortus.lakehouse import silver
    from hortus.lakehouse.ingest import ingest

    paths = Paths.at(tmp_path_factory.mktemp("erase"))
    with_policy(paths.root)
    simulate(SimConfig(**SHOP), paths.data)
    # the subject: a buyer who wrote a review; a rejected event of theirs (quarantined, raw
    # JSON kept) and another buyer's review naming them (raw in bronze, redacted in silver)
    reviews = pl.read_ndjson(sorted((paths.data / "reviews").glob("*.jsonl"))[0])
    subject = reviews["user_id"].sort()[0]
    users = pl.concat(
        [pl.read_csv(f, infer_schema=False) for f in sorted((paths.data / "users").glob("*.csv"))]
    )
    me = users.filter(pl.col("user_id") == subject).row(0, named=True)
    other = users.filter(pl.col("user_id") != subject)["user_id"][0]
    (paths.root / "subject.txt").write_text(subject)
    bad = {"event_id": "e00000000000000ff", "event_type": "bogus", "ts": "2025-03-02T10:00:00Z",
           "session_id": "s0000000000ff", "user_id": subject, "plant_id": "p0001"}  # fmt: skip
    (paths.data / "events" / "events-2025-03-08-late.jsonl").write_text(json.dumps(bad) + "\n")
    mention = {"review_id": "r0000999", "user_id": other, "plant_id": "p0001", "rating": 4,
               "text": f"A gift for {me['name']} ({me['email']}), she loved it.",
               "ts": "2025-03-06T10:00:00.000000Z"}  # fmt: skip
    (paths.data / "reviews" / "reviews-2025-03-06-late.jsonl").write_text(
        json.dumps(mention) + "\n"
    )
    lh = Lakehouse(paths=paths, catalog=Catalog.load(), stage="test", user="pipeline")
    ingest(paths.data, lh)
    silver.build(lh, silver.SilverOptions(key=TEST_KEY.encode()))
    offline = feature_store.build_offline(lh, FEATURES)
    logs = feature_store.read_logs(lh, FEATURES)
    at = lh.read("silver.events")["ts"].max()
    store = feature_store.OnlineStore(paths.online_store, FEATURES)
    store.materialize(
        logs, at, {c.full_name: c for c in lh.catalog},
        versions={t: v["version"] for t, v in offline.items()},
    )  # fmt: skip
    store.close()
    users = lh.read("silver.users")["user_id"].sort().to_list()
    # a checkpoint (hortus maintain writes them) holds the statistics of the files it lists
    from deltalake import DeltaTable

    DeltaTable(str(lh.path("silver.users"))).create_checkpoint()
    write_prediction_log(lh, [{"user_id": u, "plant_id": "p0001"} for u in users])
    # a registered version trained on the feature log as it is now (before the erasure)
    register_version(lh, next(iter(offline)))
    (paths.reports / "score").mkdir(parents=True)
    (paths.reports / "score" / "summary.json").write_text(
        json.dumps({"top": [users[0], subject], "note": "first buyers"}), encoding="utf-8"
    )
    lh.close()
    return paths.root


@pytest.fixture
def root(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "proj"))


def _subject(root: Path) -> str:
    return (root / "subject.txt").read_text()


def _erase(root: Path, monkeypatch, capsys, *argv: str, user: str = "dana") -> tuple[int, str]:
    monkeypatch.setenv("HORTUS_USER", user)
    code = main(["--root", str(root), "erase", *argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_erase_removes_the_subject_everywhere(root, monkeypatch, capsys):
    """Check the scan of every table, version, log, online store and report after an erasure."""
    lh = Lakehouse.open(root, user="pipeline")
    subject_id = _subject(root)
    subject = erasure.resolve(lh, subject_id)
    raw = lh.read("bronze.users").filter(pl.col("user_id") == subject_id).row(0, named=True)
    assert raw["email"] in subject.raw and token(raw["email"], TEST_KEY.encode()) in subject.tokens
    assert erasure.find_subject(lh, subject)  # held everywhere before
    before = {r["table"]: r for r in reconcile(lh)}
    events_v = lh.version("silver.events")
    quarantined = lh.read("quarantine.rows").filter(pl.col("raw").str.contains(subject_id))
    assert quarantined.height == 1
    mention = lh.read("bronze.reviews").filter(pl.col("_raw").str.contains(raw["email"]))
    assert mention.height == 1 and subject_id not in mention["_raw"][0]

    code, text = _erase(root, monkeypatch, capsys, "--subject", subject_id, "--reason", "DSR-17")
    assert code == 0, text
    assert "recommender@v1" in text  # the model trained on their data is listed
    assert "reports redacted: reports/score/summary.json" in text
    assert "landing snapshot still names this subject" in text  # data/ is left, and said so
    assert subject_id not in text and raw["email"] not in text

    lh = Lakehouse.open(root, user="pipeline")
    assert erasure.find_subject(lh, subject) == []
    import pyarrow.parquet as pq

    folder = lh.path("silver.users")
    (cp,) = (folder / "_delta_log").glob("*.checkpoint.parquet")
    adds = [r["add"] for r in pq.read_table(cp).to_pylist() if r.get("add")]
    gone = [a for a in adds if not (folder / a["path"]).exists()]
    assert gone and all(a["stats"] is None for a in gone)  # no min/max of erased files kept
    for name, value in (("bronze.users", raw["email"]), ("bronze.users", raw["name"])):
        assert lh.read(name).filter(pl.col("email") == value).height == 0
    assert lh.read("quarantine.rows").filter(pl.col("raw").str.contains(subject_id)).height == 0
    # another buyer's review that named them is kept, their name and e-mail redacted
    kept = lh.read("bronze.reviews").filter(pl.col("_raw").str.contains("r0000999"))
    assert kept.height == 1 and "[ERASED]" in kept["_raw"][0]
    # counts reconcile; the erased rows are what is missing
    after = {r["table"]: r for r in reconcile(lh)}
    assert all(r["reconciles"] for r in after.values()), after
    assert after["silver.users"]["landed"] == before["silver.users"]["landed"] - 1
    rec = lh.read("ops.erasures").row(0, named=True)
    assert rec["subject_ref"] == subject.ref and rec["complete"] and rec["rows"] > 0
    assert subject_id not in json.dumps(rec, default=str)
    assert json.loads(rec["models_affected"]) == ["recommender@v1"]
    # the audit log verifies and says what was removed where (never the subject itself)
    audit = AuditLog.open(default_path(Paths.at(root)), secrets_dir=Paths.at(root).secrets)
    assert audit.verify().ok
    log = audit.show()
    erased = log.filter(pl.col("action") == "erase")
    assert {"bronze.users", "silver.events", "ops.erasures"} <= set(erased["object"])
    assert not log["detail"].str.contains(subject_id).any()
    # time travel to a version that held them says so
    with pytest.raises(HortusError, match="right-to-erasure request"):
        lh.read("silver.events", version=events_v)
    assert any("inputs erased" in s for s in erasure.erasures_of(lh, {"silver.users": 0}))
    # the model card of a version trained before it says so instead of failing
    from hortus.publishing._card_facts import _training_tables

    _, _, _, notes = _training_tables(lh, {"tables_read": {"silver.events": events_v}}, None)
    assert any("right-to-erasure" in n for n in notes), notes

    # erasing twice: a clear message, nothing changed
    versions = {n: lh.version(n) for n in ("bronze.users", "silver.events", "ops.erasures")}
    code, text = _erase(root, monkeypatch, capsys, "--subject", subject_id, "--reason", "DSR-17")
    assert code == 0 and "already erased" in text, text
    lh = Lakehouse.open(root, user="pipeline")
    assert {n: lh.version(n) for n in versions} == versions


def test_erase_refuses_unknown_subject_and_missing_grant(root, monkeypatch, capsys):
    """Check exit 2 and nothing changed for an unknown subject; a denial without the grant."""
    lh = Lakehouse.open(root, user="pipeline")
    v = lh.version("bronze.users")
    code, text = _erase(root, monkeypatch, capsys, "--subject", "u999999", "--reason", "DSR-1")
    assert code == 2 and "no data subject" in text, text
    code, text = _erase(
        root, monkeypatch, capsys, "--subject", _subject(root), "--reason", "x", user="alex"
    )
    assert code != 0 and "access denied" in text, text
    # a stage writing silver meanwhile: refused before anything changes, naming the holder
    from hortus.lakehouse import lease

    held = lease.acquire(Paths.at(root).lakehouse, "silver", holder="pipeline", stage="silver")
    try:
        code, text = _erase(root, monkeypatch, capsys, "--subject", _subject(root), "--reason", "x")
    finally:
        held.release()
    assert code == 2 and "pipeline" in text and "silver" in text, text
    code, text = _erase(
        root, monkeypatch, capsys, "--subject", _subject(root), "--reason", "x", "--dry-run"
    )
    assert code == 0 and "would remove 1 row(s)" in text and "nothing changed" in text, text
    assert Lakehouse.open(root, user="pipeline").version("bronze.users") == v


KILL_BEFORE_RECORD = r"""
import os, signal, sys
from hortus.governance import erasure
def killed(*a, **k):  # called once, after the last table, before the record is completed
    os.kill(os.getpid(), signal.SIGKILL)
erasure.affected_models = killed
from hortus.cli.core import main
sys.exit(main(sys.argv[1:]))
"""


def kill_before_record(root: Path, subject_id: str, reason: str) -> None:
    """Run `hortus erase` as dana in a process killed with -9 after its last table."""
    import os
    import subprocess
    import sys

    argv = ["--root", str(root), "erase", "--subject", subject_id, "--reason", reason]
    env = os.environ | {"HORTUS_USER": "dana", "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_BEFORE_RECORD, *argv], env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]


def test_erase_killed_after_its_last_table_is_finished_by_running_it_again(
    root, monkeypatch, capsys
):
    """Check kill -9 of `hortus erase` after its last table, before its record is complete:
    ops.erasures holds it as pending (the keyed reference only), `hortus subject erasures
    --pending` lists it, and the same command again finishes it (not "no data subject"):
    one complete row with every table the killed run erased, a clean scan, the audit log
    verifies and never names the subject."""
    subject_id = _subject(root)
    lh = Lakehouse.open(root, user="pipeline")
    subject = erasure.resolve(lh, subject_id)
    events_v = lh.version("silver.events")
    lh.close()
    kill_before_record(root, subject_id, "DSR-21")
    lh = Lakehouse.open(root, user="pipeline")
    assert lh.read("silver.users").filter(pl.col("user_id") == subject_id).height == 0
    assert lh.read("bronze.users").filter(pl.col("user_id") == subject_id).height == 0
    rows = erasure.erasures(lh)
    assert rows.height == 1 and rows["status"][0] == "pending" and not rows["complete"][0]
    pending = rows.row(0, named=True)
    assert pending["subject_ref"] == subject.ref
    assert subject_id not in json.dumps(pending, default=str)
    for r in subject.raw:
        assert r not in json.dumps(pending, default=str)
    held = json.loads(pending["tables"])
    assert {"silver.events", "bronze.users"} <= set(held)  # recorded table by table
    monkeypatch.setenv("HORTUS_USER", "dana")
    assert main(["--root", str(root), "subject", "erasures", "--pending"]) == 0
    listed = capsys.readouterr().out
    assert pending["erasure_id"] in listed and "PENDING" in listed, listed

    code, text = _erase(root, monkeypatch, capsys, "--subject", subject_id, "--reason", "DSR-21")
    assert code == 0, text
    assert "no data subject" not in text and "left pending" in text, text
    assert subject_id not in text
    lh = Lakehouse.open(root, user="pipeline")
    rows = erasure.erasures(lh)
    assert rows.height == 1, rows  # one erasure, one row
    rec = rows.row(0, named=True)
    assert rec["erasure_id"] == pending["erasure_id"]
    assert rec["status"] == "done" and rec["complete"] and rec["rows"] == pending["rows"] > 0
    assert json.loads(rec["models_affected"]) == ["recommender@v1"]
    assert json.loads(rec["tables"])["silver.events"]["versions_held"][-1] == events_v
    assert json.loads(rec["reports"]) == ["reports/score/summary.json"]
    assert erasure.find_subject(lh, subject) == []
    assert all(r["reconciles"] for r in reconcile(lh))
    audit = AuditLog.open(default_path(Paths.at(root)), secrets_dir=Paths.at(root).secrets)
    assert audit.verify().ok
    log = audit.show()
    assert not log["detail"].str.contains(subject_id).any()
    done = log.filter((pl.col("action") == "erase") & (pl.col("object") == "ops.erasures"))
    assert done["detail"].str.contains(f"{rec['erasure_id']} .*complete=True resumed").any()
    assert main(["--root", str(root), "subject", "erasures", "--pending"]) == 0
    assert "no pending erasure" in capsys.readouterr().out
    # once more: already erased, nothing changed
    code, text = _erase(root, monkeypatch, capsys, "--subject", subject_id, "--reason", "DSR-21")
    assert code == 0 and "already erased" in text, text


def test_erasures_listing_needs_a_grant(root, monkeypatch, capsys):
    """Check `hortus subject erasures`: refused (audited) without read or erase on ops.erasures."""
    monkeypatch.setenv("HORTUS_USER", "sam")
    assert main(["--root", str(root), "subject", "erasures"]) != 0
    assert "access denied" in capsys.readouterr().err
    monkeypatch.setenv("HORTUS_USER", "dana")
    assert main(["--root", str(root), "subject", "erasures"]) == 0
    assert "no erasure recorded" in capsys.readouterr().out


def test_subject_export(root, monkeypatch, capsys, tmp_path):
    """Check the export: one JSON file with the raw record, audited without the values."""
    subject_id = _subject(root)
    out = tmp_path / "export.json"
    monkeypatch.setenv("HORTUS_USER", "dana")
    code = main(["--root", str(root), "subject", "export", subject_id, "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    doc = json.loads(out.read_text())
    users = doc["tables"]["bronze.users"]
    assert users[0]["user_id"] == subject_id and "@" in users[0]["email"]
    assert "silver.events" in doc["tables"]
    log = AuditLog.open(default_path(Paths.at(root)), secrets_dir=Paths.at(root).secrets).show()
    exports = log.filter(pl.col("action") == "export")
    assert exports.height == 1 and subject_id not in exports["detail"][0]
    monkeypatch.setenv("HORTUS_USER", "alex")
    code = main(["--root", str(root), "subject", "export", subject_id, "--out", str(out)])
    assert code != 0


def test_redis_online_store_deletes_the_subject(built, redis_url):  # noqa: F811
    """Check `delete_entities` on the Redis backend: every field of the subject is gone."""
    import redis

    from hortus.domains.plantshop.features import FEATURES
    from hortus.features import store as fsm
    from hortus.features._redis import SEP, RedisOnlineStore

    lh = Lakehouse.open(built, user="pipeline")
    logs = fsm.read_logs(lh, FEATURES)
    at = lh.read("silver.events")["ts"].max()
    store = RedisOnlineStore(redis_url, FEATURES, prefix="test:erase")
    store.materialize(logs, at, {c.full_name: c for c in lh.catalog})
    subject = _subject(built)
    assert store.delete_entities("user_id", subject) > 0
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for key in client.scan_iter(match="test:erase:*:group:*"):
        assert not [f for f, _ in client.hscan_iter(key) if subject in f.split(SEP)], key
    assert store.delete_entities("user_id", subject) == 0  # twice: nothing left


def test_an_erasure_log_from_before_the_status_column_gains_it(lakehouse):
    """Check ops.erasures written before intents existed (no status column): its rows read
    as done, a new erasure's pending row is appended (the column added) and completed."""
    lh = lakehouse
    schema = lh.catalog.get(erasure.ERASURES).schema
    old = {"erasure_id": "ER-old", "subject_ref": "era_" + "0" * 24, "subject_key": "user_id",
           "requested_by": "dana", "reason": "DSR-1", "erased_at": datetime.now(UTC),
           "tables": "{}", "rows": 3, "online_rows": 0, "reports": "[]",
           "models_affected": "[]", "complete": True}  # fmt: skip
    where = lh.location(erasure.ERASURES)
    where.local.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame([old], schema={k: v for k, v in schema.items() if k != "status"}).write_delta(
        where.uri
    )
    subject = erasure.Subject("user_id", "u000001", "silver.users", "era_" + "1" * 24)
    record = erasure._Record.intent(lh, "ER-new", subject, "DSR-2 'urgent'")
    log = erasure.erasures(lh).sort("erasure_id")
    assert log["status"].to_list() == ["pending", "done"]  # ER-new, ER-old
    assert erasure.erasure_log(lh, pending=True)["erasure_id"].to_list() == ["ER-new"]
    record.add_table(erasure.TableErasure("silver.events", rows=2, versions_held=[1, 2]))
    at = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    record.row |= {"status": "done", "complete": True, "erased_at": at}
    record.write(lh)  # an update by id, its values as SQL literals (quotes escaped)
    log = erasure.erasures(lh).sort("erasure_id")
    assert log.height == 2 and log["status"].to_list() == ["done", "done"]
    assert log["erased_at"][0] == at and log["reason"][0] == "DSR-2 'urgent'"
    assert json.loads(log["tables"][0])["silver.events"]["versions_held"] == [1, 2]
    assert log["rows"].to_list() == [2, 3] and "u000001" not in log.write_json()
