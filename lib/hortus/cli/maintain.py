"""`hortus maintain`: compact and checkpoint tables, apply retention, vacuum (audited).

See `hortus.lakehouse.maintain`.  Thresholds come from params.yaml's optional
`maintain:` section; `--dry-run` reports what would be done and changes nothing.
Exit 1 when a table's retention was refused (a registered receipt needs its rows)
or a table could not be maintained; the report says which and why.
"""

from __future__ import annotations

import argparse

from hortus.cli._common import _paths, _print, console, emit


def cmd_maintain(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from hortus.lakehouse.maintain import config_from_params, maintain
    from hortus.lakehouse.tables import Lakehouse

    paths = _paths(args)
    config = config_from_params(paths.root, args.params, vacuum_hours=args.vacuum_hours)
    lh = Lakehouse.open(paths.root, stage="maintain")
    report = maintain(lh, config=config, dry_run=args.dry_run, tables=args.table or None)
    lh.close()
    failed = [t for t in report.tables if t.error] + report.refused
    if args.json:
        _print(report.to_dict(), True)
        return 1 if failed else 0
    out = console()
    title = "hortus maintain" + (" (dry run: nothing changed)" if report.dry_run else "")
    t = Table(title=title, title_justify="left", header_style="bold")
    for name in ("table", "files", "small", "compacted", "checkpoint", "rows deleted",
                 "vacuumed", "retention"):  # fmt: skip
        if name == "table":  # table names whole, never cut to "ops.audi…" in a narrow pipe
            width = max((len(r.table) for r in report.tables), default=5)
            t.add_column(name, justify="left", no_wrap=True, min_width=width)
        else:
            t.add_column(name, justify="left" if name == "retention" else "right")
    for r in report.tables:
        if not r.changed and not r.retention and not r.error:
            continue
        ret = r.retention or {}
        comp = r.compacted or {}
        t.add_row(
            r.table,
            str(r.files_before),
            str(r.small_files),
            f"{comp.get('files_removed')} -> {comp.get('files_added') or '?'}" if comp else "-",
            f"v{r.checkpoint}" if r.checkpoint is not None else "-",
            f"{ret.get('rows_deleted', 0):,}" if ret else "-",
            str(r.vacuumed),
            "error" if r.error else (f"{ret['status']} ({ret['days']:g} d)" if ret else "-"),
        )
    emit(t, out=out)
    quiet = sum(1 for r in report.tables if not r.changed and not r.retention and not r.error)
    if quiet:
        out.print(f"{quiet} other table(s): nothing to do")
    for r in report.tables:
        if r.error:
            out.print(f"[red]{r.table}: could not be maintained: {escape(r.error)}[/]")
        if (r.retention or {}).get("status") == "refused":
            out.print(f"[yellow]{escape(r.retention['message'])}[/]")
        for removed in (r.retention or {}).get("receipts_removed") or []:
            out.print(f"[yellow]{r.table}: removed the inputs of {escape(removed)} (policy)[/]")
    return 1 if failed else 0


def add_parsers(sub) -> None:
    """Register `hortus maintain`."""
    p = sub.add_parser(
        "maintain",
        help="compact and checkpoint tables, apply retention, vacuum (audited)",
        description="Compact the small files of the operations tables (and of any table with "
        "many small files) and checkpoint them; delete the rows past each contract's "
        "retention and vacuum their files, never the versions a registered model's receipt "
        "reads unless the contract says keep_for_receipts: false; vacuum the files "
        "compaction made obsolete after maintain.vacuum_hours.  Needs the maintain grant.",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="report what would be done; change nothing"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--table", action="append", help="only this table (repeatable)")
    p.add_argument(
        "--vacuum-hours", type=float, help="vacuum files removed this long ago (default 168)"
    )
    p.add_argument("--params", help="params file (default: params.yaml at the root)")
    p.set_defaults(func=cmd_maintain)
