"""Shared fixtures: a temporary project with its own lakehouse and a small landing."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from hortus.config import Paths
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.tables import Lakehouse

TEST_KEY = "test-only-key"
# the small pinned snapshot of the DVC pipeline and README tour tests (10 days, 300 users)
SMALL_SHOP = {
    "seed": 3,
    "start": "2025-03-01",
    "days": 10,
    "users": 300,
    "plants": 40,
    "drift": [],
    "faults": ["malformed", "duplicates", "empty_file", "truncated_gzip"],
    "fault_rate": 0.01,
}


def small_params(params: dict) -> dict:
    """Return params.yaml's settings made for SMALL_SHOP: a quick model and fitting checks.

    10 days of a new shop: every rolling feature is still filling up (drift by
    construction) and a 40-iteration model is flat in the declared directions, so a
    small build gates only on the other checks (the thresholds are params).
    """
    params["simulate"] = SMALL_SHOP
    params["features"]["label_horizon_days"] = 3
    params["features"]["skew_sample"] = 200
    params["gate"]["drift"]["max_drifted_share"] = 1.0
    params["gate"]["model_checks"]["behavioural"]["directional"] = []
    params["train"] |= {"max_iter": 40, "holdout_fraction": 0.3}
    return params


TEST_AUDIT_KEY = "test-only-audit-key"
POLICY = Path(__file__).resolve().parents[1] / "access_policy.yaml"
DEFINITION = POLICY.with_name("hortus.yaml")


@pytest.fixture(scope="session", autouse=True)
def _session_env():
    """Act as the pipeline with a test audit key in session- and module-scoped fixtures too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HORTUS_USER", "pipeline")
        mp.setenv("HORTUS_AUDIT_KEY", TEST_AUDIT_KEY)
        yield


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    """Give every test a PII key, an audit key, the pipeline identity, no stray settings.

    Tests that check denials act as other users explicitly (`Lakehouse(user=...)`).
    """
    monkeypatch.setenv("HORTUS_PII_KEY", TEST_KEY)
    monkeypatch.setenv("HORTUS_AUDIT_KEY", TEST_AUDIT_KEY)
    monkeypatch.setenv("HORTUS_USER", "pipeline")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    for var in ("HORTUS_ROOT", "HORTUS_LAKEHOUSE", "HORTUS_CONTRACTS", "HORTUS_AUDIT_SOCKET",
                "HORTUS_EXECUTOR", "HORTUS_RAY_ADDRESS"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)


def with_policy(root: Path) -> Path:
    """Copy the repository's access_policy.yaml (and hortus.yaml) into a temporary project root.

    The project definition makes the temporary folder a plant-shop project unless it
    has a hortus.yaml of its own.
    """
    if not (Path(root) / DEFINITION.name).exists():
        shutil.copy(DEFINITION, Path(root) / DEFINITION.name)
    return Path(shutil.copy(POLICY, Path(root) / POLICY.name))


@pytest.fixture
def project(tmp_path: Path) -> Paths:
    """Return the paths of an empty project (with the repository's policy) in a temp folder."""
    (tmp_path / "data").mkdir()
    with_policy(tmp_path)
    return Paths.at(tmp_path)


@pytest.fixture
def lakehouse(project: Paths) -> Lakehouse:
    """Return a Lakehouse over the temporary project."""
    return Lakehouse(paths=project, catalog=Catalog.load(), stage="test")


def event(i: int, **over) -> dict:
    """Return a valid event dict (day 2025-03-01) with overrides."""
    e = {
        "event_id": f"e{i:016x}",
        "event_type": "view",
        "ts": "2025-03-01T08:00:00.000000Z",
        "session_id": f"s{i:012x}",
        "user_id": "u000001",
        "plant_id": "p0001",
    }
    e.update(over)
    return e


def write_jsonl(path: Path, rows: list, *, compress: bool | None = None) -> Path:
    """Write dicts (or raw str/bytes lines) as JSON lines, gzip if the name ends in .gz."""
    parts = []
    for r in rows:
        if isinstance(r, bytes):
            parts.append(r)
        elif isinstance(r, str):
            parts.append(r.encode())
        else:
            parts.append(json.dumps(r).encode())
    data = b"\n".join(parts) + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress or (compress is None and path.name.endswith(".gz")):
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


USERS_HEADER = (
    "user_id,name,email,phone,address,birth_date,ip_address,country,region,device,signup_at"
)


def user_row(i: int, **over) -> str:
    """Return one valid users CSV line."""
    u = {
        "user_id": f"u{i:06d}",
        "name": f"Jane Doe{i}",
        "email": f"jane{i}@example.com",
        "phone": "+44 7700 900123",
        "address": '"1 High St, London"',
        "birth_date": "1987-02-03",
        "ip_address": "10.1.2.3",
        "country": "GB",
        "region": "UKI",
        "device": "mobile",
        "signup_at": "2025-02-01T10:00:00.000000Z",
    }
    u.update(over)
    return ",".join(str(u[k]) for k in USERS_HEADER.split(","))


# A small simulated shop taken through ingest, silver and the offline feature store,
# built once per test session and shared read-only by feature, training and model tests.
SHOP_CONFIG = {"seed": 11, "days": 21, "users": 500, "plants": 50}


@pytest.fixture(scope="session")
def shop(tmp_path_factory) -> Lakehouse:
    """Return a read-only Lakehouse of a small simulated shop with feature logs built."""
    from hortus.domains.plantshop.features import FEATURES
    from hortus.domains.plantshop.simulate import SimConfig, simulate
    from hortus.features import store as feature_store
    from hortus.lakehouse import silver
    from hortus.lakehouse.ingest import ingest

    paths = Paths.at(tmp_path_factory.mktemp("shop"))
    with_policy(paths.root)
    simulate(SimConfig(**SHOP_CONFIG), paths.data)
    lh = Lakehouse(paths=paths, catalog=Catalog.load(), stage="test", user="pipeline")
    ingest(paths.data, lh)
    silver.build(lh, silver.SilverOptions(key=TEST_KEY.encode()))
    feature_store.build_offline(lh, FEATURES)
    return lh


def assert_marimo_check(notebook: Path) -> None:
    """Assert that `marimo check` passes on a notebook with no warning at all."""
    import os
    import subprocess
    import sys

    marimo = Path(sys.executable).with_name("marimo")
    done = subprocess.run(
        [str(marimo), "check", str(notebook)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"MARIMO_SKIP_UPDATE_CHECK": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in (done.stdout + done.stderr).lower()


def notebook_outputs(executed: Path, *, tags: bool = False) -> str:
    """Return the text of every output of an executed notebook, tags removed unless `tags`.

    marimo nests some elements' HTML in JSON attributes (callouts, tables), so the
    entities and JSON escapes are undone before the tags are stripped.
    """
    import html
    import re

    import nbformat

    nb = nbformat.read(executed, as_version=4)
    blob = "\n".join(
        str(o.get("data", {}).get("text/html", "")) + o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    for _ in range(3):  # entities inside JSON inside attributes
        blob = html.unescape(blob).replace("\\u003c", "<").replace("\\u003e", ">")
        blob = blob.replace('\\"', '"').replace("\\n", " ")
    return blob if tags else re.sub(r"<[^>]*>", "", blob)


def write_prediction_log(lh: Lakehouse, requests: list[dict]) -> None:
    """Write ops.prediction_log: one row per request (logged as JSON text) of recommender v1."""
    now = datetime.now(UTC)
    log = pl.DataFrame(
        [
            {"batch_id": "b1", "model_name": "recommender", "model_version": 1,
             "request": json.dumps(r), "features": "{}",
             "score": 0.5, "rank": 1, "as_of": now, "logged_at": now}
            for r in requests
        ],
        schema_overrides={"model_version": pl.Int64, "rank": pl.Int64},
    )  # fmt: skip
    lh.write(
        "ops.prediction_log", log.select(lh.catalog.get("ops.prediction_log").column_names[:9])
    )


def register_version(lh: Lakehouse, group: str) -> None:
    """Write ops.model_versions: recommender v1, trained on `group`'s feature log and
    silver.users as they are now (its receipt names their Delta versions)."""
    read = {group: lh.version(group), "silver.users": lh.version("silver.users")}
    mv = {c.name: None for c in lh.catalog.get("ops.model_versions").columns}
    mv |= {"version": 1, "name": "recommender", "created_at": datetime.now(UTC), "author": "sam",
           "artifact_path": "x", "artifact_sha256": "0" * 64, "signature": "{}", "params": "{}",
           "metrics": "{}", "receipt": json.dumps({"tables_read": read}), "git_commit": "unknown",
           "git_dirty": False, "tables_read": json.dumps(read), "notes": ""}  # fmt: skip
    lh.write(
        "ops.model_versions", pl.DataFrame([mv], schema=lh.catalog.get("ops.model_versions").schema)
    )
