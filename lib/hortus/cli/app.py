"""The `hortus app` command: serve a marimo notebook as an app, with token auth always on.

`hortus app NAME` runs `marimo run notebooks/NAME.py` (`--edit`: `marimo edit`) on
127.0.0.1 as one user of the access policy, and never without a token: a request
without it is redirected to marimo's login page.  The token is `HORTUS_APP_TOKEN`,
else the git-ignored `.hortus/secrets/app_token`, written with a random token (mode
0600) on first use.  It reaches marimo through a pipe on its standard input
(`--token-password-file -`), so it is neither on the command line (visible to every
local user in `ps`) nor copied to another file.  The identity of the app is `--user`,
else `HORTUS_USER`, else the notebook's default persona in `APP_USERS`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from hortus.config import Paths
from hortus.errors import HortusError
from hortus.lakehouse.keys import read_key

#: environment variable that holds the app token (wins over the token file)
TOKEN_ENV = "HORTUS_APP_TOKEN"
#: token file under the secrets folder (.hortus/secrets/, git-ignored)
TOKEN_FILE = "app_token"
#: the one host the apps listen on
HOST = "127.0.0.1"
DEFAULT_PORT = 2718

#: default identity per notebook, from access_policy.yaml: the persona the app is for
APP_USERS = {
    "monitor": "mia",  # ml-engineers: read the operations tables the dashboard shows
    "explore": "sam",  # data-scientists: silver, gold and the model tables, PII masked
    "train": "sam",  # data-scientists: may train and write the examples tables
    "model_report": "olivia",  # ml-engineers + approvers: what a reviewer of a version reads
}


def app_token(secrets_dir: Path) -> tuple[str, str]:
    """Return the app token and where it came from.

    `HORTUS_APP_TOKEN` wins; else the token file `secrets_dir/app_token`; else a new
    random token (URL-safe, 32 bytes of entropy) is written to that file with mode
    0600 and returned.  The second item says which: ``"env"``, ``"file"`` or ``"new"``.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> token, source = app_token(folder)
    >>> source, app_token(folder) == (token, "file")
    ('new', True)
    """
    key = read_key(TOKEN_ENV, secrets_dir, TOKEN_FILE)
    if key is not None:
        return key.decode(), "env" if os.environ.get(TOKEN_ENV) else "file"
    path = Path(secrets_dir) / TOKEN_FILE
    if path.exists():
        raise HortusError(f"app token file {path} is empty: delete it or write a token in it")
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: never overwrite a token another process wrote meanwhile; 0600 from the start
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token, "new"


def app_user(name: str, given: str | None = None) -> str:
    """Return the identity an app runs as: `given`, else HORTUS_USER, else APP_USERS[name].

    Examples
    --------
    >>> app_user("monitor", "alex")
    'alex'
    """
    user = given or os.environ.get("HORTUS_USER") or APP_USERS.get(name)
    if not user:
        raise HortusError(
            f"hortus app {name}: no default user for this notebook; "
            "give --user or set HORTUS_USER (a user of access_policy.yaml)"
        )
    return user


def app_url(port: int, token: str) -> str:
    """Return the URL that opens an app and logs in with the token.

    Examples
    --------
    >>> app_url(2718, "abc")
    'http://127.0.0.1:2718/?access_token=abc'
    """
    return f"http://{HOST}:{port}/?access_token={token}"


def marimo_command(marimo: Path, notebook: Path, *, port: int, edit: bool = False) -> list[str]:
    """Return the marimo command line that serves `notebook` with the token read on stdin.

    Examples
    --------
    >>> marimo_command(Path("marimo"), Path("nb.py"), port=2718)[:3]
    ['marimo', 'run', 'nb.py']
    """
    cmd = [str(marimo), "edit" if edit else "run", str(notebook)]
    cmd += ["--host", HOST, "--port", str(port), "--headless", "--no-sandbox"]
    cmd += ["--token", "--token-password-file", "-"]
    return [*cmd, "--skip-update-check"] if edit else cmd


def cmd_app(args: argparse.Namespace) -> int:
    """Replace this process by a marimo server of notebooks/NAME.py with token auth."""
    from hortus.publishing.notebooks import notebook_path

    paths = Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()
    notebook = notebook_path(paths.root, args.name)
    user = app_user(notebook.stem, args.user)
    token, source = app_token(paths.secrets)
    marimo = Path(sys.executable).with_name("marimo")
    if not marimo.exists():
        raise HortusError(f"marimo is not installed beside {sys.executable}: run `make setup`")
    where = {
        "env": f"from ${TOKEN_ENV}",
        "file": f"from {paths.secrets / TOKEN_FILE}",
        "new": f"new, saved to {paths.secrets / TOKEN_FILE} (git-ignored)",
    }[source]
    mode = "edit" if args.edit else "run"
    print(f"marimo {mode} notebooks/{notebook.name} as {user}; token {where}")
    print(f"open {app_url(args.port, token)}", flush=True)
    env = os.environ | {
        "HORTUS_ROOT": str(paths.root),
        "HORTUS_USER": user,
        "MARIMO_SKIP_UPDATE_CHECK": "1",
    }
    # the token goes through a pipe on stdin (it fits the pipe buffer), never into argv
    read_end, write_end = os.pipe()
    os.write(write_end, token.encode())
    os.close(write_end)
    os.dup2(read_end, 0)
    os.close(read_end)
    os.chdir(paths.root)
    os.execve(str(marimo), marimo_command(marimo, notebook, port=args.port, edit=args.edit), env)
    return 1  # not reached: execve replaces the process


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add `hortus app NAME` to the `hortus` command."""
    a = sub.add_parser(
        "app",
        help="serve notebooks/NAME.py as a marimo app on 127.0.0.1 with token auth",
        description="Serve notebooks/NAME.py with `marimo run` (or `marimo edit` with --edit) "
        f"on {HOST}, token authentication always on.  The token is ${TOKEN_ENV}, else "
        f".hortus/secrets/{TOKEN_FILE} (git-ignored), created with a random token on first "
        "use; the URL with ?access_token= is printed once at start.  The app reads the "
        "lakehouse as --user, else $HORTUS_USER, else the notebook's persona: "
        + ", ".join(f"{k}={v}" for k, v in APP_USERS.items())
        + ".",
    )
    a.add_argument("name", help="notebook name, e.g. monitor for notebooks/monitor.py")
    a.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    a.add_argument("--user", help="user of access_policy.yaml the app acts as")
    a.add_argument("--edit", action="store_true", help="open the editor (marimo edit)")
    a.set_defaults(func=cmd_app)
