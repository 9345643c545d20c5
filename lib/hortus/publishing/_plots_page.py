"""docs/plots.html: every plot `dvc plots show` returns, drawn offline as inline SVG.

DVC's own page (`dvc plots show` without --json) loads Vega from a CDN, so it is blank
offline.  Here `dvc plots show --json` (run in the project root) gives complete Vega-Lite
specs with the data inlined; each is rendered by vl-convert through
`hortus.publishing.notebooks.chart_html` (a spec it cannot draw is shown as its data).
Image plots are embedded as data URIs.  When the project has no dvc.yaml, or dvc fails,
the page says so.

Re-exported by `hortus.publishing.site`.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from hortus.publishing._dag import _dvc
from hortus.publishing._html import _esc, page_html
from hortus.publishing.notebooks import chart_html

PLOTS_PAGE = "plots.html"
PLOTS_NOTE = "Plots: every plot of `dvc plots show`, drawn offline as inline SVG"
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
# vl-convert numbers clip paths and gradients with a counter kept across calls
_SVG_ID = re.compile(r"""(id=["']|url\(#)((?:clip|gradient_?)\d+)\b""")


@dataclass
class DvcPlots:
    """What `dvc plots show --json` returned: plots by name, per-plot errors, or why none."""

    plots: dict[str, list[dict]] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    problem: str | None = None


def dvc_plots(root: Path, *, timeout: int = 300) -> DvcPlots:
    """Run `dvc plots show --json` in `root`; never raise (the reason is in `problem`)."""
    if not (root / "dvc.yaml").is_file():
        return DvcPlots(problem=f"the project has no dvc.yaml ({root}), so it declares no plots")
    env = os.environ | {"DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATER": "1"}
    try:
        done = subprocess.run(
            [_dvc(), "plots", "show", "--json"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return DvcPlots(problem=f"`dvc plots show --json` could not run: {exc}")
    try:
        out = json.loads(done.stdout) if done.stdout.strip() else None
    except json.JSONDecodeError:
        out = None
    if done.returncode != 0 or not isinstance(out, dict):
        why = (done.stderr or done.stdout).strip()[-800:] or "no output"
        return DvcPlots(problem=f"`dvc plots show --json` failed (exit {done.returncode}): {why}")
    data = out.get("data") if isinstance(out.get("data"), dict) else {}
    plots = {str(k): [p for p in v if isinstance(p, dict)] for k, v in sorted(data.items())}
    plots = {k: v for k, v in plots.items() if v}  # a plot dvc could not load is in errors
    errors = [e for e in out.get("errors") or [] if isinstance(e, dict)]
    return DvcPlots(plots=plots, errors=errors)


def _image_html(plot: dict, root: Path) -> str:
    url = str(plot.get("url") or "")
    path = Path(url) if Path(url).is_absolute() else root / url
    mime = mimetypes.guess_type(path.name)[0]
    if mime not in _IMAGE_TYPES or not path.is_file():
        return f"<p class='note'>image plot {_esc(url)}: not found or not an image</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    img = f"<img alt='{_esc(path.name)}' src='data:{mime};base64,{data}'>"
    return f"<figure class='hortus-chart'>{img}</figure>"


def _plot_html(plot: dict, root: Path) -> str:
    revs = ", ".join(map(str, plot.get("revisions") or []))
    rev = f"<p class='note'>revisions: {_esc(revs)}</p>" if revs else ""
    if plot.get("type") == "vega" and isinstance(plot.get("content"), dict):
        return rev + chart_html(plot["content"])
    if plot.get("type") == "image":
        return rev + _image_html(plot, root)
    return f"<p class='note'>plot of type {_esc(plot.get('type'))}: not rendered</p>"


def _renumber_ids(body: str) -> str:
    """Number the SVG clip/gradient ids in order of appearance (same bytes on a rebuild)."""
    names: dict[str, str] = {}

    def sub(m: re.Match) -> str:
        new = names.setdefault(m[2], f"hortus-plot-{m[2].rstrip('0123456789')}{len(names)}")
        return m[1] + new

    return _SVG_ID.sub(sub, body)


def plots_page(root: Path, found: DvcPlots | None = None) -> str:
    """Render docs/plots.html from `dvc plots show --json` in `root` (or from `found`)."""
    found = dvc_plots(root) if found is None else found
    body = [
        "<p>Every plot declared in <code>dvc.yaml</code>, as <code>dvc plots show "
        "--json</code> returns it (workspace), drawn as inline SVG with no scripts. "
        "<code>dvc plots show</code>'s own HTML loads Vega from the web.</p>"
    ]
    if found.problem:
        body.append(f"<p class='fail'>No plots: {_esc(found.problem)}</p>")
    count = sum(len(v) for v in found.plots.values())
    if not found.problem and not count:
        body.append("<p class='note'>dvc returned no plots.</p>")
    if count:
        links = "".join(
            f"<li><a href='#plot-{i}'>{_esc(name)}</a></li>" for i, name in enumerate(found.plots)
        )
        body.append(f"<p>{count} plot(s):</p><ul class='links'>{links}</ul>")
    for i, (name, items) in enumerate(found.plots.items()):
        parts = "".join(_plot_html(p, root) for p in items)
        body.append(f"<h2 id='plot-{i}'><code>{_esc(name)}</code></h2>{parts}")
    if found.errors:
        rows = "".join(
            f"<tr><td><code>{_esc(e.get('name', ''))}</code></td><td>{_esc(e.get('rev', ''))}"
            f"</td><td>{_esc(e.get('type', ''))}</td><td>{_esc(e.get('msg', ''))}</td></tr>"
            for e in found.errors
        )
        body.append(
            "<h2>Plots dvc could not load</h2><table><tr><th>plot</th><th>revision</th>"
            f"<th>error</th><th>message</th></tr>{rows}</table>"
        )
    return page_html("Plots", _renumber_ids("\n".join(body)), home="../index.html")
