"""The searchable catalog and lineage as a graph (issue 19, items 4 and 5).

A small shop is taken through ingest, silver and the offline feature store; a model
version is registered with the receipt of what it was trained on, and its predictions
are written as the score stage writes them (`model=` names the version).  Lineage must
then answer what the pipeline did: silver.users comes only from bronze.users, the
recommendations name the model version, the model names its tables.
"""

from __future__ import annotations

import contextlib
import io
import json

import polars as pl
import pytest

from conftest import TEST_KEY, with_policy
from hortus.cli.core import main
from hortus.config import Paths
from hortus.errors import ContractError, TableNotFound
from hortus.governance.access import AccessDenied
from hortus.governance.lineage import answer, build
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.catalog_search import (
    column_tags,
    filter_tables,
    search,
    suggest,
    table_tags,
    tags_index,
)
from hortus.lakehouse.contracts import Contract
from hortus.lakehouse.tables import Lakehouse
from hortus.models.registry import Registry
from hortus.publishing.notebooks import check_offline
from test_registry import SIGNATURE, _artifact, _receipt

SMALL = {"seed": 5, "days": 10, "users": 120, "plants": 25}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Paths:
    """Build the small shop, register recommender v1 and write its predictions."""
    from hortus.domains.plantshop.features import FEATURES
    from hortus.domains.plantshop.simulate import SimConfig, simulate
    from hortus.features import store as feature_store
    from hortus.lakehouse import silver
    from hortus.lakehouse.ingest import ingest

    paths = Paths.at(tmp_path_factory.mktemp("lineage"))
    with_policy(paths.root)
    simulate(SimConfig(**SMALL), paths.data)
    lh = Lakehouse(paths=paths, catalog=Catalog.load(), stage="test", user="pipeline")
    ingest(paths.data, lh)
    silver.build(lh, silver.SilverOptions(key=TEST_KEY.encode()))
    feature_store.build_offline(lh, FEATURES)
    trained_on = {g.table: lh.version(g.table) for g in FEATURES.groups}
    path, sha = _artifact(paths.root / "build", 1)
    Registry(lh, "recommender").register(
        path, sha256=sha, signature=SIGNATURE, metrics={"roc_auc": 0.7},
        receipt=_receipt(1, tables_read=trained_on), alias="challenger",
    )  # fmt: skip
    # what the score stage does for one model: its scoring's reads only, the version named
    lh.reads.clear()
    lh.read("silver.plants")
    for g in FEATURES.groups[:2]:
        lh.read(g.table)
    empty = pl.DataFrame(schema=lh.catalog.get("gold.recommendations").schema)
    features = [t.removeprefix("gold.fs_") for t in lh.reads if t.startswith("gold.fs_")]
    lh.write("gold.recommendations", empty, mode="overwrite", inputs=dict(lh.reads),
             model="recommender@v1", features=features)  # fmt: skip
    lh.close()
    return paths


def _from(result: dict, direction: str, depth: int | None = None) -> set[str]:
    return {e["from" if direction == "upstream" else "to"] for e in result[direction]
            if depth is None or e["depth"] == depth}  # fmt: skip


def test_silver_users_comes_only_from_bronze_users(built):
    """Check that per-write lineage no longer names every table the silver stage read."""
    lh = Lakehouse.open(built.root, user="pipeline")
    result = answer(lh, "silver.users", downstream=False)
    assert _from(result, "upstream") == {"bronze.users"}
    version = [e["version"] for e in result["upstream"]]
    assert version == [lh.version("bronze.users")]
    reviews = answer(lh, "silver.reviews", downstream=False)
    # free text is redacted with the customers' identifiers: bronze.users is an input too
    assert _from(reviews, "upstream") == {"bronze.reviews", "bronze.users"}
    events = answer(lh, "silver.events", downstream=False)
    assert _from(events, "upstream") == {"bronze.events"}


def test_recommendations_name_the_model_version_and_reach_bronze(built):
    """Check gold.recommendations upstream: the model version, its tables, down to bronze."""
    lh = Lakehouse.open(built.root, user="pipeline")
    result = answer(lh, "gold.recommendations", downstream=False)
    direct = _from(result, "upstream", 1)
    assert "model recommender@v1" in direct and "silver.plants" in direct
    assert {"gold.fs_user_activity"} <= _from(result, "upstream")
    assert {"silver.events", "bronze.events", "bronze.users"} <= _from(result, "upstream")
    history = lh.history("gold.recommendations").row(-1, named=True)
    assert history["model"] == "recommender@v1"
    assert json.loads(history["features"])


def test_model_lineage_both_ways(built):
    """Check a model: upstream the receipt's tables at their versions, downstream predictions."""
    lh = Lakehouse.open(built.root, user="pipeline")
    receipt = Registry(lh, "recommender").get(1).receipt["tables_read"]
    result = answer(lh, "recommender")  # the newest version
    assert result["node"] == "model recommender@v1" and result["kind"] == "model"
    direct = {e["from"]: e["version"] for e in result["upstream"] if e["depth"] == 1}
    assert direct == receipt
    assert _from(result, "downstream") == {"gold.recommendations"}
    assert answer(lh, "recommender@v1")["node"] == answer(lh, "recommender:1")["node"]
    # downstream of a silver table reaches the feature logs, the model and its predictions
    down = _from(answer(lh, "silver.events", upstream=False), "downstream")
    assert {"gold.fs_user_activity", "model recommender@v1", "gold.recommendations"} <= down
    with pytest.raises(TableNotFound, match="registered versions: recommender"):
        answer(lh, "recomender")


def test_lineage_shows_only_what_the_user_may_read(built):
    """Check that an analyst's graph leaves the restricted zone out and a direct ask is refused."""
    alex = Lakehouse.open(built.root, user="alex")
    graph = build(alex)
    assert graph.hidden > 0
    assert not [n for n in graph.nodes if n.startswith(("bronze.", "quarantine."))]
    with pytest.raises(AccessDenied):
        answer(alex, "bronze.users")


def _cli(root, *argv, user="pipeline", monkeypatch):
    monkeypatch.setenv("HORTUS_USER", user)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--root", str(root), *argv])
    return code, out.getvalue() + err.getvalue()


def test_lineage_and_catalog_commands(built, monkeypatch):
    """Check `hortus lineage` (text, --json) and `catalog search` / `catalog list --tag`."""
    code, text = _cli(built.root, "lineage", "silver.users", "--upstream", monkeypatch=monkeypatch)
    assert code == 0 and "bronze.users v" in text and "downstream" not in text
    code, text = _cli(built.root, "lineage", "gold.recommendations", "--json",
                      monkeypatch=monkeypatch)  # fmt: skip
    assert code == 0 and "model recommender@v1" in _from(json.loads(text), "upstream")
    code, text = _cli(built.root, "catalog", "search", "pii", "--json", monkeypatch=monkeypatch)
    hits = json.loads(text)
    assert code == 0 and {"silver.users", "bronze.users"} <= {h["name"] for h in hits}
    code, text = _cli(built.root, "catalog", "search", "pii", "--json", user="alex",
                      monkeypatch=monkeypatch)  # fmt: skip
    assert not [h for h in json.loads(text) if h["table"].startswith("bronze.")]
    code, text = _cli(built.root, "catalog", "search", "userz", monkeypatch=monkeypatch)
    assert code == 1 and "no table or column matches 'userz'" in text and "users" in text
    code, text = _cli(built.root, "catalog", "list", "--tag", "feature", "--json",
                      monkeypatch=monkeypatch)  # fmt: skip
    names = [r["table"] for r in json.loads(text)]
    assert names and all(n.startswith("gold.fs_") for n in names)


def test_docs_pages_catalog_and_lineage(built):
    """Check the tags index and the lineage graph pages: offline, with the expected content."""
    from hortus.publishing._catalog_pages import catalog_page, lineage_page

    lh = Lakehouse.open(built.root, user="pipeline")
    catalog = catalog_page(lh)
    lineage = lineage_page(lh)
    for page in (catalog, lineage):
        check_offline(page, source="test")
    assert "<h3 id='tag-pii'>pii</h3>" in catalog and "<code>silver.users.email</code>" in catalog
    assert "<svg" in lineage and "model recommender@v1" in lineage
    assert "<td><code>bronze.users</code></td><td>v" in lineage


CONTRACT = {
    "layer": "gold",
    "owner": "growth",
    "description": "Weekly revenue per region, the figure finance reports.",
    "tags": ["kpi", "gold-standard"],
    "columns": {
        "region": {"type": "string", "tags": ["dimension"]},
        "email": {"type": "string", "pii": "direct", "description": "Contact of the region."},
        "revenue": {"type": "float", "description": "Sum of order lines in EUR."},
    },
}


def test_search_ranks_exact_name_then_tag_then_description():
    """Check ranking, implicit tags, filters and suggestions on contracts alone."""
    weekly = Contract.from_dict("weekly", CONTRACT)
    fs = Contract.from_dict("fs_users", {"layer": "gold", "columns": {"x": {"type": "int"}}})
    other = Contract.from_dict(
        "revenue_notes",
        {"layer": "silver", "owner": "growth", "description": "Free notes.",
         "columns": {"note": {"type": "string", "description": "Mentions revenue."}}},
    )  # fmt: skip
    contracts = [weekly, fs, other]
    assert table_tags(weekly) == ("kpi", "gold-standard", "pii")
    assert column_tags(weekly.column("email")) == ("pii",)
    assert table_tags(fs) == ("feature",)
    hits = search(contracts, "revenue")
    assert [h.kind for h in hits][:2] == ["name", "name part"]
    assert hits[0].name == "gold.weekly.revenue" and hits[1].name == "silver.revenue_notes"
    assert hits[-1].kind == "description"
    assert [h.name for h in search(contracts, "gold-standard")] == ["gold.weekly"]
    assert {h.name for h in search(contracts, "growth")} == {"gold.weekly", "silver.revenue_notes"}
    assert search(contracts, "revenue", visible=lambda t: t != "gold.weekly")[0].table == (
        "silver.revenue_notes"
    )
    assert search(contracts, "   ") == []
    assert suggest(contracts, "revenu")[0] == "revenue"
    assert [c.name for c in filter_tables(contracts, pii=True)] == ["weekly"]
    assert [c.name for c in filter_tables(contracts, tag="feature")] == ["fs_users"]
    assert [c.name for c in filter_tables(contracts, owner="growth", layer="silver")] == [
        "revenue_notes"
    ]
    assert tags_index(contracts)["dimension"] == ["gold.weekly.region"]


@pytest.mark.parametrize("tags", ["kpi", ["Bad Tag"], [1]])
def test_bad_tags_are_refused(tags):
    """Check that tags must be a list of lower-case hyphenated words."""
    with pytest.raises(ContractError, match="tag"):
        Contract.from_dict("t", CONTRACT | {"tags": tags})


@pytest.mark.slow  # two papermill runs of the explorer, about 90 s on 2 shared cores
@pytest.mark.integration
def test_explore_notebook_search_box_filters_the_table_list(built, monkeypatch):
    """Check that the explorer's search parameter ranks the table list, or says no hits."""
    import shutil
    from pathlib import Path

    from conftest import notebook_outputs
    from hortus.publishing.notebooks import publish_notebook

    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "explore.py"
    (built.root / "notebooks").mkdir(exist_ok=True)
    shutil.copy(notebook, built.root / "notebooks" / notebook.name)
    monkeypatch.setenv("HORTUS_ROOT", str(built.root))
    monkeypatch.setenv("HORTUS_USER", "pipeline")
    executed, _ = publish_notebook(built.root, "explore", {"search": "feature"},
                                   out_dir=built.root / "s1")  # fmt: skip
    text = notebook_outputs(executed)
    assert "gold.fs_user_activity" in text and "silver.orders" not in text
    executed, _ = publish_notebook(built.root, "explore", {"search": "userz"},
                                   out_dir=built.root / "s2")  # fmt: skip
    text = notebook_outputs(executed)
    assert "No table or column matches userz; did you mean: user" in text and "users" in text
