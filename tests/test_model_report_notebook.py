"""Model report (notebooks/model_report.py, hortus.publishing.model_card, `hortus notebooks`).

A small project is built once per module with a domain of its own (a loan model, not
the plant shop: the card is general): gold.applicants is written through the Lakehouse,
two versions of the model `risk` are trained on it and registered by the pipeline.
v1 is neither gated nor approved and its receipt is incomplete (no git, no locks, no
content hash);
v2 has a complete receipt, a passed gate run and an approval by paula, and is the
champion.  The same artifact is also registered as the champion of `recommender`, so
the model dropdown lists a registered model that hortus.yaml does not define.  The
project's hortus.yaml defines `risk` only, so the notebook's defaults ("" = the
project's default model, champion) report on risk v2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from threadpoolctl import threadpool_limits

from conftest import assert_marimo_check, notebook_outputs, with_policy
from hortus.checks.gate import GateResult, record
from hortus.checks.model_checks import CheckResult
from hortus.cli.core import main
from hortus.config import Paths
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.tables import Lakehouse, frame_hash
from hortus.models import modeling
from hortus.models.registry import CHAMPION, Receipt, Registry, sha256_file
from hortus.publishing.model_card import CardText, build_card, settings_from_params
from hortus.publishing.notebooks import check_offline, run_notebook

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "model_report.py"
MARIMO = Path(sys.executable).with_name("marimo")
TABLE = "gold.applicants"

CONTRACTS = """
version: 1
tables:
  applicants:
    layer: gold
    description: Loan applicants and whether they repaid (synthetic test data).
    owner: risk-team
    columns:
      income: {type: float, nullable: false, min: 0, description: Yearly income (kEUR).}
      tenure: {type: float, nullable: false, min: 0, description: Years with the employer.}
      region: {type: string, nullable: false, allowed: [N, S, E], sensitive: true,
               description: Sales region of the branch.}
      y:      {type: int, nullable: false, min: 0, max: 1, description: 1 if repaid.}
"""

PROJECT = """
version: 1
name: loans
contracts: contracts.yaml
models:
  risk:
    task: binary
    table: gold.applicants
    target: y
    features: [income, tenure, region]
    categorical: [region]
    segments: [region]
"""

PARAMS = """
gate:
  model_checks:
    segment_metrics: {n_boot: 100, min_segment_size: 100}
    fairness: {threshold: 0.5, min_group_size: 50, min_positives: 10}
    importance: {n_repeats: 2, max_rows: 600}
model_card:
  risk:
    owners: [risk-team (rita)]
    intended_use: Order loan applications by repayment chance for a manual review queue.
    out_of_scope: Automatic rejection of any applicant.
    limitations: [Synthetic applicants only; no time dimension.]
"""


def applicants(n: int = 3000, seed: int = 0) -> pl.DataFrame:
    """Return seeded applicants whose repayment depends on income and tenure, not region."""
    rng = np.random.default_rng(seed)
    income = rng.gamma(4.0, 10.0, n)
    tenure = rng.gamma(4.0, 2.0, n)
    region = rng.choice(["N", "S", "E"], n)
    y = (income / 10 + tenure / 2 + rng.normal(0, 1.5, n) > 8.5).astype(np.int64)
    return pl.DataFrame({"income": income, "tenure": tenure, "region": region, "y": y})


def _spec(max_iter: int) -> modeling.ModelSpec:
    return modeling.ModelSpec(
        target="y",
        features=("income", "tenure", "region"),
        categorical=("region",),
        segments=("region",),
        seed=3,
        params={"max_iter": max_iter},
    )


def _acting(paths: Paths, catalog: Catalog, user: str, model: str = "risk") -> Registry:
    return Registry(Lakehouse(paths=paths, catalog=catalog, stage="test", user=user), model)


def _pass_gate(reg: Registry, version: int, folder: Path) -> None:
    now = datetime.now(UTC)
    check = CheckResult("smoke", True, 1.0, 1.0, "recorded by the test fixture")
    record(reg, GateResult(reg.name, version, [check], now, now), folder, git_commit="c0ffee")


@pytest.fixture(scope="module")
def loans(tmp_path_factory) -> Paths:
    """Return the project described in the module docstring."""
    root = tmp_path_factory.mktemp("loans")
    with_policy(root)
    (root / "contracts.yaml").write_text(CONTRACTS, encoding="utf-8")
    (root / "params.yaml").write_text(PARAMS, encoding="utf-8")
    (root / "hortus.yaml").write_text(PROJECT, encoding="utf-8")
    (root / "notebooks").mkdir()
    shutil.copy(NOTEBOOK, root / "notebooks" / NOTEBOOK.name)  # what publish runs
    for name in ("dvc.lock", "uv.lock"):
        (root / name).write_text(f"{name} of the test project\n", encoding="utf-8")
    paths = Paths.at(root)
    catalog = Catalog.load(root / "contracts.yaml")
    writer = Lakehouse(paths=paths, catalog=catalog, stage="test", user="pipeline")
    writer.write(TABLE, applicants(), mode="overwrite", inputs={})
    reader = Lakehouse(paths=paths, catalog=catalog, stage="train", user="pipeline")
    rows = reader.read(TABLE)
    contract = catalog.get(TABLE)
    reg = _acting(paths, catalog, "pipeline")
    for version, max_iter in ((1, 20), (2, 60)):
        spec = _spec(max_iter)
        with threadpool_limits(1):  # OpenMP threads oversubscribe a shared 2-core machine
            result = modeling.train(rows, spec, contracts=[contract], curve_points=2,
                                    importance_repeats=1)  # fmt: skip
        artifact = root / "build" / f"v{version}" / "model.skops"
        sha = modeling.save_model(result.pipeline, result.signature, artifact)
        receipt = (
            Receipt.collect(root, params={"max_iter": max_iter}, tables_read=reader.reads)
            if version == 1  # not a git repository: commit unknown, dirty
            else Receipt(
                git_commit="c0ffee" + "0" * 34,
                git_dirty=False,
                dvc_lock_sha256=sha256_file(root / "dvc.lock"),
                data_md5="f2132778b7357b1bf2e2d054b81696a0.dir",
                uv_lock_sha256=sha256_file(root / "uv.lock"),
                params={"max_iter": max_iter},
                tables_read=dict(reader.reads),
                content_hashes={TABLE: frame_hash(rows)},
            )
        )
        mv = reg.register(artifact, sha256=sha, signature=result.signature.to_dict(),
                          metrics=result.metrics, receipt=receipt, spec=spec.to_dict())  # fmt: skip
        assert mv.version == version
    for model in ("risk", "recommender"):
        if model == "recommender":  # the same artifact and build, registered once more
            mv2 = reg.get(2)
            _acting(paths, catalog, "pipeline", model).register(
                paths.root / mv2.artifact_path, sha256=mv2.artifact_sha256,
                signature=mv2.signature, metrics=mv2.metrics,
                receipt=Receipt.from_dict(mv2.receipt), spec=mv2.spec,
            )  # fmt: skip
        version = 2 if model == "risk" else 1
        _pass_gate(_acting(paths, catalog, "pipeline", model), version, root / "gate")
        _acting(paths, catalog, "paula", model).approve(version, reason="report read")
        _acting(paths, catalog, "mia", model).promote(version, alias=CHAMPION)
    return paths


@pytest.fixture
def project(loans: Paths, monkeypatch) -> Paths:
    """Point the environment at the loan project, acting as the pipeline (publishes reports).

    The pipeline sees gold.applicants in the clear, as training did; a data scientist
    sees the sensitive `region` masked (see the last card test).
    """
    monkeypatch.setenv("HORTUS_ROOT", str(loans.root))
    monkeypatch.setenv("HORTUS_USER", "pipeline")
    monkeypatch.setenv("HORTUS_CONTRACTS", str(loans.root / "contracts.yaml"))
    return loans


_outputs = notebook_outputs


def _card(paths: Paths, ref: str | int, user: str = "pipeline"):
    doc = yaml.safe_load((paths.root / "params.yaml").read_text(encoding="utf-8"))
    text, config = settings_from_params(doc, "risk")
    return build_card(Lakehouse.open(paths.root, user=user), "risk", ref, text=text, config=config)


def test_card_fails_an_ungated_unapproved_version_item_by_item(project: Paths):
    """Check that v1's checklist fails on gate, four eyes and receipt, and says why."""
    card = _card(project, 1)
    failed = {i.name: i.detail for i in card.failed}
    assert set(failed) == {
        "gate_passed", "four_eyes", "receipt_complete", "clean_build", "training_data_verified"
    }  # fmt: skip
    assert "no gate run: `hortus gate 1 --model risk`" in failed["gate_passed"]
    assert "no approval recorded; the author is pipeline" in failed["four_eyes"]
    # the project has lock files but no git and no data.dvc; nothing hashed the table
    assert failed["receipt_complete"] == (
        "missing: git_commit, data_md5, content_hashes of gold.applicants"
    )
    assert "gold.applicants v0: no content hash in the receipt" in failed["training_data_verified"]
    assert not card.passed and card.summary()["verdict"] == "fail"
    # what passed is still measured: the hold-out is rebuilt from the snapshot
    assert card.recomputed["roc_auc"] == pytest.approx(card.metrics["roc_auc"], abs=1e-12)
    assert card.evaluation["holdout_rows"] == 600


def test_card_passes_a_gated_approved_version_and_is_general(project: Paths):
    """Check that v2 (champion) passes every item, with segments, fairness, importance, drift."""
    card = _card(project, CHAMPION)
    assert card.version == 2 and card.aliases == (CHAMPION,)
    assert [i.name for i in card.failed] == [], card.checklist_frame().to_dicts()
    assert card.details["algorithm"] == "sklearn HistGradientBoostingClassifier"
    assert card.details["hyperparameters"] == {"max_iter": 60}
    assert card.training.row(0, named=True)["matches"]
    assert set(card.segments["value"]) == {"N", "S", "E"}
    assert card.segments["ci_low"].is_not_null().all()
    assert set(card.fairness["attribute"]) == {"region"}  # the contract's sensitive column
    assert set(card.importance["feature"]) == {"income", "tenure", "region"}
    assert card.drift["passed"] and "hold-out" in card.drift["current"]
    assert card.approvals["approver"].to_list() == ["paula"]
    summary = json.loads(json.dumps(card.summary()))
    assert summary["verdict"] == "pass" and summary["owners"] == ["risk-team (rita)"]
    assert summary["schema"] == "hortus.model_card/1"
    # without the model_card text the documentation item fails, naming the section
    doc = yaml.safe_load((project.root / "params.yaml").read_text(encoding="utf-8"))
    _, config = settings_from_params(doc, "risk")
    bare = build_card(Lakehouse.open(project.root), "risk", 2, text=CardText(), config=config)
    assert [i.name for i in bare.failed] == ["documented"]
    assert "params.yaml model_card.risk lacks owners" in bare.failed[0].detail


def test_card_as_a_viewer_with_masked_columns_says_so(project: Paths):
    """Check that sam, who sees region masked, gets a card that says it is not faithful."""
    card = _card(project, 2, user="sam")
    assert card.viewer == "sam" and card.training["masked"].to_list() == ["region"]
    failed = {i.name: i.detail for i in card.failed}
    assert "(masked for this user: region)" in failed["training_data_verified"]
    assert any("gold.applicants as sam sees it differs" in n for n in card.notes)


def test_card_without_training_data_falls_back_to_the_gate_record(project: Paths):
    """Check that a version whose receipt names no table is reported from its gate run."""
    catalog = Catalog.load(project.root / "contracts.yaml")
    source = Registry(Lakehouse.open(project.root), "risk").get(2)
    legacy = _acting(project, catalog, "pipeline", "legacy")
    legacy.register(
        project.root / source.artifact_path, sha256=source.artifact_sha256,
        signature=source.signature, metrics=source.metrics, spec=source.spec,
        receipt=Receipt.collect(project.root, params={"max_iter": 60}, tables_read={}),
    )  # fmt: skip
    now = datetime.now(UTC)
    unfair = CheckResult(
        "fairness[region]", False, 0.61, 0.8, "selection rate ratio 0.61 < 0.8",
        stats={"demographic_parity": {"judged": True, "ratio": 0.61}},
    )  # fmt: skip
    segments = CheckResult("segment_metrics_ci", True, 0.9, 0.85, "3 segment value(s) judged")
    result = GateResult("legacy", 1, [segments, unfair], now, now)
    record(legacy, result, project.root / "gate", git_commit="c0ffee")
    card = build_card(Lakehouse.open(project.root), "legacy", 1)
    failed = {i.name: i.detail for i in card.failed}
    assert card.evaluation == {} and card.recomputed is None and card.segments is None
    assert any("hold-out could not be rebuilt (no readable training table" in n for n in card.notes)
    assert "selection rate ratio 0.61 < 0.8 (as recorded by the gate)" in failed["fairness"]
    assert failed["drift"] == "drift since training could not be measured"
    assert failed["training_data_verified"] == "the receipt lists no table read"
    assert "3 feature(s) not classified by any contract" in failed["no_pii_features"]
    assert "segments_ok" not in failed  # the gate's segment check passed
    assert "gate_passed" in failed and "fairness[region]" in failed["gate_passed"]


def test_card_shows_the_gate_comparison_with_the_champion(project: Paths):
    """Check that a gate's paired comparison with the champion reaches the model card."""
    from hortus.checks._champion import champion_comparison
    from hortus.publishing.report_views import comparison_frame

    catalog = Catalog.load(project.root / "contracts.yaml")
    lh = Lakehouse.open(project.root)
    risk = Registry(lh, "risk")
    compared = _acting(project, catalog, "pipeline", "compared")
    for ref in (1, 2):
        mv = risk.get(ref)
        compared.register(
            project.root / mv.artifact_path, sha256=mv.artifact_sha256, signature=mv.signature,
            metrics=mv.metrics, spec=mv.spec, receipt=Receipt.from_dict(mv.receipt),
        )  # fmt: skip
    (cand, _), (champ, _) = compared.load(2), compared.load(1)
    spec = modeling.ModelSpec(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in compared.get(2).spec.items()})  # fmt: skip
    holdout = modeling.time_split(lh.read(TABLE), spec)[1]
    check = champion_comparison(cand, spec, champ, spec, holdout, champion_version=1,
                                min_segment_size=50)  # fmt: skip
    now = datetime.now(UTC)
    record(compared, GateResult("compared", 2, [check], now, now, baseline_version=1),
           project.root / "gate" / "compared", git_commit="c0ffee")  # fmt: skip
    card = build_card(lh, "compared", 2)
    frame, title = comparison_frame(card.gate_checks)
    assert title.startswith("Compared with champion v1 on roc_auc")
    overall = frame.filter(pl.col("segment") == "overall").row(0, named=True)
    assert overall["candidate"] == pytest.approx(check.stats["candidate"])
    assert overall["ci_low"] <= overall["difference"] <= overall["ci_high"]


def test_model_report_notebook_passes_marimo_check():
    """Check that `marimo check` finds nothing wrong with notebooks/model_report.py."""
    assert_marimo_check(NOTEBOOK)


def test_model_report_runs_as_script_with_its_defaults(project: Paths):
    """Check that the report runs as a plain script (default model, champion), writing nothing."""
    done = subprocess.run(
        [sys.executable, str(NOTEBOOK)],
        capture_output=True,
        text=True,
        env=os.environ | {"MARIMO_SKIP_UPDATE_CHECK": "1"},
        cwd=project.root,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (project.root / "reports").exists()


def test_publish_writes_report_and_card_and_the_version_changes_the_report(project, capsys):
    """Check publish (alias -> 2, pass) against a papermill run of v1 (fail): versions differ."""
    root = ["--root", str(project.root)]
    assert main([*root, "notebooks", "publish", "champion", "--model", "risk"]) == 0
    out = capsys.readouterr().out
    folder = project.root / "reports" / "models" / "risk" / "2"
    assert "published the model report of risk v2 (champion)" in out
    assert "governance checklist: PASS" in out and str(folder / "card.json") in out
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    assert card["version"] == 2 and card["verdict"] == "pass" and card["failed"] == []
    assert card["report"] == {"html": "model_report.html", "notebook": "model_report.ipynb"}
    page = (folder / "model_report.html").read_text(encoding="utf-8")
    check_offline(page, source=folder / "model_report.html")
    assert "<script" not in page.lower()
    for title in ("ROC AUC per segment of risk v2", "Permutation importance of risk v2",
                  "Selection rate by group", "Drift per column since training"):  # fmt: skip
        assert title in page
    assert "<svg" in page or page.count("chart data (static)") >= 4
    assert "Governance checklist: PASS" in page  # the verdict callout, rendered statically
    v2 = _outputs(folder / "model_report.ipynb")
    v1 = _outputs(
        run_notebook(
            NOTEBOOK,
            project.root / "v1" / "model_report.ipynb",
            {"model": "risk", "version": 1},
            cwd=project.root,
        )  # fmt: skip
    )
    reg = Registry(Lakehouse.open(project.root), "risk")
    for text, version in ((v1, 1), (v2, 2)):
        assert f"Model report: risk v{version}" in text
        assert "A binary model" in text and "positive (base rate" in text
        assert f'"max_iter": {20 if version == 1 else 60}' in text
        assert f"{reg.get(version).metrics['log_loss']:.6f}"[:7] in text
    assert "Governance checklist: FAIL: 5 of 11 items failed" in v1
    assert "gate_passed, four_eyes, receipt_complete, clean_build, training_data_verified" in v1
    assert "Governance checklist: PASS" in v2 and "FAIL" not in v2.split("Governance checklist")[1]
    assert not (project.root / "v1" / "card.json").exists()  # no card_path, nothing written


def test_publish_unknown_version_exits_2(project: Paths, capsys):
    """Check that an unknown version is refused with exit 2 before anything runs."""
    code = main(["--root", str(project.root), "notebooks", "publish", "7", "--model", "risk"])
    assert code == 2
    assert "model risk has no version 7; known versions: v1, v2" in capsys.readouterr().err
    assert not (project.root / "reports" / "models" / "risk" / "7").exists()
