"""The `hortus notebooks` command: rerun a marimo notebook headless and publish it.

`hortus notebooks run NAME -p key=value ...` checks the parameter names against the
notebook's `# parameters` cell, runs it with papermill (kernel python3, working
directory the project root) and writes the executed `NAME.ipynb` and a static,
offline `NAME.html` to reports/notebooks/ (or --out).  Exit 0 on success, 2 on a
user mistake (unknown notebook or parameter, bad value) or a failing cell.

`hortus notebooks publish VERSION [--model NAME] [--out DIR]` publishes the model report
of one registered version (a number or an alias such as champion): it resolves VERSION
to the version number N, runs notebooks/model_report.py with model, version=N and
card_path, and writes `model_report.ipynb`, `model_report.html` and `card.json` to
reports/models/<model>/<N>/ (DIR/<model>/<N>/ with --out); with --every-model, for
each registered model of the project.  card.json is the card as data (format
`hortus.model_card/1`, see `hortus.publishing.model_card.ModelCard.summary`) plus `report`, the
names of the two report files beside it.  Exit 0 whether the governance checklist
passes or fails (the verdict is in the report and card.json), 2 on an unknown model or
version, or when the report cannot be built.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hortus.config import Paths
from hortus.errors import HortusError


def cmd_notebooks_run(args: argparse.Namespace) -> int:
    """Run one notebook with the given parameters and print where the outputs went."""
    from hortus.publishing.notebooks import parse_parameters, publish_notebook

    paths = Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()
    parameters = parse_parameters(args.param or [])
    if args.name == "train":  # params.yaml's train section and the -p values, at once
        from hortus.cli._common import _params
        from hortus.params_schema import check_values

        _params(argparse.Namespace(params=None), paths, "train")
        check_values("train", parameters, source="hortus notebooks run train -p")
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


def cmd_notebooks_publish(args: argparse.Namespace) -> int:
    """Publish the model report of one registered version (of each model with --every-model)."""
    from hortus.lakehouse.tables import Lakehouse
    from hortus.models.registry import model_names
    from hortus.project.definition import Project

    paths = Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()
    if not args.every_model:
        model = args.model or Project.load(paths.root).default_model
        return _publish_one(args, paths, model)
    if args.model:
        raise HortusError("notebooks publish: --model and --every-model exclude each other")
    with Lakehouse.open(paths.root, stage="publish") as lh:
        registered = set(model_names(lh))
    names = [n for n in Project.load(paths.root).models if n in registered]
    if not names:
        raise HortusError("notebooks publish --every-model: no model of the project is registered")
    for name in names:
        _publish_one(args, paths, name)
    return 0


def _publish_one(args: argparse.Namespace, paths: Paths, model: str) -> int:
    """Publish one model's report to reports/models/<model>/<N>/ (or DIR/<model>/<N>/)."""
    from hortus.lakehouse.tables import Lakehouse
    from hortus.models.registry import Registry
    from hortus.publishing.notebooks import publish_notebook

    with Lakehouse.open(paths.root, stage="publish") as lh:
        registry = Registry(lh, model)
        if args.fallback_gated and args.version == "champion" and not _has_champion(registry):
            version = registry.newest_gated()
            if version is not None:
                print(f"no champion of {model} yet: publishing v{version}, the newest "
                      "version whose gate passed", file=sys.stderr)  # fmt: skip
            else:
                # no version passed its gate: its report says why (the failed checks)
                version = max(v.version for v in registry.versions())
                print(f"no version of {model} passed its gate: publishing v{version}, the "
                      "newest registered version, whose report shows the failed checks",
                      file=sys.stderr)  # fmt: skip
        else:
            version = registry.get(args.version).version  # unknown: exit 2
    base = Path(args.out).resolve() if args.out else paths.reports / "models"
    folder = base / model / str(version)
    card = folder / "card.json"
    card.unlink(missing_ok=True)  # a card left by an earlier run must not outlive this one
    parameters = {"model": model, "version": version, "card_path": str(card)}
    executed, page = publish_notebook(
        paths.root,
        "model_report",
        parameters,
        out_dir=folder,
        timeout=args.timeout,
        exclude_input=True,  # a report for reviewers; the executed notebook keeps the code
    )
    if not card.is_file():
        raise HortusError(
            f"the report of model {model} v{version} could not build its card "
            f"(no {card}); the reason is in {page}"
        )
    doc = json.loads(card.read_text(encoding="utf-8"))
    doc["report"] = {"html": page.name, "notebook": executed.name}
    card.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if args.json:
        summary = {"model": model, "version": version, "verdict": doc["verdict"],
                   "failed": doc["failed"], "card": str(card), "html": str(page),
                   "notebook": str(executed)}  # fmt: skip
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        failed = f" ({', '.join(doc['failed'])} failed)" if doc["failed"] else ""
        print(f"published the model report of {model} v{version} ({args.version})")
        print(f"  governance checklist: {doc['verdict'].upper()}{failed}")
        print(f"  executed notebook {executed}")
        print(f"  offline HTML      {page}")
        print(f"  card              {card}")
    return 0


def _has_champion(registry) -> bool:
    return "champion" in registry.aliases()


def newest_gated(registry) -> int:
    """Return the newest version whose latest gate run passed, or raise (no champion, no gate)."""
    version = registry.newest_gated()
    if version is None:
        raise HortusError(
            f"no champion of {registry.name}, and no version passed its gate "
            "(see reports/gate.json and reports/gate/)"
        )
    return version


def cmd_notebooks_list(args: argparse.Namespace) -> int:
    """Print the notebooks under notebooks/."""
    paths = Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()
    for path in sorted((paths.root / "notebooks").glob("*.py")):
        print(path.stem)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add `hortus notebooks run|publish|list` to the `hortus` command."""
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
    p = nsub.add_parser(
        "publish",
        help="publish the model report of a registered version to reports/models/<model>/<N>/",
        description="Resolve VERSION (3, v3, or an alias such as champion) of --model to its "
        "number N, run notebooks/model_report.py for it with papermill and write "
        "model_report.ipynb, an offline model_report.html and card.json (the model card and "
        "its governance checklist as data) to reports/models/<model>/<N>/ (or DIR/<model>/<N>/ "
        "with --out).  "
        "Exits 0 whether the checklist passes or fails (the verdict is in the report), 2 on "
        "an unknown version.  Acts as HORTUS_USER, who needs read access to the registry.",
    )
    p.add_argument("version", help="version number (3, v3) or alias (champion, challenger)")
    p.add_argument(
        "--model", metavar="NAME", help="model name (default: the project's default_model)"
    )
    p.add_argument(
        "--every-model",
        action="store_true",
        help="publish VERSION of every registered model of the project (the DVC `report` stage)",
    )
    p.add_argument(
        "--fallback-gated",
        action="store_true",
        help="with VERSION champion and no champion yet, publish the newest version whose "
        "gate passed, else the newest registered one (used by the DVC `report` stage)",
    )
    p.add_argument("--out", help="parent folder of <model>/<N>/ (default: reports/models/)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_notebooks_publish)
    ls = nsub.add_parser("list", help="list the notebooks", description="List notebooks/*.py.")
    ls.set_defaults(func=cmd_notebooks_list)
