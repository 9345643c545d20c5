"""`hortus access ...` and `hortus audit ...`: explain decisions, re-identify, check the log.

- ``hortus access check USER ACTION OBJECT``: the decision and the grant that
  allowed it (or what is missing); for a read of a catalogued table also the
  masked columns and the row filter.  Exit 0 allowed, 1 denied.
- ``hortus access reidentify TABLE COLUMN TOKEN...``: raw values behind tokens
  (needs the `reidentify` grant; audited).
- ``hortus audit verify``: check the signed hash chain and the latest anchor.  Exit 0
  intact, 1 broken (the message names the first broken record and why).
- ``hortus audit writer --socket PATH --key-dir DIR``: the audit writer process that
  holds the signing key (run it as its own OS user; users set HORTUS_AUDIT_SOCKET).
- ``hortus audit rotate-key``: a new audit signing key version (resumes an interrupted one).
- ``hortus audit show [--denied] [--user U] [--json]``: the records, through the
  table API, so the viewer needs `read` on ops.audit_log and is audited.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

from hortus.config import Paths
from hortus.errors import HortusError

AUDIT_TABLE = "ops.audit_log"


def _paths(args: argparse.Namespace) -> Paths:
    return Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()


# -------------------------------------------------------------------- access
def cmd_check(args: argparse.Namespace) -> int:
    from hortus.governance.access import Policy
    from hortus.lakehouse.catalog import Catalog
    from hortus.lakehouse.tables import read_contract

    paths = _paths(args)
    policy = Policy.for_project(paths.policy)
    decision = policy.decide(args.user, args.action, args.object)
    out = {
        "allowed": decision.allowed,
        "user": decision.user,
        "action": decision.action,
        "object": decision.object,
        "groups": list(decision.groups),
        "grant": decision.grant,
        "missing": decision.missing,
        "policy": policy.source,
        "policy_version": decision.policy_version,
    }
    lines = [decision.explain()]
    catalog = Catalog.load()
    if decision.allowed and args.action == "read" and args.object in catalog.names():
        contract = read_contract(catalog, args.object)  # classified as stored
        plan = policy.read_plan(args.user, args.object, None, contract)
        out["masked"] = list(plan.masked)
        out["row_filter"] = list(plan.filters) or "all rows"
        lines.append(f"  masked columns: {', '.join(plan.masked) or 'none'}")
        rows = " OR ".join(plan.filters) if plan.filters else "all rows"
        lines.append(f"  rows seen: {rows}")
    print(json.dumps(out, indent=2) if args.json else "\n".join(lines))
    return 0 if decision.allowed else 1


def cmd_reidentify(args: argparse.Namespace) -> int:
    from hortus.lakehouse.tables import Lakehouse

    with Lakehouse.open(_paths(args).root, stage="cli") as lh:
        found = lh.reidentify(args.table, args.column, args.tokens)
    if args.json:
        print(json.dumps(found.to_dicts(), indent=2))
    else:
        for token, value in found.iter_rows():
            print(f"{token}  {value if value is not None else '(no raw value found)'}")
    return 0 if found["value"].is_not_null().all() else 1


# --------------------------------------------------------------------- audit
def cmd_verify(args: argparse.Namespace) -> int:
    from hortus.governance.audit import AuditLog, default_path
    from hortus.lakehouse.tables import Lakehouse

    paths = _paths(args)
    anchor = None
    if args.anchor:
        seq, _, digest = args.anchor.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise HortusError(
                f"--anchor must look like SEQ:HASH (64 hex digits), got {args.anchor!r}"
            )
        anchor = (int(seq), digest)
    # verifying reads the whole log: the same grant as reading it, and audited (the
    # record is written first, so the check covers it).  A denial is refused as always;
    # an allowed check whose record the log refuses (e.g. the writer will not chain onto
    # a forged tail) still runs, so it can say which record is broken, and exits 1.
    from hortus.governance.audit import AuditError

    lh = Lakehouse.open(paths.root, stage="cli")
    unlogged = None
    if not lh.policy.decide(lh.user, "read", AUDIT_TABLE).allowed:
        lh.authorize("read", AUDIT_TABLE, detail="audit verify")  # records and raises
    try:
        lh.authorize("read", AUDIT_TABLE, detail="audit verify")
    except AuditError as exc:
        unlogged = exc
    log = AuditLog.open(default_path(paths), secrets_dir=paths.secrets, signing=False)
    result = log.verify(anchor=anchor, anchors=not args.no_anchors)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "checked": result.checked,
                    "broken_at": result.broken_at,
                    "reason": result.reason,
                    "head": list(result.head) if result.head else None,
                    "path": str(log.path),
                },
                indent=2,
            )
        )
    else:
        print(f"{log.path}: {result}")
        if result.ok and result.head:
            seq, digest = result.head
            print(f"  head {seq}:{digest}  (checked against {log.trust.anchors_path})")
    if unlogged is not None:
        print(f"hortus: this verification could not be logged: {unlogged}", file=sys.stderr)
    return 0 if result.ok and unlogged is None else 1


def _key_dir(args: argparse.Namespace, paths: Paths) -> Path:
    from hortus.governance.audit import SIGNING_DIR

    return Path(args.key_dir) if args.key_dir else paths.secrets / SIGNING_DIR


def cmd_writer(args: argparse.Namespace) -> int:
    from hortus.governance._audit_keys import KeyStore
    from hortus.governance._audit_writer import (
        load_identities,
        load_settings,
        prepare,
        serve,
    )
    from hortus.governance.audit import AuditLog, default_path

    paths = _paths(args)
    settings = load_settings(paths.root)
    sock = args.socket or settings.socket
    if not sock:
        print(
            "hortus: audit writer: no socket: give --socket PATH or set audit.socket in "
            f"{paths.root / 'params.yaml'}",
            file=sys.stderr,
        )
        return 2
    identities = load_identities(Path(args.identities)) if args.identities else settings.identities
    log = AuditLog(default_path(paths), None, key_dir=_key_dir(args, paths), socket=None)
    key_id = prepare(log, KeyStore(log.key_dir))

    def ready(path: str) -> None:
        who = f"; identity map: {len(identities)} OS user(s)" if identities is not None else ""
        print(
            f"audit writer: {log.path} signed with {key_id}, listening on {path}{who}", flush=True
        )

    serve(log, sock, group=args.group, ready=ready, identities=identities)
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    from hortus.governance._audit_keys import KeyStore, Signer
    from hortus.governance.audit import KEY_ENV, KEY_FILE, AuditLog, default_path
    from hortus.lakehouse.keys import read_key

    paths = _paths(args)
    store = KeyStore(_key_dir(args, paths))
    previous = Signer(
        KeyStore(Path(args.from_key_dir)) if args.from_key_dir else store,
        read_key(KEY_ENV, paths.secrets, KEY_FILE),
    )
    log = AuditLog(default_path(paths), previous.secret, key_dir=store.dir, socket=None)
    out = log.rotate_key(store, previous=previous)
    if args.json:
        print(json.dumps(out | {"key_dir": str(store.dir)}, indent=2))
    else:
        verb = "resumed and finished" if out["resumed"] else "rotated"
        print(f"audit key {verb}: {out['from'] or '(already recorded)'} -> {out['to']}")
        print(f"  private key in {store.dir} (mode 0600); public key in {log.trust.dir / 'keys'}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from hortus.lakehouse.tables import Lakehouse

    with Lakehouse.open(_paths(args).root, stage="cli") as lh:
        if not lh.exists(AUDIT_TABLE):
            lh.authorize("read", AUDIT_TABLE, detail="audit show (no log yet)")
            print(f"no audit records yet ({lh.path(AUDIT_TABLE)})")
            return 0
        lf = lh.scan(AUDIT_TABLE).sort("seq")
    if args.denied:
        lf = lf.filter(pl.col("outcome") == "denied")
    if args.user:
        lf = lf.filter(pl.col("user") == args.user)
    rows = lf.tail(args.limit).collect() if args.limit else lf.collect()
    if args.json:
        print(
            json.dumps(
                rows.drop("prev_hash", "hash", "sig", strict=False).to_dicts(),
                indent=2,
                default=str,
            )
        )
        return 0
    for r in rows.iter_rows(named=True):
        ts = f"{r['ts']:%Y-%m-%d %H:%M:%S}" if r["ts"] is not None else "-"
        who = f"{r['user']} ({r['os_user']})" if r.get("os_user") else r["user"]
        print(
            f"{r['seq']:>6} {ts} {who:<10} {r['outcome']:<7} {r['action']:<13} "
            f"{r['object']:<28} {r['detail']}"
        )
    print(f"{rows.height} record(s)")
    return 0


# -------------------------------------------------------------------- parser
def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `access` and `audit` commands to the `hortus` parser."""
    from hortus.governance.access import ACTIONS

    a = sub.add_parser(
        "access",
        help="explain access decisions; re-identify tokens",
        description="Access policy (access_policy.yaml at the project root).",
    )
    asub = a.add_subparsers(dest="access_action", required=True, metavar="ACTION")
    c = asub.add_parser(
        "check",
        help="explain whether USER may do ACTION to OBJECT (exit 0 allowed, 1 denied)",
        description="Explain the decision of the project's policy: the user's groups, the "
        "grant that allows it or what is missing, and the policy version; for a read of a "
        "catalogued table also the masked columns and the rows seen.  Exit 0 when allowed, "
        "1 when denied.",
    )
    c.add_argument("user", help="identity, e.g. alex (HORTUS_USER of that person)")
    c.add_argument("action", choices=list(ACTIONS), help="action: " + ", ".join(ACTIONS))
    c.add_argument(
        "object",
        help="table (silver.customers), column (silver.customers.email) or model name (churn)",
    )
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_check)

    r = asub.add_parser(
        "reidentify",
        help="show the raw values behind tokens of a column (needs the reidentify grant)",
        description="Look tokens of a tokenised column (e.g. silver.customers email) up in the "
        "raw table of the restricted zone.  Needs the `reidentify` grant on TABLE.COLUMN and "
        "read on the bronze table; audited.  Exit 1 if a token has no raw value.",
    )
    r.add_argument("table", help="silver table, e.g. silver.customers")
    r.add_argument("column", help="tokenised column, e.g. email")
    r.add_argument("tokens", nargs="+", metavar="TOKEN", help="tokens, tok_ + 24 hex digits")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_reidentify)

    au = sub.add_parser(
        "audit",
        help="verify or show the tamper-evident access audit log; run its writer",
        description="The access audit log ops.audit_log (signed hash chain).",
    )
    ausub = au.add_subparsers(dest="audit_action", required=True, metavar="ACTION")
    v = ausub.add_parser(
        "verify",
        help="check the hash chain (exit 0 intact, 1 broken, naming where)",
        description="Recompute every record's hash, check the Ed25519 signature of each "
        "commit's chain head against the public key of its key version, the seq and "
        "prev_hash links, and the latest "
        "signed anchor (so a cut tail fails).  Exit 0 when intact, 1 when broken: the "
        "message names the first broken record (seq) and why (edited, deleted, "
        "reordered, signed by an unknown key, truncated).  Needs read on ops.audit_log, "
        "no private key.",
    )
    v.add_argument(
        "--anchor",
        help="SEQ:HASH of an earlier head kept elsewhere (checked besides the latest anchor)",
    )
    v.add_argument(
        "--no-anchors",
        action="store_true",
        help="do not check the latest anchor of <log>.trust/anchors.jsonl (chain only)",
    )
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify)

    w = ausub.add_parser(
        "writer",
        help="run the audit writer: hold the signing key, append records sent over a socket",
        description="Run as the audit writer's own OS user.  Holds the Ed25519 signing key "
        "in --key-dir (mode 0700, key files 0600; a new key is made for a log that has no "
        "signed record yet) and appends the records other hortus processes send over the "
        "Unix socket --socket (mode 0660; --group gives it to the hortus users' group).  "
        "Users set HORTUS_AUDIT_SOCKET to that path; without it each process signs itself "
        "(single-user mode).  Stops on SIGTERM or Ctrl-C.",
    )
    w.add_argument(
        "--socket", help="path of the Unix socket to listen on (default: params.yaml audit.socket)"
    )
    w.add_argument(
        "--identities",
        help="YAML file mapping OS user -> hortus users it may record as ('*': any); "
        "default: params.yaml audit.identities (none: any claimed user is recorded)",
    )
    w.add_argument("--key-dir", required=True, help="private key folder of the writer")
    w.add_argument("--group", help="group that may write to the socket (the hortus users)")
    w.set_defaults(func=cmd_writer)

    rk = ausub.add_parser(
        "rotate-key",
        help="make a new audit signing key version (writer side; resumes an interrupted one)",
        description="Generate a new Ed25519 key in --key-dir, append a key_rotation record "
        "signed by the active key that names the new public key (and is signed by it "
        "too), then make the new key current.  Records before and after verify against "
        "their own key version.  Rerun after an interruption: the pending key is reused.  "
        "--from-key-dir: the folder holding the active key when it differs (a hand-over "
        "from single-user mode to an audit writer).  Stop the writer or run this as its user.",
    )
    rk.add_argument(
        "--key-dir", help="folder of the new key (default .hortus/secrets/audit_signing)"
    )
    rk.add_argument("--from-key-dir", help="folder holding the active key, if another")
    rk.add_argument("--json", action="store_true")
    rk.set_defaults(func=cmd_rotate_key)

    s = ausub.add_parser(
        "show",
        help="list audit records (optionally denied only, or one user)",
        description="List audit records in seq order, read through the table API (needs "
        "read on ops.audit_log; the read itself is audited).",
    )
    s.add_argument("--denied", action="store_true", help="denied attempts only")
    s.add_argument("--user", help="records of this user only")
    s.add_argument("--limit", type=int, default=0, help="only the last N records (0: all)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)
