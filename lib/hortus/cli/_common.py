"""Helpers shared by the command groups: paths, params, printing, stage commands."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
from pathlib import Path

from hortus.config import Paths, progress_wanted  # noqa: F401 (re-exported)


def _paths(args: argparse.Namespace) -> Paths:
    return Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()


def _params(args: argparse.Namespace, paths: Paths, section: str) -> dict:
    """Return a params section, checked against its schema before the stage does any work.

    An unknown key or a value of the wrong type or range is refused
    (hortus.params_schema), naming file, key, expected type and the valid names: exit 2.
    """
    from hortus.params import load_section
    from hortus.params_schema import check_section

    path = Path(args.params) if args.params else paths.root / "params.yaml"
    body = load_section(path, section)
    check_section(section, body, source=path.name, root=paths.root)
    return body


def _project(paths: Paths):
    """Return the project definition (hortus.yaml) of the project at `paths`."""
    from hortus.project.definition import Project

    return Project.load(paths.root)


def _model(args: argparse.Namespace, paths: Paths) -> str:
    """Return the model a command acts on: --model, else the project's default model.

    An unknown --model is refused (ProjectError naming the models of hortus.yaml)
    only where the project must declare it; registered models outside the definition
    are allowed, so this returns the name as given.
    """
    return getattr(args, "model", None) or _project(paths).default_model


def add_model_option(parser: argparse.ArgumentParser, *, every: str | None = None) -> None:
    """Add `--model NAME` to a command; the default is the project's default model.

    `every` replaces the default's description where no --model means every model.
    """
    default = every or "the project's default_model in hortus.yaml"
    parser.add_argument("--model", metavar="NAME", help=f"model name (default: {default})")


def _simulator(paths: Paths):
    """Return the project's simulator module (hortus.yaml `simulator`), or refuse clearly."""
    from hortus.lakehouse.snapshot import simulator

    return simulator(paths)


def _print(obj: object, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, indent=2, sort_keys=True, default=str))


# -------------------------------------------------------------------- stages
def add_executor_options(parser: argparse.ArgumentParser) -> None:
    """Add --executor and --address (where the stage's partitioned work runs)."""
    parser.add_argument(
        "--executor",
        choices=["local", "ray"],
        help="run the stage's partitioned work in-process (local) or as Ray tasks "
        "(default: params.yaml executor.kind, env HORTUS_EXECUTOR)",
    )
    parser.add_argument(
        "--address",
        dest="ray_address",
        metavar="RAY_ADDRESS",
        help="Ray cluster to join: auto (make cluster-up) or ray://host:10001 (default: "
        "params.yaml executor.address, env HORTUS_RAY_ADDRESS; none starts a local Ray instance)",
    )


def _stage(name: str):
    def run(args: argparse.Namespace) -> int:
        from hortus.monitoring.runlog import record_run
        from hortus.pipeline import stages

        paths = _paths(args)
        params = _params(args, paths, name)
        # train, register and score act on --model, else on every model of the project;
        # a stage of the whole project (features) only checks that hortus.yaml has it
        extra = {}
        if getattr(args, "model", None):
            _project(paths).model(args.model)  # an unknown model: a clear error, exit 2
            if "model" in inspect.signature(stages.STAGES[name]).parameters:
                extra = {"model": args.model}
        if getattr(args, "rebuild", False):
            extra["rebuild"] = True
        if getattr(args, "executor", None):  # hortus.executor.executor_for reads these
            os.environ["HORTUS_EXECUTOR"] = args.executor
        if getattr(args, "ray_address", None):
            os.environ["HORTUS_RAY_ADDRESS"] = args.ray_address
        if getattr(args, "wait", None) is not None:  # a held lease: wait, else exit 2
            from hortus.lakehouse.lease import set_default_wait

            set_default_wait(args.wait)
        # every stage run, ok or failed, lands in ops.pipeline_runs (pipeline health);
        # a spinner on a terminal (train shows papermill's own progress bar instead)
        spinner = status(f"hortus {name}") if name != "train" else contextlib.nullcontext()
        with record_run(paths, name), spinner:
            summary = stages.STAGES[name](paths, params, **extra)
        _report_stage(name, summary, paths)
        return 0

    return run


def _report_stage(name: str, summary: dict, paths: Paths) -> None:
    if name == "ingest":
        print(
            f"ingest batch {summary['batch_id']}: {summary['files_new']} new file(s), "
            f"{summary['files_skipped_already_ingested']} already ingested, "
            f"{summary['files_refused']} refused"
        )
        for table, n in sorted(summary["rows_landed"].items()):
            print(f"  landed {n:>9,} rows for {table}")
        for r in summary["refused"]:
            print(f"  REFUSED {r['file']}: {r['reason']}")
        for w in summary["warnings"]:
            print(f"  warning {w}")
    elif name == "silver":
        for table, t in sorted(summary["tables"].items()):
            rules = ", ".join(f"{k}={v}" for k, v in t["rules"].items()) or "none"
            print(
                f"  {table:<16} landed {t['landed']:>9,} = accepted {t['accepted']:>9,} "
                f"+ quarantined {t['quarantined']:>7,}  (rules: {rules})"
            )
        _print_quarantine_examples(paths)
    elif name == "features":
        t = summary.get("examples")
        if t is not None:
            pos = f", {t['positives']:,} positive" if "positives" in t else ""
            print(f"  {t['table']} {t['rows']:>9,} examples{pos}")
        for table, t in summary["offline"].items():
            print(f"  {table:<26} {t['rows']:>9,} log rows (version {t['version']})")
        on = summary["online"]
        print(f"  online store {on['path']}: {sum(on['rows'].values()):,} entity rows "
              f"as of {on['materialized_at']}")  # fmt: skip
        sk = summary["skew"]
        print(
            f"  skew check: {sk['entities']} entities x {sk['features']} features: "
            f"{'OK' if sk['ok'] else 'DIFFERENCES in ' + ', '.join(sk['mismatched_features'])}"
        )
    else:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))


def _print_quarantine_examples(paths: Paths, limit: int = 8) -> None:
    from hortus.lakehouse.silver import QUARANTINE
    from hortus.lakehouse.tables import Lakehouse

    lh = Lakehouse.open(paths.root, stage="cli")
    if not lh.exists(QUARANTINE):
        return
    rows = (
        lh.scan(QUARANTINE)
        .sort("source_file", "line")
        .group_by("rule", maintain_order=True)
        .head(2)
        .head(limit)
        .collect()
    )
    for r in rows.iter_rows(named=True):
        print(
            f"  quarantined {r['source_file']}:{r['line']} column {r['column'] or '-'} "
            f"rule {r['rule']}: {r['message'][:160]}"
        )


# ------------------------------------------------------------ terminal output
def console(*, stderr: bool = False):
    """Return a rich Console for stdout (or stderr), created per call so tests capture it.

    On a terminal rich uses its width; in a pipe or a file it uses $COLUMNS, else 120
    columns, so piped tables are not squeezed to 80.
    """
    import os
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 120
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def emit(*renderables, out=None) -> None:
    """Print rich renderables to stdout without the trailing blanks rich pads lines with."""
    out = out or console()
    with out.capture() as captured:
        out.print(*renderables)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    print(text)


def shorten(text: str, width: int) -> str:
    """Cut `text` to at most `width` characters at a word boundary, ending in an ellipsis.

    >>> shorten("Daily KPIs per region and channel", 20)
    'Daily KPIs per…'
    >>> shorten("short", 20)
    'short'
    """
    text = " ".join(str(text).split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if " " in cut and not text[width - 1].isspace():
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.-") + "…"


def status(message: str):
    """Return a context manager showing a spinner with elapsed time on stderr (TTY only).

    A no-op context manager when stderr is not a terminal.
    """
    if not progress_wanted():
        return contextlib.nullcontext()
    import sys

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    redirect = sys.stdout.isatty()

    @contextlib.contextmanager
    def _spin():
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console(stderr=True),
            transient=True,
            # lines printed meanwhile go above the spinner, not into it; only when stdout
            # is the terminal too (a redirected stdout keeps its own stream)
            redirect_stdout=redirect,
            redirect_stderr=redirect,
        ) as bar:
            bar.add_task(message, total=None)
            yield bar

    return _spin()
