"""The `hortus monitor` command: run the batch monitors and record their metrics.

`hortus monitor run` reads the ``monitor`` section of params.yaml when there is
one (keys of `hortus.monitoring.monitors.MonitorConfig`; defaults otherwise), runs every
monitor, appends the metric rows to ops.monitor_metrics, evaluates the ``alerts``
rules of the same file (firing alerts are notified once, cleared ones resolved) and
prints a summary.  The access monitor needs read on ops.audit_log; for other users it
is skipped with a note.  Exit status 0 when nothing is flagged, 1 when some metric is
flagged, 2 on bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from hortus.config import Paths
from hortus.errors import HortusError
from hortus.params import read_params

AUDIT_LOG = "ops.audit_log"

SECTION = "monitor"


def _config(paths: Paths, params: str | None) -> tuple[dict, str]:
    """Return the monitor section of the params file (empty if absent) and where it came from."""
    from hortus.params_schema import checked_section

    path = Path(params) if params else paths.root / "params.yaml"
    if params and not path.exists():
        raise HortusError(f"{path}: parameters file not found")
    if not path.exists():
        return {}, "defaults (no params.yaml)"
    doc = read_params(path)  # not YAML, or not a mapping: a clear error naming the file
    if not isinstance(doc, dict) or SECTION not in doc:
        return {}, f"defaults (no {SECTION!r} section in {path})"
    # checked against its schema: a wrong key, type or a section that is no mapping is
    # refused naming file, key, expected type and value (exit 2), not a traceback
    return checked_section(path, SECTION, root=paths.root), f"{path} section {SECTION!r}"


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
    from hortus.lakehouse.tables import Lakehouse
    from hortus.monitoring import monitors

    paths = Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()
    section, source = _config(paths, args.params)
    if args.monitors:
        section = dict(section, monitors=[m for m in args.monitors.split(",") if m])
    section = _with_model(section, paths, args.model)
    config = monitors.MonitorConfig.from_dict(section, source=source)
    lh = Lakehouse.open(paths.root, stage="monitor")
    chosen = list(config.monitors or monitors.MONITORS)
    if "access" in chosen and not lh.policy.decide(lh.user, "read", AUDIT_LOG).allowed:
        # denied attempts come from the audit log, which only auditors and the pipeline read
        chosen.remove("access")
        print(
            f"monitor run: access monitor skipped: {lh.user} may not read {AUDIT_LOG}",
            file=sys.stderr,
        )
        config = dataclasses.replace(config, monitors=chosen)
    from hortus.cli._common import status

    with status(f"hortus monitor run: {', '.join(chosen)}"):
        metrics = monitors.run_all(lh, config, _at(args.at))
    version = None if args.no_write else monitors.write_metrics(lh, metrics)
    run = None
    if not args.no_write and not args.no_alerts and _has_alerts(paths, args.params):
        from hortus.monitoring import alerts
        from hortus.params_schema import checked_section
        from hortus.pipeline.stages import alert_setup

        checked_section(Path(args.params) if args.params else paths.root / "params.yaml",
                        "alerts", root=paths.root)  # fmt: skip
        rules, sinks = alert_setup(paths, Path(args.params) if args.params else None)
        run = alerts.run_alerts(lh, rules, metrics, sinks, now=_at(args.at))
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
            "alerts": [] if run is None else [_alert_dict(e) for e in run.events],
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
        if run is not None:
            told = [f"{e.status} {e.rule} [{e.subject}]" for e in run.events if e.notify]
            print(
                f"alerts: {len(run.state.firing)} firing; notified this run: "
                + (", ".join(told) or "none (firing alerts are not repeated)")
            )
    return 1 if flagged.height else 0


def _with_model(section: dict, paths: Paths, model: str | None) -> dict:
    """Return the monitor settings with `model` set from --model (checked against hortus.yaml).

    Without --model the section's `model` stands, else every registered model is
    monitored.  A --model that the project does not declare is refused unless it is a
    registered model (models outside the definition are monitored from their receipts).
    """
    if not model:
        return section
    from hortus.lakehouse.tables import Lakehouse
    from hortus.models.registry import model_names
    from hortus.project.definition import Project, ProjectError

    try:
        Project.load(paths.root).model(model)
    except ProjectError:
        with Lakehouse.open(paths.root, stage="monitor") as lh:
            if model not in model_names(lh):
                raise
    return dict(section, model=model)


def _has_alerts(paths: Paths, params: str | None) -> bool:
    """Return whether the params file has an `alerts` section."""
    path = Path(params) if params else paths.root / "params.yaml"
    doc = read_params(path) if path.exists() else None
    return bool((doc or {}).get("alerts"))


def _alert_dict(event) -> dict:
    """Return the printable fields of one alert event."""
    keys = ("rule", "subject", "severity", "status", "notify", "value", "message")
    return {k: getattr(event, k) for k in keys}


def cmd_monitor_stage(args: argparse.Namespace) -> int:
    """Run the DVC `monitor` stage and print its summary."""
    from hortus.cli._common import _params
    from hortus.pipeline import stages

    paths = Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()
    params = _params(args, paths, "monitor")  # checked against its schema, as every stage's
    if _has_alerts(paths, args.params):
        _params(args, paths, "alerts")  # the alert rules too, before any monitor runs
    params = _with_model(params, paths, args.model)
    from hortus.cli._common import status
    from hortus.monitoring.runlog import record_run

    with record_run(paths, "monitor"), status("hortus monitor stage"):
        summary = stages.monitor(paths, params)
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0


def cmd_monitor_watch(args: argparse.Namespace) -> int:
    """Follow data/ and process each arrival as a micro-batch until Ctrl-C; print one line each."""
    import signal
    import threading
    from datetime import timedelta

    from hortus.lakehouse import silver
    from hortus.lakehouse.pii import load_key
    from hortus.monitoring import monitors, watch

    paths = Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()
    section, source = _config(paths, args.params)
    if args.monitors:
        section = dict(section, monitors=[m for m in args.monitors.split(",") if m])
    elif not section.get("monitors"):
        section = dict(section, monitors=list(watch.DEFAULT_MONITORS))
    section = _with_model(section, paths, args.model)
    config = monitors.MonitorConfig.from_dict(section, source=source)
    from hortus.lakehouse.landing import IngestLimits
    from hortus.params_schema import checked_section

    params_file = Path(args.params) if args.params else paths.root / "params.yaml"
    doc = read_params(params_file) if params_file.exists() else {}
    # each section checked against its schema (file, key, expected type and value)
    silver_p, ingest_p = (
        checked_section(params_file, s, root=paths.root) if params_file.exists() else {}
        for s in ("silver", "ingest")
    )
    if "alerts" in doc:
        checked_section(params_file, "alerts", root=paths.root)
    options = silver.SilverOptions(
        key=load_key(paths.secrets),
        future_tolerance=timedelta(minutes=float(silver_p.get("future_tolerance_minutes", 60))),
    )
    rules: list = []
    sinks: dict = {}
    if "alerts" in doc:
        from hortus.pipeline.stages import alert_setup

        rules, sinks = alert_setup(paths, Path(args.params) if args.params else None)
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        if stop.is_set():  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        print("hortus monitor watch: stopping after the current batch", flush=True)
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    print(
        f"hortus monitor watch: following {paths.data} every {args.interval:g}s "
        f"(monitors: {', '.join(config.monitors or ())}; {len(rules)} alert rules); Ctrl-C stops",
        flush=True,
    )
    try:
        results = watch.watch(
            paths,
            interval=args.interval,
            max_batches=args.max_batches,
            stop=stop,
            on_batch=lambda r: print(r.line(), flush=True),
            monitor_config=config,
            silver_options=options,
            rules=rules,
            sinks=sinks,
            flush_rows=int(ingest_p.get("flush_rows", 2_000_000)),
            chunk_rows=int(silver_p.get("chunk_rows", 2_000_000)),
            ingest_limits=IngestLimits.from_params(ingest_p),
            idle_every=args.idle_every,
        )
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    print(f"hortus monitor watch: stopped after {len(results)} batch(es)", flush=True)
    return 0 if all(r.reconciles for r in results) else 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `monitor` command to the `hortus` subparsers."""
    m = sub.add_parser(
        "monitor",
        help="run the monitors and record metrics in ops.monitor_metrics",
        description="Monitoring of the operations plane: data quality, freshness, pipeline "
        "runs, memory regressions, model staleness, KPI ranges and denied access attempts.",
    )
    msub = m.add_subparsers(dest="action", required=True, metavar="ACTION")
    model_help = (
        "check the staleness of this model's champion only (default: params.yaml "
        "`monitor.model`, else every registered model)"
    )
    r = msub.add_parser(
        "run",
        help="run every monitor once (batch mode) and append the metrics",
        description="Run every monitor once (batch mode, e.g. from a scheduler), append the "
        "metric rows to ops.monitor_metrics, evaluate the `alerts` rules and print a "
        "summary.  Settings: the `monitor` section of params.yaml if present (keys of "
        "hortus.monitoring.monitors.MonitorConfig), defaults otherwise.  Exit 0: nothing flagged, "
        "1: some metric flagged, 2: bad input.",
    )
    r.add_argument("--params", help="params file (default: params.yaml at the root)")
    r.add_argument("--monitors", help="comma list of monitors to run (default: all)")
    r.add_argument("--at", help="measure as of this UTC time (ISO 8601; default: now)")
    r.add_argument("--model", metavar="NAME", help=model_help)
    r.add_argument(
        "--no-write", action="store_true", help="print the metrics, write nothing (no alerts)"
    )
    r.add_argument(
        "--no-alerts",
        action="store_true",
        help="write the metrics but do not evaluate params.yaml's alert rules",
    )
    r.add_argument("--limit", type=int, default=20, help="flagged rows to print (default 20)")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.set_defaults(func=cmd_monitor_run)
    st = msub.add_parser(
        "stage",
        help="DVC stage: run the monitors, evaluate the alert rules, write reports/monitor.json",
        description="The `monitor` stage of dvc.yaml: run every monitor (params.yaml "
        "`monitor`), append ops.monitor_metrics, evaluate the alert rules of params.yaml "
        "`alerts` against them (deduplicated; sinks: JSONL file, webhook) and write "
        "reports/monitor.json.  Flags and alerts do not fail the stage.",
    )
    st.add_argument("--params", help="params file (default: params.yaml at the root)")
    st.add_argument("--model", metavar="NAME", help=model_help)
    st.set_defaults(func=cmd_monitor_stage)
    w = msub.add_parser(
        "watch",
        help="streaming mode: ingest each new landing file as a micro-batch and update monitors",
        description="Follow the landing folder data/ (polling every --interval seconds); each "
        "set of new files whose size is stable across two polls is one micro-batch: ingest "
        "into bronze, silver, the monitors (default data_quality,freshness; or params.yaml "
        "`monitor.monitors`), ops.monitor_metrics and the alert rules of params.yaml `alerts`. "
        "One line per batch.  Refused files are recorded and watching continues; a restart "
        "re-ingests nothing (state is bronze.landing_files).  Ctrl-C stops after the current "
        "batch.  Exit 0, or 1 if some batch did not reconcile bronze with silver.",
    )
    w.add_argument("--params", help="params file (default: params.yaml at the root)")
    w.add_argument("--model", metavar="NAME", help=model_help)
    w.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
    w.add_argument("--max-batches", type=int, help="stop after this many batches (default: never)")
    w.add_argument(
        "--monitors", help="comma list of monitors per batch (default: data_quality,freshness)"
    )
    w.add_argument(
        "--idle-every",
        type=float,
        help="also run the monitors after this many seconds without new files (default: never)",
    )
    w.set_defaults(func=cmd_monitor_watch)
