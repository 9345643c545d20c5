"""Tests of the deterministic plant-shop export simulator."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from hortus.domains.plantshop import simulate as sim
from hortus.domains.plantshop.drift_changes import SEASONAL
from hortus.domains.plantshop.simulate import DRIFTS, FAULTS, SimConfig, simulate

CONTRACTS = yaml.safe_load(Path(sim.__file__).with_name("contracts.yaml").read_text("utf-8"))
TABLES = ("users", "plants", "events", "reviews")
SMALL = {"users": 200, "days": 3}
_DT_FORMATS = ("%Y-%m-%dT%H:%M:%S%.fZ", "%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------ helpers


def _export(factory: pytest.TempPathFactory, name: str, **kw) -> tuple[Path, dict]:
    out = factory.mktemp(name)
    return out, simulate(SimConfig(**kw), out)


def _all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _payload(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def _lines(path: Path) -> list[bytes]:
    data = _payload(path)
    assert data == b"" or data.endswith(b"\n")
    return data.split(b"\n")[:-1]


def _file_day(path: Path) -> date:
    return date.fromisoformat(path.name.split("-", 1)[1][:10])


def _columns(table: str) -> dict[str, dict]:
    return CONTRACTS["tables"][table]["columns"]


def _landing_files(root: Path, table: str) -> list[Path]:
    return sorted(root.glob(CONTRACTS["tables"][table]["landing"]["glob"]))


def _raw_table(root: Path, table: str) -> pl.DataFrame:
    """Load every landing file of a table as raw strings plus the file's export time."""
    spec = CONTRACTS["tables"][table]
    cols = list(spec["columns"])
    frames = []
    for path in _landing_files(root, table):
        if spec["landing"]["format"] == "csv":
            df = pl.read_csv(_payload(path), infer_schema=False)
            assert df.columns == cols, path
        else:
            text = pl.Series("line", _payload(path).decode("utf-8").split("\n")[:-1])
            inferred = text.str.json_decode(infer_schema_length=None)  # raises on invalid JSON
            assert [f.name for f in inferred.dtype.fields] == cols, path
            df = text.str.json_decode(pl.Struct({c: pl.String for c in cols})).struct.unnest()
        export = pl.lit(_file_day(path) + timedelta(days=1)).cast(pl.Datetime("us", "UTC"))
        frames.append(df.with_columns(export.alias("_export"), pl.lit(path.name).alias("_file")))
    return pl.concat(frames)


def _typed(col: str, kind: str) -> pl.Expr:
    raw = pl.col(col)
    if kind == "int":
        return raw.cast(pl.Int64, strict=False)
    if kind == "float":
        return raw.cast(pl.Float64, strict=False)
    if kind == "bool":
        return raw.replace_strict({"true": True, "false": False}, default=None,
                                  return_dtype=pl.Boolean)  # fmt: skip
    if kind == "date":
        return raw.str.to_date("%Y-%m-%d", strict=False)
    if kind == "datetime":
        return pl.coalesce([raw.str.to_datetime(f, time_unit="us", time_zone="UTC", strict=False)
                            for f in _DT_FORMATS])  # fmt: skip
    return raw


def _bound(value, kind: str) -> pl.Expr:
    if value == "@shop_opened":
        return pl.lit(CONTRACTS["shop_opened"]).str.to_datetime(_DT_FORMATS[1], time_zone="UTC")
    if value == "@export":
        return pl.col("_export")
    if kind == "date":
        return pl.lit(date.fromisoformat(str(value)))
    return pl.lit(value)


def _violations(df: pl.DataFrame, table: str) -> dict[str, int]:
    """Count rows breaking each contract rule of a table (vectorised; zero counts left out)."""
    checks = {}
    for name, spec in _columns(table).items():
        kind, raw, typed = spec["type"], pl.col(name), _typed(name, spec["type"])
        if not spec.get("nullable", True):
            checks[f"{name}:required"] = raw.is_null()
        if kind != "string":
            checks[f"{name}:type"] = raw.is_not_null() & typed.is_null()
        if "pattern" in spec:
            checks[f"{name}:pattern"] = raw.is_not_null() & ~raw.str.contains(
                f"^(?:{spec['pattern']})$"
            )
        if "allowed" in spec:
            checks[f"{name}:allowed"] = raw.is_not_null() & ~raw.is_in(spec["allowed"])
        if "min" in spec:
            checks[f"{name}:min"] = typed < _bound(spec["min"], kind)
        if "max" in spec:
            checks[f"{name}:max"] = typed > _bound(spec["max"], kind)
    counts = df.select([c.fill_null(False).sum().alias(k) for k, c in checks.items()]).row(
        0, named=True
    )
    return {k: v for k, v in counts.items() if v}


def _luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()][::-1]
    total = sum(d if i % 2 == 0 else (2 * d - 9 if 2 * d > 9 else 2 * d)
                for i, d in enumerate(digits))  # fmt: skip
    return len(digits) == 16 and total % 10 == 0


def _iban_ok(iban: str) -> bool:
    compact = iban.replace(" ", "")
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, dict]:
    return _export(tmp_path_factory, "clean", **SMALL)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory) -> tuple[Path, dict]:
    return _export(tmp_path_factory, "faulty", faults=FAULTS, users=800, days=4, fault_rate=0.01)


@pytest.fixture(scope="module")
def default(tmp_path_factory) -> tuple[Path, dict]:
    return _export(tmp_path_factory, "default")


@pytest.fixture(scope="module")
def drifted(tmp_path_factory) -> tuple[Path, dict, Path]:
    kw = {"users": 1500, "days": 14, "drift_start": "2025-03-08"}
    plain, _ = _export(tmp_path_factory, "plain", **kw)
    out, manifest = _export(tmp_path_factory, "drifted", drift=DRIFTS, **kw)
    return out, manifest, plain


# ------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_bytes(tmp_path):
    """Check that one config gives byte-identical files and manifest (faults and drift included)."""
    cfg = SimConfig(seed=7, users=200, days=4, drift=DRIFTS, faults=FAULTS, fault_rate=0.01)
    simulate(cfg, tmp_path / "a")
    simulate(cfg, tmp_path / "b")
    a, b = _all_files(tmp_path / "a"), _all_files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_different_seed_gives_different_files(tmp_path):
    """Check that another seed gives other users, plants and events."""
    m1 = simulate(SimConfig(seed=1, **SMALL), tmp_path / "a")
    m2 = simulate(SimConfig(seed=2, **SMALL), tmp_path / "b")
    h1 = {f["path"]: f["sha256"] for f in m1["files"]}
    h2 = {f["path"]: f["sha256"] for f in m2["files"]}
    for path in ("plants/plants-2025-03-01.csv", "users/users-2025-03-01.csv",
                 "events/events-2025-03-01.jsonl.gz"):  # fmt: skip
        assert h1[path] != h2[path]


def test_longer_window_keeps_earlier_days_identical(tmp_path):
    """Check that days=4 reproduces the files of days=3 for the first three days."""
    m3 = simulate(SimConfig(**SMALL), tmp_path / "d3")
    m4 = simulate(SimConfig(users=200, days=4), tmp_path / "d4")
    h3 = {f["path"]: f["sha256"] for f in m3["files"]}
    h4 = {f["path"]: f["sha256"] for f in m4["files"]}
    assert any(p.startswith("events/") for p in h3)
    assert {p: h4.get(p) for p in h3} == h3
    assert set(h4) - set(h3) >= {"events/events-2025-03-04.jsonl.gz"}


def test_gzip_header_has_no_time_or_name(clean):
    """Check that event files carry mtime 0 and no file name in the gzip header."""
    out, _ = clean
    for path in out.glob("events/*.gz"):
        head = path.read_bytes()[:10]
        assert head[:2] == b"\x1f\x8b" and head[3] & 0x08 == 0, path  # FNAME flag unset
        assert head[4:8] == b"\x00\x00\x00\x00", path


def test_rerun_in_same_dir_removes_files_of_the_previous_export(tmp_path):
    """Check that a shorter re-run in the same directory leaves no stale files of the first run."""
    simulate(SimConfig(users=200, days=4), tmp_path)
    manifest = simulate(SimConfig(users=200, days=2), tmp_path)
    listed = {f["path"] for f in manifest["files"]} | {sim.MANIFEST}
    assert set(_all_files(tmp_path)) == listed


# ------------------------------------------------------------------ contracts and manifest


def test_clean_export_satisfies_every_contract_rule(clean):
    """Check that every row of a fault-free export parses and passes every contract rule."""
    out, _ = clean
    tables = {t: _raw_table(out, t) for t in TABLES}
    for table, df in tables.items():
        assert df.height > 0, table
        assert _violations(df, table) == {}, table
        key = CONTRACTS["tables"][table]["primary_key"]
        assert not df.select(key).is_duplicated().any(), table
    events, users, plants = tables["events"], tables["users"], tables["plants"]
    assert events["user_id"].is_in(users["user_id"].implode()).all()
    assert events["plant_id"].drop_nulls().is_in(plants["plant_id"].implode()).all()
    # events lie on their file's day, and signups before the end of their file's day
    ev_day = _typed("ts", "datetime").dt.date()
    assert events.select((ev_day == pl.col("_file").str.slice(7, 10).str.to_date()).all()).item()
    signup = _typed("signup_at", "datetime")
    assert users.select((signup < pl.col("_export")).all()).item()


def test_events_have_the_documented_shape(clean):
    """Check per-type nulls: plant_id, rec_id/position, quantity/price, order_id, device/ip."""
    out, _ = clean
    ev = _raw_table(out, "events")
    t = pl.col("event_type")
    is_rec, priced = t.is_in(["rec_impression", "rec_click"]), t.is_in(["add_to_cart", "order"])
    rules = {
        "plant_id": t != "session_start",
        "rec_id": is_rec,
        "position": is_rec,
        "quantity": priced,
        "price": priced,
        "order_id": t == "order",
        "device": t == "session_start",
        "ip_address": t == "session_start",
    }
    for col, present in rules.items():
        assert ev.select((pl.col(col).is_not_null() == present).all()).item(), col
    ip = r"^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$"
    assert ev["ip_address"].drop_nulls().str.contains(ip).all()
    per_list = (
        ev.filter(t == "rec_impression")
        .group_by("rec_id")
        .agg(pl.len(), pl.col("position").cast(pl.Int64).sort())
    )
    assert per_list["len"].is_between(5, 10).all()
    expected = pl.int_ranges(1, pl.col("len") + 1, dtype=pl.Int64)
    assert per_list.select(pl.col("position") == expected).to_series().all()
    # time order within a session follows the funnel
    first = (
        ev.sort("ts").group_by("session_id", maintain_order=True).agg(pl.col("event_type").first())
    )
    assert (first["event_type"] == "session_start").all()


def test_manifest_lists_every_file_with_rows_and_sha256(faulty):
    """Check that the manifest records config, rows and sha256 of exactly the written files."""
    out, manifest = faulty
    assert json.loads((out / sim.MANIFEST).read_text("utf-8")) == manifest
    assert manifest["config"]["faults"] == list(FAULTS)
    on_disk = set(_all_files(out)) - {sim.MANIFEST}
    assert {f["path"] for f in manifest["files"]} == on_disk
    for f in manifest["files"]:
        data = (out / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
        assert len(data) == f["bytes"]
        if f["path"].endswith("-part2.jsonl.gz") or not data:
            continue
        rows = len(_lines(out / f["path"]))
        assert f["rows"] == (rows - 1 if f["path"].endswith(".csv") else rows), f["path"]


# ------------------------------------------------------------------ faults


def test_each_fault_is_where_the_manifest_says(faulty):
    """Check every fault recorded in the manifest against the file and line it names."""
    out, manifest = faulty
    entries = manifest["faults"]
    assert {e["fault"] for e in entries} == set(FAULTS)
    assert [e["fault"] for e in entries if e["file"].startswith("reviews/")] == ["malformed"]
    listed: dict[str, set[int]] = {}
    for e in entries:
        path, fault = out / e["file"], e["fault"]
        listed.setdefault(e["file"], set()).update(e["lines"])
        if fault == "empty_file":
            assert path.stat().st_size == 0
            continue
        if fault == "truncated_gzip":
            with pytest.raises((EOFError, OSError, zlib.error)):
                gzip.decompress(path.read_bytes())
            continue
        if fault == "changed_column" and path.suffix == ".csv":
            header = pl.read_csv(path, infer_schema=False).columns
            assert header[-1] == "loyalty_tier"
            assert header[:-1] == list(_columns("users"))
            continue
        lines = _lines(path)
        if fault == "changed_column":
            assert all(b'"unit_price":' in ln for ln in lines if ln.startswith(b"{") and b"}" in ln)
            assert not any(b'"price":' in ln for ln in lines)
            continue
        assert e["lines"] and e["count"] == len(e["lines"])
        for n in e["lines"]:
            raw = lines[n - 1]
            if fault == "malformed":
                with pytest.raises(ValueError):
                    json.loads(raw)
                continue
            if fault == "non_utf8":
                assert b"\xff\xfe" in raw
                with pytest.raises(UnicodeDecodeError):
                    raw.decode("utf-8")
                continue
            obj = json.loads(raw)
            if fault == "missing_field":
                assert "user_id" not in obj
            elif fault == "wrong_type":
                price = obj.get("price", obj.get("unit_price"))
                assert isinstance(obj["quantity"], str) or isinstance(price, str)
            elif fault == "future":
                assert obj["ts"][:4] in ("2019", str(_file_day(path).year + 1))
            elif fault == "late":
                assert date.fromisoformat(obj["ts"][:10]) == _file_day(path) - timedelta(days=1)
            elif fault == "duplicates":
                prev = out / "events" / f"events-{_file_day(path) - timedelta(days=1)}.jsonl.gz"
                others = [ln for i, ln in enumerate(lines) if i != n - 1]
                others += _lines(prev) if prev.exists() else []
                same_key = [ln.replace(b'"price":', b'"unit_price":') for ln in others]
                assert raw in others or raw in same_key  # changed_column renames on the last day
    # every line the manifest does not name is a valid event of its day
    for path in sorted(out.glob("events/events-????-??-??.jsonl.gz")):
        lines = _lines(path)
        bad = listed.get(str(path.relative_to(out)), set())
        ok = pl.Series([ln.decode() for i, ln in enumerate(lines, 1) if i not in bad])
        obj = ok.str.json_decode(infer_schema_length=None).struct.unnest()
        assert obj["user_id"].null_count() == 0
        assert (obj["ts"].str.slice(0, 10) == str(_file_day(path))).all()


def test_faults_leave_the_clean_rows_unchanged(tmp_path):
    """Check that enabling row-level faults changes only the lines the manifest names."""
    kw = {"users": 200, "days": 2, "fault_rate": 0.01}
    simulate(SimConfig(**kw), tmp_path / "clean")
    manifest = simulate(SimConfig(faults=("malformed", "wrong_type"), **kw), tmp_path / "bad")
    for day in ("2025-03-01", "2025-03-02"):
        rel = f"events/events-{day}.jsonl.gz"
        clean, bad = _lines(tmp_path / "clean" / rel), _lines(tmp_path / "bad" / rel)
        named = {n for e in manifest["faults"] if e["file"] == rel for n in e["lines"]}
        assert len(clean) == len(bad)
        assert {i + 1 for i, (a, b) in enumerate(zip(clean, bad, strict=True)) if a != b} == named


def test_unknown_fault_or_drift_raises_value_error_naming_it():
    """Check that unknown fault and drift names are refused with their name in the message."""
    with pytest.raises(ValueError, match="bit_flip"):
        SimConfig(faults=("malformed", "bit_flip"))
    with pytest.raises(ValueError, match="solar_eclipse"):
        SimConfig(drift=("solar_eclipse",))
    with pytest.raises(ValueError, match="before the shop opened"):
        SimConfig(start="2024-12-31")
    with pytest.raises(ValueError, match="drift_start"):
        SimConfig(days=5, drift=("seasonal",), drift_start="2025-03-20")


# ------------------------------------------------------------------ drift


def test_new_region_adds_nordic_users_only_with_drift(drifted, default):
    """Check that NORDICS users appear only with new_region, from drift_start, with own taste."""
    out, manifest, plain = drifted
    assert (_raw_table(plain, "users")["region"] != "NORDICS").all()
    assert (_raw_table(default[0], "users")["region"] != "NORDICS").all()
    users = _raw_table(out, "users")
    nordic = users.filter(pl.col("region") == "NORDICS")
    assert nordic["country"].is_in(["SE", "NO", "DK"]).all()
    assert (nordic["signup_at"] >= manifest["drift"]["start"]).all()
    after = users.filter(pl.col("signup_at") >= manifest["drift"]["start"])
    assert nordic.height / after.height > 0.3
    ev = _raw_table(out, "events").join(users.select("user_id", "region"), on="user_id")
    plants = _raw_table(out, "plants").unique("plant_id").select("plant_id", "category")
    looks = ev.filter(pl.col("event_type").is_in(["view", "rec_click"])).join(plants, on="plant_id")
    dry = pl.col("category").is_in(["succulent", "cactus"])
    share = looks.group_by(pl.col("region") == "NORDICS").agg(dry.mean()).sort("region")["category"]
    assert share[1] > share[0] + 0.1
    starts = ev.filter(pl.col("event_type") == "session_start")
    mob = starts.group_by(pl.col("region") == "NORDICS").agg(pl.col("device") == "mobile")
    mob = mob.with_columns(pl.col("device").list.mean()).sort("region")["device"]
    assert mob[1] > mob[0]


def test_price_change_writes_an_incremental_snapshot_with_higher_prices(drifted):
    """Check the drift-day plants file: only the ~30% of plants 25-40% dearer, events use them."""
    out, manifest, _ = drifted
    day = manifest["drift"]["start"]
    first = pl.read_csv(out / "plants/plants-2025-03-01.csv")
    second = pl.read_csv(out / f"plants/plants-{day}.csv")
    changed = first.join(second, on="plant_id", suffix="_new")
    assert changed.height == second.height  # every row of the drift file is a known plant
    assert 0.2 <= changed.height / first.height <= 0.4
    assert changed["category"].n_unique() <= 2
    ratio = changed["price_new"] / changed["price"]
    assert ratio.min() >= 1.24 and ratio.max() <= 1.41
    info = manifest["drift"]["price_change"]  # the magnitude is recorded
    assert info["price_factor_range"] == [1.25, 1.40]
    assert info["mean_price_factor"] == pytest.approx(ratio.mean(), abs=0.01)
    assert info["plants_changed"] == changed.height
    assert (changed["updated_at_new"] == f"{day}T00:00:00Z").all()
    both = first.join(second.select("plant_id", "price"), on="plant_id", how="left", suffix="_new")
    both = both.with_columns(pl.coalesce("price_new", "price").alias("price_new"))
    ev = _raw_table(out, "events").filter(pl.col("price").is_not_null())
    ev = ev.with_columns(pl.col("price").cast(pl.Float64), (pl.col("ts") >= day).alias("after"))
    price = pl.when(pl.col("after")).then(pl.col("price_new")).otherwise(pl.col("price_right"))
    priced = ev.join(both.select("plant_id", pl.col("price").alias("price_right"), "price_new"),
                     on="plant_id")  # fmt: skip
    assert priced.select((pl.col("price") == price).all()).item()


def test_drift_leaves_days_before_drift_start_identical(drifted):
    """Check that a drifted export equals the plain one before drift_start."""
    out, manifest, plain = drifted
    day = date.fromisoformat(manifest["drift"]["start"])
    for d in range(7):
        for rel in (f"events/events-{date(2025, 3, 1) + timedelta(days=d)}.jsonl.gz",
                    f"users/users-{date(2025, 3, 1) + timedelta(days=d)}.csv"):  # fmt: skip
            if _file_day(Path(rel)) < day:
                assert (out / rel).read_bytes() == (plain / rel).read_bytes(), rel


def test_seasonal_drift_raises_traffic_engagement_and_flowering_share(drifted):
    """Check that seasonal drift brings more sessions, keener visitors (click-through and
    orders per session) and more flowering views than the plain run, as its manifest says."""
    out, manifest, plain = drifted
    day = manifest["drift"]["start"]
    assert manifest["drift"]["seasonal"] == SEASONAL  # the magnitudes are recorded

    def after(root: Path) -> tuple[int, float, float, float]:
        ev = _raw_table(root, "events").filter(pl.col("ts") >= day)
        plants = _raw_table(root, "plants").unique("plant_id").select("plant_id", "category")
        views = ev.filter(pl.col("event_type") == "view").join(plants, on="plant_id")
        n = dict(ev["event_type"].value_counts().iter_rows())
        sessions = n["session_start"]
        return (sessions, (views["category"] == "flowering").mean(),
                n["rec_click"] / n["rec_impression"], n["order"] / sessions)  # fmt: skip

    (s_drift, f_drift, ctr_drift, o_drift), (s_plain, f_plain, ctr_plain, o_plain) = (
        after(out), after(plain),
    )  # fmt: skip
    assert s_drift > 1.25 * s_plain
    assert f_drift > f_plain + 0.03
    assert ctr_drift > 1.3 * ctr_plain  # more clicks per impression, not only more visits
    assert o_drift > 1.3 * o_plain  # and more order lines per session


# ------------------------------------------------------------------ behaviour and reviews


def test_default_export_size_and_funnel_are_realistic(default):
    """Check the default size (150k-400k events), CTR, conversion and position bias of clicks."""
    out, manifest = default
    assert 150_000 <= manifest["totals"]["events"] <= 400_000
    ev = _raw_table(out, "events")
    counts = dict(ev["event_type"].value_counts().iter_rows())
    ctr = counts["rec_click"] / counts["rec_impression"]
    sessions = counts["session_start"]
    conversion = ev.filter(pl.col("event_type") == "order")["session_id"].n_unique() / sessions
    assert 0.05 <= ctr <= 0.15
    assert 0.03 <= conversion <= 0.08
    rec = ev.filter(pl.col("event_type").is_in(["rec_impression", "rec_click"]))
    by_pos = rec.group_by(pl.col("position").cast(pl.Int64)).agg(
        (pl.col("event_type") == "rec_click").mean().alias("ctr")
    )
    by_pos = dict(by_pos.iter_rows())
    assert by_pos[1] > by_pos[5] > by_pos[10]
    days = (
        ev.filter(pl.col("event_type") == "session_start")
        .group_by(pl.col("ts").str.to_datetime(_DT_FORMATS[0]).dt.weekday() >= 6)
        .agg(pl.len() / pl.col("ts").str.slice(0, 10).n_unique())
    )
    per_day = dict(days.iter_rows())
    assert per_day[True] > 1.15 * per_day[False]  # weekends are busier


def test_reviews_follow_orders_and_about_ten_percent_hold_personal_data(default):
    """Check that reviews follow an order and ~10% hold their author's name, e-mail or phone."""
    out, manifest = default
    reviews = _raw_table(out, "reviews")
    assert reviews.height > 200
    orders = _raw_table(out, "events").filter(pl.col("event_type") == "order")
    first = orders.group_by("user_id", "plant_id").agg(pl.col("ts").min().alias("ordered"))
    joined = reviews.join(first, on=["user_id", "plant_id"], how="left")
    assert joined["ordered"].null_count() == 0
    assert (joined["ordered"] < joined["ts"]).all()
    users = _raw_table(out, "users").select("user_id", "name", "email", "phone")
    r = reviews.join(users, on="user_id").with_columns(
        pl.col("text").str.contains(pl.col("name"), literal=True).alias("has_name"),
        pl.col("text").str.contains(pl.col("email"), literal=True).alias("has_email"),
        pl.col("text").str.contains(pl.col("phone").fill_null("<none>"), literal=True)
        .alias("has_phone"),
    )  # fmt: skip
    has_pii = r.filter(pl.col("has_name") | pl.col("has_email") | pl.col("has_phone"))
    assert 0.05 <= has_pii.height / reviews.height <= 0.16
    planted = manifest["pii_in_reviews"]
    assert set(has_pii["review_id"]) == set(planted["name"] + planted["email"] + planted["phone"])
    for kind in ("name", "email", "phone"):
        assert set(r.filter(pl.col(f"has_{kind}"))["review_id"]) == set(planted[kind])
    texts = dict(reviews.select("review_id", "text").iter_rows())
    for rid in planted["card"]:
        card = texts[rid].split("card ")[1].split(",")[0]
        assert _luhn_ok(card), card
    for rid in planted["iban"]:
        assert _iban_ok(texts[rid].split("account ")[1].rstrip("."))
    ratings = reviews["rating"].cast(pl.Int64)
    assert ratings.is_between(1, 5).all() and ratings.n_unique() >= 4


def test_card_and_iban_generators_give_valid_numbers():
    """Check that generated card numbers pass Luhn and IBANs pass the mod-97 check."""
    rng = np.random.default_rng(0)
    cards, ibans = sim._luhn_cards(rng, 500), sim._ibans(rng, 500)
    assert cards.str.contains(r"^4\d{3}( \d{4}){3}$").all()
    assert all(_luhn_ok(c) for c in cards)
    assert ibans.str.contains(r"^(DE\d{2}( \d{4}){4} \d{2}|AT\d{2}( \d{4}){4})$").all()
    assert all(_iban_ok(i) for i in ibans)
    assert _iban_ok("DE89 3704 0044 0532 0130 00")


def test_user_personal_data_looks_real(clean):
    """Check e-mails derive from names on example domains, phones match the country, ages 18-85."""
    out, _ = clean
    users = _raw_table(out, "users")
    assert (
        users["email"]
        .str.contains(
            r"@(?:example\.com|example\.org|example\.net|mail\.example\.org|post\.example\.com"
            r"|web\.example\.net)$"
        )
        .all()
    )
    prefix = {"GB": "+44 ", "IE": "+353 ", "DE": "+49 ", "AT": "+43 ", "CH": "+41 ", "NL": "+31 ",
              "BE": "+32 ", "FR": "+33 "}  # fmt: skip
    phones = users.drop_nulls("phone").with_columns(
        pl.col("country").replace_strict(prefix).alias("p")
    )
    assert phones.select(pl.col("phone").str.starts_with(pl.col("p")).all()).item()
    region = {"GB": "UKI", "IE": "UKI", "DE": "DACH", "AT": "DACH", "CH": "DACH", "NL": "BENELUX",
              "BE": "BENELUX", "FR": "FRANCE"}  # fmt: skip
    assert (users["country"].replace_strict(region) == users["region"]).all()
    age = users.drop_nulls("birth_date").select(
        (pl.col("signup_at").str.to_datetime(_DT_FORMATS[0]).dt.date()
         - pl.col("birth_date").str.to_date()).dt.total_days() / 365.25
    ).to_series()  # fmt: skip
    assert age.min() >= 17.9 and age.max() <= 86
    last = users["name"].str.split(" ").list.last().str.to_lowercase().str.replace_all("[^a-z]", "")
    ascii_last = users["email"].str.to_lowercase()
    assert (
        pl.select(ascii_last.str.contains(last.str.slice(0, 3), literal=True).mean()).item() > 0.6
    )


# ------------------------------------------------------------------ continuing an export


def test_more_days_equals_the_longer_export_and_leaves_old_files_alone(tmp_path):
    """Check that 3 days + 2 more days gives the files of a 5-day export, old bytes untouched."""
    simulate(SimConfig(users=200, days=3), tmp_path / "a")
    before = _all_files(tmp_path / "a")
    more = sim.simulate_more(tmp_path / "a", 2)
    whole = simulate(SimConfig(users=200, days=5), tmp_path / "b")
    after = _all_files(tmp_path / "a")
    assert {p: after[p] for p in before if p != sim.MANIFEST} == {
        p: b for p, b in before.items() if p != sim.MANIFEST
    }
    assert {f["path"]: f["sha256"] for f in more["files"]} == {
        f["path"]: f["sha256"] for f in whole["files"]
    }
    assert more["window"] == whole["window"] and more["totals"] == whole["totals"]
    assert [c["from"] for c in more["continued"]] == ["2025-03-01", "2025-03-04"]


def test_more_days_gives_new_signups_new_user_ids(tmp_path):
    """Check that users who sign up on the new days get ids no earlier file used."""
    simulate(SimConfig(users=200, days=3), tmp_path)
    old = pl.concat(pl.read_csv(p, infer_schema=False) for p in _landing_files(tmp_path, "users"))
    sim.simulate_more(tmp_path, 2, drift=("new_region",))
    every = pl.concat(pl.read_csv(p, infer_schema=False) for p in _landing_files(tmp_path, "users"))
    new = every.filter(~pl.col("user_id").is_in(old["user_id"].implode()))
    assert new.height > 0 and every["user_id"].n_unique() == every.height
    numbers = every["user_id"].str.slice(1).cast(pl.Int64).sort()
    assert numbers.to_list() == list(range(1, every.height + 1))  # contiguous, no reuse
    assert new["user_id"].min() > old["user_id"].max()


def test_more_days_injects_drift_and_faults_into_the_new_days_only(tmp_path):
    """Check that --faults and --drift of a continuation touch only the new days' files."""
    simulate(SimConfig(users=200, days=3), tmp_path)
    m = sim.simulate_more(
        tmp_path, 3, drift=("price_change",), faults=("malformed", "truncated_gzip")
    )
    days_with_faults = {re.search(r"\d{4}-\d\d-\d\d", f["file"])[0] for f in m["faults"]}
    assert m["faults"] and days_with_faults <= {"2025-03-04", "2025-03-05", "2025-03-06"}
    assert any(f["fault"] == "truncated_gzip" and "2025-03-04" in f["file"] for f in m["faults"])
    assert m["drift"]["start"] == "2025-03-04"
    assert (tmp_path / "plants" / "plants-2025-03-04.csv").exists()


def test_more_days_refuses_without_a_manifest_or_with_a_second_drift(tmp_path):
    """Check the clear refusals: nothing to continue, a conflicting drift, a drift back in time."""
    with pytest.raises(ValueError, match="no manifest"):
        sim.simulate_more(tmp_path, 2)
    simulate(SimConfig(users=200, days=3), tmp_path)
    with pytest.raises(ValueError, match="cannot drift"):
        sim.simulate_more(tmp_path, 2, drift=("seasonal",), drift_start="2025-03-02")
    sim.simulate_more(tmp_path, 2, drift=("seasonal",))
    with pytest.raises(ValueError, match="already drifts"):
        sim.simulate_more(tmp_path, 2, drift=("new_region",))
    with pytest.raises(ValueError, match="first_day"):
        SimConfig(days=2, first_day=2)
    with pytest.raises(ValueError, match="continue one with simulate_more"):
        simulate(SimConfig(days=3, first_day=1), tmp_path / "x")
