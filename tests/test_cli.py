"""Tests of the `hortus` command line: help everywhere, clear errors, stage output."""

from __future__ import annotations

import argparse
import shutil
import subprocess

import pytest

from conftest import event, write_jsonl
from hortus.cli import build_parser, main


def _commands(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _commands(sub, (*prefix, name))


COMMANDS = list(_commands(build_parser()))


def test_cli_has_the_foundation_commands():
    """Check that the foundation's subcommands exist."""
    for cmd in [
        ("simulate",),
        ("ingest",),
        ("silver",),
        ("kpis",),
        ("docs",),
        ("catalog", "list"),
        ("catalog", "show"),
        ("data",),
        ("quarantine",),
    ]:
        assert cmd in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_subcommand_has_help(command, capsys):
    """Check that every subcommand answers --help with a usage line and exit 0."""
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: hortus" in capsys.readouterr().out


def test_console_script_is_installed():
    """Check that the `hortus` console command runs from the environment."""
    exe = shutil.which("hortus") or str(__import__("sys").executable).replace("python", "hortus")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "catalog" in out.stdout


def test_unknown_table_is_a_clear_error_with_exit_2(project, capsys):
    """Check that a user mistake prints one line naming the problem and exits 2."""
    code = main(["--root", str(project.root), "catalog", "show", "silver.nope"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("hortus: error: no table 'silver.nope'")
    assert "Traceback" not in err


def test_stage_commands_run_and_report(project, capsys):
    """Check ingest and silver stages through the CLI print counts and quarantine lines."""
    (project.root / "params.yaml").write_text("ingest: {}\nsilver: {}\nkpis: {}\ndocs: {}\n")
    write_jsonl(
        project.data / "events/events-2025-03-01.jsonl.gz", [event(1), '{"broken', event(1)]
    )
    assert main(["--root", str(project.root), "ingest"]) == 0
    assert main(["--root", str(project.root), "silver"]) == 0
    out = capsys.readouterr().out
    assert "landed         3 rows for silver.events" in out
    assert "accepted         1 + quarantined       2" in out
    assert "events/events-2025-03-01.jsonl.gz:2 column - rule json" in out
    assert "events/events-2025-03-01.jsonl.gz:3 column event_id rule duplicate" in out
    assert (project.reports / "silver.json").exists()


def test_missing_params_section_is_reported(project, capsys):
    """Check that a params.yaml without the stage's section names file and section."""
    (project.root / "params.yaml").write_text("ingest: {}\n")
    assert main(["--root", str(project.root), "kpis"]) == 2
    assert "no section 'kpis'" in capsys.readouterr().err
