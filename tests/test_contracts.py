"""Tests of data contracts: loading, errors and vectorised checks."""

from __future__ import annotations

import polars as pl
import pytest

from hortus.errors import ContractError
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.contracts import (
    Column,
    Contract,
    check_frame,
    load_contracts,
    parse_columns,
    parse_expr,
)


def test_plantshop_contracts_load_with_bronze_derived():
    """Check that the catalog holds silver, gold, bronze and quarantine contracts."""
    cat = Catalog.load()
    for name in (
        "silver.events",
        "silver.users",
        "gold.kpi_daily",
        "bronze.events",
        "bronze.landing_files",
        "quarantine.rows",
    ):
        assert cat.get(name).full_name == name
    assert cat.get("bronze.events").column("_raw").pii == "free_text"
    assert cat.get("silver.users").column("email").pii == "direct"


def test_unknown_table_error_lists_known_tables():
    """Check that asking for an unknown table names it and lists the known ones."""
    with pytest.raises(Exception, match=r"no table 'silver\.nope'.*silver\.events"):
        Catalog.load().get("silver.nope")


def test_contract_rejects_unknown_keys_and_types(tmp_path):
    """Check that a typo in a contract is reported with file, table and column."""
    bad = tmp_path / "c.yaml"
    bad.write_text(
        "tables:\n  t:\n    layer: silver\n    columns:\n      x: {type: int, nulable: false}\n"
    )
    with pytest.raises(ContractError, match=r"c\.yaml: table 't', column 'x': unknown key"):
        load_contracts(bad)
    bad.write_text("tables:\n  t:\n    layer: silver\n    columns:\n      x: {type: integer}\n")
    with pytest.raises(ContractError, match="type must be one of"):
        load_contracts(bad)


def test_contract_rejects_yaml_booleans_in_string_sets(tmp_path):
    """Check that an unquoted NO (Norway) in an allowed list is caught, not read as False."""
    bad = tmp_path / "c.yaml"
    bad.write_text(
        "tables:\n  t:\n    layer: silver\n    columns:\n"
        "      c: {type: string, allowed: [SE, NO]}\n"
    )
    with pytest.raises(ContractError, match="quote them"):
        load_contracts(bad)


def test_check_frame_reports_row_rule_and_column():
    """Check that every broken rule is reported once with its row and column."""
    c = Contract.from_dict(
        "t",
        {
            "layer": "gold",
            "columns": {
                "k": {"type": "string", "nullable": False, "pattern": "^k[0-9]$"},
                "v": {"type": "float", "min": 0, "max": 1},
                "s": {"type": "string", "allowed": ["a", "b"]},
            },
        },
    )
    df = pl.DataFrame({"k": ["k1", "zz", None], "v": [0.5, 2.0, -1.0], "s": ["a", "c", "b"]})
    found = check_frame(df, c).sort("row", "rule")
    assert found.select("row", "rule", "column").rows() == [
        (1, "allowed", "s"),
        (1, "max", "v"),
        (1, "pattern", "k"),
        (2, "min", "v"),
        (2, "required", "k"),
    ]


def test_check_frame_reports_missing_columns():
    """Check that a column the contract requires but the frame lacks is reported."""
    c = Contract.from_dict(
        "t", {"layer": "gold", "columns": {"a": {"type": "int"}, "b": {"type": "int"}}}
    )
    found = check_frame(pl.DataFrame({"a": [1]}), c)
    assert found.filter(pl.col("rule") == "missing_column")["column"].to_list() == ["b"]


def test_datetime_parsing_accepts_each_documented_layout_and_nothing_else():
    """Check ISO with and without fraction, the CSV layout, and nulls for anything else."""
    raw = pl.Series(
        "ts",
        [
            "2025-03-01T08:00:00.123456Z",
            "2025-03-01T08:00:00Z",
            "2025-03-01 08:00:00.5",
            "2025-03-01 08:00:00",
            "01/03/2025 08:00",
            "2025-03-01T08:00:00+02:00",
        ],
    )
    col = Column("ts", "datetime", True)
    got = pl.DataFrame(raw).select(parse_expr(col, pl.col("ts")))["ts"].dt.to_string().to_list()
    assert got == [
        "2025-03-01 08:00:00.123456+00:00",
        "2025-03-01 08:00:00.000000+00:00",
        "2025-03-01 08:00:00.500000+00:00",
        "2025-03-01 08:00:00.000000+00:00",
        None,
        None,
    ]


def test_parse_columns_gives_parse_expr_values_with_layouts_mixed_in_a_column():
    """Check the frame parser (second layout only where the first failed) against parse_expr."""
    raw = pl.DataFrame(
        {
            "ts": [
                "2025-03-01 08:00:00.5",
                "2025-03-01T08:00:00.123456Z",
                None,
                "2025-03-01 08:00:00",
                "nonsense",
                "2025-03-02T09:30:00Z",
            ],
            "n": ["1", " 2 ", "x", None, "5", "6"],
        }
    )
    cols = [Column("ts", "datetime", True), Column("n", "int", True)]
    got = parse_columns(raw, cols, suffix="__t")
    want = raw.with_columns([parse_expr(c, pl.col(c.name)).alias(c.name + "__t") for c in cols])
    assert got.equals(want)
    assert got["ts__t"].null_count() == 2  # the null and "nonsense"
