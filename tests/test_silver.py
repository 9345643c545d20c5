"""Tests of bronze -> silver: every bad-input case is quarantined and counts reconcile."""

from __future__ import annotations

import json

import polars as pl
import pytest

from conftest import TEST_KEY, USERS_HEADER, event, user_row, write_jsonl
from hortus.lakehouse import silver
from hortus.lakehouse.ingest import ingest
from hortus.lakehouse.pii import token

OPTIONS = silver.SilverOptions(key=TEST_KEY.encode())


def _run(project, lakehouse):
    report = ingest(project.data, lakehouse)
    tables = {t["table"]: t for t in silver.build(lakehouse, OPTIONS)}
    return report, tables


def _quarantine(lakehouse) -> pl.DataFrame:
    return lakehouse.read("quarantine.rows").sort("source_file", "line")


def _assert_reconciles(lakehouse):
    for check in silver.reconcile(lakehouse):
        assert check["reconciles"], check


BAD_EVENTS = [
    # (line content, expected rule, expected column)
    ('{"event_id": "e00000000000000aa", "event_ty', "json", None),
    (event(2, quantity="two", event_type="add_to_cart", price=3.5), "type", "quantity"),
    ({k: v for k, v in event(3).items() if k != "user_id"}, "required", "user_id"),
    (event(4, ts="2026-03-01T08:00:00.000000Z"), "future", "ts"),
    (event(5, ts="2019-06-01T08:00:00.000000Z"), "min", "ts"),
    (event(6, event_type="teleport"), "allowed", "event_type"),
    (event(7, plant_id="plant-7"), "pattern", "plant_id"),
    (event(8, price=9999.0, quantity=1, event_type="order"), "max", "price"),
    (
        b'{"event_id": "e0000000000000009", "event_type": "view", '
        b'"ts": "2025-03-01T08:00:00.000000Z",'
        b' "session_id": "s000000000009", "user_id": "u000001", "plant_id": "p0001", '
        b'"rec_id": "bad\xff\xfebytes"}',
        "encoding",
        "rec_id",
    ),
    (event(1), "duplicate", "event_id"),  # same id as the first good row
    ('{"event_id": "e00000000000000ab", "quantity": }', "json", None),  # braces, not JSON
]


def test_every_bad_event_is_quarantined_with_file_line_column_and_rule(project, lakehouse):
    """Check that each bad row lands in quarantine naming file, line, column and rule."""
    good = [event(1), event(100), event(101)]
    write_jsonl(
        project.data / "events/events-2025-03-01.jsonl.gz", good + [row for row, _, _ in BAD_EVENTS]
    )
    _, tables = _run(project, lakehouse)
    q = _quarantine(lakehouse)
    assert tables["silver.events"] | {"rules": None} == {
        "table": "silver.events",
        "landed": 14,
        "accepted": 3,
        "quarantined": 11,
        "rules": None,
    }
    for line, (_, rule, column) in enumerate(BAD_EVENTS, start=len(good) + 1):
        row = q.filter(pl.col("line") == line).row(0, named=True)
        assert row["source_file"] == "events/events-2025-03-01.jsonl.gz"
        assert (row["rule"], row["column"]) == (rule, column), row
        assert row["message"]
        assert row["raw"]  # the raw line is kept, nothing is lost
    _assert_reconciles(lakehouse)


def test_type_error_message_shows_the_value_and_every_violation(project, lakehouse):
    """Check that a row breaking two rules reports both, the first as its rule."""
    write_jsonl(
        project.data / "events/events-2025-03-01.jsonl",
        [event(1, quantity="two", price="abc", event_type="order")],
    )
    _run(project, lakehouse)
    row = _quarantine(lakehouse).row(0, named=True)
    assert row["rule"] == "type" and row["column"] == "quantity"
    assert "quantity: 'two' is not a valid int" in row["message"]
    assert "price: 'abc' is not a valid float" in row["message"]


def test_duplicates_across_batches_are_quarantined(project, lakehouse):
    """Check that an event id seen in an earlier batch is a duplicate in a later one."""
    write_jsonl(project.data / "events/events-2025-03-01.jsonl", [event(1), event(2)])
    _run(project, lakehouse)
    write_jsonl(
        project.data / "events/events-2025-03-02.jsonl",
        [event(2, ts="2025-03-02T01:00:00.000000Z"), event(3, ts="2025-03-02T01:00:00.000000Z")],
    )
    _, tables = _run(project, lakehouse)
    assert tables["silver.events"]["accepted"] == 1
    assert tables["silver.events"]["rules"] == {"duplicate": 1}
    assert lakehouse.read("silver.events")["event_id"].sort().to_list() == [
        event(i)["event_id"] for i in (1, 2, 3)
    ]
    _assert_reconciles(lakehouse)


def test_silver_is_typed_and_processing_twice_adds_nothing(project, lakehouse):
    """Check that silver has contract types and a second build is a no-op."""
    write_jsonl(
        project.data / "events/events-2025-03-01.jsonl.gz",
        [event(1, event_type="order", quantity=2, price=4.5, order_id="o1")],
    )
    _run(project, lakehouse)
    df = lakehouse.read("silver.events")
    assert df.schema["ts"] == pl.Datetime("us", "UTC")
    assert df.schema["quantity"] == pl.Int64 and df.schema["price"] == pl.Float64
    assert df.row(0, named=True)["quantity"] == 2
    assert silver.build(lakehouse, OPTIONS)[0]["landed"] == 0
    assert lakehouse.read("silver.events").height == 1


def test_users_pii_is_tokenised_and_birth_date_generalised(project, lakehouse):
    """Check that direct identifiers become keyed tokens and birth date an age band."""
    (project.data / "users").mkdir()
    (project.data / "users/users-2025-03-01.csv").write_text(
        USERS_HEADER + "\n" + user_row(1) + "\n" + user_row(2, birth_date="2003-06-01") + "\n"
    )
    _run(project, lakehouse)
    df = lakehouse.read("silver.users").sort("user_id")
    key = TEST_KEY.encode()
    assert df["email"].to_list() == [
        token("jane1@example.com", key),
        token("jane2@example.com", key),
    ]
    assert df["name"][0] == token("Jane Doe1", key)
    assert "birth_date" not in df.columns
    assert df["age_band"].to_list() == ["35-44", "18-24"]
    assert df["birth_year"].to_list() == [1987, 2003]
    raw = "1 High St, London"
    for col in df.select(pl.col(pl.String)).columns:
        assert not df[col].str.contains(raw, literal=True).any(), col


def test_review_text_is_redacted(project, lakehouse):
    """Check that names, e-mails, phones and card numbers in review text are redacted."""
    (project.data / "users").mkdir()
    (project.data / "users/users-2025-03-01.csv").write_text(
        USERS_HEADER + "\n" + user_row(1) + "\n"
    )
    text = (
        "Lovely fern! Jane Doe1 here, write to jane1@example.com or call +44 7700 900123; "
        "paid with 4111 1111 1111 1111. My friend: ivy.moss@mail.example.org"
    )
    write_jsonl(
        project.data / "reviews/reviews-2025-03-01.jsonl",
        [
            {
                "review_id": "r0000001",
                "user_id": "u000001",
                "plant_id": "p0001",
                "rating": 5,
                "text": text,
                "ts": "2025-03-01T10:00:00.000000Z",
            }
        ],
    )
    _run(project, lakehouse)
    out = lakehouse.read("silver.reviews")["text"][0]
    assert out.startswith("Lovely fern!")
    for secret in ("Jane Doe1", "jane1@example.com", "7700 900123", "4111 1111", "ivy.moss"):
        assert secret not in out
    assert "[EMAIL]" in out and "[PII]" in out and "[CARD]" in out


def test_quarantine_keeps_csv_rows_as_json(project, lakehouse):
    """Check that a rejected CSV row keeps its raw values (as JSON) and its line number."""
    (project.data / "users").mkdir()
    (project.data / "users/users-2025-03-01.csv").write_text(
        USERS_HEADER + "\n" + user_row(1) + "\n" + user_row(2, country="XX") + "\n"
    )
    _run(project, lakehouse)
    row = _quarantine(lakehouse).row(0, named=True)
    assert (row["line"], row["rule"], row["column"]) == (3, "allowed", "country")
    assert json.loads(row["raw"])["country"] == "XX"


@pytest.mark.parametrize("late_minutes,accepted", [(30, 1), (120, 0)])
def test_future_tolerance_is_a_parameter(project, lakehouse, late_minutes, accepted):
    """Check that events stamped after the file's export time pass only within tolerance."""
    ts = (
        f"2025-03-02T00:{late_minutes % 60:02d}:00.000000Z"
        if late_minutes < 60
        else f"2025-03-02T0{late_minutes // 60}:00:00.000000Z"
    )
    write_jsonl(project.data / "events/events-2025-03-01.jsonl", [event(1, ts=ts)])
    ingest(project.data, lakehouse)
    (t, *_) = silver.build(lakehouse, OPTIONS)
    assert t["accepted"] == accepted


@pytest.mark.parametrize("crashed", ["silver.events", "silver.reviews"])
def test_a_crash_between_the_accepted_and_quarantine_commits_is_redone(
    project, lakehouse, monkeypatch, crashed
):
    """Check that a batch whose quarantine write never happened is undone and reprocessed."""
    good = [event(1), event(100), event(101)]
    write_jsonl(
        project.data / "events/events-2025-03-01.jsonl.gz", good + [row for row, _, _ in BAD_EVENTS]
    )
    review = {
        "review_id": "r0000001",
        "user_id": "u000001",
        "plant_id": "p0001",
        "rating": 5,
        "text": "Lovely fern",
        "ts": "2025-03-01T10:00:00.000000Z",
    }
    write_jsonl(project.data / "reviews/reviews-2025-03-01.jsonl", [review, '{"review_id": "r2'])
    ingest(project.data, lakehouse)
    real_write = lakehouse.write

    def crash_on_quarantine(name, df, **kw):
        if name == silver.QUARANTINE and df["table"][0] == crashed:
            raise KeyboardInterrupt("killed between the two commits")
        return real_write(name, df, **kw)

    monkeypatch.setattr(lakehouse, "write", crash_on_quarantine)
    with pytest.raises(KeyboardInterrupt):
        silver.build(lakehouse, OPTIONS)
    monkeypatch.setattr(lakehouse, "write", real_write)
    # the accepted rows were committed, the quarantined ones were not: rows are missing
    expected = {"silver.events": (14, 3, 0), "silver.reviews": (2, 1, 0)}[crashed]
    [partial] = silver.partial_batches(lakehouse, lakehouse.catalog.get(crashed)).rows(named=True)
    assert (partial["landed"], partial["accepted"], partial["quarantined"]) == expected
    before = _quarantine(lakehouse) if lakehouse.exists(silver.QUARANTINE) else None
    # the next run undoes the partial batch and processes it again as a whole
    silver.build(lakehouse, OPTIONS)
    _assert_reconciles(lakehouse)
    assert lakehouse.read("silver.events").height == 3  # no row twice
    assert lakehouse.read("silver.reviews").height == 1
    q = _quarantine(lakehouse)
    assert q.group_by("table").len().sort("table").rows() == [
        ("silver.events", 11),
        ("silver.reviews", 1),
    ]
    # quarantine rows of other tables in the same batch were left alone
    if crashed == "silver.reviews":  # events' quarantine rows, same batch, came first
        kept = before.filter(pl.col("table") != crashed)
        after = q.filter(pl.col("table") != crashed)
        assert kept.height == 11 and kept.sort("line").equals(after.sort("line"))
    assert silver.partial_batches(lakehouse, lakehouse.catalog.get(crashed)).height == 0
    ops = lakehouse.history(crashed)["operation"].to_list()
    assert "DELETE" in ops  # the undo is a visible commit in the table's history


def test_decoding_keeps_landing_order_and_flags_only_bad_lines(lakehouse):
    """Check that decoded rows stay in line order with malformed lines flagged in place.

    Silver relies on it: the first occurrence of a key is kept, and the rows are not
    sorted again when they arrive in landing order.
    """
    contract = lakehouse.catalog.get("silver.events")
    raw = [
        json.dumps(event(1)),
        '{"event_id": "e00000000000000aa", "event_ty',  # truncated
        "  " + json.dumps(event(2)) + "\r",  # white space around a valid object
        None,
        '{"event_id": "e00000000000000ab", "quantity": }',  # braces, not JSON
        json.dumps(event(3)),
    ]
    lines = pl.DataFrame({"_raw": raw, "_line": range(1, 7)})
    out = silver._decode_json(lines, contract)
    assert out["_line"].to_list() == [1, 2, 3, 4, 5, 6]
    assert out["_malformed"].to_list() == [False, True, False, True, True, False]
    assert out["event_id"].to_list() == [
        event(1)["event_id"],
        None,
        event(2)["event_id"],
        None,
        None,
        event(3)["event_id"],
    ]


def test_replacement_char_written_as_an_escape_is_still_caught(project, lakehouse):
    """Check the encoding rule when U+FFFD comes from a JSON escape, not from raw bytes.

    Silver skips the per-column encoding scans when no line can hold U+FFFD; a line
    spelling it as \\ufffd must still count.
    """
    line = json.dumps(event(2) | {"rec_id": "r\ufffd1"}, ensure_ascii=True)
    assert "\\ufffd" in line and "\ufffd" not in line
    write_jsonl(project.data / "events/events-2025-03-01.jsonl", [event(1), line])
    _, tables = _run(project, lakehouse)
    assert tables["silver.events"]["rules"] == {"encoding": 1}
    row = _quarantine(lakehouse).row(0, named=True)
    assert (row["line"], row["rule"], row["column"]) == (2, "encoding", "rec_id")


@pytest.mark.parametrize(
    ("files", "lines", "sorted_fully"),
    [
        (["a", "a", "b", "b"], [1, 2, 1, 2], False),  # already in order
        (["c", "c", "a", "a", "a", "b"], [1, 2, 1, 2, 3, 1], False),  # whole files swapped
        (["b", "a", "b", "a"], [1, 1, 2, 2], True),  # a file's rows split
        (["a", "a", "b"], [2, 1, 1], True),  # lines out of order within a file
    ],
)
def test_rows_are_put_in_landing_order(files, lines, sorted_fully, monkeypatch):
    """Check the landing-order step: runs of whole files are reordered, others sorted.

    A scan of bronze may list its Delta files newest first; dedupe keeps the first
    occurrence in landing order, so the order must be (file, line) either way.
    """
    df = pl.DataFrame({"_source_file": files, "_line": lines, "v": range(len(files))})
    sorts = []
    real_sort = pl.DataFrame.sort
    monkeypatch.setattr(
        pl.DataFrame, "sort", lambda self, *a, **k: sorts.append(a) or real_sort(self, *a, **k)
    )
    out = silver._in_landing_order(df)
    assert out.equals(real_sort(df, "_source_file", "_line"))
    assert (("_source_file", "_line") in sorts) == sorted_fully
