"""Tests of the `hortus` command line: help everywhere, clear errors, stage output."""

from __future__ import annotations

import argparse
import shutil
import subprocess

import pytest

from conftest import event, with_policy, write_jsonl
from hortus.cli.core import build_parser, main


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


MODEL_COMMANDS = [
    ("gate",),
    ("reproduce",),
    ("train",),
    ("register",),
    ("score",),
    ("features", "build"),
    ("features", "list"),
    ("features", "lookup"),
    ("monitor", "run"),
    ("monitor", "stage"),
    ("monitor", "watch"),
    ("drift",),
    *[("models", a) for a in ("list", "show", "approve", "approvals", "promote", "rollback")],
    ("models", "aliases"),
    ("notebooks", "publish"),
]


@pytest.mark.parametrize("command", MODEL_COMMANDS, ids=" ".join)
def test_commands_acting_on_a_model_accept_model(command, capsys):
    """Check that every command acting on a model takes --model and names no model itself."""
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--model NAME" in out
    assert "recommender" not in out


def test_gate_passes_model_to_the_stage(project, monkeypatch, capsys):
    """Check that `hortus gate N --model M` gates version N of M (default: the default model)."""
    from hortus.pipeline import stages

    calls = []

    def fake_gate(paths, params, version=None, model=None):
        calls.append((version, model))
        return {"version": int(version), "passed": True, "checks": 3, "failed": 0,
                "report": "r.md", "failed_checks": [], "promoted_to_champion": False}  # fmt: skip

    monkeypatch.setattr(stages, "gate", fake_gate)
    (project.root / "params.yaml").write_text("gate: {}\n")
    root = str(project.root)
    assert main(["--root", root, "gate", "2", "--model", "other"]) == 0
    assert main(["--root", root, "gate", "3"]) == 0
    assert calls == [("2", "other"), ("3", "recommender")]  # the plant shop's default model
    assert "gate other v2: PASSED" in capsys.readouterr().out


@pytest.fixture
def online(shop, tmp_path):
    """Return a project root whose online store holds the shop's features."""
    from datetime import timedelta

    import polars as pl

    from hortus.config import Paths
    from hortus.domains.plantshop.features import FEATURES
    from hortus.features import store as fsm

    with_policy(tmp_path)  # lookups go through the access policy (features/online.py)
    paths = Paths.at(tmp_path)
    end = shop.scan("silver.events").select(pl.col("ts").max()).collect().item()
    store = fsm.OnlineStore(paths.online_store, FEATURES)
    contracts = {c.full_name: c for c in shop.catalog}
    store.materialize(fsm.read_logs(shop, FEATURES), end + timedelta(microseconds=1), contracts)
    store.close()
    keys = shop.read("silver.events").drop_nulls(["user_id", "plant_id"]).row(0, named=True)
    return paths, keys["user_id"], keys["plant_id"]


def test_features_lookup_takes_entity_keys_and_refuses_unknown_ones(online, capsys):
    """Check `features lookup --key COL=VALUE`: a vector for known keys, a clear error else."""
    import json

    paths, user, plant = online
    base = ["--root", str(paths.root), "features", "lookup"]
    assert main([*base, "--key", f"user_id={user}", "--key", f"plant_id={plant}", "--json"]) == 0
    vec = json.loads(capsys.readouterr().out)["features"]
    assert len(vec) == 50
    assert main([*base, "--key", f"user_id={user}", "--key", "item=p1"]) == 2
    err = capsys.readouterr().err
    assert "--key item: not an entity column of the feature set" in err
    assert "user_id" in err and "plant_id" in err and "Traceback" not in err
    assert main([*base, "--key", f"user_id={user}"]) == 2
    assert "needs --key for plant_id" in capsys.readouterr().err
    assert main([*base, "--key", f"user_id={user}", "--key", "plant_id"]) == 2
    assert "expected COLUMN=VALUE" in capsys.readouterr().err
    assert main([*base, "--key", f"user_id={user}", "--key", f"plant_id={plant}",
                 "--model", "nope"]) == 2  # fmt: skip
    assert "no model 'nope'" in capsys.readouterr().err


def test_simulate_refuses_a_project_without_simulator(tmp_path, capsys):
    """Check that `hortus simulate` names the missing `simulator` key of hortus.yaml."""
    (tmp_path / "hortus.yaml").write_text(
        "name: loans\ncontracts: contracts.yaml\n"
        "models:\n  approve:\n    task: binary\n    table: silver.loans\n"
        "    target: approved\n    features: [income]\n"
    )
    assert main(["--root", str(tmp_path), "simulate", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "declares no `simulator`" in err and "Traceback" not in err
