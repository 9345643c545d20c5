"""Integration: the real DVC pipeline in a temporary git + DVC repository.

The repository gets copies of lib/, dvc.yaml and params.yaml (with a smaller
snapshot), pins its data with `dvc add`, then runs `dvc repro` twice, clones
itself and restores the pinned snapshot offline, and detects a tampered file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from hortus.catalog import Catalog
from hortus.config import Paths
from hortus.tables import Lakehouse

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMALL = {
    "seed": 3,
    "start": "2025-03-01",
    "days": 3,
    "users": 150,
    "plants": 40,
    "drift": [],
    "faults": ["malformed", "duplicates", "empty_file", "truncated_gzip"],
    "fault_rate": 0.01,
}

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
    for f in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / f, repo / f)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["simulate"] = SMALL
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
    ):
        assert lh.exists(table), table
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
    """Check that `dvc metrics show` lists the ingest, silver and KPI figures."""
    out = sh(repo, "dvc", "metrics", "show").stdout
    assert "reports/kpis.json" in out and "revenue" in out
    assert "reports/silver.json" in out


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
