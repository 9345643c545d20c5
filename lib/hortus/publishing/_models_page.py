"""The models page: registered versions with aliases, gates, approvals and published reports.

Re-exported by `hortus.publishing.site`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from hortus.governance.access import AccessDenied
from hortus.lakehouse.tables import Lakehouse
from hortus.publishing._html import _esc, page_html


@dataclass
class _Report:
    """A published model report folder reports/models/<model>/<N>/ (card.json optional)."""

    html: Path | None
    card: dict = field(default_factory=dict)
    card_error: str = ""


def read_model_report(reports: Path, model: str, version: int) -> _Report:
    """Return the published report of a model version (its HTML and card.json, if any)."""
    folder = reports / "models" / model / str(version)
    page = folder / "model_report.html"
    card_path = folder / "card.json"
    report = _Report(page if page.is_file() else None)
    if card_path.is_file():
        try:
            report.card = json.loads(card_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            report.card_error = f"{card_path.name} is not valid JSON ({exc.msg})"
    return report


def card_verdict(card: dict) -> bool | None:
    """Return the governance checklist's verdict of a card.json (True passed), if it has one.

    card.json is `hortus.publishing.model_card.ModelCard.summary()`: `verdict` is "pass" or "fail"
    and `passed` the same as a boolean; `failed` lists the failed checklist items.

    Examples
    --------
    >>> card_verdict({"verdict": "fail", "passed": False}), card_verdict({})
    (False, None)
    """
    verdict = card.get("verdict")
    if verdict in ("pass", "fail"):
        return verdict == "pass"
    passed = card.get("passed")
    return passed if isinstance(passed, bool) else None


def _metrics_text(metrics: dict) -> str:
    shown = []
    for k, v in sorted(metrics.items()):
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        shown.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v:,}")
    return "<br>".join(f"<code>{_esc(s)}</code>" for s in shown) or "<span class='note'>-</span>"


def model_versions(lh: Lakehouse) -> dict[str, list[dict]]:
    """Return, per registered model name, its versions with aliases, gate and approvals.

    Reads ops.model_versions, ops.model_aliases, ops.gate_results and ops.model_approvals
    through the registry as the Lakehouse's user (AccessDenied if not allowed).  Each
    version is a dict: version, created_at, author, aliases, metrics, gate (latest run or
    None: passed, run_id, finished_at, failed_checks, report) and approvals (list of
    approver, approved_at, reason).  Newest version first.
    """
    from hortus.models.registry import Registry, model_names

    out: dict[str, list[dict]] = {}
    for name in model_names(lh):
        reg = Registry(lh, name)
        gates = reg.gates()
        last = (
            gates.sort("finished_at").group_by("version", maintain_order=True).last()
            if gates.height
            else gates
        )
        latest = {r["version"]: r for r in last.iter_rows(named=True)}
        approvals = reg.approvals()
        rows = []
        for mv in reversed(reg.versions()):
            gate = latest.get(mv.version)
            mine = approvals.filter(pl.col("version") == mv.version)
            rows.append(
                {
                    "version": mv.version,
                    "created_at": mv.created_at,
                    "author": mv.author,
                    "aliases": list(mv.aliases),
                    "metrics": mv.metrics,
                    "gate": None
                    if gate is None
                    else {
                        "passed": bool(gate["passed"]),
                        "run_id": gate["run_id"],
                        "finished_at": gate["finished_at"],
                        "failed_checks": gate["failed_checks"],
                        "report": gate["report"],
                    },
                    "approvals": mine.select("approver", "approved_at", "reason").to_dicts(),
                }
            )
        out[name] = rows
    return out


def _gate_cell(gate: dict | None, docs_dir: Path, model: str) -> str:
    if gate is None:
        return "<span class='note'>not gated</span>"
    verdict = (
        "<span class='ok'>passed</span>" if gate["passed"] else "<span class='fail'>failed</span>"
    )
    when = f"{gate['finished_at']:%Y-%m-%d %H:%M} UTC" if gate["finished_at"] else ""
    failed = gate["failed_checks"]
    failed = ", ".join(failed) if isinstance(failed, list) else str(failed or "")
    text = f"{verdict} <span class='note'>run {_esc(gate['run_id'])}, {when}</span>"
    if failed and not gate["passed"]:
        text += f"<br>failed: {_esc(failed)}"
    stem = Path(str(gate.get("report") or "")).stem
    if stem and (docs_dir / "gate" / model / f"{stem}.html").is_file():
        text += f"<br><a href='gate/{_esc(model)}/{_esc(stem)}.html'>gate report</a>"
    return text


def models_page(lh: Lakehouse, reports: Path, docs_dir: Path) -> str:
    """Render the registered models with aliases, gates, approvals, metrics and report links."""
    from hortus.models.registry import CHAMPION

    body = [
        "<p>Every registered model version (<code>ops.model_versions</code>) with its aliases "
        "(<code>champion</code> serves production; <code>challenger</code> is the newest "
        "candidate), its latest gate run, its approvals (four eyes: an approver who is not the "
        "author) and its metrics, read as user "
        f"<code>{_esc(lh.user)}</code>. The report of a version is published by "
        "<code>hortus notebooks publish VERSION</code> (the <code>report</code> stage publishes "
        "the champion's).</p>"
    ]
    try:
        models = model_versions(lh)
    except AccessDenied as exc:
        body.append(f"<p class='fail'>Not readable as user {_esc(lh.user)}: {_esc(exc)}</p>")
        return page_html("Models", "\n".join(body))
    if not models:
        body.append("<p class='note'>No model registered yet (run the pipeline: "
                    "<code>dvc repro</code>).</p>")  # fmt: skip
    for name, versions in models.items():
        champion = next((v for v in versions if CHAMPION in v["aliases"]), None)
        prod = (
            f"production: <span class='badge champion'>champion v{champion['version']}</span>"
            if champion
            else "<span class='note'>no champion yet (awaiting a passed gate, an approval and "
            "a promotion)</span>"
        )
        body.append(f"<h2 id='model-{_esc(name)}'><code>{_esc(name)}</code></h2><p>{prod}</p>")
        if (docs_dir / f"compare_{name}.html").is_file():  # written by build_site first
            body.append(
                f"<p><a href='compare_{_esc(name)}.html'>compare the champion and the newest "
                "versions</a> (params, metrics per segment, gate, data, latency)</p>"
            )
        rows = []
        for v in versions:
            aliases = (
                "".join(f"<span class='badge {_esc(a)}'>{_esc(a)}</span>" for a in v["aliases"])
                or "<span class='note'>-</span>"
            )
            approvals = (
                "<br>".join(
                    f"{_esc(a['approver'])} <span class='note'>{a['approved_at']:%Y-%m-%d}</span>"
                    for a in v["approvals"]
                )
                or "<span class='note'>none</span>"
            )
            rep = read_model_report(reports, name, v["version"])
            card_model = rep.card.get("model")
            other = isinstance(card_model, str) and card_model != name
            if rep.html is not None and not other:
                verdict = card_verdict(rep.card)
                link = (
                    f"<a href='../models/{_esc(name)}/{v['version']}/model_report.html'>"
                    "model report</a>"
                )
                if verdict is not None:
                    word = "passes" if verdict else "fails"
                    cls = "ok" if verdict else "fail"
                    link += f"<br>checklist <span class='{cls}'>{word}</span>"
                    failed = rep.card.get("failed") or []
                    if not verdict and isinstance(failed, list) and failed:
                        link += f": {_esc(', '.join(map(str, failed)))}"
                if rep.card_error:
                    link += f"<br><span class='note'>{_esc(rep.card_error)}</span>"
            elif other:
                link = (
                    f"<span class='note'>reports/models/{_esc(name)}/{v['version']} holds a "
                    "report of "
                    f"{_esc(card_model)}</span>"
                )
            else:
                link = (
                    f"<span class='note'>not published (<code>hortus notebooks publish "
                    f"{v['version']} --model {_esc(name)}</code>)</span>"
                )
            rows.append(
                f"<tr id='{_esc(name)}-v{v['version']}'><td><strong>v{v['version']}</strong></td>"
                f"<td>{aliases}</td><td>{v['created_at']:%Y-%m-%d %H:%M} UTC<br>"
                f"<span class='note'>by {_esc(v['author'])}</span></td>"
                f"<td>{_gate_cell(v['gate'], docs_dir, name)}</td><td>{approvals}</td>"
                f"<td>{_metrics_text(v['metrics'])}</td><td>{link}</td></tr>"
            )
        body.append(
            "<table><thead><tr><th>version</th><th>aliases</th><th>registered</th><th>gate</th>"
            "<th>approvals</th><th>metrics</th><th>report</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    return page_html("Models", "\n".join(body))
