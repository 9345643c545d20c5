"""Tests of exact drift statistics by default, sketch labelling, skipped columns and windows."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from scipy import stats

from hortus.cli.core import main
from hortus.monitoring.drift import DriftConfig, Profile, compare
from hortus.monitoring.drift_report import render_html

N = 20_000


def _overall(report, column):
    [r] = [r for r in report.overall() if r.column == column]
    return r


def _samples(kind: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(14)
    a, b = rng.normal(0.0, 1.0, N), rng.normal(0.02, 1.0, N)
    if kind == "ties":  # heavy ties within and across the samples
        a, b = np.round(a, 1), np.round(b, 1)
    return a, b


@pytest.mark.parametrize("kind", ["continuous", "ties"])
def test_ks_and_wasserstein_equal_scipy_at_20k_rows(kind):
    """Check KS, its p-value and Wasserstein against scipy on two 20,000-row samples."""
    a, b = _samples(kind)
    r = _overall(compare(pl.DataFrame({"x": a}), pl.DataFrame({"x": b})), "x")
    assert r.exact and r.ks_error_bound is None
    ks = stats.ks_2samp(a, b)  # method="auto" is "asymp" above 10,000 rows per side
    assert ks.statistic == stats.ks_2samp(a, b, method="asymp").statistic
    assert r.stats["ks"] == pytest.approx(ks.statistic, abs=1e-12)
    assert r.stats["ks_p_value"] == pytest.approx(ks.pvalue, rel=1e-9)
    w1 = stats.wasserstein_distance(a, b)
    assert r.stats["wasserstein"] * a.std() == pytest.approx(w1, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("bins", [(1, 1), (2, 1), (3, 2), (5, 3), (64, 8)])
def test_binned_merge_equals_scipy_with_ties_and_weights(monkeypatch, bins):
    """Check `_merge_stats` (bins, sub-bins, merged rest) against scipy on random pairs.

    Tiny bins and blocks push every path (one-sign bins, cut-again bins, point-by-point
    merge, scattered and blocked per-bin sums) through samples with ties within and
    across the sides, disjoint ranges, a constant side and counted (weighted) supports.
    """
    from hortus.monitoring import _drift_stats as ds

    monkeypatch.setattr(ds, "MERGE_BIN_POINTS", bins[0])
    monkeypatch.setattr(ds, "MERGE_SUB_POINTS", bins[1])
    monkeypatch.setattr(ds, "MOMENT_BLOCK", 7)
    rng = np.random.default_rng(sum(bins))
    for trial in range(60):
        n, m = rng.integers(1, 400, 2)
        digits = int(rng.integers(0, 4))
        a = np.round(rng.normal(0, 1, n), digits)
        b = np.round(rng.normal(rng.normal(0, 0.3), rng.uniform(0.5, 2), m), digits)
        if trial % 7 == 0:
            b += rng.choice([-1000.0, 3.0, 1000.0])
        if trial % 11 == 0:
            a = np.full(n, 1.0)
        (xa, ca), (xb, cb) = ds._support(np.sort(a)), ds._support(np.sort(b))
        if trial % 2 and ca is None:  # the same support given with explicit counts
            ca = np.arange(xa.size + 1)
        ks, w1 = ds._merge_stats(xa, ca, xb, cb)
        assert ks == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
        assert w1 == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12, abs=1e-12)


def test_ks_p_value_equals_scipy_asymp_below_10k_rows():
    """Check the p-value against scipy's asymptotic method where `auto` would be exact."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 3000), rng.normal(0.05, 1, 2000)
    r = _overall(compare(pl.DataFrame({"x": a}), pl.DataFrame({"x": b})), "x")
    ks = stats.ks_2samp(a, b, method="asymp")
    assert r.stats["ks"] == pytest.approx(ks.statistic, abs=1e-12)
    assert r.stats["ks_p_value"] == pytest.approx(ks.pvalue, rel=1e-9)


def test_p_values_off_leaves_out_only_a_p_value_that_does_not_decide():
    """Check that ``p_values=False`` (the calibration's pairs) drops the KS p-value where
    a distance decides, keeps every other statistic bit for bit, and keeps it where KS
    decides."""
    rng = np.random.default_rng(5)
    ref, cur = (
        pl.DataFrame({"x": rng.normal(0, 1, 3000)}),
        pl.DataFrame({"x": rng.normal(0, 1, 2500)}),
    )
    for stat in ("wasserstein", "ks"):
        on = _overall(compare(ref, cur, config=DriftConfig(stattest={"x": stat})), "x")
        off = _overall(
            compare(ref, cur, config=DriftConfig(stattest={"x": stat}, p_values=False)), "x"
        )
        assert (off.value, off.p_value, off.drifted) == (on.value, on.p_value, on.drifted)
        if stat == "ks":
            assert off.stats == on.stats and off.p_value is not None
        else:
            assert "ks_p_value" not in off.stats and "ks_p_value" in on.stats
            assert off.stats == {k: v for k, v in on.stats.items() if k != "ks_p_value"}


def test_sketched_profile_says_so_and_bounds_the_ks_error(tmp_path):
    """Check that a stored sketch reports exact=false with a bound that holds the true KS."""
    a, b = _samples("continuous")
    ref, cur = pl.DataFrame({"x": a}), pl.DataFrame({"x": b})
    path = Profile.from_frame(ref, config=DriftConfig(profile_points=500)).save(tmp_path / "p.json")
    sketch = compare(Profile.load(path), cur)
    r = _overall(sketch, "x")
    assert not r.exact and not sketch.exact and r.ks_error_bound > 0
    true_ks = stats.ks_2samp(a, b).statistic
    assert abs(r.stats["ks"] - true_ks) <= r.ks_error_bound
    data = json.loads(json.dumps(sketch.to_dict()))
    assert data["exact"] is False
    col = data["columns"][0]
    assert col["exact"] is False and col["ks_error_bound"] == r.ks_error_bound
    page = render_html(sketch)
    assert "approximate" in page and f"{r.ks_error_bound:.2g}" in page
    assert "approximate" not in render_html(compare(ref, cur))
    # above exact_max_rows a reference frame is sketched too, and labelled
    big = _overall(compare(ref, cur, config=DriftConfig(exact_max_rows=1000)), "x")
    assert not big.exact and abs(big.stats["ks"] - true_ks) <= big.ks_error_bound


def _with_ids(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "order_id": [f"o{seed}-{i}" for i in range(n)],
            "row": np.arange(n) + 1000 * seed,  # a dense counter: ID-like by its values
            "token": [f"t{seed}-{i}" for i in range(n)],  # unique strings
            "amount": rng.integers(0, 10**9, n),  # unique but sparse integers: a feature
            "price": rng.normal(20, 4, n),
            "region": rng.choice(["north", "south"], n),
            "_source_file": [f"file{seed}.csv"] * n,
            "_line": np.arange(n),
            "_ingested_at": [datetime(2025, 3, seed)] * n,
        }
    )


def test_id_like_and_metadata_columns_are_skipped_unless_named():
    """Check that IDs and ingestion metadata are left out by default, with reasons."""
    ref, cur = _with_ids(2000, 1), _with_ids(2000, 2)
    report = compare(ref, cur)
    compared = {r.column for r in report.overall() if r.statistic}
    assert compared == {"amount", "price", "region"}
    skipped = report.skipped_columns()
    assert set(skipped) == {"order_id", "row", "token", "_source_file", "_line", "_ingested_at"}
    assert "metadata" in skipped["_source_file"] and "name" in skipped["order_id"]
    assert "ID-like" in skipped["row"] and "ID-like" in skipped["token"]
    assert report.to_dict()["skipped_columns"] == skipped
    assert not report.drifted  # the metadata and ids differ on purpose; nothing else moved
    named_cols = ["order_id", "row", "_source_file", "price"]
    named = compare(ref, cur, named_cols)
    assert {r.column for r in named.overall() if r.statistic} == set(named_cols)
    assert named.skipped_columns() == {}
    declared = compare(ref, cur, ids=["region"])
    assert "declared" in declared.skipped_columns()["region"]
    everything = compare(ref, cur, config=DriftConfig(skip_identifiers=False))
    compared = {r.column for r in everything.overall() if r.statistic}
    assert compared == set(ref.columns) - {"_ingested_at"}  # temporal: compared by windows


def test_first_window_starts_at_the_first_timestamp():
    """Check that 7-day windows start on the data's first day, not on a 1970-based boundary."""
    start = datetime(2025, 3, 3)  # a Monday; 7d boundaries counted from 1970 fall on Thursdays
    n = 14 * 24
    cur = pl.DataFrame(
        {
            "price": np.random.default_rng(1).normal(20, 4, n),
            "ts": [start + timedelta(hours=h) for h in range(n)],
        }
    )
    report = compare(cur, cur, ["price"], time="ts", window="7d")
    starts = sorted({r.window_start for r in report.results if r.window_start is not None})
    assert starts == [start, start + timedelta(days=7)]
    assert all(r.n_current == 7 * 24 for r in report.results if r.window_start is not None)
    late = cur.with_columns(pl.col("ts") + timedelta(hours=9, minutes=30))  # from 09:30
    hourly = compare(cur, late, ["price"], time="ts", window="1h")
    first = min(r.window_start for r in hourly.results if r.window_start is not None)
    assert first == datetime(2025, 3, 3, 9)  # the first timestamp floored to the hour


def test_cli_reports_exactness_and_the_columns_left_out(tmp_path, capsys):
    """Check `hortus drift`: exact JSON from files, approximate from a saved profile, skips."""
    ref, cur = _with_ids(3000, 1), _with_ids(3000, 2)
    ref.write_parquet(tmp_path / "ref.parquet")
    cur.write_parquet(tmp_path / "cur.parquet")
    out, prof = tmp_path / "out.json", tmp_path / "prof.json"
    args = ["drift", str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet")]
    assert main([*args, "--json", str(out), "--save-profile", str(prof)]) == 0
    printed = capsys.readouterr().out
    assert "_source_file  not compared: ingestion metadata" in printed
    data = json.loads(out.read_text())
    assert data["exact"] is True and "order_id" in data["skipped_columns"]
    assert all(c["exact"] and c["ks_error_bound"] is None for c in data["columns"])
    assert main(["drift", str(prof), str(tmp_path / "cur.parquet"), "--json", str(out)]) == 0
    assert "approximate" not in capsys.readouterr().out  # 3,000 rows fit the 10,000-point sketch
    big = DriftConfig(profile_points=500)
    Profile.from_frame(ref, config=big).save(prof)
    assert main(["drift", str(prof), str(tmp_path / "cur.parquet"), "--json", str(out)]) == 0
    assert "approximate: the reference of" in capsys.readouterr().out
    price = next(c for c in json.loads(out.read_text())["columns"] if c["column"] == "price")
    assert price["exact"] is False and price["ks_error_bound"] > 0
