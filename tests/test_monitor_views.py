"""Unit tests of hortus.publishing.monitor_views (the logic behind notebooks/monitor.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from hortus.errors import HortusError
from hortus.project.definition import ModelDef
from hortus.publishing import monitor_views as mv


def _rows(days: int = 8, per_day: int = 200) -> pl.DataFrame:
    rng = np.random.default_rng(3)
    n = days * per_day
    start = datetime(2025, 3, 1, tzinfo=UTC)
    late = np.arange(n) >= int(n * 0.75)
    return pl.DataFrame(
        {
            "id": np.arange(n),
            "t": [start + timedelta(minutes=int(i * days * 1440 / n)) for i in range(n)],
            "spend": rng.normal(10.0, 2.0, n) + np.where(late, 6.0, 0.0),
            "calm": rng.normal(0.0, 1.0, n),
            "area": rng.choice(["north", "south"], n),
        }
    )


def test_freshness_table_puts_stale_tables_first():
    """Check that the latest freshness run is pivoted to one row per table, stale first."""
    at = datetime(2025, 3, 1, tzinfo=UTC)
    rows = [
        ("freshness", m, t, v, at)
        for t, stale in (("gold.a", 0.0), ("gold.b", 1.0))
        for m, v in (("age_hours", 0.087926046111111), ("sla_hours", 24.0), ("stale", stale))
    ]
    metrics = pl.DataFrame(
        rows, schema=["monitor", "metric", "subject", "value", "at"], orient="row"
    )
    table = mv.freshness_table(metrics)
    assert table["table"].to_list() == ["gold.b", "gold.a"]
    assert table.columns == ["table", "age_hours", "sla_hours", "stale", "at"]
    assert table["age_hours"].to_list() == [0.09, 0.09]  # hours shown to 2 decimals
    assert mv.freshness_table(metrics.head(0)).height == 0


def test_ops_clock_is_today_without_rows():
    """Check that an empty operations plane gives today as the whole range."""
    today = datetime.now(UTC).date()
    assert mv.ops_clock({"m": (None, "at")}) == (today, today)


def test_drift_by_window_flags_the_shifted_feature_only():
    """Check that daily windows after the training share flag `spend`, not `calm`."""
    rows = _rows()
    features = mv.feature_columns(rows, None, exclude=["id", "t", "area"])
    assert features == ["spend", "calm"]
    drift, cutoff = mv.drift_by_window(rows, features, time="t", reference_share=0.5, window="1d")
    assert cutoff > rows["t"].min()
    flagged = set(drift.filter(pl.col("drifted"))["column"])
    assert "spend" in flagged and "calm" not in flagged


def test_drift_by_window_points_judge_the_trailing_period_to_each_window():
    """Check that each point judges the rows from the cut-off (at most `trailing` back) to
    its window's end, so the newest judges every newer row as the staleness monitor does;
    ``trailing=None`` judges each window's own rows."""
    rows = _rows(days=12)
    drift, cutoff = mv.drift_by_window(rows, ["spend", "calm"], time="t", reference_share=0.5,
                                       window="1d")  # fmt: skip
    newer = rows.filter(pl.col("t") >= cutoff)
    days = newer.group_by(pl.col("t").dt.truncate("1d").alias("d")).len().sort("d")
    calm = drift.filter(pl.col("column") == "calm").sort("window_start")
    assert calm["window_start"].to_list() == days["d"].to_list()
    assert calm["n_current"].to_list() == days["len"].cum_sum().to_list()  # 6 days < a week
    own, _ = mv.drift_by_window(rows, ["calm"], time="t", reference_share=0.5, window="1d",
                                trailing=None)  # fmt: skip
    assert own.sort("window_start")["n_current"].to_list() == days["len"].to_list()
    short, _ = mv.drift_by_window(rows, ["calm"], time="t", reference_share=0.5, window="1d",
                                  trailing="2d")  # fmt: skip
    pairs = days["len"] + days["len"].shift(1).fill_null(0)
    assert short.sort("window_start")["n_current"].to_list() == pairs.to_list()


def test_drift_by_window_refuses_a_range_too_short_to_split():
    """Check that rows at a single instant give a clear error, not an empty chart."""
    rows = _rows().with_columns(pl.lit(datetime(2025, 3, 1, tzinfo=UTC)).alias("t"))
    with pytest.raises(HortusError, match="too short a time range"):
        mv.drift_by_window(rows, ["spend"], time="t", reference_share=0.75, window="1d")


def test_segment_choices_and_filter_fall_back_to_all():
    """Check the segment values, a kept segment and the note for an unseen value."""
    rows = _rows()
    assert mv.segment_columns(rows, ["area", "region"]) == ["area"]
    assert mv.segment_values(rows, "area") == ["ALL", "north", "south"]
    kept, why = mv.filter_segment(rows, "area", "north")
    assert why is None and set(kept["area"]) == {"north"}
    same, why = mv.filter_segment(rows, "area", "east")
    assert same.height == rows.height and "east" in why
    assert mv.filter_segment(rows, "missing", "x")[1] == "no `missing` column: shown for ALL."


def test_kpi_layout_finds_time_and_segment_columns():
    """Check that a KPI table's time and segment columns are found by type, not by name."""
    kpis = pl.DataFrame({"day": [date(2025, 1, 1)], "store": ["ALL"], "sales": [1.0]})
    assert mv.kpi_layout(kpis) == ("day", "store")
    assert mv.kpi_layout(kpis.drop("store")) == ("day", None)


def test_model_context_without_a_champion_uses_the_definition(lakehouse):
    """Check that an unregistered model takes time, segments and roles from hortus.yaml."""
    model = ModelDef(
        name="churn", task="binary", table="gold.customers", target="left", features="all",
        time="t", segments=("area",), ids=("id",),
    )  # fmt: skip
    ctx = mv.model_context(lakehouse, "churn", model)
    assert (ctx.table, ctx.time, ctx.segments, ctx.features) == (
        "gold.customers",
        "t",
        ("area",),
        (),
    )
    assert set(ctx.roles) == {"left", "t", "id"} and ctx.reference_share == 0.75
    assert ctx.note is not None
    other = mv.model_context(lakehouse, "elsewhere", None)
    assert other.table is None and other.time is None
