"""Rebuild a registered model version from its receipt and prove it is the same.

`reproduce(paths, ref)`:
1. reads the version's receipt (git commit, data.dvc md5, params, artifact sha256);
2. clones the repository at that commit into a temporary folder (a build from a
   dirty tree is reported: its code is not in any commit);
3. obtains the pinned landing snapshot there: `dvc checkout` from this project's
   DVC cache, else the deterministic rebuild, and checks it against the receipt's
   data md5 (a tampered snapshot is reported as different);
4. writes the receipt's params into the clone's params.yaml and runs
   `dvc repro train` with the clone's own code (PYTHONPATH=<clone>/lib);
5. compares the rebuilt artifact's sha256, metrics and training tables with the
   registered ones.

Identity is defined per artifact: the model by its bytes (sha256; skops files are
written byte-deterministically), the landing snapshot by DVC's md5 of data/, and the
tables the model read by an order-independent content hash of their rows that leaves
out ingestion-time columns (`hortus.lakehouse.tables.frame_hash`), since Delta tables carry
random file names and commit timestamps.  Metrics are compared exactly.  The verdict
is `identical` only when all of them match; otherwise `notes` says what differs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from hortus.config import Paths
from hortus.errors import HortusError


@dataclass
class Reproduction:
    """The outcome of a rebuild."""

    version: int
    identical: bool
    expected_sha256: str
    rebuilt_sha256: str | None
    expected_data_md5: str | None
    rebuilt_data_md5: str | None
    git_commit: str
    metrics_differ: dict[str, tuple] = field(default_factory=dict)
    tables: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """Return `identical` or `different`."""
        return "identical" if self.identical else "different"

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict."""
        return asdict(self) | {"verdict": self.verdict}


def _run(cmd: list[str], cwd: Path, env: dict, what: str) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-3000:]
        raise HortusError(f"reproduce: {what} failed ({' '.join(cmd)}): {tail}")
    return done


def _in_cache(cache: Path, md5: str) -> bool:
    """Return whether DVC's cache holds the directory object `md5` (e.g. 'ab12....dir')."""
    return (cache / "files" / "md5" / md5[:2] / md5[2:]).is_file()


def reproduce(
    paths: Paths, ref: str | int, *, model: str | None = None, keep: Path | None = None
) -> Reproduction:
    """Rebuild version `ref` in a temporary clone and compare it with the registered artifact."""
    from hortus.lakehouse import snapshot
    from hortus.lakehouse.tables import Lakehouse
    from hortus.models.registry import Registry
    from hortus.project.definition import Project

    lh = Lakehouse.open(paths.root, stage="reproduce")
    name = model or Project.load(paths.root).default_model
    mv = Registry(lh, name).get(ref)
    receipt = mv.receipt
    notes: list[str] = []
    commit = receipt["git_commit"]
    if commit == "unknown":
        raise HortusError(f"version v{mv.version} has no git commit in its receipt")
    if receipt.get("git_dirty"):
        notes.append("built from a dirty tree: uncommitted changes are not reproducible")
    from hortus.governance.erasure import erasures_of  # right to erasure (ops.erasures)

    erased = erasures_of(lh, receipt.get("tables_read") or {})
    notes += erased
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="hortus-reproduce-"))
    clone = work / "repo"
    env = os.environ | {"DVC_NO_ANALYTICS": "1", "HORTUS_ROOT": str(clone)}
    env.pop("HORTUS_LAKEHOUSE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(clone / "lib"), env.get("PYTHONPATH", "")]).strip(
        os.pathsep
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    try:
        _run(["git", "clone", "-q", str(paths.root), str(clone)], work, env, "git clone")
        _run(["git", "checkout", "-q", commit], clone, env, f"git checkout {commit}")
        # share this project's DVC cache (read-only use) and its secrets (the PII key)
        cache = paths.root / ".dvc" / "cache"
        if cache.is_dir():
            _run(["dvc", "cache", "dir", "--local", str(cache)], clone, env, "dvc cache dir")
        if paths.secrets.is_dir():
            shutil.copytree(paths.secrets, clone / ".hortus" / "secrets")
        # params as recorded in the receipt (covers `dvc exp run -S ...` builds)
        params_file = clone / "params.yaml"
        doc = yaml.safe_load(params_file.read_text(encoding="utf-8"))
        for section, values in (receipt.get("params") or {}).items():
            doc[section] = values
        params_file.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        clone_paths = Paths.at(clone)
        pinned = snapshot.pinned_md5(clone_paths)
        if _in_cache(cache, pinned):
            # the pinned snapshot comes from the cache as it is (a tampered cache shows up
            # as a different md5 below, never silently repaired)
            subprocess.run(["dvc", "checkout", "-q", "data.dvc"], cwd=clone, env=env,
                           capture_output=True)  # fmt: skip
        if not clone_paths.data.is_dir():
            notes.append("data not in the DVC cache: rebuilt by the deterministic simulator")
            _run(["hortus", "data", "restore"], clone, env, "hortus data restore")
        data_md5 = snapshot.workspace_md5(clone_paths)
        if data_md5 != receipt.get("data_md5"):
            notes.append(
                f"landing snapshot md5 {data_md5} differs from the receipt's "
                f"{receipt.get('data_md5')}: the pinned data was changed"
            )
        _run(["dvc", "repro", "-q", "train"], clone, env, "dvc repro train")
        # reports/train/<model>/ since projects hold several models; reports/train/ before
        run_file = clone / "reports" / "train" / name / "run.json"
        if not run_file.exists():
            run_file = clone / "reports" / "train" / "run.json"
        run = json.loads(run_file.read_text(encoding="utf-8"))
        rebuilt = run["sha256"]
        rebuilt_metrics = run.get("metrics") or {}
        rebuilt_hashes = run.get("content_hashes") or {}
    except HortusError as exc:
        if erased:  # say first that the inputs were erased, then what failed
            msg = f"v{mv.version}: {'; '.join(erased)}. The rebuild failed: {exc}"
            raise HortusError(msg) from None
        raise
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    same_data = data_md5 == receipt.get("data_md5")
    if rebuilt != mv.artifact_sha256:
        notes.append(f"artifact sha256 {rebuilt} differs from the registered one")
    metrics_differ = {
        k: (mv.metrics.get(k), rebuilt_metrics.get(k))
        for k in sorted(set(mv.metrics) | set(rebuilt_metrics))
        if mv.metrics.get(k) != rebuilt_metrics.get(k)
    }
    if metrics_differ:
        notes.append(f"metrics differ: {', '.join(metrics_differ)}")
    tables = {
        t: {"registered": h, "rebuilt": rebuilt_hashes.get(t)}
        for t, h in (receipt.get("content_hashes") or {}).items()
    }
    for t, pair in tables.items():
        if pair["registered"] != pair["rebuilt"]:
            notes.append(f"{t} content differs ({pair['registered']} vs {pair['rebuilt']})")
    same_tables = all(p["registered"] == p["rebuilt"] for p in tables.values())
    return Reproduction(
        version=mv.version,
        identical=same_data
        and rebuilt == mv.artifact_sha256
        and not metrics_differ
        and same_tables,
        expected_sha256=mv.artifact_sha256,
        rebuilt_sha256=rebuilt,
        expected_data_md5=receipt.get("data_md5"),
        rebuilt_data_md5=data_md5,
        git_commit=commit,
        metrics_differ=metrics_differ,
        tables=tables,
        notes=notes,
    )
