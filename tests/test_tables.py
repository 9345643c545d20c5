"""Tests of the one table API: lineage on every write, content hashes, errors."""

from __future__ import annotations

import json

import polars as pl
import pytest

from hortus.errors import TableNotFound
from hortus.lakehouse.tables import frame_hash


def _kpis(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date": pl.date_range(pl.date(2025, 3, 1), pl.date(2025, 3, n), eager=True),
            "region": ["ALL"] * n,
            "sessions": list(range(n)),
        }
    )


def test_write_records_lineage_with_input_versions(lakehouse):
    """Check that a write records its stage, user, git commit and the versions it read."""
    lakehouse.write("silver.plants", pl.DataFrame({"plant_id": ["p0001"]}), mode="overwrite")
    lakehouse.write("silver.plants", pl.DataFrame({"plant_id": ["p0002"]}), mode="append")
    lakehouse.scan("silver.plants")
    lakehouse.stage = "kpis"
    lakehouse.write("gold.kpi_daily", _kpis(2), mode="overwrite")
    hist = lakehouse.history("gold.kpi_daily")
    last = hist.row(-1, named=True)
    assert last["stage"] == "kpis"
    assert json.loads(last["inputs"]) == {"silver.plants": 1}
    assert last["git_commit"]  # 'unknown' outside a git repository, a sha inside
    assert last["user"]
    assert lakehouse.history("silver.plants")["version"].to_list() == [0, 1]


def test_scan_of_old_version_and_unbuilt_table(lakehouse):
    """Check time travel to an earlier version, and a clear error for a table never written."""
    lakehouse.write("gold.kpi_daily", _kpis(2), mode="overwrite")
    lakehouse.write("gold.kpi_daily", _kpis(3), mode="overwrite")
    assert lakehouse.read("gold.kpi_daily", version=0).height == 2
    assert lakehouse.read("gold.kpi_daily").height == 3
    with pytest.raises(TableNotFound, match="silver.events has not been written yet"):
        lakehouse.scan("silver.events")


def test_write_refuses_tables_not_in_the_catalog(lakehouse):
    """Check that writing an uncatalogued table fails before anything is written."""
    with pytest.raises(TableNotFound, match="no table 'gold.secret'"):
        lakehouse.write("gold.secret", _kpis(1))
    assert not (lakehouse.paths.lakehouse / "gold" / "secret").exists()


def test_content_hash_ignores_row_order_and_ingestion_time():
    """Check that the content hash is order-independent and leaves out _ingested_at."""
    a = pl.DataFrame({"x": [1, 2, 3], "_ingested_at": [1, 2, 3]})
    b = pl.DataFrame({"x": [3, 1, 2], "_ingested_at": [9, 9, 9]})
    assert frame_hash(a) == frame_hash(b)
    assert frame_hash(a) != frame_hash(pl.DataFrame({"x": [1, 2, 4], "_ingested_at": [1, 2, 3]}))
