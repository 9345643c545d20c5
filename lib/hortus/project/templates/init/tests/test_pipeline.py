"""Pipeline smoke test: every stage left its outputs, and the model is registered."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hortus.project.definition import Project

ROOT = Path(__file__).resolve().parents[1]
PROJECT = Project.load(ROOT)
MODELS = list(PROJECT.models)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "report",
    [
        "ingest.json",
        "silver.json",
        "register.json",
        "gate.json",
        "score.json",
        "monitor.json",
        "index.html",
        "data_dictionary.md",
    ],
)
def test_stage_reports_exist(report):
    assert (ROOT / "reports" / report).exists(), f"reports/{report} missing: run `dvc repro`"


@pytest.mark.parametrize("model", MODELS)
def test_model_trained(model):
    out = ROOT / "reports" / "train" / model
    for name in ("model.skops", "metrics.json", "run.json", "train.ipynb"):
        assert (out / name).exists(), f"{out / name} missing"


@pytest.mark.parametrize("model", MODELS)
def test_model_registered(model):
    done = subprocess.run(
        [sys.executable, "-m", "hortus.cli.core", "models", "list", "--model", model],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^\s*v1\s", done.stdout, re.M), f"no version 1 of {model}:\n{done.stdout}"


def test_a_model_report_is_published():
    assert list((ROOT / "reports" / "models").glob("*/*/model_report.html"))


def test_gate_ran():
    gate = json.loads((ROOT / "reports" / "gate.json").read_text())
    assert gate.get("checks") or gate.get("passed") is not None
