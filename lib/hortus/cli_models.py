"""The `hortus models` commands: list, show, promote, roll back and audit model versions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hortus.config import Paths

KEY_METRICS = ("roc_auc", "ndcg_at_k")


def _registry(args: argparse.Namespace):
    from hortus.registry import Registry
    from hortus.tables import Lakehouse

    paths = Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()
    return Registry(Lakehouse.open(paths.root, stage="cli"), args.model)


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
    head = f"{'version':>7}  {'created_at (UTC)':<19}  {'author':<12} {'aliases':<20}"
    head += "".join(f" {m:>10}" for m in metrics) + f"  {'git':<10} dirty"
    print(head)
    for r in rows:
        line = (
            f"{'v' + str(r['version']):>7}  {r['created_at'][:19].replace('T', ' '):<19}  "
            f"{r['author'][:12]:<12} {','.join(r['aliases']) or '-':<20}"
        )
        line += "".join(f" {_metric(r['metrics'].get(m, '-')):>10}" for m in metrics)
        line += f"  {str(r['git_commit'])[:10]:<10} {'yes' if r['git_dirty'] else 'no'}"
        print(line)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Show one version with its receipt."""
    reg = _registry(args)
    mv = reg.get(args.version)
    d = mv.to_dict()
    d["artifact_abspath"] = str(reg.artifact_path(mv.version))
    if args.json:
        _json(d)
        return 0
    print(f"model {mv.name} v{mv.version}  aliases: {', '.join(mv.aliases) or '-'}")
    for key in ("created_at", "author", "artifact_path", "artifact_sha256", "notes"):
        print(f"  {key:<16} {d[key]}")
    for key in ("metrics", "params", "signature", "receipt"):
        body = json.dumps(d[key], indent=2, sort_keys=True, default=str)
        print(f"  {key}:")
        print("\n".join("    " + line for line in body.splitlines()))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Point an alias at a version."""
    reg = _registry(args)
    before = reg.aliases().get(args.alias)
    mv = reg.promote(args.version, alias=args.alias, reason=args.reason)
    if before == mv.version:
        print(f"{reg.name} {args.alias} already points to v{mv.version}; nothing recorded")
    else:
        was = f"v{before}" if before else "unset"
        print(f"{reg.name} {args.alias}: {was} -> v{mv.version} (promote)")
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
    common.add_argument("--model", default="recommender", help="model name (default: recommender)")
    m = sub.add_parser(
        "models",
        help="list, show, promote and roll back registered model versions",
        description="The model registry (ops.model_versions, ops.model_aliases): versions "
        "with their build receipts, and aliases such as champion and challenger.",
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
        description="Show one version: artifact, signature, params, metrics and build "
        "receipt (git commit, dvc.lock, data.dvc and uv.lock digests, tables read).",
    )
    s.add_argument("version", help="version number (3 or v3) or alias (champion)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_show)

    s = msub.add_parser(
        "promote",
        parents=[common],
        help="point an alias at a version",
        description="Point an alias (default: champion) at a version; the previous "
        "holder is recorded so the move can be rolled back.",
    )
    s.add_argument("version", help="version number (3 or v3) or alias (challenger)")
    s.add_argument("--alias", default="champion", help="alias to move (default: champion)")
    s.add_argument("--reason", default="", help="why, kept in the alias history")
    s.set_defaults(func=cmd_promote)

    s = msub.add_parser(
        "rollback",
        parents=[common],
        help="point an alias back at its previous version",
        description="Point an alias (default: champion) back at the version it held "
        "before; a second rollback goes one further back.",
    )
    s.add_argument("--alias", default="champion", help="alias to move (default: champion)")
    s.add_argument("--reason", default="", help="why, kept in the alias history")
    s.set_defaults(func=cmd_rollback)

    s = msub.add_parser(
        "aliases",
        parents=[common],
        help="show current aliases and their history",
        description="Show where each alias points now and every alias event "
        "(promote, rollback, register, clear) with actor and reason.",
    )
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_aliases)
