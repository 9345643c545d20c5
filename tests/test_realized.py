"""Realized outcomes (issue 15 item 6): the simulator's closed loop and the `realized` monitor."""

from __future__ import annotations

import hashlib
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml

from hortus.domains.plantshop._closed_loop import Served
from hortus.domains.plantshop._oracle import oracle_lists
from hortus.domains.plantshop.simulate import SimConfig, simulate, simulate_more
from hortus.monitoring._monitor_realized import (
    PREDICTION_LOG,
    realized_frame,
    realized_metrics_frame,
    score_drift_frame,
)
from hortus.monitoring.alerts import AlertRule, evaluate
from hortus.project.definition import OutcomeCondition, OutcomesDef, Project, ProjectError

OD = OutcomesDef(
    table="silver.events",
    keys=(("user_id", "user_id"), ("plant_id", "plant_id")),
    time="ts",
    positive=OutcomeCondition("event_type", ("rec_click", "order")),
    exposed=OutcomeCondition("event_type", ("rec_impression",)),
    window_days=3,
    k=10,
)
CFG = SimConfig(seed=7, start="2025-03-01", days=4, users=300, plants=50)
SERVED_AT = datetime(2025, 3, 5, tzinfo=UTC)  # midnight of the first new day


def _tree_md5(root: Path) -> str:
    h = hashlib.md5()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def _events(folder: Path, first: date) -> pl.DataFrame:
    frames = []
    for path in sorted(folder.glob("events/events-*.jsonl.gz")):
        day = date.fromisoformat(path.name[7:17])
        if day >= first and "part2" not in path.name and "extra" not in path.name:
            frames.append(
                pl.read_ndjson(path, infer_schema_length=None).select(
                    "event_type",
                    "user_id",
                    "plant_id",
                    pl.col("ts").str.to_datetime(time_zone="UTC"),
                )  # fmt: skip
            )
    return pl.concat(frames)


def _predictions(lists: pl.DataFrame, version: int) -> pl.DataFrame:
    return lists.select(
        pl.lit("recommender").alias("model_name"),
        pl.lit(version, pl.Int64).alias("model_version"),
        pl.lit("batch-1").alias("batch_id"),
        pl.col("as_of").cast(pl.Datetime("us", "UTC")),
        pl.col("rank").cast(pl.Int64),
        (1.0 / pl.col("rank")).alias("score"),
        "user_id",
        "plant_id",
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "data"
    simulate(CFG, out)
    return out


def _continue(base: Path, tmp: Path, name: str, served: pl.DataFrame | None) -> Path:
    folder = tmp / name
    shutil.copytree(base, folder)
    simulate_more(folder, 3, served=served)
    return folder


# ------------------------------------------------------------------ closed loop
def test_closed_loop_good_ranking_beats_reversed(base, tmp_path):
    good = oracle_lists(CFG, 10, at=SERVED_AT)
    bad = oracle_lists(CFG, 10, at=SERVED_AT, worst=True)
    results = {}
    for name, lists, version in (("good", good, 1), ("bad", bad, 2)):
        folder = _continue(base, tmp_path, name, lists)
        events = _events(folder, SERVED_AT.date())
        # the clock: the end of the last new day (the export's window), so 3-day windows close
        got = realized_frame(_predictions(lists, version), events, OD,
                             horizon=SERVED_AT + timedelta(days=3))  # fmt: skip
        row = got.filter(pl.col("segment") == "all").row(0, named=True)
        assert row["status"] == "complete" and row["lists"] == CFG.users
        results[name] = row
    assert results["good"]["precision"] > 3 * results["bad"]["precision"]
    assert results["good"]["ctr"] > results["bad"]["ctr"]
    assert results["good"]["hit_rate"] > results["bad"]["hit_rate"]
    # same seed and same lists: the same bytes
    again = _continue(base, tmp_path, "good-again", good)
    assert _tree_md5(again / "events") == _tree_md5(tmp_path / "good" / "events")


def test_without_served_lists_the_export_is_unchanged(base, tmp_path):
    open_loop = _continue(base, tmp_path, "open", None)
    # lists served after the new days never show: byte-identical to the open loop
    late = oracle_lists(CFG, 10, at=SERVED_AT + timedelta(days=30))
    later = _continue(base, tmp_path, "late", late)
    assert _tree_md5(open_loop / "events") == _tree_md5(later / "events")
    assert (open_loop / "_manifest.json").read_bytes() != (later / "_manifest.json").read_bytes()


def test_served_lists_newest_wins_from_its_day():
    frame = pl.DataFrame(
        {
            "user_id": ["u000001"] * 3 + ["u000002"],
            "plant_id": ["p0001", "p0002", "p0003", "p0004"],
            "rank": [1, 2, 1, 1],
            "as_of": [datetime(2025, 3, 1, tzinfo=UTC)] * 2
            + [datetime(2025, 3, 2, 10, tzinfo=UTC), datetime(2025, 3, 3, tzinfo=UTC)],
        }
    )
    s = Served.from_frame(frame, date(2025, 3, 1))
    assert s.table(0, 3).tolist() == [[0, 1], [-1, -1], [-1, -1]]
    assert s.table(1, 3).tolist() == [[0, 1], [-1, -1], [-1, -1]]  # 10:00 list: next day
    assert s.table(2, 3).tolist() == [[2, -1], [3, -1], [-1, -1]]


# ------------------------------------------------------------------ realized metrics
def _hand_built():
    t0 = datetime(2025, 3, 10, tzinfo=UTC)
    t1 = t0 + timedelta(days=1)
    preds = pl.DataFrame(
        {
            "model_name": ["rec"] * 8,
            "model_version": [3] * 4 + [4] * 4,
            "batch_id": ["b1"] * 4 + ["b2"] * 4,
            "as_of": [t0] * 4 + [t1] * 4,
            "rank": [1, 2, 1, 2, 1, 2, 1, 2],
            "score": [0.9, 0.8, 0.7, 0.6, 0.9, 0.5, 0.4, 0.3],
            "user_id": ["u1", "u1", "u2", "u2", "u1", "u1", "u3", "u3"],
            "plant_id": ["p1", "p2", "p1", "p3", "p4", "p2", "p1", "p5"],
            "region": ["N", "N", "S", "S", "N", "N", "S", "S"],
        }
    )
    h = timedelta(hours=1)
    events = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2", "u1", "u3", "u3", "u9"],
            "plant_id": ["p1", "p1", "p2", "p3", "p1", "p4", "p5", "p1", "p1"],
            "event_type": ["rec_impression", "rec_click", "rec_impression", "order",
                           "rec_impression", "rec_click", "rec_impression", "view", "order"],
            "ts": [t0 + h, t0 + 2 * h, t0 + h, t0 + 5 * 24 * h,  # u2/p3 order: after the window
                   t0 + h, t1 + h, t1 + h, t1 + 2 * h, t1 + 3 * h],
        }
    )  # fmt: skip
    return preds, events


def _by_hand(preds: pl.DataFrame, events: pl.DataFrame, window: timedelta) -> pl.DataFrame:
    """The same metrics, computed the obvious way (one flag per prediction, then means)."""

    def flagged(types: list[str], name: str) -> pl.DataFrame:
        ev = events.filter(pl.col("event_type").is_in(types))
        return (
            preds.join(ev, on=["user_id", "plant_id"], how="left")
            .with_columns(
                ((pl.col("ts") >= pl.col("as_of")) & (pl.col("ts") < pl.col("as_of") + window))
                .fill_null(False)
                .alias(name)
            )
            .group_by("model_version", "user_id", "plant_id")
            .agg(pl.col(name).any())
        )

    keys = ["model_version", "user_id", "plant_id"]
    p = preds.join(flagged(["rec_click", "order"], "pos"), on=keys).join(
        flagged(["rec_impression"], "exp"), on=keys
    )
    lists = p.group_by("model_version", "user_id").agg(pl.col("pos").any().alias("hit"))
    return (
        p.group_by("model_version")
        .agg(
            pl.col("pos").mean().alias("precision"),
            (pl.col("pos") & pl.col("exp")).sum().alias("xp"),
            pl.col("exp").sum().alias("x"),
        )
        .join(
            lists.group_by("model_version").agg(pl.col("hit").mean().alias("hit_rate")),
            on="model_version",
        )  # fmt: skip
        .with_columns((pl.col("xp") / pl.col("x")).alias("ctr"))
        .sort("model_version")
    )


def test_realized_metrics_match_a_hand_computation():
    preds, events = _hand_built()
    od = OutcomesDef(**{**OD.__dict__, "k": None})
    horizon = datetime(2025, 3, 20, tzinfo=UTC)
    got = realized_frame(preds, events, od, horizon=horizon, segments=["region"])
    overall = got.filter(pl.col("segment") == "all").sort("model_version")
    want = _by_hand(preds, events, timedelta(days=3))
    assert overall["precision"].to_list() == pytest.approx(want["precision"].to_list())
    assert overall["hit_rate"].to_list() == pytest.approx(want["hit_rate"].to_list())
    assert overall["ctr"].to_list() == pytest.approx(want["ctr"].to_list())
    # v3: only u1's p1 clicked in the window (u2's p3 order comes after it); v4: u1's p4
    assert overall["precision"].to_list() == pytest.approx([0.25, 0.25])
    assert overall["hit_rate"].to_list() == pytest.approx([0.5, 0.5])
    for region, want_p in (("N", [0.5, 0.5]), ("S", [0.0, 0.0])):
        seg = got.filter((pl.col("segment") == "region") & (pl.col("value") == region))
        assert seg.sort("model_version")["precision"].to_list() == pytest.approx(want_p)
    # k=1 keeps rank 1 only
    top1 = realized_frame(preds, events, OutcomesDef(**{**OD.__dict__, "k": 1}), horizon=horizon)
    assert top1.filter(pl.col("segment") == "all")["items"].to_list() == [2, 2]


def test_pending_windows_are_not_counted():
    preds, events = _hand_built()
    # the clock: 2 days after v4's as_of, so v4's 3-day windows are still open
    horizon = datetime(2025, 3, 13, tzinfo=UTC)
    got = realized_frame(preds, events, OD, horizon=horizon).filter(pl.col("segment") == "all")
    v3, v4 = got.sort("model_version").to_dicts()
    assert v3["status"] == "complete" and v3["precision"] == pytest.approx(0.25)
    assert v4["status"] == "pending" and v4["precision"] is None and v4["pending_lists"] == 2
    rows = realized_metrics_frame(got, horizon, window_days=3, k=10)
    v4_rows = rows.filter(pl.col("subject") == "rec v4 2025-03-11")
    assert v4_rows["metric"].to_list() == ["realized_pending"]
    assert v4_rows["value"].to_list() == [2.0]
    last = rows.filter(pl.col("metric") == "realized_precision_last")
    assert last["subject"].to_list() == ["rec v3"]  # v4 has no complete day yet
    # without a horizon the clock is the outcome table's last time (u2's order, 03-15)
    auto = realized_frame(preds, events, OD)
    assert auto.equals(realized_frame(preds, events, OD, horizon=datetime(2025, 3, 15, tzinfo=UTC)))
    assert set(auto["status"]) == {"complete"}
    early = realized_frame(
        preds, events.filter(pl.col("ts") < datetime(2025, 3, 12, tzinfo=UTC)), OD
    )
    assert set(early["status"]) == {"pending"}


def test_alert_fires_when_realized_precision_falls_below_the_floor():
    preds, events = _hand_built()
    horizon = datetime(2025, 3, 20, tzinfo=UTC)
    got = realized_frame(preds, events.filter(pl.col("user_id") != "u1"), OD, horizon=horizon)
    rows = realized_metrics_frame(got, datetime(2026, 1, 1, tzinfo=UTC), window_days=3, k=10)
    # the example rule of params.yaml: realized_precision_last < 0.05
    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    spec = next(r for r in doc["alerts"]["rules"] if r["name"] == "realized-precision-low")
    rule = AlertRule.from_dict(spec)
    assert (rule.metric, rule.op, rule.threshold) == ("realized_precision_last", "<", 0.05)
    fired = evaluate([rule], rows, now=datetime(2026, 1, 2, tzinfo=UTC))
    # without u1's clicks both versions realize nothing: precision 0 < 0.05
    assert sorted((e.subject, e.status) for e in fired) == [
        ("rec v3", "firing"), ("rec v4", "firing")
    ]  # fmt: skip
    ok = realized_metrics_frame(
        realized_frame(preds, events, OD, horizon=horizon),
        datetime(2026, 1, 1, tzinfo=UTC), window_days=3, k=10,
    )  # fmt: skip
    assert evaluate([rule], ok, now=datetime(2026, 1, 2, tzinfo=UTC)) == []


def test_score_drift_against_the_holdout_scores():
    served = pl.DataFrame(
        {
            "model_name": ["rec"] * 400,
            "model_version": [1] * 400,
            "as_of": [datetime(2025, 3, 10, tzinfo=UTC)] * 200
            + [datetime(2025, 3, 11, tzinfo=UTC)] * 200,
            "score": [i / 200 for i in range(200)] + [0.5 + i / 400 for i in range(200)],
        }
    )
    ref = {("rec", 1): [i / 200 for i in range(200)]}
    rows = score_drift_frame(served, ref, datetime(2026, 1, 1, tzinfo=UTC))
    drift = rows.filter(pl.col("metric") == "score_drift").sort("subject")
    assert drift["subject"].to_list() == ["rec v1 2025-03-10", "rec v1 2025-03-11"]
    low, high = drift["value"].to_list()
    assert low == pytest.approx(0.0, abs=1e-9) and high == pytest.approx(0.5, abs=0.01)
    assert '"drifted":"1"' in drift["labels"][1] and '"drifted":"0"' in drift["labels"][0]
    assert score_drift_frame(served, {}, datetime(2026, 1, 1, tzinfo=UTC)).height == 0


# ------------------------------------------------------------------ project definition
def test_outcomes_declaration_is_checked():
    root = Path(__file__).resolve().parents[1]
    od = Project.load(root).model("recommender").outcomes
    assert od is not None and od.positive.values == ("rec_click", "order") and od.k == 10
    doc = {"name": "x", "contracts": "c.yaml",
           "models": {"m": {"task": "binary", "table": "silver.t", "target": "y",
                            "features": ["a"], "outcomes": {}}}}  # fmt: skip
    for outcomes, message in (
        ({"table": "silver.e", "keys": ["id"], "time": "ts", "positive": "y", "windw": 3},
         "unknown key(s) windw"),
        ({"table": "silver.e", "keys": ["id"], "time": "ts"}, "positive is required"),
        ({"table": "silver.e", "keys": ["id"], "time": "ts",
          "positive": {"column": "t", "values": [1]}}, "unknown key(s) values"),
        ({"table": "silver.e", "keys": ["id"], "time": "ts", "positive": "y",
          "window_days": 0}, "window_days must be > 0"),
    ):  # fmt: skip
        doc["models"]["m"]["outcomes"] = outcomes
        with pytest.raises(ProjectError, match=re.escape(message)):
            Project.from_dict(doc, root=root)


# ------------------------------------------------------------------ dashboard
def test_dashboard_series_takes_the_newest_run_of_each_day():
    from hortus.publishing.monitor_views import realized_series

    preds, events = _hand_built()
    early = realized_frame(preds, events, OD, horizon=datetime(2025, 3, 13, tzinfo=UTC))
    late = realized_frame(preds, events, OD, horizon=datetime(2025, 3, 20, tzinfo=UTC))
    runs = pl.concat([
        realized_metrics_frame(early, datetime(2026, 1, 1, tzinfo=UTC), window_days=3, k=10),
        realized_metrics_frame(late, datetime(2026, 1, 2, tzinfo=UTC), window_days=3, k=10),
    ])  # fmt: skip
    first = realized_series(runs.filter(pl.col("at") < datetime(2026, 1, 2, tzinfo=UTC)), "rec")
    assert first.select("day", "version", "status").rows() == [
        ("2025-03-10", 3, "complete"), ("2025-03-11", 4, "pending")
    ]  # fmt: skip
    assert first["lists"].to_list() == [2.0, 2.0] and first["value"][1] is None
    both = realized_series(runs, "rec")
    assert both["status"].to_list() == ["complete", "complete"]
    assert both["value"].to_list() == pytest.approx([0.25, 0.25])
    south = realized_series(runs, "rec", segment="region", value="S")
    assert south.height == 0  # no segments measured in these runs


# ------------------------------------------------------------------ through the lakehouse
def test_cli_closes_the_loop_and_the_monitor_reads_it(project, capsys):
    """Logged lists in ops.prediction_log -> `hortus simulate --more-days` -> silver -> monitor."""
    from conftest import TEST_KEY
    from hortus.cli.core import main
    from hortus.lakehouse import silver
    from hortus.lakehouse.catalog import Catalog
    from hortus.lakehouse.ingest import ingest
    from hortus.lakehouse.tables import Lakehouse
    from hortus.monitoring.monitors import MONITORS, realized

    simulate(CFG, project.data)
    lh = Lakehouse(
        paths=project, catalog=Catalog.load(root=project.root), stage="test", user="pipeline"
    )
    lists = oracle_lists(CFG, 10, at=SERVED_AT)
    log = _predictions(lists, 1).select(
        "batch_id", "model_name", "model_version",
        pl.concat_str(pl.lit('{"plant_id": "'), "plant_id", pl.lit('", "user_id": "'),
                      "user_id", pl.lit('"}')).alias("request"),
        pl.lit(None, pl.String).alias("features"), "score", "rank", "as_of",
        pl.lit(SERVED_AT).alias("logged_at"),
    )  # fmt: skip
    lh.write(PREDICTION_LOG, log, mode="append")
    assert main(["--root", str(project.root), "simulate", "--more-days", "4", "--quiet"]) == 0
    assert f"closed loop: {CFG.users} buyer(s) saw {CFG.users} served list(s)" in (
        capsys.readouterr().out
    )
    ingest(project.data, lh)
    silver.build(lh, silver.SilverOptions(key=TEST_KEY.encode()))
    rows = realized(lh, datetime(2026, 1, 1, tzinfo=UTC), reference={})
    assert "realized" in MONITORS
    prec = rows.filter(pl.col("metric") == "realized_precision")
    subjects = set(prec["subject"])
    assert "recommender v1 2025-03-05" in subjects  # the 4th new day closes the 3-day window
    assert any("user_profile__region=" not in s for s in subjects)
    value = prec.filter(pl.col("subject") == "recommender v1 2025-03-05")["value"].item()
    assert value > 0.1  # the buyers' true best lists, shown to them
    last = rows.filter(pl.col("metric") == "realized_precision_last")
    assert last["subject"].to_list() == ["recommender v1"]


def test_outcomes_columns_are_checked_against_the_catalog():
    from hortus.lakehouse.catalog import Catalog

    root = Path(__file__).resolve().parents[1]
    doc = yaml.safe_load((root / "hortus.yaml").read_text())
    catalog = Catalog.load(root=root)
    Project.from_dict(doc, root=root).validate(catalog)  # the plant shop's declaration
    doc["models"]["recommender"]["outcomes"]["time"] = "when"
    with pytest.raises(ProjectError, match="outcomes.time: no column 'when' in silver.events"):
        Project.from_dict(doc, root=root).validate(catalog)
    doc["models"]["recommender"]["outcomes"]["table"] = "silver.nothing"
    with pytest.raises(ProjectError, match="outcomes.table: no table 'silver.nothing'"):
        Project.from_dict(doc, root=root).validate(catalog)
