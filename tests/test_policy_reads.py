"""Every read of lakehouse data goes through the table API (issue 18, item 3).

The probe: `hortus drift lakehouse/restricted/bronze/users ...` read the Delta folder with
`pl.scan_delta`, so a user outside the policy printed raw names, e-mails and phones,
unaudited.  Here every CLI command is classified (reads lakehouse data, or why not), each
data-reading command is run as a user without the grant (refused, denial audited, no raw
value printed) and as one with it (each read leaves an audit record), paths inside the
lakehouse are resolved to their table or refused, and no module a command or notebook
runs reads Delta or Parquet files except through the reviewed places listed below.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from conftest import TEST_KEY, USERS_HEADER, user_row, with_policy
from hortus.cli.core import build_parser, main
from hortus.config import Paths
from hortus.governance.audit import AuditLog, default_path
from hortus.lakehouse import silver
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.ingest import ingest
from hortus.lakehouse.locate import LakehousePathError, table_at
from hortus.lakehouse.tables import Lakehouse

ROOT = Path(__file__).resolve().parents[1]
RAW_NAME = "Jane Doe1"  # a raw name in bronze.users (silver holds a token)
RAW_EMAIL = "jane1@example.com"

# Every `hortus` command that reads lakehouse data: (argv after --root, a user without the
# grant, a user with it, the table its read is audited on).  {root} is the project root.
READS = {
    "drift (restricted path)": (
        ["drift", "{root}/lakehouse/restricted/bronze/users",
         "{root}/lakehouse/restricted/bronze/users", "--columns", "name,email"],
        ["nobody", "alex"], "dana", "bronze.users",
    ),
    "drift (table folder)": (
        ["drift", "{root}/lakehouse/silver/users", "silver.users", "--columns", "region"],
        ["nobody"], "alex", "silver.users",
    ),
    "drift (table name)": (
        ["drift", "bronze.users", "bronze.users", "--columns", "name"],
        ["nobody", "alex"], "dana", "bronze.users",
    ),
    "catalog show": (["catalog", "show", "bronze.users"], ["nobody", "alex"], "dana",
                     "bronze.users"),
    "quarantine": (["quarantine"], ["nobody", "alex"], "dana", "quarantine.rows"),
    "audit show": (["audit", "show"], ["nobody", "alex"], "audrey", "ops.audit_log"),
    "audit verify": (["audit", "verify"], ["nobody", "alex"], "audrey", "ops.audit_log"),
    "access reidentify": (
        ["access", "reidentify", "silver.users", "email", "{token}"], ["nobody", "alex"],
        "dana", "silver.users.email",
    ),
    "models list": (["models", "list"], ["nobody", "dana"], None, None),
    "lineage": (["lineage", "bronze.users"], ["nobody", "alex"], "dana", "bronze.users"),
}  # fmt: skip

# Every other command, and why it is not a read of lakehouse data by an ordinary user.
NOT_READS = {
    "models show": "registry tables through Registry -> Lakehouse.scan (like models list)",
    "models approve": "registry write through Lakehouse (approve grant); tests/test_four_eyes.py",
    "models approvals": "registry tables through Registry -> Lakehouse.scan",
    "models promote": "registry write through Lakehouse (promote grant); tests/test_four_eyes.py",
    "models rollback": "registry write through Lakehouse (promote grant)",
    "models aliases": "registry tables through Registry -> Lakehouse.scan",
    "models compare": "registry tables through Registry -> Lakehouse.scan",
    "simulate": "writes a landing export; reads no lakehouse table",
    "ingest": "pipeline stage: reads landing files, writes bronze through Lakehouse.write",
    "silver": "pipeline stage: reads bronze through Lakehouse.scan (write grant needed)",
    "kpis": "pipeline stage: Lakehouse.scan / write",
    "train": "pipeline stage: the train notebook reads through Lakehouse.open",
    "register": "pipeline stage: registry through Lakehouse",
    "score": "pipeline stage: Lakehouse.scan / write",
    "docs": "pipeline stage: reads contracts and reports, tables through Lakehouse",
    "catalog list": "contracts and table versions (metadata, documented as not enforced)",
    "catalog search": "contracts only (no table data); tables the user may not read are left out",
    "data": "verifies or restores the landing snapshot (data/), not the lakehouse",
    "key": "writes the demo keys",
    "gate": "pipeline stage: Lakehouse.scan of the model's tables",
    "reproduce": "clones the repository and rebuilds in a new folder",
    "params": "checks params.yaml",
    "features build": "pipeline stage: Lakehouse.scan / write",
    "features list": "feature definitions only",
    "features lookup": "online store: issue 10 (policy wrapper of helper E)",
    "features keys": "online store: issue 10 (policy wrapper of helper E)",
    "features skew": "Lakehouse.scan of the offline logs and the online store (issue 10)",
    "access check": "explains the policy; reads no table",
    "audit writer": "the audit writer's own process: appends to ops.audit_log as the writer's OS "
    "user (tests/test_audit_writer.py); reads no table for anyone",
    "audit rotate-key": "writer side: appends one key_rotation record; reads no table data",
    "monitor run": "monitors read through Lakehouse.scan",
    "monitor stage": "pipeline stage: monitors through Lakehouse.scan",
    "monitor watch": "pipeline stage: ingest and silver through Lakehouse",
    "notebooks run": "runs a notebook: each opens Lakehouse.open (see the notebook test)",
    "notebooks publish": "runs the model report notebook (Lakehouse.open)",
    "notebooks list": "lists notebook files",
    "app": "serves a notebook (Lakehouse.open as the app user)",
    "init": "reads the --from file; a file inside a lakehouse is refused (test below)",
    "serve": "online scoring: features through the online store wrapper (issue 10)",
    "serve token": "issues a service token; reads no table",
    "maintain": "maintain grant per table (audited): compaction, retention, vacuum; "
    "tests/test_maintain.py",
    "erase": "erase grant on each table changed, audited per table; tests/test_erasure.py",
    "subject export": "reads through Lakehouse.scan as the user (audited); tests/test_erasure.py",
    "subject erasures": "ops.erasures (keyed references, counts) under the read or erase grant "
    "on it (audited); tests/test_erasure.py",
    "keys rotate": "rotate_keys grant on every table (audited per table re-keyed); bronze read "
    "through Lakehouse.scan; tests/test_key_rotation.py",
    "keys status": "which tables hold tokens (no values shown), under the rotate_keys grant "
    "(a denial audited); tests/test_key_rotation.py",
}

# The only places of the library that open Delta or Parquet data without the table API,
# and why each is safe.  A new one fails test_no_module_reads_lakehouse_files_directly.
RAW_READS_ALLOWED = {
    "hortus/lakehouse/tables.py": "the table API itself",
    "hortus/lakehouse/delta_append.py": "the table API's writer",
    "hortus/lakehouse/_objstore.py": "the table API's table locations (local or s3://): opens "
    "tables for tables.py and audit.py, which check the grants",
    "hortus/lakehouse/locate.py": "reads commit metadata only, to refuse Hortus tables",
    "hortus/governance/audit.py": "the audit log's own reader/writer (grant checked by callers)",
    "hortus/governance/_audit_tail.py": "the audit log's tail reader for appends (audit.py)",
    "hortus/governance/access.py": "a docstring example",
    "hortus/cli/drift.py": "files outside every lakehouse only (table_at first)",
    "hortus/project/_read.py": "the init source file, refused inside a lakehouse (table_at)",
    "hortus/lakehouse/maintain.py": "maintenance under the maintain grant checked per table "
    "(audited); retention counts read through the table API",
    "hortus/governance/erasure.py": "erasure: every file of every version, under the erase "
    "grant checked per table (audited); exports read through the table API",
    "hortus/executor/plan.py": "workers run a read plan the driver resolved through "
    "Lakehouse.scan (grant, masks, row filter, audit record) at a fixed Delta version",
    "hortus/governance/rotation.py": "PII key rotation: token columns of every table under "
    "the rotate_keys grant checked per table (audited per table re-keyed); raw values through "
    "the table API",
}
RAW_READERS = {"scan_delta", "read_delta", "DeltaTable", "scan_parquet", "read_parquet",
               "scan_pyarrow_dataset", "read_table", "ParquetFile"}  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Build a small project as the pipeline: bronze and silver users, quarantine."""
    root = tmp_path_factory.mktemp("reads")
    with_policy(root)
    paths = Paths.at(root)
    lines = [USERS_HEADER] + [user_row(i, region=r) for i, r in enumerate(["UKI", "DACH"] * 4, 1)]
    lines.append(user_row(99, email="not-an-email"))  # quarantined
    (paths.data / "users").mkdir(parents=True)
    (paths.data / "users" / "users-2025-03-01.csv").write_text("\n".join(lines) + "\n")
    lh = Lakehouse(paths=paths, catalog=Catalog.load(), stage="test", user="pipeline")
    ingest(paths.data, lh)
    silver.build(lh, silver.SilverOptions(key=TEST_KEY.encode()))
    lh.close()
    return root


@pytest.fixture
def root(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "proj"))


def _audit(root: Path) -> pl.DataFrame:
    return AuditLog.open(default_path(Paths.at(root)), secrets_dir=root).show()


def _commands() -> list[str]:
    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> list[str]:
        out: list[str] = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out += walk(sub, (*prefix, name)) or [" ".join((*prefix, name))]
        return out

    return walk(build_parser(), ())


def test_every_cli_command_is_classified():
    """Check that each command is either tested as a read below or says why it is not one."""
    tested = {name.split(" (")[0] for name in READS}
    missing = [c for c in _commands() if c not in tested and c not in NOT_READS]
    assert missing == [], f"classify these commands in READS or NOT_READS: {missing}"


def _run(root: Path, argv: list[str], user: str, monkeypatch, capsys, token: str = ""):
    monkeypatch.setenv("HORTUS_USER", user)
    monkeypatch.chdir(root)
    args = [a.format(root=root, token=token) for a in argv]
    code = main(["--root", str(root), *args])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("case", list(READS))
def test_data_reading_command_refuses_without_the_grant_and_audits(case, root, monkeypatch, capsys):
    """Check refusal (no raw value printed, denial audited) and an audited permitted read."""
    argv, denied, allowed, table = READS[case]
    token = Lakehouse.open(root, user="pipeline").read("silver.users")["email"][0]
    for user in denied:
        before = _audit(root).height
        code, text = _run(root, argv, user, monkeypatch, capsys, token)
        assert code != 0 and "access denied" in text, (user, text)
        assert RAW_NAME not in text and RAW_EMAIL not in text
        new = _audit(root).slice(before)
        assert ((new["user"] == user) & (new["outcome"] == "denied")).any(), new
    if allowed is None:
        return
    before = _audit(root).height
    code, text = _run(root, argv, allowed, monkeypatch, capsys, token)
    assert code in (0, 1), text  # drift exits 1 when it finds drift
    new = _audit(root).slice(before)
    reads = new.filter(
        (pl.col("user") == allowed) & (pl.col("object") == table) & (pl.col("outcome") == "allowed")
    )
    assert reads.height >= 1, new


def test_drift_json_and_html_of_a_lakehouse_path_are_masked_for_the_reader(
    root, monkeypatch, capsys
):
    """Check that an analyst's drift on the silver folder writes masked values, audited."""
    out = root / "out"
    argv = ["drift", "{root}/lakehouse/silver/users", "{root}/lakehouse/silver/users",
            "--columns", "age_band", "--json", str(out / "r.json"),
            "--html", str(out / "r.html")]  # fmt: skip
    code, _ = _run(root, argv, "alex", monkeypatch, capsys)
    assert code == 0
    raw_bands = set(Lakehouse.open(root, user="pipeline").read("silver.users")["age_band"])
    report = (out / "r.json").read_text() + (out / "r.html").read_text()
    assert not any(f'"{band}"' in report for band in raw_bands)
    assert "tok_" in json.dumps(json.loads((out / "r.json").read_text()))


@pytest.mark.parametrize(
    "where",
    ["lakehouse", "lakehouse/restricted", "lakehouse/restricted/bronze",
     "lakehouse/restricted/bronze/users/_delta_log", "{parquet}", ".", "lakehouse/ops"],
)  # fmt: skip
def test_paths_inside_a_lakehouse_that_are_not_a_table_are_refused(
    where, root, monkeypatch, capsys
):
    """Check that layer folders, a table's files and folders holding the lakehouse are refused."""
    parquet = next((root / "lakehouse/restricted/bronze/users").glob("*.parquet"))
    path = root / where.format(parquet=parquet.relative_to(root))
    with pytest.raises(LakehousePathError, match="table API"):
        table_at(path, root)
    code, text = _run(root, ["drift", str(path), "silver.users"], "dana", monkeypatch, capsys)
    assert code == 2 and "table API" in text and RAW_NAME not in text


def test_drift_config_file_inside_a_lakehouse_is_refused(root, monkeypatch, capsys):
    """Check that --config cannot echo a Delta log (its column statistics hold raw values)."""
    log = next((root / "lakehouse/restricted/bronze/users/_delta_log").glob("*.json"))
    argv = ["drift", "silver.users", "silver.users", "--config", str(log)]
    code, text = _run(root, argv, "alex", monkeypatch, capsys)
    assert code == 2 and "table API" in text and RAW_NAME not in text


def test_links_and_copies_of_tables_are_not_a_way_around(root, tmp_path, monkeypatch, capsys):
    """Check that a symlink resolves to its table, and a copy elsewhere is refused."""
    link = tmp_path / "link"
    link.symlink_to(root / "lakehouse/restricted/bronze/users")
    assert table_at(link, root)[1] == "bronze.users"
    code, text = _run(root, ["drift", str(link), str(link), "--columns", "name"], "alex",
                      monkeypatch, capsys)  # fmt: skip
    assert code == 2 and "access denied" in text and RAW_NAME not in text
    copy = Path(shutil.copytree(root / "lakehouse/restricted/bronze/users", tmp_path / "copy"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LakehousePathError, match="written by Hortus"):
        table_at(copy, None)
    plain = tmp_path / "plain.csv"
    plain.write_text("a\n1\n")
    assert table_at(plain, root) is None


def test_init_refuses_a_source_file_inside_a_lakehouse(root, tmp_path, monkeypatch, capsys):
    """Check that `hortus init --from` cannot copy a table's Parquet file into a new project."""
    parquet = next((root / "lakehouse/restricted/bronze/users").glob("*.parquet"))
    argv = ["init", str(tmp_path / "new"), "--from", str(parquet), "--target", "region"]
    code, text = _run(root, argv, "alex", monkeypatch, capsys)
    assert code == 2 and "table API" in text
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())


def _raw_reads(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        name = getattr(node, "attr", None) or getattr(node, "id", None)
        if name in RAW_READERS and isinstance(node, (ast.Attribute, ast.Name)):
            found.append(f"{path.name}:{node.lineno} {name}")
    text = path.read_text(encoding="utf-8")
    if "scan_delta(" in text and not found:  # in a docstring example
        found.append(f"{path.name}: scan_delta in text")
    return found


def test_no_module_reads_lakehouse_files_directly():
    """Check every library module (what commands run) and notebook for raw Delta/Parquet reads."""
    offenders = {}
    lib = ROOT / "lib"
    for path in sorted((lib / "hortus").rglob("*.py")):
        rel = path.relative_to(lib).as_posix()
        if rel in RAW_READS_ALLOWED or "/domains/" in rel or "/templates/" in rel:
            continue
        if found := _raw_reads(path):
            offenders[rel] = found
    for path in sorted((ROOT / "notebooks").glob("*.py")):
        if found := _raw_reads(path):
            offenders[f"notebooks/{path.name}"] = found
    assert offenders == {}, (
        f"read through Lakehouse, or review and list in RAW_READS_ALLOWED: {offenders}"
    )


@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "notebooks").glob("*.py")))
def test_notebooks_open_the_lakehouse_as_the_acting_user(notebook):
    """Check that each notebook reads data through Lakehouse.open as the acting user."""
    text = (ROOT / "notebooks" / notebook).read_text(encoding="utf-8")
    assert "Lakehouse.open(" in text
    assert "user=" not in text.split("Lakehouse.open(", 1)[1].split(")", 1)[0]


@pytest.mark.slow
@pytest.mark.parametrize("notebook", ["explore", "monitor", "model_report"])
def test_notebooks_refuse_a_user_without_grants_and_audit_it(notebook, root):
    """Run each data notebook as a script as a user outside the policy: denied, audited, no PII.

    (About 10-30 s each; the train notebook needs a built feature store: test_train_notebook.)
    """
    import os
    import subprocess
    import sys

    (root / "notebooks").mkdir(exist_ok=True)
    shutil.copy(ROOT / "notebooks" / f"{notebook}.py", root / "notebooks")
    before = _audit(root).height
    env = os.environ | {"HORTUS_USER": "nobody", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, f"notebooks/{notebook}.py"], cwd=root, env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    text = done.stdout + done.stderr
    assert RAW_NAME not in text and RAW_EMAIL not in text
    new = _audit(root).slice(before)  # explore offers no table to nobody: it reads nothing
    assert set(new["user"]) <= {"nobody"} and set(new["outcome"]) <= {"denied"}, new
    assert new.height >= 1 or notebook == "explore"
