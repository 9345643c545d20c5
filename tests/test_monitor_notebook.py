"""The monitoring dashboard notebook (notebooks/monitor.py): lint, script run, papermill run."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import assert_marimo_check, notebook_outputs
from hortus.config import Paths
from hortus.governance.access import AccessDenied
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring.monitors import METRIC_SCHEMA, write_metrics
from hortus.monitoring.runlog import record_run
from hortus.publishing.notebooks import run_notebook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "monitor.py"
MARIMO = Path(sys.executable).with_name("marimo")


def _metrics(at: datetime) -> pl.DataFrame:
    """Return a few ops.monitor_metrics rows: freshness, staleness, denied attempts."""
    rows = [
        ("freshness", "age_hours", "gold.kpi_daily", 30.0, "{}"),
        ("freshness", "sla_hours", "gold.kpi_daily", 24.0, "{}"),
        ("freshness", "stale", "gold.kpi_daily", 1.0, "{}"),
        ("model_staleness", "staleness_score", "recommender", 0.4, '{"version":"1"}'),
        ("access", "denied_attempts", "ops.pipeline_runs", 1.0, '{"user":"alex"}'),
    ]
    return pl.DataFrame(
        [
            {
                "at": at,
                "monitor": m,
                "metric": k,
                "subject": s,
                "value": v,
                "labels": lab,
                "batch_id": "monitor-test",
            }
            for m, k, s, v, lab in rows
        ],
        schema=METRIC_SCHEMA,
    )


def _training_set(days: int = 8, per_day: int = 300) -> pl.DataFrame:
    """Return synthetic training rows whose feature `spend` shifts in the last quarter."""
    rng = np.random.default_rng(7)
    n = days * per_day
    start = datetime(2025, 3, 1, tzinfo=UTC)
    ts = [start + timedelta(minutes=int(m)) for m in np.sort(rng.integers(0, days * 1440, n))]
    late = np.arange(n) >= int(n * 0.75)
    return pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "ts": pl.Series(ts, dtype=pl.Datetime("us", "UTC")),
            "label": rng.integers(0, 2, n),
            "spend": rng.normal(10.0, 2.0, n) + np.where(late, 6.0, 0.0),
            "sessions": rng.poisson(3.0, n).astype(float),
            "user_profile__region": rng.choice(["DACH", "UKI"], n),
        }
    )


@pytest.fixture
def populated(project: Paths) -> Paths:
    """Return a project with monitor metrics, an ok and a failed run, KPIs and a denied read."""
    lh = Lakehouse(paths=project, catalog=Catalog.load(), stage="test", user="pipeline")
    now = datetime.now(UTC)
    write_metrics(lh, _metrics(now - timedelta(days=1)))
    write_metrics(lh, _metrics(now))
    with record_run(lh, "kpis", rows_in=10, git_commit="test") as run:
        run.rows_out = 5
    with pytest.raises(ValueError, match="boom"), record_run(lh, "silver", git_commit="test"):
        raise ValueError("boom: landing file truncated")
    kpis = pl.DataFrame(
        {
            "date": [date(2025, 3, 1) + timedelta(days=d) for d in range(6) for _ in range(3)],
            "region": ["ALL", "DACH", "UKI"] * 6,
            "rec_ctr": np.linspace(0.05, 0.15, 18),
        }
    )
    lh.write("gold.kpi_daily", kpis, mode="overwrite", inputs={})
    lh.write("gold.training_set", _training_set(), mode="overwrite", inputs={})
    with pytest.raises(AccessDenied):
        Lakehouse(paths=project, catalog=Catalog.load(), stage="test", user="alex").read(
            "ops.pipeline_runs"
        )
    lh.close()
    return project


def _run_script(root: Path, user: str) -> subprocess.CompletedProcess:
    env = os.environ | {
        "HORTUS_ROOT": str(root),
        "HORTUS_USER": user,
        "MARIMO_SKIP_UPDATE_CHECK": "1",
    }
    return subprocess.run(
        [sys.executable, str(NOTEBOOK)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=180,
    )


_outputs = notebook_outputs


def test_monitor_notebook_passes_marimo_check():
    """Check that `marimo check` finds nothing wrong with notebooks/monitor.py."""
    assert_marimo_check(NOTEBOOK)


def test_monitor_notebook_runs_as_script_on_a_project_with_metrics(populated: Paths):
    """Check that the dashboard runs as a plain script over metrics, runs and a denial."""
    done = _run_script(populated.root, "pipeline")
    assert done.returncode == 0, done.stderr[-3000:]


def test_monitor_notebook_takes_papermill_parameters_and_shows_failures(
    populated: Paths, monkeypatch
):
    """Check that papermill's days and segment reach the outputs and the failed run is shown."""
    monkeypatch.setenv("HORTUS_ROOT", str(populated.root))
    out = run_notebook(
        NOTEBOOK,
        populated.root / "out" / "monitor.ipynb",
        {"days": 3, "segment": "DACH"},
        cwd=populated.root,
    )
    text = _outputs(out)
    assert "last 3 days of data" in text
    assert "segment DACH" in text
    assert "Daily KPIs, region DACH" in _outputs(out, tags=True)  # the chart's title
    assert (
        "2 run(s) in the date range, 1 failed" in text
    )  # the failed silver run, in the date range
    assert "boom: landing file truncated" in text
    assert "Feature drift over time" in text and "spend" in _outputs(out, tags=True)
    assert "is not readable" not in text  # the pipeline may read every ops table
    assert "Viewing recommender as pipeline" in text  # the project's default model
    assert "segment DACH of user_profile__region" in text  # the model's first segment column


def test_monitor_notebook_says_no_data_yet_on_an_empty_ops_plane(project: Paths, monkeypatch):
    """Check that an empty project gives "no data yet" notes as mia, not a crash."""
    monkeypatch.setenv("HORTUS_ROOT", str(project.root))
    monkeypatch.setenv("HORTUS_USER", "mia")
    out = run_notebook(NOTEBOOK, project.root / "out" / "monitor.ipynb", {}, cwd=project.root)
    text = _outputs(out)
    assert "ops.monitor_metrics: no data yet" in text
    assert "ops.pipeline_runs: no data yet" in text
    assert "audit log is not readable by" in text  # ml-engineers have no read on ops.audit_log


def test_every_time_axis_has_an_unambiguous_format():
    """Check that each temporal x axis of the dashboard names its format (no 12-hour labels).

    Vega-Lite's automatic time labels use a 12-hour clock without AM/PM ("03 AM" vs "12
    PM" mixed with dates); the dashboard's axes say day, or day and 24-hour time, instead.
    """
    import re

    source = (Path(__file__).resolve().parents[1] / "notebooks" / "monitor.py").read_text()
    axes = re.findall(r"x=alt\.X\(([^\n]*:T\"[^\n]*)", source)
    assert axes, "no temporal x axis found"
    for axis in axes:
        assert "axis=alt.Axis(format=" in axis, axis
