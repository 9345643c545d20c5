"""Data tests from the contract: every rule of every column holds on the silver table.

The columns and rules come from contracts.yaml (as silver stores them: direct personal
data as keyed tokens), so a rule you add to the contract is tested here too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.contracts import check_frame
from hortus.lakehouse.silver import stored_contract
from hortus.project.definition import Project

ROOT = Path(__file__).resolve().parents[1]
PROJECT = Project.load(ROOT)
TABLES = [m.table for m in PROJECT.models.values()]
CONTRACTS = {t: stored_contract(Catalog.load(root=ROOT).get(t)) for t in TABLES}
COLUMNS = [(t, c.name) for t, contract in CONTRACTS.items() for c in contract.columns]


@pytest.fixture(scope="module")
def violations(lakehouse):
    return {t: check_frame(lakehouse.read(t), c) for t, c in CONTRACTS.items()}


@pytest.mark.parametrize("table", TABLES)
def test_silver_has_rows(lakehouse, table):
    assert lakehouse.read(table).height > 0, f"{table} is empty: see reports/silver.json"


@pytest.mark.parametrize(("table", "column"), COLUMNS)
def test_column_rules_hold(violations, table, column):
    found = violations[table]
    found = found.filter(found["column"] == column)
    assert found.height == 0, (
        f"{table}.{column}: {found.height} violation(s), e.g. {found.head(3).to_dicts()}"
    )


def test_every_landed_row_is_accounted_for():
    totals = json.loads((ROOT / "reports" / "silver.json").read_text())["totals"]
    assert totals["landed"] == totals["accepted"] + totals["quarantined"]
