"""Tests of the params.yaml schemas (hortus.params_schema) and of the entry point's env."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import with_policy
from hortus.cli.core import main
from hortus.params_schema import (
    SECTIONS,
    ParamsError,
    check_section,
    check_values,
    file_problems,
    section_problems,
)

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "lib/hortus/project/templates/init/params.yaml"
#: values `hortus init` puts in the template's placeholders (a binary model `m`)
FILLED = {"@@REFERENCE_DAYS@@": "null", "@@TARGET@@": "y", "@@SEGMENT_METRIC@@": "roc_auc",
          "@@INVARIANCE@@": "[id]", "@@MODEL@@": "m"}  # fmt: skip


def _doc(text: str) -> dict:
    return yaml.safe_load(text)


def _template() -> dict:
    text = TEMPLATE.read_text(encoding="utf-8")
    for key, value in FILLED.items():
        text = text.replace(key, value)
    return _doc(text)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """Return a temp plant-shop project (hortus.yaml, policy) with the repository's params."""
    with_policy(tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def _write(root: Path, doc: dict) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("section", SECTIONS)
def test_repository_params_pass_their_schema(section):
    """Check that every section of the repository's params.yaml matches its schema."""
    doc = _doc((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert section in doc
    assert section_problems(section, doc[section], root=ROOT) == []


def test_scaffold_template_passes_its_schema(tmp_path):
    """Check that the params.yaml `hortus init` drafts (no features, no kpis) is valid."""
    doc = _template()
    assert "features" not in doc and "kpis" not in doc
    for section, body in doc.items():
        assert section in SECTIONS
        assert section_problems(section, body) == [], section


def test_whole_repository_file_is_valid():
    """Check that `file_problems` finds nothing in the repository's params.yaml."""
    assert file_problems(ROOT / "params.yaml") == []


def test_typo_is_refused_with_the_valid_names():
    """Check that a misspelt key is refused naming file, key and every valid name."""
    with pytest.raises(ParamsError) as exc:
        check_section("train", {"max_iterr": 10})
    msg = str(exc.value)
    assert msg.startswith("params.yaml: train.max_iterr: unknown key; valid: ")
    for name in ("estimator", "max_iter", "learning_rate", "holdout_fraction", "models"):
        assert name in msg


@pytest.mark.parametrize(
    ("section", "body", "message"),
    [
        ("train", {"max_iter": "ten"}, "train.max_iter: expected int >= 1, got 'ten'"),
        ("train", {"max_iter": 2.5}, "train.max_iter: expected int >= 1, got 2.5"),
        ("train", {"estimator": "rf"}, "train.estimator: expected one of hgb, logreg, linear"),
        ("train", {"learning_rate": 0}, "train.learning_rate: expected number > 0, got 0"),
        ("train", {"max_leaf_nodes": 1}, "train.max_leaf_nodes: expected int >= 2, got 1"),
        ("train", {"l2_regularization": -1}, "train.l2_regularization: expected number >= 0"),
        ("train", {"min_samples_leaf": 0}, "train.min_samples_leaf: expected int >= 1"),
        ("train", {"holdout_fraction": 1}, "train.holdout_fraction: expected number in (0, 1)"),
        ("train", {"k": True}, "train.k: expected int >= 1, got True"),
        ("train", {"seed": "42"}, "train.seed: expected int, got '42'"),
        ("train", {"threshold": 1.5}, "train.threshold: expected number in (0, 1)"),
        ("ingest", {"flush_rows": 0}, "ingest.flush_rows: expected int >= 1, got 0"),
        # YAML 1.1 reads 1e-9 (no dot) as a string: said at once, not deep in a stage
        ("features", {"skew_tolerance": "1e-9"}, "features.skew_tolerance: expected number"),
        ("score", {"fallback_to_gated": "yes"}, "score.fallback_to_gated: expected true or"),
        ("kpis", {"x": 1}, "kpis.x: unknown key; valid: none"),
    ],
)
def test_wrong_type_or_range_is_refused(section, body, message):
    """Check that a value of the wrong type or range names file, key and expected type."""
    with pytest.raises(ParamsError, match="^params.yaml: ") as exc:
        check_section(section, body)
    assert message in str(exc.value)


def test_per_model_overrides_use_the_same_schema(shop):
    """Check that train.models.<name> is checked like train, and names a known model."""
    body = {"max_iter": 10, "models": {"recommender": {"max_iterr": 3, "k": 0}, "nope": {}}}
    problems = section_problems("train", body, root=shop)
    assert problems[0].startswith("params.yaml: train.models.recommender.max_iterr: unknown key")
    assert problems[1] == "params.yaml: train.models.recommender.k: expected int >= 1, got 0"
    assert problems[2] == (
        "params.yaml: train.models.nope: unknown model; models of hortus.yaml: recommender"
    )
    assert section_problems("train", {"models": {"recommender": {"max_iter": 5}}}, root=shop) == []


@pytest.mark.parametrize(
    ("section", "body", "message"),
    [
        ("gate", {"drift": {"alpah": 0.1}}, "params.yaml: gate.drift: unknown key(s) alpah"),
        ("gate", {"pii": {"min_rowz": 1}}, "params.yaml: gate.pii: unknown key(s) ['min_rowz']"),
        ("gate", {"serving_users": 0}, "params.yaml: gate.serving_users: expected int >= 1"),
        ("gate", {"model_checks": {"fairnes": {}}}, "gate.model_checks: unknown key(s)"),
        ("monitor", {"kpi_rangez": {}}, "params.yaml: monitor: unknown key(s) kpi_rangez"),
        ("alerts", {"sinks": {"log": {"type": "jsonl"}}}, "alert sink 'log': jsonl sink needs"),
        ("model_card", {"m": {"owner": []}}, "params.yaml: model_card.m: unknown key(s)"),
    ],
)
def test_nested_sections_use_their_own_parsers(section, body, message):
    """Check that gate, monitor, alerts and model_card refuse mistakes through their parsers."""
    with pytest.raises(ParamsError) as exc:
        check_section(section, body)
    assert message in str(exc.value)


def test_alert_rules_each_checked_against_the_sinks():
    """Check that each rule is checked and a webhook's secret variable need not be set."""
    body = {
        "sinks": {"hook": {"type": "webhook", "url": "http://127.0.0.1:1/x",
                           "headers_from_env": {"Authorization": "HORTUS_TEST_UNSET"}}},
        "rules": [{"name": "a", "metric": "m", "condition": "> 0", "sinks": ["hook"]},
                  {"name": "b", "metric": "m", "condition": "> 0", "sinks": ["lgo"]}],
    }  # fmt: skip
    problems = section_problems("alerts", body)
    assert problems == [
        "params.yaml: alerts.rules[1]: alert rule 'b': unknown sink(s) ['lgo']; "
        "configured sinks: ['hook']"
    ]


def test_simulate_is_checked_against_the_project_simulator(shop):
    """Check that simulate keys are the project simulator's SimConfig fields."""
    problems = section_problems("simulate", {"seed": 1, "dayz": 3}, root=shop)
    assert problems[0].startswith("params.yaml: simulate.dayz: unknown key; valid: seed, start")
    assert "users must be" in section_problems("simulate", {"users": 0}, root=shop)[0]


def test_monitor_stage_checks_monitor_and_alerts_first(shop, monkeypatch, capsys):
    """Check that `hortus monitor stage` refuses an alert-rule typo before any monitor runs."""
    from hortus.pipeline import stages

    ran = []
    monkeypatch.setattr(stages, "monitor", lambda *a, **k: ran.append(a) or {})
    doc = _doc((shop / "params.yaml").read_text(encoding="utf-8"))
    doc["alerts"]["rules"][0]["severty"] = "info"
    _write(shop, doc)
    assert main(["--root", str(shop), "monitor", "stage"]) == 2
    err = capsys.readouterr().err
    assert "params.yaml: alerts.rules[0]: alert rule 'table-stale': unknown key(s)" in err
    assert "['severty']" in err
    assert ran == []


def test_train_with_a_typo_exits_2_before_the_notebook(shop, monkeypatch, capsys):
    """Check that `hortus train` refuses a params typo at once, before running any notebook."""
    from hortus.pipeline import stages

    ran = []
    monkeypatch.setitem(stages.STAGES, "train", lambda *a, **k: ran.append(a) or {})
    doc = _doc((shop / "params.yaml").read_text(encoding="utf-8"))
    doc["train"]["max_iterr"] = doc["train"].pop("max_iter")
    _write(shop, doc)
    assert main(["--root", str(shop), "train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hortus: error: params.yaml: train.max_iterr: unknown key; valid: ")
    assert "max_iter," in err and "Traceback" not in err
    assert ran == []
    doc["train"]["max_iter"] = doc["train"].pop("max_iterr")
    _write(shop, doc)
    assert main(["--root", str(shop), "train"]) == 0 and len(ran) == 1  # valid: it runs


def test_notebook_run_checks_train_values():
    """Check that `-p max_iter=ten` for the train notebook is refused by the schema."""
    with pytest.raises(ParamsError, match="-p max_iter: expected int >= 1, got 'ten'"):
        check_values("train", {"max_iter": "ten", "model": "x"}, source="notebooks run train -p")
    check_values("train", {"max_iter": 5, "model": "x", "output_dir": ""}, source="-p")


def test_notebooks_run_train_refuses_a_bad_value(shop, capsys):
    """Check that `hortus notebooks run train -p max_iter=ten` exits 2 before running."""
    assert main(["--root", str(shop), "notebooks", "run", "train", "-p", "max_iter=ten"]) == 2
    err = capsys.readouterr().err
    assert "hortus notebooks run train -p max_iter: expected int >= 1, got 'ten'" in err


def test_params_check_lists_every_problem(shop, capsys):
    """Check that `hortus params check` lists each problem of the file and exits 2."""
    doc = _doc((shop / "params.yaml").read_text(encoding="utf-8"))
    doc["train"]["max_iterr"] = 1
    doc["ingest"]["flush_rows"] = "many"
    doc["gate"]["drift"]["alpah"] = 0.1
    doc["monitor"]["kpi_rangez"] = {}
    doc["extra"] = {"knob": 3}
    _write(shop, doc)
    assert main(["--root", str(shop), "params", "check"]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("params.yaml: extra: unknown section; valid: simulate, ingest")
    assert lines[1] == "params.yaml: ingest.flush_rows: expected int >= 1, got 'many'"
    assert lines[2].startswith("params.yaml: train.max_iterr: unknown key; valid: ")
    assert lines[3].startswith("params.yaml: gate.drift: unknown key(s) alpah")
    assert lines[4].startswith("params.yaml: monitor: unknown key(s) kpi_rangez")
    assert len(lines) == 5


def test_params_check_passes_the_repository_file(capsys):
    """Check that `hortus params check` exits 0 on the repository's params.yaml."""
    assert main(["--root", str(ROOT), "params", "check"]) == 0
    assert "every section matches its schema" in capsys.readouterr().out


def test_entry_point_sets_passive_openmp_unless_set(shop, monkeypatch, capsys):
    """Check that `hortus` sets OMP_WAIT_POLICY=PASSIVE for the stages, keeping a user's value."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["--root", str(shop), "params", "check"]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert main(["--root", str(shop), "params", "check"]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_entry_point_module_loads_no_openmp_library():
    """Check that importing the `hortus` entry point loads no numpy or scikit-learn.

    OpenMP reads OMP_WAIT_POLICY once, when its library loads: `main()` can only set
    it for the stages if nothing loaded it before.
    """
    code = (
        "import sys, hortus.cli.core\n"
        "print(sorted(m for m in ('numpy', 'sklearn', 'scipy', 'polars') if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_ingest_caps_are_checked():
    """Check the ingest caps against hostile files: positive numbers, ratio at least 1."""
    assert section_problems("ingest", {"max_file_mb": 0.5, "max_line_kb": 2, "max_ratio": 50}) == []
    assert section_problems("ingest", {"max_file_mb": 0, "max_ratio": 0.5}) == [
        "params.yaml: ingest.max_file_mb: expected number > 0, got 0",
        "params.yaml: ingest.max_ratio: expected number >= 1, got 0.5",
    ]


def test_checked_section_returns_an_absent_section_empty_and_refuses_a_bad_one(tmp_path):
    """Check `checked_section`: {} when the file lacks the section, a named error when bad."""
    from hortus.params_schema import checked_section

    path = _write(tmp_path, {"silver": {"chunk_rows": 10}, "ingest": 3})
    assert checked_section(path, "monitor") == {}
    assert checked_section(path, "silver") == {"chunk_rows": 10}
    with pytest.raises(ParamsError, match="params.yaml: ingest: expected a mapping of keys, got 3"):
        checked_section(path, "ingest")
