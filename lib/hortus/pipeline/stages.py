"""DVC stage entry points: each reads its params.yaml section once and calls the library.

Stage name = params.yaml section = function here (`ingest`, `silver`, `kpis`,
`features`, `train`, `register`, `gate`, `score`, `monitor`, `docs`).
Each writes a small JSON summary under reports/ that DVC tracks as metrics.
What the project consists of (contracts, features, examples, KPIs, models) comes
from its project definition, `hortus.yaml` (`hortus.project.definition`); nothing here names
a domain's tables, columns or models.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from hortus.config import Paths
from hortus.errors import HortusError
from hortus.lakehouse import silver as silver_mod
from hortus.lakehouse.ingest import ingest as ingest_files
from hortus.lakehouse.landing import IngestLimits
from hortus.lakehouse.pii import load_key
from hortus.lakehouse.tables import Lakehouse
from hortus.project.definition import Project


def _leased(scopes: Callable[..., list[str]]) -> Callable:
    """Run a stage holding the leases of the build tables it writes (hortus.lakehouse.lease).

    `scopes(paths, **kwargs)` names them; a second writer of the same tables waits up
    to --wait seconds, then fails naming the holder.  Operations tables take no lease.
    """

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(paths: Paths, params: dict, **kwargs: Any) -> dict:
            from hortus.lakehouse import lease
            from hortus.provenance import current_user

            held = scopes(paths, **kwargs)
            with lease.hold(paths.lakehouse_root, held, holder=current_user(), stage=fn.__name__):
                return fn(paths, params, **kwargs)

        return run

    return wrap


def _table_scopes(paths: Paths, tables: list[str]) -> list[str]:
    from hortus.lakehouse import lease
    from hortus.lakehouse.catalog import Catalog

    catalog = Catalog.load(root=paths.root)
    scopes = (lease.scope_for(catalog.get(t).layer, t) for t in tables)
    return sorted({s for s in scopes if s is not None})


def _kpi_scopes(paths: Paths, **_: Any) -> list[str]:
    project = Project.load(paths.root)
    return _table_scopes(paths, [project.kpis.table]) if project.kpis else []


def _feature_scopes(paths: Paths, **_: Any) -> list[str]:
    project = Project.load(paths.root)
    fs = project.feature_set()
    tables = [g.table for g in fs.groups] if fs else []
    return _table_scopes(paths, tables + ([project.examples.table] if project.examples else []))


def _score_scopes(paths: Paths, model: str | None = None, **_: Any) -> list[str]:
    project = Project.load(paths.root)
    names = [model] if model else list(project.models)
    return _table_scopes(paths, [project.model(n).scoring.table for n in names])


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def pin_tables(paths: Paths, stage: str, lh: Lakehouse, tables: list[str]) -> dict:
    """Write reports/tables/<stage>.json: rows and content hash of every table the stage wrote.

    The lakehouse is not a DVC output (Delta file names and commit times differ on
    every build, and the lakehouse may live on object storage where DVC outs cannot
    point), so each stage pins what it wrote here: an order-independent content hash
    without ingestion-time columns (`Lakehouse.content_hash`).  Same inputs, same
    file: `dvc.lock` stays valid on a rebuild, and downstream stages depend on it.
    """
    pinned = {}
    for name in sorted(tables):
        if lh.exists(name):
            digest = lh.content_hash(name)
            rows = int(digest.split(";")[0].removeprefix("rows="))
            pinned[name] = {"rows": rows, "content": digest}
    _write_json(paths.reports / "tables" / f"{stage}.json", pinned)
    return pinned


def _drop(paths: Paths, *layers: str) -> None:
    """Remove whole layers: what DVC did when they were its outputs.

    On disk their folders; on object storage every object under their prefix, the
    Delta logs first (a table is gone once its log is; data files left by an
    interrupted drop belong to no table and go with the next one).
    """
    import shutil

    for layer in layers:
        if paths.lakehouse_uri is not None:
            from hortus.lakehouse._objstore import TableFiles, TableLocation

            rel = paths.layer(layer).relative_to(paths.lakehouse).as_posix()
            files = TableFiles(TableLocation.of(f"{paths.lakehouse_uri}/{rel}"))
            for name in sorted(files.list(), key=lambda f: "/_delta_log/" not in f):
                files.delete(name)
        elif paths.layer(layer).exists():
            shutil.rmtree(paths.layer(layer))


@_leased(lambda paths, **_: ["bronze"])
def ingest(paths: Paths, params: dict, rebuild: bool = False) -> dict:
    """Land every new file of data/ in bronze; refused files are reported, not fatal.

    With `rebuild` (the DVC stage) bronze is dropped first and landed again from data/.
    """
    if rebuild:
        _drop(paths, "bronze")
    lh = Lakehouse.open(paths.root, stage="ingest")
    report = ingest_files(
        paths.data,
        lh,
        flush_rows=int(params.get("flush_rows", 2_000_000)),
        limits=IngestLimits.from_params(params),  # caps against hostile files
    )
    summary = report.to_dict()
    _write_json(paths.reports / "ingest.json", summary)
    pin_tables(paths, "ingest", lh, lh.catalog.names("bronze"))
    return summary


@_leased(lambda paths, **_: ["silver"])
def silver(paths: Paths, params: dict, rebuild: bool = False) -> dict:
    """Validate, deduplicate and tokenise bronze into silver; quarantine the rest.

    With `rebuild` (the DVC stage) silver and quarantine are dropped first.
    """
    if rebuild:
        _drop(paths, "silver", "quarantine")
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
    pin_tables(paths, "silver", lh, lh.catalog.names("silver") + lh.catalog.names("quarantine"))
    return summary


@_leased(_kpi_scopes)
def kpis(paths: Paths, params: dict) -> dict:
    """Compute the project's gold KPI table (`kpis` in hortus.yaml), if it declares one."""
    project = Project.load(paths.root)
    if project.kpis is None:
        summary = {"skipped": "the project declares no kpis (hortus.yaml)"}
        _write_json(paths.reports / "kpis.json", summary)
        return summary
    lh = Lakehouse.open(paths.root, stage="kpis")
    table = project.hook(project.kpis.build, "kpis.build")(lh)
    lh.write(project.kpis.table, table, mode="overwrite")
    pin_tables(paths, "kpis", lh, [project.kpis.table])
    summarise = project.hook(project.kpis.summary, "kpis.summary")
    summary = summarise(table) if summarise else {"rows": table.height}
    _write_json(paths.reports / "kpis.json", summary)
    return summary


def docs(paths: Paths, params: dict) -> dict:
    """Write the data dictionary, the HTML docs under reports/docs/ and reports/index.html."""
    from hortus.publishing.site import build_site

    return build_site(paths, Lakehouse.open(paths.root, stage="docs"))


def _now(lh: Lakehouse, project: Project):
    """Return the instant just after the last landed event: what "now" is for serving."""
    import polars as pl

    where = project.landing_time()
    if where is None:
        from datetime import UTC, datetime

        return datetime.now(UTC)
    table, column = where
    end = lh.scan(table).select(pl.col(column).max()).collect().item()
    return end + timedelta(microseconds=1)


def _skew_sample(lh: Lakehouse, project: Project, n: int, seed: int):
    """Return the request keys of the skew check: the project's hook, else the examples'."""
    from hortus.features import store as fsm

    hook = project.hook(project.features.entities, "features.entities")
    if hook is not None:
        return hook(lh, n, seed)
    fs = project.feature_set()
    keys = sorted({k for g in fs.groups for k in fs.key_columns(g)
                   if k in lh.catalog.get(project.examples.table).column_names})  # fmt: skip
    return fsm.sample_entities(lh, project.examples.table, keys, n, seed)


@_leased(_feature_scopes)
def features(paths: Paths, params: dict) -> dict:
    """Build the offline feature logs, materialise the online store, check their skew.

    Then build the labelled examples (`examples` in hortus.yaml): the spine from the
    project's hook, every feature joined as of the spine's time (point in time).
    """
    import polars as pl

    from hortus.features import store as fsm

    project = Project.load(paths.root)
    fs = project.feature_set()
    if fs is None:
        raise HortusError(
            f"{project.source} declares no `features`: this project has no features stage "
            "(its models train on their `table` directly); remove the stage from dvc.yaml"
        )
    lh = Lakehouse.open(paths.root, stage="features")
    offline = fsm.build_offline(lh, fs)
    logs = fsm.read_logs(lh, fs)
    # the online store serves the state after the last event seen
    at = _now(lh, project)
    from hortus.features.online import open_store

    store = open_store(paths.root, fs, params)  # params.yaml features.online: sqlite or redis
    online = store.materialize(
        logs,
        at,
        {c.full_name: c for c in lh.catalog},
        versions={t: v["version"] for t, v in offline.items()},
        batches=fsm.source_batches(lh, fs),  # what watch batches add later: online_refresh
    )
    skew = fsm.skew_check(
        store,
        logs,
        _skew_sample(lh, project, int(params.get("skew_sample", 500)), int(params.get("seed", 0))),
        tolerance=float(params.get("skew_tolerance", 1e-9)),
    )
    summary: dict[str, Any] = {}
    if project.examples is not None:
        # the labelled examples (gold), features joined as of each spine row
        spec = project.examples
        lh.reads.clear()
        spine = project.hook(spec.build, "examples.build")(lh, dict(params))
        examples = fsm.training_set(lh, fs, spine, spec.time)
        schema = lh.catalog.get(spec.table).schema
        examples = examples.select([pl.col(c).cast(t) for c, t in schema.items()])
        version = lh.write(spec.table, examples, mode="overwrite")
        summary["examples"] = {"table": spec.table, "rows": examples.height, "version": version}
        for m in project.models.values():
            if m.table == spec.table and m.task in ("binary", "ranking"):
                summary["examples"]["positives"] = int(examples[m.target].sum())
                break
    summary |= {
        "offline": offline,
        "online": {
            "path": str(paths.online_store.relative_to(paths.root))
            if store.backend == "sqlite"
            else store.where,
            "rows": online,
            "materialized_at": at.isoformat(),
        },  # fmt: skip
        "features": len(fs.feature_names),
        "skew": skew.to_dict(),
    }
    _write_json(paths.reports / "features.json", summary)
    written = [g.table for g in fs.groups] + ([project.examples.table] if project.examples else [])
    pin_tables(paths, "features", lh, written)
    if not skew.ok:
        raise HortusError(
            f"training/serving skew in {summary['skew']['mismatched_features']}: "
            f"see reports/features.json"
        )
    return summary


def _models(paths: Paths, model: str | None) -> list[str]:
    """Return the model names a stage acts on: `model`, else every model of the project."""
    project = Project.load(paths.root)
    return [project.model(model).name] if model else list(project.models)


def train_dir(paths: Paths, model: str) -> Path:
    """Return the folder of a model's training run outputs (reports/train/<model>/)."""
    return paths.reports / "train" / model


def train(paths: Paths, params: dict, model: str | None = None) -> dict:
    """Run notebooks/train.py headless with papermill, once per model of the project.

    The executed notebook is the record: reports/train/<model>/train.ipynb (and
    train.html, the same as a static page) beside the model artifact, its signature,
    metrics and run.json.
    """
    from hortus.publishing.notebooks import notebook_path, render_html, run_notebook

    out: dict[str, Any] = {}
    for name in _models(paths, model):
        folder = train_dir(paths, name)
        executed = run_notebook(
            notebook_path(paths.root, "train"),
            folder / "train.ipynb",
            # relative to the root (the kernel's working directory): run.json and the
            # executed notebook then name the same paths in every clone
            dict(params) | {"model": name, "output_dir": str(folder.relative_to(paths.root))},
            cwd=paths.root,
        )
        # the executed notebook as a static offline page (charts as inline SVG)
        render_html(executed, folder / "train.html", parameters={"model": name})
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        out[name] = {"notebook": str(executed.relative_to(paths.root)), "sha256": run["sha256"],
                     "metrics": run["metrics"]}  # fmt: skip
    return out


def register(paths: Paths, params: dict, model: str | None = None) -> dict:
    """Register each trained model (reports/train/<model>/) with its build receipt.

    reports/register.json lists every registered model under `models`, and repeats the
    default model's entry at the top level.
    """
    from hortus.models.registry import CHALLENGER, Receipt, Registry
    from hortus.params import load_section

    project = Project.load(paths.root)
    lh = Lakehouse.open(paths.root, stage="register")
    doc = load_section(paths.root / "params.yaml", "train")
    receipt_params = {"train": doc}
    if project.features is not None:
        receipt_params["features"] = load_section(paths.root / "params.yaml", "features")
    models: dict[str, dict] = {}
    for name in _models(paths, model):
        folder = train_dir(paths, name)
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        registry = Registry(lh, name)
        receipt = Receipt.collect(
            paths.root,
            params=receipt_params,
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
        models[name] = {"model_name": name, "version": mv.version, "sha256": mv.artifact_sha256,
                        "aliases": registry.aliases()}  # fmt: skip
    default = project.default_model if project.default_model in models else next(iter(models))
    out = models[default] | {"models": models}
    _write_json(paths.reports / "register.json", out)
    return out


def _registered(paths: Paths) -> dict[str, dict]:
    """Return reports/register.json's models by name."""
    reg = json.loads((paths.reports / "register.json").read_text(encoding="utf-8"))
    return reg.get("models") or {reg["model_name"]: reg}


@_leased(_score_scopes)
def score(paths: Paths, params: dict, model: str | None = None) -> dict:
    """Score with each model's champion; write its predictions table and the prediction log.

    `score.model` picks the version (champion, "registered", or a number); with no
    champion yet and `fallback_to_gated`, the newest version whose gate passed is used
    and reports/score.json says so.  What is scored comes from the model's `scoring` in
    hortus.yaml: the project's hook (`scoring.build`) or the generic batch scorer.
    """
    from hortus.models.registry import Registry
    from hortus.serving import batch as generic

    project = Project.load(paths.root)
    registered = _registered(paths)
    lh = Lakehouse.open(paths.root, stage="score")
    at = _now(lh, project)
    results: dict[str, dict] = {}
    names = [project.model(model).name] if model else [n for n in project.models if n in registered]
    for name in names:
        mdef = project.model(name)
        registry = Registry(lh, name)
        version, note = _scoring_version(registry, params, registered.get(name, {}).get("version"))
        if version is None:
            # nothing may score: the pipeline goes on (monitor, report and docs show why)
            print(f"warning: {note}", file=sys.stderr)
            results[name] = {"model_version": None, "as_of": at.isoformat(), "note": note,
                             "table": mdef.scoring.table, "rows": 0, "skipped": True}  # fmt: skip
            continue
        pipeline, signature = registry.load(version)
        spec = _spec(registry.get(version).spec, f"model {name} v{version}")
        hook = project.hook(mdef.scoring.build, f"models.{name}.scoring.build")
        lh.reads.clear()  # lineage of this model's predictions: what its scoring reads
        if hook is not None:
            table, log = hook(lh, pipeline, signature, spec, at=at, params=dict(params),
                              model_name=name, model_version=version)  # fmt: skip
        else:
            table, log = generic.batch_score(lh, pipeline, signature, spec, mdef, at=at,
                                             model_name=name, model_version=version)  # fmt: skip
        written_by = {"inputs": dict(lh.reads), "model": f"{name}@v{version}",
                      "features": [t.removeprefix("gold.fs_") for t in lh.reads
                                   if t.startswith("gold.fs_")]}  # fmt: skip
        lh.write(mdef.scoring.table, table, mode="overwrite", **written_by)
        lh.write(generic.PREDICTION_LOG, log, mode="append", **written_by)
        summarise = project.hook(mdef.scoring.summary, f"models.{name}.scoring.summary")
        results[name] = {"model_version": version, "as_of": at.isoformat(), "note": note,
                         "table": mdef.scoring.table}  # fmt: skip
        results[name] |= summarise(table) if summarise else generic.summary(table)
    default = project.default_model if project.default_model in results else next(iter(results))
    out = results[default] | {"models": results}
    _write_json(paths.reports / "score.json", out)
    pin_tables(paths, "score", lh, [project.model(n).scoring.table for n in results])
    return out


def _scoring_version(registry, params: dict, registered: int | None) -> tuple[int | None, str]:
    """Return (version, note) of the version `score.model` picks for one model.

    With `score.model: champion`, no champion and no version whose gate passed, the
    version is None: nothing is scored, and the note says why and what to do.
    """
    ref = params.get("model", "registered")
    note = ""
    if ref == "champion" and "champion" not in registry.aliases():
        # before any champion exists, a new project scores with the newest version whose
        # latest gate passed, flagged as such; never with an ungated or failed one
        gated = registry.newest_gated()
        if not params.get("fallback_to_gated", True) or gated is None:
            return None, (
                f"nothing scored: no champion of {registry.name}, and no version passed its "
                "gate (see reports/gate.json and reports/gate/); fix the failed checks, then "
                "approve and promote a gated version (`hortus models approve/promote`)"
            )
        ref = gated
        note = (
            f"no champion yet: scored with v{ref}, the newest version that passed its gate "
            "(awaiting four-eyes approval and promotion)"
        )
    if ref == "registered":
        if registered is None:
            raise HortusError(f"model {registry.name} was not registered by this run")
        return int(registered), note
    return registry.get(ref).version, note


def _spec(doc: dict | None, where: str):
    from hortus.models.modeling import ModelSpec

    if not doc:
        raise HortusError(f"{where} has no training spec recorded; re-register it")
    return ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()})


def gate(
    paths: Paths, params: dict, version: str | int | None = None, model: str | None = None
) -> dict:
    """Run the promotion gate on registered versions (default: those this repro registered).

    With `version`, gate that version of `model` (default: the project's default model);
    without, every model of reports/register.json at the version registered.
    reports/gate.json holds the default model's result at the top level and every
    model's under `models`.
    """
    project = Project.load(paths.root)
    if version is not None:
        targets = {project.model(model).name if model else project.default_model: version}
    else:
        registered = _registered(paths)
        names = [project.model(model).name] if model else list(registered)
        targets = {n: registered[n]["version"] for n in names}
    from hortus.executor import analytics
    from hortus.executor.base import executor_for

    # drift, the segment bootstrap and importance as executor tasks above their sizes
    with analytics.use(executor_for(paths.root)):
        results = {n: _gate_one(paths, params, project, n, v) for n, v in targets.items()}
    default = project.default_model if project.default_model in results else next(iter(results))
    summary = results[default] | {"models": results}
    _write_json(paths.reports / "gate.json", summary)
    return summary


def _gate_one(paths: Paths, params: dict, project: Project, name: str, version) -> dict:
    """Gate one version of one model.

    Data tests (the model table's contract, PII scan of silver and gold, drift between
    the training rows and the hold-out, training/serving skew where the project has
    features) and model tests on the hold-out (segments, fairness, importance, schema
    conflicts on a serving sample, efficiency against the champion, behaviour).  The
    result goes to ops.gate_results and reports/gate/<model>/v<N>.{json,md}; the first version
    that passes becomes champion when there is none (`champion_if_none`).
    """
    import dataclasses

    import polars as pl
    from threadpoolctl import threadpool_limits

    from hortus.checks import gate as g
    from hortus.checks import pii_scan
    from hortus.checks._champion import champion_comparison, floors_check
    from hortus.checks.model_checks import efficiency
    from hortus.features import store as fsm
    from hortus.features.definitions import feature_lineage
    from hortus.models import modeling
    from hortus.models.registry import CHAMPION, Registry
    from hortus.monitoring.drift import increments_for
    from hortus.project.definition import resolve_features, training_rows
    from hortus.provenance import git_state

    lh = Lakehouse.open(paths.root, stage="gate")
    mdef = project.model(name)
    registry = Registry(lh, name)
    mv = registry.get(version)
    pipeline, signature = registry.load(mv.version)
    spec = _spec(mv.spec, f"model {name} v{mv.version}")
    config = g.GateConfig.from_dict({k: params[k] for k in g.GATE_SECTIONS if k in params})
    contract = lh.catalog.get(mdef.table)
    if not config.model.sensitive:  # default: the declared (or contract's) sensitive features
        _, _, sensitive = resolve_features(mdef, lh.catalog, project.feature_set())
        sensitive = tuple(c for c in sensitive if c in spec.features)
        config = dataclasses.replace(
            config, model=dataclasses.replace(config.model, sensitive=sensitive)
        )
    examples = training_rows(lh, mdef)
    train_df, test_df, cutoff = modeling.time_split(examples, spec)
    reference = train_df
    if config.reference_days is not None and spec.time and cutoff is not None:
        reference = train_df.filter(
            pl.col(spec.time) >= cutoff - timedelta(days=config.reference_days)
        )
    scan = pii_scan.scan_lakehouse(
        lh, ("silver", "gold"), min_rows=config.pii_min_rows, sample_rows=config.pii_sample_rows
    )
    data_checks = [
        g.contract_check(examples, contract),
        g.pii_check(scan),
        g.drift_check(
            train_df if config.calibration is not None else reference,
            test_df,
            [*spec.features, spec.target],
            max_drifted_share=config.max_drifted_share,
            critical=config.critical,
            config=config.drift,
            time=spec.time,
            calibration=config.calibration,
            increments=increments_for(project, spec.features),
            lineage=feature_lineage(project.feature_set()) if project.features else None,
        ),
    ]
    if project.features is not None and paths.online_store.exists():
        fs = project.feature_set()
        skew = fsm.skew_check(
            fsm.OnlineStore(paths.online_store, fs),
            fsm.read_logs(lh, fs),
            _skew_sample(lh, project, config.skew_sample, config.skew_seed),
            tolerance=config.skew_tolerance,
        )
        data_checks.append(g.skew_check(skew))
    serving = _serving_sample(lh, project, mdef, int(params.get("serving_users", 100)))
    # Score single-threaded: on a shared 2-core machine OpenMP threads oversubscribe
    # (measured 4x slower under load), and candidate and champion are timed alike.
    with threadpool_limits(1):
        champion = registry.aliases().get(CHAMPION)
        baseline = None
        if champion is not None and champion != mv.version:
            champ_pipeline, _ = registry.load(champion)
            champ_spec = _spec(registry.get(champion).spec, f"champion v{champion}")
            baseline = efficiency(champ_pipeline, test_df, champ_spec, **config.model.efficiency)
            # the champion scored on the candidate's hold-out, paired bootstrap
            data_checks.append(
                champion_comparison(
                    pipeline,
                    spec,
                    champ_pipeline,
                    champ_spec,
                    test_df,
                    champion_version=champion,
                    **config.champion,
                )  # fmt: skip
            )
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
    if baseline is None and (champion is None or champion == mv.version):
        # a first version is judged against absolute floors, latency included
        stats = next((c.stats for c in result.checks if c.name == "efficiency"), {})
        result.checks.append(floors_check(mv.metrics, stats, config.floors))
    report = g.record(
        registry,
        result,
        paths.reports / "gate" / name,
        git_commit=git_state.__wrapped__(paths.root)[0],
    )
    # event-driven monitoring: a failed gate is an event its subscribed rules act on at once;
    # a passed one resolves the model's gate_failed alert
    from hortus.monitoring import events

    events.emit(
        lh,
        "gate_passed" if result.passed else "gate_failed",
        f"{name}:v{mv.version}",
        {"run_id": result.run_id, "failed": [c.name for c in result.failed]},
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
    return result.summary() | {
        "report": str(report.relative_to(paths.root)),
        "promoted_to_champion": promoted,
        "promotion": promotion,
        "failed_checks": [c.summary() for c in result.failed],
    }


def _serving_sample(lh: Lakehouse, project: Project, mdef, n: int):
    """Return what a scoring run would feed the model: the project's hook, else source rows."""
    from hortus.serving.batch import select_rows

    hook = project.hook(mdef.scoring.serving, f"models.{mdef.name}.scoring.serving")
    if hook is not None:
        return hook(lh, _now(lh, project), users=n, seed=0)
    rows = select_rows(lh.read(mdef.scoring.source), mdef)
    return rows.sample(min(n, rows.height), seed=0) if rows.height else rows


def alert_setup(paths: Paths, params_file: Path | None = None) -> tuple[list, dict]:
    """Return the alert rules and sinks of the `alerts` section (default: params.yaml)."""
    from hortus.monitoring.events import load_config

    config = load_config(paths.root, params_file)  # also parses alerts.actions
    return list(config.rules), dict(config.sinks)


def monitor(paths: Paths, params: dict) -> dict:
    """Batch monitoring: run every monitor, append ops.monitor_metrics, evaluate alert rules.

    Alert rules and sinks come from params.yaml's `alerts` section (JSONL file sinks are
    relative to the project root); firing alerts are deduplicated across runs and
    resolved when their condition clears (ops.alerts).
    """
    from hortus.lakehouse import maintain as maint
    from hortus.monitoring import alerts, monitors

    lh = Lakehouse.open(paths.root, stage="monitor")
    config = monitors.MonitorConfig.from_dict(params, source="params.yaml monitor")
    # compaction, checkpoints, retention and vacuum first (params.yaml maintain:, optional)
    mconfig = maint.config_from_params(paths.root)
    maintained = maint.summary(maint.maintain(lh, config=mconfig)) if mconfig.enabled else None
    from hortus.executor import analytics
    from hortus.executor.base import executor_for

    with analytics.use(executor_for(paths.root)):  # drift as tasks above its size (on Ray)
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
        "maintain": maintained,
    }
    _write_json(paths.reports / "monitor.json", out)
    return out


STAGES = {"ingest": ingest, "silver": silver, "kpis": kpis, "features": features,
          "train": train, "register": register, "gate": gate, "score": score,
          "monitor": monitor, "docs": docs}  # fmt: skip
