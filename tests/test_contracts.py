"""Tests of data contracts: loading, errors and vectorised checks."""

from __future__ import annotations

from datetime import date, datetime, timedelta

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


# ---------------------------------------------------------------- check_frame = reference


def _check_frame_reference(df, contract):
    """The former `check_frame`: every column cast to strings, violations per row."""
    from hortus.lakehouse.contracts import any_broken, contract_checks, violations

    lf = df.lazy()
    names = lf.collect_schema().names()
    present = [c for c in contract.columns if c.name in names]
    sub = Contract(
        name=contract.name,
        layer=contract.layer,
        columns=tuple(present),
        shop_opened=contract.shop_opened,
        source=contract.source,
    )
    lf = lf.select(
        [pl.col(c.name).cast(pl.String).alias(c.name) for c in present]
        + [pl.col(c.name).alias(c.name + "__t") for c in present]
    )
    checks = contract_checks(sub, typed_suffix="__t")
    return (
        lf.with_row_index("row")
        .filter(any_broken(checks))
        .select(pl.col("row").cast(pl.Int64), violations(checks).alias("_v"))
        .explode("_v")
        .drop_nulls("_v")
        .unnest("_v")
        .collect()
    )


def _typed_rows(n: int, seed: int) -> pl.DataFrame:
    """Return typed rows breaking each rule of REFERENCE_SPEC now and then (nulls, NaN)."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def some(values, share=0.1):
        values = np.asarray(values, dtype=object)
        return [None if rng.uniform() < share else v for v in values]

    ids = [f"o{i:07d}" if rng.uniform() > 0.1 else f"x{i}" for i in range(n)]
    notes = [
        "bad \ufffd bytes" if rng.uniform() < 0.05 else "n" * int(rng.integers(0, 30))
        for _ in range(n)
    ]
    day = date(2025, 1, 1)
    return pl.DataFrame(
        {
            "order_id": some(ids),
            "channel": some(rng.choice(["app", "web", "fax"], n)),
            "quantity": pl.Series(some(rng.integers(-2, 60, n).tolist()), dtype=pl.Int32),
            "price": [float("nan") if rng.uniform() < 0.05 else v for v in rng.normal(50, 60, n)],
            "rating": some(rng.integers(0, 7, n).tolist()),
            "gift": some((rng.uniform(size=n) < 0.5).tolist()),
            "order_date": some([day + timedelta(days=int(d)) for d in rng.integers(-40, 800, n)]),
            "shipped_at": pl.Series(
                some(
                    [
                        datetime(2025, 1, 1) + timedelta(hours=int(h))
                        for h in rng.integers(-99, 30000, n)
                    ]
                ),
                dtype=pl.Datetime("us"),
            ).dt.replace_time_zone("UTC"),
            "note": notes,
        }
    )


REFERENCE_SPEC = {
    "layer": "silver",
    "landing": {"glob": "x/*.jsonl", "format": "jsonl"},  # string columns get max_length
    "columns": {
        "order_id": {"type": "string", "nullable": False, "pattern": "o[0-9]{7}", "max_length": 8},
        "channel": {"type": "string", "allowed": ["app", "web"]},
        "quantity": {"type": "int", "nullable": False, "min": 1, "max": 50},
        "price": {"type": "float", "min": 0.0, "max": 100.0},
        "rating": {"type": "int", "allowed": [1, 2, 3, 4, 5]},
        "gift": {"type": "bool", "nullable": False},
        "order_date": {"type": "date", "min": "2025-01-01", "max": "2026-12-31"},
        "shipped_at": {"type": "datetime", "min": "2025-01-01T00:00:00Z",
                       "max": "2027-06-01T00:00:00Z"},
        "note": {"type": "string", "max_length": 20},
        "absent": {"type": "int"},
    },
}  # fmt: skip


@pytest.mark.parametrize("lazy", [False, True])
def test_check_frame_equals_the_string_cast_reference(lazy):
    """Check rows, rules, columns and messages against the former implementation.

    The frame breaks every rule kind, holds nulls and NaN, and one column (quantity)
    has another integer type than the contract's.
    """
    c = Contract.from_dict("orders", REFERENCE_SPEC)
    df = _typed_rows(3000, seed=1)
    got = check_frame(df.lazy() if lazy else df, c)
    assert got.filter(pl.col("rule") == "missing_column")["column"].to_list() == ["absent"]
    got = got.filter(pl.col("row").is_not_null())
    want = _check_frame_reference(df, c)
    assert got.schema == want.schema
    assert got.equals(want)
    assert set(got["rule"]) == {
        "required", "max_length", "pattern", "allowed", "min", "max", "encoding",
    }  # fmt: skip
    assert got["row"].is_sorted()


def test_check_frame_on_a_clean_frame_returns_an_empty_typed_result():
    """Check that no violation gives an empty frame with the four columns."""
    c = Contract.from_dict("t", {"layer": "gold", "columns": {"a": {"type": "int", "min": 0}}})
    found = check_frame(pl.DataFrame({"a": [1, 2]}), c)
    assert found.height == 0
    assert found.schema == pl.Schema(
        {"row": pl.Int64, "rule": pl.String, "column": pl.String, "message": pl.String}
    )


# ---------------------------------------------------------------- max_length (issue 18)


def test_landed_string_columns_get_a_default_max_length_unless_declared():
    """Check the default on a landed table, a declared limit, null, and no default elsewhere."""
    from hortus.lakehouse.contracts import DEFAULT_MAX_LENGTH

    spec = {
        "layer": "silver",
        "landing": {"glob": "t/*.csv", "format": "csv"},
        "columns": {
            "text": {"type": "string", "pii": "free_text"},
            "id": {"type": "string", "max_length": 32},
            "blob": {"type": "string", "max_length": None},
            "n": {"type": "int"},
        },
    }
    c = Contract.from_dict("t", spec)
    assert [c.column(n).max_length for n in ("text", "id", "blob", "n")] == [
        DEFAULT_MAX_LENGTH, 32, None, None,
    ]  # fmt: skip
    assert c.to_dict()["columns"][0]["max_length"] == DEFAULT_MAX_LENGTH
    gold = Contract.from_dict("g", {"layer": "gold", "columns": {"s": {"type": "string"}}})
    assert gold.column("s").max_length is None  # derived tables: no default
    plantshop = Catalog.load()
    events = plantshop.get("silver.events")
    assert events.column("order_id").max_length == 64
    assert events.column("rec_id").max_length == 64
    assert plantshop.get("silver.reviews").column("text").max_length == DEFAULT_MAX_LENGTH
    assert plantshop.get("bronze.events").column("_raw").max_length is None
    assert plantshop.get("bronze.users").column("name").max_length is None  # raw as landed


@pytest.mark.parametrize(
    "column", [{"type": "int", "max_length": 5}, {"type": "string", "max_length": 0},
               {"type": "string", "max_length": "64"}, {"type": "string", "max_length": True}],
)  # fmt: skip
def test_max_length_must_be_a_positive_integer_on_a_string_column(column):
    """Check that a bad max_length is refused naming table and column."""
    with pytest.raises(ContractError, match=r"table 't', column 'x': max_length must be"):
        Contract.from_dict("t", {"layer": "silver", "columns": {"x": column}})


def test_a_20_mb_order_id_breaks_max_length_naming_column_and_limit():
    """Check that an overlong value is one max_length violation, its message short."""
    c = Catalog.load().get("silver.events")
    huge = "o" * (20 * 1024 * 1024)
    rows = pl.DataFrame({"order_id": ["o0000000001", huge, "x" * 64, "x" * 65]})
    found = check_frame(rows, c).filter(pl.col("row").is_not_null())
    assert found.select("row", "rule", "column").rows() == [
        (1, "max_length", "order_id"),
        (3, "max_length", "order_id"),
    ]
    assert found["message"][0] == (
        "order_id: value of 20971520 characters is longer than the maximum length 64"
    )
