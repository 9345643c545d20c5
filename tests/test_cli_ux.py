"""Tests of the command line's first hour (issue 17): version, pipes, errors that say
what to do, readable summaries, and `hortus models compare`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import polars as pl
import pytest

from conftest import event, write_jsonl
from hortus.cli._common import shorten
from hortus.cli.core import main
from hortus.models.registry import Registry
from test_registry import _register, acting_as


@pytest.fixture
def registry(lakehouse, monkeypatch) -> Registry:
    """Return a registry of the model `recommender` acting as mia (as test_registry's)."""
    monkeypatch.setenv("HORTUS_USER", "mia")
    return acting_as(Registry(lakehouse, "recommender"), "mia")


def _hortus() -> str:
    return shutil.which("hortus") or str(Path(sys.executable).with_name("hortus"))


# ------------------------------------------------------------------- version
def test_version_comes_from_the_package_metadata(capsys):
    """Check that `hortus --version` prints the installed package's version and exits 0."""
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"hortus {version('hortus')}"


# ---------------------------------------------------------------- broken pipe
def test_piping_into_head_ends_without_a_traceback(project):
    """Check that `hortus ... | head -1` exits 0 and prints no traceback (closed pipe)."""
    cmd = f"'{_hortus()}' --root '{project.root}' catalog list | head -1"
    run = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120
    )
    assert run.stdout.startswith("table"), run.stderr
    assert "Traceback" not in run.stderr and "BrokenPipeError" not in run.stderr
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize(
    "args", [["catalog", "list"], ["catalog", "list", "--json"], ["--help"]], ids=" ".join
)
def test_a_reader_gone_before_any_output_is_not_an_error(project, args):
    """Check a pipe whose reader closed before the command wrote: exit 0, stderr clean.

    The read end is closed before the command even starts writing, so every write
    (and the interpreter's last flush) meets a closed pipe, whatever the output size.
    """
    proc = subprocess.Popen(
        [_hortus(), "--root", str(project.root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err


# ------------------------------------------------------------ readable output
def test_shorten_cuts_at_a_word_boundary():
    """Check that descriptions are cut between words and end in an ellipsis."""
    text = "One row per landing file seen by ingest, accepted or refused, with its reason"
    cut = shorten(text, 40)
    assert len(cut) <= 40 and cut.endswith("…")
    assert text.startswith(cut[:-1]) and text[len(cut) - 1] in " ,"
    assert shorten("short", 40) == "short"


def test_catalog_list_keeps_words_whole(project, capsys, monkeypatch):
    """Check that `catalog list` at 80 columns never ends a description mid-word."""
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["--root", str(project.root), "catalog", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["table", "version", "owner", "description"]
    for line in lines[1:]:
        assert len(line) <= 80
        last = line.split()[-1]
        assert last.endswith("…") or line.endswith((".", ")")) or last.isalpha(), line


def test_catalog_show_prints_tables_not_markdown(project, capsys):
    """Check that `catalog show` draws tables (no raw `|---|` markdown)."""
    assert main(["--root", str(project.root), "catalog", "show", "silver.events"]) == 0
    out = capsys.readouterr().out
    assert "|---" not in out and "| `" not in out
    assert "event_id" in out and "primary key" in out and "not built yet" in out


# ----------------------------------------------------------- quarantine errors
@pytest.fixture
def quarantined(project, capsys):
    """A project whose silver stage quarantined a malformed JSON line and a duplicate."""
    (project.root / "params.yaml").write_text("ingest: {}\nsilver: {}\n")
    write_jsonl(
        project.data / "events/events-2025-03-01.jsonl.gz", [event(1), '{"broken', event(1)]
    )
    assert main(["--root", str(project.root), "ingest"]) == 0
    assert main(["--root", str(project.root), "silver"]) == 0
    capsys.readouterr()
    return project


def test_quarantine_refuses_an_unknown_rule_listing_the_valid_ones(quarantined, capsys):
    """Check that `--rule jsn` is refused (exit 2) with a suggestion and the valid rules."""
    root = ["--root", str(quarantined.root)]
    assert main([*root, "quarantine", "--rule", "jsn"]) == 2
    err = capsys.readouterr().err
    assert "unknown rule" in err and "did you mean 'json'" in err
    assert "duplicate" in err and "required" in err and "Traceback" not in err
    assert main([*root, "quarantine", "--rule", "json"]) == 0
    assert "rule json" in capsys.readouterr().out


def test_quarantine_refuses_an_unknown_table_or_column(quarantined, capsys):
    """Check unknown --table and --column values are refused with the valid ones listed."""
    root = ["--root", str(quarantined.root)]
    assert main([*root, "quarantine", "--table", "silver.event"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'silver.events'" in err and "silver.users" in err
    assert main([*root, "quarantine", "--table", "silver.events", "--column", "evnt_id"]) == 2
    assert "event_id" in capsys.readouterr().err
    assert main([*root, "quarantine", "--rule", "encoding"]) == 0
    assert "no quarantined rows for rule encoding" in capsys.readouterr().err


# -------------------------------------------------------------- denial hints
def test_a_denial_names_who_may_and_how_to_act_as_one(quarantined, capsys, monkeypatch):
    """Check that a denied command names the users allowed and the HORTUS_USER= line."""
    monkeypatch.setenv("HORTUS_USER", "alex")
    assert main(["--root", str(quarantined.root), "quarantine"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hortus: error: access denied: user 'alex'")
    assert "dana (data-engineers)" in err
    assert f"HORTUS_USER=dana hortus --root {quarantined.root} quarantine" in err
    assert "sam" not in err  # only users who may


def test_a_user_not_in_the_policy_gets_one_hint_to_set_hortus_user(
    quarantined, capsys, monkeypatch
):
    """Check that an unknown identity gets one hint: set HORTUS_USER (with the users)."""
    monkeypatch.setenv("HORTUS_USER", "root")
    assert main(["--root", str(quarantined.root), "quarantine"]) == 2
    err = capsys.readouterr().err
    assert err.count("hortus: error:") == 1
    assert "'root', who is not in access_policy.yaml" in err
    assert "set HORTUS_USER" in err and "export HORTUS_USER=dana" in err
    assert "dana (data-engineers)" in err


def test_four_eyes_denial_names_other_approvers(registry, tmp_path, capsys, monkeypatch):
    """Check that an author approving their own version is told who else may approve."""
    _register(registry, tmp_path, 1)  # authored by mia
    root = str(registry._lh.paths.root)
    olivia = acting_as(registry, "olivia")
    _register(olivia, tmp_path, 2)
    monkeypatch.setenv("HORTUS_USER", "olivia")
    assert main(["--root", root, "models", "approve", "2"]) == 2
    err = capsys.readouterr().err
    assert "four-eyes" in err
    assert "paula (approvers)" in err and "olivia (" not in err.split("hint:")[1]
    assert f"HORTUS_USER=paula hortus --root {root} models approve 2" in err


# ---------------------------------------------------------------- models show
def test_models_show_is_a_summary_with_full_and_json_for_everything(registry, tmp_path, capsys):
    """Check `models show` prints a short summary; --full and --json print everything."""
    _register(registry, tmp_path, 1)
    root = ["--root", str(registry._lh.paths.root)]
    assert main([*root, "models", "show", "1"]) == 0
    summary = capsys.readouterr().out
    assert "model recommender v1" in summary and "roc_auc" in summary
    assert "hortus models show 1 --full" in summary
    assert len(summary.splitlines()) < 30
    assert main([*root, "models", "show", "1", "--full"]) == 0
    full = capsys.readouterr().out
    assert "receipt:" in full and "signature:" in full
    assert main([*root, "models", "show", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["signature"]


# ------------------------------------------------------------- models compare
def _gate(reg, version: int, folder: Path, *, shift: float, latency: float, passed=True):
    """Record a gate run with a segment table and efficiency figures for a version."""
    from hortus.checks.gate import GateResult, record
    from hortus.checks.model_checks import CheckResult

    segments = pl.DataFrame(
        {
            "segment": ["region", "region"],
            "value": ["DACH", "UKI"],
            "estimate": [0.80 + shift, 0.70 + shift],
            "ci_low": [0.75 + shift, 0.60 + shift],
            "ci_high": [0.85 + shift, 0.78 + shift],
            "n": [500, 300],
            "status": ["ok", "ok"],
        }
    )
    checks = [
        CheckResult(
            "segment_metrics_ci",
            True,
            0.7,
            0.65,
            "per segment",
            table=segments,
            stats={"metric": "roc_auc"},
        ),  # fmt: skip
        CheckResult(
            "efficiency",
            True,
            0.0,
            1.0,
            "timed",
            stats={
                "model_bytes": 1000 * version,
                "row_p99_ms": latency,
                "batch_p99_ms": latency / 10,
            },
        ),  # fmt: skip
        CheckResult("behavioural", passed, 0.0, 0.1, "invariance"),
    ]
    now = datetime.now(UTC)
    result = GateResult(reg.name, version, checks, started_at=now, finished_at=now)
    record(reg, result, folder, git_commit="c0ffee")


@pytest.fixture
def two(registry, tmp_path):
    """A registry with two gated versions that differ in params, data and speed."""
    _register(registry, tmp_path, 1)
    _register(registry, tmp_path, 2)
    folder = tmp_path / "gate"
    _gate(registry, 1, folder, shift=0.0, latency=5.0)
    _gate(registry, 2, folder, shift=0.05, latency=8.0, passed=False)
    registry.promote(1, alias="challenger")
    return registry


def test_models_compare_json_lists_what_differs(two, capsys):
    """Check the comparison: params that differ, best metric, intervals, gates, data, speed."""
    root = ["--root", str(two._lh.paths.root)]
    assert main([*root, "models", "compare", "challenger", "2", "--json"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    assert cmp["versions"] == [1, 2]
    assert cmp["labels"] == ["v1 (challenger)", "v2"]
    assert cmp["params"] == [{"name": "C", "values": [1.0, 2.0]}]  # seed is equal
    auc = next(m for m in cmp["metrics"] if m["name"] == "roc_auc")
    assert auc["values"] == pytest.approx([0.71, 0.72]) and auc["best"] == 1
    dach = next(s for s in cmp["segments"] if s["value"] == "DACH")
    assert dach["values"][0] == {"estimate": 0.8, "low": 0.75, "high": 0.85, "n": 500,
                                 "status": "ok"}  # fmt: skip
    assert dach["values"][1]["estimate"] == pytest.approx(0.85)
    assert cmp["segment_metric"] == "roc_auc"
    assert [r["passed"] for r in cmp["gate_runs"]] == [True, False]
    behaviour = next(g for g in cmp["gates"] if g["check"] == "behavioural")
    assert [v["passed"] for v in behaviour["values"]] == [True, False]
    tables = next(d for d in cmp["data"] if d["name"].startswith("gold.training_set"))
    assert tables["values"] == [1, 2] and tables["differ"]
    p99 = next(e for e in cmp["efficiency"] if e["name"] == "row_p99_ms")
    assert p99["values"] == [5.0, 8.0] and p99["best"] == 0


def test_models_compare_prints_tables_and_writes_a_page(two, capsys, tmp_path):
    """Check the terminal tables and the offline HTML page with its charts."""
    root = ["--root", str(two._lh.paths.root)]
    page = tmp_path / "site" / "compare.html"
    assert main([*root, "models", "compare", "1", "2", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    for title in ("params that differ", "metrics (hold-out, overall)", "roc_auc per segment",
                  "gate (latest run", "data and build", "size and latency"):  # fmt: skip
        assert title in out
    assert "region = DACH" in out and "0.8 [0.75, 0.85]" in out and "FAIL" in out
    html = page.read_text()
    assert html.count("<svg") == 2 and "<script" not in html
    assert "region = DACH" in html and "v1 (challenger)" in html


def test_models_compare_needs_two_distinct_versions(two, capsys):
    """Check that one version, or the same version twice, is a clear error (exit 2)."""
    root = ["--root", str(two._lh.paths.root)]
    assert main([*root, "models", "compare", "1"]) == 2
    assert "at least two versions" in capsys.readouterr().err
    assert main([*root, "models", "compare", "1", "challenger"]) == 2
    assert "same version more than once" in capsys.readouterr().err
    assert main([*root, "models", "compare", "1", "9"]) == 2
    assert "no version 9" in capsys.readouterr().err


def test_models_list_shows_the_latest_gate_and_how_to_compare(two, capsys):
    """Check that `models list` shows each version's latest gate verdict and the compare hint."""
    assert main(["--root", str(two._lh.paths.root), "models", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "gate" in out[0].split()
    assert "passed" in out[1] and "FAILED (1)" in out[2]
    assert out[-1] == "side by side: hortus models compare 1 2"


def test_models_compare_without_versions_takes_the_two_newest(two, capsys):
    """Check the default pair without a champion: the two newest versions."""
    root = ["--root", str(two._lh.paths.root)]
    assert main([*root, "models", "compare", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["versions"] == [1, 2]
    _register(two, Path(two._lh.paths.root) / "more", 3)
    _gate(two, 3, Path(two._lh.paths.root) / "gate3", shift=0.0, latency=5.0)
    assert main([*root, "models", "compare", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["versions"] == [2, 3]
