"""DVC stage entry points: each reads its params.yaml section once and calls the library.

Stage name = params.yaml section = function here (`ingest`, `silver`, `kpis`,
`features`, `train`, `register`, `gate`, `score`, `monitor`, `docs`).
Each writes a small JSON summary under reports/ that DVC tracks as metrics.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from hortus import silver as silver_mod
from hortus.config import Paths
from hortus.errors import HortusError
from hortus.ingest import ingest as ingest_files
from hortus.pii import load_key
from hortus.plantshop.kpis import KPI_TABLE, daily_kpis
from hortus.tables import Lakehouse


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def ingest(paths: Paths, params: dict) -> dict:
    """Land every new file of data/ in bronze; refused files are reported, not fatal."""
    lh = Lakehouse.open(paths.root, stage="ingest")
    report = ingest_files(paths.data, lh, flush_rows=int(params.get("flush_rows", 2_000_000)))
    summary = report.to_dict()
    _write_json(paths.reports / "ingest.json", summary)
    return summary


def silver(paths: Paths, params: dict) -> dict:
    """Validate, deduplicate and tokenise bronze into silver; quarantine the rest."""
    lh = Lakehouse.open(paths.root, stage="silver")
    options = silver_mod.SilverOptions(
        key=load_key(paths.secrets),
        future_tolerance=timedelta(minutes=float(params.get("future_tolerance_minutes", 60))),
    )
    tables = silver_mod.build(lh, options, chunk_rows=int(params.get("chunk_rows", 2_000_000)))
    checks = silver_mod.reconcile(lh)
    broken = [c for c in checks if not c["reconciles"]]
    if broken:
        raise HortusError(f"rows lost between bronze and silver: {broken}")
    summary = {
        "tables": {t["table"]: t for t in tables},
        "totals": {k: sum(c[k] for c in checks) for k in ("landed", "accepted", "quarantined")},
    }
    _write_json(paths.reports / "silver.json", summary)
    return summary


def kpis(paths: Paths, params: dict) -> dict:
    """Compute gold daily KPIs from silver."""
    lh = Lakehouse.open(paths.root, stage="kpis")
    table = daily_kpis(lh.scan("silver.events"), lh.scan("silver.users")).collect()
    lh.write(KPI_TABLE, table, mode="overwrite")
    overall = table.filter(table["region"] == "ALL")
    summary = {
        "days": overall.height,
        "sessions": int(overall["sessions"].sum()),
        "orders": int(overall["orders"].sum()),
        "revenue": round(float(overall["revenue"].sum()), 2),
        "conversion_rate": round(
            float(overall["converted_sessions"].sum()) / max(int(overall["sessions"].sum()), 1), 6
        ),
        "rec_ctr": round(
            float(overall["rec_clicks"].sum()) / max(int(overall["rec_impressions"].sum()), 1), 6
        ),
    }
    _write_json(paths.reports / "kpis.json", summary)
    return summary


def docs(paths: Paths, params: dict) -> dict:
    """Write the data dictionary, the HTML docs under reports/docs/ and reports/index.html."""
    from hortus.site import build_site

    return build_site(paths, Lakehouse.open(paths.root, stage="docs"))


def features(paths: Paths, params: dict) -> dict:
    """Build the offline feature logs, materialise the online store, check their skew."""
    import polars as pl

    from hortus import feature_store as fsm
    from hortus.plantshop.features import FEATURES

    lh = Lakehouse.open(paths.root, stage="features")
    offline = fsm.build_offline(lh, FEATURES)
    logs = fsm.read_logs(lh, FEATURES)
    # the online store serves the state after the last event seen
    end = lh.scan("silver.events").select(pl.col("ts").max()).collect().item()
    at = end + timedelta(microseconds=1)
    store = fsm.OnlineStore(paths.online_store, FEATURES)
    online = store.materialize(
        logs,
        at,
        {c.full_name: c for c in lh.catalog},
        versions={t: v["version"] for t, v in offline.items()},
    )
    skew = fsm.skew_check(
        store,
        logs,
        fsm.sample_entities(lh, int(params.get("skew_sample", 500)), int(params.get("seed", 0))),
        tolerance=float(params.get("skew_tolerance", 1e-9)),
    )
    # the labelled training set (gold), features joined as of each impression
    from hortus.plantshop.training import TRAINING_SET, labelled_impressions

    lh.reads.clear()
    spine = labelled_impressions(lh.scan("silver.events"), float(params["label_horizon_days"]))
    examples = fsm.training_set(lh, FEATURES, spine, "ts")
    schema = lh.catalog.get(TRAINING_SET).schema
    examples = examples.select([pl.col(c).cast(t) for c, t in schema.items()])
    ts_version = lh.write(TRAINING_SET, examples, mode="overwrite")
    summary = {
        "training_set": {
            "rows": examples.height,
            "positives": int(examples["label"].sum()),
            "version": ts_version,
        },  # fmt: skip
        "offline": offline,
        "online": {
            "path": str(paths.online_store.relative_to(paths.root)),
            "rows": online,
            "materialized_at": at.isoformat(),
        },  # fmt: skip
        "features": len(FEATURES.feature_names),
        "skew": skew.to_dict(),
    }
    _write_json(paths.reports / "features.json", summary)
    if not skew.ok:
        raise HortusError(
            f"training/serving skew in {summary['skew']['mismatched_features']}: "
            f"see reports/features.json"
        )
    return summary


def train(paths: Paths, params: dict) -> dict:
    """Run notebooks/train.py headless with papermill; the executed notebook is the record."""
    from hortus.notebooks import notebook_path, run_notebook

    out = paths.reports / "train"
    executed = run_notebook(
        notebook_path(paths.root, "train"),
        out / "train.ipynb",
        dict(params) | {"output_dir": str(out)},
        cwd=paths.root,
    )
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    return {"notebook": str(executed.relative_to(paths.root)), "sha256": run["sha256"],
            "metrics": run["metrics"]}  # fmt: skip


def register(paths: Paths, params: dict) -> dict:
    """Register the trained model (reports/train) in the registry with its build receipt."""
    from hortus.params import load_section
    from hortus.registry import CHALLENGER, Receipt, Registry

    run = json.loads((paths.reports / "train" / "run.json").read_text(encoding="utf-8"))
    lh = Lakehouse.open(paths.root, stage="register")
    registry = Registry(lh, params.get("model_name", "recommender"))
    receipt = Receipt.collect(
        paths.root,
        params={
            "train": load_section(paths.root / "params.yaml", "train"),
            "features": load_section(paths.root / "params.yaml", "features"),
        },  # fmt: skip
        tables_read=run["tables_read"],
        content_hashes=run.get("content_hashes"),
    )
    artifact = (
        paths.root / run["artifact"]
        if not Path(run["artifact"]).is_absolute()
        else Path(run["artifact"])
    )
    signature = json.loads(artifact.with_suffix(".signature.json").read_text(encoding="utf-8"))
    mv = registry.register(
        artifact,
        sha256=run["sha256"],
        signature=signature,
        metrics=run["metrics"],
        receipt=receipt,
        notes="dvc repro",
        alias=CHALLENGER,
        spec=run["spec"],
    )
    out = {"model_name": registry.name, "version": mv.version, "sha256": mv.artifact_sha256,
           "aliases": registry.aliases()}  # fmt: skip
    _write_json(paths.reports / "register.json", out)
    return out


def score(paths: Paths, params: dict) -> dict:
    """Score every user x in-stock plant with the champion; write gold + prediction log.

    `score.model` picks the version (champion, "registered", or a number); with no
    champion yet and `fallback_to_gated`, the newest version whose gate passed is used
    and reports/score.json says so.
    """
    import polars as pl

    from hortus.plantshop import scoring
    from hortus.registry import Registry

    reg = json.loads((paths.reports / "register.json").read_text(encoding="utf-8"))
    lh = Lakehouse.open(paths.root, stage="score")
    registry = Registry(lh, reg["model_name"])
    ref = params.get("model", "registered")
    note = ""
    if ref == "champion" and "champion" not in registry.aliases():
        # before any champion exists, a new shop scores with the newest version whose
        # latest gate passed, flagged as such; never with an ungated or failed one
        gated = registry.newest_gated()
        if not params.get("fallback_to_gated", True) or gated is None:
            raise HortusError(
                f"no champion to score with, and no version of {registry.name} passed its gate "
                "(see reports/gate.json and reports/gate/); fix the failed checks, then "
                "approve and promote a gated version (`hortus models approve/promote`)"
            )
        ref = gated
        note = (
            f"no champion yet: scored with v{ref}, the newest version that passed its gate "
            "(awaiting four-eyes approval and promotion)"
        )
    version = reg["version"] if ref == "registered" else registry.get(ref).version
    pipeline, signature = registry.load(version)
    spec = _spec(registry.get(version).spec, f"model {registry.name} v{version}")
    end = lh.scan("silver.events").select(pl.col("ts").max()).collect().item()
    at = end + timedelta(microseconds=1)
    recs, log = scoring.recommend(
        lh, pipeline, signature, spec, at=at, top_k=int(params.get("top_k", 10)),
        model_name=registry.name, model_version=version,
    )  # fmt: skip
    lh.write(scoring.RECOMMENDATIONS, recs, mode="overwrite")
    lh.write(scoring.PREDICTION_LOG, log, mode="append")
    out = {"model_version": version, "as_of": at.isoformat(), "note": note}
    out |= scoring.summary(recs)
    _write_json(paths.reports / "score.json", out)
    return out


def _spec(doc: dict | None, where: str):
    from hortus.modeling import ModelSpec

    if not doc:
        raise HortusError(f"{where} has no training spec recorded; re-register it")
    return ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()})


def gate(paths: Paths, params: dict, version: str | int | None = None) -> dict:
    """Run the promotion gate on a registered version (default: the one this repro registered).

    Data tests (training-set contract, PII scan of silver and gold, drift between the
    training rows and the hold-out, training/serving skew) and model tests on the
    hold-out (segments, fairness, importance, schema conflicts on a serving sample,
    efficiency against the champion, behaviour).  The result goes to
    ops.gate_results and reports/gate/v<N>.{json,md}; the first version that passes
    becomes champion when there is none (`champion_if_none`).
    """
    import dataclasses

    import polars as pl
    from threadpoolctl import threadpool_limits

    from hortus import feature_store as fsm
    from hortus import gate as g
    from hortus import modeling, pii_scan
    from hortus.model_checks import efficiency
    from hortus.plantshop import scoring
    from hortus.plantshop.features import FEATURES
    from hortus.plantshop.training import TRAINING_SET
    from hortus.provenance import git_state
    from hortus.registry import CHAMPION, Registry

    lh = Lakehouse.open(paths.root, stage="gate")
    name = params.get("model_name", "recommender")
    if version is None:
        reg = json.loads((paths.reports / "register.json").read_text(encoding="utf-8"))
        name, version = reg["model_name"], reg["version"]
    registry = Registry(lh, name)
    mv = registry.get(version)
    pipeline, signature = registry.load(mv.version)
    spec = _spec(mv.spec, f"model {name} v{mv.version}")
    config = g.GateConfig.from_dict({k: params[k] for k in g.GATE_SECTIONS if k in params})
    contract = lh.catalog.get(TRAINING_SET)
    if not config.model.sensitive:  # default: the contract's sensitive columns the model uses
        sensitive = tuple(
            c.name for c in contract.columns if c.sensitive and c.name in spec.features
        )
        config = dataclasses.replace(
            config, model=dataclasses.replace(config.model, sensitive=sensitive)
        )
    examples = lh.read(TRAINING_SET)
    train_df, test_df, cutoff = modeling.time_split(examples, spec)
    reference = train_df
    if config.reference_days is not None and spec.time and cutoff is not None:
        reference = train_df.filter(
            pl.col(spec.time) >= cutoff - timedelta(days=config.reference_days)
        )
    logs = fsm.read_logs(lh, FEATURES)
    store = fsm.OnlineStore(paths.online_store, FEATURES)
    skew = fsm.skew_check(
        store,
        logs,
        fsm.sample_entities(lh, config.skew_sample, config.skew_seed),
        tolerance=config.skew_tolerance,
    )
    scan = pii_scan.scan_lakehouse(
        lh, ("silver", "gold"), min_rows=config.pii_min_rows, sample_rows=config.pii_sample_rows
    )
    data_checks = [
        g.contract_check(examples, contract),
        g.pii_check(scan),
        g.drift_check(
            reference,
            test_df,
            [*spec.features, spec.target],
            max_drifted_share=config.max_drifted_share,
            critical=config.critical,
            config=config.drift,
        ),
        g.skew_check(skew),
    ]
    end = lh.scan("silver.events").select(pl.col("ts").max()).collect().item()
    serving = scoring.serving_frame(
        lh, end + timedelta(microseconds=1), users=int(params.get("serving_users", 100)), seed=0
    )
    # Score single-threaded: on a shared 2-core machine OpenMP threads oversubscribe
    # (measured 4x slower under load), and candidate and champion are timed alike.
    with threadpool_limits(1):
        champion = registry.aliases().get(CHAMPION)
        baseline = None
        if champion is not None and champion != mv.version:
            champ_pipeline, _ = registry.load(champion)
            champ_spec = _spec(registry.get(champion).spec, f"champion v{champion}")
            baseline = efficiency(champ_pipeline, test_df, champ_spec, **config.model.efficiency)
        result = g.run_gate(
            model_name=name,
            version=mv.version,
            pipeline=pipeline,
            signature=signature,
            spec=spec,
            evaluation=test_df,
            config=config,
            data_checks=data_checks,
            serving=serving,
            baseline=baseline,
            baseline_version=champion if baseline is not None else None,
        )
    report = g.record(
        registry, result, paths.reports / "gate", git_commit=git_state.__wrapped__(paths.root)[0]
    )
    # event-driven monitoring: a failed gate is an event its subscribed rules act on at once
    from hortus import events

    if not result.passed:
        rules, sinks = alert_setup(paths)
        events.emit(
            lh,
            "gate_failed",
            f"{name}:v{mv.version}",
            {"run_id": result.run_id, "failed": [c.name for c in result.failed]},
            rules=rules,
            sinks=sinks,
        )
    promoted, promotion = False, ""
    if result.passed and champion is None and params.get("champion_if_none", True):
        # four-eyes: the pipeline promotes only if the policy allows it (an approval by
        # someone other than the author exists); otherwise it says who must act
        ok, why = registry.promote_allowed(mv.version, alias=CHAMPION)
        if ok:
            registry.promote(mv.version, alias=CHAMPION, reason="first version to pass its gate")
            promoted = True
        else:
            promotion = why
    summary = result.summary() | {
        "report": str(report.relative_to(paths.root)),
        "promoted_to_champion": promoted,
        "promotion": promotion,
        "failed_checks": [c.summary() for c in result.failed],
    }
    _write_json(paths.reports / "gate.json", summary)
    return summary


def alert_setup(paths: Paths, params_file: Path | None = None) -> tuple[list, dict]:
    """Return the alert rules and sinks of the `alerts` section (default: params.yaml)."""
    from hortus import alerts
    from hortus.params import load_section

    section = load_section(params_file or paths.root / "params.yaml", "alerts")
    sinks_cfg = {
        name: dict(spec) | ({"path": str(paths.root / spec["path"])} if "path" in spec else {})
        for name, spec in (section.get("sinks") or {}).items()
    }
    sinks = alerts.build_sinks(sinks_cfg)
    return alerts.load_rules(section.get("rules") or [], sinks=sinks), sinks


def monitor(paths: Paths, params: dict) -> dict:
    """Batch monitoring: run every monitor, append ops.monitor_metrics, evaluate alert rules.

    Alert rules and sinks come from params.yaml's `alerts` section (JSONL file sinks are
    relative to the project root); firing alerts are deduplicated across runs and
    resolved when their condition clears (ops.alerts).
    """
    from hortus import alerts, monitors

    lh = Lakehouse.open(paths.root, stage="monitor")
    config = monitors.MonitorConfig.from_dict(params, source="params.yaml monitor")
    metrics = monitors.run_all(lh, config)
    version = monitors.write_metrics(lh, metrics)
    rules, sinks = alert_setup(paths)
    run = alerts.run_alerts(lh, rules, metrics, sinks)
    lh.close()
    flagged = monitors.flags(metrics)
    notified = [e for e in run.events if e.notify]
    out = {
        "metric_rows": metrics.height,
        "metrics_version": version,
        "flagged": flagged.height,
        "monitors": {r["monitor"]: r["flagged"] for r in monitors.summary(metrics).to_dicts()},
        "alerts_firing": len(run.state.firing),
        "alerts_notified": len(notified),
        "deliveries_failed": int((~run.deliveries["ok"]).sum()) if run.deliveries.height else 0,
    }
    _write_json(paths.reports / "monitor.json", out)
    return out


STAGES = {"ingest": ingest, "silver": silver, "kpis": kpis, "features": features,
          "train": train, "register": register, "gate": gate, "score": score,
          "monitor": monitor, "docs": docs}  # fmt: skip
