"""The training notebook (notebooks/train.py): marimo check, script run, papermill parameters.

A small plant-shop project is built once per module through the real stages
(simulate, ingest, silver, features build), so gold.training_set has every
feature the notebook trains on; params.yaml keeps the model small so each run
takes seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import assert_marimo_check, notebook_outputs, with_policy
from hortus.cli.core import main
from hortus.config import Paths
from hortus.pipeline import stages
from hortus.publishing.notebooks import check_offline, publish_notebook, run_notebook

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "train.py"


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """Return a project root with a built feature store and training set."""
    root = tmp_path_factory.mktemp("trainshop")
    with_policy(root)
    (root / "notebooks").mkdir()
    shutil.copy(NOTEBOOK, root / "notebooks" / "train.py")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["simulate"] |= {"users": 400, "days": 12, "faults": [], "drift": []}
    params["features"] |= {"label_horizon_days": 3, "skew_sample": 50}
    params["train"] |= {"max_iter": 20}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HORTUS_ROOT", str(root))
        mp.setenv("HORTUS_PII_KEY", "train-notebook-test-key")
        for argv in (["simulate", "--from-params", "--quiet"], ["ingest"], ["silver"]):
            assert main(argv) == 0, argv
        # the stage itself (the CLI's summary printing is not what this module tests)
        stages.STAGES["features"](Paths.at(root), params["features"])
    return root


def _env(root: Path) -> dict[str, str]:
    return os.environ | {
        "HORTUS_ROOT": str(root),
        "HORTUS_USER": "pipeline",
        "MARIMO_SKIP_UPDATE_CHECK": "1",
        "OMP_NUM_THREADS": "1",
    }


def test_train_notebook_passes_marimo_check():
    """Check that `marimo check` finds nothing wrong with notebooks/train.py."""
    assert_marimo_check(NOTEBOOK)


def test_train_notebook_runs_as_script_and_writes_nothing(shop: Path):
    """Check that the notebook trains as a plain script and leaves no model behind."""
    done = subprocess.run(
        [sys.executable, str(shop / "notebooks" / "train.py")],
        capture_output=True,
        text=True,
        env=_env(shop),
        cwd=shop,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(shop.rglob("model.skops"))  # output_dir "" writes nothing


def test_papermill_hold_out_share_reaches_the_metrics(shop: Path, monkeypatch):
    """Check that an injected holdout_fraction visibly changes the evaluated rows."""
    monkeypatch.setenv("HORTUS_ROOT", str(shop))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    executed, page = publish_notebook(
        shop, "train", {"holdout_fraction": 0.5}, out_dir=shop / "out", timeout=600
    )
    text = notebook_outputs(executed)
    found = re.search(r"Trained on ([\d,]+) rows before .*?evaluated on ([\d,]+) later rows", text)
    assert found, text[:2000]
    train, test = (int(g.replace(",", "")) for g in found.groups())
    assert 0.4 < test / (train + test) < 0.6  # the default (0.25) would give about a quarter
    html = page.read_text(encoding="utf-8")
    check_offline(html, source=page)
    assert "Learning curve (ROC AUC)" in html and "<script" not in html
    assert "Train recommender (ranking) of project plantshop" in text


def test_papermill_run_writes_the_outputs_and_the_same_model_as_the_plain_spec(
    shop: Path, monkeypatch
):
    """Check that output_dir gets every file, run.json names the model, and the bytes match.

    The spec the notebook builds from hortus.yaml (`spec_for`) must train the very
    model the plant shop's hand-written spec trained before projects existed.
    """
    import json

    from hortus.domains.plantshop.features import CATEGORICAL, FEATURES
    from hortus.lakehouse.tables import Lakehouse
    from hortus.models import modeling
    from hortus.params import load_section

    monkeypatch.setenv("HORTUS_ROOT", str(shop))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = shop / "reports" / "train" / "recommender"
    run_notebook(
        shop / "notebooks" / "train.py",
        shop / "out" / "train.ipynb",
        {"model": "recommender", "output_dir": str(out)},
        cwd=shop,
        timeout=600,
    )
    for name in ("model.skops", "learning_curve.csv", "importance.csv", "segment_metrics.csv",
                 "metrics.json", "run.json"):  # fmt: skip
        assert (out / name).is_file(), name
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert (run["model_name"], run["task"], run["table"]) == (
        "recommender", "ranking", "gold.training_set"
    )  # fmt: skip
    train = load_section(shop / "params.yaml", "train")
    spec = modeling.ModelSpec(
        target="label",
        features=tuple(FEATURES.feature_names),
        categorical=tuple(CATEGORICAL),
        time="ts",
        group="rec_id",
        segments=("user_profile__region", "user_profile__age_band", "user_profile__device"),
        k=int(train["k"]),
        holdout_fraction=float(train["holdout_fraction"]),
        seed=int(train["seed"]),
        estimator=train["estimator"],
        threads=int(train["threads"]),
        params={n: train[n] for n in ("max_iter", "learning_rate", "max_leaf_nodes",
                                      "l2_regularization", "min_samples_leaf")},
    )  # fmt: skip
    assert run["spec"] == spec.to_dict()
    lh = Lakehouse.open(shop, stage="test")
    result = modeling.train(
        lh.read("gold.training_set"), spec, contracts=[lh.catalog.get("gold.training_set")]
    )
    sha = modeling.save_model(result.pipeline, result.signature, shop / "plain" / "model.skops")
    assert sha == run["sha256"]
