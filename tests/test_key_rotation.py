"""PII key rotation end to end (issue 19 item 3, PII half) and keyed online audit records.

A small shop is ingested, built to silver and the feature logs, materialised into the
SQLite online store, and given a prediction log whose logged requests carry tokens inside
JSON text.  `hortus keys rotate pii` (as dana, data-engineers: the rotate_keys grant) then
re-keys every token; afterwards every join, the training-set join and `hortus access
reidentify` give the same results as before, counts are unchanged, no old token is left in
any table's current version, the audit log verifies and records each table, and each
rotation commit carries its lineage.  An interrupted rotation is finished with --resume;
the bad inputs (no key, unknown or retired version, a second start, a resume of nothing,
tokens whose raw values are gone, a missing grant) each get a clear error and change nothing.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from conftest import TEST_KEY, USERS_HEADER, user_row, with_policy, write_prediction_log
from hortus.cli.core import main
from hortus.config import Paths
from hortus.errors import HortusError
from hortus.governance import erasure, rotation
from hortus.governance.audit import AuditLog, default_path
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.pii import (
    RotationInProgress,
    keyed_ref,
    load_key,
    read_keyring,
    token,
    tokenize_series,
    write_keyring,
)
from hortus.lakehouse.tables import Lakehouse

SHOP = {"seed": 5, "days": 8, "users": 120, "plants": 30}
OLD = TEST_KEY.encode()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Build a small shop: bronze, silver, features, online store, a prediction log with tokens."""
    from hortus.domains.plantshop.features import FEATURES
    from hortus.domains.plantshop.simulate import SimConfig, simulate
    from hortus.features import store as feature_store
    from hortus.lakehouse import silver
    from hortus.lakehouse.ingest import ingest

    paths = Paths.at(tmp_path_factory.mktemp("rotate"))
    with_policy(paths.root)
    simulate(SimConfig(**SHOP), paths.data)
    lh = Lakehouse(paths=paths, catalog=Catalog.load(), stage="test", user="pipeline")
    ingest(paths.data, lh)
    silver.build(lh, silver.SilverOptions(key=OLD))
    offline = feature_store.build_offline(lh, FEATURES)
    at = lh.read("silver.events")["ts"].max()
    store = feature_store.OnlineStore(paths.online_store, FEATURES)
    store.materialize(
        feature_store.read_logs(lh, FEATURES), at + timedelta(microseconds=1),
        {c.full_name: c for c in lh.catalog},
        versions={t: v["version"] for t, v in offline.items()},
    )  # fmt: skip
    store.close()
    # a log whose JSON requests carry tokens inside text (a model fed a hashed e-mail)
    users = lh.read("silver.users").select("user_id", "email").sort("user_id").head(20)
    write_prediction_log(lh, [{"user_id": u, "email": e} for u, e in users.iter_rows()])
    lh.close()
    return paths.root


@pytest.fixture
def root(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "proj"))


def _cli(monkeypatch, capsys, root: Path, *argv: str, user: str = "dana") -> tuple[int, str]:
    monkeypatch.setenv("HORTUS_USER", user)
    code = main(["--root", str(root), *argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def _snapshot(root: Path) -> dict:
    """Return what a rotation must keep: counts, joins on tokens, re-identified values."""
    lh = Lakehouse.open(root, user="dana")
    users = pl.read_delta(str(lh.path("silver.users")))
    events = pl.read_delta(str(lh.path("silver.events")))
    sessions = events.drop_nulls("ip_address")
    joined = sessions.join(users.select("user_id", "ip_address"), on="ip_address", how="inner")
    ids = users["user_id"].sort().head(15)
    mine = users.filter(pl.col("user_id").is_in(ids.implode())).sort("user_id")
    values = {
        col: lh.reidentify("silver.users", col, mine[col].to_list())["value"].to_list()
        for col in ("email", "name", "ip_address")
    }
    log = pl.read_delta(str(lh.path("ops.prediction_log")))
    emails = log["request"].str.json_path_match("$.email")
    logged = log.with_columns(emails.alias("email")).join(users, on="email", how="inner")
    counts = {
        c.full_name: pl.scan_delta(str(lh.path(c.full_name))).select(pl.len()).collect().item()
        for c in lh.catalog
        if lh.exists(c.full_name) and c.full_name != "ops.audit_log"  # it grows with each read
    }
    lh.close()
    return {
        "counts": counts,
        "ip_join": joined.select("event_id", "user_id").sort("event_id").to_dicts(),
        "reidentified": values,
        "logged_users": sorted(logged["user_id"].to_list()),
    }


def _training_set(root: Path) -> pl.DataFrame:
    from hortus.domains.plantshop.features import FEATURES
    from hortus.features import store as feature_store

    lh = Lakehouse.open(root, user="pipeline")
    spine = (
        lh.read("silver.events")
        .filter(pl.col("event_type") == "view")
        .select("user_id", "plant_id", "ts")
        .drop_nulls()
        .sort("ts", "user_id", "plant_id")
        .head(300)
    )
    out = feature_store.training_set(lh, FEATURES, spine, "ts")
    lh.close()
    return out


def _columns_with_tokens_of(root: Path, key: bytes) -> list[str]:
    """Return 'table.column' where a token of `key` is in the current version."""
    lh = Lakehouse.open(root, user="dana")
    values, _ = rotation._raw_values(lh)
    olds = tokenize_series(values["v"].unique(), key)
    left = []
    for name, cols in rotation.token_tables(lh).items():
        for col in cols:
            found = rotation._tokens_in(lh, name, col)
            if found.is_in(olds.implode()).any():
                left.append(f"{name}.{col}")
    lh.close()
    return left


def _versions(root: Path) -> dict[str, int]:
    lh = Lakehouse.open(root, user="dana")
    out = {
        c.full_name: lh.version(c.full_name)
        for c in lh.catalog
        if lh.exists(c.full_name) and c.full_name != "ops.audit_log"  # denials are recorded
    }
    lh.close()
    return out


# ---------------------------------------------------------------- end to end
def test_rotation_rekeys_every_table_and_keeps_every_join(root, monkeypatch, capsys):
    """Check a rotation changes every token, keeps joins, counts, re-identification and lineage."""
    paths = Paths.at(root)
    before = _snapshot(root)
    training_before = _training_set(root)
    assert before["ip_join"] and before["logged_users"]  # the joins hold rows to keep
    versions = _versions(root)
    lh = Lakehouse.open(root, user="dana")
    assert set(rotation.token_tables(lh)) == {"silver.users", "silver.events", "ops.prediction_log"}
    lh.close()

    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii")
    assert code == 0, text
    assert "(v1 -> v2) done" in text and "pii.v2.key" in text
    new = load_key(paths.secrets)
    assert new != OLD and load_key(paths.secrets) == load_key(paths.secrets, version=2)
    assert (paths.secrets / "pii.v2.key").stat().st_mode & 0o777 == 0o600

    after = _snapshot(root)
    assert after == before  # counts, the token joins, re-identified values: all the same
    assert _training_set(root).equals(training_before)
    assert _columns_with_tokens_of(root, OLD) == []
    assert len(_columns_with_tokens_of(root, new)) == 7  # every token column: the new key's...
    lh = Lakehouse.open(root, user="dana")
    raw = lh.read("bronze.users").sort("user_id").row(0, named=True)
    ip = raw["ip_address"]  # shared by a buyer landed after the rotation (below)
    silver_row = lh.read("silver.users").filter(pl.col("user_id") == raw["user_id"])
    assert silver_row["email"][0] == token(raw["email"], new)  # ...as silver makes them now
    # one commit per re-keyed table, carrying its lineage; untouched tables unchanged
    now = _versions(root)
    for name in ("silver.users", "silver.events", "ops.prediction_log"):
        assert now[name] == versions[name] + 1, name
        meta = DeltaTable(str(lh.path(name))).history(1)[0]
        assert meta["hortus.stage"] == "rotate_keys" and meta["hortus.pii_key_version"] == "2"
        inputs = json.loads(meta["hortus.inputs"])
        assert inputs[name] == versions[name]
    # lineage names the restricted tables whose values re-keyed each table, no other
    sources = {n: set(json.loads(DeltaTable(str(lh.path(n))).history(1)[0]["hortus.inputs"]))
               for n in ("silver.users", "silver.events", "ops.prediction_log")}  # fmt: skip
    assert sources == {
        "silver.users": {"silver.users", "bronze.users"},
        "silver.events": {"silver.events", "bronze.events"},
        "ops.prediction_log": {"ops.prediction_log", "bronze.users"},
    }
    assert {n: v for n, v in now.items() if not n.startswith(("silver.", "ops."))} == {
        n: v for n, v in versions.items() if not n.startswith(("silver.", "ops."))
    }
    # erasure resolves the subject's tokens with the current key: they are where they are
    subject = erasure.resolve(lh, raw["user_id"])
    held = lh.read("silver.users").filter(pl.col("user_id") == raw["user_id"])
    assert set(held.select("name", "email").row(0)) <= set(subject.tokens)
    assert token(raw["email"], OLD) in subject.tokens  # and the old ones the history holds
    lh.close()

    code, text = _cli(monkeypatch, capsys, root, "keys", "status", "--json")
    st = json.loads(text)
    assert st["current"] == 2 and st["retired"] == [1] and st["rotation"] is None
    by_table = {t["table"]: t for t in st["tables"]}
    assert set(by_table) == {"silver.users", "silver.events", "ops.prediction_log"}
    assert all(t["key_version"] == 2 for t in by_table.values())
    assert by_table["silver.users"]["since_delta_version"] == now["silver.users"]
    # the audit log verifies and names every table re-keyed, the start and the switch
    audit = AuditLog.open(default_path(paths), secrets_dir=paths.secrets)
    assert audit.verify().ok
    log = audit.show().filter(pl.col("action") == "rotate_keys")
    assert {"silver.users", "silver.events", "ops.prediction_log", "pii_key"} <= set(log["object"])
    assert log["detail"].str.contains("finished").any()
    # the retired key is refused by name
    with pytest.raises(HortusError, match="v1 is retired"):
        load_key(paths.secrets, version=1)
    # new data after the rotation: a process still holding the old key is refused; the
    # stage's key (the current one) makes tokens that join the re-keyed rows
    from hortus.lakehouse import silver
    from hortus.lakehouse.ingest import ingest

    row = user_row(990001, email="late.buyer@example.org", ip_address=ip)
    (paths.data / "users" / "users-2025-03-08-late.csv").write_text(f"{USERS_HEADER}\n{row}\n")
    lh = Lakehouse.open(root, user="pipeline")
    ingest(paths.data, lh)
    with pytest.raises(HortusError, match="not the current v2 .* must be restarted"):
        silver.build(lh, silver.SilverOptions(key=OLD))
    silver.build(lh, silver.SilverOptions(key=load_key(paths.secrets)))
    users = lh.read("silver.users")
    late = users.filter(pl.col("user_id") == "u990001").row(0, named=True)
    assert late["email"] == token("late.buyer@example.org", new)
    twins = users.filter(pl.col("ip_address") == late["ip_address"])["user_id"].to_list()
    assert sorted(twins) == sorted([raw["user_id"], "u990001"])  # joins the re-keyed row
    lh.close()


def test_rotating_twice_and_the_online_audit_names_no_entity_key(root, monkeypatch, capsys):
    """Check a second rotation (v2 -> v3) keeps joins; online lookups audit keyed references."""
    from hortus.domains.plantshop.features import FEATURES
    from hortus.features.online import AUDIT_OBJECT, open_online

    before = _snapshot(root)
    assert _cli(monkeypatch, capsys, root, "keys", "rotate", "pii")[0] == 0
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii")
    assert code == 0 and "(v2 -> v3) done" in text, text
    assert _snapshot(root) == before
    paths = Paths.at(root)
    ring = read_keyring(paths.secrets)
    assert ring["current"] == 3 and ring["retired"] == [1, 2] and len(ring["history"]) == 2
    code, text = _cli(monkeypatch, capsys, root, "keys", "status")
    assert "current v3; retired: v1, v2" in text and "silver.users" in text

    # item 1 gap: an online lookup's audit record holds keyed references, never the key
    lh = Lakehouse.open(root, user="pipeline")
    keys = lh.read("silver.events").drop_nulls(["user_id", "plant_id"]).row(0, named=True)
    user, plant = keys["user_id"], keys["plant_id"]
    lh.close()
    with open_online(root, FEATURES, user="mia") as mia:
        mia.get_vectors([{"user_id": user, "plant_id": plant}], purpose="test")
        with pytest.raises(HortusError):
            mia.get_vector({"user_id": "u999999", "plant_id": plant})
    log = AuditLog.open(default_path(paths), secrets_dir=paths.secrets).show()
    rows = log.filter(pl.col("object") == AUDIT_OBJECT)
    assert rows.height == 2
    key = load_key(paths.secrets)
    assert (
        f"first=user_id:{keyed_ref(user, key)},plant_id:{keyed_ref(plant, key)}"
        in (rows["detail"][0])
    )
    assert keyed_ref(user, key) == erasure.subject_ref(user, key)  # as ops.erasures names them
    assert "unknown entity user_id:" + keyed_ref("u999999", key) in rows["detail"][1]
    for raw in (user, "u999999"):
        assert not rows["detail"].str.contains(raw).any()


# ------------------------------------------------------------- interruption
def test_interrupted_rotation_is_refused_until_resumed(root, monkeypatch, capsys):
    """Check a rotation stopped after its first table: status says so, nothing tokenises, resume."""
    paths = Paths.at(root)
    before = _snapshot(root)
    versions = _versions(root)

    class Stop(Exception):
        pass

    def stop(t: rotation.TableRekey) -> None:
        raise Stop(t.table)

    lh = Lakehouse.open(root, user="dana", stage="keys")
    with pytest.raises(Stop) as first:
        rotation.rotate(lh, after_table=stop)
    lh.close()
    done = str(first.value)
    ring = read_keyring(paths.secrets)
    assert ring["current"] == 1 and ring["rotation"]["tables"][done]["status"] == "done"
    pending = [t for t, s in ring["rotation"]["tables"].items() if s["status"] == "pending"]
    assert len(pending) == 2
    # a record of which table uses which key; nothing may tokenise meanwhile
    code, text = _cli(monkeypatch, capsys, root, "keys", "status", "--json")
    by_table = {t["table"]: t for t in json.loads(text)["tables"]}
    assert by_table[done]["key_version"] == 2 and by_table[done]["state"] == "re-keyed"
    assert all(by_table[t]["key_version"] == 1 and by_table[t]["state"] == "pending"
               for t in pending)  # fmt: skip
    with pytest.raises(RotationInProgress, match="--resume"):
        load_key(paths.secrets)
    assert Lakehouse.open(root, user="dana")._key() is None  # masking: null, not a wrong token
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii")
    assert code == 2 and "--resume" in text and "started and not finished" in text
    code, text = _cli(monkeypatch, capsys, root, "access", "reidentify", "silver.users", "email",
                      "tok_" + "0" * 24)  # fmt: skip
    assert code == 2 and "in progress" in text
    # a crash between a table's commit and the keyring update: the data tells it is done
    ring["rotation"]["tables"][done]["status"] = "pending"
    write_keyring(paths.secrets, ring)
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii", "--resume")
    assert code == 0 and "resumed and finished" in text, text
    assert f"{done:<28} already re-keyed" in text
    now = _versions(root)
    assert all(now[t] == versions[t] + 1 for t in (done, *pending))  # one commit each, in all
    assert _snapshot(root) == before
    assert _columns_with_tokens_of(root, OLD) == []
    assert read_keyring(paths.secrets)["current"] == 2
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii", "--resume")
    assert code == 2 and "no PII key rotation to resume" in text


def test_resume_without_the_new_key_is_refused(root, monkeypatch, capsys):
    """Check a resume whose new key file went missing stops, naming where the key belongs."""
    paths = Paths.at(root)

    def stop(t: rotation.TableRekey) -> None:
        raise KeyboardInterrupt

    lh = Lakehouse.open(root, user="dana", stage="keys")
    with pytest.raises(KeyboardInterrupt):
        rotation.rotate(lh, after_table=stop)
    lh.close()
    key = (paths.secrets / "pii.v2.key").read_text()
    (paths.secrets / "pii.v2.key").unlink()
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii", "--resume")
    assert code == 2 and "new key v2 is missing" in text and "HORTUS_PII_KEY_V2" in text
    monkeypatch.setenv("HORTUS_PII_KEY_V2", key.strip())  # the operator restores it
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii", "--resume")
    assert code == 0, text


# ---------------------------------------------------------------- bad input
def test_rotation_without_a_key_or_grant_changes_nothing(root, monkeypatch, capsys):
    """Check no key, no grant, an equal new key, a resume of nothing: exit 2, no change."""
    paths = Paths.at(root)
    versions = _versions(root)
    monkeypatch.delenv("HORTUS_PII_KEY")
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii")
    assert code == 2 and "no PII tokenisation key v1" in text and "HORTUS_PII_KEY" in text
    monkeypatch.setenv("HORTUS_PII_KEY", TEST_KEY)
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii", user="alex")
    assert code == 2 and "may not rotate_keys" in text
    monkeypatch.setenv("HORTUS_PII_KEY_V2", TEST_KEY)
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii")
    assert code == 2 and "equals the current key" in text
    # a key admin who reads the restricted zone masked cannot build the map from raw values
    import yaml

    policy = yaml.safe_load((root / "access_policy.yaml").read_text())
    policy["users"]["kim"] = ["key-admins"]
    policy["restricted_zone"]["bronze"].append("key-admins")
    policy["groups"]["key-admins"] = {"tables": {"read": ["*"], "rotate_keys": ["*"]}}
    (root / "access_policy.yaml").write_text(yaml.safe_dump(policy))
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii", user="kim")
    assert code == 2 and "kim reads bronze.events masked (_raw)" in text, text
    monkeypatch.delenv("HORTUS_PII_KEY_V2")
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii", "--resume")
    assert code == 2 and "no PII key rotation to resume" in text
    code, text = _cli(monkeypatch, capsys, root, "keys", "status", user="alex")
    assert code == 2 and "may not rotate_keys" in text and "tok_" not in text
    with pytest.raises(SystemExit) as exit_:
        main(["--root", str(root), "keys", "rotate", "ssh"])  # an unknown kind of key
    assert exit_.value.code == 2 and "invalid choice: 'ssh'" in capsys.readouterr().err
    assert _versions(root) == versions
    assert not (paths.secrets / "pii.keyring.json").exists()
    assert not (paths.secrets / "pii.v2.key").exists()
    assert load_key(paths.secrets) == OLD


def test_unknown_version_and_a_bad_keyring_are_named(root):
    """Check an unknown version, a missing versioned key and a malformed keyring file."""
    paths = Paths.at(root)
    with pytest.raises(HortusError, match="unknown PII key version v5: .* knows v1 to v1"):
        load_key(paths.secrets, version=5)
    write_keyring(paths.secrets, read_keyring(paths.secrets) | {"current": 3})
    with pytest.raises(HortusError, match=r"no PII tokenisation key v3: set HORTUS_PII_KEY_V3"):
        load_key(paths.secrets)
    (paths.secrets / "pii.keyring.json").write_text('{"current": "two"}')
    with pytest.raises(HortusError, match=r"pii\.keyring\.json: field 'current'"):
        load_key(paths.secrets)


def test_tokens_without_raw_values_stop_the_rotation_before_any_change(root, monkeypatch, capsys):
    """Check a token whose raw value is gone from the restricted zone is named; nothing changes."""
    lh = Lakehouse.open(root, user="pipeline")
    log = pl.read_delta(str(lh.path("ops.prediction_log"))).head(1)
    orphan = token("someone-retention-removed@example.org", OLD)
    lh.write("ops.prediction_log", log.with_columns(request=pl.lit(json.dumps({"e": orphan}))))
    lh.close()
    versions = _versions(root)
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii")
    assert code == 2 and "nothing was changed" in text, text
    assert "ops.prediction_log.request: 1 token(s) with no raw value" in text and orphan in text
    assert _versions(root) == versions
    assert not (Paths.at(root).secrets / "pii.keyring.json").exists()


def test_a_redis_store_with_token_features_is_refused_before_any_change(root, monkeypatch, capsys):
    """Check a feature log holding tokens with a Redis online store: refused, nothing changed."""
    lh = Lakehouse.open(root, user="pipeline")
    email = lh.read("bronze.users")["email"][0]
    row = pl.read_delta(str(lh.path("gold.fs_user_profile"))).head(1)
    lh.write("gold.fs_user_profile", row.with_columns(latest_device=pl.lit(token(email, OLD))))
    lh.close()
    (root / "params.yaml").write_text("features:\n  online:\n    backend: redis\n")
    versions = _versions(root)
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii")
    assert code == 2 and "online store (redis) holds features made of tokens" in text, text
    assert "nothing was changed" in text and _versions(root) == versions
    assert not (Paths.at(root).secrets / "pii.keyring.json").exists()


# --------------------------------------------------------------- online store
def test_rekey_online_maps_text_columns_and_leaves_no_old_bytes(tmp_path):
    """Check the SQLite online store re-key: tokens mapped in every text column, file compacted."""
    path = tmp_path / "features.sqlite"
    values = pl.Series([f"person{i}@example.org" for i in range(50)])
    olds, news = tokenize_series(values, OLD), tokenize_series(values, b"new-key")
    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        con.execute('CREATE TABLE g ("email" TEXT NOT NULL, "n" INTEGER, "note" TEXT, '
                    'PRIMARY KEY ("email")) WITHOUT ROWID')  # fmt: skip
        con.executemany("INSERT INTO g VALUES (?, ?, ?)",
                        [(o, i, "x") for i, o in enumerate(olds.to_list())])  # fmt: skip
        con.execute("INSERT INTO meta VALUES ('types', '{}')")
    con.close()
    mapping = pl.DataFrame({"old": olds, "new": news})
    assert rotation.rekey_online(path, mapping) == 50
    con = sqlite3.connect(path)
    rows = con.execute("SELECT email, n FROM g ORDER BY n").fetchall()
    con.close()
    assert [r[0] for r in rows] == news.to_list()
    data = path.read_bytes()
    assert not any(o.encode() in data for o in olds.to_list())


def _files_holding(folder: Path, value: str) -> list[str]:
    """Return the table's data files (every version's) with a row whose email is `value`."""
    return [
        f.name
        for f in sorted(folder.glob("*.parquet"))
        if pl.read_parquet(f).filter(pl.col("email") == value).height
    ]


@pytest.mark.slow
def test_erasure_across_a_rotation(root, monkeypatch, capsys):
    """Check erasing twice across a rotation says 'already erased', and an erasure after one
    finds the subject's old-key tokens in the history the rotation left (and removes them)."""
    lh = Lakehouse.open(root, user="dana")
    first, second = lh.read("silver.users")["user_id"].sort().head(2).to_list()
    lh.close()
    erase = ("erase", "--reason", "DSR-1", "--subject")
    assert _cli(monkeypatch, capsys, root, *erase, first)[0] == 0
    assert _cli(monkeypatch, capsys, root, "keys", "rotate", "pii")[0] == 0
    code, text = _cli(monkeypatch, capsys, root, *erase, first)
    assert code == 0 and "already erased" in text, text  # its reference under the old key
    paths = Paths.at(root)
    lh = Lakehouse.open(root, user="dana")
    subject = erasure.resolve(lh, second)
    email = lh.read("bronze.users").filter(pl.col("user_id") == second)["email"][0]
    new = load_key(paths.secrets)
    assert {token(email, OLD), token(email, new)} <= set(subject.tokens)
    # the Delta history before the rotation commit holds the old token of the subject
    assert _files_holding(lh.path("silver.users"), token(email, OLD))
    lh.close()
    code, text = _cli(monkeypatch, capsys, root, *erase, second)
    assert code == 0 and "found nowhere" in text, text
    lh = Lakehouse.open(root, user="dana")
    assert erasure.find_subject(lh, subject) == []
    assert not _files_holding(lh.path("silver.users"), token(email, OLD))
    lh.close()


KILL_AFTER_COMMIT = r"""
import os, signal, sys
from hortus.governance import rotation
real, calls = rotation.rekey_table, [0]
def patched(*a, **k):
    out = real(*a, **k)
    calls[0] += 1
    if calls[0] == 2:  # the 2nd table committed, the keyring not updated yet
        os.kill(os.getpid(), signal.SIGKILL)
    return out
rotation.rekey_table = patched
from hortus.cli.core import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_rotation_killed_after_a_commit_resumes_consistent(root, monkeypatch, capsys):
    """Check kill -9 right after a table's commit (before the keyring says so), then --resume."""
    import os
    import subprocess
    import sys

    before = _snapshot(root)
    versions = _versions(root)
    env = os.environ | {"HORTUS_USER": "dana", "HORTUS_LEASE_TTL": "3", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_COMMIT, "--root", str(root), "keys", "rotate", "pii"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == -9, done.stderr[-2000:]
    ring = read_keyring(Paths.at(root).secrets)
    states = [s["status"] for s in ring["rotation"]["tables"].values()]
    assert states.count("done") == 1  # the 2nd table is committed, but not recorded as done
    now = _versions(root)
    assert sum(now[t] == versions[t] + 1 for t in ring["rotation"]["tables"]) == 2
    monkeypatch.setenv("HORTUS_LEASE_TTL", "3")
    code, text = _cli(monkeypatch, capsys, root, "keys", "rotate", "pii", "--resume")
    assert code == 0, text
    assert text.count("already re-keyed") == 2  # recorded, and found done from its data
    assert all(
        v == versions[t] + 1 for t, v in _versions(root).items() if t in ring["rotation"]["tables"]
    )
    assert _snapshot(root) == before
    assert _columns_with_tokens_of(root, OLD) == []
