"""`hortus catalog search`, the filters of `hortus catalog list`, and `hortus lineage`.

Search and filters read contracts only (`hortus.lakehouse.catalog_search`); search
leaves out tables the user may not read (the policy's read grant).  Lineage reads each
table's Delta history and the registry through the table API as the user (audited;
`hortus.governance.lineage`).
"""

from __future__ import annotations

import argparse

from hortus.cli._common import _paths, _print, console, emit, shorten

LAYERS = ("bronze", "quarantine", "silver", "gold", "ops")


# ------------------------------------------------------------ catalog list filters
def add_list_filters(parser: argparse.ArgumentParser) -> None:
    """Add --layer, --owner, --tag and --pii/--no-pii to `catalog list`."""
    parser.add_argument("--layer", choices=LAYERS, help="only tables of this layer")
    parser.add_argument("--owner", help="only tables with this owner")
    parser.add_argument(
        "--tag", help="only tables with this tag on the table or a column (pii, kpi, feature, ...)"
    )
    pii = parser.add_mutually_exclusive_group()
    pii.add_argument(
        "--pii",
        dest="pii",
        action="store_const",
        const=True,
        help="only tables with personal data (a column with a PII class)",
    )
    pii.add_argument("--no-pii", dest="pii", action="store_const", const=False,
                     help="only tables without personal data")  # fmt: skip


def listed(catalog, args: argparse.Namespace) -> list:
    """Return the contracts `catalog list` shows with the filters of `args`."""
    from hortus.lakehouse.catalog_search import filter_tables

    return filter_tables(
        catalog,
        layer=getattr(args, "layer", None),
        owner=getattr(args, "owner", None),
        tag=getattr(args, "tag", None),
        pii=getattr(args, "pii", None),
    )


# ------------------------------------------------------------------ catalog search
def cmd_catalog_search(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from hortus.lakehouse.catalog_search import search, suggest
    from hortus.lakehouse.tables import Lakehouse

    lh = Lakehouse.open(_paths(args).root, stage="cli")
    assert lh.policy is not None

    def visible(table: str) -> bool:
        return lh.policy.decide(lh.user, "read", table).allowed

    text = " ".join(args.text)
    hits = search(listed(lh.catalog, args), text, visible=visible)
    if args.limit:
        hits = hits[: args.limit]
    if args.json:
        _print([h.to_dict() for h in hits], True)
        return 0 if hits else 1
    out = console()
    if not hits:
        close = suggest(lh.catalog, text, visible=visible)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        out.print(f"no table or column matches {text!r}{hint}", markup=False, highlight=False)
        return 1
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("name", "match", "tags", "owner", "description"):
        table.add_column(name, no_wrap=name != "description", overflow="ellipsis")
    for h in hits:
        table.add_row(h.name, h.kind, ", ".join(h.tags) or "-", h.owner,
                      escape(shorten(h.description, 80)))  # fmt: skip
    emit(table, out=out)
    return 0


def add_catalog_parsers(csub) -> None:
    """Add `catalog search` to the `catalog` subcommands."""
    s = csub.add_parser(
        "search",
        help="search tables and columns by name, tag, owner or description",
        description="Search the catalog: table and column names, tags (declared in the "
        "contracts, plus pii, feature and kpi derived from them), owners and descriptions. "
        "Ranked: exact name, part of a name, tag, owner, word of a description. Tables you "
        "may not read are left out. Exit 1 when nothing matches (close names suggested).",
    )
    s.add_argument("text", nargs="+", help="what to look for, e.g. pii, revenue, or a table name")
    add_list_filters(s)
    s.add_argument("--limit", type=int, default=0, help="at most N hits (0: all)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_catalog_search)


# ------------------------------------------------------------------------ lineage
def cmd_lineage(args: argparse.Namespace) -> int:
    from hortus.governance.lineage import answer
    from hortus.lakehouse.tables import Lakehouse

    lh = Lakehouse.open(_paths(args).root, stage="cli")
    both = not (args.upstream or args.downstream)
    result = answer(lh, args.name, upstream=both or args.upstream,
                    downstream=both or args.downstream)  # fmt: skip
    if args.json:
        _print(result, True)
        return 0
    out = console()
    lines = [f"{result['node']} ({result['kind']})"]
    for direction in ("upstream", "downstream"):
        if direction not in result:
            continue
        edges = result[direction]
        lines.append(f"{direction}:" + ("" if edges else " none recorded"))
        for e in edges:
            read = f" v{e['version']}" if e["version"] is not None else ""
            lines.append(f"{'  ' * e['depth']}{e['from']}{read} -> {e['to']}")
    if result["hidden"]:
        lines.append(f"({result['hidden']} table(s) you may not read are left out)")
    out.print("\n".join(lines), markup=False, highlight=False)
    return 0


def add_parsers(sub) -> None:
    """Add `hortus lineage`."""
    p = sub.add_parser(
        "lineage",
        help="what a table or model version was built from, and what was built from it",
        description="Lineage per write, from each table's Delta commits (the tables and "
        "versions that write read, the model version that wrote predictions) and the "
        "registry's receipts (the tables and versions a model version was trained on). "
        "Without --upstream/--downstream, both. Tables you may not read are left out.",
    )
    p.add_argument("name", help="a table (layer.name), a model (recommender: its newest "
                   "version) or a model version (recommender@v3)")  # fmt: skip
    way = p.add_mutually_exclusive_group()
    way.add_argument("--upstream", action="store_true", help="only what it was built from")
    way.add_argument("--downstream", action="store_true", help="only what was built from it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_lineage)
