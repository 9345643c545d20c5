"""Feature store: point-in-time correctness (no leakage), labels, online store and skew."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from hortus.domains.plantshop.features import FEATURES
from hortus.domains.plantshop.training import labelled_impressions
from hortus.errors import UnknownEntity
from hortus.features import store as fsm
from hortus.features.definitions import point_in_time

TIME_COLUMNS = {
    "silver.events": "ts",
    "silver.reviews": "ts",
    "silver.users": "signup_at",
    "silver.plants": "updated_at",
}


def _logs_from_sources_before(lh, t: datetime) -> dict[str, pl.DataFrame]:
    """Rebuild every feature log from silver rows strictly before t only."""
    cut = {
        name: lh.scan(name).filter(pl.col(col) < t).collect() for name, col in TIME_COLUMNS.items()
    }

    def read(name: str) -> pl.LazyFrame:
        return cut[name].lazy()

    logs = {}
    for g in FEATURES.groups:
        src = read(g.source)
        logs[g.name] = g.log(g.prepare(src, read) if g.prepare else src).collect()
    return logs


@pytest.fixture(scope="module")
def spine(shop):
    return labelled_impressions(shop.scan("silver.events"), horizon_days=7)


@pytest.fixture(scope="module")
def logs(shop):
    return fsm.read_logs(shop, FEATURES)


def test_training_set_has_no_value_from_after_the_event_time(shop, spine, logs):
    """Check that features at t equal features rebuilt from data strictly before t.

    For sampled event times t, every source table is cut to rows before t and the
    logs are rebuilt from scratch; the training-set rows at t must be identical, so
    nothing at or after t (including the labelled order itself) reaches a feature.
    """
    full = point_in_time(FEATURES, logs, spine, "ts")
    times = spine.filter(pl.col("label") == 1)["ts"].unique().sort()
    sample = [times[len(times) // 4], times[len(times) // 2], times[-1]]
    for t in sample:
        rows = full.filter(pl.col("ts") == t)
        rebuilt = point_in_time(
            FEATURES, _logs_from_sources_before(shop, t), rows.select(spine.columns), "ts"
        )
        assert rows.height >= 1
        for name in FEATURES.feature_names:
            assert rows[name].to_list() == rebuilt[name].to_list(), (t, name)
    # the comparison is sensitive: a join that looked 30 days ahead would change the rows
    rows = full.filter(pl.col("ts") == sample[0])
    ahead = rows.select(spine.columns).with_columns(pl.col("ts") + timedelta(days=30))
    leaked = point_in_time(FEATURES, logs, ahead, "ts").with_columns(
        pl.col("ts") - timedelta(days=30)
    )
    assert not leaked.equals(rows)


def test_window_features_match_a_brute_force_count(shop, spine):
    """Check 7-day and 30-day view counts per user against a direct count of events in [t-w, t)."""
    rows = spine.sample(300, seed=3).sort("ts")
    got = point_in_time(FEATURES, fsm.read_logs(shop, FEATURES), rows, "ts")
    views = shop.scan("silver.events").filter(pl.col("event_type") == "view")
    views = views.select("user_id", pl.col("ts").alias("vts")).collect()
    pairs = rows.select("event_id", "user_id", "ts").join(views, on="user_id", how="left")
    for w in (7, 30):
        inside = (pl.col("vts") < pl.col("ts")) & (
            pl.col("vts") >= pl.col("ts") - timedelta(days=w)
        )
        want = pairs.group_by("event_id").agg(inside.sum().cast(pl.Float64).alias("want"))
        both = got.join(want, on="event_id")
        assert both.height == rows.height
        assert (both[f"user_activity__views_{w}d"] == both["want"]).all()


def test_events_at_the_same_instant_are_excluded(shop):
    """Check that an event at exactly t is not counted for a row at t (strictly before)."""
    ev = shop.read("silver.events").filter(pl.col("event_type") == "view").head(1)
    spine = ev.select("user_id", "plant_id", "ts")
    logs = fsm.read_logs(shop, FEATURES)
    at_t = point_in_time(FEATURES, logs, spine, "ts")["user_plant__views_30d"][0]
    just_after = spine.with_columns(pl.col("ts") + timedelta(microseconds=1))
    after = point_in_time(FEATURES, logs, just_after, "ts")["user_plant__views_30d"][0]
    assert after == at_t + 1


def test_labels_follow_orders_within_the_horizon():
    """Check labels: order within N days -> 1, later or earlier -> 0, censored rows dropped."""
    t0 = datetime(2025, 3, 1, tzinfo=UTC)

    def e(i, kind, day, user="u000001", plant="p0001"):
        return {"event_id": f"e{i}", "event_type": kind, "ts": t0 + timedelta(days=day),
                "user_id": user, "plant_id": plant, "rec_id": f"r{i}", "position": 1}  # fmt: skip

    events = pl.DataFrame(
        [
            e(1, "rec_impression", 0),  # ordered 3 days later -> 1
            e(2, "order", 3),
            e(3, "rec_impression", 4, plant="p0002"),  # ordered 9 days later -> 0
            e(4, "order", 13, plant="p0002"),
            e(5, "rec_impression", 5, user="u000002"),  # ordered before -> 0
            e(6, "order", 4.5, user="u000002"),
            e(7, "rec_impression", 10, plant="p0003"),  # horizon ends after the data -> dropped
            e(8, "order", 13.5, plant="p0003"),
            e(9, "rec_impression", 3, plant="p0001"),  # same-instant order is not "after" -> 0
        ]
    )
    out = labelled_impressions(events.lazy(), horizon_days=7)
    labels = dict(zip(out["event_id"], out["label"], strict=True))
    assert labels == {"e1": 1, "e3": 0, "e5": 0, "e9": 0}


def test_online_store_serves_the_offline_values_and_skew_finds_a_difference(
    shop, spine, logs, tmp_path
):
    """Check SQLite lookups (batched = one by one), unknown entities, and skew naming a change."""
    store = fsm.OnlineStore(tmp_path / "online.sqlite", FEATURES)
    end = shop.scan("silver.events").select(pl.col("ts").max()).collect().item()
    contracts = {c.full_name: c for c in shop.catalog}
    rows = store.materialize(logs, end + timedelta(microseconds=1), contracts)
    assert rows["user_plant"] > 0 and rows["plant_catalog"] == 50
    with sqlite3.connect(tmp_path / "online.sqlite") as con:  # a real SQLite file
        assert con.execute("SELECT count(*) FROM plant_catalog").fetchone()[0] == 50
    entities = spine.select("user_id", "plant_id").unique().sort("user_id", "plant_id").head(300)
    clean = fsm.skew_check(store, logs, entities)
    assert clean.ok and clean.by_feature.height == len(FEATURES.feature_names) == 50
    vec = store.get_vector(dict(zip(entities.columns, entities.row(0), strict=True)))
    assert list(vec) == FEATURES.feature_names
    with pytest.raises(UnknownEntity) as err:  # an unknown user is an error, not defaults
        store.get_vector({"user_id": "u999999", "plant_id": entities["plant_id"][0]})
    assert err.value.entity == {"user_id": "u999999"} and isinstance(err.value, KeyError)
    assert "u999999" in str(err.value) and "hortus features keys user_profile" in str(err.value)
    batch = [dict(zip(entities.columns, r, strict=True)) for r in entities.rows()]
    assert store.get_vectors(batch) == [store.get_vector(e) for e in batch]
    # inject a serving difference: one plant's price changed in the online store only
    plant = entities["plant_id"][0]
    store.close()
    with sqlite3.connect(tmp_path / "online.sqlite") as con:
        con.execute(
            'UPDATE plant_catalog SET "plant_catalog__price" = "plant_catalog__price" + 1 '
            "WHERE plant_id = ?",
            (plant,),
        )
    skewed = fsm.skew_check(store, logs, entities)
    assert not skewed.ok
    bad = skewed.to_dict()["mismatched_features"]
    assert "plant_catalog__price" in bad and "price_vs_user_avg" in bad
    assert "user_activity__views_7d" not in bad
    detail = skewed.by_feature.filter(pl.col("feature") == "plant_catalog__price").row(
        0, named=True
    )
    assert detail["max_abs_diff"] == pytest.approx(1.0) and plant in detail["example"]


def test_feature_log_contracts_are_in_the_catalog(shop):
    """Check that every offline log has a derived contract and its table matches it."""
    for g in FEATURES.groups:
        contract = shop.catalog.get(g.table)
        assert shop.read(g.table).schema == contract.schema
    cols = {
        c.name: c for c in fsm.feature_columns(FEATURES, {c.full_name: c for c in shop.catalog})
    }
    assert cols["plant_catalog__category"].allowed and cols["user_profile__region"].sensitive
    assert cols["price_band"].type == "int" and len(cols) == 50


def test_get_vectors_runs_one_query_per_group_for_many_entities(shop, logs, tmp_path):
    """Check batching: 1 user x 40 plants costs one SELECT per group, not one per entity.

    Also: a plant nobody interacted with is known (defaults for its event groups), an
    unknown plant among known ones raises UnknownEntity naming it.
    """
    store = fsm.OnlineStore(tmp_path / "online.sqlite", FEATURES)
    end = shop.scan("silver.events").select(pl.col("ts").max()).collect().item()
    store.materialize(logs, end + timedelta(microseconds=1), {c.full_name: c for c in shop.catalog})
    plants = [k["plant_id"] for k in store.entity_keys("plant_catalog", limit=40)]
    user = store.entity_keys("user_profile", limit=1)[0]["user_id"]
    batch = [{"user_id": user, "plant_id": p} for p in plants]
    store.get_vector(batch[0])  # open
    selects: list[str] = []
    store._con.set_trace_callback(lambda sql: selects.append(sql) if "SELECT" in sql else None)
    vectors = store.get_vectors(batch)
    assert len(selects) == len(FEATURES.groups) == 7 and len(vectors) == 40
    assert vectors == [store.get_vector(e) for e in batch]
    with pytest.raises(UnknownEntity) as err:
        store.get_vectors([*batch, {"user_id": user, "plant_id": "p9999"}])
    assert err.value.entity == {"plant_id": "p9999"} and "plant_id='p9999'" in str(err.value)
    # a known user with no row in user_plant for a plant: that group's defaults, not an error
    with sqlite3.connect(tmp_path / "online.sqlite") as con:
        pair = con.execute("SELECT user_id FROM user_plant LIMIT 1").fetchone()
        seen = {
            r[0] for r in con.execute("SELECT plant_id FROM user_plant WHERE user_id = ?", pair)
        }
    fresh = next(p for p in plants if p not in seen)
    vec = store.get_vector({"user_id": pair[0], "plant_id": fresh})
    assert vec["user_plant__views_30d"] == 0.0 and vec["plant_catalog__price"] is not None
