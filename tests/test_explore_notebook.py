"""The lakehouse explorer (notebooks/explore.py): lint, script run, papermill runs, access notes.

A small project is built once per module: silver.plants (readable by sam and alex),
silver.events (readable by sam, not by the analyst alex) and gold.kpi_daily written in
two versions, all through the Lakehouse with the repository's access policy; the
project holds a copy of notebooks/explore.py, which `publish_notebook` runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import assert_marimo_check, notebook_outputs, with_policy
from hortus.config import Paths
from hortus.governance.audit import AuditLog, default_path
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.tables import Lakehouse
from hortus.publishing import explore
from hortus.publishing.notebooks import check_offline, publish_notebook

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "explore.py"
MARIMO = Path(sys.executable).with_name("marimo")
REGIONS = ["ALL", "DACH", "UKI"]


def _plants(n: int = 40) -> pl.DataFrame:
    """Return catalogue rows with the silver.plants columns (seeded)."""
    rng = np.random.default_rng(3)
    return pl.DataFrame(
        {
            "plant_id": [f"p{i:04d}" for i in range(1, n + 1)],
            "name": [f"Plant {i}" for i in range(1, n + 1)],
            "category": rng.choice(["fern", "cactus", "palm"], n, p=[0.6, 0.3, 0.1]),
            "price": rng.uniform(2.0, 80.0, n).round(2),
            "light": rng.choice(["low", "medium", "bright"], n),
            "care_level": rng.choice(["easy", "moderate", "expert"], n),
            "pet_safe": rng.integers(0, 2, n).astype(bool),
            "stock": rng.integers(0, 50, n),
            "updated_at": pl.Series(
                [datetime(2025, 3, 1, tzinfo=UTC)] * n, dtype=pl.Datetime("us", "UTC")
            ),
        }
    )


def _events(n: int = 200) -> pl.DataFrame:
    """Return view events with the silver.events key columns (seeded)."""
    rng = np.random.default_rng(4)
    start = datetime(2025, 3, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "event_id": [f"e{i:016x}" for i in range(n)],
            "event_type": ["view"] * n,
            "ts": pl.Series(
                [start + timedelta(minutes=int(m)) for m in np.sort(rng.integers(0, 8640, n))],
                dtype=pl.Datetime("us", "UTC"),
            ),
            "session_id": [f"s{i // 5:012x}" for i in range(n)],
            "user_id": [f"u{i % 17:06d}" for i in range(n)],
            "plant_id": [f"p{1 + i % 40:04d}" for i in range(n)],
        }
    )


def _kpis(first: date, days: int) -> pl.DataFrame:
    """Return daily KPI rows for ALL and two regions."""
    n = days * len(REGIONS)
    return pl.DataFrame(
        {
            "date": [first + timedelta(days=d) for d in range(days) for _ in REGIONS],
            "region": REGIONS * days,
            "sessions": np.arange(100, 100 + n),
            "orders": np.arange(n) % 9 + 1,
            "conversion_rate": np.linspace(0.02, 0.06, n),
            "rec_ctr": np.linspace(0.10, 0.14, n),
        }
    )


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Paths:
    """Return a project with plants, events and two versions of the daily KPIs."""
    paths = Paths.at(tmp_path_factory.mktemp("explore"))
    with_policy(paths.root)
    lh = Lakehouse(paths=paths, catalog=Catalog.load(), stage="test", user="pipeline")
    lh.write("silver.plants", _plants(), mode="overwrite", inputs={})
    lh.write("silver.events", _events(), mode="overwrite", inputs={})
    lh.write("gold.kpi_daily", _kpis(date(2025, 3, 1), 6), mode="overwrite", inputs={})
    lh.write("gold.kpi_daily", _kpis(date(2025, 3, 7), 4), mode="append", inputs={})
    lh.close()
    (paths.root / "notebooks").mkdir()
    shutil.copy(NOTEBOOK, paths.root / "notebooks" / NOTEBOOK.name)  # what publish runs
    return paths


def _env(root: Path, user: str) -> dict[str, str]:
    return os.environ | {
        "HORTUS_ROOT": str(root),
        "HORTUS_USER": user,
        "MARIMO_SKIP_UPDATE_CHECK": "1",
    }


_outputs = notebook_outputs


def test_profile_and_overview_follow_the_users_rights(shop: Paths):
    """Check the library: profiles of any frame, and an overview that names missing grants."""
    lh = Lakehouse(paths=shop, catalog=Catalog.load(), stage="test", user="alex")
    overview = explore.table_overview(lh, ["silver.plants", "silver.events", "gold.kpi_daily"])
    rows = {r["table"]: r for r in overview.iter_rows(named=True)}
    assert rows["silver.plants"]["readable"] and rows["silver.plants"]["rows"] == 40
    assert rows["gold.kpi_daily"]["version"] == 1 and rows["gold.kpi_daily"]["rows"] == 30
    assert not rows["silver.events"]["readable"] and rows["silver.events"]["rows"] is None
    assert "a grant of read on silver.events" in rows["silver.events"]["access"]
    history = explore.version_history(lh, "gold.kpi_daily")
    assert history.select("version", "rows", "operation").rows() == [
        (0, 18, "WRITE"),
        (1, 30, "WRITE"),
    ]
    prof = explore.profile(_plants()).filter(pl.col("column") == "category").row(0, named=True)
    assert prof["distinct"] == 3 and prof["null_rate"] == 0.0
    assert prof["top_values"].startswith("fern (")
    trends = explore.metric_trends(
        _kpis(date(2025, 3, 1), 6),
        segment="DACH",
        by="region",
        start=date(2025, 3, 2),
        stop=date(2025, 3, 3),
    )
    assert set(trends["metric"]) == {"sessions", "orders", "conversion_rate", "rec_ctr"}
    assert trends.height == 8


def test_explore_notebook_passes_marimo_check():
    """Check that `marimo check` finds nothing wrong with notebooks/explore.py."""
    assert_marimo_check(NOTEBOOK)


def test_explore_notebook_runs_as_script(shop: Paths):
    """Check that the explorer runs as a plain Python script as a data scientist."""
    done = subprocess.run(
        [sys.executable, str(NOTEBOOK)],
        capture_output=True,
        text=True,
        env=_env(shop.root, "sam"),
        cwd=shop.root,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_explore_publishes_the_injected_tables_profile_offline(shop: Paths, monkeypatch):
    """Check that table, segment and days reach the outputs and the HTML is offline with charts."""
    monkeypatch.setenv("HORTUS_ROOT", str(shop.root))
    monkeypatch.setenv("HORTUS_USER", "sam")
    params = {"table": "silver.plants", "segment": "DACH", "days": 3}
    executed, page = publish_notebook(shop.root, "explore", params, out_dir=shop.root / "sam")
    text = _outputs(executed)
    assert "Column profile of silver.plants" in text
    assert "Column profile of silver.events" not in text  # the default table is not shown
    assert "40 rows and 9 columns as sam sees them" in text
    assert "fern (" in text  # a top value of the category column
    assert "2 Delta version(s)" not in text and "1 Delta version(s)" in text
    assert "3 day(s) of gold.kpi_daily for region DACH from 2025-03-08 to 2025-03-10" in text
    site = page.read_text(encoding="utf-8")
    check_offline(site, source=page)
    assert "<script" not in site.lower()
    for title in (
        "Rows per readable table",
        "Null rate per column of silver.plants",
        "Daily KPIs, region DACH, 2025-03-08 to 2025-03-10",
    ):
        assert title in site
    assert "<svg" in site or site.count("chart data (static)") >= 3


def test_explore_as_an_analyst_names_the_missing_grant(shop: Paths, monkeypatch):
    """Check that alex sees a denial note for silver.events (audited) and still sees the KPIs."""
    monkeypatch.setenv("HORTUS_ROOT", str(shop.root))
    monkeypatch.setenv("HORTUS_USER", "alex")
    params = {"table": "silver.events", "segment": "UKI"}
    executed, page = publish_notebook(shop.root, "explore", params, out_dir=shop.root / "alex")
    text = _outputs(executed)
    assert "silver.events is not readable by alex" in text
    assert "missing: a grant of read on silver.events" in text
    assert "Daily KPIs, region UKI" in page.read_text(encoding="utf-8")
    assert "not readable by <strong>alex</strong>" in page.read_text(encoding="utf-8")
    log = AuditLog.open(default_path(shop), secrets_dir=shop.secrets)
    denied = log.show(denied_only=True).filter(
        (pl.col("user") == "alex") & (pl.col("object") == "silver.events")
    )
    assert denied.height >= 1


def test_explore_opens_an_analyst_on_a_table_they_may_read(shop: Paths, monkeypatch):
    """Check that without a table parameter alex starts on a readable table, not a denial."""
    monkeypatch.setenv("HORTUS_ROOT", str(shop.root))
    monkeypatch.setenv("HORTUS_USER", "alex")
    executed, _ = publish_notebook(shop.root, "explore", {}, out_dir=shop.root / "alex-default")
    text = _outputs(executed)
    assert "not readable by alex" not in text
    assert "Column profile of " in text
    shown = text.split("Column profile of ", 1)[1].split()[0].strip("`*.,")
    assert shown in {"gold.kpi_daily", "silver.plants", "silver.users"}, shown
