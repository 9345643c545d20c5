"""Bring your own data: `hortus init` on a table the plant shop has never seen, then the
real `dvc repro` in the new project runs every stage, registers and gates the model
(segment and fairness checks judged, not skipped) and publishes its report.

The project is built once per task (session fixture) and shared by the assertions;
binary runs in the default suite, multiclass and regression are slow.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from conftest import TEST_AUDIT_KEY, TEST_KEY

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent  # the environment running the tests (hortus, dvc)
ROWS = 8000
STAGES = ["ingest", "silver", "train", "register", "gate", "score", "monitor", "report", "docs"]
FIRST = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ines", "Jonas"]
LAST = ["Smith", "Meyer", "Jones", "Brown", "Schulz", "Weber", "Moreau", "Rossi"]


def make_table(task: str, seed: int = 7) -> pl.DataFrame:
    """Loans-like data: id, applicant name, region (4 x >= 300), sex, 60 days, a target.

    The target depends on four of six numeric features with comparable weights (no
    single feature dominates the importance check) and on none of region, sex or
    channel, so the segment and fairness checks have nothing real to find.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, 6))
    w = np.array([1.0, -0.9, 0.8, 0.7, 0.0, 0.0])
    if task == "regression":
        target = pl.Series("amount", np.round(10 * (x @ w) + rng.normal(0, 3, ROWS), 3))
    elif task == "binary":
        p = 1 / (1 + np.exp(-1.5 * (x @ w)))
        target = pl.Series("outcome", (rng.random(ROWS) < p).astype(np.int64))
    else:
        weights = np.array([[1, -1, 0], [0, 1, -1], [-1, 0, 1], [0.7, 0, -0.7], [0, 0, 0],
                            [0, 0, 0]])  # fmt: skip
        scores = 1.5 * (x @ weights) + rng.gumbel(size=(ROWS, 3))
        target = pl.Series("outcome", scores.argmax(axis=1).astype(np.int64))
    start = datetime(2025, 4, 1)
    minutes = np.sort(rng.integers(0, 60 * 24 * 60, ROWS))
    return pl.DataFrame(
        {
            "application_id": [f"L{100000 + i}" for i in range(ROWS)],
            "applicant": [f"{FIRST[i % 10]} {LAST[(i // 10) % 8]}" for i in range(ROWS)],
            "region": rng.choice(["coast", "hills", "plains", "city"], ROWS).tolist(),
            "sex": rng.choice(["female", "male"], ROWS).tolist(),
            "applied_at": [
                (start + timedelta(minutes=int(m))).strftime("%Y-%m-%dT%H:%M:%SZ") for m in minutes
            ],
            **{f"f{j}": np.round(x[:, j], 6) for j in range(x.shape[1])},
            "channel": rng.choice(["web", "branch", "phone"], ROWS).tolist(),
        }
    ).with_columns(target)


def env() -> dict:
    out = {k: v for k, v in os.environ.items() if not k.startswith("HORTUS_")}
    out |= {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HORTUS_PII_KEY": TEST_KEY,
        "HORTUS_AUDIT_KEY": TEST_AUDIT_KEY,
        "DVC_NO_ANALYTICS": "1",
        "OMP_NUM_THREADS": "1",
        "GIT_AUTHOR_NAME": "byod test",
        "GIT_AUTHOR_EMAIL": "byod@example.com",
        "GIT_COMMITTER_NAME": "byod test",
        "GIT_COMMITTER_EMAIL": "byod@example.com",
    }
    return out


def run(
    cmd: list[str], cwd: Path, timeout: int = 1500, **extra: str
) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env() | extra, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-4000:]}\n"
                    f"{done.stderr[-4000:]}")  # fmt: skip
    return done


@pytest.fixture(
    scope="session",
    params=[
        "binary",
        pytest.param("multiclass", marks=pytest.mark.slow),
        pytest.param("regression", marks=pytest.mark.slow),
    ],
)
def built(request, tmp_path_factory):
    """Return (project root, task, model name, dvc repro output) of a built BYOD project."""
    task = request.param
    base = tmp_path_factory.mktemp(f"byod-{task}")
    source = base / "loans.csv"
    make_table(task).write_csv(source)
    target = "amount" if task == "regression" else "outcome"
    name = f"loans_{task}"
    init = run([str(BIN / "hortus"), "init", "proj", "--from", str(source), "--target", target,
                "--time", "applied_at", "--name", name], cwd=base)  # fmt: skip
    root = base / "proj"
    repro = run([str(BIN / "dvc"), "repro"], cwd=root)
    return root, task, name, init.stdout + repro.stdout


def test_init_drafted_the_roles(built):
    root, task, name, _ = built
    model = yaml.safe_load((root / "hortus.yaml").read_text())["models"][name]
    assert model["task"] == task
    assert model["ids"] == ["application_id"]
    assert model["sensitive"] == ["sex"]
    assert model["segments"] == ["region", "sex", "channel"]
    assert "applicant" not in model["features"] and "application_id" not in model["features"]
    contract = yaml.safe_load((root / "contracts.yaml").read_text())["tables"]["loans"]
    assert contract["columns"]["applicant"]["pii"] == "direct"


def test_every_stage_ran(built):
    root, _, _, out = built
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert sorted(lock["stages"]) == sorted(STAGES)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    status = run([str(BIN / "dvc"), "status"], cwd=root)
    assert "up to date" in status.stdout


def test_no_row_quarantined_and_names_tokenised(built):
    root, *_ = built
    silver = json.loads((root / "reports" / "silver.json").read_text())["totals"]
    assert silver == {"landed": ROWS, "accepted": ROWS, "quarantined": 0}


def test_the_model_is_registered_as_version_1(built):
    root, _, name, _ = built
    # as an ML engineer of the project's access policy
    done = run(
        [str(BIN / "hortus"), "models", "list", "--model", name], cwd=root, HORTUS_USER="mia"
    )
    assert re.search(r"^\s*v1\s.*challenger", done.stdout, re.M), done.stdout
    assert (
        json.loads((root / "reports" / "register.json").read_text())["models"][name]["version"] == 1
    )


def test_a_model_report_is_published(built):
    root, _, name, _ = built
    assert (root / "reports" / "models" / name / "1" / "model_report.html").stat().st_size > 0


def test_gate_judged_segments_and_fairness(built):
    root, task, name, _ = built
    gate = json.loads((root / "reports" / "gate" / name / "v1.json").read_text())
    checks = {c["name"]: c for c in gate["results"]}
    segment = checks["segment_metrics_ci"]
    assert "judged" in segment["detail"] and not segment["detail"].startswith("0 segment")
    fairness = checks.get("fairness[sex]")
    assert fairness is not None, f"no fairness check across sex: {sorted(checks)}"
    assert not fairness["detail"].startswith("nothing judged"), fairness["detail"]


def test_predictions_for_every_row(built):
    root, _, name, _ = built
    score = json.loads((root / "reports" / "score.json").read_text())
    assert score["models"][name]["rows"] == ROWS
    assert score["models"][name]["table"] == f"gold.predictions_{name}"


def test_the_projects_own_tests_pass(built):
    root, *_ = built
    cmd = [str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(cmd, cwd=root, env=env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
