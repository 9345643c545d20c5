"""The `hortus models` commands: list, show, approve, promote, roll back and audit versions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hortus.config import Paths

#: shown by `models list` when a version has them: ROC AUC, then each task's primary metric
KEY_METRICS = ("roc_auc", "ndcg_at_k", "f1_macro", "rmse")


def _registry(args: argparse.Namespace):
    from hortus.lakehouse.tables import Lakehouse
    from hortus.models.registry import Registry

    paths = Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()
    return Registry(Lakehouse.open(paths.root, stage="cli"), model_name(args, paths))


def model_name(args: argparse.Namespace, paths: Paths) -> str:
    """Return --model, else the default model of the project definition (hortus.yaml)."""
    from hortus.project.definition import Project

    return getattr(args, "model", None) or Project.load(paths.root).default_model


def _json(obj: object) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _metric(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------ handlers
def cmd_list(args: argparse.Namespace) -> int:
    """List the versions of a model."""
    reg = _registry(args)
    versions = reg.versions()
    rows = [
        {
            "version": mv.version,
            "created_at": mv.created_at.isoformat(),
            "author": mv.author,
            "aliases": list(mv.aliases),
            "metrics": mv.metrics,
            "git_commit": mv.receipt.get("git_commit"),
            "git_dirty": mv.receipt.get("git_dirty"),
            "artifact_sha256": mv.artifact_sha256,
            "notes": mv.notes,
        }
        for mv in versions
    ]
    if args.json:
        _json(rows)
        return 0
    if not rows:
        print(f"no versions of model {reg.name} registered yet")
        return 0
    metrics = [m for m in KEY_METRICS if any(m in r["metrics"] for r in rows)]
    gates = reg.gates()
    latest = {}  # version -> the latest gate run's verdict (gates() is oldest first)
    for g in gates.iter_rows(named=True):
        latest[g["version"]] = "passed" if g["passed"] else f"FAILED ({g['failed']})"
    head = f"{'version':>7}  {'created_at (UTC)':<19}  {'author':<12} {'aliases':<20}"
    head += "".join(f" {m:>10}" for m in metrics) + f"  {'gate':<11} {'git':<10} dirty"
    print(head)
    for r in rows:
        line = (
            f"{'v' + str(r['version']):>7}  {r['created_at'][:19].replace('T', ' '):<19}  "
            f"{r['author'][:12]:<12} {','.join(r['aliases']) or '-':<20}"
        )
        line += "".join(f" {_metric(r['metrics'].get(m, '-')):>10}" for m in metrics)
        line += f"  {latest.get(r['version'], '-'):<11}"
        line += f" {str(r['git_commit'])[:10]:<10} {'yes' if r['git_dirty'] else 'no'}"
        print(line)
    if len(rows) > 1:
        last_two = " ".join(str(r["version"]) for r in rows[-2:])
        print(f"side by side: hortus models compare {last_two}{reg._flag()}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Show one version: a summary, or everything with --full / --json."""
    reg = _registry(args)
    mv = reg.get(args.version)
    d = mv.to_dict()
    d["artifact_abspath"] = str(reg.artifact_path(mv.version))
    d["approved_by"] = reg.approvals(mv.version)["approver"].unique(maintain_order=True).to_list()
    if args.json:
        _json(d)
        return 0
    if args.full:
        print(f"model {mv.name} v{mv.version}  aliases: {', '.join(mv.aliases) or '-'}")
        print(f"  {'approved_by':<16} {', '.join(d['approved_by']) or '-'}")
        for key in ("created_at", "author", "artifact_path", "artifact_sha256", "notes"):
            print(f"  {key:<16} {d[key]}")
        for key in ("metrics", "params", "spec", "signature", "receipt"):
            body = json.dumps(d[key], indent=2, sort_keys=True, default=str)
            print(f"  {key}:")
            print("\n".join("    " + line for line in body.splitlines()))
        return 0
    _show_summary(reg, mv, d)
    return 0


def _signature_summary(signature: dict) -> str:
    """Return e.g. "50 inputs: 43 float, 7 categorical (12 nullable)"."""
    cols = signature.get("columns") or []
    kinds: dict[str, int] = {}
    for c in cols:
        kind = "categorical" if c.get("categories") else str(c.get("type"))
        kinds[kind] = kinds.get(kind, 0) + 1
    nullable = sum(1 for c in cols if c.get("nullable"))
    parts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    return f"{len(cols)} inputs: {parts} ({nullable} nullable)" if cols else "-"


def _show_summary(reg, mv, d: dict) -> None:
    """Print the summary of one version (about 30 lines)."""
    from rich.markup import escape
    from rich.table import Table

    from hortus.cli._common import console, emit

    out = console()
    flag = reg._flag()
    r = mv.receipt
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("aliases", ", ".join(mv.aliases) or "-")
    grid.add_row("created", f"{mv.created_at:%Y-%m-%d %H:%M:%S} UTC by {mv.author}")
    grid.add_row("approved by", ", ".join(d["approved_by"]) or "-")
    gates = reg.gates(mv.version)
    if gates.height:
        last = gates.row(-1, named=True)
        verdict = "[green]passed[/]" if last["passed"] else "[bold red]FAILED[/]"
        failed = f": {escape(last['failed_checks'])}" if last["failed_checks"] else ""
        grid.add_row(
            "latest gate",
            f"{verdict} ({last['checks']} checks, {last['failed']} failed{failed}) "
            f"{last['finished_at']:%Y-%m-%d %H:%M} run {last['run_id']}",
        )
    else:
        grid.add_row("latest gate", f"none (hortus gate {mv.version}{flag})")
    spec = mv.spec or {}
    if spec:
        grid.add_row(
            "task",
            f"{spec.get('task', '-')}: target {spec.get('target', '-')}, estimator "
            f"{spec.get('estimator', '-')}, {len(spec.get('features') or ())} features",
        )
    grid.add_row("signature", _signature_summary(mv.signature or {}))
    grid.add_row("artifact", f"{escape(mv.artifact_path)} (sha256 {mv.artifact_sha256[:12]})")
    dirty = " [yellow](dirty tree)[/]" if r.get("git_dirty") else ""
    grid.add_row(
        "built from", f"git {str(r.get('git_commit'))[:12]}{dirty}, data {r.get('data_md5')}"
    )
    tables = ", ".join(f"{t}@v{v}" for t, v in sorted((r.get("tables_read") or {}).items()))
    grid.add_row("tables read", tables or "-")
    if mv.notes:
        grid.add_row("notes", escape(mv.notes))
    emit(f"[bold]model {escape(mv.name)} v{mv.version}[/]", grid, out=out)

    items = sorted(mv.metrics.items())
    per_row = 4
    metrics = Table.grid(padding=(0, 1))
    for _ in range(per_row):
        metrics.add_column(style="bold", no_wrap=True)
        metrics.add_column(justify="right", no_wrap=True)
        metrics.add_column(min_width=2)
    for i in range(0, len(items), per_row):
        cells: list[str] = []
        for key, value in items[i : i + per_row]:
            cells += [key, _metric(value), ""]
        metrics.add_row(*cells)
    emit("[bold]metrics (hold-out)[/]", metrics, out=out)
    from hortus.models.compare import flatten

    params = "  ".join(f"{k}={v}" for k, v in sorted(flatten(mv.params or {}).items()))
    emit(f"[bold]params[/]  {escape(params) or '-'}", out=out)
    print(
        f"everything (signature, receipt, spec): hortus models show {mv.version}{flag} --full "
        "(or --json)"
    )


def cmd_approve(args: argparse.Namespace) -> int:
    """Approve a version as the acting user (four eyes)."""
    reg = _registry(args)
    a = reg.approve(args.version, reason=args.reason)
    flag = reg._flag()
    if not a.recorded:
        print(
            f"{reg.name} v{a.version} was already approved by {a.approver} at "
            f"{a.approved_at:%Y-%m-%d %H:%M:%S} UTC; nothing recorded"
        )
        return 0
    print(f"{reg.name} v{a.version} approved by {a.approver} (author {a.author})")
    print(
        f"next: a user with the promote grant runs `hortus models promote {a.version}{flag}` "
        "(the latest gate run of the version must have passed)"
    )
    return 0


def cmd_approvals(args: argparse.Namespace) -> int:
    """List the approvals of a model or of one version."""
    reg = _registry(args)
    rows = reg.approvals(args.version).drop("name").to_dicts()
    if args.json:
        _json({"model": reg.name, "approvals": rows})
        return 0
    which = f"v{reg.get(args.version).version}" if args.version else "any version"
    if not rows:
        print(f"no approvals of model {reg.name} ({which}) yet")
        return 0
    print(f"approvals of model {reg.name} ({which}), oldest first:")
    for r in rows:
        reason = f"  reason: {r['reason']}" if r["reason"] else ""
        print(
            f"  v{r['version']:<5} {r['approved_at']:%Y-%m-%d %H:%M:%S}  by {r['approver']:<12} "
            f"author {r['author']:<12} policy {r['policy_version'][:12]}{reason}"
        )
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Point an alias at a version (or, with --check, say what is missing)."""
    reg = _registry(args)
    if args.check:
        ok, why = reg.promote_allowed(args.version, alias=args.alias)
        print(f"{'ALLOWED' if ok else 'NOT YET'}: {why}")
        return 0 if ok else 1
    before = reg.aliases().get(args.alias)
    mv = reg.promote(args.version, alias=args.alias, reason=args.reason)
    if before == mv.version:
        print(f"{reg.name} {args.alias} already points to v{mv.version}; nothing recorded")
    else:
        last = reg.history(args.alias).row(-1, named=True)
        held = last["previous_version"]  # what the move replaced (compare-and-set), not `before`
        was = f"v{held}" if held else "unset"
        print(f"{reg.name} {args.alias}: {was} -> v{mv.version} (promote)")
        if last["approved_by"]:
            print(f"  approved by {last['approved_by']}; gate run {last['gate_run_id']} passed")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Point an alias back at its previous holder."""
    reg = _registry(args)
    before = reg.aliases().get(args.alias)
    mv = reg.rollback(alias=args.alias, reason=args.reason)
    was = f"v{before}" if before else "unset"
    print(f"{reg.name} {args.alias}: {was} -> v{mv.version} (rollback)")
    return 0


def cmd_aliases(args: argparse.Namespace) -> int:
    """Show the current aliases and the alias history."""
    reg = _registry(args)
    current = reg.aliases()
    history = reg.history().drop("name").to_dicts()
    if args.json:
        _json({"model": reg.name, "current": current, "history": history})
        return 0
    print(f"model {reg.name} aliases:")
    for alias, v in current.items():
        print(f"  {alias:<16} v{v}")
    if not current:
        print("  (none set)")
    print("history (oldest first):")
    for h in history:
        ver = f"v{h['version']}" if h["version"] is not None else "none"
        prev = f"v{h['previous_version']}" if h["previous_version"] is not None else "none"
        reason = f"  reason: {h['reason']}" if h["reason"] else ""
        if h.get("approved_by"):
            reason += f"  approved by {h['approved_by']}, gate run {h['gate_run_id']}"
        print(
            f"  #{h['seq']:<4} {h['at']:%Y-%m-%d %H:%M:%S} {h['action']:<8} {h['alias']:<12} "
            f"{prev} -> {ver}  by {h['actor']}{reason}"
        )
    if not history:
        print("  (no events)")
    return 0


# -------------------------------------------------------------------- parser
def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `models` command and its subcommands to the `hortus` subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--model", metavar="NAME", help="model name (default: the project's default_model)"
    )
    m = sub.add_parser(
        "models",
        help="list, show, approve, promote and roll back registered model versions",
        description="The model registry (ops.model_versions, ops.model_aliases, "
        "ops.model_approvals): versions with their build receipts, four-eyes approvals, "
        "and aliases such as champion and challenger.  Promotion to champion needs the "
        "promote grant, a passed gate and an approval by an approver who is not the author.",
    )
    msub = m.add_subparsers(dest="action", required=True, metavar="ACTION")

    s = msub.add_parser(
        "list",
        parents=[common],
        help="list the registered versions",
        description="List the versions of a model: author, aliases, key metrics, git commit.",
    )
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_list)

    s = msub.add_parser(
        "show",
        parents=[common],
        help="show one version with its receipt",
        description="Show a summary of one version: aliases, approvals, latest gate, "
        "signature, artifact, what it was built from, metrics and params.  --full or "
        "--json print everything: the whole signature and build receipt (git commit, "
        "dvc.lock, data.dvc and uv.lock digests, tables read).",
    )
    s.add_argument("version", help="version number (3 or v3) or alias (champion)")
    s.add_argument("--json", action="store_true", help="print JSON (everything)")
    s.add_argument(
        "--full",
        action="store_true",
        help="print everything: metrics, params, spec, the whole signature and the receipt",
    )
    s.set_defaults(func=cmd_show)

    s = msub.add_parser(
        "approve",
        parents=[common],
        help="approve a version (four eyes: never your own)",
        description="Approve a version as the acting user (HORTUS_USER): needs the "
        "approve grant, and the approver must not be the version's author.  The approval "
        "goes to ops.model_approvals and the audit log; approving twice records nothing.",
    )
    s.add_argument("version", help="version number (3 or v3) or alias (challenger)")
    s.add_argument("--reason", default="", help="why, kept with the approval")
    s.set_defaults(func=cmd_approve)

    s = msub.add_parser(
        "approvals",
        parents=[common],
        help="list approvals of the model or of one version",
        description="List the four-eyes approvals (ops.model_approvals): version, "
        "approver, author, time, policy version and reason.",
    )
    s.add_argument("version", nargs="?", help="only this version (3, v3 or an alias)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_approvals)

    s = msub.add_parser(
        "promote",
        parents=[common],
        help="point an alias at a version",
        description="Point an alias (default: champion) at a version; the previous "
        "holder is recorded so the move can be rolled back.  Needs the promote grant; "
        "champion also needs the version's latest gate run passed and an approval by an "
        "approver who is not its author (the error says which is missing).",
    )
    s.add_argument("version", help="version number (3 or v3) or alias (challenger)")
    s.add_argument("--alias", default="champion", help="alias to move (default: champion)")
    s.add_argument("--reason", default="", help="why, kept in the alias history")
    s.add_argument(
        "--check",
        action="store_true",
        help="only say whether the promotion would be allowed now and what is missing "
        "(exit 0 if allowed, 1 if not); moves nothing",
    )
    s.set_defaults(func=cmd_promote)

    s = msub.add_parser(
        "rollback",
        parents=[common],
        help="point an alias back at its previous version",
        description="Point an alias (default: champion) back at the version it held "
        "before; a second rollback goes one further back.  Needs the promote grant, "
        "no new gate or approval.",
    )
    s.add_argument("--alias", default="champion", help="alias to move (default: champion)")
    s.add_argument("--reason", default="", help="why, kept in the alias history")
    s.set_defaults(func=cmd_rollback)

    s = msub.add_parser(
        "aliases",
        parents=[common],
        help="show current aliases and their history",
        description="Show where each alias points now and every alias event "
        "(promote, rollback, register, clear) with actor, reason, and for promotions to "
        "champion the approvers and gate run relied on.",
    )
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_aliases)

    from hortus.cli.compare import add_parser as _compare

    _compare(msub, common)
