"""The architecture page: the data flow, the pipeline DAG and the stages of dvc.yaml.

Re-exported by `hortus.publishing.site`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from hortus.errors import HortusError
from hortus.lakehouse.tables import Lakehouse
from hortus.publishing._dag import Dag, dag_svg
from hortus.publishing._html import _esc, page_html

# The data flow of the design, step by step, with the catalogued tables each step
# writes (name patterns matched against the catalog, so new tables appear by themselves);
# `data_flow` adds the tables the project definition names (KPIs, feature logs,
# examples, predictions).
DATA_FLOW: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("bronze", "raw rows, append-only, idempotent ingest", ("bronze.*",)),
    (
        "silver",
        "typed, deduplicated, contract-checked; PII tokenised",
        ("silver.*", "quarantine.*"),
    ),
    ("gold", "daily KPIs and derived tables", ()),
    ("features", "offline logs (as-of joins), online store, labelled examples", ()),
    ("model", "notebooks/train.py via papermill; skops + signature", ()),
    ("registry", "versions with build receipts; aliases", ("ops.model_*",)),
    ("gate", "data and model tests; four-eyes promotion", ("ops.gate_results",)),
    ("score", "batch scoring with each champion", ("ops.prediction_log",)),
    (
        "monitor",
        "freshness, quality, drift, staleness; alerts",
        ("ops.monitor_metrics", "ops.alert*", "ops.events", "ops.pipeline_runs"),
    ),
)


def data_flow(project: Any | None) -> list[tuple[str, str, tuple[str, ...]]]:
    """Return `DATA_FLOW` with the tables the project definition names added to their steps.

    gold: the KPI table (`kpis.table`); features: the feature set's offline logs and
    the examples table; score: each model's predictions table.  Without a project
    definition, the generic patterns only.
    """
    named: dict[str, list[str]] = {"gold": [], "features": [], "score": []}
    if project is not None:
        if project.kpis is not None:
            named["gold"].append(project.kpis.table)
        fs = project.feature_set()
        if fs is not None:
            named["features"] += [g.table for g in fs.groups]
        if project.examples is not None:
            named["features"].append(project.examples.table)
        named["score"] += [m.scoring.table for m in project.models.values()]
    return [(step, role, (*named.get(step, ()), *pats)) for step, role, pats in DATA_FLOW]


def dataflow_svg(steps: Iterable[tuple[str, str]]) -> str:
    """Draw the data-flow steps (name, one-line role) left to right as inline SVG."""
    steps = list(steps)
    bw, gap, h = 126, 30, 64
    width = len(steps) * (bw + gap) - gap + 20
    parts = []
    for i, (name, role) in enumerate(steps):
        x = 10 + i * (bw + gap)
        words, lines, cur = role.split(), [], ""
        for w in words:
            if len(cur) + len(w) + 1 > 20 and cur:
                lines.append(cur)
                cur = w
            else:
                cur = f"{cur} {w}".strip()
        lines.append(cur)
        sub = "".join(f"<tspan x='{x + bw / 2}' dy='13'>{_esc(t)}</tspan>" for t in lines[:3])
        parts.append(
            f"<rect x='{x}' y='10' width='{bw}' height='{h + 26}' rx='8' fill='#ddf4ff' "
            f"stroke='#0969da'/><text x='{x + bw / 2}' y='30' text-anchor='middle' "
            f"font-size='15' font-weight='600'>{_esc(name)}</text>"
            f"<text x='{x + bw / 2}' y='36' text-anchor='middle' font-size='10.5' "
            f"fill='#57606a'>{sub}</text>"
        )
        if i:
            parts.append(
                f"<path d='M{x - gap + 2},{10 + (h + 26) / 2} H{x - 2}' stroke='#57606a' "
                "stroke-width='1.6' marker-end='url(#flow)'/>"
            )
    return (
        f"<svg role='img' aria-label='data flow' viewBox='0 0 {width} {h + 46}' "
        f"width='{width}' height='{h + 46}' style='max-width:100%;height:auto'>"
        "<defs><marker id='flow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' "
        "markerHeight='7' orient='auto'><path d='M0,0 L10,5 L0,10 z' fill='#57606a'/>"
        "</marker></defs>" + "".join(parts) + "</svg>"
    )


def _match(name: str, patterns: Iterable[str]) -> bool:
    from fnmatch import fnmatchcase

    return any(fnmatchcase(name, p) for p in patterns)


def _as_list(items: Any) -> list[str]:
    """Flatten dvc.yaml deps/outs/params entries (str, {path: opts} or {file: [keys]})."""
    out = []
    for item in items or []:
        if isinstance(item, dict):
            for k, v in item.items():
                if isinstance(v, list):  # params from another file
                    out += [f"{k}: {x}" for x in v]
                elif isinstance(v, dict) and v:
                    opts = ", ".join(f"{o}: {str(w).lower()}" for o, w in v.items())
                    out.append(f"{k} ({opts})")
                else:
                    out.append(str(k))
        else:
            out.append(str(item))
    return out


def load_stages(root: Path) -> dict[str, dict]:
    """Return the stages of dvc.yaml (empty when the project has no dvc.yaml)."""
    path = root / "dvc.yaml"
    if not path.exists():
        return {}
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    stages = doc.get("stages") or {}
    if not isinstance(stages, dict):
        raise HortusError(f"{path}: `stages` is not a mapping")
    return stages


def _items(values: list[str]) -> str:
    if not values:
        return "<span class='note'>-</span>"
    return "<br>".join(f"<code>{_esc(v)}</code>" for v in values)


def architecture_page(root: Path, lh: Lakehouse, dag: Dag | None, stages: dict[str, dict]) -> str:
    """Render the architecture page: data flow, pipeline DAG, mermaid listing, stages."""
    from hortus.project.definition import Project, ProjectError

    try:
        project = Project.load(root)
    except ProjectError:
        project = None
    flow = data_flow(project)
    names = sorted(c.full_name for c in lh.catalog)
    rows = []
    for step, role, patterns in flow:
        tables = [n for n in names if _match(n, patterns)]
        shown = (
            ", ".join(f"<code>{_esc(t)}</code>" for t in tables) or "<span class='note'>-</span>"
        )
        rows.append(
            f"<tr><td><strong>{_esc(step)}</strong></td><td>{_esc(role)}</td><td>{shown}</td></tr>"
        )
    body = [
        "<p>Generated from the system by <code>hortus docs</code> (DVC stage <code>docs</code>): "
        "the catalog, <code>dvc dag</code> and <code>dvc.yaml</code>. Do not edit.</p>",
        "<h2 id='data-flow'>Data flow</h2>",
        "<p>The web app's exports land in <code>data/</code> (pinned by <code>data.dvc</code>); "
        "every step below reads and writes Delta tables through the access-checked "
        "<code>hortus.lakehouse.tables.Lakehouse</code>.</p>",
        f"<figure class='diagram'>{dataflow_svg((s, r) for s, r, _ in flow)}</figure>",
        "<table><thead><tr><th>step</th><th>role</th><th>catalogued tables</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>",
        "<h2 id='pipeline-dag'>Pipeline DAG</h2>",
    ]
    if dag is None:
        body.append("<p class='note'>This project has no <code>dvc.yaml</code>: no pipeline.</p>")
    else:
        body += [
            f"<p>As reported by <code>dvc dag --dot</code>: {len(dag.nodes)} nodes, "
            f"{len(dag.edges)} edges (blue: stages of <code>dvc.yaml</code>; yellow: "
            "<code>.dvc</code> files). An edge means the target stage depends on an output "
            "of the source.</p>",
            f"<figure class='diagram'>{dag_svg(dag, stage_names=stages)}</figure>",
            f"<details><summary>Edges ({len(dag.edges)})</summary><table><thead><tr><th>from"
            "</th><th>to</th></tr></thead><tbody>"
            + "".join(
                f"<tr><td><code>{_esc(a)}</code></td><td><code>{_esc(b)}</code></td></tr>"
                for a, b in dag.edges
            )
            + "</tbody></table></details>",
            "<h3>Mermaid (<code>dvc dag --md</code>)</h3>",
            f"<pre>{_esc(dag.mermaid.strip())}</pre>",
            f"<details><summary>Graphviz dot (<code>dvc dag --dot</code>)</summary>"
            f"<pre>{_esc(dag.dot.strip())}</pre></details>",
        ]
    body.append("<h2 id='stages'>Stages of dvc.yaml</h2>")
    if not stages:
        body.append("<p class='note'>No stages.</p>")
    else:
        body.append(
            "<table><thead><tr><th>stage</th><th>cmd</th><th>deps</th><th>params</th>"
            "<th>outs, metrics, plots</th></tr></thead><tbody>"
        )
        for name, st in stages.items():
            outs = _as_list(st.get("outs"))
            outs += [f"{m} [metric]" for m in _as_list(st.get("metrics"))]
            outs += [f"{p} [plot]" for p in _as_list(st.get("plots"))]
            body.append(
                f"<tr id='stage-{_esc(name)}'><td><strong>{_esc(name)}</strong></td>"
                f"<td><code>{_esc(st.get('cmd', ''))}</code></td>"
                f"<td>{_items(_as_list(st.get('deps')))}</td>"
                f"<td>{_items(_as_list(st.get('params')))}</td><td>{_items(outs)}</td></tr>"
            )
        body.append("</tbody></table>")
    return page_html("Architecture", "\n".join(body))
