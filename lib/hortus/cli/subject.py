"""`hortus erase` (right to erasure) and `hortus subject export` (right of access).

Both act on one data subject named by the subject key of the project's contracts (the
primary key of the landed table with direct identifiers, e.g. a user id); see
`hortus.governance.erasure`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hortus.cli._common import _paths


def cmd_erase(args: argparse.Namespace) -> int:
    """Erase a data subject everywhere; print what was removed, where, and affected models."""
    from hortus.governance import erasure
    from hortus.lakehouse.tables import Lakehouse

    lh = Lakehouse.open(_paths(args).root, stage="erase")
    result = erasure.erase(
        lh, args.subject, reason=args.reason, table=args.table, dry_run=args.dry_run
    )
    lh.close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
        return 0 if not result.remaining else 1
    if result.resumed:
        print(
            f"erasure {result.erasure_id} was left pending (interrupted before its record was "
            "complete): continued and completed; what the interrupted run removed is in its record"
        )
    if result.already:
        print(
            f"subject already erased ({result.erasure_id}, reference {result.ref}) and found "
            "nowhere since: nothing to do, nothing changed"
        )
        return 0
    verb = "would remove" if args.dry_run else "removed"
    print(f"erasure {result.erasure_id} (subject reference {result.ref}):")
    for t in result.tables:
        extra = f", {t.redacted} mention(s) redacted" if t.redacted else ""
        files = f", {t.files_removed} old file(s) deleted" if t.files_removed else ""
        span = f" v{t.version_before}->v{t.version_after}" if t.version_after is not None else ""
        print(f"  {t.table:<28} {verb} {t.rows} row(s){extra}{files}{span}")
    if args.dry_run:
        print("dry run: nothing changed")
        return 0
    print(f"  online store: {result.online_rows} row(s) deleted")
    print(f"  reports redacted: {', '.join(result.reports) or 'none'}")
    for r in result.reconcile:
        state = "reconciles" if r["reconciles"] else "DOES NOT RECONCILE"
        print(f"  {r['table']}: landed {r['landed']} = accepted {r['accepted']} + "
              f"quarantined {r['quarantined']} ({state})")  # fmt: skip
    if result.models:
        print(
            f"models trained on this subject's data: {', '.join(result.models)} "
            "(retraining is the model owner's decision; their cards list this erasure)"
        )
    else:
        print("no registered model version was trained on this subject's data")
    if result.landing:
        print(
            f"note: the landing snapshot still names this subject in {len(result.landing)} "
            f"file(s) ({', '.join(result.landing[:3])}{', ...' if len(result.landing) > 3 else ''})"
            ": they are the pipeline's pinned source (data.dvc), left as they are; a rebuild "
            "from them (--rebuild, hortus reproduce) would land the subject again, so the "
            "export's owner re-exports them without the subject and re-pins data.dvc"
        )
    if result.remaining:
        print("NOT COMPLETE: the subject is still found in:")
        for w in result.remaining:
            print(f"  {w}")
        return 1
    print(
        "scan after the erasure: the subject is found nowhere (tables, every version, "
        "Delta logs, online store, reports); recorded in ops.erasures and the audit log"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export everything held about a data subject to one JSON file (audited)."""
    from hortus.governance import erasure
    from hortus.lakehouse.tables import Lakehouse

    lh = Lakehouse.open(_paths(args).root, stage="subject-export")
    out = Path(args.out or f"subject-export-{args.subject}.json")
    summary = erasure.subject_export(lh, args.subject, out, table=args.table)
    lh.close()
    rows = sum(summary["rows"].values())
    print(f"wrote {summary['file']}: {rows} row(s) from {len(summary['rows'])} table(s) "
          f"({', '.join(summary['rows'])}); the export is recorded in the audit log")  # fmt: skip
    if summary["skipped"]:
        print(f"tables you may not read (not exported): {', '.join(summary['skipped'])}")
    return 0


def cmd_erasures(args: argparse.Namespace) -> int:
    """List the erasures of ops.erasures (keyed references only), pending ones first named."""
    from hortus.governance import erasure
    from hortus.lakehouse.tables import Lakehouse

    lh = Lakehouse.open(_paths(args).root, stage="erasures")
    log = erasure.erasure_log(lh, pending=args.pending)
    lh.close()
    if args.json:
        print(log.write_json())
        return 0
    if not log.height:
        print("no pending erasure" if args.pending else "no erasure recorded (ops.erasures)")
        return 0
    for r in log.iter_rows(named=True):
        n = len(json.loads(r["tables"] or "{}"))
        state = (
            "PENDING (interrupted: run the same `hortus erase` again to finish it)"
            if r["status"] == erasure.PENDING
            else ("complete" if r["complete"] else "NOT COMPLETE (the scan still found them)")
        )
        print(f"{r['erasure_id']}  {r['erased_at']:%Y-%m-%d %H:%M}  {r['subject_ref']}  "
              f"by {r['requested_by']}  reason {r['reason']!r}  {r['rows']} row(s) in {n} "
              f"table(s)  {state}")  # fmt: skip
    pending = log.filter(log["status"] == erasure.PENDING).height
    if pending and not args.pending:
        print(f"{pending} erasure(s) pending")
    return 0


def add_parsers(sub) -> None:
    """Add `hortus erase` and `hortus subject export`."""
    e = sub.add_parser(
        "erase",
        help="right to erasure: remove a data subject everywhere (erase grant)",
        description="Remove a person's raw data from the restricted zone, every row keyed to "
        "them or to their tokens in silver, gold, feature logs and the prediction log, the "
        "older Delta files that held them, their online store rows and mentions in reports; "
        "record it in ops.erasures and the audit log; list the model versions trained on "
        "their data. Exit 0 when done (or already erased), 1 when the scan afterwards still "
        "finds them, 2 for an unknown subject or a refused request.",
    )
    e.add_argument("--subject", required=True, help="the subject key value, e.g. u000123")
    e.add_argument("--reason", required=True, help="request reference (no personal data)")
    e.add_argument("--table", help="the landed table whose key names subjects (default: found)")
    e.add_argument("--dry-run", dest="dry_run", action="store_true", help="only count")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_erase)
    s = sub.add_parser(
        "subject", help="data subject requests", description="Data subject requests."
    )
    ssub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    x = ssub.add_parser(
        "export",
        help="everything held about a person, as one JSON file (audited)",
        description="Export the restricted zone's raw rows of a data subject and the rows "
        "keyed to them in every table you may read, to one JSON file; audited.",
    )
    x.add_argument("subject", help="the subject key value, e.g. u000123")
    x.add_argument("--out", help="output file (default: subject-export-<id>.json here)")
    x.add_argument("--table", help="the landed table whose key names subjects (default: found)")
    x.set_defaults(func=cmd_export)
    y = ssub.add_parser(
        "erasures",
        help="list the erasures recorded in ops.erasures; --pending: the unfinished ones",
        description="List the right-to-erasure log (keyed subject references, never ids): "
        "when, by whom, why, rows removed, complete or not. An erasure interrupted before its "
        "record was complete is listed as PENDING: run the same `hortus erase` again to "
        "finish it. Needs read or erase on ops.erasures.",
    )
    y.add_argument("--pending", action="store_true", help="only the unfinished erasures")
    y.add_argument("--json", action="store_true")
    y.set_defaults(func=cmd_erasures)
