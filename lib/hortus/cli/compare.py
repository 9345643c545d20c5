"""`hortus models compare A B [C...]`: registered versions of a model side by side.

Prints rich tables (params that differ, overall metrics, per-segment metric with its
bootstrap interval, gate checks, data versions, size and latency); `--json` prints
`hortus.models.compare.Comparison.to_dict()`; `--html FILE` writes the docs-site
page (`hortus.publishing.compare_page`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hortus.cli._common import console, emit


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.3g}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)


def _table(title: str, first: str, labels: list[str]):
    from rich.table import Table

    t = Table(title=title, title_justify="left", title_style="bold", header_style="bold")
    t.add_column(first, overflow="fold")
    for label in labels:
        t.add_column(label, justify="right", overflow="fold")
    return t


def _cells(values: list, best: int | None = None) -> list[str]:
    from rich.markup import escape

    out = []
    for i, v in enumerate(values):
        text = escape(_fmt(v))
        out.append(f"[bold green]{text}*[/]" if best is not None and i == best else text)
    return out


def _verdict(passed: bool | None) -> str:
    return "-" if passed is None else ("[green]pass[/]" if passed else "[bold red]FAIL[/]")


def render(cmp, *, all_data: bool = False) -> list:
    """Return the rich renderables of a comparison (one table per section)."""
    from rich.markup import escape

    labels = cmp.labels
    parts: list = [f"[bold]model {escape(cmp.model)}[/]: {', '.join(labels)}  (* best)"]
    t = _table(f"params that differ ({cmp.params_same} equal)", "param", labels)
    for p in cmp.params:
        t.add_row(escape(p["name"]), *_cells(p["values"]))
    if not cmp.params:
        t.add_row("(none differ)", *["" for _ in labels])
    parts.append(t)

    t = _table("metrics (hold-out, overall)", "metric", labels)
    for m in cmp.metrics:
        t.add_row(m["name"], *_cells(m["values"], m["best"]))
    parts.append(t)

    if cmp.segments:
        metric = cmp.segment_metric or "metric"
        t = _table(f"{metric} per segment (95% bootstrap interval)", "segment = value", labels)
        for s in cmp.segments:
            cells = []
            for ci in s["values"]:
                if ci is None or ci.get("estimate") is None:
                    cells.append("-")
                    continue
                low, high = ci.get("low"), ci.get("high")
                band = f" [{_fmt(low)}, {_fmt(high)}]" if low is not None else ""
                cells.append(escape(f"{_fmt(ci['estimate'])}{band}"))
            t.add_row(escape(f"{s['segment']} = {s['value']}"), *cells)
        parts.append(t)

    t = _table("gate (latest run of each version)", "check", labels)
    t.add_row(
        "[bold]verdict[/]",
        *[
            "no gate run" if r is None else _verdict(r["passed"]) + f" ({r['failed']} failed)"
            for r in cmp.gate_runs
        ],
    )
    for g in cmp.gates:
        cells = []
        for c in g["values"]:
            if c is None:
                cells.append("-")
            else:
                cells.append(f"{_verdict(c['passed'])} {escape(_fmt(c['value']))}")
        t.add_row(escape(g["check"]), *cells)
    parts.append(t)

    t = _table("data and build", "", labels)
    for d in cmp.data:
        per_table = d["name"].endswith(("(Delta version)", "(rows, content)"))
        if all_data or d["differ"] or not per_table:
            name = ("[yellow]" + escape(d["name"]) + "[/]") if d["differ"] else escape(d["name"])
            t.add_row(name, *_cells(d["values"]))
    parts.append(t)

    if cmp.efficiency:
        t = _table("size and latency (gate efficiency check)", "", labels)
        for e in cmp.efficiency:
            t.add_row(e["title"], *_cells(e["values"], e["best"]))
        parts.append(t)
    parts += [f"note: {escape(n)}" for n in cmp.notes]
    return parts


def default_pair(reg) -> list[str]:
    """Return what `models compare` compares without versions: the champion and the newest
    other version, else the two newest versions."""
    from hortus.errors import HortusError

    versions = [mv.version for mv in reg.versions()]
    champion = reg.aliases().get("champion")
    others = [v for v in versions if v != champion]
    pair = [champion, others[-1]] if champion is not None and others else versions[-2:]
    if len(pair) < 2:
        raise HortusError(
            f"models compare: model {reg.name} has {len(versions)} version(s); comparing needs two"
        )
    return [str(v) for v in pair]


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare versions of a model."""
    from hortus.cli._common import _model, _paths
    from hortus.lakehouse.tables import Lakehouse
    from hortus.models.compare import compare_versions
    from hortus.models.registry import Registry

    paths = _paths(args)
    reg = Registry(Lakehouse.open(paths.root, stage="cli"), _model(args, paths))
    cmp = compare_versions(reg, args.versions or default_pair(reg))
    if args.html:
        from hortus.publishing.compare_page import compare_page

        path = Path(args.html)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(compare_page(cmp), encoding="utf-8")
    if args.json:
        print(json.dumps(cmp.to_dict(), indent=2, sort_keys=True, default=str))
        return 0
    out = console()
    for part in render(cmp, all_data=args.all):
        emit(part, out=out)
    if args.html:
        print(f"page: {args.html}")
    return 0


def add_parser(msub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `models compare` to the `models` subcommands."""
    s = msub.add_parser(
        "compare",
        parents=[common],
        help="compare two or more versions side by side",
        description="Compare registered versions of a model side by side: the train params "
        "that differ, the hold-out metrics overall and per segment (with the gate's "
        "bootstrap intervals), the latest gate run's checks, the data and code each was "
        "built from (data.dvc md5, git commit, Delta versions of the tables read) and "
        "the model's size and latency.  The best value of a row is starred.",
    )
    s.add_argument(
        "versions",
        nargs="*",
        metavar="VERSION",
        help="two or more versions: numbers (3 or v3) or aliases (champion); none: the "
        "champion and the newest other version, else the two newest",
    )
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument(
        "--all", action="store_true", help="show every data row, not only those that differ"
    )
    s.add_argument("--html", metavar="FILE", help="also write the comparison as an HTML page")
    s.set_defaults(func=cmd_compare)
