"""Tests of the gold daily KPIs against values worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from hortus.domains.plantshop.kpis import daily_kpis


def _events() -> pl.LazyFrame:
    t = datetime(2025, 3, 1, 10, tzinfo=UTC)
    rows = [
        # session a (UKI): impression, click, order of 2 lines in one order
        ("a", "u1", "rec_impression", None, None, None),
        ("a", "u1", "rec_impression", None, None, None),
        ("a", "u1", "rec_click", None, None, None),
        ("a", "u1", "order", 2, 10.0, "o1"),
        ("a", "u1", "order", 1, 5.5, "o1"),
        # session b (DACH): impression only
        ("b", "u2", "rec_impression", None, None, None),
        ("b", "u2", "view", None, None, None),
        # session c (DACH): an order
        ("c", "u3", "order", 3, 2.0, "o2"),
    ]
    return pl.LazyFrame(
        [(f"e{i}", s, u, et, q, p, o, t) for i, (s, u, et, q, p, o) in enumerate(rows)],
        schema={
            "event_id": pl.String,
            "session_id": pl.String,
            "user_id": pl.String,
            "event_type": pl.String,
            "quantity": pl.Int64,
            "price": pl.Float64,
            "order_id": pl.String,
            "ts": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )


def test_daily_kpis_overall_and_per_region():
    """Check sessions, orders, conversion, revenue, AOV and CTR against hand counts."""
    users = pl.LazyFrame({"user_id": ["u1", "u2", "u3"], "region": ["UKI", "DACH", "DACH"]})
    out = daily_kpis(_events(), users).collect()
    by = {r["region"]: r for r in out.iter_rows(named=True)}
    assert set(by) == {"ALL", "UKI", "DACH"}
    overall = by["ALL"]
    assert (overall["sessions"], overall["orders"], overall["converted_sessions"]) == (3, 2, 2)
    assert overall["revenue"] == pytest.approx(2 * 10.0 + 5.5 + 3 * 2.0)
    assert overall["aov"] == pytest.approx(31.5 / 2)
    assert overall["conversion_rate"] == pytest.approx(2 / 3)
    assert overall["rec_ctr"] == pytest.approx(1 / 3)
    assert by["DACH"]["sessions"] == 2 and by["DACH"]["revenue"] == pytest.approx(6.0)
    assert by["UKI"]["rec_ctr"] == pytest.approx(0.5)


def test_daily_kpis_ratios_are_null_without_denominator():
    """Check that a region without impressions or orders gets null CTR and AOV, not errors."""
    users = pl.LazyFrame({"user_id": ["u1", "u2", "u3"], "region": ["UKI", "DACH", "DACH"]})
    ev = _events().filter(pl.col("session_id") == "b").filter(pl.col("event_type") == "view")
    out = daily_kpis(ev, users).collect().filter(pl.col("region") == "DACH").row(0, named=True)
    assert out["aov"] is None and out["rec_ctr"] is None and out["conversion_rate"] == 0.0


def test_unknown_users_fall_in_region_unknown():
    """Check that events of users missing from silver.users are kept under UNKNOWN."""
    users = pl.LazyFrame({"user_id": ["u1"], "region": ["UKI"]})
    out = daily_kpis(_events(), users).collect()
    assert out.filter(pl.col("region") == "UNKNOWN")["sessions"].item() == 2
