"""The Redis online store against a real redis-server (Debian package; `make redis` installs it).

A missing redis-server fails these tests (it does not skip them): CI must have it.
The server runs on 127.0.0.1 on a free port, without persistence, for this module.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from datetime import timedelta

import polars as pl
import pytest

from hortus.domains.plantshop.features import FEATURES
from hortus.errors import UnknownEntity
from hortus.features import store as fsm
from hortus.features._redis import RedisOnlineStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url():
    """Start redis-server on 127.0.0.1:<free port> (no persistence); yield its URL; stop it."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server not found: run `make redis` (installs Debian's redis-server)")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    end = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if proc.poll() is not None or time.monotonic() > end:
                proc.kill()
                pytest.fail(f"redis-server did not start: {proc.stderr.read().decode()[-500:]}")
            time.sleep(0.05)
    client.close()
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def stores(shop, redis_url, tmp_path_factory):
    """Return (sqlite store, redis store, logs, entities) materialised from the same logs."""
    logs = fsm.read_logs(shop, FEATURES)
    end = shop.scan("silver.events").select(pl.col("ts").max()).collect().item()
    at = end + timedelta(microseconds=1)
    contracts = {c.full_name: c for c in shop.catalog}
    sqlite = fsm.OnlineStore(tmp_path_factory.mktemp("online") / "f.sqlite", FEATURES)
    sqlite.materialize(logs, at, contracts)
    red = RedisOnlineStore(redis_url, FEATURES, prefix="test:shop")
    red.materialize(logs, at, contracts)
    entities = fsm.sample_entities(shop, "silver.events", ("user_id", "plant_id"), 300, 0)
    return sqlite, red, logs, entities


def test_redis_serves_the_same_vectors_as_sqlite_and_passes_the_skew_check(stores):
    """Check both backends give identical vectors (types too) and the skew check is clean."""
    sqlite, red, logs, entities = stores
    batch = [dict(zip(entities.columns, r, strict=True)) for r in entities.rows()]
    got = red.get_vectors(batch)
    assert got == sqlite.get_vectors(batch)
    assert got[0] == red.get_vector(batch[0]) and list(got[0]) == FEATURES.feature_names
    assert isinstance(got[0]["plant_catalog__pet_safe"], bool)
    for store in (sqlite, red):
        report = fsm.skew_check(store, logs, entities)
        assert report.ok, report.to_dict()
    keys = red.entity_keys("plant_catalog", 3)
    assert len(keys) == 3 and all(k in sqlite.entity_keys("plant_catalog", 1000) for k in keys)


def test_redis_unknown_entity_and_skew_finds_a_changed_value(stores, redis_url):
    """Check an unknown plant raises UnknownEntity; an edited hash shows up in the skew check."""
    import redis

    _, red, logs, entities = stores
    user = entities["user_id"][0]
    with pytest.raises(UnknownEntity) as err:
        red.get_vectors([{"user_id": user, "plant_id": "p9999"}])
    assert err.value.entity == {"plant_id": "p9999"}
    plant = entities["plant_id"][0]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    version = client.get("test:shop:current")
    group = f"test:shop:{version}:group:plant_catalog"  # one hash per group, a field per plant
    cols = json.loads(client.hget(f"test:shop:{version}:meta", "columns"))["plant_catalog"]
    old = client.hget(group, plant)
    row = json.loads(old)
    row[cols.index("plant_catalog__price")] += 1.0
    client.hset(group, plant, json.dumps(row))
    try:
        bad = fsm.skew_check(red, logs, entities).to_dict()["mismatched_features"]
        assert "plant_catalog__price" in bad and "user_activity__views_7d" not in bad
    finally:
        client.hset(group, plant, old)


def test_redis_materialize_switches_versions_atomically_under_reads(shop, redis_url):
    """Check readers during re-materialisations only ever see one whole version's vectors.

    Two snapshots (as of the last event and as of 7 days earlier) are materialised
    one after the other while a thread looks up a batch in a loop: every answer equals the
    answer of one snapshot or the other; old versions are deleted (the previous kept).
    """
    import redis

    logs = fsm.read_logs(shop, FEATURES)
    end = shop.scan("silver.events").select(pl.col("ts").max()).collect().item()
    contracts = {c.full_name: c for c in shop.catalog}
    times = [end + timedelta(microseconds=1), end - timedelta(days=7)]
    store = RedisOnlineStore(redis_url, FEATURES, prefix="test:switch")
    entities = fsm.sample_entities(shop, "silver.events", ("user_id", "plant_id"), 40, 1)
    batch = [dict(zip(entities.columns, r, strict=True)) for r in entities.rows()]
    batch = [e for e in batch if e["user_id"] <= "u000300"][:20]  # signed up before both times
    expected = []
    for t in times:
        store.materialize(logs, t, contracts)
        expected.append(store.get_vectors(batch))
    assert expected[0] != expected[1]
    reader = RedisOnlineStore(redis_url, FEATURES, prefix="test:switch")
    seen, errors, stop = [], [], threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(reader.get_vectors(batch))
            except Exception as exc:  # any error is a failure of the switch
                errors.append(repr(exc))
            time.sleep(0.002)  # leave the writer the interpreter too

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(2):
            store.materialize(logs, times[i % 2], contracts)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors and len(seen) > 0
    assert all(s in expected for s in seen)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    versions = {k.split(":")[2] for k in client.scan_iter(match="test:switch:v*")}
    current = client.get("test:switch:current")
    assert current in versions and len(versions) == 2  # the served one and the one before


def test_params_choose_the_redis_backend_for_the_cli_lookup(shop, redis_url, tmp_path, capsys,
                                                            monkeypatch):  # fmt: skip
    """Check params.yaml `features.online: {backend: redis}`: open_store and the CLI use Redis."""
    import yaml

    from conftest import with_policy
    from hortus.cli.core import main
    from hortus.errors import HortusError
    from hortus.features.online import open_store

    with_policy(tmp_path)
    online = {"backend": "redis", "url": redis_url, "prefix": "test:cli"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"features": {"online": online}}))
    store = open_store(tmp_path, FEATURES)
    assert isinstance(store, RedisOnlineStore) and not store.exists()
    end = shop.scan("silver.events").select(pl.col("ts").max()).collect().item()
    contracts = {c.full_name: c for c in shop.catalog}
    store.materialize(fsm.read_logs(shop, FEATURES), end + timedelta(microseconds=1), contracts)
    row = shop.read("silver.events").drop_nulls(["user_id", "plant_id"]).row(0, named=True)
    monkeypatch.setenv("HORTUS_USER", "mia")
    args = ["--root", str(tmp_path), "features", "lookup", "--key", f"user_id={row['user_id']}",
            "--key", f"plant_id={row['plant_id']}", "--json"]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["features"]["user_profile__region"].startswith("tok_")  # masked, via Redis
    with pytest.raises(HortusError, match="unknown backend 'memcached'"):
        open_store(tmp_path, FEATURES, {"online": {"backend": "memcached"}})
