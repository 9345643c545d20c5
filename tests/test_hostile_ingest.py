"""Hostile landing files and bad settings (issue 18 items 1, 2, 8, 10).

Each test repeats a probe that broke ingest: a gzip bomb, a flood of blank lines, a
line of megabytes, a CSV row with one field too many or an unclosed quote, a file
whose reader raises, a crash between the bronze and file-log commits, a link out of
data/, and params.yaml values of the wrong type.  Every case keeps the books:
landed = accepted + quarantined, refused files recorded once with their reason.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import polars as pl
import pytest
import yaml

from conftest import USERS_HEADER, event, user_row, write_jsonl
from hortus.lakehouse import silver
from hortus.lakehouse.ingest import FILES_TABLE, ingest
from hortus.lakehouse.landing import IngestLimits
from hortus.lakehouse.silver import QUARANTINE, SilverOptions

KB = 1024
SMALL = IngestLimits(max_file_bytes=1024 * KB, max_line_bytes=4 * KB)  # 1 MiB, 4 KiB


def _reasons(report) -> dict[str, str]:
    return {f.source_file: f.reason for f in report.refused}


def _log(lh) -> pl.DataFrame:
    return lh.read(FILES_TABLE).sort("source_file")


def _silver(lh) -> list[dict]:
    silver.build(lh, SilverOptions(key=b"test-only-key"))
    checks = silver.reconcile(lh)
    assert all(c["reconciles"] for c in checks), checks  # landed = accepted + quarantined
    return checks


def _users(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(USERS_HEADER + "\n" + body)
    return path


# ------------------------------------------------------------ 1. bounded memory
def test_gzip_bomb_is_refused_at_the_cap_and_the_rest_lands(project, lakehouse):
    """Check that a small gzip expanding past max_file_mb is refused, named, recorded once."""
    line = b'{"event_id": "e1", "event_type": "view"}\n'
    bomb = gzip.compress(line * (3 * 1024 * KB // len(line)), mtime=0)  # 3 MiB of lines
    assert len(bomb) < 64 * KB
    (project.data / "events").mkdir()
    (project.data / "events/events-2025-03-02.jsonl.gz").write_bytes(bomb)
    write_jsonl(project.data / "events/events-2025-03-01.jsonl.gz", [event(i) for i in range(3)])
    report = ingest(project.data, lakehouse, limits=SMALL)
    reason = _reasons(report)["events/events-2025-03-02.jsonl.gz"]
    assert reason.startswith("too_large: ") and "1 MiB" in reason and "max_file_mb" in reason
    assert report.rows_by_table() == {"silver.events": 3}
    log = _log(lakehouse)
    assert log.filter(pl.col("status") == "refused")["reason"].to_list() == [reason]
    assert ingest(project.data, lakehouse, limits=SMALL).files == []  # recorded: not again


def test_probe_bombs_stop_at_the_compression_ratio_cap(project, lakehouse):
    """Check the probe's 19 KB gzip of 20 million blank lines and a line bomb: both refused.

    With the default caps they stop at 16 MiB decompressed (100x their size is less),
    not at max_file_mb, and no row of theirs lands.
    """
    (project.data / "events").mkdir()
    blank = gzip.compress(b"\n" * 20_000_000, compresslevel=9, mtime=0)
    assert len(blank) < 25 * KB
    (project.data / "events/events-2025-03-01.jsonl.gz").write_bytes(blank)
    line = json.dumps(event(1)).encode() + b"\n"  # keys right: not refused as changed_schema
    lines = gzip.compress(line * (24 * 1024 * KB // len(line)), compresslevel=1, mtime=0)
    (project.data / "events/events-2025-03-02.jsonl.gz").write_bytes(lines)
    report = ingest(project.data, lakehouse)
    reasons = _reasons(report)
    assert sorted(reasons) == ["events/events-2025-03-01.jsonl.gz",
                               "events/events-2025-03-02.jsonl.gz"]  # fmt: skip
    for reason in reasons.values():
        assert reason.startswith("too_large: ")
        assert "more than 100x its compressed size (ingest.max_ratio)" in reason
    assert not lakehouse.exists("bronze.events")


def test_ingest_stage_takes_its_caps_from_params(project):
    """Check that params.yaml ingest.max_file_mb / max_line_kb reach the reader."""
    from hortus.pipeline import stages

    write_jsonl(project.data / "events/events-2025-03-01.jsonl", [event(1), "x" * 3000])
    summary = stages.ingest(project, {"max_line_kb": 2})
    (refused,) = summary["refused"]
    assert refused["reason"].startswith("line_too_long: ")
    assert "line 2 is 3,000 bytes" in refused["reason"] and "max_line_kb" in refused["reason"]


def test_blank_lines_are_skipped_and_counted(project, lakehouse):
    """Check that blank lines land nothing: 200k of them are counted, not 200k bronze rows."""
    rows = [b""] * 100_000 + [event(1), b"   ", event(2)] + [b"\r"] * 100_000
    write_jsonl(project.data / "events/events-2025-03-01.jsonl.gz", rows)
    (project.data / "events/events-2025-03-02.jsonl.gz").write_bytes(
        gzip.compress(b"\n" * 1_000_000, mtime=0)  # only blank lines
    )
    report = ingest(project.data, lakehouse)
    assert report.rows_by_table() == {"silver.events": 2}
    assert report.to_dict()["blank_lines_skipped"] == 200_001 + 1_000_000
    reason = _reasons(report)["events/events-2025-03-02.jsonl.gz"]
    assert reason == (
        "empty_file: events/events-2025-03-02.jsonl.gz has no data rows "
        "(1000000 blank line(s) skipped)"
    )
    bronze = lakehouse.read("bronze.events")
    assert bronze["_line"].to_list() == [100_001, 100_003]  # lines of the file, blanks counted
    assert any("200001 blank line(s) skipped" in w for w in report.to_dict()["warnings"])
    _silver(lakehouse)


def test_a_line_over_the_cap_is_refused_without_reading_on(project, lakehouse):
    """Check that one huge line (JSON or CSV) refuses its file, naming the line."""
    huge = event(2, order_id="o" * 20_000)
    write_jsonl(project.data / "events/events-2025-03-01.jsonl.gz", [event(1), huge, event(3)])
    _users(project.data / "users/users-2025-03-01.csv", user_row(1, name="x" * 9000) + "\n")
    _users(project.data / "users/users-2025-03-02.csv", user_row(2) + "\n")
    report = ingest(project.data, lakehouse, limits=SMALL)
    reasons = _reasons(report)
    assert reasons["events/events-2025-03-01.jsonl.gz"].startswith(
        "line_too_long: events/events-2025-03-01.jsonl.gz: line 2 is 20,"
    )
    assert reasons["users/users-2025-03-01.csv"].startswith(
        "line_too_long: users/users-2025-03-01.csv: line 2 is 9,"
    )
    assert report.rows_by_table() == {"silver.users": 1}


def test_caps_also_hold_in_a_stream_longer_than_one_chunk(project, lakehouse, monkeypatch):
    """Check the cut between chunks: lines across a chunk boundary keep their numbers."""
    from hortus.lakehouse import landing

    monkeypatch.setattr(landing, "CHUNK_BYTES", 64)  # many chunks, lines cut across them
    rows = [event(i) for i in range(50)] + [b""] * 7 + [event(50)]
    write_jsonl(project.data / "events/events-2025-03-01.jsonl.gz", rows)
    report = ingest(project.data, lakehouse)
    assert report.rows_by_table() == {"silver.events": 51}
    bronze = lakehouse.read("bronze.events").sort("_line")
    assert bronze["_line"].to_list() == [*range(1, 51), 58]
    assert bronze["_raw"].str.json_decode()[-1]["event_id"] == event(50)["event_id"]


# ---------------------------------------------- 2. one bad file never stops the run
def test_csv_row_with_an_extra_field_is_quarantined_and_the_rest_lands(project, lakehouse):
    """Check that a users row with one field too many is quarantined (rule csv, its line)."""
    rows = [user_row(1), user_row(2) + ",surplus", user_row(3)]
    _users(project.data / "users/users-2025-03-01.csv", "\n".join(rows) + "\n")
    write_jsonl(project.data / "events/events-2025-03-01.jsonl", [event(1)])
    report = ingest(project.data, lakehouse)
    assert report.refused == []
    assert report.rows_by_table() == {"silver.users": 3, "silver.events": 1}
    _silver(lakehouse)
    (q,) = lakehouse.read(QUARANTINE).filter(pl.col("table") == "silver.users").to_dicts()
    assert (q["source_file"], q["line"], q["rule"]) == ("users/users-2025-03-01.csv", 3, "csv")
    assert "12 fields, expected 11" in q["message"] and q["raw"].endswith(",surplus")
    assert sorted(lakehouse.read("silver.users")["_line"].to_list()) == [2, 4]


def test_csv_unclosed_quote_costs_one_row_not_the_file(project, lakehouse):
    """Check that an unclosed quote quarantines its own line and the later rows land."""
    rows = [user_row(1), user_row(2, name='"Jane unclosed'), user_row(3), user_row(4)]
    _users(project.data / "users/users-2025-03-01.csv", "\n".join(rows) + "\n")
    report = ingest(project.data, lakehouse)
    assert report.refused == [] and report.rows_by_table() == {"silver.users": 4}
    _silver(lakehouse)
    (q,) = lakehouse.read(QUARANTINE).to_dicts()
    assert (q["line"], q["rule"]) == (3, "csv") and "bad quoting" in q["message"]
    assert sorted(lakehouse.read("silver.users")["_line"].to_list()) == [2, 4, 5]


def test_line_numbers_stay_right_after_a_quoted_newline(project, lakehouse):
    """Check that `_line` is the line where a row starts, past a field holding a newline."""
    rows = [
        user_row(1, address='"1 High St\nLondon"'),
        user_row(2, address='"2 Low St\r\nLeeds\nUK"'),
        user_row(3, country="XX"),  # breaks a rule: quarantined with its real line
    ]
    _users(project.data / "users/users-2025-03-01.csv", "\n".join(rows) + "\n")
    ingest(project.data, lakehouse)
    assert lakehouse.read("bronze.users").sort("_line")["_line"].to_list() == [2, 4, 7]
    _silver(lakehouse)
    (q,) = lakehouse.read(QUARANTINE).to_dicts()
    assert (q["line"], q["rule"], q["column"]) == (7, "allowed", "country")


@pytest.mark.parametrize("seed", range(60))
def test_csv_fast_and_exact_parsers_agree(seed, monkeypatch):
    """Check the vectorised CSV parse against Python's csv (strict) on random messy files."""
    import random

    from hortus.lakehouse import _landing_csv as parser

    monkeypatch.setattr(parser, "_BATCH_ROWS", 3)  # rows become frames in several batches
    rng = random.Random(seed)
    cells = ["a", "b c", '"q,1"', '"q\n2"', '""', "", '"x""y"', "  ", "é", '"open', 'x"y',
             '"a"b', "\r"]  # fmt: skip
    lines = ["h1,h2,h3"]
    for _ in range(rng.randint(0, 12)):
        if rng.random() < 0.15:
            lines.append(rng.choice(["", " ", "\r"]))
        else:
            lines.append(",".join(rng.choice(cells) for _ in range(rng.choice([3, 3, 3, 2, 4]))))
    payload = ("\n".join(lines) + rng.choice(["", "\n", "\r\n"])).encode()
    fast = parser._parse_fast(payload)
    exact = parser._parse_exact(payload, 1 << 20)
    if fast is not None:  # (an empty field may read as "" or null: silver nulls both)

        def rows(good):
            return good.with_columns(pl.col(pl.String).replace("", None)).rows()

        assert rows(fast.good) == rows(exact.good)
        assert fast.bad["_line"].to_list() == exact.bad["_line"].to_list()
        assert fast.blank == exact.blank
    else:  # what the fast path gave up on: at most one verdict per physical line
        physical = payload.rstrip(b"\n").count(b"\n") + 1
        assert exact.good.height + exact.bad.height + exact.blank <= physical - 1


@pytest.mark.parametrize("extra", ["", "\n", ',"x""q"'])
def test_csv_with_a_byte_order_mark_lands_on_both_paths(project, lakehouse, extra):
    """Check that a UTF-8 BOM (spreadsheet exports) is not part of the first column's name."""
    header = USERS_HEADER + (",note" if extra.startswith(",") else "")
    row = user_row(1) + extra if extra.startswith(",") else user_row(1)
    odd = "\n" + user_row(2, name='"open') if extra == "\n" else ""  # exact path
    path = project.data / "users/users-2025-03-01.csv"
    path.parent.mkdir()
    path.write_bytes(("\ufeff" + header + "\n" + row + odd + "\n").encode())
    report = ingest(project.data, lakehouse)
    assert report.refused == []
    assert lakehouse.read("bronze.users")["user_id"].to_list()[0] == "u000001"


def test_csv_that_cannot_be_parsed_at_all_is_refused_and_recorded(project, lakehouse):
    """Check that a CSV with no readable row is refused (unparseable) and others land."""
    _users(project.data / "users/users-2025-03-01.csv", "a,b\nc,d,e\n")  # no row fits
    (project.data / "users/users-2025-03-02.csv").write_text('"user_id,name\n1,2\n')
    _users(project.data / "users/users-2025-03-03.csv", user_row(1) + "\n")
    report = ingest(project.data, lakehouse)
    reasons = _reasons(report)
    assert reasons["users/users-2025-03-01.csv"].startswith("unparseable: ")
    assert "no row can be read (2 malformed" in reasons["users/users-2025-03-01.csv"]
    assert reasons["users/users-2025-03-02.csv"].startswith("unparseable: ")
    assert "header row cannot be read" in reasons["users/users-2025-03-02.csv"]
    assert report.rows_by_table() == {"silver.users": 1}
    assert _log(lakehouse)["status"].to_list() == ["refused", "refused", "accepted"]


def test_an_unexpected_error_reading_one_file_refuses_that_file_only(
    project, lakehouse, monkeypatch
):
    """Check that any exception while reading a file refuses it with the error, not the run."""
    from hortus.lakehouse import landing

    real = landing._read_jsonl

    def flaky(path, rel, *args):
        if rel.endswith("03-02.jsonl"):
            raise RuntimeError("disk hiccup")
        return real(path, rel, *args)

    monkeypatch.setattr(landing, "_read_jsonl", flaky)
    write_jsonl(project.data / "events/events-2025-03-01.jsonl", [event(1)])
    write_jsonl(project.data / "events/events-2025-03-02.jsonl", [event(2)])
    report = ingest(project.data, lakehouse)
    assert _reasons(report) == {
        "events/events-2025-03-02.jsonl": (
            "read_error: events/events-2025-03-02.jsonl: RuntimeError: disk hiccup"
        )
    }
    assert report.rows_by_table() == {"silver.events": 1}


def test_a_file_that_cannot_be_read_is_refused_alone(project, lakehouse, monkeypatch):
    """Check that a file whose bytes cannot be read (permissions, vanished) is refused alone."""
    from hortus.lakehouse import ingest as ingest_module
    from hortus.lakehouse import landing

    real_sha, real_stream = landing.file_sha256_of, landing.stream_file

    def denied(path):
        if path.name.endswith("03-02.jsonl"):
            raise PermissionError(13, "Permission denied")

    def sha(path):
        denied(path)
        return real_sha(path)

    def stream(path, *args):
        denied(path)
        yield from real_stream(path, *args)

    monkeypatch.setattr(ingest_module, "file_sha256_of", sha)
    monkeypatch.setattr(landing, "stream_file", stream)
    write_jsonl(project.data / "events/events-2025-03-01.jsonl", [event(1)])
    write_jsonl(project.data / "events/events-2025-03-02.jsonl", [event(2)])
    report = ingest(project.data, lakehouse)
    (refused,) = report.refused
    assert refused.source_file == "events/events-2025-03-02.jsonl"
    assert refused.reason.startswith("read_error: ") and "Permission denied" in refused.reason
    assert report.rows_by_table() == {"silver.events": 1}
    assert ingest(project.data, lakehouse).files == []  # recorded once while it stays so


def test_watch_keeps_going_after_a_bad_csv(project):
    """Check that `watch` runs on after a file that used to fail three batches in a row."""
    from hortus.monitoring.watch import watch

    rows = [user_row(1), user_row(2) + ",x,y", user_row(3, name='"open')]
    _users(project.data / "users/users-2025-03-01.csv", "\n".join(rows) + "\n")
    write_jsonl(project.data / "events/events-2025-03-01.jsonl", [event(1)])
    (results := watch(project, interval=0.05, max_batches=1))  # raised WatchError before
    (batch,) = results
    assert batch.error is None and batch.reconciles
    assert (batch.rows_landed, batch.rows_accepted, batch.rows_quarantined) == (4, 2, 2)


# ----------------------------------------------------- 8. crash between commits
def test_files_landed_by_a_run_killed_before_its_file_log_are_recorded_next_run(
    project, lakehouse, monkeypatch
):
    """Check that a crash after the bronze commit, before the file log, is reconciled."""
    from hortus.lakehouse import ingest as ingest_module

    for d in (1, 2):
        write_jsonl(project.data / f"events/events-2025-03-0{d}.jsonl.gz", [event(d * 10 + i)
                    for i in range(d + 1)])  # fmt: skip
    (project.data / "events/events-2025-03-03.jsonl").write_bytes(b"")  # refused

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed between the bronze and the file-log commits")

    with monkeypatch.context() as m:
        m.setattr(ingest_module, "_files_frame", killed)
        with pytest.raises(KeyboardInterrupt):
            ingest(project.data, lakehouse)
    assert lakehouse.read("bronze.events").height == 5 and not lakehouse.exists(FILES_TABLE)
    write_jsonl(project.data / "events/events-2025-03-04.jsonl", [event(99)])
    report = ingest(project.data, lakehouse)
    assert [f.source_file for f in report.recorded_late] == [
        "events/events-2025-03-01.jsonl.gz",
        "events/events-2025-03-02.jsonl.gz",
    ]
    log = _log(lakehouse)
    names = [f"events/events-2025-03-0{d}.jsonl{z}" for d, z in ((1, ".gz"), (2, ".gz"))]
    assert log["source_file"].to_list() == [*names, *(f"events/events-2025-03-0{d}.jsonl"
                                                      for d in (3, 4))]  # fmt: skip
    assert log["status"].to_list() == ["accepted", "accepted", "refused", "accepted"]
    assert log["rows"].to_list() == [2, 3, 0, 1]
    bronze = lakehouse.read("bronze.events")
    first = log.filter(pl.col("source_file").str.contains("03-01"))["batch_id"].item()
    assert first == bronze.filter(pl.col("_source_file").str.contains("03-01"))["_batch_id"][0]
    assert bronze.height == 6 and bronze["_raw"].n_unique() == 6  # nothing landed twice
    assert log.select("source_file", "file_sha256").is_duplicated().sum() == 0
    assert ingest(project.data, lakehouse).recorded_late == []


def test_an_ingest_killed_by_sigkill_between_the_commits_is_reconciled(project, lakehouse):
    """Check the probe's case with a real kill -9 of an ingest process after its bronze commit."""
    import subprocess
    import sys

    for d in range(1, 4):
        write_jsonl(project.data / f"events/events-2025-03-0{d}.jsonl.gz", [event(d * 10 + i)
                    for i in range(d)])  # fmt: skip
    child = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from hortus.config import Paths\n"
        "from hortus.lakehouse import ingest as m\n"
        "from hortus.lakehouse.catalog import Catalog\n"
        "from hortus.lakehouse.tables import Lakehouse\n"
        "m._files_frame = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        "root = Path(sys.argv[1])\n"
        "lh = Lakehouse(paths=Paths.at(root), catalog=Catalog.load(), stage='test')\n"
        "m.ingest(root / 'data', lh)\n"
    )
    done = subprocess.run([sys.executable, "-c", child, str(project.root)], cwd=project.root,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == -9, done.stderr
    assert lakehouse.read("bronze.events").height == 6 and not lakehouse.exists(FILES_TABLE)
    report = ingest(project.data, lakehouse)
    assert len(report.recorded_late) == 3 and report.files == []
    log = _log(lakehouse)
    assert log["rows"].to_list() == [1, 2, 3] and set(log["status"]) == {"accepted"}
    assert lakehouse.read("bronze.events").height == 6


# ------------------------------------------------- 10. links and bad settings
def test_a_link_out_of_data_is_refused_unread_and_recorded(project, lakehouse, tmp_path):
    """Check that a symlink under data/ to a file outside it (/etc/passwd) is refused."""
    secret = tmp_path / "outside" / "passwd"
    secret.parent.mkdir()
    secret.write_text(USERS_HEADER + "\n" + user_row(666) + "\n")
    (secret.parent / "plants-2025-03-01.csv").write_text("plant_id\np0001\n")
    (project.data / "users").mkdir()
    os.symlink(secret, project.data / "users/users-2025-03-01.csv")
    os.symlink(secret.parent, project.data / "plants")  # a linked folder too
    inside = _users(project.data / "users/users-2025-03-02.csv", user_row(1) + "\n")
    os.symlink(inside, project.data / "users/users-2025-03-03.csv")  # inside data/: fine
    report = ingest(project.data, lakehouse)
    reasons = _reasons(report)
    assert reasons["users/users-2025-03-01.csv"] == (
        f"outside_landing: users/users-2025-03-01.csv is a link to {secret.resolve()}, "
        f"outside {project.data.resolve()}"
    )
    assert reasons["plants/plants-2025-03-01.csv"].startswith("outside_landing: ")
    assert lakehouse.read("bronze.users")["user_id"].to_list() == ["u000001", "u000001"]
    assert ingest(project.data, lakehouse).files == []  # recorded once


def test_watch_refuses_a_link_out_of_data_too(project, tmp_path):
    """Check that the watcher (which stages files as links) still refuses such a link."""
    from hortus.monitoring.watch import watch

    secret = tmp_path / "passwd"
    secret.write_text(USERS_HEADER + "\n" + user_row(666) + "\n")
    (project.data / "users").mkdir()
    os.symlink(secret, project.data / "users/users-2025-03-01.csv")
    _users(project.data / "users/users-2025-03-02.csv", user_row(1) + "\n")
    (batch,) = watch(project, interval=0.05, max_batches=1)
    assert [f for f, why in batch.refused if why.startswith("outside_landing")] == [
        "users/users-2025-03-01.csv"
    ]
    assert batch.rows_accepted == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("ingest", "flush_rows", "lots"), "ingest.flush_rows: expected int >= 1, got 'lots'"),
        (("silver", None, 5), "silver: expected a mapping of keys, got 5"),
        (("ingest", None, 7), "ingest: expected a mapping of keys, got 7"),
        (
            ("silver", "future_tolerance_minutes", "sixty"),
            "silver.future_tolerance_minutes: expected number >= 0, got 'sixty'",
        ),
        (("monitor", None, 5), "monitor: expected a mapping of keys, got 5"),
        (("alerts", None, 5), "alerts: expected a mapping of keys, got 5"),
        (("ingest", "max_file_mb", "big"), "ingest.max_file_mb: expected number > 0, got 'big'"),
    ],
)
def test_monitor_watch_names_file_key_and_expected_type(project, capsys, edit, message):
    """Check that `hortus monitor watch` refuses bad params like the stages do: exit 2."""
    from hortus.cli.core import main

    root = Path(__file__).resolve().parents[1]
    doc = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    section, key, value = edit
    if key is None:
        doc[section] = value
    else:
        doc[section][key] = value
    (project.root / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["--root", str(project.root), "monitor", "watch", "--max-batches", "1"]) == 2
    err = capsys.readouterr().err
    assert f"params.yaml: {message}" in err and "Traceback" not in err
    if section in ("monitor", "alerts"):
        assert main(["--root", str(project.root), "monitor", "run"]) == 2
        assert f"params.yaml: {message}" in capsys.readouterr().err


def test_stage_events_name_an_alerts_section_that_is_a_number(tmp_path):
    """Check that `alerts: 5` is named (file, section, expected type), not an AttributeError."""
    from hortus.errors import HortusError
    from hortus.monitoring.events import load_config

    (tmp_path / "params.yaml").write_text("alerts: 5\n")
    with pytest.raises(HortusError, match="params.yaml: alerts: expected a mapping of keys, got 5"):
        load_config(tmp_path)


@pytest.mark.slow
def test_peak_memory_of_ingest_stays_within_the_stated_bound(tmp_path):
    """Check the bound of hortus.lakehouse.landing on the probe's files (fresh processes).

    benchmarks/bench_hostile_ingest.py ingests a legitimate 200k-event file, a 1 GB gzip
    bomb of zeros and one of event lines, the 20M blank lines, a 20 MB line and a CSV
    with an unclosed quote, each in its own process, and exits non-zero if a peak RSS
    over the baseline exceeds 2x (CSV: 6x) what the caps let it read + 160 MB.
    """
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    done = subprocess.run(
        [sys.executable, "bench_hostile_ingest.py", "--events", "200000", "--users", "20000",
         "--workdir", str(tmp_path)],
        cwd=bench, env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "held in every case" in done.stdout


def test_monitor_commands_name_a_params_file_that_is_not_yaml(project, capsys):
    """Check that a params.yaml that is not YAML is named, not a yaml traceback."""
    from hortus.cli.core import main

    (project.root / "params.yaml").write_text("ingest: [1\n")
    for command in (["monitor", "watch", "--max-batches", "1"], ["monitor", "run"]):
        assert main(["--root", str(project.root), *command]) == 2
        err = capsys.readouterr().err
        assert "params.yaml: not valid YAML" in err and "Traceback" not in err
