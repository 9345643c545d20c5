"""Tests of hortus.lakehouse.delta_append: polars-written Parquet committed as Delta appends."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from deltalake import CommitProperties, DeltaTable

from conftest import event, with_policy, write_jsonl
from hortus.config import Paths
from hortus.lakehouse import delta_append, silver, tables
from hortus.lakehouse.ingest import ingest
from hortus.lakehouse.tables import Lakehouse

COMMIT = CommitProperties(custom_metadata={"hortus.stage": "test"})
T0 = datetime(2025, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)


def _frame(n: int = 6, offset: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "i": [offset + k for k in range(n)],
            "s": ["x" * (40 + k) if k % 2 else f"v{k}" for k in range(n)],
            "t": [T0 + timedelta(microseconds=337 * k) for k in range(n)],
            "d": [date(2025, 3, 1 + k) for k in range(n)],
            "f": [float("nan") if k == 1 else k / 3 for k in range(n)],
            "b": [k % 2 == 0 for k in range(n)],
            "nulls": [None if k % 3 else f"n{k}" for k in range(n)],
        },
        schema_overrides={"t": pl.Datetime("us", "UTC")},
    )


def _add_stats(path) -> list[dict]:
    out = []
    for f in sorted((path / "_delta_log").glob("*.json")):
        for line in f.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                out.append(json.loads(action["add"]["stats"]))
    return out


def test_fast_appends_create_and_extend_a_table_readers_agree_on(tmp_path):
    """Check that two fast appends read back exactly, by polars, deltalake and pyarrow."""
    path = tmp_path / "t"
    first, second = _frame(), _frame(offset=100)
    assert delta_append.append(path, first, COMMIT)
    assert delta_append.append(path, second, COMMIT)
    dt = DeltaTable(str(path))
    assert dt.version() == 1
    assert dt.protocol().min_writer_version == 2
    both = pl.concat([first, second])
    assert pl.read_delta(str(path)).sort("i").equals(both)
    assert pl.from_arrow(dt.to_pyarrow_table()).sort("i").equals(both)
    assert pl.scan_delta(str(path)).select(pl.len()).collect().item() == 12
    assert [h.get("hortus.stage") for h in dt.history()] == ["test", "test"]


def test_a_large_frame_is_written_in_row_groups_capped_in_bytes(tmp_path, monkeypatch):
    """Check row groups of at most ROW_GROUP_BYTES + one row, wide rows among short ones."""
    import pyarrow.parquet as pq

    monkeypatch.setattr(delta_append, "ROW_GROUP_BYTES", 4096)
    n = 300
    frame = pl.concat([_frame(20, offset=k) for k in range(0, n, 20)]).with_columns(
        # rows 100-104: 3,000-byte values, the rest short (the wide ones one a group)
        pl.when(pl.col("i").is_between(100, 104)).then(pl.lit("w" * 3000)).otherwise("s").alias("s")
    )
    path = tmp_path / "t"
    assert delta_append.append(path, frame, COMMIT)
    (part,) = path.glob("*.parquet")
    meta = pq.ParquetFile(part).metadata
    sizes = delta_append.row_bytes(frame).to_list()
    start, widest = 0, 0
    for g in range(meta.num_row_groups):
        rows = meta.row_group(g).num_rows
        group = sizes[start : start + rows]
        assert sum(group[:-1]) < 4096, (g, rows)  # under the cap until its last row
        widest, start = max(widest, sum(group)), start + rows
    assert start == n and meta.num_row_groups > 5 and widest <= 4096 + 3000 + 8 * 7
    assert pl.read_delta(str(path)).sort("i").equals(frame)  # every row, every type
    assert pl.from_arrow(DeltaTable(str(path)).to_pyarrow_table()).sort("i").equals(frame)
    assert _add_stats(path)[0]["numRecords"] == n


def test_statistics_are_exact_bounds(tmp_path):
    """Check the add action's statistics: counts, and min/max only where they bound exactly."""
    path = tmp_path / "t"
    df = _frame()
    delta_append.append(path, df, COMMIT)
    (stats,) = _add_stats(path)
    assert stats["numRecords"] == 6
    assert stats["nullCount"] == {c: df[c].null_count() for c in df.columns}
    lo, hi = stats["minValues"], stats["maxValues"]
    assert (lo["i"], hi["i"]) == (0, 5)
    assert (lo["d"], hi["d"]) == ("2025-03-01", "2025-03-06")
    # microseconds: the minimum floored, the maximum rounded up to whole milliseconds
    assert lo["t"] == "2025-03-01T08:00:00.123Z"
    assert hi["t"] == "2025-03-01T08:00:00.126Z"  # max is .125141
    assert "f" not in lo and "f" not in hi  # a NaN: no float bounds
    assert "b" not in lo  # no booleans bounds
    assert lo["s"] == "v0" and "s" not in hi  # the longest value (45 chars) has no max
    assert (lo["nulls"], hi["nulls"]) == ("n0", "n3")


@pytest.mark.parametrize(
    "predicate",
    [
        pl.col("t") > datetime(2025, 3, 1, 8, 0, 0, 125000, tzinfo=UTC),
        pl.col("t") >= datetime(2025, 3, 1, 8, 0, 0, 125141, tzinfo=UTC),
        pl.col("t") < datetime(2025, 3, 1, 8, 0, 0, 123457, tzinfo=UTC),
        pl.col("s") > "x" * 44,
        pl.col("s") < "v1",
        pl.col("i") >= 5,
        pl.col("f") > 1.0,
        pl.col("nulls").is_null(),
    ],
)
def test_filtered_scans_match_filtering_in_memory(tmp_path, predicate):
    """Check that readers skipping files by the statistics never drop a matching row."""
    path = tmp_path / "t"
    df = _frame()
    delta_append.append(path, df, COMMIT)
    expected = df.filter(predicate)
    assert expected.height > 0
    assert pl.scan_delta(str(path)).filter(predicate).collect().sort("i").equals(expected)


@pytest.mark.parametrize(
    "frame",
    [
        pl.DataFrame({"l": [[1, 2]]}),  # nested
        pl.DataFrame({"u": pl.Series([1], dtype=pl.UInt32)}),  # unsigned
        pl.DataFrame({"t": [datetime(2025, 3, 1)]}),  # naive time (timestamp_ntz)
        pl.DataFrame({"i": pl.Series([], dtype=pl.Int64)}),  # no rows
    ],
)
def test_unsupported_frames_are_left_to_deltalake(tmp_path, frame):
    """Check that frames the fast path cannot write exactly are refused without writing."""
    assert not delta_append.append(tmp_path / "t", frame, COMMIT)
    assert not (tmp_path / "t").exists() or not any((tmp_path / "t").iterdir())


def test_a_schema_change_falls_back_and_deltalake_merges_it(lakehouse, monkeypatch):
    """Check that a new column goes through deltalake's writer (schema merge), then fast again."""
    monkeypatch.setattr(tables, "FAST_APPEND_ROWS", 1)
    name = "bronze.landing_files"
    path = lakehouse.path(name)
    df = pl.DataFrame(
        {"source_file": ["a"], "file_sha256": ["0" * 64], "rows": [1]},
        schema_overrides={"rows": pl.Int64},
    )
    lakehouse.write(name, df)
    assert not delta_append.append(path, df.with_columns(extra=pl.lit("x")), COMMIT)
    lakehouse.write(name, df.with_columns(extra=pl.lit("x")))  # merged by deltalake
    lakehouse.write(name, df.with_columns(extra=pl.lit("y")))  # same schema again: fast
    ops = [h["operation"] for h in DeltaTable(str(path)).history()]
    assert ops == ["WRITE", "WRITE", "CREATE TABLE"]  # newest first
    out = lakehouse.read(name)
    assert out["extra"].sort(nulls_last=True).to_list() == ["x", "y", None]
    hist = lakehouse.history(name)
    assert hist["rows_added"].to_list() == [1, 1, 1]
    assert hist["stage"].to_list() == ["test"] * 3


def test_the_pipeline_gives_the_same_tables_with_either_writer(project, lakehouse, monkeypatch):
    """Check ingest and silver through the fast path: same content, deletes work, reconciles."""
    rows = [event(i) for i in range(40)] + [event(3), '{"event_id": "e1", "ev']
    write_jsonl(project.data / "events/events-2025-03-01.jsonl.gz", rows)
    options = silver.SilverOptions(key=b"k")
    ingest(project.data, lakehouse)
    silver.build(lakehouse, options)
    slow = {t: lakehouse.content_hash(t) for t in ("silver.events", "quarantine.rows")}

    monkeypatch.setattr(tables, "FAST_APPEND_ROWS", 1)
    root = project.root / "fast"
    shutil.copytree(project.data, root / "data")
    with_policy(root)
    other = Lakehouse(paths=Paths.at(root), catalog=lakehouse.catalog, stage="test")
    ingest(other.paths.root / "data", other)
    silver.build(other, options)
    assert DeltaTable(str(other.path("silver.events"))).history()[-1]["operation"] == (
        "CREATE TABLE"
    )
    assert {t: other.content_hash(t) for t in slow} == slow
    assert all(r["reconciles"] for r in silver.reconcile(other))
    # deltalake's delete reads the polars-written files (silver's crash recovery uses it)
    assert other.delete_rows("silver.events", "event_id", [event(5)["event_id"]], note="t")
    assert other.read("silver.events").height == 39
