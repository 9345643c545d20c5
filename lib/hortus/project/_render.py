"""Rendering the files of a new project from a draft (contract, hortus.yaml, templates).

The templates are in `templates/init/` next to this module.
Re-exported by `hortus.project.scaffold`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hortus.project._draft import Draft, InitError

TEMPLATES = Path(__file__).parent / "templates" / "init"
NOTEBOOKS = ("explore", "train", "monitor", "model_report")


def hortus_checkout() -> Path:
    """Return the Hortus checkout this package runs from (the folder with its pyproject)."""
    here = Path(__file__).resolve()
    root = next(
        (p for p in here.parents if (p / "pyproject.toml").exists() and (p / "notebooks").is_dir()),
        None,
    )
    if root is None:
        raise InitError(
            f"hortus init needs a Hortus source checkout (lib/hortus, notebooks/); this "
            f"hortus runs from {Path(__file__).parent}: install it from the checkout "
            "(`uv sync` or `pip install -e <checkout>`)"
        )
    return root


def _flow(value: Any) -> str:
    """Return a value as one line of YAML (flow style), quoted where YAML needs it."""
    text = yaml.safe_dump([value], default_flow_style=True, width=100_000, sort_keys=False)
    return text.strip()[1:-1]


CONTRACT_HEADER = """\
# Data contract of {name}, drafted by `hortus init` from {source} ({rows} rows).
# A DRAFT: confirm every line.  Ranges and allowed values are the ones observed in
# the file: new data outside them is quarantined, so widen them where the data may go.
#
# One contract per table drives: ingest validation and quarantine rules, PII
# tokenisation, the model input signature and the generated data dictionary.
# Column keys:
#   type:     string | int | float | bool | date | datetime   (datetime = UTC, microseconds)
#   nullable: false means the value is required (rule `required`)
#   min/max:  numeric or temporal bounds (rules `min` / `max`); a datetime max of
#             "@export" means "not after the landing file's export time" (file date + 1 day)
#             plus the silver `future_tolerance` parameter; "@shop_opened" is the
#             top-level `shop_opened` (the earliest time in the data, at midnight UTC)
#   allowed:  closed set of values (rule `allowed`)
#   pattern:  regular expression the whole value must match (rule `pattern`)
#   pii:      none | direct | quasi | free_text
#             direct    -> replaced by a keyed HMAC token in silver (raw stays in restricted bronze)
#             quasi     -> kept (masked on read for users without `unmask`)
#             free_text -> e-mails, phones, cards, IBANs, IPs and dates redacted in silver
#   sensitive: true marks attributes used for fairness/segment checks (confirm each)
# Table keys: layer, description, owner, freshness_sla_hours, primary_key,
#   landing (glob under data/ and format csv | jsonl; files may be gzip-compressed)
"""


def render_contract(d: Draft) -> str:
    """Return contracts.yaml: the draft contract of the one table, with comments."""
    lines = [CONTRACT_HEADER.format(name=d.table, source=d.source.name, rows=d.rows)]
    lines.append("version: 1")
    lines.append(f"domain: {d.name}")
    if d.shop_opened:
        lines.append(f'shop_opened: "{d.shop_opened}"  # the earliest {d.time} (midnight UTC)')
    lines += ["", "tables:", f"  {d.table}:", "    layer: silver"]
    lines.append(f"    description: {_flow(f'TODO: describe the table (from {d.source.name}).')}")
    lines.append("    owner: data-engineers  # TODO: the team that owns this data")
    lines.append("    freshness_sla_hours: null  # TODO: hours between new files, when known")
    ids = [c.name for c in d.columns if c.role == "id" and c.distinct == d.rows]
    if ids:
        lines.append(f"    primary_key: {_flow(ids[:1])}  # unique per row in the file")
    if d.time:
        lines.append(f"    order_by: {d.time}")
    lines.append(f'    landing: {{glob: "{d.table}/*.csv*", format: csv}}')
    lines.append("    columns:")
    width = max(len(c.name) for c in d.columns) + 1
    for c in d.columns:
        key = _flow(c.name)
        comment = f"  # {c.why}" if c.why else ""
        body = _flow(c.contract(time=c.name == d.time))
        lines.append(f"      {(key + ':').ljust(width + 1)} {body}{comment}")
    return "\n".join(lines) + "\n"


def render_project(d: Draft) -> str:
    """Return hortus.yaml: one model on the silver table, no features/examples/kpis."""
    sens = d.sensitive
    features = d.features
    lines = [
        "# The project definition (hortus.project), drafted by `hortus init`.  Every stage,",
        "# CLI command, monitor, notebook, report and the docs site reads it.  Tunable",
        "# numbers stay in params.yaml; this file says *what* the project is.",
        "version: 1",
        f"name: {d.name}",
        f"description: {_flow(f'TODO: what {d.name} is for (from {d.source.name}).')}",
        "contracts: contracts.yaml",
        "# no `features`, `examples` or `kpis`: the model trains on its silver table directly",
        "models:",
        f"  {d.name}:",
        f"    description: {_flow(f'Predicts {d.target} ({d.task}).')}",
        f"    task: {d.task}",
        f"    table: silver.{d.table}",
        f"    target: {_flow(d.target)}",
        "    # every column without another role (identifiers, direct personal data and",
        "    # dates of birth are left out).  Sensitive attributes are features: the gate",
        "    # judges fairness across the sensitive features (and fails one that ranks high",
        "    # in importance); one you drop from here is no longer judged",
        f"    features: {_flow(features)}",
        "    categorical: auto  # the string and bool features",
    ]
    if d.time:
        lines.append(f"    time: {_flow(d.time)}  # the hold-out is the latest rows")
    lines.append("    # metrics per value of each (low-cardinality string columns)")
    lines.append(f"    segments: {_flow(d.segments)}")
    if sens:
        lines.append("    # confirm: fairness is judged across the groups of each")
        lines.append(f"    sensitive: {_flow(sens)}")
    else:
        lines.append("    sensitive: auto  # none found by name: list them when there are")
    lines.append("    # identifiers: never features; changing one must not change a prediction")
    lines.append(f"    ids: {_flow(d.ids)}")
    return "\n".join(lines) + "\n"


def _metric(task: str) -> str:
    from hortus.models.modeling import primary_metric

    return primary_metric(task)[0]


def render_params(d: Draft) -> str:
    """Return params.yaml: the generic sections of the Hortus example, for this model."""
    metric = _metric(d.task)
    segment_metric = {"binary": "roc_auc"}.get(d.task, metric)
    invariance = _flow(d.ids)
    text = (TEMPLATES / "params.yaml").read_text(encoding="utf-8")
    reps = {
        "@@MODEL@@": d.name,
        "@@TARGET@@": d.target,
        "@@SEGMENT_METRIC@@": segment_metric,
        "@@INVARIANCE@@": invariance,
        "@@REFERENCE_DAYS@@": "null",
    }
    for k, v in reps.items():
        text = text.replace(k, v)
    return text


def render_dvc(d: Draft) -> str:
    """Return dvc.yaml: the generic stages, with deps on this project's own files."""
    text = (TEMPLATES / "dvc.yaml").read_text(encoding="utf-8")
    metric = _metric(d.task)
    curve_y = {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "rmse"}[d.task]
    del metric
    return (
        text.replace("@@MODEL@@", d.name)
        .replace("@@TABLE@@", d.table)
        .replace("@@CURVE_Y@@", curve_y)
    )


def _fill(text: str, d: Draft, checkout: Path) -> str:
    roles = "; ".join(
        f"{role}: {', '.join(names)}"
        for role, names in (
            ("target", [d.target]),
            ("time", [d.time] if d.time else []),
            ("features", d.features),
            ("ids", d.ids),
            ("direct personal data (tokenised)", d.direct),
            ("sensitive (confirm)", d.sensitive),
            ("segments", d.segments),
            ("not used", [c.name for c in d.columns if c.role in ("constant", "unused", "text")]),
        )
        if names
    )
    note = (
        " (converted to CSV with datetimes as ISO 8601 UTC)"
        if d.landing != _source_bytes(d)
        else " (the same bytes)"
    )
    reps = {
        "@@NAME@@": d.name,
        "@@MODEL@@": d.name,
        "@@TABLE@@": d.table,
        "@@TARGET@@": d.target,
        "@@TASK@@": d.task,
        "@@SOURCE@@": d.source.name,
        "@@ROWS@@": f"{d.rows:,}",
        "@@HORTUS_ROOT@@": str(checkout),
        "@@LANDING@@": d.landing_name,
        "@@LANDING_NOTE@@": note,
        "@@ROLES@@": roles,
        "@@SENSITIVE_GLOBS@@": _flow([f"silver.{d.table}.{c}" for c in d.sensitive]),
    }
    for k, v in reps.items():
        text = text.replace(k, v)
    return text


def _source_bytes(d: Draft) -> bytes:
    return d.source.read_bytes() if d.source.suffix.lower() == ".csv" else b""


def files(d: Draft, checkout: Path) -> dict[str, bytes]:
    """Return every file of the new project (relative path -> bytes), data included."""
    out: dict[str, str | bytes] = {
        "contracts.yaml": render_contract(d),
        "hortus.yaml": render_project(d),
        "params.yaml": render_params(d),
        "dvc.yaml": render_dvc(d),
        f"data/{d.table}/{d.landing_name}": d.landing,
    }
    for rel in ("Makefile", "README.md", "pyproject.toml", "access_policy.yaml",
                "tests/conftest.py", "tests/test_data.py", "tests/test_pipeline.py"):  # fmt: skip
        out[rel] = _fill((TEMPLATES / rel).read_text(encoding="utf-8"), d, checkout)
    out[".gitignore"] = (TEMPLATES / "gitignore").read_text(encoding="utf-8")
    out[".dvcignore"] = (TEMPLATES / "dvcignore").read_text(encoding="utf-8")
    for nb in NOTEBOOKS:
        out[f"notebooks/{nb}.py"] = (checkout / "notebooks" / f"{nb}.py").read_bytes()
    return {k: v.encode("utf-8") if isinstance(v, str) else v for k, v in out.items()}
