"""Tests of drift statistics, gating, profiles, segments/windows and `hortus drift`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from hortus.cli.core import main
from hortus.monitoring.drift import (
    DriftConfig,
    DriftError,
    Profile,
    adjust_p_values,
    compare,
)
from hortus.monitoring.drift_report import render_html


def _frame(seed: int, n: int, *, shift: float = 0.0, regions=("north", "south")) -> pl.DataFrame:
    """Return a plant-shop-like frame: a price, a region, a small integer quantity."""
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "price": rng.normal(20.0 + shift, 4.0, n),
            "region": rng.choice(list(regions), n),
            "qty": rng.integers(1, 4, n),
        }
    )


def _result(report, column, segment=None, window=None):
    [r] = [
        r
        for r in report.results
        if r.column == column and r.segment == segment and r.window_start == window
    ]
    return r


# ------------------------------------------------------------------ statistics
def test_shifted_numeric_column_is_flagged():
    """Check that a mean shift of half a std is flagged on the p-value and distance paths."""
    for n in (400, 5000):
        ref, cur = _frame(1, n), _frame(2, n, shift=2.0)
        r = _result(compare(ref, cur, ["price"]), "price")
        assert r.drifted, (n, r)
        assert r.stats["wasserstein"] > 0.3
        assert _result(compare(ref, _frame(3, n), ["price"]), "price").drifted is False


def test_new_category_is_flagged_and_listed():
    """Check that a new region taking a share of rows drifts and is listed as new."""
    for n in (600, 6000):
        ref = _frame(1, n)
        cur = _frame(2, n, regions=("north", "south", "east"))
        r = _result(compare(ref, cur, ["region"]), "region")
        assert r.kind == "categorical"
        assert r.drifted
        assert r.new_categories == ("east",)
        assert r.missing_categories == ()
        assert r.stats["new_category_share"] == pytest.approx((cur["region"] == "east").mean())
    gone = _result(compare(cur, ref, ["region"]), "region")
    assert gone.missing_categories == ("east",)


def test_identical_samples_are_not_flagged():
    """Check that comparing a table with itself flags nothing, with zero distances."""
    for n in (300, 3000):
        ref = _frame(5, n)
        report = compare(ref, ref.clone())
        assert not report.drifted
        for r in report.results:
            assert r.stats["psi"] == pytest.approx(0.0, abs=1e-12)
            assert r.stats["jensen_shannon"] == pytest.approx(0.0, abs=1e-6)
            assert r.p_value is None or r.p_value == pytest.approx(1.0)
        assert _result(report, "price").stats["ks"] == 0.0
        assert _result(report, "price").stats["wasserstein"] == 0.0


def test_large_samples_from_one_distribution_are_not_flagged():
    """Check that big independent samples of the same distribution pass the distance gates."""
    report = compare(_frame(11, 50_000), _frame(12, 50_000))
    assert not report.drifted, report.to_frame()
    # the p-value test alone would be at the mercy of chance at this size; the gate is not
    assert {r.statistic for r in report.results} == {"wasserstein", "jensen_shannon"}


def test_numeric_statistics_match_scipy():
    """Check KS (asymptotic), normalised Wasserstein and JS against scipy on tied data."""
    rng = np.random.default_rng(3)
    a = np.round(rng.normal(0, 1, 700), 1)  # ties within and across samples
    b = np.round(rng.normal(0.2, 1.3, 900), 1)
    cfg = DriftConfig(profile_points=None)
    r = _result(compare(pl.DataFrame({"x": a}), pl.DataFrame({"x": b}), config=cfg), "x")
    ks = stats.ks_2samp(a, b, method="asymp")
    assert r.stats["ks"] == pytest.approx(ks.statistic, abs=1e-12)
    assert r.stats["ks_p_value"] == pytest.approx(ks.pvalue, rel=1e-9)
    assert r.stats["wasserstein"] == pytest.approx(stats.wasserstein_distance(a, b) / a.std())
    edges = np.unique(np.quantile(a, np.arange(1, 10) / 10))
    pa = np.bincount(np.searchsorted(edges, a, side="left"), minlength=edges.size + 1) / a.size
    pb = np.bincount(np.searchsorted(edges, b, side="left"), minlength=edges.size + 1) / b.size
    assert r.stats["jensen_shannon"] == pytest.approx(jensenshannon(pa, pb, base=2))
    assert r.histogram["reference"] == pytest.approx(pa.tolist())


def test_chi2_is_the_two_by_k_contingency_test():
    """Check that the categorical test is scipy's chi2_contingency on the 2 x K table."""
    ref = pl.DataFrame({"c": ["a"] * 120 + ["b"] * 60 + ["c"] * 20})
    cur = pl.DataFrame({"c": ["a"] * 90 + ["b"] * 80 + ["d"] * 30})
    r = _result(compare(ref, cur), "c")
    table = np.array([[120, 60, 20, 0], [90, 80, 0, 30]])
    expected = stats.chi2_contingency(table, correction=False)
    assert r.statistic == "chi2"
    assert r.value == pytest.approx(expected.statistic)
    assert r.p_value == pytest.approx(expected.pvalue)
    assert r.new_categories == ("d",) and r.missing_categories == ("c",)
    # the one-sample version (reference shares taken as exact) would overstate the evidence
    same_cats = pl.DataFrame({"c": ["a"] * 90 + ["b"] * 80 + ["c"] * 30})
    r2 = _result(compare(ref, same_cats), "c")
    one_sample = stats.chisquare([90, 80, 30], f_exp=[120, 60, 20])
    assert r2.value == pytest.approx(
        stats.chi2_contingency([[120, 60, 20], [90, 80, 30]], correction=False).statistic
    )
    assert r2.value < one_sample.statistic and r2.p_value > one_sample.pvalue


def test_integer_column_with_few_values_is_categorical():
    """Check that a 0/1 target or 1-3 quantity is compared as categories, not as numbers."""
    ref = pl.DataFrame({"qty": [1, 2, 3] * 100, "label": [0, 1] * 150})
    cur = pl.DataFrame({"qty": [1.0, 2.0, 3.0, 4.0] * 75, "label": [0, 1] * 150})
    report = compare(ref, cur)
    qty = _result(report, "qty")
    assert qty.kind == "categorical" and qty.new_categories == ("4",)
    assert _result(report, "label").kind == "categorical"
    assert not _result(report, "label").drifted


# ---------------------------------------------------------------------- gating
def test_gating_statistic_follows_sample_size_and_override():
    """Check p-value tests at or below small_sample_rows, distances above, and overrides."""
    small = compare(_frame(1, 800), _frame(2, 800))
    assert _result(small, "price").statistic == "ks"
    assert _result(small, "region").statistic == "chi2"
    assert _result(small, "price").p_value is not None
    big = compare(_frame(1, 3000), _frame(2, 3000))
    assert _result(big, "price").statistic == "wasserstein"
    assert _result(big, "region").statistic == "jensen_shannon"
    assert _result(big, "price").p_value is None
    # the smaller side decides: 3,000 reference rows against 800 current rows is "small"
    assert _result(compare(_frame(1, 3000), _frame(2, 800)), "price").statistic == "ks"
    cfg = DriftConfig(small_sample_rows=100, stattest={"price": "psi"}, thresholds={"qty": 0.5})
    over = compare(_frame(1, 800), _frame(2, 800), config=cfg)
    assert _result(over, "price").statistic == "psi"
    assert _result(over, "price").threshold == cfg.psi_threshold
    assert _result(over, "region").statistic == "jensen_shannon"
    assert _result(over, "qty").threshold == 0.5
    with pytest.raises(DriftError, match="'ks' does not apply to categorical column 'region'"):
        compare(_frame(1, 50), _frame(2, 50), config=DriftConfig(stattest={"region": "ks"}))


def test_multiple_testing_correction_changes_a_borderline_decision():
    """Check that one p-value between alpha/5 and alpha drifts alone but not among 5 tests."""
    n = 300
    grid = stats.norm.ppf((np.arange(n) + 0.5) / n)
    ref = pl.DataFrame({f"x{i}": grid for i in range(5)})
    borderline = None
    for delta in np.linspace(0.15, 0.45, 61):
        cur = ref.with_columns(pl.col("x0") + delta)
        p = _result(compare(ref, cur, config=DriftConfig(correction="none")), "x0").p_value
        if 0.012 < p < 0.045:
            borderline = cur
            break
    assert borderline is not None, "no shift gives a borderline p-value"
    alone = compare(ref, borderline, config=DriftConfig(correction="none"))
    assert _result(alone, "x0").drifted
    for method in ("bonferroni", "bh"):
        fam = compare(ref, borderline, config=DriftConfig(correction=method))
        r = _result(fam, "x0")
        assert r.p_value_adjusted == pytest.approx(min(1.0, r.p_value * 5))
        assert not r.drifted and not fam.drifted


def test_benjamini_hochberg_adjustment_follows_its_definition():
    """Check BH adjusted p-values against the step-up definition on random p-values."""
    p = np.random.default_rng(0).uniform(0, 0.2, 17)
    m = p.size
    order = np.argsort(p)
    expected = np.empty(m)
    for rank in range(m):  # min over j >= rank of p_(j) * m / j
        expected[order[rank]] = min(1.0, min(p[order[j]] * m / (j + 1) for j in range(rank, m)))
    assert adjust_p_values(p, "bh") == pytest.approx(expected)
    assert adjust_p_values(p, "bonferroni") == pytest.approx(np.minimum(p * m, 1))


# ------------------------------------------------------------ segments, windows
def test_per_segment_results_find_the_drifting_segment():
    """Check that only the segment whose prices moved is flagged, and overall too."""
    ref = _frame(1, 6000)
    cur = _frame(2, 6000).with_columns(
        pl.when(pl.col("region") == "south")
        .then(pl.col("price") + 8.0)
        .otherwise(pl.col("price"))
        .alias("price")
    )
    report = compare(ref, cur, ["price", "qty"], segment="region")
    assert _result(report, "price").drifted
    assert _result(report, "price", "south").drifted
    assert not _result(report, "price", "north").drifted
    assert not _result(report, "qty", "south").drifted
    assert _result(report, "price", "north").n_reference == (ref["region"] == "north").sum()
    # a segment that the reference never saw is reported, not compared
    east = compare(ref, _frame(3, 900, regions=("east",)), ["price"], segment="region")
    assert "not in the reference" in _result(east, "price", "east").skipped
    assert _result(east, "price", "north").skipped == "no current rows"


def test_per_window_results_find_the_drifting_days():
    """Check that daily windows flag the days after a price change and not before."""
    days = 4
    cur = pl.concat([_frame(10 + d, 2500, shift=6.0 if d >= 2 else 0.0) for d in range(days)])
    start = datetime(2025, 3, 1)
    ts = [start + timedelta(days=d, seconds=30 * i) for d in range(days) for i in range(2500)]
    cur = cur.with_columns(pl.Series("ts", ts))
    report = compare(_frame(1, 5000), cur, ["price", "region"], time="ts", window="1d")
    for d in range(days):
        r = _result(report, "price", window=start + timedelta(days=d))
        assert r.drifted is (d >= 2), (d, r.value)
        assert r.n_current == 2500
        assert not _result(report, "region", window=start + timedelta(days=d)).drifted
    frame = report.to_frame()
    assert frame.filter(pl.col("window_start").is_not_null()).height == days * 2
    both = compare(_frame(1, 5000), cur, ["price"], segment="region", time="ts", window="2d")
    assert _result(both, "price", "north", datetime(2025, 3, 3)).drifted
    assert not _result(both, "price", "north", datetime(2025, 3, 1)).drifted
    with pytest.raises(DriftError, match="window '1 day' is not a duration"):
        compare(_frame(1, 50), cur, ["price"], time="ts", window="1 day")


# -------------------------------------------------------------------- profiles
def test_stored_profile_gives_the_same_result_as_the_raw_reference(tmp_path):
    """Check that a saved profile compares like the raw reference profiled the same way."""
    ref = _frame(1, 30_000).with_columns(
        pl.when(pl.int_range(pl.len()) % 7 == 0)
        .then(None)
        .otherwise(pl.col("price"))
        .alias("price")
    )
    cur = _frame(2, 4000, shift=0.5, regions=("north", "south", "east"))
    cfg = DriftConfig(profile_points=2000, exact_max_rows=0)  # the raw reference sketched too
    raw = compare(ref, cur, config=cfg, segment="region")
    path = Profile.from_frame(ref, config=cfg, segment="region").save(tmp_path / "p.json")
    stored = compare(Profile.load(path), cur, config=cfg, segment="region")
    assert stored.to_dict() == raw.to_dict()
    assert not Profile.load(path).columns["price"].exact
    assert stored.to_dict()["exact"] is False
    exact_path = Profile.from_frame(ref, config=DriftConfig(profile_points=None), segment="region")
    exact = compare(Profile.from_dict(exact_path.to_dict()), cur, segment="region")
    assert exact.to_dict()["columns"] == compare(ref, cur, segment="region").to_dict()["columns"]
    with pytest.raises(DriftError, match="built per segment 'region'"):
        compare(Profile.load(path), cur, segment="qty")


def test_exact_profile_saved_as_npz_compares_like_the_raw_reference(tmp_path):
    """Check the binary profile: exact, per segment, same results, no pickles read."""
    ref = _frame(1, 30_000).with_columns(pl.col("price").round(1).alias("rounded"))
    cur = _frame(2, 4000, shift=0.5, regions=("north", "south", "east"))
    cur = cur.with_columns(pl.col("price").round(1).alias("rounded"))
    cfg = DriftConfig(profile_points=None)
    prof = Profile.from_frame(ref, config=cfg, segment="region")
    assert prof.columns["price"].weights is None  # continuous: every value once
    assert prof.columns["rounded"].weights.sum() == 30_000
    path = prof.save(tmp_path / "ref.npz")
    assert path.stat().st_size < 0.6 * len(json.dumps(prof.to_dict()))
    loaded = Profile.load(path)
    assert loaded.columns["price"].exact and loaded.segments["north"].columns["price"].exact
    stored = compare(loaded, cur, config=cfg, segment="region")
    assert stored.to_dict() == compare(ref, cur, config=cfg, segment="region").to_dict()
    bad = tmp_path / "bad.npz"
    np.savez(bad, __profile__=np.array([{"format": 1}], dtype=object))
    with pytest.raises(DriftError, match=r"bad\.npz is not a drift profile \.npz"):
        Profile.load(bad)


def test_quantile_sketch_stays_within_its_stated_error():
    """Check that a sketched profile's KS and Wasserstein are within the recorded bounds."""
    rng = np.random.default_rng(4)
    ref = pl.DataFrame({"x": rng.lognormal(0, 1, 50_000)})
    cur = pl.DataFrame({"x": rng.lognormal(0.05, 1, 20_000)})
    exact = _result(compare(ref, cur, config=DriftConfig(profile_points=None)), "x")
    sketch_cfg = DriftConfig(profile_points=500, exact_max_rows=0)
    prof = Profile.from_frame(ref, config=sketch_cfg).columns["x"]
    sketch = _result(compare(ref, cur, config=sketch_cfg), "x")
    assert prof.values.size <= 500
    assert abs(sketch.stats["ks"] - exact.stats["ks"]) <= prof.sketch_ks_error
    w_gap = abs(sketch.stats["wasserstein"] - exact.stats["wasserstein"])
    assert w_gap <= prof.sketch_wasserstein_error + 1e-12
    assert sketch.stats["psi"] == exact.stats["psi"]  # bins come from the full reference
    assert exact.exact and exact.ks_error_bound is None
    assert not sketch.exact and sketch.ks_error_bound == prof.sketch_ks_error


def test_profile_refuses_a_file_that_is_not_a_profile(tmp_path):
    """Check that loading some other JSON names the file and the expected format."""
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"columns": {}}))
    with pytest.raises(DriftError, match=r"other\.json is not a drift profile"):
        Profile.load(path)


# ------------------------------------------------------------ nulls, bad input
def test_null_share_change_is_reported_and_flagged():
    """Check that a column going 30% null is flagged by its null share, values aside."""
    ref = _frame(1, 2000)
    cur = ref.with_columns(
        pl.when(pl.int_range(pl.len()) % 10 < 3)
        .then(None)
        .otherwise(pl.col("price"))
        .alias("price")
    )
    r = _result(compare(ref, cur), "price")
    assert r.null_share_reference == 0.0
    assert r.null_share_current == pytest.approx(0.3)
    assert r.null_drifted and not r.drifted
    assert compare(ref, cur).drifted_columns == ["price"]


def test_empty_and_all_null_columns_are_skipped_with_a_reason():
    """Check that all-null, Null-typed and temporal columns get a skipped reason."""
    ref = pl.DataFrame(
        {
            "a": pl.Series([None] * 50, dtype=pl.Float64),
            "b": [1.5] * 50,
            "c": [None] * 50,
            "t": [datetime(2025, 3, 1)] * 50,
            "s": ["x"] * 50,
        }
    )
    cur = ref.with_columns(
        pl.lit(None, dtype=pl.Float64).alias("b"), pl.lit(None, dtype=pl.String).alias("s")
    )
    report = compare(ref, cur)
    assert _result(report, "a").skipped == "no non-null values in the reference"
    assert _result(report, "b").skipped == "no non-null values in the current"
    assert _result(report, "b").null_drifted  # the column went empty: that is drift
    assert "Null" in _result(report, "c").skipped
    assert "Datetime" in _result(report, "t").skipped
    assert _result(report, "s").skipped == "no non-null values in the current"
    assert report.to_frame().height == 5
    with pytest.raises(DriftError, match="the current has no rows"):
        compare(ref, ref.clear())


def test_constant_reference_is_normalised_without_dividing_by_zero():
    """Check that a constant reference column gives a finite normalised Wasserstein."""
    ref = pl.DataFrame({"x": [10.0] * 2000})
    r = _result(compare(ref, pl.DataFrame({"x": [10.0] * 1000 + [12.0] * 1000})), "x")
    assert r.stats["wasserstein"] == pytest.approx(0.1)  # 1.0 / |mean|
    assert r.drifted


def test_type_change_and_missing_column_name_the_column():
    """Check that a numeric column arriving as text, or missing, is a clear error."""
    ref = _frame(1, 100)
    with pytest.raises(DriftError, match="column 'price' is numeric .* but String in the current"):
        compare(ref, ref.with_columns(pl.col("price").cast(pl.String)))
    with pytest.raises(DriftError, match="qty missing in the current new.csv"):
        compare(ref, ref.drop("qty"), current_name="new.csv")


def test_config_from_dict_maps_a_params_section_and_refuses_unknown_keys():
    """Check that a params.yaml-like section builds a config and typos are refused."""
    cfg = DriftConfig.from_dict(
        {"alpha": 0.01, "correction": "bonferroni", "thresholds": {"price": 0.2}}
    )
    assert (cfg.alpha, cfg.correction, cfg.threshold_for("price", "wasserstein")) == (
        0.01,
        "bonferroni",
        0.2,
    )
    assert cfg.threshold_for("qty", "wasserstein") == cfg.wasserstein_threshold
    with pytest.raises(DriftError, match="unknown key.*alpah"):
        DriftConfig.from_dict({"alpah": 0.01}, source="params.yaml drift")
    with pytest.raises(DriftError, match="correction must be one of"):
        DriftConfig.from_dict({"correction": "holm"})


def test_html_report_is_offline_with_svg_charts():
    """Check that the HTML page draws inline SVG and loads nothing from the network."""
    cur = _frame(2, 1500, shift=3.0, regions=("north", "south", "east"))
    ts = [datetime(2025, 3, 1) + timedelta(minutes=i) for i in range(cur.height)]
    report = compare(_frame(1, 1500), cur.with_columns(pl.Series("ts", ts)), time="ts", window="6h")
    page = render_html(report)
    assert page.count("<svg") >= 3 + 3  # one distribution + one window chart per column
    assert "<script" not in page
    assert "http" not in page and "//cdn" not in page
    assert "<link" not in page and "@import" not in page
    assert "east" in page


# ------------------------------------------------------------------------- CLI
@pytest.fixture
def files(tmp_path):
    """Write a reference and a drifted and an identical current as CSV, Parquet and Delta."""
    ref = _frame(1, 3000)
    cur = _frame(2, 3000, shift=3.0, regions=("north", "south", "east")).with_columns(
        pl.Series("ts", [datetime(2025, 3, 1) + timedelta(minutes=i) for i in range(3000)])
    )
    out = {"ref.csv": ref, "cur.csv": cur, "cur.parquet": cur, "same.parquet": ref}
    for name, df in out.items():
        (df.write_csv if name.endswith(".csv") else df.write_parquet)(tmp_path / name)
    cur.write_delta(str(tmp_path / "cur_delta"))
    ref.write_delta(str(tmp_path / "ref_delta"))
    return tmp_path


@pytest.mark.parametrize("current", ["cur.csv", "cur.parquet", "cur_delta"])
def test_cli_flags_drift_with_exit_1_and_writes_json(files, current, capsys):
    """Check `hortus drift` on CSV, Parquet and Delta: exit 1, summary and JSON per column."""
    out = files / "out.json"
    code = main(["drift", str(files / "ref.csv"), str(files / current), "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 1
    assert "price" in printed and "wasserstein" in printed and "drift in 2 of" in printed
    data = json.loads(out.read_text())
    by_col = {c["column"]: c for c in data["columns"] if c["segment"] is None}
    assert set(by_col) == {"price", "region", "qty"}
    assert by_col["price"]["statistic"] == "wasserstein" and by_col["price"]["drifted"]
    assert by_col["price"]["value"] > by_col["price"]["threshold"]
    assert by_col["region"]["new_categories"] == ["east"] and by_col["region"]["drifted"]
    assert not by_col["qty"]["drifted"]
    assert "p_value" in by_col["qty"] and by_col["qty"]["threshold"] == 0.1
    assert data["drifted_columns"] == ["price", "region"]


def test_cli_exit_0_without_drift_and_delta_reference(files, capsys):
    """Check that the same data read from Delta and Parquet passes with exit 0."""
    code = main(["drift", str(files / "ref_delta"), str(files / "same.parquet")])
    assert code == 0
    assert "no drift in 3 column(s)" in capsys.readouterr().out


def test_cli_segments_windows_html_and_saved_profile(files, capsys):
    """Check segment/window options, the HTML file and a saved profile as reference."""
    html, prof = files / "r.html", files / "prof.json"
    args = ["drift", str(files / "ref.csv"), str(files / "cur.parquet"), "--segment", "region",
            "--time", "ts", "--window", "1d", "--html", str(html), "--save-profile", str(prof),
            "--columns", "price,qty"]  # fmt: skip
    assert main(args) == 1
    printed = capsys.readouterr().out
    assert "2025-03-01" in printed and "south" in printed
    page = html.read_text()
    assert "<svg" in page and "<script src=" not in page and "http" not in page
    json_out = files / "p.json"
    code = main(["drift", str(prof), str(files / "cur.csv"), "--segment", "region",
                 "--columns", "qty", "--json", str(json_out)])  # fmt: skip
    assert code == 0
    rows = json.loads(json_out.read_text())["columns"]
    assert {r["segment"] for r in rows} == {None, "north", "south", "east"}


def _plants(seed: int, n: int, *, shift: float = 0.0) -> pl.DataFrame:
    """Return rows shaped like the silver.plants contract."""
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "plant_id": [f"p{i:04d}" for i in range(n)],
            "name": [f"plant {i}" for i in range(n)],
            "category": rng.choice(["foliage", "succulent", "cactus", "fern"], n),
            "price": np.round(rng.gamma(4.0, 6.0, n) + shift, 2),
            "light": rng.choice(["low", "medium", "bright"], n),
            "care_level": rng.choice(["easy", "moderate", "expert"], n),
            "pet_safe": rng.random(n) < 0.4,
            "stock": rng.integers(0, 500, n),
            "updated_at": [datetime(2025, 3, 1, tzinfo=UTC)] * n,
        }
    )


def test_cli_reads_a_catalog_table(lakehouse, tmp_path, capsys):
    """Check that a name like silver.plants resolves through the project's lakehouse."""
    lakehouse.write("silver.plants", _plants(1, 2000), mode="overwrite")
    same, moved = tmp_path / "same.parquet", tmp_path / "moved.parquet"
    _plants(1, 2000).write_parquet(same)
    _plants(1, 2000, shift=15.0).write_parquet(moved)
    root = str(lakehouse.paths.root)
    cols = ["--columns", "category,price,light,care_level,pet_safe,stock"]
    assert main(["--root", root, "drift", "silver.plants", str(same), *cols]) == 0
    assert main(["--root", root, "drift", "silver.plants", str(moved), *cols]) == 1
    assert "price" in capsys.readouterr().out
    assert main(["--root", root, "drift", "silver.users", str(same)]) == 2
    assert "silver.users" in capsys.readouterr().err


def test_cli_bad_input_exits_2_naming_the_file_or_column(files, capsys):
    """Check that a missing file or a column missing in the current exit 2 with its name."""
    missing = files / "nope.parquet"
    assert main(["drift", str(files / "ref.csv"), str(missing)]) == 2
    assert f"current file {missing} not found" in capsys.readouterr().err
    thin = files / "thin.csv"
    pl.read_csv(files / "cur.csv").drop("qty").write_csv(thin)
    assert main(["drift", str(files / "ref.csv"), str(thin)]) == 2
    err = capsys.readouterr().err
    assert "qty missing in the current" in err and "thin.csv" in err
    assert main(["drift", str(files / "ref.csv"), str(thin), "--columns", "prize"]) == 2
    assert "prize not in the reference" in capsys.readouterr().err
    bad = files / "bad.yaml"
    bad.write_text("drift:\n  alpah: 0.1\n")
    assert main(["drift", str(files / "ref.csv"), str(thin), "--config", str(bad)]) == 2
    assert "bad.yaml: unknown key(s) alpah" in capsys.readouterr().err


def test_pure_python_p_values_match_scipy_on_a_grid():
    """Check the Kolmogorov and chi-square survival functions against scipy to 1e-9."""
    from scipy import special

    from hortus.monitoring.drift import _chi2_sf, _kolmogorov_sf

    for x in np.linspace(0.01, 6.0, 600):
        want = special.kolmogorov(x)
        assert _kolmogorov_sf(float(x)) == pytest.approx(want, rel=1e-9, abs=1e-300), x
    for df in (1, 2, 3, 7, 30, 100, 1000):
        for q in (0.001, 0.1, 0.5, 0.9, 0.999):
            stat = float(stats.chi2.ppf(q, df))
            assert _chi2_sf(stat, df) == pytest.approx(stats.chi2.sf(stat, df), rel=1e-9), (df, q)
