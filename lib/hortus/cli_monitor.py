"""The `hortus monitor` command: run the batch monitors and record their metrics.

`hortus monitor run` reads the ``monitor`` section of params.yaml when there is
one (keys of `hortus.monitors.MonitorConfig`; defaults otherwise), runs every
monitor, appends the metric rows to ops.monitor_metrics and prints a summary.
Exit status 0 when nothing is flagged, 1 when some metric is flagged, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import yaml

from hortus.config import Paths
from hortus.errors import HortusError

SECTION = "monitor"


def _config(paths: Paths, params: str | None) -> tuple[dict, str]:
    """Return the monitor section of the params file (empty if absent) and where it came from."""
    from hortus.params import load_section

    path = Path(params) if params else paths.root / "params.yaml"
    if params and not path.exists():
        raise HortusError(f"{path}: parameters file not found")
    if not path.exists():
        return {}, "defaults (no params.yaml)"
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(doc, dict) or SECTION not in doc:
        return {}, f"defaults (no {SECTION!r} section in {path})"
    return load_section(path, SECTION), f"{path} section {SECTION!r}"


def _at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HortusError(
            f"--at {value!r} is not an ISO 8601 time such as 2025-03-01T12:00:00Z"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def cmd_monitor_run(args: argparse.Namespace) -> int:
    """Run the monitors, write their metrics and print a summary; exit 1 if anything is flagged."""
    from hortus import monitors
    from hortus.tables import Lakehouse

    paths = Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()
    section, source = _config(paths, args.params)
    if args.monitors:
        section = dict(section, monitors=[m for m in args.monitors.split(",") if m])
    config = monitors.MonitorConfig.from_dict(section, source=source)
    lh = Lakehouse.open(paths.root, stage="monitor")
    metrics = monitors.run_all(lh, config, _at(args.at))
    version = None if args.no_write else monitors.write_metrics(lh, metrics)
    lh.close()
    flagged = monitors.flags(metrics)
    table = monitors.summary(metrics)
    if args.json:
        out = {
            "config": source,
            "written_version": version,
            "rows": metrics.height,
            "summary": table.to_dicts(),
            "flagged": flagged.to_dicts(),
        }
        print(json.dumps(out, indent=2, sort_keys=True, default=str))
    else:
        where = (
            "not written (--no-write)"
            if args.no_write
            else "nothing to write"
            if version is None
            else f"ops.monitor_metrics v{version}"
        )
        print(f"monitor run: {metrics.height} metric rows -> {where}; config: {source}")
        print(f"  {'monitor':<16} {'rows':>6} {'subjects':>8} {'flagged':>7}")
        for r in table.iter_rows(named=True):
            print(f"  {r['monitor']:<16} {r['rows']:>6} {r['subjects']:>8} {r['flagged']:>7}")
        for r in flagged.head(args.limit).iter_rows(named=True):
            print(
                f"  FLAG {r['monitor']}/{r['metric']} {r['subject']} = {r['value']:g} {r['labels']}"
            )
        if flagged.height > args.limit:
            print(f"  ... and {flagged.height - args.limit} more flagged rows (--limit)")
    return 1 if flagged.height else 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `monitor` command to the `hortus` subparsers."""
    m = sub.add_parser(
        "monitor",
        help="run the monitors and record metrics in ops.monitor_metrics",
        description="Monitoring of the operations plane: data quality, freshness, pipeline "
        "runs, memory regressions, model staleness, KPI ranges and denied access attempts.",
    )
    msub = m.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = msub.add_parser(
        "run",
        help="run every monitor once (batch mode) and append the metrics",
        description="Run every monitor once (batch mode, e.g. from a scheduler), append the "
        "metric rows to ops.monitor_metrics and print a summary.  Settings: the `monitor` "
        "section of params.yaml if present (keys of hortus.monitors.MonitorConfig), defaults "
        "otherwise.  Exit 0: nothing flagged, 1: some metric flagged, 2: bad input.",
    )
    r.add_argument("--params", help="params file (default: params.yaml at the root)")
    r.add_argument("--monitors", help="comma list of monitors to run (default: all)")
    r.add_argument("--at", help="measure as of this UTC time (ISO 8601; default: now)")
    r.add_argument("--no-write", action="store_true", help="print the metrics, write nothing")
    r.add_argument("--limit", type=int, default=20, help="flagged rows to print (default 20)")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.set_defaults(func=cmd_monitor_run)
