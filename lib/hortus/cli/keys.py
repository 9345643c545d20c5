"""`hortus keys rotate pii [--resume]` and `hortus keys status`: PII key versions and rotation.

`hortus keys rotate audit [--key-dir DIR] [--from-key-dir DIR]` is `hortus audit rotate-key`
(the audit log's Ed25519 signing key, `hortus.governance.audit`), so that every key
rotation is one command family; `hortus keys status` also shows the audit key version.

See `hortus.governance.rotation` (what a rotation does, resumption, Delta history) and
`hortus.lakehouse.pii` (key versions, the keyring file).
"""

from __future__ import annotations

import argparse
import json
import sys

from hortus.cli._common import _paths


def cmd_rotate(args: argparse.Namespace) -> int:
    """Rotate the PII key: re-key every table's tokens, the online store, then switch."""
    if args.kind == "audit":  # the same as `hortus audit rotate-key`
        from hortus.cli.access import cmd_rotate_key

        return cmd_rotate_key(args)
    if args.key_dir or args.from_key_dir:
        print("hortus: --key-dir and --from-key-dir are for `keys rotate audit`", file=sys.stderr)
        return 2
    from hortus.governance import rotation
    from hortus.lakehouse.tables import Lakehouse

    lh = Lakehouse.open(_paths(args).root, stage="keys")
    try:
        result = rotation.rotate(lh, resume=args.resume)
    finally:
        lh.close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
        return 0
    what = "resumed and finished" if result.resumed else "done"
    print(f"PII key rotation {result.rotation_id} (v{result.from_version} -> "
          f"v{result.to_version}) {what}:")  # fmt: skip
    if result.key_file:
        print(f"  new key v{result.to_version} written to {result.key_file} (mode 0600)")
    for t in result.tables:
        if t.tokens:
            span = f"Delta v{t.version_before}->v{t.version_after}"
            print(f"  {t.table:<28} {t.tokens} token(s) in {t.rows} row(s) re-keyed "
                  f"({', '.join(t.columns)}) {span}")  # fmt: skip
        else:
            print(f"  {t.table:<28} already re-keyed (Delta v{t.version_after})")
    print(f"  online store: {result.online_rows} value(s) re-keyed ({result.online})")
    print(
        f"key v{result.to_version} is current; v{result.from_version} is retired. Delta "
        f"versions before each table's rotation commit still hold v{result.from_version} "
        "tokens (time travel reads them as they were) until `hortus maintain` vacuums them; "
        f"delete the retired key (unset or remove it) once that history is gone"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Show the current PII key version, a rotation in progress, and each table's version."""
    from hortus.governance import rotation
    from hortus.lakehouse.tables import Lakehouse

    lh = Lakehouse.open(_paths(args).root, stage="keys")
    try:
        st = rotation.status(lh)
    finally:
        lh.close()
    st["audit"] = _audit_key_status(_paths(args))
    if args.json:
        print(json.dumps(st, indent=2, sort_keys=True, default=str))
        return 0
    a = st["audit"]
    if a["active"] is None:
        print("audit key: none yet (no signed audit record)")
    else:
        print(f"audit key: v{len(a['versions'])} {a['active']} "
              f"(versions in chain order: {', '.join(a['versions'])})")  # fmt: skip
    retired = ", ".join(f"v{v}" for v in st["retired"]) or "none"
    print(f"PII key: current v{st['current']}; retired: {retired}")
    r = st["rotation"]
    if r:
        done = sum(1 for s in r["tables"].values() if s.get("status") == "done")
        print(f"ROTATION IN PROGRESS {r['id']} (v{r['from']} -> v{r['to']}, started "
              f"{r['started_at']} by {r['by']}): {done}/{len(r['tables'])} tables re-keyed; "
              "finish it with `hortus keys rotate pii --resume`")  # fmt: skip
    if not st["tables"]:
        print("no table holds PII tokens")
    for t in st["tables"]:
        since = (
            f" since Delta v{t['since_delta_version']}"
            if t["since_delta_version"] is not None
            else ""
        )
        cols = f" [{', '.join(t['columns'])}]" if t["columns"] else ""
        print(f"  {t['table']:<28} key v{t['key_version']}{since} ({t['state']}){cols}")
    for h in st["history"]:
        print(f"rotation {h['id']}: v{h['from']} -> v{h['to']} by {h['by']}, "
              f"{h['started_at']} .. {h['finished_at']}")  # fmt: skip
    return 0


def _audit_key_status(paths) -> dict:
    """Return the audit log's signing key versions in chain order and the active one."""
    from hortus.governance.audit import AuditLog, default_path

    versions = AuditLog(default_path(paths)).key_versions()
    return {"active": versions[-1] if versions else None, "versions": versions}


def add_parsers(sub) -> None:
    """Add `hortus keys rotate pii` and `hortus keys status`."""
    k = sub.add_parser(
        "keys",
        help="key versions and rotation (PII tokenisation key)",
        description="Versioned keys: rotate the PII tokenisation key and see which key "
        "version each table's tokens use.",
    )
    ksub = k.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = ksub.add_parser(
        "rotate",
        help="rotate a key: a new version, every stored token re-keyed (rotate_keys grant)",
        description="Create the next PII key version, re-key the tokens of every table outside "
        "the restricted zone (one Delta commit per table, from the raw values in the restricted "
        "zone; lineage and audit recorded), then the online store, then make the new version "
        "current and retire the old one. Interrupted, it is finished with --resume. Exit 0 when "
        "done, 2 when refused (no key, a rotation unfinished, tokens without raw values).",
    )
    r.add_argument(
        "kind",
        choices=["pii", "audit"],
        help="which key: pii (the tokenisation key) or audit (the audit log's signing key, "
        "as `hortus audit rotate-key`)",
    )
    r.add_argument("--key-dir", help="audit: private key folder of the signer (writer)")
    r.add_argument("--from-key-dir", help="audit: folder holding the active key, if another")
    r.add_argument("--resume", action="store_true", help="finish an interrupted rotation")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_rotate)
    s = ksub.add_parser(
        "status",
        help="current key version, a rotation in progress, each table's key version",
        description="Show the current PII key version, the retired ones, a rotation in "
        "progress and, per table holding tokens, the key version its rows use (and since "
        "which Delta version).",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)
