"""`hortus init`: contract and task inference, the files it writes, and bad input refused
with a clear message and nothing left behind."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
import yaml

from hortus.cli.core import main
from hortus.lakehouse.catalog import Catalog
from hortus.project.definition import Project
from hortus.project.scaffold import InitError, infer, infer_task, infer_type, init_project


def table(n: int = 200, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    start = datetime(2025, 1, 1, 0, 0)
    return pl.DataFrame(
        {
            "account_id": [f"a{i:05d}" for i in range(n)],
            "name": [
                ["Anna Smith", "Ben Jones", "Clara Weber", "David Brown"][i % 4] for i in range(n)
            ],  # fmt: skip
            "email": [f"user{i}@example.com" for i in range(n)],
            "region": rng.choice(["north", "south", "east"], n).tolist(),
            "gender": rng.choice(["f", "m"], n).tolist(),
            "ts": [
                (start + timedelta(hours=7 * i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(n)
            ],
            "income": np.round(rng.normal(3000, 500, n), 2),
            "visits": rng.integers(0, 30, n),
            "score": np.round(rng.normal(0, 1, n), 4),
            "tier": rng.choice(["a", "b", "c", "d"], n).tolist(),
            "bought": rng.integers(0, 2, n),
        }
    )


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "accounts.csv"
    table().write_csv(path)
    return path


def nothing_left(parent, name="proj"):
    return not (parent / name).exists() and not list(parent.glob(f".{name}.init-*"))


# ------------------------------------------------------------------ inference


def test_types_nullability_ranges_and_allowed_values(csv):
    d = infer(csv, target="bought", time="ts")
    cols = {c.name: c for c in d.columns}
    assert {n: c.type for n, c in cols.items()} == {
        "account_id": "string", "name": "string", "email": "string", "region": "string",
        "gender": "string", "ts": "datetime", "income": "float", "visits": "int",
        "score": "float", "tier": "string", "bought": "int",
    }  # fmt: skip
    df = table()
    assert cols["income"].min == df["income"].min() and cols["income"].max == df["income"].max()
    assert (cols["visits"].min, cols["visits"].max) == (df["visits"].min(), df["visits"].max())
    assert cols["region"].allowed == ["east", "north", "south"]
    assert cols["tier"].allowed == ["a", "b", "c", "d"]
    assert not any(c.nullable for c in cols.values())
    assert d.shop_opened == "2025-01-01T00:00:00Z"
    # the landing file is dated by the last time value: no row is in the `future`
    last = df["ts"].max()[:10]
    assert d.landing_name == f"accounts-{last}.csv"


def test_roles_ids_pii_sensitive_segments(csv):
    d = infer(csv, target="bought", time="ts")
    assert d.task == "binary"
    assert d.ids == ["account_id"]
    assert d.direct == ["name", "email"]
    assert d.sensitive == ["gender"]
    assert d.segments == ["region", "gender", "tier"]
    assert d.features == ["region", "gender", "income", "visits", "score", "tier"]
    for col in ("account_id", "name", "email", "ts", "bought"):
        assert col not in d.features


def test_nullable_and_an_explicit_sensitive_list(tmp_path):
    df = table().with_columns(
        pl.when(pl.int_range(pl.len()) % 7 == 0)
        .then(None)
        .otherwise(pl.col("visits"))
        .alias("visits")
    )
    path = tmp_path / "t.csv"
    df.write_csv(path)
    d = infer(path, target="bought", sensitive=["region"])
    cols = {c.name: c for c in d.columns}
    assert cols["visits"].nullable and not cols["income"].nullable
    assert d.sensitive == ["region", "gender"] and "region" in d.features
    assert d.time is None and d.shop_opened is None


@pytest.mark.parametrize(
    ("values", "ctype"),
    [
        (["1", "2", None], "int"),
        (["0", "1"], "int"),
        (["1.5", "2"], "float"),
        (["true", "FALSE"], "bool"),
        (["2025-01-02", "2025-03-04"], "date"),
        (["2025-01-02T08:00:00Z", "2025-01-02 09:00:00"], "datetime"),
        (["2025-01-02T08:00:00", "2025-01-02T09:00:00+02:00"], "datetime"),  # normalised
        (["a", "1"], "string"),
    ],
)
def test_infer_type(values, ctype):
    assert infer_type(pl.Series("c", values, dtype=pl.String))[0] == ctype


@pytest.mark.parametrize(
    ("values", "task"),
    [
        ([0, 1] * 50, "binary"),
        ([True, False] * 50, "binary"),
        (list(range(3)) * 30, "multiclass"),
        (list(range(20)) * 5, "multiclass"),
        (list(range(100)), "regression"),
        ([0.5, 1.0, 2.0], "regression"),
        (["a", "b", "c"] * 10, "multiclass"),
    ],
)
def test_infer_task(values, task):
    s = pl.Series(values)
    ctype = {pl.Int64: "int", pl.Float64: "float", pl.Boolean: "bool", pl.String: "string"}[s.dtype]
    assert infer_task(s, ctype) == task


def test_task_inferred_for_multiclass_and_regression(tmp_path):
    df = table().with_columns(
        (pl.col("visits") % 4).alias("bucket"), (pl.col("income") * 1.5).alias("spend")
    )
    path = tmp_path / "t.csv"
    df.write_csv(path)
    assert infer(path, target="bucket").task == "multiclass"
    assert infer(path, target="spend").task == "regression"
    assert infer(path, target="visits", task="regression").task == "regression"


def test_parquet_is_converted_to_csv_landing(tmp_path):
    df = table().with_columns(pl.col("ts").str.to_datetime(time_zone="UTC"))
    path = tmp_path / "acc.parquet"
    df.write_parquet(path)
    d = infer(path, target="bought", time="ts")
    landed = pl.read_csv(d.landing, infer_schema=False)
    assert landed.columns == df.columns and landed.height == df.height
    assert landed["ts"][0] == "2025-01-01T00:00:00.000000Z"
    assert {c.name: c.type for c in d.columns}["ts"] == "datetime"


# ------------------------------------------------------------------ the project written


def test_init_writes_a_project_that_loads(csv, tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_AUTHOR_NAME", "t")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@example.com")
    dest = tmp_path / "proj"
    assert main(["init", str(dest), "--from", str(csv), "--target", "bought", "--time", "ts"]) == 0
    for rel in ("hortus.yaml", "contracts.yaml", "params.yaml", "dvc.yaml", "access_policy.yaml",
                "Makefile", "README.md", "pyproject.toml", ".gitignore", ".dvcignore", "data.dvc",
                "notebooks/train.py", "notebooks/explore.py", "notebooks/monitor.py",
                "notebooks/model_report.py", "tests/test_data.py", "tests/test_pipeline.py",
                ".dvc/config"):  # fmt: skip
        assert (dest / rel).exists(), rel
    assert list((dest / "data" / "accounts").glob("accounts-*.csv"))
    project = Project.load(dest)
    model = project.model()
    assert (model.name, model.task, model.table, model.target) == (
        "proj",
        "binary",
        "silver.accounts",
        "bought",
    )
    assert model.ids == ("account_id",) and model.sensitive == ("gender",)
    assert project.features is None and project.examples is None and project.kpis is None
    catalog = Catalog.load(root=dest)
    project.validate(catalog)
    contract = catalog.get("silver.accounts")
    assert contract.column("email").pii == "direct" and contract.column("gender").sensitive
    assert contract.landing.glob == "accounts/*.csv*"
    params = yaml.safe_load((dest / "params.yaml").read_text())
    assert params["model_card"]["proj"]["owners"] == []
    assert params["gate"]["model_checks"]["behavioural"]["invariance"] == ["account_id"]
    assert "kpi_ranges" not in params["monitor"]
    stages = yaml.safe_load((dest / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["ingest", "silver", "train", "register", "gate", "score", "monitor",
                            "report", "docs"]  # fmt: skip
    assert all(s["cmd"].startswith("HORTUS_USER=pipeline hortus ") for s in stages.values())
    pyproject = (dest / "pyproject.toml").read_text()
    assert "editable = true" in pyproject and "[tool.uv.sources]" in pyproject
    assert "[analytics]" not in (dest / ".dvc" / "config").read_text()
    assert "analytics = false" in (dest / ".dvc" / "config").read_text()
    import subprocess

    log = subprocess.run(["git", "log", "--oneline"], cwd=dest, capture_output=True, text=True)
    assert "hortus init" in log.stdout
    status = subprocess.run(["git", "status", "--porcelain"], cwd=dest, capture_output=True,
                            text=True)  # fmt: skip
    assert status.stdout == ""
    assert not list(tmp_path.glob(".proj.init-*"))


def test_init_refuses_a_folder_that_is_not_empty(csv, tmp_path):
    dest = tmp_path / "proj"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(InitError, match="already exists and is not empty"):
        init_project(dest, infer(csv, target="bought"))
    assert (dest / "keep.txt").read_text() == "mine" and len(list(dest.iterdir())) == 1


def test_a_failure_while_writing_leaves_nothing(csv, tmp_path, monkeypatch):
    from hortus.project import _write  # init_project looks up _run there

    def boom(*a, **k):
        raise InitError("dvc add data failed: simulated")

    monkeypatch.setattr(_write, "_run", boom)
    with pytest.raises(InitError, match="simulated"):
        init_project(tmp_path / "proj", infer(csv, target="bought"))
    assert nothing_left(tmp_path)


# ------------------------------------------------------------------ bad input


def run_init(tmp_path, path, *args):
    return main(["init", str(tmp_path / "proj"), "--from", str(path), *args])


BAD = {
    "no_header": (
        lambda p: p.write_text("1,2.5,0\n2,3.5,1\n3,1.0,0\n"),
        ["--target", "x"],
        "has no header: its first line .* looks like data.*Add a first line naming every column",
    ),
    "empty_file": (lambda p: p.write_text(""), ["--target", "x"], "is empty"),
    "header_only": (
        lambda p: p.write_text("a,b,y\n"),
        ["--target", "y"],
        "is empty: it has a header .* but no data rows",
    ),
    "one_class_target": (
        lambda p: table().with_columns(pl.lit(1).alias("bought")).write_csv(p),
        ["--target", "bought"],
        "--target 'bought' has one value only .* needs at least two classes; pick another",
    ),
    "missing_target": (
        lambda p: table().write_csv(p),
        ["--target", "boughtt"],
        "--target 'boughtt': no such column in .*did you mean 'bought'",
    ),
    "time_does_not_parse": (
        lambda p: table().with_columns(pl.lit("yesterday").alias("ts")).write_csv(p),
        ["--target", "bought", "--time", "ts"],
        "--time 'ts': its values do not parse as dates or datetimes .*yesterday",
    ),
    "id_column_as_feature": (
        lambda p: table().write_csv(p),
        ["--target", "bought", "--features", "income,account_id"],
        "--features names 'account_id', which looks like an identifier .* drop it from --features",
    ),
    "unique_int_as_feature": (
        lambda p: table().with_columns(pl.int_range(pl.len()).alias("row_no")).write_csv(p),
        ["--target", "bought", "--features", "income,row_no"],
        "'row_no', which looks like an identifier \\(a different value in every row\\)",
    ),
    "string_binary_target": (
        lambda p: table().with_columns(pl.col("gender").alias("y")).write_csv(p),
        ["--target", "y", "--task", "binary"],
        "a binary target must be 0/1 or true/false; recode it .* or use --task multiclass",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_clearly_and_leaves_nothing(case, tmp_path, capsys):
    write, args, message = BAD[case]
    path = tmp_path / "in.csv"
    write(path)
    with pytest.raises(InitError, match=message):
        infer(path, **_kwargs(args))
    assert run_init(tmp_path, path, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("hortus: error: ") and "Traceback" not in err
    assert nothing_left(tmp_path)


def _kwargs(args: list[str]) -> dict:
    out = {}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        key = flag.lstrip("-")
        out[key] = value.split(",") if key == "features" else value
    return out


def test_a_column_of_personal_names_is_direct_pii_whatever_its_name(tmp_path):
    first = ["Anna", "Ben", "Clara", "David", "Eva", "Hugo"]
    last = ["Smith", "Meyer", "Jones", "Brown", "Weber"]
    df = table().with_columns(
        pl.Series("holder", [f"{first[i % 6]} {last[(i // 6) % 5]}" for i in range(200)]),
        pl.Series("city", ["New York", "Los Angeles", "San Diego"] * 66 + ["New York"] * 2),
    )
    path = tmp_path / "t.csv"
    df.write_csv(path)
    d = infer(path, target="bought")
    assert "holder" in d.direct and "holder" not in d.features
    assert "city" not in d.direct and "city" in d.features  # three categories, not names
