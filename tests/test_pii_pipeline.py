"""Data test: no raw personal value of the simulator reaches silver or gold."""

from __future__ import annotations

import polars as pl

from conftest import TEST_KEY
from hortus.domains.plantshop.kpis import KPI_TABLE, daily_kpis
from hortus.domains.plantshop.simulate import SimConfig, simulate
from hortus.lakehouse import silver
from hortus.lakehouse.ingest import ingest


def test_no_raw_personal_data_in_silver_or_gold(project, lakehouse):
    """Check that every string column of silver and gold is free of raw personal values."""
    simulate(SimConfig(seed=5, days=14, users=600, plants=60), project.data)
    ingest(project.data, lakehouse)
    silver.build(lakehouse, silver.SilverOptions(key=TEST_KEY.encode()))
    lakehouse.write(
        KPI_TABLE,
        daily_kpis(lakehouse.scan("silver.events"), lakehouse.scan("silver.users")).collect(),
    )
    users = lakehouse.read("bronze.users")
    raw = set()
    for col in ("name", "email", "phone", "address", "birth_date", "ip_address"):
        raw |= set(users[col].drop_nulls().to_list())
    bronze_ips = (
        lakehouse.scan("bronze.events")
        .select(pl.col("_raw").str.json_path_match("$.ip_address"))
        .collect()
    )
    raw |= set(bronze_ips.to_series().drop_nulls().to_list())
    raw = sorted(v for v in raw if len(v) >= 6)
    assert len(raw) > 1000  # the scan is meaningful
    # the restricted zone does hold personal data in review texts
    reviews_raw = lakehouse.read("bronze.reviews")["_raw"]
    assert reviews_raw.str.contains_any(raw).sum() > 0
    scanned = 0
    for name in lakehouse.catalog.names("silver") + lakehouse.catalog.names("gold"):
        if not lakehouse.exists(name):
            continue
        df = lakehouse.read(name)
        for col in df.select(pl.col(pl.String)).columns:
            hits = df.filter(pl.col(col).str.contains_any(raw))
            assert hits.height == 0, f"{name}.{col} holds raw personal data: {hits.head(3)}"
            scanned += 1
    assert scanned >= 20
