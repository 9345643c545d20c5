"""Tests of the model registry: versions, receipts, aliases, rollback, verified loads, CLI."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hortus.cli.core import main
from hortus.errors import HortusError
from hortus.lakehouse.tables import Lakehouse
from hortus.models.registry import ALIASES, VERSIONS, ArtifactError, Receipt, Registry

SIGNATURE = {"inputs": [{"name": "x", "type": "float"}], "output": "score"}


def dummy_model_bytes(i: int) -> bytes:
    """Return a small skops archive of trusted types, different for each `i` (deterministic).

    `register` refuses anything else (hortus.models._trust), so even dummies are archives.
    """
    import skops.io as sio
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline

    from hortus.models.modeling import _normalise_skops

    return _normalise_skops(sio.dumps(Pipeline([("model", Ridge(alpha=float(i)))])))


def _artifact(folder: Path, i: int) -> tuple[Path, str]:
    """Write a small dummy artifact (and its signature sibling); return path and sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"model{i}.skops"
    data = dummy_model_bytes(i)
    path.write_bytes(data)
    (folder / f"model{i}.signature.json").write_text(json.dumps(SIGNATURE))
    return path, hashlib.sha256(data).hexdigest()


def _receipt(i: int, **over) -> Receipt:
    fields = {
        "git_commit": "c0ffee" + "0" * 34,
        "git_dirty": False,
        "dvc_lock_sha256": None,
        "data_md5": "f2132778b7357b1bf2e2d054b81696a0.dir",
        "uv_lock_sha256": None,
        "params": {"C": float(i), "seed": 7},
        "tables_read": {"gold.training_set": i},
    }
    return Receipt(**(fields | over))


def _register(reg: Registry, tmp: Path, i: int, **over):
    path, sha = _artifact(tmp / "build", i)
    metrics = {"roc_auc": 0.7 + i / 100, "ndcg_at_k": 0.3 + i / 100}
    return reg.register(
        path, sha256=sha, signature=SIGNATURE, metrics=metrics, receipt=_receipt(i, **over)
    )


def acting_as(reg: Registry, user: str) -> Registry:
    """Return the same model's registry acting as another user of access_policy.yaml."""
    lh = reg._lh
    return Registry(
        Lakehouse(paths=lh.paths, catalog=lh.catalog, stage="test", user=user), reg.name
    )


@pytest.fixture
def registry(lakehouse, monkeypatch) -> Registry:
    """Return a registry of the model `recommender` acting as mia (an ML engineer)."""
    monkeypatch.setenv("HORTUS_USER", "mia")  # the CLI's identity
    return acting_as(Registry(lakehouse, "recommender"), "mia")


def pass_gate(reg: Registry, version: int, folder: Path) -> None:
    """Record a passed gate run for a version (promotion to champion needs one)."""
    from datetime import UTC, datetime

    from hortus.checks.gate import GateResult, record
    from hortus.checks.model_checks import CheckResult

    now = datetime.now(UTC)
    check = CheckResult("smoke", True, 1.0, 1.0, "recorded by the test fixture")
    result = GateResult(reg.name, version, [check], started_at=now, finished_at=now)
    record(reg, result, folder, git_commit="c0ffee")


def approve(reg: Registry, version: int, approver: str = "paula") -> None:
    """Approve a version as an approver who is not its author (promotion to champion needs it)."""
    acting_as(reg, approver).approve(version, reason="approved by the test fixture")


@pytest.fixture
def three(registry, tmp_path) -> Registry:
    """Return the registry with versions 1, 2 and 3 registered, each gated and approved."""
    for i in (1, 2, 3):
        _register(registry, tmp_path, i)
        pass_gate(registry, i, tmp_path / "gates")
        approve(registry, i)
    return registry


# ------------------------------------------------------------------ versions
def test_register_three_versions_round_trip(three, lakehouse, tmp_path):
    """Check that versions are numbered 1..3, stored read-only and readable by any reference."""
    assert [mv.version for mv in three.versions()] == [1, 2, 3]
    v2 = three.get(2)
    assert three.get("2") == v2 == three.get("v2") == three.get(" V2 ")
    assert v2.artifact_path == "lakehouse/ops/models/recommender/v2/model2.skops"
    assert v2.author == "mia"
    assert v2.signature == SIGNATURE
    assert v2.metrics["roc_auc"] == pytest.approx(0.72)
    assert v2.params == {"C": 2.0, "seed": 7}
    assert v2.receipt["tables_read"] == {"gold.training_set": 2}
    stored = three.artifact_path("v2")
    assert stored == lakehouse.paths.root / v2.artifact_path
    assert stored.read_bytes() == dummy_model_bytes(2)
    assert (stored.parent / "model2.signature.json").exists()
    assert not stored.stat().st_mode & 0o222  # read-only
    assert json.loads(json.dumps(v2.to_dict()))["version"] == 2
    # One append per version, with the build's table versions as lineage.
    hist = lakehouse.history(VERSIONS)
    assert hist["operation"].to_list() == ["WRITE"] * 3
    assert json.loads(hist["inputs"][-1]) == {"gold.training_set": 3}


def test_register_is_idempotent_for_the_same_bytes_and_build(three, tmp_path, lakehouse):
    """Check that the same artifact and receipt returns the existing version, writing nothing."""
    before = lakehouse.version(VERSIONS)
    again = _register(three, tmp_path, 2)
    assert again.version == 2
    assert lakehouse.version(VERSIONS) == before
    assert sorted(p.name for p in three.root.iterdir()) == ["v1", "v2", "v3"]
    # Same bytes from another build (other params) is a new version.
    assert _register(three, tmp_path, 2, params={"C": 9.0}).version == 4


def test_register_refuses_a_wrong_sha256_and_writes_nothing(registry, tmp_path, lakehouse):
    """Check that an artifact whose bytes do not match the given sha256 is refused."""
    path, _ = _artifact(tmp_path / "build", 1)
    with pytest.raises(ArtifactError, match=r"model1.skops has sha256 [0-9a-f]{64}, expected 00"):
        registry.register(
            path, sha256="00" * 32, signature=SIGNATURE, metrics={}, receipt=_receipt(1)
        )
    assert not lakehouse.exists(VERSIONS)
    assert not registry.root.exists() or not any(registry.root.iterdir())
    with pytest.raises(ArtifactError, match="nope.skops not found"):
        registry.register(
            tmp_path / "nope.skops", sha256="0", signature={}, metrics={}, receipt=_receipt(1)
        )


def test_registry_reads_do_not_leak_into_the_callers_lineage(three, lakehouse):
    """Check that the registry's own scans are not recorded as the caller's reads."""
    three.versions()
    assert lakehouse.reads == {}


def test_unknown_version_is_a_clear_error(three):
    """Check that an unknown version names itself and the known versions."""
    with pytest.raises(HortusError, match="model recommender has no version 7; known versions: v1"):
        three.get("v7")
    with pytest.raises(HortusError, match="no version 1; known versions: none registered yet"):
        Registry(three._lh, "other").get(1)


def test_alias_that_points_nowhere_is_a_clear_error(three):
    """Check that an unset or cleared alias is named in the error."""
    with pytest.raises(
        HortusError, match="alias 'champion' of model recommender .* never been set"
    ):
        three.get("champion")
    three.promote(1, alias="champion")
    three.clear("champion", reason="incident")
    with pytest.raises(HortusError, match="alias 'champion' .* was cleared at .* by mia"):
        three.get("champion")


# ------------------------------------------------------------------- aliases
def test_promote_then_rollback_walks_back_through_the_holders(three):
    """Check promote/rollback: each rollback goes one holder further back, then errors."""
    for v in (1, 2, 3):
        three.promote(v, alias="champion", reason=f"v{v} is better")
    assert three.aliases() == {"champion": 3}
    assert three.get("champion").aliases == ("champion",)
    assert three.rollback(reason="bad v3").version == 2
    assert three.rollback().version == 1
    assert three.aliases() == {"champion": 1}
    with pytest.raises(HortusError, match="cannot roll back alias 'champion'.*points to v1"):
        three.rollback()
    with pytest.raises(HortusError, match="alias 'challenger' .* points to no version"):
        three.rollback(alias="challenger")


def test_rollback_never_returns_to_a_version_rolled_back_away_from(three, tmp_path):
    """Check the documented chain: 1, 2, 3; rollback -> 2; promote 4; rollback -> 2 -> 1."""
    _register(three, tmp_path, 4)
    pass_gate(three, 4, tmp_path / "gates")
    approve(three, 4)
    for v in (1, 2, 3):
        three.promote(v)
    assert three.rollback().version == 2
    three.promote("v4")
    assert [three.rollback().version, three.rollback().version] == [2, 1]


def test_rollback_after_clear_restores_the_last_holder(three):
    """Check that a cleared alias is restored by rollback, skipping the cleared state."""
    three.promote(1)
    three.promote(2)
    three.clear("champion")
    assert three.aliases() == {}
    assert three.rollback().version == 2
    assert three.rollback().version == 1


def test_alias_history_is_an_append_only_log(three, lakehouse):
    """Check that every alias move is logged with previous version, action, actor and reason."""
    three.promote(1, reason="first")
    three.promote(2, alias="challenger")
    three.promote("challenger", reason="won the A/B test")
    three.promote(2)  # already there: nothing recorded
    three.rollback(reason="latency")
    log = three.history()
    assert log.select("seq", "alias", "previous_version", "version", "action").rows() == [
        (1, "champion", None, 1, "promote"),
        (2, "challenger", None, 2, "promote"),
        (3, "champion", 1, 2, "promote"),
        (4, "champion", 2, 1, "rollback"),
    ]
    assert log["actor"].unique().to_list() == ["mia"]
    assert log["reason"].to_list() == ["first", "", "won the A/B test", "latency"]
    assert three.aliases() == {"challenger": 2, "champion": 1}
    assert lakehouse.history(ALIASES)["operation"].to_list() == ["WRITE"] * 4
    assert three.history("challenger").height == 1


def test_alias_names_are_checked(three):
    """Check that an alias shaped like a version or with odd characters is refused."""
    for bad in ("v2", "7", "Champion", "a b"):
        with pytest.raises(HortusError, match="is not valid"):
            three.promote(1, alias=bad)


# ----------------------------------------------------------------- artifacts
def test_real_model_round_trip_and_tampered_artifact_refused(lakehouse, tmp_path):
    """Check that a registered skops model loads and predicts, and altered bytes are refused."""
    import numpy as np
    import polars as pl

    from hortus.models import modeling

    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    df = pl.DataFrame({"x": x, "y": (x + rng.normal(size=400) > 0).astype(int)})
    spec = modeling.ModelSpec(target="y", features=("x",), estimator="logreg", seed=1)
    result = modeling.train(df, spec, curve_points=2, importance_repeats=1)
    sha = modeling.save_model(result.pipeline, result.signature, tmp_path / "m.skops")
    reg = Registry(lakehouse, "recommender")
    mv = reg.register(
        tmp_path / "m.skops", sha256=sha, signature=result.signature.to_dict(), metrics={},
        receipt=Receipt.collect(tmp_path, params={}, tables_read={}),
    )  # fmt: skip
    pipeline, signature = reg.load(mv.version)
    want = modeling.predict_scores(result.pipeline, df, spec)
    assert np.array_equal(modeling.predict_scores(pipeline, df, spec), want)
    assert signature.names == ["x"] or list(signature.names) == ["x"]
    path = reg.verify(mv.version)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    have = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ArtifactError, match=re.escape(f"expected sha256 {sha}, actual {have}")):
        reg.load(mv.version)
    path.unlink()
    with pytest.raises(ArtifactError, match="is missing: .*m.skops not found"):
        reg.load(mv.version)


# ------------------------------------------------------------------- receipt
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_receipt_collect_in_a_git_repo(tmp_path):
    """Check that a receipt records commit, dirty flag, data.dvc md5 and lock digests."""

    def git(*args):
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "data.dvc").write_text("outs:\n- md5: abc123.dir\n  hash: md5\n  path: data\n")
    (tmp_path / "uv.lock").write_bytes(b"lock")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    r = Receipt.collect(tmp_path, params={"C": 1}, tables_read={"gold.t": 4})
    assert r.git_commit == git("rev-parse", "HEAD")
    assert r.git_dirty is False
    assert r.data_md5 == "abc123.dir"
    assert r.uv_lock_sha256 == hashlib.sha256(b"lock").hexdigest()
    assert r.dvc_lock_sha256 is None
    assert Receipt.from_dict(r.to_dict()) == r
    (tmp_path / "uv.lock").write_bytes(b"changed")
    assert Receipt.collect(tmp_path, params={}, tables_read={}).git_dirty is True
    (tmp_path / "data.dvc").unlink()
    assert Receipt.collect(tmp_path, params={}, tables_read={}).data_md5 is None


# ----------------------------------------------------------------------- CLI
def test_cli_models_list_promote_rollback(three, capsys):
    """Check `hortus models` list/show/promote/rollback/aliases end to end."""
    root = ["--root", str(three._lh.paths.root)]
    assert main([*root, "models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["version"] for r in rows] == [1, 2, 3]
    assert main([*root, "models", "promote", "v2", "--reason", "better"]) == 0
    assert main([*root, "models", "promote", "3", "--alias", "champion"]) == 0
    assert main([*root, "models", "rollback", "--reason", "regression"]) == 0
    out = capsys.readouterr().out
    assert "recommender champion: unset -> v2 (promote)" in out
    assert "recommender champion: v2 -> v3 (promote)" in out
    assert "recommender champion: v3 -> v2 (rollback)" in out
    assert main([*root, "models", "list"]) == 0
    out = capsys.readouterr().out
    assert "roc_auc" in out and "ndcg_at_k" in out and "champion" in out
    assert main([*root, "models", "show", "champion", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 2 and shown["receipt"]["git_commit"].startswith("c0ffee")
    assert main([*root, "models", "aliases", "--json"]) == 0
    aliases = json.loads(capsys.readouterr().out)
    assert aliases["current"] == {"champion": 2}
    assert [h["action"] for h in aliases["history"]] == ["promote", "promote", "rollback"]
    assert main([*root, "models", "aliases"]) == 0
    assert "v3 -> v2  by mia  reason: regression" in capsys.readouterr().out


def test_cli_models_unknown_version_exits_2(three, capsys):
    """Check that an unknown version prints one clear line and exits 2."""
    code = main(["--root", str(three._lh.paths.root), "models", "show", "v9"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("hortus: error: model recommender has no version 9; known versions: v1")
    assert "Traceback" not in err


def test_cli_models_list_on_an_empty_registry(project, capsys):
    """Check that listing before any registration says so instead of failing."""
    assert main(["--root", str(project.root), "models", "list"]) == 0
    assert "no versions of model recommender registered yet" in capsys.readouterr().out
