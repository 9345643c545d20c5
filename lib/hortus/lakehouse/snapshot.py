"""The pinned landing snapshot: data/ as recorded in data.dvc.

The default snapshot is the output of the project's simulator (hortus.yaml
`simulator`) for params.yaml's `simulate` section; the simulator is deterministic,
so a fresh clone rebuilds exactly the pinned bytes offline, and DVC's own hashing
proves it against data.dvc.  A snapshot pinned later (`hortus simulate ... && dvc
add data`), or the snapshot of a project without a simulator, is obtained from the
DVC cache or a configured DVC remote (`dvc pull`) instead.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from hortus.config import Paths
from hortus.errors import HortusError


def pinned_md5(paths: Paths) -> str:
    """Return the md5 that data.dvc pins for data/."""
    dvc_file = paths.root / "data.dvc"
    if not dvc_file.exists():
        raise HortusError(f"{dvc_file} not found: pin a snapshot with `dvc add data`")
    doc = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
    try:
        return next(o["md5"] for o in doc["outs"] if o.get("path") == "data")
    except (KeyError, StopIteration, TypeError):
        raise HortusError(f"{dvc_file}: no md5 recorded for path 'data'") from None


def workspace_md5(paths: Paths) -> str:
    """Return DVC's md5 of the data/ folder as it is now (dry run, nothing cached).

    Every file is hashed from its bytes: DVC's state database (hashes remembered
    by inode and mtime, e.g. for files it checked out itself) is bypassed, so a
    file copied from a tampered cache object shows its real hash.
    """
    from dvc.repo import Repo
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db.local import LocalHashFileDB
    from dvc_data.hashfile.state import StateNoop

    with Repo(str(paths.root)) as repo:
        local = repo.cache.local
        odb = LocalHashFileDB(local.fs, local.path, state=StateNoop(), hash_name="md5")
        _, _, obj = build(odb, str(paths.data), repo.fs, "md5", dry_run=True, ignore=repo.dvcignore)
    return obj.hash_info.value


def matches(paths: Paths) -> bool:
    """Return whether data/ exists and matches data.dvc."""
    return paths.data.is_dir() and workspace_md5(paths) == pinned_md5(paths)


def verify(paths: Paths) -> None:
    """Raise a clear error unless data/ matches data.dvc."""
    if not paths.data.is_dir():
        raise HortusError(
            f"{paths.data} does not exist: run `make data` (or `hortus data restore`)"
        )
    have, want = workspace_md5(paths), pinned_md5(paths)
    if have != want:
        raise HortusError(
            f"{paths.data} (md5 {have}) does not match data.dvc (md5 {want}); "
            "`dvc pull`/`dvc checkout data.dvc` restores a pinned snapshot, "
            "`dvc add data` pins the one you have"
        )


def _dvc(paths: Paths, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=paths.root, capture_output=True, text=True, env=None)


def simulator(paths: Paths):
    """Return the simulator module the project definition names (hortus.yaml `simulator`).

    It must offer ``SimConfig`` and ``simulate(config, out)``.  A project without a
    simulator is refused: its landing data comes from its source system.
    """
    from hortus.project.definition import Project, resolve

    project = Project.load(paths.root)
    if not project.simulator:
        raise HortusError(
            f"{project.source} declares no `simulator`: the landing snapshot of this project "
            "cannot be rebuilt here; restore it with `dvc pull` (or `dvc checkout data.dvc`)"
        )
    return resolve(project.simulator, f"{project.source}: simulator")


def restore(paths: Paths, simulate_params: dict) -> str:
    """Obtain the pinned snapshot into data/: present, from DVC's cache, or rebuilt.

    Returns how it was obtained.  An existing data/ that differs from data.dvc is
    never overwritten.
    """
    if paths.data.is_dir():
        if matches(paths):
            return "present"
        verify(paths)  # raises with the advice
    if _dvc(paths, "checkout", "-q", "data.dvc").returncode == 0 and matches(paths):
        return "dvc-cache"
    sim = simulator(paths)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in simulate_params.items()}
    with tempfile.TemporaryDirectory(dir=paths.root) as tmp:
        sim.simulate(sim.SimConfig(**fields), Path(tmp) / "data")
        if paths.data.exists():
            shutil.rmtree(paths.data)
        shutil.move(str(Path(tmp) / "data"), paths.data)
    verify(paths)
    # cache the verified bytes so `dvc checkout` and `dvc repro` find them
    done = _dvc(paths, "commit", "-q", "-f", "data.dvc")
    if done.returncode != 0:
        raise HortusError(f"dvc commit data.dvc failed: {done.stderr.strip()}")
    return "rebuilt"
