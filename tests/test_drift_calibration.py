"""Calibrated drift (issue 14, item 1): nothing flagged on a clean shop, lineage-expected on drift.

The default snapshot (params.yaml ``simulate``: 28 days, 1500 users, 120 plants,
seed 42, with its row-level faults) is simulated, ingested and featured once per
scenario.  The hold-out (the last 25% of
the examples by time, as the gate splits them) is compared with the training rows
by the gate's drift check, the staleness monitor and the dashboard's daily windows,
all with the repository's params.yaml settings.

The features expected to be flagged are fixed before any comparison: the source
columns the simulator's manifest lists for the scenario (``drift.changed_columns``)
mapped through feature lineage (`features_reading`).  The drift starts on
2025-03-17, after the training rows, so that the training rows are clean.  Window
aggregates are judged on their per-entity increments too (`feature_entities`), in
every decision alike.

Column lineage is over-inclusive: a feature that reads a changed column need not change
by a measurable amount.  So each feature's effect is measured against the clean shop of
the same seed (the counterfactual, `_effect`; no detector involved) and graded with one
bound fixed before any comparison (``MOVED``, Cohen's small effect): every lineage
feature moved that much is flagged, no feature outside lineage moved that much (the
manifest is complete), and nothing outside lineage is flagged by any decision or day.
Where a scenario is not met yet, the test is a strict xfail carrying the measured reason,
so that it turns into a failure the day it passes; so is the literal reading (every
lineage feature flagged), which ``new_region`` meets.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from conftest import TEST_KEY, with_policy
from hortus.checks.gate import GateConfig, drift_check
from hortus.config import Paths
from hortus.domains.plantshop.features import FEATURES
from hortus.domains.plantshop.simulate import DRIFT_CHANGES, SimConfig, simulate
from hortus.features.definitions import feature_entities, feature_lineage, features_reading
from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring._drift_calibration import CONSTANT_NOTE, constant_columns
from hortus.monitoring._monitor_models import staleness_inputs
from hortus.monitoring.drift import CalibrationConfig, calibrate, calibrated_compare
from hortus.publishing import monitor_views as mv

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
SHOP = {  # the default snapshot, faults included (data.dvc pins its clean export)
    k: tuple(v) if isinstance(v, list) else v for k, v in PARAMS["simulate"].items() if k != "drift"
}
DRIFT_START = "2025-03-17"
FEATURE_NAMES = FEATURES.feature_names
HOLDOUT = float(PARAMS["train"]["holdout_fraction"])
INCREMENTS = feature_entities(FEATURES)  # window aggregates and their entity keys
KEYS = sorted({k for ks in INCREMENTS.values() for k in ks} - set(FEATURE_NAMES))


def _build(
    root: Path, drift: tuple[str, ...], seed: int | None = None
) -> tuple[pl.DataFrame, dict]:
    """Simulate, ingest and feature one shop (the snapshot's seed unless `seed`); return its
    examples and manifest."""
    from hortus.pipeline import stages

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HORTUS_PII_KEY", TEST_KEY)
        with_policy(root)
        paths = Paths.at(root)
        shop = SHOP if seed is None else {**SHOP, "seed": seed}
        cfg = SimConfig(**shop, drift=drift, drift_start=DRIFT_START if drift else None)
        manifest = simulate(cfg, paths.data)
        stages.ingest(paths, PARAMS.get("ingest") or {})
        stages.silver(paths, PARAMS.get("silver") or {})
        stages.features(paths, PARAMS.get("features") or {})
        rows = Lakehouse.open(root).read("gold.training_set")
    return rows, manifest


def _split(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the training rows and the hold-out, as the gate splits them (whole lists)."""
    from hortus.models.modeling import ModelSpec, time_split

    rows = rows.filter(pl.col("label").is_not_null())  # as `training_rows` reads them
    spec = ModelSpec("label", tuple(FEATURE_NAMES), time="ts", group="rec_id",
                     holdout_fraction=HOLDOUT)  # fmt: skip
    train, holdout, _ = time_split(rows, spec)
    return train, holdout


def _verdicts(rows: pl.DataFrame) -> dict:
    """Return the drifted features by the gate, the staleness monitor and the dashboard."""
    train, holdout = _split(rows)
    gate = GateConfig.from_dict({"drift": PARAMS["gate"]["drift"]})
    check = drift_check(
        train,
        holdout,
        [*FEATURE_NAMES, "label"],
        max_drifted_share=gate.max_drifted_share,
        critical=gate.critical,
        config=gate.drift,
        time="ts",
        calibration=gate.calibration,
        increments=INCREMENTS,
        lineage=feature_lineage(FEATURES),
    )
    monitor = staleness_inputs(
        train.select(*FEATURE_NAMES, "ts", *KEYS), rows, features=FEATURE_NAMES, time="ts",
        increments=INCREMENTS,
    )  # fmt: skip
    daily, _ = mv.drift_by_window(
        rows,
        FEATURE_NAMES,
        time="ts",
        reference_share=1 - HOLDOUT,
        window="1d",
        increments=INCREMENTS,
    )  # the dashboard's own split: the HOLDOUT quantile of the time; fmt: skip
    per_day = {
        d: set(c)
        for d, c in daily.filter("drifted").group_by("window_start").agg("column").iter_rows()
    }
    last = daily["window_start"].max()
    return {
        "check": check,
        "gate": set(check.stats["drifted"]),
        "monitor": set(monitor["drifted_features"]),
        "per_day": per_day,
        "last_day": per_day.get(last, set()),
        "per_feature": monitor["per_feature"],
    }


def _expected(manifest: dict, rows: pl.DataFrame) -> set[str]:
    """The lineage set of the scenario's changed source columns, less the features that
    are constant in the training rows (the rule the decisions apply: not judged)."""
    changed = [c for cols in manifest["drift"]["changed_columns"].values() for c in cols]
    constant = set(constant_columns(_split(rows)[0], FEATURE_NAMES))
    return set(features_reading(FEATURES, changed, among=FEATURE_NAMES)) - constant


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("clean"), ())


# ---------------------------------------------------------------------- lineage
def test_lineage_is_derived_from_the_definitions():
    lineage = feature_lineage(FEATURES)
    assert set(lineage) == set(FEATURE_NAMES)
    assert lineage["plant_catalog__price"] == {"silver.plants.price"}
    assert lineage["price_band"] == {"silver.plants.price"}  # a band of the price
    # a window sum reads its value expression's columns, the entity and the rows
    assert {"silver.events.price", "silver.events.quantity", "silver.events.*"} <= lineage[
        "user_activity__spend_30d"
    ]
    # keyed by the plant's category as of t: reads the catalogue's category too
    assert "silver.plants.category" in lineage["user_category__views_30d"]
    # a ratio reads both inputs
    assert lineage["price_vs_user_avg"] >= lineage["plant_catalog__price"]
    assert features_reading(FEATURES, ["silver.users.region"]) == ["user_profile__region"]


def test_window_aggregates_carry_their_entity_keys():
    assert INCREMENTS["user_activity__spend_30d"] == ("user_id",)
    assert INCREMENTS["plant_popularity__views_7d"] == ("plant_id",)
    # keyed by the plant's category as of t (a feature of the spine)
    assert INCREMENTS["user_category__views_30d"] == ("user_id", "plant_catalog__category")
    assert INCREMENTS["user_avg_line_value"] == ("user_id",)  # a ratio of two user sums
    # recency: +1 a day while idle, a drop where an event happened (the recent event rate)
    assert INCREMENTS["user_activity__days_since_clicks"] == ("user_id",)
    # each names its window (a ratio the longer of its two; all-time and recency: none)
    day = timedelta(days=1)
    assert INCREMENTS["user_activity__spend_30d"].window == 30 * day
    assert INCREMENTS["plant_popularity__views_7d"].window == 7 * day
    assert INCREMENTS["user_ctr_30d"].window == 30 * day
    assert INCREMENTS["user_activity__spend_all"].window is None
    assert INCREMENTS["user_activity__days_since_clicks"].window is None
    # latest values, bands and ratios with a latest input are judged on levels
    for name in ("plant_catalog__price", "price_band", "price_vs_user_avg",
                 "user_profile__region"):  # fmt: skip
        assert name not in INCREMENTS


def test_manifest_lists_changed_columns_only_for_a_drifted_export(tmp_path):
    small = {"seed": 3, "start": "2025-03-01", "days": 3, "users": 40, "plants": 12}
    clean = simulate(SimConfig(**small), tmp_path / "clean")
    assert clean["drift"] == {"kinds": [], "start": None}  # the pinned snapshot's manifest
    drifted = simulate(SimConfig(**small, drift=("new_region", "seasonal")), tmp_path / "d")
    assert drifted["drift"]["changed_columns"] == {
        "new_region": list(DRIFT_CHANGES["new_region"]),
        "seasonal": list(DRIFT_CHANGES["seasonal"]),
    }
    on_disk = json.loads((tmp_path / "d" / "_manifest.json").read_text(encoding="utf-8"))
    assert on_disk["drift"]["changed_columns"] == drifted["drift"]["changed_columns"]


# ------------------------------------------------------------------ synthetic
def _frame(days: int, rng, *, shift: float = 0.0, start: int = 0) -> pl.DataFrame:
    n = 400 * days
    t = np.sort(rng.uniform(start, start + days, n))
    return pl.DataFrame(
        {
            "ts": [datetime(2025, 1, 1) + timedelta(days=float(x)) for x in t],
            "trend": t * 3.0 + rng.normal(0, 1, n),  # grows by construction
            "calm": rng.normal(0, 1, n) + shift,  # stationary
            "kind": rng.choice(["a", "b", "c"], n),
        }
    )


def test_calibration_allows_a_trend_and_flags_a_change():
    rng = np.random.default_rng(0)
    history = _frame(21, rng)
    cal = CalibrationConfig()
    cols = ["trend", "calm", "kind"]
    clean, got = calibrated_compare(history, _frame(5, rng, start=21), cols, time="ts",
                                    calibration=cal)  # fmt: skip
    assert not any(r.drifted for r in clean.overall()), clean.to_frame()
    assert got is not None and got.pairs >= cal.min_pairs and "like-window pairs" in got.describe()
    shifted, _ = calibrated_compare(history, _frame(5, rng, start=21, shift=0.5), cols,
                                    time="ts", calibration=cal)  # fmt: skip
    assert {r.column for r in shifted.overall() if r.drifted} == {"calm"}


def _user_days(users: int, days: int, start: datetime, jitter, **values) -> pl.DataFrame:
    """One row per user and day from `start`, `jitter` days into the day (one per row,
    day-major), with `values`, sorted by time."""
    day = np.repeat(np.arange(days), users)
    return pl.DataFrame(
        {
            "ts": [start + timedelta(days=float(x)) for x in day + jitter],
            "user": np.tile(np.arange(users), days),
            **values,
        }
    ).sort("ts")


def _counts(days: int, rng, *, rise_from: int | None = None) -> pl.DataFrame:
    """Running 30-day-style counts of 300 users, one row per user and day (half-day jitter)."""
    users, n = 300, 300 * days
    day = np.repeat(np.arange(days), users)
    rate = rng.gamma(2.0, 1.5, users)[np.tile(np.arange(users), days)]
    if rise_from is not None:
        rate = rate * np.where(day >= rise_from, 1.4, 1.0)  # 40% more activity
    added = rng.poisson(rate)
    jitter = rng.uniform(0, 0.5, n)
    frame = _user_days(users, days, datetime(2025, 1, 1), jitter, added=added.astype(float))
    return frame.with_columns(pl.col("added").cum_sum().over("user").alias("count_all"))


def test_increments_see_a_rise_that_the_level_dilutes():
    rng = np.random.default_rng(3)
    keys = {"count_all": ["user"]}
    clean = _counts(26, rng)
    history, current = (
        clean.filter(pl.col("ts") < datetime(2025, 1, 22)),
        clean.filter(pl.col("ts") >= datetime(2025, 1, 22)),
    )
    cal = CalibrationConfig()
    report, got = calibrated_compare(history, current, ["count_all"], time="ts",
                                     calibration=cal, increments=keys)  # fmt: skip
    assert not report.drifted, report.to_frame()
    assert got is not None and "per-entity increments" in got.describe()
    risen = _counts(26, np.random.default_rng(3), rise_from=21)
    history, current = (
        risen.filter(pl.col("ts") < datetime(2025, 1, 22)),
        risen.filter(pl.col("ts") >= datetime(2025, 1, 22)),
    )
    level, _ = calibrated_compare(history, current, ["count_all"], time="ts", calibration=cal)
    assert not level.drifted  # the all-time count dilutes five risen days
    both, _ = calibrated_compare(history, current, ["count_all"], time="ts",
                                 calibration=cal, increments=keys)  # fmt: skip
    (r,) = both.overall()
    assert r.drifted and r.statistic == "increment_mean_shift", r
    assert r.stats["increment_value"] >= r.stats["increment_threshold"]


def _weekly_counts(days: int, seed: int, *, rise_from: int | None = None) -> pl.DataFrame:
    """All-time counts of 400 users from a Monday, busy weekends (1.6-1.7x a weekday)."""
    rng = np.random.default_rng(seed)
    users, n = 400, 400 * days
    day = np.repeat(np.arange(days), users)
    weekday = np.array([0.8, 0.8, 0.8, 0.8, 0.9, 1.6, 1.7])[day % 7]
    rate = rng.gamma(2.0, 0.5, users)[np.tile(np.arange(users), days)] * weekday
    if rise_from is not None:
        rate = rate * np.where(day >= rise_from, 1.25, 1.0)  # 25% more activity
    jitter = rng.uniform(0, 0.5, n)  # (drawn before the counts, as always)
    added = rng.poisson(rate).astype(float)
    frame = _user_days(users, days, datetime(2025, 1, 6), jitter, added=added)
    return frame.with_columns(pl.col("added").cum_sum().over("user").alias("count_all"))


def test_increments_are_compared_with_the_same_weekdays():
    """Three weeks of history, a Monday-Friday current: against the history's last week
    (weekends included) a 25% rise hides in the weekday mix the pairs have to allow for;
    against the same weekdays a week earlier, with same-weekday pairs, it shows."""
    keys, cut = {"count_all": ["user"]}, datetime(2025, 1, 27)  # a Monday

    def score(frame: pl.DataFrame, aligned: bool) -> tuple[float, bool, str]:
        history, current = frame.filter(pl.col("ts") < cut), frame.filter(pl.col("ts") >= cut)
        cal = CalibrationConfig(weekday_aligned=aligned)
        report, got = calibrated_compare(history, current, ["count_all"], time="ts",
                                         calibration=cal, increments=keys)  # fmt: skip
        (r,) = report.overall()
        return (
            r.stats["increment_value"] / r.stats["increment_threshold"],
            r.drifted,
            got.describe(),
        )

    clean_score, clean_drifted, how = score(_weekly_counts(26, 1), True)
    assert not clean_drifted and clean_score < 1 and "same weekdays" in how
    risen = _weekly_counts(26, 1, rise_from=21)
    aligned, drifted, _ = score(risen, True)
    assert drifted and aligned >= 1
    mixed, mixed_drifted, how = score(risen, False)
    assert not mixed_drifted and mixed < aligned / 2 and "same weekdays" not in how


def test_a_day_and_some_hours_is_judged_as_one_day():
    """A current whose rows cover a day and some hours (the dashboard's second point: the
    end of the cut-off's day and the next day) is a day, even when its span is rounded up
    to two: not judged against the same weekdays (nor in parts); two and a half days are."""
    keys, cut = {"count_all": ["user"]}, datetime(2025, 1, 27)  # a Monday
    frame = _weekly_counts(26, 1)

    def judged(lo: datetime, days: int) -> tuple[str, set[str]]:
        history = frame.filter(pl.col("ts") < lo)
        current = frame.filter(pl.col("ts").is_between(lo, cut + timedelta(days=days - 1),
                                                        closed="left"))  # fmt: skip
        report, got = calibrated_compare(history, current, ["count_all"], time="ts",
                                         span=timedelta(days=days), increments=keys)  # fmt: skip
        stats = {k for r in report.overall() for k in r.stats if k.endswith("_threshold")}
        return got.describe(), stats

    # rows fall in the first half of each day: Sunday from 10:00, Monday to 12:00
    how, stats = judged(cut - timedelta(hours=14), 2)
    assert "same weekdays" not in how and "increment_threshold" in stats
    how, stats = judged(cut, 4)  # Monday to Wednesday midday: 2.5 days
    assert "same weekdays" in how and "increment_threshold" in stats


def _window_counts(days: int, seed: int, *, rise_from: int | None = None) -> pl.DataFrame:
    """30-day counts of 300 users, one row per user and day (half-day jitter): the
    windows fill up on day 30, and activity rises 40% from `rise_from` on."""
    rng = np.random.default_rng(seed)
    users, n = 300, 300 * days
    day = np.repeat(np.arange(days), users)
    rate = rng.gamma(2.0, 1.5, users)[np.tile(np.arange(users), days)]
    if rise_from is not None:
        rate = rate * np.where(day >= rise_from, 1.4, 1.0)
    jitter = rng.uniform(0, 0.5, n)
    added = rng.poisson(rate).astype(float)
    frame = _user_days(users, days, datetime(2025, 1, 1), jitter, added=added)
    return frame.with_columns(
        pl.col("added").rolling_sum(30, min_samples=1).over("user").alias("count_30d")
    )


@pytest.mark.parametrize("seed", [0, 3])
def test_a_full_window_is_calibrated_on_pairs_after_it_filled(seed):
    """55 days, the current the last 5: a 30-day window is full before the current, so
    its pairs start on day 30 (`EntityKeys.window`). Pairs from the warm-up on mix the
    growing and the full window and hide a 40% rise (0.19-0.24 of the thresholds on
    seeds 0-3); the full window's pairs flag it (1.12-1.46), a clean current under 0.4."""
    from hortus.features.definitions import EntityKeys

    cut = datetime(2025, 1, 1) + timedelta(days=50)

    def judged(frame: pl.DataFrame, keys: tuple) -> tuple[float, bool, str]:
        history, current = frame.filter(pl.col("ts") < cut), frame.filter(pl.col("ts") >= cut)
        report, got = calibrated_compare(history, current, ["count_30d"], time="ts",
                                         increments={"count_30d": keys})  # fmt: skip
        (r,) = report.overall()
        level = r.stats["level_value"] / r.stats["level_threshold"]
        return level, r.drifted, got.describe()

    window = EntityKeys(("user",), window=timedelta(days=30))
    score, drifted, how = judged(_window_counts(55, seed), window)
    assert not drifted and score < 0.5 and "after their windows filled" in how
    risen = _window_counts(55, seed, rise_from=50)
    score, drifted, _ = judged(risen, window)
    assert drifted and score >= 1
    mixed, drifted, how = judged(risen, ("user",))  # no window known: the old pairs
    assert not drifted and mixed < score / 2 and "after their windows filled" not in how


def _spend(days: int, seed: int, *, rise_from: int | None = None) -> pl.DataFrame:
    """All-time spend of 300 users from a Monday: 6% buy on a day, and their baskets
    (lognormal, ~20) are twice as large from `rise_from` on."""
    rng = np.random.default_rng(seed)
    users, n = 300, 300 * days
    day = np.repeat(np.arange(days), users)
    buys = rng.random(n) < 0.06
    amount = np.exp(rng.normal(3.0, 0.4, n)) * np.where(
        day >= (rise_from if rise_from is not None else days), 2.0, 1.0
    )
    jitter = rng.uniform(0, 0.5, n)
    frame = _user_days(users, days, datetime(2025, 1, 6), jitter, added=np.where(buys, amount, 0.0))
    return frame.with_columns(pl.col("added").cum_sum().over("user").alias("spend_all"))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_zero_inflated_increments_are_judged_in_two_parts(seed):
    """Most users buy nothing in three days: a mean shift of their spend increments is
    diluted by the zeros, while the size of the non-zero ones shows twice-larger baskets
    (measured, seeds 0-15: the size part 1.87-6.31 of its threshold, the mean part
    0.07-2.91, flagging 4 of 16 alone; clean: every part under 1 on 15 seeds, seed 13 at
    1.49 on the non-zero share and 1.20 on the mean, flagged by either)."""
    keys, cut = {"spend_all": ["user"]}, datetime(2025, 1, 27)  # a Monday

    def judge(frame: pl.DataFrame):
        history, current = frame.filter(pl.col("ts") < cut), frame.filter(pl.col("ts") >= cut)
        cal = CalibrationConfig()
        report, _ = calibrated_compare(history, current, ["spend_all"], time="ts",
                                       calibration=cal, increments=keys)  # fmt: skip
        (r,) = report.overall()
        return r

    clean = judge(_spend(26, seed))
    assert not clean.drifted, clean.stats
    assert {"increment_value", "increment_nonzero_share_value",
            "increment_nonzero_size_value"} <= set(clean.stats)  # fmt: skip
    risen = judge(_spend(26, seed, rise_from=21))
    assert risen.drifted and risen.statistic == "increment_nonzero_size", risen.stats
    assert risen.stats["increment_value"] < risen.stats["increment_threshold"]  # diluted


def _clicks(days: int, seed: int, *, rise_from: int | None = None) -> pl.DataFrame:
    """All-time clicks and impressions of 300 users from a Monday (3 impressions a day on
    average, busier at weekends), each clicked with chance 0.1, 0.2 from `rise_from` on;
    their ratio is the user's click-through rate."""
    rng = np.random.default_rng(seed)
    users, n = 300, 300 * days
    day = np.repeat(np.arange(days), users)
    shown = rng.poisson(np.where(day % 7 >= 5, 4.0, 2.6))
    rate = np.where(day >= (rise_from if rise_from is not None else days), 0.2, 0.1)
    jitter = rng.uniform(0, 0.5, n)  # (drawn before the clicks, as always)
    clicked = rng.binomial(shown, rate).astype(np.float64)
    frame = _user_days(users, days, datetime(2025, 1, 6), jitter, shown=shown.astype(np.float64),
                       clicked=clicked)  # fmt: skip
    return frame.select(
        "ts", "user",
        pl.col("clicked").cum_sum().over("user").alias("clicks_all"),
        pl.col("shown").cum_sum().over("user").alias("impressions_all"),
    ).with_columns(ctr=pl.col("clicks_all") / pl.col("impressions_all"))  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_ratio_is_judged_on_the_ratio_of_its_recent_parts(seed):
    """A click-through rate that doubles for five days barely moves its all-time level;
    the ratio of what those days added to clicks and to impressions (the recent rate) is
    judged with a threshold from the same pairs, and flags it; a clean current does not.

    Measured, seeds 0-11, a 35-day history: clean, the rate at most 0.31 of its
    threshold; doubled, 2.1-8.9 (all flagged) where the mean of the ratio's own
    increments flagged 10 of 12 and its level none.  On a 21-day history (three
    same-weekday pairs) seed 0 flags a clean current on the rate and the mean alike."""
    from hortus.features.definitions import EntityKeys

    keys = {"clicks_all": ("user",), "impressions_all": ("user",),
            "ctr": EntityKeys(("user",), ("clicks_all", "impressions_all"))}  # fmt: skip
    cut = datetime(2025, 2, 10)  # a Monday, day 35

    def judge(frame: pl.DataFrame):
        history, current = frame.filter(pl.col("ts") < cut), frame.filter(pl.col("ts") >= cut)
        report, _ = calibrated_compare(history, current, ["ctr", "clicks_all", "impressions_all"],
                                       time="ts", calibration=CalibrationConfig(),
                                       increments=keys)  # fmt: skip
        return {r.column: r for r in report.overall()}["ctr"]

    clean = judge(_clicks(40, seed))
    assert not clean.drifted, clean.stats
    assert clean.stats["increment_rate_shift_value"] < clean.stats["increment_rate_shift_threshold"]
    risen = judge(_clicks(40, seed, rise_from=35))
    assert risen.drifted and risen.statistic == "increment_rate_shift", risen.stats
    rate = risen.stats["increment_rate_shift_value"] / risen.stats["increment_rate_shift_threshold"]
    level = risen.stats["level_value"] / risen.stats["level_threshold"]
    assert rate > 2 * level  # the recent rate is the sharper witness


def test_entity_keys_name_a_ratios_parts_only_when_keyed_alike():
    """A ratio of two window aggregates of one entity names its parts (and keeps them
    through pickling, as tasks receive them); a ratio across entities does not."""
    import pickle

    got = feature_entities(FEATURES)
    assert got["user_ctr_30d"] == ("user_id",)
    assert got["user_ctr_30d"].parts == ("user_activity__clicks_30d",
                                         "user_activity__impressions_30d")  # fmt: skip
    assert pickle.loads(pickle.dumps(got["user_ctr_30d"])).parts == got["user_ctr_30d"].parts
    assert got["category_affinity_30d"].parts is None  # (user, category) over user
    assert got["user_activity__clicks_30d"].parts is None  # a plain aggregate
    assert pickle.loads(pickle.dumps(got["user_ctr_30d"])).window == timedelta(days=30)


def test_a_constant_column_is_not_judged():
    rng = np.random.default_rng(2)
    history, current = _frame(21, rng), _frame(5, rng, start=21)
    history = history.with_columns(
        pl.when(pl.int_range(pl.len()) % 400 == 0).then(9.0).otherwise(1e-6).alias("flat")
    )  # 99.75% at one value
    current = current.with_columns(pl.lit(3.0).alias("flat"))  # moved, but not judged
    assert constant_columns(history, ["flat", "calm", "kind"]) == ["flat"]
    report, got_cal = calibrated_compare(history, current, ["flat", "calm"], time="ts",
                                         calibration=CalibrationConfig())  # fmt: skip
    got = {r.column: r for r in report.overall()}
    assert got["flat"].skipped == CONSTANT_NOTE and not got["flat"].drifted
    assert got["calm"].skipped is None and not report.drifted
    assert got_cal is not None and f"{CONSTANT_NOTE}: flat" in got_cal.describe()


def test_too_short_a_history_keeps_the_fixed_thresholds():
    rng = np.random.default_rng(1)
    day = timedelta(days=1)
    got = calibrate(_frame(1, rng), ["calm"], time="ts", span=day, lag=day,
                    calibration=CalibrationConfig())  # fmt: skip
    assert got.thresholds == {} and "fixed thresholds" in got.describe()


# ------------------------------------------------------------------ clean shop
def test_clean_snapshot_flags_nothing(clean):
    rows, manifest = clean
    assert manifest["drift"]["kinds"] == []
    got = _verdicts(rows)
    assert got["gate"] == set(), got["check"].detail
    assert got["check"].passed and "like-window pairs" in got["check"].detail
    assert "per-entity increments" in got["check"].detail
    assert got["check"].stats["via_lineage"] == {"sources": [], "features": []}
    assert got["monitor"] == set()
    # a recency that is ~0 at every example (seconds after its session started) is not
    # judged, and says so; the rule reads the training rows, no list of names
    constant = constant_columns(_split(rows)[0], FEATURE_NAMES)
    assert "user_activity__days_since_sessions" in constant
    skipped = got["per_feature"].filter(pl.col("column").is_in(constant))
    assert skipped.height == len(constant) and set(skipped["skipped"]) == {CONSTANT_NOTE}
    assert f"{CONSTANT_NOTE}: " in got["check"].detail  # the gate names them
    # every daily window of the dashboard too (fixed thresholds: 70-80% of the features
    # on every day; the previous calibration: one feature-day)
    assert got["per_day"] == {}, got["per_day"]


# --------------------------------------------------------------- drift scenarios
SCENARIOS = ("new_region", "price_change", "seasonal")
_BUILT: dict[tuple[str, int | None], tuple[set[str], dict, pl.DataFrame]] = {}


def _scenario(tmp_path_factory, kind: str) -> tuple[set[str], dict]:
    return _scenario_rows(tmp_path_factory, kind)[:2]


def _scenario_rows(
    tmp_path_factory, kind: str, seed: int | None = None
) -> tuple[set[str], dict, pl.DataFrame]:
    """Return the scenario's lineage set, verdicts and examples (built once per seed)."""
    if (kind, seed) not in _BUILT:
        root = tmp_path_factory.mktemp(kind if seed is None else f"{kind}{seed}")
        rows, manifest = _build(root, (kind,), seed=seed)
        expected = _expected(manifest, rows)  # fixed before any comparison
        _BUILT[kind, seed] = expected, _verdicts(rows), rows
    return _BUILT[kind, seed]


GAP = timedelta(days=float(PARAMS["gate"]["drift"].get("calibration", {}).get(
    "increment_gap_days", 3.0)))  # fmt: skip


def _holdout(rows: pl.DataFrame) -> pl.DataFrame:
    """Return the hold-out rows (the gate's split) with their per-entity increments."""
    from hortus.models.modeling import ModelSpec, time_split
    from hortus.monitoring._drift_increments import with_increments

    rows = rows.filter(pl.col("label").is_not_null())
    spec = ModelSpec("label", tuple(FEATURE_NAMES), time="ts", group="rec_id",
                     holdout_fraction=HOLDOUT)  # fmt: skip
    _, holdout, _ = time_split(rows, spec)
    both = with_increments(rows.sort("ts"), INCREMENTS, time="ts", gap=GAP)
    return both.filter(pl.col("ts") >= holdout["ts"].min())


def _effect(drifted: pl.DataFrame, clean: pl.DataFrame, feature: str) -> float:
    """Return how far a feature moved in the hold-out against the clean shop of the same
    seed (the counterfactual), on the scale of a standardised mean difference.

    Numbers: the largest of, for its level and (window aggregates) its increments, the
    |mean difference| in clean standard deviations (increments on the asinh scale the
    detector uses) and the two-sample KS distance re-expressed as the mean shift of two
    unit normals that gives it (``2 Phi^-1((1 + KS) / 2)``: a change of shape that
    leaves the mean, such as a third of the plants dearer, counts too).  Categories
    (nulls as a category): the largest Cohen's h of a category's share
    (``|2 asin sqrt(p1) - 2 asin sqrt(p2)|``, on the same scale).  The detector is not
    used: this is the ground truth the verdicts are held to."""
    from scipy.stats import ks_2samp, norm

    from hortus.monitoring._drift_increments import increment_name

    if not clean[feature].dtype.is_numeric():
        a, b = (
            f[feature].cast(pl.String).fill_null("<null>").value_counts(normalize=True)
            for f in (drifted, clean)
        )
        j = a.join(b, on=feature, how="full", coalesce=True).fill_null(0.0)
        h = 2 * (j[:, 1].sqrt().arcsin() - j[:, 2].sqrt().arcsin())
        return float(h.abs().max())
    cols = [(feature, False)]
    if feature in INCREMENTS:
        cols.append((increment_name(feature), True))
    out = 0.0
    for c, asinh in cols:
        x, y = (f[c].cast(pl.Float64).drop_nulls() for f in (drifted, clean))
        x, y = x.filter(x.is_finite()), y.filter(y.is_finite())
        if x.len() < 2 or y.len() < 2:
            continue
        ks = float(ks_2samp(x.to_numpy(), y.to_numpy()).statistic)
        out = max(out, 2 * float(norm.ppf((1 + ks) / 2)))
        if asinh:
            x, y = x.arcsinh(), y.arcsinh()
        sd = y.std()
        out = max(out, abs(x.mean() - y.mean()) / sd if sd else 0.0)
    return out


#: a feature that the scenario moved at least this much against the clean shop of the
#: same seed (`_effect`) really changes: Cohen's "small" effect, fixed before any
#: comparison.  A lineage feature at or above it must be flagged; a feature outside
#: lineage must not reach it (the manifest names every source column the scenario
#: changes); a lineage feature below it may go either way (on the default snapshot the
#: counterfactual itself wanders by up to 0.15 on features the scenario cannot change:
#: the two shops' draws part after the drift starts).  Column lineage is over-inclusive
#: by nature: a feature reading a changed column need not change (an average rating when
#: there are more reviews of the same kind), or not by a measurable amount (spend when
#: buyers answer dearer plants by buying fewer of them).
MOVED = 0.20

#: another draw of the same shop (params.yaml's simulate settings, faults included)
SECOND_SEED = 7

#: why a scenario does not yet flag every feature it moves (measured, seed 42): the
#: strict xfail turns into a failure once met.  Met by every scenario since the dashboard
#: judges the trailing week to each day (before: one day's rows, without the
#: weekday-aligned parts, missed 4 of seasonal's 26 moved features)
NOT_MET: dict[str, str] = {}

#: why the literal reading (every lineage feature flagged) is not met: lineage features
#: that the scenario moves less than MOVED (`test_scenario_flags_every_feature_it_moves`
#: prints them with their effects)
LINEAGE_NOT_MET = {
    "price_change": "2 of the lineage set flagged (the catalogue price and its band, the "
    "features the scenario moves by MOVED or more); spend, the average line value, "
    "price_vs_user_avg and the order counts move 0.03-0.15 against the clean shop",
    "seasonal": "the lineage features under MOVED (ratings, a user's counts of the very "
    "plant recommended, the category share of a user's views, price_vs_user_avg)",
}


def test_new_region_is_flagged_exactly_by_every_decision(tmp_path_factory):
    """The default suite's drift scenario (the others are slow): ``new_region`` on the
    default snapshot is flagged on exactly its lineage set (region and country, fixed
    from the manifest before any comparison) by the gate, the staleness monitor and the
    dashboard's newest point, and no dashboard point flags anything else."""
    expected, got = _scenario(tmp_path_factory, "new_region")
    assert expected == {"user_profile__country", "user_profile__region"}
    assert got["gate"] == got["monitor"] == got["last_day"] == expected, got["check"].detail
    assert "2 of 47 columns drifted" in got["check"].detail  # the gate's report says so
    for day, flagged in got["per_day"].items():
        assert flagged <= expected, (day, flagged)


@pytest.mark.slow
@pytest.mark.parametrize("kind", SCENARIOS)
def test_scenario_flags_nothing_outside_its_lineage(tmp_path_factory, kind):
    expected, got = _scenario(tmp_path_factory, kind)
    assert got["gate"], got["check"].detail  # something is detected
    assert got["gate"] == got["monitor"]  # the gate and the staleness monitor agree
    # and the dashboard: its newest point judges the trailing week, the monitor's rows
    assert got["last_day"] == got["monitor"], got["last_day"] ^ got["monitor"]
    for verdict in (got["gate"], got["monitor"], *got["per_day"].values()):
        assert verdict <= expected, (verdict - expected, got["check"].detail)
    # the lineage explanation names unflagged features only, each reading a source column
    # of a flagged one (over-inclusive by nature: in seasonal the plant's category, the
    # key of a flagged user-category count, is named though the scenario leaves it alone)
    lineage = feature_lineage(FEATURES)
    sources = set().union(*(lineage[f] for f in got["gate"]))
    via = got["check"].stats["via_lineage"]
    assert not set(via["features"]) & got["gate"]
    assert set(via["sources"]) == sources
    assert all(lineage[f] & sources for f in via["features"])


def _effects(
    tmp_path_factory, clean: pl.DataFrame, kind: str, seed: int | None = None
) -> tuple[set[str], dict, dict[str, float]]:
    """Return the scenario's lineage set, verdicts and every feature's effect (`_effect`)
    against `clean`, the examples of the clean shop of the same seed."""
    expected, got, rows = _scenario_rows(tmp_path_factory, kind, seed)
    drifted, base = _holdout(rows), _holdout(clean)
    return expected, got, {f: _effect(drifted, base, f) for f in FEATURE_NAMES}


def _lineage(kind: str) -> set[str]:
    """Every feature reading a source column the scenario changes (constant ones too)."""
    return set(features_reading(FEATURES, list(DRIFT_CHANGES[kind]), among=FEATURE_NAMES))


def _kinds(not_met: dict[str, str]) -> list:
    """Return the scenarios, each in `not_met` a strict xfail with its measured reason."""
    return [
        pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=not_met[k]))
        if k in not_met
        else k
        for k in SCENARIOS
    ]


@pytest.mark.slow
@pytest.mark.parametrize("kind", _kinds(NOT_MET))
def test_scenario_flags_every_feature_it_moves(tmp_path_factory, clean, kind):
    """Every lineage feature the scenario moves by MOVED or more against the clean shop of
    the same seed is flagged by the gate, the monitor and the dashboard's newest day."""
    _assert_flags_what_moved(kind, *_effects(tmp_path_factory, clean[0], kind))


def _assert_flags_what_moved(kind: str, expected: set[str], got: dict, effects: dict) -> None:
    moved = {f for f in expected if effects[f] >= MOVED}
    assert moved, effects  # each scenario moves something that much
    small = {f: round(effects[f], 3) for f in sorted(expected - moved)}
    print(f"{kind}: {len(moved)} moved, flagged {len(got['gate'] & moved)}; under MOVED "
          f"(either verdict), flagged {sorted(got['gate'] & set(small))}: {small}")  # fmt: skip
    for verdict in (got["gate"], got["monitor"], got["last_day"]):
        assert moved <= verdict, {f: round(effects[f], 3) for f in moved - verdict}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [None, SECOND_SEED], ids=["seed42", "seed7"])
@pytest.mark.parametrize("kind", SCENARIOS)
def test_scenario_moves_nothing_outside_its_lineage(tmp_path_factory, request, kind, seed):
    """The manifest is complete at the resolution of MOVED: no feature outside the lineage
    set moved that much (on either seed)."""
    clean = request.getfixturevalue("clean")[0] if seed is None else (
        request.getfixturevalue("second_clean_rows"))  # fmt: skip
    _, _, effects = _effects(tmp_path_factory, clean, kind, seed)
    lineage = _lineage(kind)
    outside = {f: round(e, 3) for f, e in effects.items() if f not in lineage and e >= MOVED}
    assert not outside


@pytest.mark.slow
@pytest.mark.parametrize("kind", _kinds(LINEAGE_NOT_MET))
def test_scenario_flags_exactly_its_lineage_set(tmp_path_factory, kind):
    """The literal reading: every lineage feature flagged (new_region meets it)."""
    expected, got = _scenario(tmp_path_factory, kind)
    assert expected  # derived from the manifest and lineage, never hand-listed
    assert got["gate"] == expected, (expected - got["gate"], got["check"].detail)
    assert got["monitor"] == expected
    assert got["last_day"] == expected  # the dashboard agrees (its newest day)


# ------------------------------------------------------------------ a second seed


@pytest.fixture(scope="module")
def second_clean_rows(tmp_path_factory) -> pl.DataFrame:
    return _build(tmp_path_factory.mktemp("clean7"), (), seed=SECOND_SEED)[0]


@pytest.fixture(scope="module")
def second_clean(second_clean_rows) -> dict:
    return _verdicts(second_clean_rows)


@pytest.mark.slow
def test_second_seed_clean_shop_flags_nothing(second_clean):
    got = second_clean
    assert got["gate"] == set() and got["monitor"] == set(), got["check"].detail
    # the dashboard's daily windows: none (the one feature-day measured before, the level
    # of user_activity__days_since_sessions at 1.002 of its threshold, is not judged now:
    # constant in the reference); at most one allowed, the chance the margin leaves
    assert sum(map(len, got["per_day"].values())) <= 1, got["per_day"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", SCENARIOS)
def test_second_seed_flags_nothing_outside_lineage(tmp_path_factory, second_clean, kind):
    """Seed 7: the gate and the monitor agree, flag something and nothing outside the
    lineage set; a dashboard day flags outside it only what the clean shop of the same
    seed flags that day; new_region flags exactly its lineage set."""
    expected, got, _ = _scenario_rows(tmp_path_factory, kind, SECOND_SEED)
    assert got["gate"] and got["gate"] == got["monitor"], got["check"].detail
    assert got["last_day"] == got["monitor"], got["last_day"] ^ got["monitor"]
    assert got["gate"] <= expected, (got["gate"] - expected, got["check"].detail)
    for day, flagged in got["per_day"].items():
        assert flagged - expected <= second_clean["per_day"].get(day, set()), (day, flagged)
    if kind == "new_region":
        assert got["gate"] == expected == got["last_day"]


#: why seed 7 does not flag every feature its scenario moves (measured)
SECOND_NOT_MET = {
    "price_change": "plant_conversion_30d moves 0.22 (buyers order fewer of the dearer "
    "plants) and scores 0.79 of its threshold (its increments); the catalogue price and "
    "its band are flagged",
    "seasonal": "22 of the 27 moved features flagged; 5 user-activity features moved "
    "0.21-0.31 are missed (impressions and sessions over 30 days, sessions over 7, views "
    "over 30, the average line value): their increments are calibrated on the 3 "
    "same-weekday pairs a 16-day history leaves after the warm-up, all at one lag, so the "
    "null cannot tell chance (which shrinks with the rows) from a week-to-week offset "
    "(which does not); seed 7's three pair distances for views over 30 days (0.11-0.21, "
    "1.3-2.8 iid standard errors) set a threshold of 0.353 where seed 42's (0.0005-0.07, "
    "0.01-0.8 standard errors) set 0.064",
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", _kinds(SECOND_NOT_MET))
def test_second_seed_flags_every_feature_it_moves(tmp_path_factory, second_clean_rows, kind):
    _assert_flags_what_moved(
        kind, *_effects(tmp_path_factory, second_clean_rows, kind, SECOND_SEED)
    )
