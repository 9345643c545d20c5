"""The model card of multiclass and regression models (model_card follows the task).

A small project holds two gold tables of make_classification / make_regression data
(3,000 rows, a sensitive region and an hourly time column): a plant-family classifier
(multiclass) and a basket-value regressor.  Each is trained, registered by the pipeline
and its card is built; the card must show the task's metrics (no @k metrics), its
segment metric and fairness as the gate judges it for that task.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
from sklearn.datasets import make_classification, make_regression
from threadpoolctl import threadpool_limits

from conftest import with_policy
from hortus.checks.gate import GateConfig
from hortus.checks.model_checks import ModelCheckConfig
from hortus.config import Paths
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.tables import Lakehouse
from hortus.models import modeling
from hortus.models.registry import Receipt, Registry
from hortus.publishing.model_card import build_card

COLUMNS = """
      x0: {type: float, nullable: false, description: Signal.}
      x1: {type: float, nullable: false, description: Signal.}
      x2: {type: float, nullable: false, description: Signal.}
      x3: {type: float, nullable: false, description: Noise.}
      region: {type: string, nullable: false, allowed: [north, south, east, west],
               sensitive: true, description: Region of the buyer.}
      ts: {type: datetime, nullable: false, description: When the row was observed.}
"""
CONTRACTS = f"""
version: 1
tables:
  families:
    layer: gold
    description: Plant family bought (synthetic).
    owner: ml
    columns:{COLUMNS}
      y: {{type: string, nullable: false, allowed: [cactus, fern, palm], description: Family.}}
  baskets:
    layer: gold
    description: Basket values (synthetic).
    owner: ml
    columns:{COLUMNS}
      y: {{type: float, nullable: false, description: Basket value (EUR).}}
"""
N = 3000


def rows(task: str) -> pl.DataFrame:
    """Return the table of a task: x0..x3, region, ts (hourly, UTC) and y."""
    if task == "regression":
        x, y = make_regression(n_samples=N, n_features=4, n_informative=3, noise=5.0,
                               shuffle=False, random_state=1)  # fmt: skip
        target = pl.Series("y", y + 300.0)
    else:
        x, y = make_classification(n_samples=N, n_features=4, n_informative=3, n_redundant=0,
                                   n_classes=3, n_clusters_per_class=1, random_state=1)  # fmt: skip
        target = pl.Series("y", np.asarray(["cactus", "fern", "palm"])[y])
    start = datetime(2025, 1, 1, tzinfo=UTC)
    region = np.random.default_rng(2).choice(["north", "south", "east", "west"], N)
    return pl.DataFrame({f"x{i}": x[:, i] for i in range(4)}).with_columns(
        region=pl.Series(region),
        ts=pl.datetime_range(start, pl.lit(start).dt.offset_by(f"{N - 1}h"), "1h", eager=True,
                             time_unit="us"),
        y=target,
    )  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Paths, Catalog]:
    """Return a project with both tables written and both models registered."""
    root = tmp_path_factory.mktemp("tasks")
    with_policy(root)
    (root / "contracts.yaml").write_text(CONTRACTS, encoding="utf-8")
    paths, catalog = Paths.at(root), Catalog.load(root / "contracts.yaml")
    for task, table in (("multiclass", "gold.families"), ("regression", "gold.baskets")):
        writer = Lakehouse(paths=paths, catalog=catalog, stage="test", user="pipeline")
        writer.write(table, rows(task), mode="overwrite", inputs={})
        reader = Lakehouse(paths=paths, catalog=catalog, stage="train", user="pipeline")
        data = reader.read(table)
        spec = modeling.ModelSpec(
            target="y", features=("x0", "x1", "x2", "x3", "region"), categorical=("region",),
            time="ts", segments=("region",), seed=1, params={"max_iter": 30}, task=task,
        )  # fmt: skip
        with threadpool_limits(1):
            result = modeling.train(data, spec, contracts=[catalog.get(table)], curve_points=1,
                                    importance_repeats=1)  # fmt: skip
        artifact = root / "build" / task / "model.skops"
        sha = modeling.save_model(result.pipeline, result.signature, artifact)
        Registry(reader, task).register(
            artifact, sha256=sha, signature=result.signature.to_dict(), metrics=result.metrics,
            receipt=Receipt.collect(root, params={}, tables_read=reader.reads),
            spec=spec.to_dict(),
        )  # fmt: skip
    return paths, catalog


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_card_of_a_non_ranking_model_shows_the_task_sections(project, task):
    """Check that the card shows the task's metrics, segment metric and fairness, no @k."""
    paths, catalog = project
    lh = Lakehouse(paths=paths, catalog=catalog, stage="test", user="pipeline")
    config = GateConfig(
        model=ModelCheckConfig.from_dict(
            {
                "segment_metrics": {"metric": "roc_auc", "n_boot": 50, "min_segment_size": 100},
                "fairness": {"top_k": 5, "min_group_size": 100},
                "importance": {"n_repeats": 1},
            }
        )  # fmt: skip
    )
    with threadpool_limits(1):
        card = build_card(lh, task, 1, config=config)
    assert card.details["task"] == task and card.details["k"] is None
    assert card.details["primary_metric"] == ("f1_macro" if task == "multiclass" else "rmse")
    for metrics in (card.metrics, card.recomputed):
        assert not any(k.endswith("_at_k") for k in metrics)
        assert card.details["primary_metric"] in metrics
    assert card.recomputed == pytest.approx(card.metrics)
    assert card.segments is not None and (card.segments["status"] == "ok").all()
    items = {i.name: i for i in card.checklist}
    assert items["segments_ok"].passed, items["segments_ok"].detail
    assert f"'roc_auc' does not fit a {task} model" in items["segments_ok"].detail
    # judged (150 rows per region and class in the hold-out: the verdict itself is noisy)
    assert "nothing judged" not in items["fairness"].detail
    assert f"['top_k'] do not apply to a {task} model" in items["fairness"].detail
    assert card.fairness is not None
    if task == "multiclass":
        assert set(card.fairness["class"]) == {"cactus", "fern", "palm"}
        assert card.evaluation["class_counts"].keys() == {"cactus", "fern", "palm"}
    else:
        assert {"mae", "mean_prediction"} <= set(card.fairness.columns)
        assert card.evaluation["mean_target"] > 0 and "positives" not in card.evaluation
