"""The `hortus drift` command: compare two tables or files column by column.

Exit status 0 when nothing drifted, 1 when some column drifted, 2 on bad input.
The statistics run on the project's analytics executor like the gate's drift
(`hortus.executor.analytics`): per-column Ray tasks from `executor.drift_min_rows`
rows when the executor is Ray (params.yaml `executor`, HORTUS_EXECUTOR,
--executor / --address), in this process otherwise; the report is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import polars as pl

from hortus.cli._common import add_executor_options
from hortus.errors import HortusError, TableNotFound
from hortus.lakehouse.locate import table_at
from hortus.monitoring.drift import (
    CORRECTIONS,
    DriftConfig,
    DriftError,
    DriftReport,
    Profile,
    compare,
)

TABLE_NAME = re.compile(r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$")
FILE_SUFFIXES = {".csv", ".tsv", ".parquet", ".pq", ".json", ".npz", ".ndjson", ".jsonl"}


def _scan_table(root: Path | None, name: str, role: str) -> pl.LazyFrame:
    """Scan a catalog table through the table API (policy, masking, row filter, audit)."""
    from hortus.lakehouse.tables import Lakehouse

    try:
        return Lakehouse.open(root, stage="cli").scan(name)
    except TableNotFound as exc:
        raise DriftError(f"{role} {name!r} is not a file, and as a table: {exc}") from None


def read_input(spec: str, role: str, root: Path | None = None) -> pl.LazyFrame | Profile:
    """Open a table for drift: Delta folder, Parquet/CSV/NDJSON file, profile or catalog name.

    A name like `silver.orders` that is not a file is looked up in the project's
    catalog.  A path inside a Hortus lakehouse is read as its table through the
    table API, as the catalog name would be (a table's folder), or refused (any
    other path there, e.g. a layer folder or a table's Parquet file): see
    `hortus.lakehouse.locate.table_at`.  Elsewhere a folder holding `_delta_log` is
    a Delta table, another folder is read as its Parquet files, and a `.json` or `.npz` file
    is a saved drift profile.
    """
    path = Path(spec)
    located = table_at(path, root)  # a path inside a lakehouse: its table, or refused
    if located is not None:
        lf = _scan_table(located[0].root, located[1], role)
    elif path.is_dir():
        if (path / "_delta_log").is_dir():
            lf = pl.scan_delta(str(path))
        elif any(path.rglob("*.parquet")):
            lf = pl.scan_parquet(str(path / "**" / "*.parquet"))
        else:
            raise DriftError(
                f"{role} {path} is a folder but neither a Delta table (no _delta_log) nor a "
                "folder of Parquet files"
            )
    elif path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".json", ".npz"):  # a stored reference profile (.npz: exact, large)
            return Profile.load(path)
        if suffix in (".parquet", ".pq"):
            lf = pl.scan_parquet(path)
        elif suffix in (".csv", ".tsv"):
            lf = pl.scan_csv(
                path,
                separator="\t" if suffix == ".tsv" else ",",
                try_parse_dates=True,
                infer_schema_length=10_000,
            )
        elif suffix in (".ndjson", ".jsonl"):
            lf = pl.scan_ndjson(path, infer_schema_length=10_000)
        else:
            raise DriftError(
                f"{role} file {path}: unsupported type {suffix or '(no suffix)'}; expected "
                "a Delta folder, .parquet, .csv, .tsv, .ndjson or a drift profile (.json, .npz)"
            )
    elif TABLE_NAME.match(spec) and path.suffix.lower() not in FILE_SUFFIXES:
        lf = _scan_table(root, spec, role)
    else:
        raise DriftError(f"{role} file {path} not found")
    try:
        lf.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DriftError(f"cannot read {role} {spec}: {exc}") from None
    return lf


def load_config(path: str | None, correction: str | None) -> DriftConfig:
    """Build the config from a YAML/JSON file (its `drift` section if it has one)."""
    data: dict = {}
    if path:
        import yaml

        p = Path(path)
        if not p.is_file():
            raise DriftError(f"config file {p} not found")
        table_at(p)  # a file inside a lakehouse (e.g. a Delta log with column stats): refused
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise DriftError(f"config file {p} is not valid YAML/JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise DriftError(f"config file {p} must hold a mapping of drift settings")
        data = loaded["drift"] if isinstance(loaded.get("drift"), dict) else loaded
    if correction:
        data = {**data, "correction": correction}
    return DriftConfig.from_dict(data, source=f"config file {path}" if path else "drift options")


def summary_lines(report: DriftReport, *, show_all: bool = False) -> list[str]:
    """Return the printed summary: one line per column (and drifted segment/window rows)."""
    grouped = report.segment is not None or report.window is not None
    rows = [
        r
        for r in report.results
        if show_all or (r.segment is None and r.window_start is None) or r.drifted or r.null_drifted
    ]
    width = max([len("column"), *(len(r.column) for r in rows)])
    head = f"{'column':<{width}}"
    if grouped:
        head += f"  {'segment':<14} {'window':<19}"
    head += f"  {'statistic':<14} {'value':>10} {'p (adj.)':>10} {'threshold':>9}  drifted"
    lines = [head]
    for r in rows:
        line = f"{r.column:<{width}}"
        if grouped:
            win = "all" if r.window_start is None else str(r.window_start)[:19]
            line += f"  {(r.segment or 'all')[:14]:<14} {win:<19}"
        if r.skipped and r.statistic is None:
            note = "NULLS" if r.null_drifted else "skipped"
            line += f"  {'-':<14} {'-':>10} {'-':>10} {'-':>9}  {note}: {r.skipped}"
        else:
            p = "" if r.p_value_adjusted is None else f"{r.p_value_adjusted:.3g}"
            verdict = "YES" if r.drifted else "no"
            if r.null_drifted:
                verdict += f" + NULLS ({r.null_share_reference:.1%} -> {r.null_share_current:.1%})"
            if r.new_categories:
                verdict += f"; new: {', '.join(r.new_categories[:5])}"
            line += f"  {r.statistic:<14} {r.value:>10.4g} {p:>10} {r.threshold:>9.3g}  {verdict}"
        lines.append(line)
    for column, why in report.excluded.items():
        lines.append(f"{column:<{width}}  not compared: {why}")
    sketched = [r for r in report.overall() if not r.exact]
    if sketched:
        lines.append(
            "approximate: the reference of "
            + ", ".join(f"{r.column} (KS within ±{r.ks_error_bound:.2g})" for r in sketched)
            + " is a quantile sketch (stored profile or above exact_max_rows)"
        )
    hidden = len(report.results) - len(rows)
    if hidden:
        lines.append(f"({hidden} segment/window rows without drift not shown; --all shows them)")
    drifted = report.drifted_columns
    n = len({r.column for r in report.results})
    lines.append(
        f"drift in {len(drifted)} of {n} column(s): {', '.join(drifted)}"
        if drifted
        else f"no drift in {n} column(s)"
    )
    return lines


def model_inputs(name: str, root: Path | None) -> tuple[list[str], str | None, list[str]]:
    """Return (features, time column, ids) of a model of the project definition (hortus.yaml).

    The features are those the model reads (`hortus.project.definition.resolve_features`); an
    unknown model is refused naming the project's models.
    """
    from hortus.lakehouse.catalog import Catalog
    from hortus.project.definition import Project, resolve_features

    project = Project.load(root)
    model = project.model(name)
    features, _, _ = resolve_features(model, Catalog.load(root=project.root), project.feature_set())
    return list(features), model.time, list(model.ids)


def table_keys(spec: str, root: Path | None) -> list[str]:
    """Return the primary key of a catalog table named like `silver.orders` (else none)."""
    if Path(spec).exists() or not TABLE_NAME.match(spec):
        return []
    try:
        from hortus.lakehouse.catalog import Catalog

        return list(Catalog.load(root=root).get(spec).primary_key)
    except (HortusError, OSError):  # no project or no such contract: no declared keys
        return []


def drift_executor(args: argparse.Namespace, root: Path | None):
    """Return the executor `hortus drift` splits its statistics on (the stage commands' choice).

    params.yaml's `executor` section of the project (--root, else the one around the
    working directory, if any), then HORTUS_EXECUTOR / HORTUS_RAY_ADDRESS, then
    --executor / --address.  Nothing connects until work reaches `drift_min_rows`.
    """
    from hortus.config import find_root
    from hortus.executor.base import executor_for

    env = dict(os.environ)
    if getattr(args, "executor", None):
        env["HORTUS_EXECUTOR"] = args.executor
    if getattr(args, "ray_address", None):
        env["HORTUS_RAY_ADDRESS"] = args.ray_address
    return executor_for(root if root is not None else find_root(), env=env)


def cmd_drift(args: argparse.Namespace) -> int:
    """Compare CURRENT with REFERENCE; print, optionally write JSON/HTML; 1 if drift."""
    from hortus.executor import analytics

    root = Path(args.root) if getattr(args, "root", None) else None
    with analytics.use(drift_executor(args, root)):  # drift as tasks above its size (on Ray)
        return _drift(args, root)


def _drift(args: argparse.Namespace, root: Path | None) -> int:
    config = load_config(args.config, args.correction)
    reference = read_input(args.reference, "reference", root)
    current = read_input(args.current, "current", root)
    if isinstance(current, Profile):
        raise DriftError(f"current {args.current} is a drift profile; the current must be data")
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    ids = [*table_keys(args.reference, root), *table_keys(args.current, root)]
    if getattr(args, "model", None):
        model_columns, model_time, model_ids = model_inputs(args.model, root)
        ids += model_ids
        columns = columns or model_columns
        if args.time is None and args.window and model_time:
            args.time = model_time
    if args.save_profile:  # a sketch for later runs; this run still compares exactly
        if isinstance(reference, Profile):
            raise DriftError("--save-profile needs a reference table, not a profile")
        Profile.from_frame(
            reference,
            columns,
            config,
            segment=args.segment,
            exclude=[args.time] if args.time else [],
            source=args.reference,
            ids=ids,
        ).save(args.save_profile)
        print(f"reference profile written to {args.save_profile}")
    report = compare(
        reference,
        current,
        columns,
        config,
        segment=args.segment,
        time=args.time,
        window=args.window,
        reference_name=args.reference,
        current_name=args.current,
        ids=ids,
    )
    print("\n".join(summary_lines(report, show_all=args.all)))
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_dict(), indent=2, default=str, allow_nan=False))
        print(f"JSON report written to {out}")
    if args.html_out:
        from hortus.monitoring.drift_report import write_html

        print(f"HTML report written to {write_html(report, args.html_out)}")
    return 1 if report.drifted else 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `drift` command to the `hortus` subparsers."""
    d = sub.add_parser(
        "drift",
        help="compare a current table with a reference, column by column",
        description="Compare CURRENT with REFERENCE per column (numeric: KS, normalised "
        "Wasserstein, PSI, Jensen-Shannon; categorical: chi-square, PSI, Jensen-Shannon), "
        "overall, per segment and per time window.  Statistics are exact unless the reference "
        "is a saved profile (then marked approximate with its error bound); ID-like columns "
        "and ingestion metadata are left out unless named.  Each side is a Delta table folder, a "
        "Parquet/CSV/NDJSON file or a catalog table such as silver.orders; the reference may "
        "also be a profile saved with --save-profile.  Exit 0: no drift, 1: drift, 2: bad input.",
    )
    d.add_argument("reference", help="reference table, file or saved profile (.json)")
    d.add_argument("current", help="current table or file")
    d.add_argument(
        "--columns",
        help="comma list of columns (default: every reference column but ID-like ones, a "
        "catalog table's primary key and ingestion metadata such as _source_file)",
    )
    d.add_argument(
        "--model",
        metavar="NAME",
        help="compare the features this model of hortus.yaml reads (instead of every column) "
        "and window by its time column (default: no model)",
    )
    d.add_argument("--segment", metavar="COL", help="also compare per value of this column")
    d.add_argument("--time", metavar="COL", help="timestamp column of the current for --window")
    d.add_argument("--window", help="time window for --time, e.g. 1h, 1d, 7d, 1mo")
    d.add_argument("--json", dest="json_out", metavar="OUT.json", help="write the JSON report")
    d.add_argument("--html", dest="html_out", metavar="OUT.html", help="write the HTML report")
    d.add_argument(
        "--config",
        metavar="FILE",
        help="YAML/JSON with DriftConfig keys (thresholds, stattest per column...), "
        "or a file with a `drift:` section such as params.yaml",
    )
    d.add_argument("--correction", choices=CORRECTIONS, help="multiple-testing correction")
    d.add_argument("--save-profile", metavar="OUT.json", help="also save the reference profile")
    d.add_argument("--all", action="store_true", help="print every segment/window row")
    add_executor_options(d)  # from executor.drift_min_rows rows: per-column tasks on Ray
    d.set_defaults(func=cmd_drift)
