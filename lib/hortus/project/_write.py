"""Writing a new project atomically: files, git and DVC, then one rename.

Re-exported by `hortus.project.scaffold`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hortus.project._draft import Draft, InitError
from hortus.project._render import files, hortus_checkout


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    env = os.environ | {"DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    except OSError as exc:
        raise InitError(f"{what}: cannot run {cmd[0]} ({exc})") from None
    if done.returncode != 0:
        raise InitError(f"{what} failed: {(done.stderr or done.stdout).strip()[-800:]}")


def _git_identity(cwd: Path) -> bool:
    done = subprocess.run(["git", "var", "GIT_COMMITTER_IDENT"], cwd=cwd, capture_output=True)
    return done.returncode == 0


def init_project(dest: Path, d: Draft, *, commit: bool = True) -> dict:
    """Write the project of a draft to `dest` (which must not exist or be empty).

    Everything is written into a temporary sibling folder: the files, `git init`,
    `dvc init` (analytics and update checks off), `dvc add data` (data.dvc), a check
    that the project and its contracts load, and an initial commit when git knows who
    you are.  Only then is the folder renamed to `dest`; on any failure it is removed.
    """
    dest = Path(dest).absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InitError(f"{dest} already exists and is not empty; pick a new folder")
    if shutil.which("git") is None:
        raise InitError("hortus init needs git (DVC pins the data inside a git repository)")
    checkout = hortus_checkout()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.init-", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the project is an ordinary folder
    try:
        for rel, data in files(d, checkout).items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        _check_loads(tmp, d)
        dvc = [sys.executable, "-m", "dvc"]
        _run(["git", "init", "--quiet"], tmp, "git init")
        _run([*dvc, "init", "--quiet"], tmp, "dvc init")
        # offline: no analytics, no update checks; nothing staged in git behind your back
        (tmp / ".dvc" / "config").write_text(
            "[core]\n    analytics = false\n    check_update = false\n    autostage = false\n",
            encoding="utf-8",
        )
        _run([*dvc, "add", "--quiet", "data"], tmp, "dvc add data")
        _run(["git", "add", "-A"], tmp, "git add")
        committed = False
        if commit and _git_identity(tmp):
            msg = f"hortus init {dest.name} --from {d.source.name}: draft project"
            _run(["git", "commit", "--quiet", "-m", msg], tmp, "git commit")
            committed = True
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"path": str(dest), "committed": committed}


def _check_loads(root: Path, d: Draft) -> None:
    """Refuse to finish a project whose definition or contract does not load."""
    from hortus.errors import ContractError
    from hortus.lakehouse.catalog import Catalog
    from hortus.project.definition import Project, ProjectError

    try:
        project = Project.load(root)
        catalog = Catalog.load(root=root)
        project.validate(catalog)
    except (ProjectError, ContractError) as exc:  # a bug of init, not of the input
        raise InitError(f"the drafted project does not load ({exc}); please report this") from None
