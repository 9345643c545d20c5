"""Tests of four-eyes promotion: approvals, the promote grant, gates and the audit trail."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from hortus.checks.gate import GateResult, record
from hortus.checks.model_checks import CheckResult
from hortus.cli.core import main
from hortus.config import Paths
from hortus.errors import HortusError
from hortus.governance.access import AccessDenied
from hortus.governance.audit import AuditLog, default_path
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.tables import Lakehouse
from hortus.models.registry import (
    ALIASES,
    APPROVALS,
    CHALLENGER,
    CHAMPION,
    ApprovalRequired,
    GateRequired,
    Receipt,
    Registry,
)
from test_registry import dummy_model_bytes

SIGNATURE = {"inputs": [{"name": "x", "type": "float"}], "output": "score"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """Return the catalog once for the module (it does not depend on the project)."""
    return Catalog.load()


@pytest.fixture
def as_user(project: Paths, catalog: Catalog):
    """Return a function giving the registry of `recommender` acting as a user."""

    def registry(user: str, name: str = "recommender") -> Registry:
        return Registry(Lakehouse(paths=project, catalog=catalog, stage="test", user=user), name)

    return registry


def register(reg: Registry, i: int, **kw):
    """Register a small dummy artifact `i` as the registry's acting user."""
    folder = reg._lh.paths.root / "build"
    folder.mkdir(exist_ok=True)
    path = folder / f"model{i}.skops"
    path.write_bytes(dummy_model_bytes(i))
    receipt = Receipt(
        git_commit="c0ffee" + "0" * 34, git_dirty=False, dvc_lock_sha256=None, data_md5=None,
        uv_lock_sha256=None, params={"C": float(i)}, tables_read={},
    )  # fmt: skip
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return reg.register(path, sha256=sha, signature=SIGNATURE, metrics={}, receipt=receipt, **kw)


def gate(reg: Registry, version: int, *, passed: bool) -> str:
    """Record one gate run of a version (one smoke check); return its run id."""
    now = datetime.now(UTC)
    check = CheckResult("smoke", passed, 1.0 if passed else 0.2, 0.5, "recorded by the test")
    result = GateResult(reg.name, version, [check], started_at=now, finished_at=now)
    record(reg, result, reg._lh.paths.root / "gates", git_commit="c0ffee")
    return result.run_id


def audit(paths: Paths, *actions: str) -> pl.DataFrame:
    """Return the audit records of the given actions, in log order."""
    log = AuditLog.open(default_path(paths), secrets_dir=paths.secrets)
    assert log.verify().ok
    return log.show().filter(pl.col("action").is_in(actions))


# ----------------------------------------------------------------- approvals
def test_approval_by_the_author_is_refused(as_user, project):
    """Check that an approver may not approve her own version, and nothing is recorded."""
    olivia = as_user("olivia")  # ml-engineers and approvers: may register and approve
    register(olivia, 1)
    with pytest.raises(AccessDenied, match="four-eyes") as err:
        olivia.approve(1)
    msg = str(err.value)
    assert "approver 'olivia'" in msg and "author 'olivia'" in msg and "v1" in msg
    assert olivia.approvals().height == 0
    denied = audit(project, "approve")
    assert denied.select("user", "outcome").rows() == [("olivia", "denied")]
    assert "four-eyes" in denied["detail"][0] and "v1" in denied["detail"][0]


def test_approval_by_a_non_approver_is_refused(as_user):
    """Check that a user without the approve grant is refused, naming approver, author, version."""
    register(as_user("mia"), 1)
    for user in ("sam", "mia"):  # sam: not the author, no grant; mia: author, no grant
        with pytest.raises(AccessDenied, match=f"user '{user}' may not approve") as err:
            as_user(user).approve("v1")
        assert "author 'mia'" in str(err.value) and "model recommender v1" in str(err.value)
    assert as_user("mia").approvals().height == 0


def test_approval_by_another_approver_is_recorded_once(as_user, lakehouse):
    """Check that an approver who is not the author is recorded once, with the policy version."""
    register(as_user("mia"), 1)
    paula = as_user("paula")
    first = paula.approve(1, reason="read the model report")
    assert first.recorded and (first.approver, first.author, first.version) == ("paula", "mia", 1)
    again = paula.approve("v1", reason="second click")
    assert not again.recorded and again.reason == "read the model report"
    rows = lakehouse.read(APPROVALS)
    assert rows.select("name", "version", "approver", "author", "reason").rows() == [
        ("recommender", 1, "paula", "mia", "read the model report")
    ]
    assert rows["policy_version"][0] == lakehouse.policy.version
    assert as_user("olivia").approve(1).recorded  # a second approver adds a row
    assert as_user("mia").approvals(1)["approver"].to_list() == ["paula", "olivia"]


# ----------------------------------------------------------------- promotion
def test_promote_without_approval_names_what_is_missing(as_user, lakehouse):
    """Check that a gated, unapproved version is not promoted and the error says how to fix it."""
    mia = as_user("mia")
    register(mia, 1)
    gate(mia, 1, passed=True)
    want = (
        "needs approval by an approver who is not mia: `HORTUS_USER=<approver> hortus models "
        "approve 1`, then `hortus models promote 1` (approvers: olivia, paula)"
    )
    ok, why = mia.promote_allowed(1)
    assert not ok and want in why
    with pytest.raises(ApprovalRequired) as err:
        mia.promote(1)
    assert want in str(err.value)
    assert CHAMPION not in mia.aliases()
    assert not lakehouse.exists(ALIASES)


def test_promote_with_approval_but_failed_gate_is_refused(as_user):
    """Check that an approved version whose latest gate failed is not promoted."""
    mia = as_user("mia")
    register(mia, 1)
    with pytest.raises(GateRequired, match="no gate result") as err:
        mia.promote(1)
    assert "needs approval by an approver who is not mia" in str(err.value)  # both missing
    as_user("paula").approve(1)
    gate(mia, 1, passed=True)
    run = gate(mia, 1, passed=False)  # the latest run decides
    ok, why = mia.promote_allowed(1)
    assert not ok and f"failed its gate (run {run}" in why and "needs approval" not in why
    with pytest.raises(GateRequired, match=f"failed its gate \\(run {run}") as err:
        mia.promote(1)
    assert [c["name"] for c in err.value.failed] == ["smoke"]
    assert CHAMPION not in mia.aliases()


def test_promote_with_gate_and_approval_records_approver_and_gate_run(as_user, lakehouse):
    """Check that a gated, approved version is promoted and the event names approver and run."""
    mia = as_user("mia")
    register(mia, 1)
    as_user("paula").approve(1)
    run = gate(mia, 1, passed=True)
    ok, why = mia.promote_allowed(1)
    assert ok and f"gate run {run} passed, approved by paula" in why
    assert mia.promote(1, reason="beats the baseline").aliases == (CHAMPION,)
    event = lakehouse.read(ALIASES).row(-1, named=True)
    assert (event["action"], event["version"], event["actor"]) == ("promote", 1, "mia")
    assert (event["approved_by"], event["gate_run_id"]) == ("paula", run)
    assert mia.promote_allowed(1) == (True, "champion of model recommender already points to v1")


def test_promote_needs_the_promote_grant_and_other_aliases_need_only_it(as_user):
    """Check that approvers and the pipeline may not promote, and challenger needs no approval."""
    mia = as_user("mia")
    register(mia, 1)
    as_user("olivia").approve(1)
    gate(mia, 1, passed=True)
    for user in ("paula", "pipeline"):
        ok, why = as_user(user).promote_allowed(1)
        assert not ok and f"user '{user}' may not promote model recommender" in why
        assert "users who may: mia, olivia" in why
        with pytest.raises(AccessDenied, match=f"user '{user}' may not promote"):
            as_user(user).promote(1)
    register(mia, 2)  # no gate, no approval
    assert mia.promote(2, alias=CHALLENGER).aliases == (CHALLENGER,)
    event = mia.history(CHALLENGER).row(-1, named=True)
    assert event["approved_by"] is None and event["gate_run_id"] is None
    # olivia approved mia's version and may promote it: author and approver differ
    assert as_user("olivia").promote(1).aliases == (CHAMPION,)
    assert mia.history(CHAMPION)["approved_by"].to_list() == ["olivia"]


def test_approval_by_someone_who_lost_the_grant_does_not_count(as_user, project):
    """Check that approvals are re-checked against the policy in force at promotion time."""
    mia = as_user("mia")
    register(mia, 1)
    as_user("paula").approve(1)
    gate(mia, 1, passed=True)
    policy = project.root / "access_policy.yaml"
    policy.write_text(policy.read_text().replace("paula: [approvers]", "paula: [auditors]"))
    mia = as_user("mia")  # a fresh Lakehouse loads the changed policy
    with pytest.raises(ApprovalRequired, match=r"approvals not counted: paula \(no approve grant"):
        mia.promote(1)


def test_rollback_needs_the_grant_but_no_new_approval(as_user, lakehouse):
    """Check that rollback of champion needs the promote grant only, and is recorded."""
    mia = as_user("mia")
    for v in (1, 2):
        register(mia, v)
        as_user("paula").approve(v)
        gate(mia, v, passed=True)
        mia.promote(v)
    gate(mia, 1, passed=False)  # a later failed gate does not block going back
    with pytest.raises(AccessDenied, match="user 'paula' may not promote"):
        as_user("paula").rollback(reason="paula tries")
    assert mia.rollback(reason="latency regression").version == 1
    log = lakehouse.read(ALIASES).sort("seq")
    assert log.select("action", "previous_version", "version", "actor", "reason").rows()[-1] == (
        "rollback", 2, 1, "mia", "latency regression"
    )  # fmt: skip
    assert log["action"].to_list() == ["promote", "promote", "rollback"]
    with pytest.raises(AccessDenied, match="user 'pipeline' may not promote"):
        as_user("pipeline").clear(CHAMPION)
    assert mia.aliases() == {CHAMPION: 1}


def test_registration_sets_challenger_but_never_champion(as_user):
    """Check that the pipeline registers with the challenger alias, and champion is refused."""
    pipeline = as_user("pipeline")
    mv = register(pipeline, 1, alias=CHALLENGER)
    assert mv.author == "pipeline" and mv.aliases == (CHALLENGER,)
    with pytest.raises(HortusError, match="register\\(alias='champion'\\) is refused"):
        register(pipeline, 2, alias=CHAMPION)
    with pytest.raises(AccessDenied, match="user 'paula' may not register"):
        register(as_user("paula"), 3)
    assert [v.version for v in pipeline.versions()] == [1]
    ok, why = pipeline.promote_allowed(1)
    assert not ok and "needs approval by an approver who is not pipeline" in why


def test_every_approve_and_promote_attempt_is_audited(as_user, project):
    """Check that each approve/promote attempt, allowed or denied, is one audit record."""
    mia, paula = as_user("mia"), as_user("paula")
    register(mia, 1)
    attempts = [
        (lambda: mia.approve(1), AccessDenied),
        (lambda: paula.approve(1), None),
        (lambda: paula.approve(1), None),  # nothing new recorded, attempt still audited
        (lambda: paula.promote(1), AccessDenied),
        (lambda: mia.promote(1), GateRequired),
        (lambda: gate(mia, 1, passed=True), None),
        (lambda: mia.promote(1), None),
        (lambda: mia.promote(1), None),  # already champion
        (lambda: mia.promote_allowed(1), None),  # a question, not an attempt: not audited
    ]
    for attempt, error in attempts:
        if error is None:
            attempt()
        else:
            with pytest.raises(error):
                attempt()
    log = audit(project, "approve", "promote")
    assert log.select("user", "action", "object", "outcome").rows() == [
        ("mia", "approve", "recommender", "denied"),
        ("paula", "approve", "recommender", "allowed"),
        ("paula", "approve", "recommender", "allowed"),
        ("paula", "promote", "recommender", "denied"),
        ("mia", "promote", "recommender", "denied"),
        ("mia", "promote", "recommender", "allowed"),
        ("mia", "promote", "recommender", "allowed"),
    ]
    detail = log["detail"].to_list()
    assert "already approved; nothing recorded" in detail[2]
    assert "a passed gate of v1 (no gate result)" in detail[4]
    assert "approved_by=paula gate_run=" in detail[5] and "nothing recorded" in detail[6]
    assert all(p == as_user("mia")._lh.policy.version for p in log["policy_version"])


# ----------------------------------------------------------------------- CLI
def test_cli_approve_approvals_and_promote_say_what_is_missing(
    as_user, project, monkeypatch, capsys
):
    """Check `hortus models approve/approvals/promote --check/promote` as different users."""
    mia = as_user("mia")
    register(mia, 1)
    gate(mia, 1, passed=True)
    root = ["--root", str(project.root)]
    monkeypatch.setenv("HORTUS_USER", "mia")
    assert main([*root, "models", "promote", "1", "--check"]) == 1
    assert "NOT YET" in capsys.readouterr().out
    assert main([*root, "models", "promote", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hortus: error: model recommender v1 needs approval by an approver")
    assert "Traceback" not in err
    assert main([*root, "models", "approve", "1"]) == 2
    assert "may not approve 'recommender'" in capsys.readouterr().err
    monkeypatch.setenv("HORTUS_USER", "paula")
    assert main([*root, "models", "approve", "v1", "--reason", "looks fine"]) == 0
    assert "recommender v1 approved by paula (author mia)" in capsys.readouterr().out
    assert main([*root, "models", "approve", "1"]) == 0
    assert "already approved by paula" in capsys.readouterr().out
    assert main([*root, "models", "approvals", "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["approvals"]
    assert [(a["version"], a["approver"], a["reason"]) for a in shown] == [
        (1, "paula", "looks fine")
    ]
    monkeypatch.setenv("HORTUS_USER", "mia")
    assert main([*root, "models", "promote", "1", "--check"]) == 0
    assert main([*root, "models", "promote", "1"]) == 0
    out = capsys.readouterr().out
    assert "ALLOWED" in out and "champion: unset -> v1 (promote)" in out
    assert "approved by paula; gate run" in out
    assert main([*root, "models", "approvals"]) == 0
    assert "by paula" in capsys.readouterr().out


@pytest.mark.parametrize(
    "sub", ["list", "show", "approve", "approvals", "promote", "rollback", "aliases"]
)
def test_cli_models_subcommands_have_help(sub, capsys):
    """Check that every `hortus models` subcommand prints its --help and exits 0."""
    with pytest.raises(SystemExit) as exc:
        main(["models", sub, "--help"])
    assert exc.value.code == 0
    assert f"hortus models {sub}" in capsys.readouterr().out


def test_old_alias_events_without_the_new_columns_still_replay(as_user, project):
    """Check that alias events written before approved_by/gate_run_id existed still replay."""
    mia = as_user("mia")
    register(mia, 1)
    old = pl.DataFrame(
        {"seq": [1], "name": ["recommender"], "at": [datetime.now(UTC)], "alias": [CHALLENGER],
         "version": [1], "previous_version": [None], "action": ["promote"], "actor": ["mia"],
         "reason": [""]},
        schema_overrides={"previous_version": pl.Int64},
    )  # fmt: skip
    old.write_delta(str(Path(mia._lh.path(ALIASES))))
    assert mia.aliases() == {CHALLENGER: 1}
    assert mia.history()["approved_by"].to_list() == [None]
    register(mia, 2)
    mia.promote(2, alias=CHALLENGER)
    assert mia.history()["version"].to_list() == [1, 2]
