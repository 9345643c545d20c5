"""Fresh features: a watch batch updates the online store for the entities it touched only.

Real components: a simulated landing, Delta tables, a watch micro-batch (`run_batch`,
recorded as a stage run whose ``stage_succeeded`` event runs the ``refresh_online``
action through the event hook), SQLite and a real redis-server.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from conftest import TEST_KEY, with_policy
from hortus.config import Paths
from hortus.domains.plantshop.features import FEATURES
from hortus.domains.plantshop.simulate import SimConfig, simulate
from hortus.features import store as fsm
from hortus.features.online_refresh import refresh
from hortus.lakehouse import silver
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.ingest import ingest
from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring import events, monitors
from hortus.monitoring.actions import Action, refresh_online, run_actions
from hortus.monitoring.watch import run_batch
from test_online_redis import redis_url  # noqa: F401 (the redis-server fixture)

SIM = SimConfig(seed=5, start="2025-03-01", days=4, users=150, plants=30)
LAST_DAY = "2025-03-04"
OPTIONS = silver.SilverOptions(key=TEST_KEY.encode())


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """Return four simulated days of landing files (not yet landed)."""
    out = tmp_path_factory.mktemp("export")
    simulate(SIM, out)
    return out


def _land(export: Path, data: Path, *, last: bool) -> list[str]:
    names = []
    for src in sorted(p for p in export.rglob("*") if p.is_file()):
        rel = src.relative_to(export)
        if rel.name.startswith((".", "_")) or (LAST_DAY in rel.name) != last:
            continue
        dest = data / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        names.append(rel.as_posix())
    return names


def _built(export: Path, root: Path, store_of) -> tuple[Paths, Lakehouse, fsm.BaseOnlineStore]:
    """Land the first three days, build silver and the online store as the features stage does."""
    with_policy(root)
    paths = Paths.at(root)
    _land(export, paths.data, last=False)
    lh = Lakehouse(paths=paths, catalog=Catalog.load(root=root), stage="test", user="pipeline")
    ingest(paths.data, lh)
    silver.build(lh, OPTIONS)
    logs = {g.name: g.log(fsm.read_source(lh, g)).collect() for g in FEATURES.groups}
    end = lh.scan("silver.events").select(pl.col("ts").max()).collect().item()
    store = store_of(paths)
    contracts = {c.full_name: c for c in lh.catalog}
    store.materialize(logs, end + timedelta(microseconds=1), contracts,
                      batches=fsm.source_batches(lh, FEATURES))  # fmt: skip
    return paths, lh, store


def _users(lh: Lakehouse, export: Path) -> tuple[str, str, str]:
    """Return (a user who views plants on the last day, a user absent from it, a plant)."""
    ev = lh.read("silver.events").drop_nulls(["user_id", "plant_id"])
    last = pl.read_ndjson(next(export.rglob(f"events-{LAST_DAY}*")), infer_schema_length=None)
    views = set(last.filter(pl.col("event_type") == "view")["user_id"].drop_nulls())
    present = set(last["user_id"].drop_nulls())
    known = set(ev["user_id"])
    active = sorted(views & known)[0]
    quiet = sorted(known - present)[0]
    return active, quiet, sorted(ev["plant_id"].unique())[0]


def _user_part(vec: dict) -> dict:
    return {k: v for k, v in vec.items() if k.startswith("user_")}


def test_a_watch_batch_refreshes_the_touched_entities_through_the_event_hook(export, tmp_path):
    """Check the served vector of a user active in the batch changes, a quiet user's does not.

    Before the batch the SQLite store is as of the end of day 3; the day-4 files go through
    one watch batch; its stage_succeeded event runs refresh_online (configured like
    params.yaml `alerts.actions: {stage_succeeded: [refresh_online]}`).  Afterwards the
    active user's activity equals a recomputation from silver, the quiet user's user-group
    rows are untouched (same values, same as-of time), the skew check against logs rebuilt
    from silver is clean, and the action is recorded in ops.events.
    """
    paths, lh, store = _built(export, tmp_path, lambda p: fsm.OnlineStore(p.online_store, FEATURES))
    active, quiet, plant = _users(lh, export)
    req = [{"user_id": active, "plant_id": plant}, {"user_id": quiet, "plant_id": plant}]
    before, stamps_before = store._lookup(req)
    materialized = store.materialized_at
    names = _land(export, paths.data, last=True)
    config = events.EventConfig(
        actions={"stage_succeeded": (Action("refresh_online", refresh_online),)}
    )
    events.configure(config)
    try:
        watch_lh = Lakehouse(paths=paths, catalog=Catalog.load(root=paths.root), stage="watch",
                             user="pipeline")  # fmt: skip
        result = run_batch(watch_lh, paths.data, names, number=1, silver_options=OPTIONS,
                           monitor_config=monitors.MonitorConfig(monitors=()))  # fmt: skip
    finally:
        events.configure(None)
    assert result.rows_accepted > 0 and result.error is None
    after, stamps_after = store._lookup(req)
    assert store.refreshed_at > materialized
    # the active user: new activity served, equal to the features recomputed from silver
    assert _user_part(after[0]) != _user_part(before[0])
    assert after[0]["user_activity__views_30d"] > before[0]["user_activity__views_30d"]
    assert stamps_after[0]["user_activity"] > stamps_before[0]["user_activity"]
    # the quiet user: user groups untouched (values and as-of time)
    assert _user_part(after[1]) == _user_part(before[1])
    for g in ("user_activity", "user_profile"):
        assert stamps_after[1][g] == stamps_before[1][g]
    logs = {g.name: g.log(fsm.read_source(lh, g)).collect() for g in FEATURES.groups}
    sample = fsm.sample_entities(lh, "silver.events", ("user_id", "plant_id"), 200, 0)
    report = fsm.skew_check(store, logs, sample)
    assert report.ok, report.to_dict()
    ev = lh.read("ops.events").filter(pl.col("type") == "action_succeeded")
    subjects = ev["subject"].to_list()
    assert "refresh_online:watch" in subjects
    note = ev.filter(pl.col("subject") == "refresh_online:watch")["detail"][0]
    assert "online store refreshed" in note, note
    print(note)
    # other stages' successes are not applicable: nothing recorded for them
    other = events.Event(type="stage_succeeded", subject="kpis", detail={})
    assert run_actions(lh, other, [Action("refresh_online", refresh_online)]) == []


def test_redis_store_refreshes_incrementally_too(export, tmp_path, redis_url):  # noqa: F811
    """Check the same refresh on the Redis backend (one MULTI/EXEC), then a clean skew check."""
    from hortus.features._redis import RedisOnlineStore

    paths, lh, store = _built(
        export, tmp_path, lambda p: RedisOnlineStore(redis_url, FEATURES, prefix="test:refresh")
    )
    active, quiet, plant = _users(lh, export)
    req = [{"user_id": active, "plant_id": plant}, {"user_id": quiet, "plant_id": plant}]
    before = store.get_vectors(req)
    _land(export, paths.data, last=True)
    ingest(paths.data, lh)
    silver.build(lh, OPTIONS)
    report = refresh(lh, FEATURES, store, as_of=("silver.events", "ts"))
    assert report.rows["user_activity"] > 0 and report.batches
    after = store.get_vectors(req)
    assert _user_part(after[0]) != _user_part(before[0])
    assert _user_part(after[1]) == _user_part(before[1])
    logs = {g.name: g.log(fsm.read_source(lh, g)).collect() for g in FEATURES.groups}
    sample = fsm.sample_entities(lh, "silver.events", ("user_id", "plant_id"), 200, 0)
    assert fsm.skew_check(store, logs, sample).ok
    again = refresh(lh, FEATURES, store, as_of=("silver.events", "ts"))
    assert again.rows == {} and again.batches == []  # nothing new: nothing rewritten
