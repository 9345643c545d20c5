"""The `hortus` command.  Every subcommand has --help.

User mistakes (bad paths, unknown tables, missing keys) print one clear line
and exit with status 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hortus.cli._common import (
    _model,
    _params,
    _paths,
    _print,
    _project,
    _simulator,
    _stage,
    add_executor_options,
    add_model_option,
    console,
    emit,
    shorten,
    status,
)
from hortus.config import Paths
from hortus.errors import HortusError


# ------------------------------------------------------------------ simulate
def cmd_simulate(args: argparse.Namespace) -> int:
    paths = _paths(args)
    sim = _simulator(paths)
    if args.more_days is not None:
        return _simulate_more(args, paths, sim)
    SimConfig, simulate = sim.SimConfig, sim.simulate
    base = _params(args, paths, "simulate") if args.from_params else {}
    fields = {k: v for k, v in base.items()}
    for name in ("seed", "start", "days", "users", "fault_rate", "drift_start"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    fields |= _settings(args.sets)
    for name in ("drift", "faults"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = [v for v in value.split(",") if v]
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    try:
        config = SimConfig(**fields)
    except TypeError as exc:
        raise HortusError(f"simulate: {exc}") from None
    out = Path(args.out) if args.out else paths.data
    manifest = simulate(config, out)
    files = manifest.get("files", [])
    print(f"wrote {len(files)} landing files to {out}")
    if not args.quiet:
        print("pin this snapshot with:  dvc add data && git add data.dvc && git commit")
    return 0


def _settings(pairs: list[str] | None) -> dict:
    """Parse `--set KEY=VALUE` pairs (values are YAML scalars: 5, 0.1, true, text)."""
    import yaml

    out = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise HortusError(f"simulate --set {pair!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _simulate_more(args: argparse.Namespace, paths, sim) -> int:
    """`hortus simulate --more-days N`: continue the export in --out (default data/)."""
    simulate_more = getattr(sim, "simulate_more", None)
    if simulate_more is None:
        raise HortusError(
            f"simulate --more-days: simulator {sim.__name__} cannot continue an export"
        )
    fixed = ("seed", "start", "days", "users")
    given = [f"--{n}" for n in fixed if getattr(args, n) is not None]
    given += [f"--set {s}" for s in args.sets or ()]
    given += ["--from-params"] if args.from_params else []
    if given:
        raise HortusError(
            f"simulate --more-days continues the export's own config; drop {', '.join(given)}"
        )
    out = Path(args.out) if args.out else paths.data

    def _split(value: str | None) -> tuple[str, ...] | None:
        return None if value is None else tuple(v for v in value.split(",") if v)

    # closed loop: the simulator's buyers see what was served or logged (unless --open-loop)
    served, reader = None, getattr(sim, "served_recommendations", None)
    if reader is not None and not args.open_loop and paths.lakehouse.is_dir():
        from hortus.lakehouse.tables import Lakehouse

        with Lakehouse.open(paths.root, stage="simulate") as lh:
            served = reader(lh)
            if served is None:
                print(f"open loop: no recommendations served, or none readable by {lh.user}")
    try:
        manifest = simulate_more(
            out,
            args.more_days,
            drift=_split(args.drift),
            drift_start=args.drift_start,
            faults=_split(args.faults),
            fault_rate=args.fault_rate,
            **({"served": served} if served is not None else {}),
        )
    except (ValueError, TypeError) as exc:
        raise HortusError(f"simulate --more-days: {exc}") from None
    last = manifest["continued"][-1]
    print(
        f"continued the export in {out} from {last['from']} to {manifest['window']['end']} "
        f"({args.more_days} day(s), drift {last['config']['drift'] or 'none'}, "
        f"faults {last['config']['faults'] or 'none'}); {len(manifest['files'])} files in all"
    )
    if "closed_loop" in last:
        loop = last["closed_loop"]
        print(f"closed loop: {loop['buyers']} buyer(s) saw {loop['lists']} served list(s)")
    if not args.quiet:
        print("land them with:  dvc repro  (or let `hortus monitor watch` pick them up)")
    return 0


# ------------------------------------------------------------------- catalog
def cmd_catalog_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from hortus.lakehouse.tables import Lakehouse

    lh = Lakehouse.open(_paths(args).root, stage="cli")
    rows = []
    from hortus.cli.catalog_search import listed  # --layer/--owner/--tag/--pii

    for c in listed(lh.catalog, args):
        built = lh.exists(c.full_name)
        rows.append(
            {
                "table": c.full_name,
                "owner": c.owner,
                "built": built,
                "version": lh.version(c.full_name) if built else None,
                "description": c.description,
            }
        )
    if args.json:
        _print(rows, True)
        return 0
    out = console()
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("table", no_wrap=True)
    table.add_column("version", justify="right", no_wrap=True)
    table.add_column("owner", no_wrap=True)
    table.add_column("description", overflow="ellipsis" if not args.wrap else "fold")
    used = sum(max([len(k)] + [len(str(r[k] if r[k] is not None else "-")) for r in rows]) + 2
               for k in ("table", "version", "owner"))  # fmt: skip
    width = max(30, (out.width or 120) - used - 1)
    for r in rows:
        v = "-" if r["version"] is None else str(r["version"])
        desc = r["description"] if args.wrap else shorten(r["description"], width)
        table.add_row(r["table"], v, r["owner"], desc)
    emit(table, out=out)
    return 0


def cmd_catalog_show(args: argparse.Namespace) -> int:
    import polars as pl
    from rich.markup import escape
    from rich.table import Table

    from hortus.config import RESTRICTED_LAYERS
    from hortus.lakehouse.silver import stored_contract
    from hortus.lakehouse.tables import Lakehouse
    from hortus.publishing.docs import _pii, _rules

    lh = Lakehouse.open(_paths(args).root, stage="cli")
    contract = lh.catalog.get(args.table)
    if args.json:
        out = contract.to_dict()
        if lh.exists(args.table):
            out["history"] = lh.history(args.table).to_dicts()
        _print(out, True)
        return 0
    # read (access-checked) before printing anything: a denial prints no half page
    history = lh.history(args.table) if lh.exists(args.table) else None
    out = console()
    shown = stored_contract(contract) if contract.layer == "silver" else contract
    meta = Table.grid(padding=(0, 2))
    meta.add_column(style="bold", no_wrap=True)
    meta.add_column()
    zone = "restricted" if contract.layer in RESTRICTED_LAYERS else "governed"
    meta.add_row("zone", zone)
    meta.add_row("owner", contract.owner)
    meta.add_row("primary key", ", ".join(contract.primary_key) or "-")
    sla = contract.freshness_sla_hours
    meta.add_row("freshness SLA", f"{sla} h" if sla else "-")
    if contract.landing:
        meta.add_row("landing", f"data/{contract.landing.glob} ({contract.landing.format})")
    if history is not None and history.height:
        rows = lh.scan(args.table).select(pl.len()).collect().item()
        last = history.row(-1, named=True)
        inputs = ", ".join(json.loads(last["inputs"] or "{}")) or "-"
        meta.add_row("rows", f"{rows:,}")
        meta.add_row("versions", str(history.height))
        meta.add_row("written by", f"stage {last['stage']} from {inputs}")
    else:
        meta.add_row("rows", "not built yet")
    emit(f"[bold]{contract.full_name}[/]  {escape(contract.description or '')}", meta, out=out)
    cols = Table(title="columns", title_justify="left", header_style="bold", show_lines=False)
    for name in ("column", "type", "rules", "PII", "description"):
        cols.add_column(name, overflow="fold", no_wrap=name in ("column", "type"))
    for c in shown.columns:
        sens = " (sensitive attribute)" if c.sensitive else ""
        cols.add_row(
            c.name,
            c.type,
            escape(_rules(c).replace("\\|", "|").replace("`", "")),
            _pii(c, contract.layer),
            escape(c.description + sens),
        )
    emit(cols, out=out)
    if history is not None and history.height:
        lin = Table(title="lineage (one row per Delta version)", title_justify="left",
                    header_style="bold")  # fmt: skip
        for name in ("version", "time (UTC)", "operation", "rows added", "stage", "inputs",
                     "git", "user"):  # fmt: skip
            lin.add_column(
                name, overflow="fold", justify="right" if name == "rows added" else "left"
            )
        tail = history.tail(args.limit) if args.limit else history
        if tail.height < history.height:
            out.print(f"(the last {tail.height} of {history.height} versions; --limit 0 for all)")
        for h in tail.iter_rows(named=True):
            lin.add_row(
                f"v{h['version']}",
                f"{h['timestamp']:%Y-%m-%d %H:%M:%S}",
                str(h["operation"]),
                f"{h['rows_added'] or 0:,}",
                str(h["stage"]),
                escape(str(h["inputs"])),
                str(h["git_commit"])[:10],
                str(h["user"]),
            )
        emit(lin, out=out)
    return 0


#: the rules silver validation records in quarantine.rows (its contract lists them too)
QUARANTINE_RULES = (
    "json", "csv", "required", "type", "max_length", "min", "max", "future", "allowed",
    "pattern", "encoding", "duplicate", "missing_column",
)  # fmt: skip


def _quarantine_rules(lh) -> set[str]:
    """Return the known quarantine rules: these, and those the rule column's description
    lists ("First rule broken: json, csv (a malformed CSV row), required, ...")."""
    import re

    from hortus.lakehouse.silver import QUARANTINE

    rules = set(QUARANTINE_RULES)
    try:
        column = next(c for c in lh.catalog.get(QUARANTINE).columns if c.name == "rule")
        listed = column.description.split(":", 1)[1]
    except (StopIteration, IndexError, HortusError):
        return rules
    for part in re.sub(r"\([^)]*\)", "", listed).split(","):
        word = part.strip().rstrip(".")
        if re.fullmatch(r"[a-z_]+", word):
            rules.add(word)
    return rules


def _check_choice(what: str, value: str, valid: list[str], option: str) -> None:
    """Refuse a value that is not one of `valid`, listing the valid ones (exit 2)."""
    if value not in valid:
        import difflib

        close = difflib.get_close_matches(value, valid, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise HortusError(
            f"quarantine {option} {value!r}: unknown {what}; {guess}valid: {', '.join(valid)}"
        )


def cmd_quarantine(args: argparse.Namespace) -> int:
    import polars as pl

    from hortus.lakehouse.silver import QUARANTINE
    from hortus.lakehouse.tables import Lakehouse

    lh = Lakehouse.open(_paths(args).root, stage="cli")
    silver = sorted(c.full_name for c in lh.catalog if c.layer == "silver")
    if args.table:
        _check_choice("table", args.table, silver, "--table")
    if args.column:
        tables = [args.table] if args.table else silver
        columns = sorted({c.name for t in tables for c in lh.catalog.get(t).columns})
        _check_choice("column" + (f" of {args.table}" if args.table else ""), args.column,
                      columns, "--column")  # fmt: skip
    lf = lh.scan(QUARANTINE)
    if args.rule:
        present = lf.select(pl.col("rule").unique()).collect()["rule"].to_list()
        _check_choice("rule", args.rule, sorted(_quarantine_rules(lh) | set(present)), "--rule")
    if args.table:
        lf = lf.filter(pl.col("table") == args.table)
    if args.rule:
        lf = lf.filter(pl.col("rule") == args.rule)
    if args.column:
        lf = lf.filter(pl.col("column") == args.column)
    rows = lf.sort("source_file", "line").head(args.limit).collect()
    for r in rows.iter_rows(named=True):
        print(
            f"{r['source_file']}:{r['line']}: table {r['table']} column {r['column'] or '-'} "
            f"rule {r['rule']}: {r['message']}"
        )
    if not rows.height:
        given = [f"{k} {v}" for k, v in (("table", args.table), ("rule", args.rule),
                                          ("column", args.column)) if v]  # fmt: skip
        print(f"no quarantined rows{' for ' + ', '.join(given) if given else ''}",
              file=sys.stderr)  # fmt: skip
    return 0


# ---------------------------------------------------------------------- data
def cmd_data(args: argparse.Namespace) -> int:
    from hortus.lakehouse import snapshot

    paths = _paths(args)
    how = "verified"
    if args.action == "restore":
        how = {
            "present": "already present",
            "dvc-cache": "checked out from the DVC cache",
            "rebuilt": "rebuilt by the project's deterministic simulator (params.yaml simulate)",
        }[snapshot.restore(paths, _simulate_params(args, paths))]
    snapshot.verify(paths)
    print(f"data/ matches data.dvc ({snapshot.pinned_md5(paths)}): {how}")
    return 0


def _simulate_params(args: argparse.Namespace, paths: Paths) -> dict:
    """Return params.yaml's `simulate` section; {} for a project without a simulator.

    A project without one restores its snapshot from DVC only, and `snapshot.restore`
    says so if that fails.
    """
    try:
        return _params(args, paths, "simulate")
    except HortusError:
        if _project(paths).simulator:
            raise
        return {}


def cmd_key(args: argparse.Namespace) -> int:
    from hortus.governance.audit import write_demo_audit_key
    from hortus.lakehouse.pii import write_demo_key

    secrets = _paths(args).secrets
    path = write_demo_key(secrets)
    print(f"PII key file: {path} (the demo key is for the demo only)")
    audit = write_demo_audit_key(secrets)
    print(f"audit key file: {audit} (the demo key is for the demo only)")
    return 0


# -------------------------------------------------------------------- parser
def cmd_reproduce(args: argparse.Namespace) -> int:
    from hortus.models.reproduce import reproduce

    paths = _paths(args)
    keep = Path(args.keep) if args.keep else None
    with status(f"hortus reproduce {args.version}: clone, restore data, dvc repro train"):
        result = reproduce(paths, args.version, keep=keep, model=_model(args, paths))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        print(f"model v{result.version} rebuilt from commit {result.git_commit[:12]}: "
              f"{result.verdict.upper()}")  # fmt: skip
        print(f"  artifact sha256 registered {result.expected_sha256}")
        print(f"                  rebuilt    {result.rebuilt_sha256}")
        print(f"  data md5        pinned     {result.expected_data_md5}")
        print(f"                  rebuilt    {result.rebuilt_data_md5}")
        for table, pair in result.tables.items():
            print(f"  {table:<15} registered {pair['registered']}")
            print(f"  {'':<15} rebuilt    {pair['rebuilt']}")
        print(f"  metrics         {'identical' if not result.metrics_differ else 'DIFFERENT'}")
        for n in result.notes:
            print(f"  note: {n}")
    return 0 if result.identical else 1


def _print_gate(name: str, summary: dict) -> None:
    """Print one model's gate result: verdict, failed checks, promotion."""
    verdict = "PASSED" if summary["passed"] else "FAILED"
    print(f"gate {name} v{summary['version']}: {verdict} ({summary['checks']} checks, "
          f"{summary['failed']} failed); report {summary['report']}")  # fmt: skip
    for line in summary["failed_checks"]:
        print(f"  {line}")
    if summary["promoted_to_champion"]:
        print(f"  v{summary['version']} is now champion (there was none)")
    elif summary.get("promotion"):
        print(f"  not promoted: {summary['promotion']}")


def cmd_gate(args: argparse.Namespace) -> int:
    from hortus.pipeline import stages

    paths = _paths(args)
    params = _params(args, paths, "gate")
    version = None if args.stage else args.version
    if version is None and not args.stage:
        raise HortusError("hortus gate: give a VERSION (3, v3, champion) or --stage")
    # a VERSION is one model's (default: the project's default model); --stage gates
    # every model this repro registered unless --model names one
    model = args.model or (None if args.stage else _project(paths).default_model)
    what = f"hortus gate {model or 'every model'}" + (f" v{version}" if version else "")
    if args.stage:
        from hortus.monitoring.runlog import record_run

        with record_run(paths, "gate"), status(f"{what}: data and model checks"):
            summary = stages.gate(paths, params, version, model=model)
    else:
        with status(f"{what}: data and model checks"):
            summary = stages.gate(paths, params, version, model=model)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    else:
        default = model or _project(paths).default_model
        for name, result in (summary.get("models") or {default: summary}).items():
            _print_gate(name, result)
    # the DVC stage records a failed gate and goes on; `hortus gate VERSION` exits 1
    return 0 if summary["passed"] or args.stage else 1


def cmd_params_check(args: argparse.Namespace) -> int:
    """List every problem of the params file (hortus.params_schema); exit 2 if any."""
    from hortus.params_schema import file_problems

    path = Path(args.params) if args.params else _paths(args).root / "params.yaml"
    problems = file_problems(path)
    for line in problems:
        print(line)
    if not problems:
        print(f"{path}: every section matches its schema")
    return 2 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the `hortus` command."""
    p = argparse.ArgumentParser(prog="hortus", description=__doc__.splitlines()[0])
    p.add_argument("--root", help="project root (default: found from the working directory)")
    p.add_argument("--version", action="version", version=f"hortus {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from hortus.cli.models import add_parsers as _models

    _models(sub)

    s = sub.add_parser(
        "simulate",
        help="write a landing export with the project's simulator",
        description="Write a deterministic landing export (CSV and JSON lines) with the "
        "simulator the project definition names (hortus.yaml `simulator`); refused for a "
        "project without one.",
    )
    s.add_argument("--out", help="output folder (default: data/)")
    s.add_argument(
        "--from-params",
        action="store_true",
        help="start from params.yaml's simulate section (the pinned default snapshot)",
    )
    s.add_argument("--params", help="params file (default: params.yaml at the root)")
    s.add_argument("--seed", type=int)
    s.add_argument("--start", help="first day, YYYY-MM-DD")
    s.add_argument("--days", type=int)
    s.add_argument("--users", type=int)
    s.add_argument(
        "--set",
        dest="sets",
        action="append",
        metavar="KEY=VALUE",
        help="set another field of the simulator's SimConfig (repeatable; YAML scalar)",
    )
    s.add_argument("--drift", help="comma list of the simulator's drift kinds")
    s.add_argument("--drift-start", dest="drift_start", help="day the drift starts, YYYY-MM-DD")
    s.add_argument("--faults", help="comma list, e.g. malformed,duplicates,late,truncated_gzip")
    s.add_argument("--fault-rate", dest="fault_rate", type=float)
    s.add_argument(
        "--more-days",
        dest="more_days",
        type=int,
        metavar="N",
        help="continue the export in --out (default data/) by N days with the same "
        "simulated world (if the simulator can): only the new files are written; "
        "--drift/--faults apply to them; buyers see the recommendations served or logged "
        "in the lakehouse (closed loop, docs/monitoring.md)",
    )
    s.add_argument(
        "--open-loop",
        dest="open_loop",
        action="store_true",
        help="with --more-days: ignore served recommendations (the simulator's own lists)",
    )
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_simulate)

    docs = {
        "ingest": "land new files of data/ into bronze (append-only, idempotent)",
        "silver": "validate, deduplicate and tokenise bronze into silver; quarantine the rest",
        "kpis": "compute the gold daily KPI table",
        "train": "run notebooks/train.py headless (papermill) and save the model(s)",
        "register": "register the trained model(s) with their build receipts (operations plane)",
        "score": "batch-score with each model's champion; gold predictions + prediction log",
        "docs": "generate the docs (data dictionary, architecture, parameters, models) and "
        "reports/index.html",
    }
    for name, help_ in docs.items():
        s = sub.add_parser(name, help=help_, description=f"DVC stage `{name}`: {help_}.")
        s.add_argument("--params", help="params file (default: params.yaml at the root)")
        s.add_argument("--wait", type=float, metavar="SECONDS",
                       help="wait this long for another writer of the stage's tables to finish "
                       "(default 0: exit 2 naming it; env HORTUS_LEASE_WAIT)")  # fmt: skip
        if name in ("train", "register", "score"):
            add_model_option(s, every="every model of hortus.yaml")
        if name in ("ingest", "silver", "score"):
            add_executor_options(s)
        if name in ("ingest", "silver"):
            s.add_argument(
                "--rebuild",
                action="store_true",
                help="drop the stage's layers first and build them again (the DVC stage)",
            )
        s.set_defaults(func=_stage(name))

    c = sub.add_parser(
        "catalog",
        help="list tables and show contracts and lineage",
        description="Browse the catalog.",
    )
    csub = c.add_subparsers(dest="action", required=True, metavar="ACTION")
    cl = csub.add_parser("list", help="list every table", description="List every table.")
    cl.add_argument("--json", action="store_true")
    cl.add_argument("--wrap", action="store_true", help="wrap descriptions instead of shortening")
    cl.set_defaults(func=cmd_catalog_list)
    from hortus.cli.catalog_search import add_catalog_parsers, add_list_filters

    add_list_filters(cl)
    add_catalog_parsers(csub)
    cs = csub.add_parser(
        "show",
        help="show one table's contract and lineage",
        description="Show one table's contract, size and lineage.",
    )
    cs.add_argument("table", help="table name, e.g. silver.orders")
    cs.add_argument("--json", action="store_true")
    cs.add_argument(
        "--limit", type=int, default=20, help="lineage: the last N versions (0: all; default 20)"
    )
    cs.set_defaults(func=cmd_catalog_show)

    q = sub.add_parser(
        "quarantine",
        help="list quarantined rows with file, line, column, rule",
        description="List rows rejected by silver validation.",
    )
    q.add_argument("--table", help="only this silver table, e.g. silver.orders")
    q.add_argument("--rule", help="only this rule: " + ", ".join(QUARANTINE_RULES))
    q.add_argument("--column", help="only rows whose first violation is in this column")
    q.add_argument("--limit", type=int, default=50)
    q.set_defaults(func=cmd_quarantine)

    d = sub.add_parser(
        "data",
        help="verify or restore the pinned landing snapshot",
        description="verify: check data/ against data.dvc.  restore: check it out of the "
        "DVC cache, else rebuild it with the project's simulator (params.yaml simulate), "
        "and verify it.",
    )
    d.add_argument("action", choices=["verify", "restore"])
    d.add_argument("--params", help="params file (default: params.yaml at the root)")
    d.set_defaults(func=cmd_data)

    k = sub.add_parser(
        "key",
        help="write the demo-only PII and audit keys if no key exists",
        description="Write the labelled demo PII tokenisation key to "
        ".hortus/secrets/pii.key and the demo audit-log key to .hortus/secrets/audit.key, "
        "each unless one exists.",
    )
    k.set_defaults(func=cmd_key)

    gp = sub.add_parser(
        "gate",
        help="run the promotion gate (data and model tests) on a registered model version",
        description="Run the data tests (contract, PII scan, drift, skew) and model tests "
        "(segment metrics with intervals, fairness, importance, schema conflicts, efficiency "
        "against the champion, behaviour) on a registered version of --model; write "
        "reports/gate/<model>/v<N>.json "
        "and .md and record the run in ops.gate_results. Exit 0 passed, 1 failed. "
        "`hortus models promote` refuses a version whose latest gate failed.",
    )
    gp.add_argument("version", nargs="?", help="version (3, v3) or alias (challenger)")
    gp.add_argument(
        "--stage", action="store_true", help="DVC stage: gate the version in reports/register.json"
    )
    add_model_option(gp, every="the project's default_model; with --stage every model registered")
    gp.add_argument("--params", help="params file (default: params.yaml at the root)")
    gp.add_argument("--json", action="store_true")
    gp.set_defaults(func=cmd_gate)

    r = sub.add_parser(
        "reproduce",
        help="rebuild a registered model version from its receipt and compare bytes",
        description="Clone the repository at the version's git commit, obtain its pinned "
        "data, apply its params, run `dvc repro train` and compare the artifact's sha256. "
        "Exit 0 when identical, 1 when different.",
    )
    r.add_argument("version", help="version (3, v3) or alias (champion)")
    add_model_option(r)
    r.add_argument("--keep", help="keep the rebuild in this folder (default: a temp folder)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_reproduce)

    pc = sub.add_parser(
        "params",
        help="check params.yaml against the schema of each section",
        description="check: list every unknown section or key and every value of the wrong "
        "type or range in params.yaml (hortus.params_schema), with the valid names. Exit 0 "
        "when the file is valid, 2 otherwise.  Every stage checks its own section too.",
    )
    pc.add_argument("action", choices=["check"])
    pc.add_argument("--params", help="params file (default: params.yaml at the root)")
    pc.set_defaults(func=cmd_params_check)

    from hortus.cli.features import add_parsers as _features

    _features(sub)
    from hortus.cli.access import add_parsers as _access

    _access(sub)

    from hortus.cli.drift import add_parsers as _drift

    _drift(sub)
    from hortus.cli.monitor import add_parsers as _monitor

    _monitor(sub)
    from hortus.cli.notebooks import add_parsers as _notebooks

    _notebooks(sub)
    from hortus.cli.app import add_parsers as _app

    _app(sub)
    from hortus.cli.init import add_parser as _init

    _init(sub)
    from hortus.cli.serve import add_parsers as _serve

    _serve(sub)
    from hortus.cli.catalog_search import add_parsers as _lineage

    _lineage(sub)
    from hortus.cli.subject import add_parsers as _subject  # hortus erase, subject export

    _subject(sub)
    from hortus.cli.maintain import add_parsers as _maintain

    _maintain(sub)
    from hortus.cli.keys import add_parsers as _keys  # hortus keys rotate pii, keys status

    _keys(sub)
    return p


#: environment the stages need, set by the entry point unless the user set it: `dvc repro`
#: runs `hortus <stage>` without the Makefile's exports, and the train notebook's kernel
#: (papermill) inherits this process's environment
STAGE_ENV = {
    # OpenMP threads (scikit-learn's gradient boosting) sleep instead of spinning while
    # they wait: the same results, but no collapse when other processes share the cores
    # (the train stage took 365-579 s spinning against 72-105 s passive on 2 shared cores)
    "OMP_WAIT_POLICY": "PASSIVE",
}


def _version() -> str:
    """Return the installed version of the hortus package (its package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hortus")
    except PackageNotFoundError:
        return "unknown (not installed as a package)"


def _quiet_broken_pipe() -> int:
    """Stop writing after the reader of stdout went away (`hortus ... | head`): exit 0.

    stdout is pointed at /dev/null so the interpreter's last flush cannot fail again.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from hortus.governance.access import AccessDenied

    # before any command imports numpy or scikit-learn (OpenMP reads it once, at load)
    for name, value in STAGE_ENV.items():
        os.environ.setdefault(name, value)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = None
    try:
        try:
            args = build_parser().parse_args(argv)
            return args.func(args)
        finally:  # inside the try: a reader gone before the last flush is handled too
            sys.stdout.flush()
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except HortusError as exc:
        print(f"hortus: error: {exc}", file=sys.stderr)
        if isinstance(exc, AccessDenied):
            from hortus.cli._errors import denial_hint

            for line in denial_hint(exc, args, argv):
                print(line, file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
