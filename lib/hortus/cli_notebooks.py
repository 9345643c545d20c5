"""The `hortus notebooks` command: rerun a marimo notebook headless and publish it.

`hortus notebooks run NAME -p key=value ...` checks the parameter names against the
notebook's `# parameters` cell, runs it with papermill (kernel python3, working
directory the project root) and writes the executed `NAME.ipynb` and a static,
offline `NAME.html` to reports/notebooks/ (or --out).  Exit 0 on success, 2 on a
user mistake (unknown notebook or parameter, bad value) or a failing cell.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hortus.config import Paths


def cmd_notebooks_run(args: argparse.Namespace) -> int:
    """Run one notebook with the given parameters and print where the outputs went."""
    from hortus.notebooks import parse_parameters, publish_notebook

    paths = Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()
    parameters = parse_parameters(args.param or [])
    out = Path(args.out).resolve() if args.out else None
    executed, page = publish_notebook(
        paths.root, args.name, parameters, out_dir=out, timeout=args.timeout
    )
    if args.json:
        summary = {"notebook": str(executed), "html": str(page), "parameters": parameters}
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    else:
        given = ", ".join(f"{k}={v!r}" for k, v in parameters.items()) or "defaults"
        print(f"ran notebooks/{args.name}.py ({given})")
        print(f"  executed notebook {executed}")
        print(f"  offline HTML      {page}")
    return 0


def cmd_notebooks_list(args: argparse.Namespace) -> int:
    """Print the notebooks under notebooks/."""
    paths = Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()
    for path in sorted((paths.root / "notebooks").glob("*.py")):
        print(path.stem)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add `hortus notebooks run|list` to the `hortus` command."""
    n = sub.add_parser(
        "notebooks",
        help="rerun a marimo notebook headless (papermill) and publish it as HTML",
        description="Rerun notebooks headless and publish the executed notebooks.",
    )
    nsub = n.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = nsub.add_parser(
        "run",
        help="run notebooks/NAME.py with parameters; write NAME.ipynb and NAME.html",
        description="Export notebooks/NAME.py to ipynb, inject the -p values after its "
        "`# parameters` cell, run it with papermill (kernel python3, in the project root) and "
        "write the executed NAME.ipynb plus a static offline NAME.html (no scripts, charts as "
        "inline SVG or as their data) to reports/notebooks/ or --out.  Values are YAML "
        "scalars: 5, 0.1, true, null, text.  Notebooks that read the lakehouse need a built "
        "lakehouse and a user with read rights (e.g. HORTUS_USER=sam).",
    )
    r.add_argument("name", help="notebook name, e.g. train for notebooks/train.py")
    r.add_argument(
        "-p",
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="set a parameter of the `# parameters` cell (repeatable)",
    )
    r.add_argument("--out", help="output folder (default: reports/notebooks/)")
    r.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_notebooks_run)
    ls = nsub.add_parser("list", help="list the notebooks", description="List notebooks/*.py.")
    ls.set_defaults(func=cmd_notebooks_list)
