"""Tests of landing -> bronze: idempotence, appends and refused files."""

from __future__ import annotations

import gzip

import polars as pl
import pytest

from conftest import USERS_HEADER, event, user_row, write_jsonl
from hortus.lakehouse.ingest import FILES_TABLE, ingest
from hortus.lakehouse.landing import split_lines


def _bronze_rows(lh, table):
    return lh.scan(table).select(pl.len()).collect().item()


def test_ingest_same_file_twice_adds_nothing(project, lakehouse):
    """Check that re-ingesting an unchanged landing file lands no row twice."""
    write_jsonl(project.data / "events/events-2025-03-01.jsonl.gz", [event(i) for i in range(5)])
    first = ingest(project.data, lakehouse)
    second = ingest(project.data, lakehouse)
    assert first.rows_by_table() == {"silver.events": 5}
    assert second.files == [] and second.skipped == ["events/events-2025-03-01.jsonl.gz"]
    assert _bronze_rows(lakehouse, "bronze.events") == 5


def test_ingest_new_file_appends_with_metadata(project, lakehouse):
    """Check that a new file appends and every row carries file, line, batch and time."""
    write_jsonl(project.data / "events/events-2025-03-01.jsonl.gz", [event(i) for i in range(3)])
    ingest(project.data, lakehouse)
    write_jsonl(
        project.data / "events/events-2025-03-02.jsonl.gz",
        [event(10 + i, ts="2025-03-02T09:00:00.000000Z") for i in range(2)],
    )
    ingest(project.data, lakehouse)
    df = lakehouse.read("bronze.events").sort("_source_file", "_line")
    assert df.height == 5
    assert df["_line"].to_list() == [1, 2, 3, 1, 2]
    assert df["_batch_id"].n_unique() == 2
    assert df["_file_date"].cast(pl.String).unique().sort().to_list() == [
        "2025-03-01",
        "2025-03-02",
    ]
    assert df["_ingested_at"].null_count() == 0
    assert lakehouse.version("bronze.events") == 1  # two appends


def test_ingest_refuses_empty_truncated_and_unclaimed_files_and_goes_on(project, lakehouse):
    """Check that broken files are refused with their reason while good files land."""
    write_jsonl(project.data / "events/events-2025-03-01.jsonl.gz", [event(i) for i in range(4)])
    (project.data / "events/events-2025-03-02.jsonl").write_bytes(b"")
    whole = gzip.compress(b"\n".join(b'{"event_id": "x"}' for _ in range(500)), mtime=0)
    (project.data / "events/events-2025-03-03.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (project.data / "notes.txt").write_text("hello")
    report = ingest(project.data, lakehouse)
    reasons = {f.source_file: f.reason for f in report.refused}
    assert reasons["events/events-2025-03-02.jsonl"].startswith("empty_file: ")
    assert reasons["events/events-2025-03-03.jsonl.gz"].startswith("truncated_compressed: ")
    assert reasons["notes.txt"].startswith("no_contract: ")
    assert report.rows_by_table() == {"silver.events": 4}
    log = lakehouse.read(FILES_TABLE)
    assert sorted(log.filter(pl.col("status") == "refused")["source_file"]) == sorted(reasons)
    # refused files are recorded once: a rerun does not refuse them again
    assert ingest(project.data, lakehouse).files == []


def test_ingest_refuses_csv_missing_required_column(project, lakehouse):
    """Check that a CSV whose header lost a required column is refused, naming it."""
    header = USERS_HEADER.replace(",email", ",e_mail")
    (project.data / "users").mkdir()
    (project.data / "users/users-2025-03-01.csv").write_text(header + "\n" + user_row(1) + "\n")
    report = ingest(project.data, lakehouse)
    (refused,) = report.refused
    assert "changed_schema" in refused.reason
    assert "['email']" in refused.reason and "['e_mail']" in refused.reason
    assert not lakehouse.exists("bronze.users")


def test_ingest_refuses_jsonl_with_changed_schema(project, lakehouse):
    """Check that JSON lines whose required key was renamed in every line are refused."""
    rows = [{("uid" if k == "user_id" else k): v for k, v in event(i).items()} for i in range(3)]
    write_jsonl(project.data / "events/events-2025-03-01.jsonl", rows)
    (refused,) = ingest(project.data, lakehouse).refused
    assert refused.reason.startswith("changed_schema: ")
    assert "['user_id']" in refused.reason and "['uid']" in refused.reason


def test_ingest_refuses_jsonl_with_renamed_optional_key(project, lakehouse):
    """Check that an optional key renamed in every line (price -> unit_price) is refused."""
    rows = [event(i, event_type="order", price=12.5, quantity=1) for i in range(3)]
    rows = [{("unit_price" if k == "price" else k): v for k, v in r.items()} for r in rows]
    write_jsonl(project.data / "events/events-2025-03-01.jsonl", rows)
    (refused,) = ingest(project.data, lakehouse).refused
    assert refused.reason.startswith("changed_schema: ")
    assert "['price']" in refused.reason and "['unit_price']" in refused.reason
    assert not lakehouse.exists("bronze.events")


def test_ingest_warns_on_extra_csv_column_and_keeps_it_raw(project, lakehouse):
    """Check that an unexpected extra column is accepted with a warning and kept in bronze."""
    (project.data / "users").mkdir()
    (project.data / "users/users-2025-03-01.csv").write_text(
        USERS_HEADER + ",loyalty_tier\n" + user_row(1) + ",gold\n"
    )
    report = ingest(project.data, lakehouse)
    assert report.refused == []
    assert any("loyalty_tier" in w for w in report.to_dict()["warnings"])
    assert lakehouse.read("bronze.users")["loyalty_tier"].to_list() == ["gold"]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\n",
        b"\n\n",
        b"one line without newline",
        b'{"a": 1}\n{"b": 2}\n',
        b"\n\nthird\n",
        "caf\u00e9 \u2603\n\u00fcber long enough to leave the inline part\n".encode(),
        b"windows\r\nline\r\n",
        b"bad \xff\xfe bytes\ngood line\n",
        b"truncated \xe2\x98",
    ],
)
def test_split_lines_matches_decoding_then_splitting(payload):
    """Check the Arrow line split against str.split on the lossy decoded text.

    The newline ending the last line adds no line; bytes that are not UTF-8 become
    U+FFFD (silver's encoding rule then quarantines the row).
    """
    text = payload.decode("utf-8", errors="replace")
    expected = text.split("\n")
    if expected[-1] == "":
        expected.pop()
    got = split_lines(payload)
    assert got.dtype == pl.String
    assert got.to_list() == expected


def test_files_are_read_ahead_in_order_and_at_most_depth_ahead(tmp_path):
    """Check the read-ahead: files come back in order, never more than `depth` ahead."""
    from hortus.lakehouse import ingest as ingest_module

    files = [(tmp_path / f"f{i}.jsonl.gz", f"f{i}.jsonl.gz", "silver.events") for i in range(8)]
    started = []

    def read(path, rel, table):
        started.append(rel)
        return None, rel

    out = []
    for _df, rel in ingest_module._read_ahead(files, read, depth=2):
        assert len(started) <= len(out) + 3  # the one yielded plus two ahead
        out.append(rel)
    assert out == [rel for _, rel, _ in files]
