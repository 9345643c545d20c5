"""The project definition (hortus.yaml): loading, refusals, and what it resolves to."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from hortus.lakehouse.catalog import Catalog
from hortus.project.definition import (
    Project,
    ProjectError,
    predictions_contract,
    resolve_features,
    spec_for,
)
from hortus.serving.batch import select_rows

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = """
version: 1
domain: loans
shop_opened: "2020-01-01T00:00:00Z"
tables:
  loans:
    layer: silver
    owner: credit
    primary_key: [loan_id]
    landing: {glob: "loans/*.csv", format: csv}
    columns:
      loan_id: {type: string, nullable: false}
      applicant: {type: string, nullable: true, pii: direct}
      region: {type: string, nullable: false, allowed: [N, S]}
      sex: {type: string, nullable: true, sensitive: true}
      income: {type: float, nullable: true, min: 0}
      applied_at: {type: datetime, nullable: false}
      approved: {type: int, nullable: true, min: 0, max: 1}
"""


def _project(tmp_path: Path, **model_over) -> Path:
    (tmp_path / "contracts.yaml").write_text(CONTRACTS, encoding="utf-8")
    model = {
        "task": "binary",
        "table": "silver.loans",
        "target": "approved",
        "features": "all",
        "time": "applied_at",
        "segments": ["region"],
        "ids": ["loan_id"],
    } | model_over
    doc = {"name": "loans", "contracts": "contracts.yaml", "models": {"approval": model}}
    (tmp_path / "hortus.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return tmp_path


def test_plantshop_definition_validates_against_its_catalog():
    """Check that the repository's hortus.yaml loads and names only existing tables/columns."""
    project = Project.load(ROOT)
    project.validate(Catalog.load(root=ROOT))
    assert project.model().name == project.default_model
    assert project.feature_set() is not None


def test_plantshop_spec_matches_the_feature_set_and_declared_roles():
    """Check that the plant shop's spec takes every feature in feature-set order."""
    project = Project.load(ROOT)
    model = project.model()
    fs = project.feature_set()
    spec = spec_for(project, model, Catalog.load(root=ROOT), {"k": 5, "seed": 42})
    assert spec.features == tuple(fs.feature_names)
    assert spec.task == "ranking" and spec.group == model.group and spec.time == model.time
    assert set(spec.categorical) <= set(spec.features)


def test_generic_model_takes_all_columns_but_roles_and_direct_pii(tmp_path):
    """Check that `features: all` leaves out target, time, ids and direct identifiers."""
    root = _project(tmp_path)
    project = Project.load(root)
    catalog = Catalog.load(root=root)
    project.validate(catalog)
    features, categorical, sensitive = resolve_features(project.model(), catalog, None)
    assert features == ("region", "sex", "income")
    assert categorical == ("region", "sex")
    assert sensitive == ("sex",)


def test_generic_predictions_table_gets_a_contract(tmp_path):
    """Check that a model without a scoring hook gets a gold.predictions_<model> contract."""
    root = _project(tmp_path)
    catalog = Catalog.load(root=root)
    contract = catalog.get("gold.predictions_approval")
    assert contract.primary_key == ("loan_id",)
    assert {"score", "prediction", "model_version"} <= set(contract.column_names)
    direct = predictions_contract(Project.load(root).model(), catalog.get("silver.loans"))
    assert direct.column("prediction").type == "string"


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"task": "clustering"}, r"models\.approval\.task: unknown task 'clustering'"),
        ({"table": "silver.nope"}, r"models\.approval\.table: no table 'silver\.nope'"),
        ({"target": "approve"}, r"models\.approval\.target: no column 'approve'"),
        ({"segments": ["regoin"]}, r"models\.approval\.segments: no column 'regoin'"),
        ({"colour": "red"}, r"models\.approval: unknown key\(s\) colour"),
        ({"task": "ranking"}, r"models\.approval\.group is required for a ranking model"),
    ],
)
def test_definition_naming_unknown_things_is_refused(tmp_path, over, match):
    """Check that an unknown task, table, column or key is refused naming the key."""
    root = _project(tmp_path, **over)
    with pytest.raises(ProjectError, match=match):
        Project.load(root).validate(Catalog.load(root=root))


def test_unknown_top_level_key_and_missing_file_are_refused(tmp_path, monkeypatch):
    """Check that a typo at the top level and a folder without hortus.yaml are refused."""
    root = _project(tmp_path)
    doc = yaml.safe_load((root / "hortus.yaml").read_text()) | {"modles": {}}
    (root / "hortus.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ProjectError, match=r"unknown key\(s\) modles"):
        Project.load(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(empty)
    with pytest.raises(ProjectError, match="hortus init"):
        Project.load(empty)


def test_scoring_select_picks_unlabelled_or_latest_rows(tmp_path):
    """Check that scoring.select all / unlabelled / latest choose the documented rows."""
    frame = pl.DataFrame({"approved": [1, None, 0], "applied_at": [1, 3, 3]})
    for select, expected in (("all", 3), ("unlabelled", 1), ("latest", 2)):
        root = _project(tmp_path, scoring={"select": select})
        assert select_rows(frame, Project.load(root).model()).height == expected


def test_opening_the_lakehouse_refuses_a_definition_naming_an_unknown_column(tmp_path):
    """Check that loading the catalog (every Lakehouse.open) validates the definition."""
    from hortus.lakehouse.tables import Lakehouse

    root = _project(tmp_path, segments=["regoin"])
    (root / "access_policy.yaml").write_text((ROOT / "access_policy.yaml").read_text())
    with pytest.raises(ProjectError, match=r"models\.approval\.segments: no column 'regoin'"):
        Lakehouse.open(root)
