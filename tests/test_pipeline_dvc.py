"""Integration: the real DVC pipeline in a temporary git + DVC repository.

The repository gets copies of lib/, notebooks/, dvc.yaml and params.yaml (with a
smaller snapshot and a quicker model), pins its data with `dvc add`, commits, then
runs `dvc repro` (ingest to scoring, the train stage through papermill) and checks
the no-op rerun, metrics, the registry, `dvc exp run -S`, offline restore of the
snapshot, tamper detection and `hortus reproduce`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from conftest import SMALL_SHOP as SMALL
from conftest import small_params
from hortus.config import Paths
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.tables import Lakehouse

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.integration


def sh(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = os.environ | {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    out = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """Build a small pinned project and run `dvc repro` once."""
    repo = tmp_path_factory.mktemp("proj")
    shutil.copytree(ROOT / "lib", repo / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "notebooks", repo / "notebooks", ignore=shutil.ignore_patterns("__*"))
    shutil.copytree(ROOT / "docs", repo / "docs")  # the user guide (a dependency of `docs`)
    for f in ("dvc.yaml", "hortus.yaml", ".dvcignore", ".gitignore", "access_policy.yaml"):
        shutil.copy(ROOT / f, repo / f)
    params = small_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(repo, "git", "init", "-q", "-b", "main")
    sh(repo, "dvc", "init", "-q")
    sh(repo, "dvc", "config", "core.analytics", "false")
    sh(repo, "hortus", "simulate", "--from-params", "--quiet")
    sh(repo, "dvc", "add", "-q", "data")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "pinned")
    os.environ["HORTUS_PII_KEY"] = "integration-key"
    first = sh(repo, "dvc", "repro")
    (repo / "first_repro.log").write_text(first.stdout + first.stderr)
    sh(repo, "git", "add", "dvc.lock")
    sh(repo, "git", "commit", "-q", "-m", "lock")
    return repo


def test_dvc_repro_builds_every_layer(repo):
    """Check that repro leaves bronze, silver, quarantine, gold KPIs and the dictionary."""
    lh = Lakehouse(paths=Paths.at(repo), catalog=Catalog.load(), stage="test")
    for table in (
        "bronze.events",
        "bronze.users",
        "silver.events",
        "silver.users",
        "silver.plants",
        "silver.reviews",
        "quarantine.rows",
        "gold.kpi_daily",
        "gold.fs_user_activity",
        "gold.training_set",
        "gold.recommendations",
        "ops.model_versions",
        "ops.prediction_log",
    ):
        assert lh.exists(table), table
    assert (repo / "lakehouse" / "online" / "features.sqlite").is_file()
    # pipeline health: every stage run is in the run log; batch monitoring ran last
    runs = lh.read("ops.pipeline_runs")
    assert {"ingest", "silver", "features", "train", "gate", "score", "monitor"} <= set(
        runs["stage"]
    )
    assert runs["status"].unique().to_list() == ["ok"]
    monitor = json.loads((repo / "reports" / "monitor.json").read_text())
    assert monitor["metric_rows"] > 0 and {"freshness", "data_quality"} <= set(monitor["monitors"])
    executed = (repo / "reports" / "train" / "recommender" / "train.ipynb").read_text()
    assert '"parameters"' in executed and '"injected-parameters"' in executed
    # the evaluation section ran: per-segment intervals and fairness charts (altair)
    assert "Evaluation by segment and fairness" in executed
    assert "ROC AUC per segment, 95% bootstrap interval" in executed
    kpis = lh.read("gold.kpi_daily")
    assert kpis.filter(pl.col("region") == "ALL").height == SMALL["days"]
    assert (repo / "reports" / "data_dictionary.md").read_text().count("## `") >= 10
    refused = yaml.safe_load((repo / "reports" / "ingest.json").read_text())["refused"]
    assert {r["reason"].split(":")[0] for r in refused} == {"empty_file", "truncated_compressed"}


def test_second_repro_is_a_noop(repo):
    """Check that a second `dvc repro` runs no stage."""
    again = sh(repo, "dvc", "repro")
    assert "Running stage" not in again.stdout
    assert "up to date" in (again.stdout + again.stderr).lower()
    status = sh(repo, "dvc", "status")
    assert "up to date" in status.stdout.lower()


def test_metrics_show_lists_pipeline_figures(repo):
    """Check that `dvc metrics show` lists the KPI and model figures, and only those."""
    out = sh(repo, "dvc", "metrics", "show").stdout
    assert "reports/kpis.json" in out and "revenue" in out
    # stage summaries (counts, text) are outputs, not metrics: the table stays readable
    assert "reports/silver.json" not in out and "reports/gate.json" not in out
    assert max(len(line) for line in out.splitlines()) < 400
    assert (
        "reports/train/recommender/metrics.json" in out and "roc_auc" in out and "ndcg_at_k" in out
    )
    plots = sh(repo, "dvc", "plots", "show", "--json").stdout
    assert "learning_curve.csv" in plots


def test_gate_stage_records_its_checks_then_four_eyes_promote_v1(repo):
    """Check the gate stage report, metrics and ops record; an approver and an engineer promote."""
    summary = json.loads((repo / "reports" / "gate.json").read_text())
    assert summary["version"] == 1 and summary["checks"] >= 10
    assert summary["passed"], summary["failed_checks"]
    # four-eyes: the pipeline may not promote; the summary says who must act
    assert summary["promoted_to_champion"] is False
    assert "needs approval by an approver who is not pipeline" in summary["promotion"]
    score = json.loads((repo / "reports" / "score.json").read_text())
    assert score["model_version"] == 1 and "no champion yet" in score["note"]
    report = (repo / "reports" / "gate" / "recommender" / "v1.md").read_text()
    for check in ("contract[gold.training_set]", "pii", "drift", "skew", "segment_metrics_ci",
                  "fairness[user_profile__age_band]", "importance_check", "schema_conflicts",
                  "efficiency", "behavioural"):  # fmt: skip
        assert f"| {check} | pass |" in report, check
    lh = Lakehouse(paths=Paths.at(repo), catalog=Catalog.load(), stage="test")
    assert lh.read("ops.gate_results")["passed"].to_list() == [True]
    # reports/gate.json is a stage output now, not a DVC metric (readable dvc metrics show)
    # the same gate by hand: exit 0 on a pass, a second recorded run
    again = sh(repo, "hortus", "gate", "1", "--json")
    assert json.loads(again.stdout)["passed"] is True
    assert lh.read("ops.gate_results").height == 2
    # an approver who is not the author approves, an ML engineer promotes
    refused = sh(repo, "env", "HORTUS_USER=mia", "hortus", "models", "promote", "1", check=False)
    assert refused.returncode == 2 and "approv" in refused.stderr
    sh(repo, "env", "HORTUS_USER=paula", "hortus", "models", "approve", "1", "--reason", "ok")
    sh(repo, "env", "HORTUS_USER=mia", "hortus", "models", "promote", "1")
    assert (
        json.loads(sh(repo, "hortus", "models", "show", "champion", "--json").stdout)["version"]
        == 1
    )


def test_repro_registers_and_scores_with_the_champion(repo):
    """Check that the first repro registered v1 as champion and scored users with it."""
    lh = Lakehouse(paths=Paths.at(repo), catalog=Catalog.load(), stage="test")
    versions = lh.read("ops.model_versions")
    assert versions["version"].to_list()[0] == 1
    receipt = yaml.safe_load(versions["receipt"][0])
    assert receipt["data_md5"] == yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"]
    assert receipt["tables_read"]["gold.training_set"] >= 0
    listed = sh(repo, "hortus", "models", "list", "--json").stdout
    assert '"champion"' in listed
    recs = lh.read("gold.recommendations")
    assert recs["model_version"].unique().to_list() == [1]
    assert recs.group_by("user_id").agg(pl.len())["len"].max() == 10
    log = lh.read("ops.prediction_log")
    # scored twice with v1: by the score stage, then by the rescore action when mia
    # promoted v1 (run as the pipeline's service user); each run logs every prediction
    assert log.height == 2 * recs.height
    # each logged prediction carries the model input it was scored on
    first = json.loads(log["features"][0])
    assert "user_profile__region" in first and len(first) > 30


def test_fresh_clone_restores_the_pinned_snapshot_offline(repo, tmp_path):
    """Check that a clone without data/ or DVC cache rebuilds exactly the pinned bytes."""
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    assert not (clone / "data").exists()
    out = sh(clone, "hortus", "data", "restore")
    assert "matches data.dvc" in out.stdout
    assert sorted(p.name for p in (clone / "data" / "events").iterdir()) == sorted(
        p.name for p in (repo / "data" / "events").iterdir()
    )


def test_tampered_snapshot_is_detected(repo, tmp_path):
    """Check that one changed byte in data/ fails verification with a clear message."""
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    shutil.copytree(repo / "data", clone / "data")
    assert sh(clone, "hortus", "data", "verify").returncode == 0
    users = sorted((clone / "data" / "users").iterdir())[0]
    users.write_text(users.read_text().replace("GB", "IE", 1))
    bad = sh(clone, "hortus", "data", "verify", check=False)
    assert bad.returncode == 2
    assert "does not match data.dvc" in bad.stderr and "Traceback" not in bad.stderr
    refused = sh(clone, "hortus", "data", "restore", check=False)  # never overwrites
    assert refused.returncode == 2


def test_dvc_exp_run_with_a_changed_param_registers_a_new_version(repo):
    """Check that `dvc exp run -S train.max_iter=30` trains and registers v2 with that param."""
    sh(repo, "dvc", "exp", "run", "-S", "train.max_iter=30")
    lh = Lakehouse(paths=Paths.at(repo), catalog=Catalog.load(), stage="test")
    versions = lh.read("ops.model_versions").sort("version")
    assert versions["version"].to_list() == [1, 2]
    assert yaml.safe_load(versions["params"][1])["train"]["max_iter"] == 30
    assert versions["artifact_sha256"][0] != versions["artifact_sha256"][1]
    # the experiment's gate ran on v2; promotion follows its verdict
    gates = lh.read("ops.gate_results").sort("finished_at")
    assert gates["version"].to_list()[-1] == 2 and set(gates["version"]) == {1, 2}
    sh(repo, "env", "HORTUS_USER=olivia", "hortus", "models", "approve", "2")
    promote = sh(repo, "env", "HORTUS_USER=mia", "hortus", "models", "promote", "2", check=False)
    if gates["passed"][-1]:
        assert promote.returncode == 0, promote.stderr
        sh(repo, "env", "HORTUS_USER=mia", "hortus", "models", "rollback", "--reason", "back")
    else:
        assert promote.returncode == 2 and "failed its gate" in promote.stderr
    sh(repo, "git", "checkout", "--", "params.yaml", "dvc.lock")


def test_reproduce_says_identical_then_different_after_tampering(repo, tmp_path):
    """Check that `hortus reproduce 1` (older than v2) gives the same bytes, not after tampering."""
    same = json.loads(sh(repo, "hortus", "reproduce", "1", "--json").stdout)
    assert same["verdict"] == "identical", same
    assert same["rebuilt_sha256"] == same["expected_sha256"]
    assert same["metrics_differ"] == {}
    table = same["tables"]["gold.training_set"]
    assert table["registered"] == table["rebuilt"] and table["registered"].startswith("rows=")
    # tamper with the pinned snapshot in the DVC cache (one landing file's bytes)
    cache = repo / ".dvc" / "cache" / "files" / "md5"
    users = sorted((repo / "data" / "users").iterdir())[0]
    md5 = __import__("hashlib").md5(users.read_bytes()).hexdigest()
    cached = cache / md5[:2] / md5[2:]
    cached.chmod(0o644)
    original = cached.read_bytes()
    cached.write_bytes(original.replace(b"GB", b"IE"))
    try:
        diff = sh(repo, "hortus", "reproduce", "1", check=False)
    finally:
        cached.write_bytes(original)
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assert "DIFFERENT" in diff.stdout and "pinned data was changed" in diff.stdout


def test_rebuild_from_scratch_keeps_dvc_lock_and_registers_a_clean_version(repo):
    """Check that a rebuild leaves the committed dvc.lock valid, so the new version is clean.

    The lakehouse is pinned by content (reports/tables/<stage>.json), not by Delta file
    names, and the executed notebook carries no timestamps or random ids: removing
    every build output (as in a fresh clone) and running the stages up to `register`
    again changes nothing that git tracks, and the version's receipt says git_dirty false.
    """
    sh(repo, "git", "checkout", "--", "params.yaml", "dvc.lock")
    assert sh(repo, "git", "status", "--porcelain", "--untracked-files=no").stdout == ""
    for folder in ("lakehouse", "reports"):  # the operations plane too: a fresh clone's
        shutil.rmtree(repo / folder)
    # the build's own PII key (tests run with another one): tokens are silver content
    sh(repo, "env", "HORTUS_PII_KEY=integration-key", "dvc", "repro", "register")
    changed = sh(repo, "git", "status", "--porcelain", "--untracked-files=no").stdout
    assert changed == "", sh(repo, "git", "diff").stdout[-3000:]
    lh = Lakehouse(paths=Paths.at(repo), catalog=Catalog.load(), stage="test")
    newest = lh.read("ops.model_versions").sort("version")[-1]
    receipt = yaml.safe_load(newest["receipt"][0])
    assert receipt["git_dirty"] is False
    pinned = json.loads((repo / "reports" / "tables" / "silver.json").read_text())
    assert pinned["silver.events"]["content"].startswith("rows=")
