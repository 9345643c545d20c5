"""Tests of the promotion gate: data checks, the recorded result, and promotion refusal."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from hortus.checks import gate as g
from hortus.checks.model_checks import ModelCheckConfig
from hortus.cli.core import main
from hortus.errors import HortusError
from hortus.features.store import SkewReport
from hortus.lakehouse.contracts import Contract
from hortus.lakehouse.tables import Lakehouse
from hortus.models import modeling
from hortus.models.registry import CHAMPION, GATES, GateRequired, Receipt, Registry

CONTRACT = Contract.from_dict(
    "applicants",
    {
        "layer": "gold",
        "owner": "risk",
        "columns": {
            "income": {"type": "float", "nullable": False, "min": 0},
            "tenure": {"type": "float", "nullable": False, "min": 0},
            "region": {"type": "string", "nullable": False, "allowed": ["N", "S", "E"]},
            "y": {"type": "int", "nullable": False, "min": 0, "max": 1},
        },
    },
)


def applicants(n: int = 3000, seed: int = 0, *, shift: float = 0.0) -> pl.DataFrame:
    """Return a seeded applicant table whose label depends on income and tenure."""
    rng = np.random.default_rng(seed)
    income = rng.gamma(4.0, 10.0, n) + shift
    tenure = rng.gamma(4.0, 2.0, n)
    region = rng.choice(["N", "S", "E"], n)
    y = (income / 10 + tenure / 2 + rng.normal(0, 1.5, n) > 8.5).astype(np.int64)
    return pl.DataFrame({"income": income, "tenure": tenure, "region": region, "y": y})


SPEC = modeling.ModelSpec(
    target="y",
    features=("income", "tenure", "region"),
    categorical=("region",),
    segments=("region",),
    seed=3,
    params={"max_iter": 30},
)


@pytest.fixture(scope="module")
def trained():
    """Return a small model trained on applicant data."""
    return modeling.train(applicants(), SPEC, contracts=[CONTRACT], curve_points=2)


def test_contract_check_passes_clean_rows_and_names_the_broken_rule():
    """Check that the gate's contract check reuses the ingest rules and names the violation."""
    good = g.contract_check(applicants(200), CONTRACT)
    assert good.passed and good.value == 0
    bad_rows = applicants(200).with_columns(
        pl.when(pl.int_range(pl.len()) < 7).then(-1.0).otherwise(pl.col("income")).alias("income")
    )
    bad = g.contract_check(bad_rows, CONTRACT)
    assert not bad.passed and bad.value == 7 and bad.threshold == 0
    assert "7 of 200 rows of gold.applicants break its contract" in bad.detail
    assert "income" in bad.detail


def test_drift_check_fails_on_shifted_features_and_on_a_critical_target():
    """Check that drift gates on the share of drifted features and on critical columns."""
    ref, same = applicants(4000, 1), applicants(4000, 2)
    assert g.drift_check(ref, same, ["income", "region", "y"]).passed
    shifted = applicants(4000, 2, shift=25.0)
    res = g.drift_check(ref, shifted, ["income", "region"], max_drifted_share=0.4)
    assert not res.passed and "income" in res.detail and res.threshold == 0.4
    flipped = same.with_columns((1 - pl.col("y")).alias("y"))
    crit = g.drift_check(ref, flipped, ["income", "region", "y"], critical=["y"])
    assert not crit.passed and "critical column(s) drifted: y" in crit.detail


def test_pii_check_fails_on_a_review_table_with_emails_and_cards():
    """Check that e-mails and card numbers in a table declared free of PII fail the gate."""
    from hortus.checks.pii_scan import scan_frame

    contract = Contract.from_dict(
        "reviews",
        {"layer": "gold", "owner": "shop", "columns": {"text": {"type": "string"}}},
    )
    reviews = pl.DataFrame(
        {"text": ["lovely fern", "mail me at ann.lee@example.com", "card 4111 1111 1111 1111"]}
    )
    res = g.pii_check(scan_frame(reviews, table="gold.reviews", contract=contract))
    assert not res.passed and res.value == 2
    assert "EMAIL" in res.detail and "CARD" in res.detail
    assert "ann.lee@example.com" not in json.dumps(res.to_dict())  # never the raw value
    clean = scan_frame(reviews.head(1), table="gold.reviews", contract=contract)
    assert g.pii_check(clean).passed


def test_skew_check_reports_each_mismatched_feature():
    """Check that a skew report with a mismatch fails the gate, naming the feature."""
    by_feature = pl.DataFrame(
        {"feature": ["a", "b"], "compared": [10, 10], "mismatches": [0, 3],
         "max_abs_diff": [0.0, 2.5], "example": [None, "u1/p1: 1.0 vs 3.5"]}
    )  # fmt: skip
    at = datetime(2025, 3, 1, tzinfo=UTC)
    res = g.skew_check(SkewReport(at=at, entities=10, by_feature=by_feature))
    assert not res.passed and res.value == 1 and "b" in res.detail
    ok = by_feature.with_columns(pl.lit(0).alias("mismatches"))
    assert g.skew_check(SkewReport(at=at, entities=10, by_feature=ok)).passed


def test_gate_config_maps_params_and_refuses_unknown_keys():
    """Check that the params section maps onto the config and typos are refused by name."""
    cfg = g.GateConfig.from_dict(
        {"drift": {"max_drifted_share": 0.2, "critical": ["y"], "alpha": 0.01},
         "skew": {"sample": 50}, "model_checks": {"fairness": {"min_ratio": 0.8}}}
    )  # fmt: skip
    assert (cfg.max_drifted_share, cfg.critical, cfg.drift) == (0.2, ("y",), {"alpha": 0.01})
    assert cfg.skew_sample == 50 and cfg.model.fairness == {"min_ratio": 0.8}
    with pytest.raises(HortusError, match=r"gate: unknown key\(s\) \['drfit'\]"):
        g.GateConfig.from_dict({"drfit": {}})
    with pytest.raises(HortusError, match=r"gate.model_checks.fairness: unknown key"):
        g.GateConfig.from_dict({"model_checks": {"fairness": {"ratio": 0.8}}})


def _register(lakehouse, trained, tmp_path) -> Registry:
    sha = modeling.save_model(trained.pipeline, trained.signature, tmp_path / "m.skops")
    reg = Registry(lakehouse, "risk")
    reg.register(
        tmp_path / "m.skops", sha256=sha, signature=trained.signature.to_dict(),
        metrics=trained.metrics, receipt=Receipt.collect(tmp_path, params={}, tables_read={}),
        spec=SPEC.to_dict(),
    )  # fmt: skip
    return reg


def _acting_as(lakehouse, user: str) -> Registry:
    """Return the `risk` registry acting as a user of access_policy.yaml."""
    lh = Lakehouse(paths=lakehouse.paths, catalog=lakehouse.catalog, stage="test", user=user)
    return Registry(lh, "risk")


def test_promote_refuses_a_failed_gate_listing_every_failed_check(lakehouse, trained, tmp_path):
    """Check the gate end to end: run, record, refuse promotion with each failure, then allow."""
    reg = _register(lakehouse, trained, tmp_path)  # registered (and gated) by the pipeline
    _acting_as(lakehouse, "paula").approve(1)  # four eyes: an approver who is not the author
    mia = _acting_as(lakehouse, "mia")  # promotes: holds the promote grant
    with pytest.raises(GateRequired, match=r"v1 has no gate result: run `hortus gate 1`"):
        mia.promote(1, alias=CHAMPION)
    holdout = applicants(1500, 9)
    pipeline, signature = reg.load(1)
    spec = modeling.ModelSpec(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in reg.get(1).spec.items()})  # fmt: skip
    config = g.GateConfig(
        model=ModelCheckConfig.from_dict(
            {"efficiency": {"rows": 5}, "importance": {"max_share": 0.8}}
        )
    )
    bad_data = holdout.with_columns(pl.lit("W").alias("region"))  # unseen in training
    failed = g.run_gate(
        model_name="risk", version=1, pipeline=pipeline, signature=signature, spec=spec,
        evaluation=holdout, config=config, serving=bad_data.drop("y"),
        data_checks=[g.contract_check(bad_data, CONTRACT)],
    )  # fmt: skip
    assert not failed.passed
    names = {c.name for c in failed.failed}
    assert {"contract[gold.applicants]", "schema_conflicts"} <= names
    md = g.record(reg, failed, tmp_path / "gate", git_commit="abc")
    assert "FAILED" in md.read_text() and "**FAIL**" in md.read_text()
    doc = json.loads((tmp_path / "gate" / "v1.json").read_text())
    assert doc["passed"] is False and set(doc["failed"]) == names
    with pytest.raises(GateRequired) as err:
        mia.promote(1, alias=CHAMPION)
    for name in names:  # every failed check, with its value and threshold
        assert f"- {name}: value" in str(err.value) and "threshold" in str(err.value)
    assert {c["name"] for c in err.value.failed} == names
    assert CHAMPION not in reg.aliases()
    mia.promote(1, alias="challenger")  # other aliases need no gate
    passed = g.run_gate(
        model_name="risk", version=1, pipeline=pipeline, signature=signature, spec=spec,
        evaluation=holdout, config=config, data_checks=[g.contract_check(holdout, CONTRACT)],
    )  # fmt: skip
    assert passed.passed, [c.summary() for c in passed.failed]
    g.record(reg, passed, tmp_path / "gate", git_commit="abc")
    assert set(mia.promote(1, alias=CHAMPION).aliases) == {CHAMPION, "challenger"}
    runs = lakehouse.read(GATES).sort("finished_at")
    assert runs["passed"].to_list() == [False, True]


def test_cli_promote_prints_the_failed_checks(lakehouse, trained, tmp_path, capsys, monkeypatch):
    """Check that `hortus models promote` refuses a failed gate with exit 2 and the reasons."""
    reg = _register(lakehouse, trained, tmp_path)
    _acting_as(lakehouse, "paula").approve(1)
    monkeypatch.setenv("HORTUS_USER", "mia")  # the CLI acts as an ML engineer
    now = datetime.now(UTC)
    from hortus.checks.model_checks import CheckResult

    bad = CheckResult("fairness[region]", False, 0.61, 0.8, "selection rate ratio 0.61 < 0.8")
    g.record(reg, g.GateResult("risk", 1, [bad], now, now), tmp_path / "gate", git_commit="abc")
    root = ["--root", str(lakehouse.paths.root)]
    code = main([*root, "models", "promote", "1", "--model", "risk"])
    err = capsys.readouterr().err
    assert code == 2
    assert "failed its gate" in err and "fairness[region]: value 0.61, threshold 0.8" in err


def test_gate_reads_the_primary_metric_of_the_spec_task(trained):
    """Check that a spec without a group is binary and its gate metric is ROC AUC, not NDCG."""
    assert SPEC.task == "binary"
    assert g.primary_metric(SPEC) == ("roc_auc", True)
    assert "ndcg_at_k" not in trained.metrics and trained.metrics["roc_auc"] > 0.8
