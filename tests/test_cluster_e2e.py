"""The whole pipeline of a project on a Ray cluster with its lakehouse in a bucket (issue 16).

What `make cluster-up` + `HORTUS_EXECUTOR=ray HORTUS_LAKEHOUSE=s3://... make run` does
(docs/scale-out.md, "The whole pipeline on the cluster"), in a test: a small pinned
plant-shop project (the DVC pipeline test's snapshot and params) is built twice with
the real `dvc repro`, once as by default (lakehouse on disk, in-process) and once
with its stages on a real two-node `ray.cluster_utils.Cluster` and its lakehouse on
the moto S3 server.  Every stage's table content hashes, the model bytes, the gate's
verdict and the recommendations are the same; no table is on local disk; the audit
log in the bucket verifies; ingest, silver, the feature build and scoring ran as Ray
jobs.  The nodes get the bucket's AWS_* settings in their environment, as
`make cluster-up` gives its nodes (none travel with the tasks).

The cluster tests are slow (two small `dvc repro` runs and a cluster: several
minutes on two shared cores); `ingest --rebuild` dropping bronze in the bucket is not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import small_params
from hortus.config import Paths
from hortus.lakehouse.tables import Lakehouse

pytest_plugins = ("s3server",)  # the S3 server fixtures: s3_server, s3_lake

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PII_KEY = "cluster-e2e-key"
#: stages whose tables are pinned in reports/tables/<stage>.json
PINNED = ["ingest", "silver", "kpis", "features", "score"]
#: the stages that hand work to the executor, as Ray job entry points
RAY_STAGES = ["hortus ingest", "hortus silver", "hortus features build", "hortus score"]


def sh(cwd: Path, *cmd: str, env: dict | None = None, check: bool = True):
    """Run a command in `cwd` with this environment's tools; `env` adds (None: removes)."""
    full = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
                         "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                         "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    full = {k: v for k, v in (full | (env or {})).items() if v is not None}
    out = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, env=full)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def _pinned_project(root: Path) -> Path:
    """A small pinned plant-shop project: the DVC pipeline test's snapshot and params."""
    root.mkdir(parents=True)
    shutil.copytree(ROOT / "lib", root / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns("__*"))
    shutil.copytree(ROOT / "docs", root / "docs")
    for f in ("dvc.yaml", "hortus.yaml", ".dvcignore", ".gitignore", "access_policy.yaml"):
        shutil.copy(ROOT / f, root / f)
    params = small_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "dvc", "init", "-q")
    sh(root, "hortus", "simulate", "--from-params", "--quiet")
    sh(root, "dvc", "add", "-q", "data")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "-m", "pinned")
    return root


@pytest.fixture(scope="module")
def stack(s3_server):
    """The moto S3 server and a two-node Ray cluster whose nodes have the bucket's AWS_*."""
    from test_executor_ray import two_node_cluster

    with pytest.MonkeyPatch.context() as mp:
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
            mp.delenv(key, raising=False)
        # inherited by the nodes' workers
        with two_node_cluster(s3_server.env()) as c:
            yield s3_server, c


@pytest.fixture(scope="module")
def runs(stack, tmp_path_factory):
    """Build the project twice: by default (disk, in-process) and on the cluster + bucket."""
    server, cluster = stack
    base = _pinned_project(tmp_path_factory.mktemp("e2e") / "base")
    common = {"HORTUS_PII_KEY": PII_KEY, "HORTUS_USER": "pipeline", "OMP_NUM_THREADS": "1"}
    local = base.with_name("local")
    shutil.copytree(base, local, symlinks=True)
    unset = {k: None for k in os.environ if k.startswith("AWS_")}
    unset |= {"HORTUS_LAKEHOUSE": None, "HORTUS_RAY_ADDRESS": None}
    sh(local, "dvc", "repro", env=unset | common | {"HORTUS_EXECUTOR": "local"})
    on_ray = base.with_name("cluster")
    shutil.copytree(base, on_ray, symlinks=True)
    lake = f"s3://{server.bucket}/e2e-lakehouse"
    env_ray = common | {"HORTUS_EXECUTOR": "ray", "HORTUS_RAY_ADDRESS": cluster.address,
                        "HORTUS_LAKEHOUSE": lake}  # fmt: skip
    sh(on_ray, "dvc", "repro", env=env_ray)
    return local, on_ray, env_ray, lake


def _json(root: Path, rel: str) -> dict:
    return json.loads((root / rel).read_text())


@pytest.mark.slow
def test_every_stage_on_the_cluster_and_bucket_equals_the_default_run(runs):
    """Check the tables' content hashes, the model bytes, the gate and the scores."""
    local, on_ray, _, _ = runs
    for stage in PINNED:
        pinned = _json(local, f"reports/tables/{stage}.json")
        assert pinned, stage
        assert _json(on_ray, f"reports/tables/{stage}.json") == pinned, stage
    model = "reports/train/recommender/model.skops"
    assert (on_ray / model).read_bytes() == (local / model).read_bytes()
    gate, gate_ray = _json(local, "reports/gate.json"), _json(on_ray, "reports/gate.json")
    assert gate_ray["passed"] == gate["passed"] and gate["checks"] >= 10
    assert gate_ray["failed_checks"] == gate["failed_checks"]
    values = {k: v for k, v in gate.items() if k.startswith("value.") and "efficiency" not in k}
    assert {k: gate_ray[k] for k in values} == values  # timings (efficiency) aside
    score, score_ray = _json(local, "reports/score.json"), _json(on_ray, "reports/score.json")
    assert score_ray["predictions_sha256"] == score["predictions_sha256"]
    assert score_ray["rows"] == score["rows"] > 0


@pytest.mark.slow
def test_the_tables_are_in_the_bucket_and_the_audit_log_verifies(runs, stack):
    """Check that no table is on local disk, the bucket holds them, and the audit chain verifies."""
    _, on_ray, env_ray, lake = runs
    server, _ = stack
    assert not (on_ray / "lakehouse").exists()
    assert not list((on_ray / ".hortus").rglob("_delta_log"))
    prefix = lake.removeprefix(f"s3://{server.bucket}/")
    keys = server.keys(prefix)
    for table in ("restricted/bronze/events", "silver/events", "gold/training_set",
                  "gold/recommendations", "ops/model_versions", "ops/audit_log"):  # fmt: skip
        assert any(k.startswith(f"{prefix}/{table}/_delta_log/") for k in keys), table
    assert any(k.startswith(f"{prefix}/ops/models/") and k.endswith(".skops") for k in keys)
    verified = sh(on_ray, "hortus", "audit", "verify", env=env_ray)
    assert "intact" in verified.stdout, verified.stdout
    lh = Lakehouse.open(on_ray, lakehouse=lake, stage="test")
    assert lh.read("ops.pipeline_runs")["status"].unique().to_list() == ["ok"]
    lh.close()


@pytest.mark.slow
def test_the_partitioned_stages_ran_as_ray_jobs(runs, stack):
    """Check that ingest, silver, the feature build and scoring connected to the cluster."""
    from ray._private import state

    _, cluster = stack
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    try:
        entries = [j.get("Entrypoint", "") for j in state.jobs()]
    finally:
        ray.shutdown()
    for stage in RAY_STAGES:
        assert any(e.endswith(stage) or f"{stage} " in e for e in entries), (stage, entries)


def test_a_rebuild_drops_the_layer_in_the_bucket(project, s3_lake, s3_server, monkeypatch):
    """Check `ingest --rebuild` on object storage: bronze is dropped and landed again (one
    version), as on disk; silver, another layer, is left as it was."""
    from conftest import event, write_jsonl
    from hortus.pipeline import stages

    rows = [event(i, ts="2025-03-01T08:00:00.000000Z") for i in range(20)]
    write_jsonl(project.data / "events/events-2025-03-01.jsonl.gz", rows)
    monkeypatch.setenv("HORTUS_LAKEHOUSE", s3_lake)
    paths = Paths.at(project.root)
    stages.ingest(paths, {})
    stages.silver(paths, {})
    lh = Lakehouse.open(project.root, stage="test")
    before = lh.content_hash("bronze.events")
    silver_version = lh.version("silver.events")
    assert stages.ingest(paths, {})["files_new"] == 0  # incremental: nothing new
    assert stages.ingest(paths, {}, rebuild=True)["files_new"] == 1  # dropped, landed again
    assert lh.version("bronze.events") == 0 and lh.content_hash("bronze.events") == before
    assert lh.version("silver.events") == silver_version
    prefix = s3_lake.removeprefix(f"s3://{s3_server.bucket}/")
    assert len(server_keys := s3_server.keys(f"{prefix}/restricted/bronze/events/")) >= 2
    assert sum(k.endswith(".parquet") for k in server_keys) == 1  # the old data files went too
    lh.close()
