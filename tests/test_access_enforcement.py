"""Access control enforced by the table API on real Delta tables, and its audit trail.

A small project is built once by the `pipeline` user (real ingest and silver on a
users CSV, a hand-made gold KPI table); every test works on its own copy, acting
as the users of the repository's access_policy.yaml through `Lakehouse`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from conftest import POLICY, TEST_KEY, USERS_HEADER, user_row, with_policy
from hortus.cli.core import main
from hortus.config import Paths
from hortus.errors import HortusError
from hortus.governance.access import AccessDenied
from hortus.governance.audit import (
    GENESIS,
    AuditError,
    AuditLog,
    canonical,
    default_path,
    record_hash,
)
from hortus.lakehouse import silver
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.ingest import ingest
from hortus.lakehouse.pii import token
from hortus.lakehouse.tables import Lakehouse

REGIONS = ["UKI", "DACH", "BENELUX", "FRANCE", "NORDICS", "DACH", "UKI", "FRANCE"]
EU = {"DACH", "BENELUX", "FRANCE"}
POLICY_VERSION = hashlib.sha256(POLICY.read_bytes()).hexdigest()
WRITTEN = ("bronze.users", "quarantine.rows", "silver.users", "gold.kpi_daily")


def _kpis(catalog: Catalog) -> pl.DataFrame:
    """Return a small daily KPI frame (two days x ALL and four regions), contract-typed."""
    regions = ["ALL", "UKI", "DACH", "FRANCE", "NORDICS"]
    n = 2 * len(regions)
    df = pl.DataFrame(
        {
            "date": [date(2025, 3, 1)] * len(regions) + [date(2025, 3, 2)] * len(regions),
            "region": regions * 2,
            "sessions": list(range(10, 10 + n)),
            "orders": list(range(n)),
            "converted_sessions": list(range(n)),
            "conversion_rate": [0.1] * n,
            "revenue": [float(i * 10) for i in range(n)],
            "aov": [10.0] * n,
            "rec_impressions": [5] * n,
            "rec_clicks": [1] * n,
            "rec_ctr": [0.2] * n,
        }
    )
    return df.cast(dict(catalog.get("gold.kpi_daily").schema))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Build the project once as the pipeline: bronze, quarantine, silver users, gold KPIs."""
    root = tmp_path_factory.mktemp("secure")
    with_policy(root)
    paths = Paths.at(root)
    lines = [USERS_HEADER] + [
        user_row(i, region=r, email=f"person{i}@example.com") for i, r in enumerate(REGIONS, 1)
    ]
    lines.append(user_row(99, email="not-an-email"))  # quarantined by silver
    (paths.data / "users").mkdir(parents=True)
    (paths.data / "users" / "users-2025-03-01.csv").write_text("\n".join(lines) + "\n")
    lh = Lakehouse(paths=paths, catalog=Catalog.load(), stage="test", user="pipeline")
    ingest(paths.data, lh)
    silver.build(lh, silver.SilverOptions(key=TEST_KEY.encode()))
    lh.write("gold.kpi_daily", _kpis(lh.catalog), mode="overwrite")
    lh.close()
    return root


@pytest.fixture
def root(built: Path, tmp_path: Path) -> Path:
    """Return a private copy of the built project."""
    return Path(shutil.copytree(built, tmp_path / "proj"))


def as_user(root: Path, user: str) -> Lakehouse:
    """Open the project's lakehouse as one user (explicitly, not from the environment)."""
    return Lakehouse.open(root, stage="test", user=user)


def audit(root: Path) -> pl.DataFrame:
    """Return every audit record of the project (read directly, for checking)."""
    return AuditLog.open(default_path(Paths.at(root)), secrets_dir=root).show()


def records_of(root: Path, user: str, obj: str) -> pl.DataFrame:
    """Return the audit records of one user on one object."""
    return audit(root).filter((pl.col("user") == user) & (pl.col("object") == obj))


# ---------------------------------------------------------------- reads
def test_notebook_read_masks_identifiers_and_keeps_names_and_dtypes(root, monkeypatch):
    """Check that an analyst's notebook read of silver.users masks PII, keeps schema and tokens."""
    full = as_user(root, "pipeline").read("silver.users")
    monkeypatch.setenv("HORTUS_USER", "alex")
    monkeypatch.chdir(root)
    seen = Lakehouse.open().read("silver.users")  # identity and project from the environment
    assert seen.schema == full.schema and seen.height == full.height
    # direct identifiers were already tokens in silver: kept, so they still join
    assert seen["email"].to_list() == full["email"].to_list()
    assert seen["email"].str.starts_with("tok_").all()
    # quasi-identifiers: strings become keyed tokens, other types null
    expected = [token(v, TEST_KEY.encode()) for v in full["age_band"].to_list()]
    assert seen["age_band"].to_list() == expected
    assert seen["birth_year"].null_count() == seen.height
    assert full["birth_year"].null_count() == 0
    # unmasked by the analysts' grant, and not personal
    assert seen["region"].to_list() == full["region"].to_list()
    assert seen["device"].to_list() == full["device"].to_list()


def test_eu_analyst_sees_only_eu_rows_of_users_and_kpis(root):
    """Check that elena's row filter keeps exactly the continental-EU rows."""
    pipe, elena = as_user(root, "pipeline"), as_user(root, "elena")
    for table in ("silver.users", "gold.kpi_daily"):
        full = pipe.read(table)
        seen = elena.read(table)
        assert set(seen["region"]) <= EU and seen.height > 0
        assert seen.height == full.filter(pl.col("region").is_in(list(EU))).height
    assert as_user(root, "alex").read("gold.kpi_daily").height == pipe.read("gold.kpi_daily").height


def test_data_scientist_sees_identifiers_masked_but_columns_selectable(root):
    """Check that a column subset read by sam keeps masking (birth_year null, region tokenised)."""
    seen = as_user(root, "sam").read("silver.users", columns=["user_id", "region", "birth_year"])
    full = as_user(root, "pipeline").read("silver.users", columns=["user_id", "region"])
    assert seen.columns == ["user_id", "region", "birth_year"]
    assert seen["user_id"].to_list() == full["user_id"].to_list()
    assert seen["region"].str.starts_with("tok_").all()  # sensitive, no unmask grant for sam
    assert seen["birth_year"].null_count() == seen.height


MATRIX = [
    # user, action, table, allowed
    ("alex", "read", "bronze.users", False),
    ("alex", "read", "quarantine.rows", False),
    ("alex", "read", "silver.events", False),
    ("alex", "read", "gold.kpi_daily", True),
    ("alex", "write", "gold.kpi_daily", False),
    ("elena", "read", "silver.users", True),
    ("sam", "read", "bronze.users", False),
    ("sam", "read", "silver.users", True),
    ("sam", "write", "gold.kpi_daily", False),
    ("mia", "read", "quarantine.rows", False),
    ("mia", "write", "silver.users", False),
    ("audrey", "read", "bronze.users", False),
    ("audrey", "read", "silver.users", True),
    ("audrey", "write", "silver.users", False),
    ("paula", "read", "silver.users", False),
    ("paula", "read", "gold.kpi_daily", True),
    ("dana", "read", "bronze.users", True),
    ("dana", "read", "quarantine.rows", True),
    ("dana", "write", "bronze.users", True),
    ("dana", "write", "gold.kpi_daily", False),
    ("pipeline", "read", "quarantine.rows", True),
    ("pipeline", "write", "gold.kpi_daily", True),
    ("mallory", "read", "gold.kpi_daily", False),
    ("mallory", "write", "silver.users", False),
]


@pytest.mark.parametrize(("user", "action", "table", "allowed"), MATRIX)
def test_access_matrix_through_the_table_api_is_enforced_and_audited(
    root, user, action, table, allowed
):
    """Check each user x action x table against the policy, and that the attempt is audited."""
    lh = as_user(root, user)
    before = as_user(root, "pipeline").version(table) if table != "silver.events" else None
    logged = audit(root).height

    def attempt():
        if action == "read":
            return lh.read(table)
        current = as_user(root, "pipeline").read(table)
        return lh.write(table, current, mode="overwrite")

    if allowed:
        attempt()
        lh.close()
    else:
        with pytest.raises(AccessDenied, match=rf"user '{user}' may not {action} '{table}'"):
            attempt()
        if before is not None:  # a refused write changed nothing
            assert as_user(root, "pipeline").version(table) == before
    rows = (
        audit(root)
        .slice(logged)
        .filter(
            (pl.col("user") == user) & (pl.col("object") == table) & (pl.col("action") == action)
        )
    )
    assert rows["outcome"].to_list() == ["allowed" if allowed else "denied"]
    assert rows["policy_version"].to_list() == [POLICY_VERSION]
    assert rows["detail"][0].startswith("missing: " if not allowed else "v")


def test_restricted_zone_denial_names_the_owner_groups(root):
    """Check that an analyst's bronze read is refused naming the restricted-zone owners."""
    with pytest.raises(AccessDenied, match="restricted-zone owner group of bronze"):
        as_user(root, "alex").scan("bronze.users")
    raw = as_user(root, "dana").read("bronze.users")
    assert raw["email"].str.contains("@example.com").any()  # owners see raw data


def test_user_not_in_the_policy_gets_nothing(root):
    """Check that an unknown user can read, list the history of, or write no table."""
    lh = as_user(root, "mallory")
    for table in WRITTEN:
        for call in (lh.read, lh.history, lh.scan_or_empty):
            with pytest.raises(AccessDenied, match="is not in the policy"):
                call(table)
        with pytest.raises(AccessDenied, match="is not in the policy"):
            lh.write(table, pl.DataFrame({"x": [1]}))
    denied = audit(root).filter(pl.col("user") == "mallory")
    assert denied.height == 4 * len(WRITTEN) and set(denied["outcome"]) == {"denied"}


def test_no_policy_file_denies_everyone_and_says_to_create_one(root, capsys):
    """Check that a project without access_policy.yaml gives nobody any right."""
    (root / "access_policy.yaml").unlink()
    with pytest.raises(AccessDenied, match="create access_policy.yaml at the project root"):
        as_user(root, "pipeline").read("gold.kpi_daily")
    assert main(["--root", str(root), "access", "check", "dana", "read", "bronze.users"]) == 1
    assert "nobody has any right" in capsys.readouterr().out
    last = audit(root).tail(1).row(0, named=True)
    assert (last["outcome"], last["policy_version"]) == ("denied", "absent")


def test_missing_audit_key_refuses_the_read(root, monkeypatch):
    """Check that without an audit key nothing is read (no unaudited access)."""
    monkeypatch.delenv("HORTUS_AUDIT_KEY")
    with pytest.raises(AuditError, match="no audit key"):
        as_user(root, "pipeline").read("gold.kpi_daily")


# ---------------------------------------------------------------- audit
def test_reads_are_batched_into_one_audit_commit_per_flush(root):
    """Check that several reads cost one audit commit, written at close."""
    path = default_path(Paths.at(root))
    before = DeltaTable(str(path)).version()
    lh = as_user(root, "sam")
    for table in ("silver.users", "gold.kpi_daily", "silver.users"):
        lh.read(table)
    assert DeltaTable(str(path)).version() == before  # still buffered
    lh.close()
    assert DeltaTable(str(path)).version() == before + 1
    assert records_of(root, "sam", "silver.users").height == 2


@pytest.mark.parametrize("exit_normally", [False, True])
def test_records_reach_disk_when_the_process_dies_or_exits(root, exit_normally):
    """Check that a denied read (uncaught) and buffered reads are on disk after the process ends."""
    code = (
        "from hortus.lakehouse.tables import Lakehouse\n"
        f"lh = Lakehouse.open({str(root)!r}, stage='nb', user='alex')\n"
        "lh.read('gold.kpi_daily')\n" + ("" if exit_normally else "lh.read('bronze.users')\n")
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == (0 if exit_normally else 1), done.stderr
    assert records_of(root, "alex", "gold.kpi_daily")["outcome"].to_list() == ["allowed"]
    denied = records_of(root, "alex", "bronze.users")["outcome"].to_list()
    assert denied == ([] if exit_normally else ["denied"])
    if not exit_normally:
        assert "AccessDenied" in done.stderr


def test_every_attempt_is_audited_and_the_chain_verifies(root, capsys):
    """Check that reads, writes and denials all land in the log and `audit verify` exits 0."""
    before = audit(root).height
    alex, dana = as_user(root, "alex"), as_user(root, "dana")
    alex.read("silver.users")
    with pytest.raises(AccessDenied):
        alex.read("bronze.users")
    dana.write("silver.users", dana.read("silver.users"), mode="overwrite")
    alex.close()
    new = audit(root).slice(before)
    got = set(new.select("user", "action", "object", "outcome").iter_rows())
    assert got == {
        ("alex", "read", "silver.users", "allowed"),
        ("alex", "read", "bronze.users", "denied"),
        ("dana", "read", "silver.users", "allowed"),
        ("dana", "write", "silver.users", "allowed"),
        # the commit's table_committed event, written under the same grant and audited
        ("dana", "write", "ops.events", "allowed"),
    }
    assert new["ts"].null_count() == 0 and set(new["policy_version"]) == {POLICY_VERSION}
    read = new.filter((pl.col("user") == "alex") & (pl.col("outcome") == "allowed")).row(
        0, named=True
    )
    assert "masked=" in read["detail"] and "grant: analysts: read silver.users" in read["detail"]
    assert main(["--root", str(root), "audit", "verify"]) == 0
    assert "audit log intact" in capsys.readouterr().out


def test_policy_change_is_recorded_once(root):
    """Check that the first access under an edited policy adds one policy_change record."""
    with as_user(root, "pipeline") as lh:
        lh.read("gold.kpi_daily")
    policy = root / "access_policy.yaml"
    policy.write_text(policy.read_text() + "\n# reviewed again\n")
    new_version = hashlib.sha256(policy.read_bytes()).hexdigest()
    for _ in range(2):
        lh = as_user(root, "sam")
        lh.read("gold.kpi_daily")
        lh.close()
    log = audit(root)
    changes = log.filter(pl.col("action") == "policy_change")
    assert changes["policy_version"].to_list() == [POLICY_VERSION, new_version]  # first, edit
    changes = changes.filter(pl.col("policy_version") == new_version)
    change = changes.row(0, named=True)
    assert change["policy_version"] == new_version and change["user"] == "sam"
    assert f"{POLICY_VERSION} -> {new_version}" in change["detail"]


def _rewrite(root: Path, df: pl.DataFrame) -> None:
    path = default_path(Paths.at(root))
    df.write_delta(str(path), mode="overwrite")


def _edit(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    return df.with_columns(
        pl.when(pl.col("seq") == 3).then(pl.lit("alex")).otherwise("user").alias("user")
    ), 3


def _delete(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    return df.filter(pl.col("seq") != 2), 3


def _reorder(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Swap records 2 and 3 (contents and hashes) under unchanged seq numbers."""
    a, b = df.row(1, named=True), df.row(2, named=True)
    fields = [c for c in df.columns if c not in ("seq", "prev_hash")]
    out = df.with_columns(
        [
            pl.when(pl.col("seq") == 2)
            .then(pl.lit(b[c], dtype=df.schema[c]))
            .when(pl.col("seq") == 3)
            .then(pl.lit(a[c], dtype=df.schema[c]))
            .otherwise(pl.col(c))
            .alias(c)
            for c in fields
        ]
    )
    return out, 2


def _recompute(key: bytes | None):
    def tamper(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
        edited = _edit(df)[0].sort("seq")
        rows, prev = [], GENESIS
        for row in edited.with_columns(pl.col("ts").dt.epoch("us")).iter_rows(named=True):
            row["prev_hash"] = prev
            body = canonical(row)
            row["hash"] = prev = (
                hashlib.sha256(body).hexdigest() if key is None else record_hash(row, key)
            )
            rows.append(row)
        out = pl.DataFrame(rows).with_columns(pl.from_epoch("ts", "us").dt.replace_time_zone("UTC"))
        # a plain SHA-256 is the hash of a signed record: seq 1-2 come out unchanged, but
        # the signed head of their commit (seq 3, edited) fails: reported as seq 1..3, from
        # the record after the last good signed head (none: seq 1)
        return out.select(df.columns).cast(dict(df.schema)), 1

    return tamper


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (_edit, "record edited"),
        (_delete, "missing between"),
        (_reorder, "record edited"),
        (_recompute(None), "plain unkeyed SHA-256"),
        (_recompute(b"a-guessed-key"), "recomputed with another key"),
    ],
    ids=["edit", "delete", "reorder", "rewrite-sha256", "rewrite-other-key"],
)
def test_tampering_makes_audit_verify_exit_1_naming_the_record(root, capsys, tamper, why):
    """Check that edited, deleted, reordered or rewritten records fail `hortus audit verify`."""
    lh = as_user(root, "sam")
    lh.read("gold.kpi_daily")
    lh.close()
    assert main(["--root", str(root), "audit", "verify"]) == 0
    capsys.readouterr()
    df = pl.read_delta(str(default_path(Paths.at(root)))).sort("seq")
    tampered, seq = tamper(df)
    _rewrite(root, tampered)
    assert main(["--root", str(root), "audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert f"BROKEN at seq {seq}:" in out and why in out


def test_audit_show_lists_denied_attempts_to_auditors_only(root, capsys, monkeypatch):
    """Check `hortus audit show --denied --json` for an auditor, and its refusal to an analyst."""
    with pytest.raises(AccessDenied):
        as_user(root, "alex").read("quarantine.rows")
    monkeypatch.setenv("HORTUS_USER", "audrey")
    assert main(["--root", str(root), "audit", "show", "--denied", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {r["outcome"] for r in rows} == {"denied"}
    assert ("alex", "quarantine.rows") in {(r["user"], r["object"]) for r in rows}
    assert main(["--root", str(root), "audit", "show", "--user", "alex"]) == 0
    assert "quarantine.rows" in capsys.readouterr().out
    monkeypatch.setenv("HORTUS_USER", "alex")
    assert main(["--root", str(root), "audit", "show"]) == 2
    assert "may not read 'ops.audit_log'" in capsys.readouterr().err


# ---------------------------------------------------------------- CLI check
@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["alex", "read", "silver.users"], 0, "allowed by grant: analysts: read silver.users"),
        (["alex", "read", "bronze.users"], 1, "missing: membership of a restricted-zone owner"),
        (["sam", "write", "gold.kpi_daily"], 1, "missing: a grant of write on gold.kpi_daily"),
        (["elena", "read", "silver.users"], 0, "rows seen: analysts-eu: region in [DACH"),
        (["dana", "reidentify", "silver.users.email"], 0, "data-engineers: reidentify silver.*"),
        (["mallory", "read", "gold.kpi_daily"], 1, "is not in the policy"),
    ],
)
def test_access_check_names_the_grant_or_what_is_missing(root, capsys, args, code, says):
    """Check that `hortus access check` explains the decision and exits 0 or 1."""
    assert main(["--root", str(root), "access", "check", *args]) == code
    out = capsys.readouterr().out
    assert says in out and POLICY_VERSION in out


def test_access_check_lists_masked_columns(root, capsys):
    """Check that the check of a read lists the columns the user will see masked."""
    assert (
        main(["--root", str(root), "access", "check", "--json", "sam", "read", "silver.users"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert {"email", "region"} <= set(out["masked"]) and out["row_filter"] == "all rows"


# ---------------------------------------------------------------- re-identification
def test_reidentify_needs_the_grant_and_returns_raw_values(root, capsys, monkeypatch):
    """Check that dana turns email tokens back into raw values and others are refused."""
    tokens = as_user(root, "pipeline").read("silver.users").sort("user_id")["email"].to_list()
    found = as_user(root, "dana").reidentify("silver.users", "email", [*tokens, "tok_" + "0" * 24])
    assert found["value"].to_list()[:-1] == [f"person{i}@example.com" for i in range(1, 9)]
    assert found["value"][-1] is None
    for user in ("sam", "alex", "audrey", "pipeline"):  # no reidentify grant
        with pytest.raises(AccessDenied, match="missing: a grant of reidentify"):
            as_user(root, user).reidentify("silver.users", "email", tokens)
    rec = audit(root).filter(pl.col("action") == "reidentify")
    assert rec.filter(pl.col("outcome") == "denied").height == 4
    ok = rec.filter(pl.col("outcome") == "allowed").row(0, named=True)
    assert ok["user"] == "dana" and "tokens=9 resolved=8" in ok["detail"]
    assert "@" not in ok["detail"]  # never the values themselves
    monkeypatch.setenv("HORTUS_USER", "dana")
    assert (
        main(["--root", str(root), "access", "reidentify", "silver.users", "email", tokens[0]]) == 0
    )
    assert "person1@example.com" in capsys.readouterr().out


def test_reidentify_refuses_columns_that_hold_no_tokens(root):
    """Check that re-identifying a non-tokenised column is a clear error."""
    with pytest.raises(HortusError, match="silver.users.region holds no keyed tokens"):
        as_user(root, "dana").reidentify("silver.users", "region", ["UKI"])
