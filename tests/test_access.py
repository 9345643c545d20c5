"""Access policy: grants matrix, restricted zone, masking, row filters, four eyes."""

from __future__ import annotations

import getpass
import hashlib
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from hortus.errors import HortusError
from hortus.governance.access import (
    ACTIONS,
    AccessDenied,
    Policy,
    PolicyError,
    check_four_eyes,
    current_user,
)
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.contracts import Contract
from hortus.lakehouse.pii import token

ROOT = Path(__file__).resolve().parents[1]
DEMO_POLICY = ROOT / "access_policy.yaml"
KEY = b"test-only-key"
TOK = "tok_" + "ab" * 12  # an existing silver token

# Contracts of the shape of silver.users and gold.kpi_daily (kept inline so the
# test does not depend on the domain contract file).
USERS = Contract.from_dict(
    "users",
    {
        "layer": "silver",
        "owner": "data-engineers",
        "columns": {
            "user_id": {"type": "string"},
            "name": {"type": "string", "pii": "direct"},
            "email": {"type": "string", "pii": "direct"},
            "birth_date": {"type": "date", "pii": "quasi", "sensitive": True},
            "region": {"type": "string", "sensitive": True},
            "device": {"type": "string"},
            "spend": {"type": "float", "sensitive": True},
        },
    },
)
KPIS = Contract.from_dict(
    "kpi_daily",
    {
        "layer": "gold",
        "columns": {
            "date": {"type": "date"},
            "region": {"type": "string"},
            "orders": {"type": "int"},
        },
    },
)
BRONZE_USERS = Contract.from_dict(
    "users",
    {"layer": "bronze", "columns": {"email": {"type": "string", "pii": "direct"}}},
)


def users_frame() -> pl.DataFrame:
    """Return six silver.users rows: raw and tokenised identifiers, all regions."""
    return pl.DataFrame(
        {
            "user_id": [f"u{i:06d}" for i in range(1, 7)],
            "name": [TOK, "Jane Doe", None, TOK, "Max Muster", "Ana Sousa"],
            "email": ["jane@example.com", TOK, "max@example.de", None, TOK, "ana@example.fr"],
            "birth_date": ["1980-01-02", "1990-03-04", None, "1975-05-06", "2000-07-08", None],
            "region": ["DACH", "UKI", "FRANCE", "NORDICS", "BENELUX", None],
            "device": ["mobile", "desktop", "mobile", "tablet", "mobile", "desktop"],
            "spend": [10.5, 20.0, None, 3.25, 99.0, 1.0],
        }
    ).with_columns(pl.col("birth_date").str.to_date())


def kpi_frame() -> pl.DataFrame:
    """Return one day of KPIs for every region value of gold.kpi_daily."""
    regions = ["ALL", "UKI", "DACH", "BENELUX", "FRANCE", "NORDICS", "UNKNOWN"]
    return pl.DataFrame(
        {
            "date": [date(2025, 3, 1)] * len(regions),
            "region": regions,
            "orders": list(range(len(regions))),
        }
    )


@pytest.fixture(scope="module")
def policy() -> Policy:
    """Return the demo policy of the repository."""
    return Policy.load(DEMO_POLICY)


def write_policy(tmp_path: Path, text: str) -> Policy:
    """Write a policy file and load it."""
    path = tmp_path / "access_policy.yaml"
    path.write_text(text, encoding="utf-8")
    return Policy.load(path)


# ------------------------------------------------------------------- the matrix
MATRIX = [
    # data engineers own the restricted zone and may see raw PII
    ("dana", "read", "bronze.users", True),
    ("dana", "read", "quarantine.rows", True),
    ("dana", "write", "silver.users", True),
    ("dana", "unmask", "silver.users.email", True),
    ("dana", "reidentify", "silver.users.email", True),
    ("dana", "write", "gold.kpi_daily", False),
    ("dana", "promote", "recommender", False),
    ("dana", "approve", "recommender", False),
    # data scientists: silver and gold, sensitive attributes of the training set
    ("sam", "read", "silver.events", True),
    ("sam", "read", "bronze.users", False),
    ("sam", "write", "gold.training_set", True),
    ("sam", "write", "silver.users", False),
    ("sam", "unmask", "gold.training_set.user_profile__region", True),
    ("sam", "unmask", "silver.users.email", False),
    ("sam", "reidentify", "silver.users.email", False),
    ("sam", "train", "recommender", True),
    ("sam", "register", "recommender", True),
    ("sam", "promote", "recommender", False),
    ("sam", "approve", "recommender", False),
    # ml engineers promote, but do not approve
    ("mia", "promote", "recommender", True),
    ("mia", "approve", "recommender", False),
    ("mia", "write", "ops.model_versions", True),
    ("olivia", "approve", "recommender", True),
    # analysts: KPIs and customers by region, masked
    ("alex", "read", "gold.kpi_daily", True),
    ("alex", "read", "silver.users", True),
    ("alex", "read", "silver.events", False),
    ("alex", "read", "bronze.users", False),
    ("alex", "read", "quarantine.rows", False),
    ("alex", "write", "gold.kpi_daily", False),
    ("alex", "unmask", "silver.users.region", True),
    ("alex", "unmask", "silver.users.email", False),
    ("alex", "train", "recommender", False),
    ("elena", "read", "gold.kpi_daily", True),
    ("elena", "read", "silver.events", False),
    # auditors read everything except the restricted zone
    ("audrey", "read", "ops.audit_log", True),
    ("audrey", "read", "gold.training_set", True),
    ("audrey", "read", "bronze.users", False),
    ("audrey", "read", "quarantine.rows", False),
    ("audrey", "write", "ops.audit_log", False),
    ("audrey", "unmask", "silver.users.email", False),
    # approvers approve, never promote
    ("paula", "approve", "recommender", True),
    ("paula", "promote", "recommender", False),
    ("paula", "read", "ops.model_versions", True),
    # the pipeline service user builds everything but cannot release models
    ("pipeline", "read", "bronze.users", True),
    ("pipeline", "write", "silver.users", True),
    ("pipeline", "unmask", "bronze.users.email", True),
    ("pipeline", "register", "recommender", True),
    ("pipeline", "promote", "recommender", False),
    ("pipeline", "approve", "recommender", False),
    # a user the policy does not list
    ("mallory", "read", "gold.kpi_daily", False),
    ("mallory", "approve", "recommender", False),
]


@pytest.mark.parametrize(("user", "action", "obj", "allowed"), MATRIX)
def test_decide_matches_the_access_matrix(policy, user, action, obj, allowed):
    """Check that the demo policy allows and denies each user/action/object as designed."""
    d = policy.decide(user, action, obj)
    assert d.allowed is allowed, d.explain()
    assert (d.user, d.action, d.object, d.policy_version) == (user, action, obj, policy.version)
    # an allowed decision names its grant; a denied one names what was missing
    assert (d.grant is not None) is allowed
    assert (d.missing is not None) is (not allowed)
    if allowed:
        group, _, rest = d.grant.partition(": ")
        assert group in policy.groups_of(user)
        assert rest.startswith(action + " ")


def test_decide_names_the_allowing_grant(policy):
    """Check that the decision names the exact grant that allowed it."""
    assert policy.decide("alex", "read", "gold.kpi_daily").grant == "analysts: read gold.kpi_daily"
    assert policy.decide("dana", "read", "bronze.users").grant == "data-engineers: read bronze.*"


def test_denied_decision_names_the_groups_that_would_grant(policy):
    """Check that a denial names the missing grant and which groups hold it."""
    d = policy.decide("mia", "approve", "recommender")
    assert "approve on recommender" in d.missing
    assert "approvers" in d.missing


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_user_not_in_policy_gets_nothing(policy, action):
    """Check that an unknown user belongs to no group and is denied every action."""
    obj = {"table": "gold.kpi_daily", "column": "gold.kpi_daily.region", "model": "recommender"}
    d = policy.decide("mallory", action, obj[ACTIONS[action]])
    assert not d.allowed
    assert d.groups == ()
    assert "not in the policy" in d.missing


def test_approve_is_granted_to_approvers_only(policy):
    """Check that exactly the members of approvers may approve, in the demo policy."""
    for user, groups in policy.users.items():
        assert policy.decide(user, "approve", "recommender").allowed is ("approvers" in groups)


@pytest.mark.parametrize("user", ["audrey", "alex", "sam"])
def test_restricted_zone_is_denied_to_non_owners_whatever_the_globs(policy, user):
    """Check that non-owners are refused bronze/quarantine, naming the owner groups."""
    for obj in ("bronze.users", "quarantine.rows"):
        d = policy.decide(user, "read", obj)
        assert not d.allowed
        assert "restricted-zone owner" in d.missing and "data-engineers" in d.missing


def test_restricted_zone_beats_a_catch_all_grant(tmp_path):
    """Check that a `*` read and unmask grant does not open the restricted zone."""
    p = write_policy(
        tmp_path,
        """
version: 1
restricted_zone: {bronze: [eng], quarantine: [eng]}
users: {ann: [everything], ed: [eng]}
groups:
  everything: {tables: {read: ["*"], write: ["*"]}, columns: {unmask: ["*"]}}
  eng: {tables: {read: ["bronze.*"]}}
""",
    )
    assert p.decide("ann", "read", "silver.users").allowed
    assert not p.decide("ann", "read", "bronze.users").allowed
    assert not p.decide("ann", "write", "quarantine.rows").allowed
    assert not p.decide("ann", "unmask", "bronze.users.email").allowed
    assert p.decide("ed", "read", "bronze.users").allowed
    # an owner still needs a grant
    d = p.decide("ed", "read", "quarantine.rows")
    assert not d.allowed and "a grant of read on quarantine.rows" in d.missing


def test_current_user_is_hortus_user_else_os_user(monkeypatch):
    """Check that identity comes from HORTUS_USER, else from the OS user."""
    monkeypatch.setenv("HORTUS_USER", "elena")
    assert current_user() == "elena"
    monkeypatch.delenv("HORTUS_USER")
    assert current_user() == getpass.getuser()


def test_policy_version_is_sha256_of_the_file_bytes(tmp_path):
    """Check that policy_version is the sha256 of the bytes and changes with them."""
    data = DEMO_POLICY.read_bytes()
    copy = tmp_path / "access_policy.yaml"
    copy.write_bytes(data)
    assert Policy.load(copy).version == hashlib.sha256(data).hexdigest()
    copy.write_bytes(data + b"# reviewed\n")
    changed = Policy.load(copy)
    assert changed.version == hashlib.sha256(data + b"# reviewed\n").hexdigest()
    assert changed.decide("alex", "read", "gold.kpi_daily").policy_version == changed.version


def test_explain_says_verdict_grant_and_version(policy):
    """Check that explain() names user, action, object, grant or missing, and version."""
    ok = policy.decide("paula", "approve", "recommender").explain()
    assert ok.startswith("ALLOWED: paula approve recommender")
    assert "approvers: approve *" in ok and policy.version in ok
    no = policy.decide("alex", "read", "bronze.users").explain()
    assert no.startswith("DENIED: alex read bronze.users")
    assert "missing: " in no and "groups of alex: analysts" in no


def test_access_denied_names_user_object_and_missing_grant(policy):
    """Check that require() raises AccessDenied naming user, object and missing grant."""
    with pytest.raises(AccessDenied, match=r"'sam' may not write 'silver.users'.*grant of write"):
        policy.require("sam", "write", "silver.users")


def test_unknown_action_is_refused(policy):
    """Check that an unknown action is an error, not a silent denial."""
    with pytest.raises(PolicyError, match="unknown action 'delete'"):
        policy.decide("dana", "delete", "silver.users")


# --------------------------------------------------------------------- read plans
def test_read_plan_masks_pii_and_sensitive_columns_keeping_dtypes(policy):
    """Check that an analyst's read masks PII/sensitive columns to tokens or nulls."""
    df = users_frame()
    plan = policy.read_plan("alex", "silver.users", None, USERS, key=KEY)
    out = plan.apply(df.lazy()).collect()
    assert out.schema == df.schema  # names and dtypes kept
    assert set(plan.masked) == {"name", "email", "birth_date", "spend"}  # region unmasked
    assert out["region"].to_list() == df["region"].to_list()
    assert out["user_id"].to_list() == df["user_id"].to_list()
    # tokens stay tokens (they still join); raw values become the same keyed tokens
    expected_email = [
        None if v is None else (v if v == TOK else token(v, KEY)) for v in df["email"]
    ]
    assert out["email"].to_list() == expected_email
    assert out["name"][0] == TOK and out["name"][1] == token("Jane Doe", KEY)
    assert out["birth_date"].null_count() == df.height
    assert out["spend"].null_count() == df.height


def test_read_plan_without_key_nulls_raw_strings_but_keeps_tokens(policy):
    """Check that without the PII key raw strings become null and tokens stay."""
    df = users_frame()
    out = policy.read_plan("alex", "silver.users", ["email"], USERS).apply(df)
    assert out["email"].to_list() == [None, TOK, None, None, TOK, None]


def test_read_plan_owner_sees_raw_columns(policy):
    """Check that a data engineer's plan masks nothing and filters no rows."""
    df = users_frame()
    plan = policy.read_plan("dana", "silver.users", None, USERS, key=KEY)
    assert plan.masked == () and plan.row_filter is None
    assert plan.apply(df).equals(df)


def test_read_plan_row_filter_keeps_only_granted_regions(policy):
    """Check that an EU analyst sees only DACH, BENELUX and FRANCE rows."""
    users = policy.read_plan("elena", "silver.users", None, USERS, key=KEY).apply(users_frame())
    assert sorted(users["region"].to_list()) == ["BENELUX", "DACH", "FRANCE"]
    plan = policy.read_plan("elena", "gold.kpi_daily", ["date", "orders"], KPIS)
    kpis = plan.apply(kpi_frame())
    assert kpis.columns == ["date", "orders"]  # the filter column need not be selected
    assert sorted(kpis["orders"].to_list()) == [2, 3, 4]
    assert plan.filters == ("analysts-eu: region in [DACH, BENELUX, FRANCE]",)
    # the same tables without the filter for the other analysts
    assert policy.read_plan("alex", "gold.kpi_daily", None, KPIS).apply(kpi_frame()).height == 7


def test_read_plan_filters_a_delta_scan(policy, tmp_path):
    """Check that the plan applies to a lazy scan of a real Delta table."""
    path = tmp_path / "silver" / "users"
    users_frame().write_delta(str(path))
    plan = policy.read_plan("elena", "silver.users", ["user_id", "email"], USERS, key=KEY)
    out = plan.apply(pl.scan_delta(DeltaTable(str(path)))).collect().sort("user_id")
    assert out["user_id"].to_list() == ["u000001", "u000003", "u000005"]
    assert out["email"].to_list() == [
        token("jane@example.com", KEY),
        token("max@example.de", KEY),
        TOK,
    ]


def test_read_plan_refuses_restricted_zone_to_analyst_and_allows_engineer(policy):
    """Check that an analyst's read of bronze raises AccessDenied and an engineer's does not."""
    with pytest.raises(
        AccessDenied, match=r"'alex' may not read 'bronze.users'.*restricted-zone"
    ) as e:
        policy.read_plan("alex", "bronze.users", None, BRONZE_USERS)
    assert e.value.decision.allowed is False and e.value.decision.policy_version == policy.version
    raw = pl.DataFrame({"email": ["jane@example.com"]})
    assert policy.read_plan("dana", "bronze.users", None, BRONZE_USERS).apply(raw).equals(raw)


def test_read_plan_masks_columns_missing_from_the_contract(policy):
    """Check that an unclassified column is masked to null (fail closed)."""
    df = users_frame().with_columns(extra=pl.lit("secret"))
    plan = policy.read_plan("alex", "silver.users", ["user_id", "extra"], USERS, key=KEY)
    out = plan.apply(df)
    assert "extra" in plan.masked
    assert out["extra"].null_count() == df.height and out["extra"].dtype == pl.String


def test_read_plan_checks_the_contract_is_the_tables(policy):
    """Check that a plan refuses a contract of another table."""
    with pytest.raises(HortusError, match="contract of 'gold.kpi_daily'"):
        policy.read_plan("dana", "silver.users", None, KPIS)


ROW_POLICY = """
version: 1
restricted_zone: {bronze: [a], quarantine: [a]}
users:
  both: [eu_mobile, nordics]
  open: [eu_mobile, everyone]
  side: [eu_mobile, other]
  gap: [no_column]
groups:
  eu_mobile:
    tables: {read: [silver.users]}
    row_filters:
      - {tables: [silver.users], column: region, op: in, values: [DACH, FRANCE]}
      - {tables: ["silver.*"], column: device, op: "==", values: [mobile]}
  nordics:
    tables: {read: [silver.users]}
    row_filters:
      - {tables: [silver.users], column: region, op: "==", values: NORDICS}
  everyone:
    tables: {read: ["silver.*"]}
  other:
    tables: {read: [gold.kpi_daily]}
    row_filters:
      - {tables: [silver.users], column: region, op: in, values: [UKI]}
  no_column:
    tables: {read: [silver.users]}
    row_filters:
      - {tables: [silver.users], column: country, op: in, values: [DE]}
  a: {}
"""


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("both", ["u000001", "u000003", "u000004"]),  # (DACH|FRANCE AND mobile) OR NORDICS
        ("open", ["u000001", "u000002", "u000003", "u000004", "u000005", "u000006"]),
        ("side", ["u000001", "u000003"]),  # `other` grants no read here: its filter plays no part
        ("gap", []),  # filter on a missing column: the group sees nothing (fail closed)
    ],
)
def test_row_filters_and_within_a_group_or_across_groups(tmp_path, user, expected):
    """Check AND within a group, OR across granting groups, and fail-closed filters."""
    p = write_policy(tmp_path, ROW_POLICY)
    out = p.read_plan(user, "silver.users", ["user_id"], USERS).apply(users_frame())
    assert sorted(out["user_id"].to_list()) == expected


def test_lint_reports_filters_on_missing_columns_and_dead_grants(tmp_path):
    """Check that lint names a filter column a table lacks and a grant matching no table."""
    p = write_policy(tmp_path, ROW_POLICY)
    problems = p.lint({c.full_name: c for c in (USERS,)})
    assert any("column 'country'" in x and "silver.users" in x for x in problems)
    assert any("'other: read gold.kpi_daily' matches no catalogued table" in x for x in problems)


def test_demo_policy_lints_clean_against_the_catalog(policy):
    """Check that every grant and row filter of the demo policy fits the catalog."""
    assert policy.lint({c.full_name: c for c in Catalog.load()}) == []


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("users: {x: [ghost]}\ngroups: {g: {}}", r"user 'x': undefined group\(s\) \['ghost'\]"),
        (
            "groups: {g: {tables: {delete: [a]}}}",
            r"group 'g', tables: unknown key\(s\) \['delete'\]",
        ),
        ("groups: {g: {colour: red}}", r"group 'g': unknown key\(s\) \['colour'\]"),
        (
            "groups: {g: {row_filters: [{tables: [t], column: c, op: '<', values: [1]}]}}",
            r"row_filters\[0\]: op must be one of",
        ),
        (
            "groups: {g: {tables: {read: [1]}}}",
            r"tables.read: expected a list of non-empty strings",
        ),
    ],
)
def test_malformed_policy_is_refused_with_its_location(tmp_path, text, match):
    """Check that policy mistakes name the file, group or user, and the key."""
    zone = "version: 1\nrestricted_zone: {bronze: [g], quarantine: [g]}\n"
    with pytest.raises(PolicyError, match=match):
        write_policy(tmp_path, zone + text)


def test_policy_without_restricted_zone_owners_is_refused(tmp_path):
    """Check that a policy must name the owners of every restricted layer."""
    with pytest.raises(PolicyError, match="owner groups of 'quarantine'"):
        write_policy(tmp_path, "version: 1\nrestricted_zone: {bronze: [g]}\ngroups: {g: {}}\n")


# ---------------------------------------------------------------------- four eyes
@pytest.mark.parametrize(
    ("approver", "author", "match"),
    [
        ("paula", "sam", None),
        ("olivia", "mia", None),
        ("paula", "paula", "four-eyes"),  # an approver may not approve her own version
        ("olivia", "olivia", "four-eyes"),
        ("mia", "sam", "grant of approve"),  # not an approver
        ("mallory", "sam", "not in the policy"),
    ],
)
def test_check_four_eyes(policy, approver, author, match):
    """Check that approval needs an approver who is not the author."""
    if match is None:
        d = check_four_eyes(approver, author, policy, model="recommender")
        assert d.allowed and d.grant == "approvers: approve *"
    else:
        with pytest.raises(AccessDenied, match=match) as e:
            check_four_eyes(approver, author, policy, model="recommender")
        assert e.value.decision.user == approver and e.value.decision.action == "approve"
