"""Run marimo notebooks headless through papermill, keeping the executed notebook.

`run_notebook` exports a marimo notebook to ipynb (`marimo export ipynb`, cells in
topological order), tags the cell whose first line is `# parameters` with the
papermill `parameters` tag, and executes it with papermill on the `python3`
kernel; papermill injects the given values right after that cell.  The executed
notebook is the run's record.

`publish_notebook` is what `hortus notebooks run NAME -p key=value` does: it refuses
parameter names the parameters cell does not assign, runs the notebook and writes the
executed `NAME.ipynb` plus `NAME.html` beside it.  The HTML is a static, offline page
(no script tags at all, so no CDN): nbconvert's `basic` template renders the code cells
and outputs inside a page with inline CSS, after every output has been reduced to static
HTML by `static_output_html`:

- text/html is kept, minus `<script>`, `<link>`, `<iframe>` and external `src=` URLs;
  marimo custom elements (`<marimo-...>`) keep their readable content (label, initial
  value, and the body of a callout, which marimo keeps in `data-html`), and a
  `<marimo-mime-renderer>` is replaced by the static rendering of the output it wraps;
- image/png and image/jpeg become inline `data:` images, image/svg+xml is inlined;
- Vega-Lite charts (altair outputs, whether as a Vega-Lite mime bundle, inside a marimo
  element or inside altair's own HTML embed) become inline SVG, rendered by vl-convert
  (Vega bundled in a Rust wheel: no browser, no network; external data URLs are
  refused), once per chart: an output that carries the same chart in several
  representations shows one.  Each chart is a `<figure class='hortus-chart'
  data-chart=ID>` (ID = `chart_id(spec)`).  Only when rendering fails is the chart shown
  as a table of its data under its title, labelled "chart data (static)" with the reason;
- text/markdown is rendered with mistune, text/plain, streams and errors go in `<pre>`.
"""

from __future__ import annotations

import ast
import hashlib
import html
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import polars as pl
import yaml

from hortus.config import progress_wanted
from hortus.errors import HortusError

PARAMETERS_MARKER = "# parameters"
KERNEL = "python3"
YAML11_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def notebook_path(root: Path, name: str) -> Path:
    """Return notebooks/<name>.py, or raise naming the notebooks that exist."""
    path = root / "notebooks" / f"{Path(name).stem}.py"
    if not path.exists():
        known = sorted(p.stem for p in (root / "notebooks").glob("*.py"))
        raise HortusError(f"no notebook {path}; known notebooks: {', '.join(known) or 'none'}")
    return path


def export_ipynb(notebook: Path, out: Path) -> nbformat.NotebookNode:
    """Export a marimo notebook to ipynb and tag its parameters cell; return the notebook."""
    env = os.environ | {"MARIMO_SKIP_UPDATE_CHECK": "1"}
    marimo = Path(sys.executable).with_name("marimo")
    cmd = [str(marimo), "export", "ipynb", str(notebook), "-o", str(out), "--sort", "topological"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not out.exists():
        raise HortusError(f"marimo export of {notebook} failed: {done.stderr.strip()[-2000:]}")
    nb = nbformat.read(out, as_version=4)
    tagged = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.lstrip().startswith(PARAMETERS_MARKER):
            tags = cell.metadata.setdefault("tags", [])
            if "parameters" not in tags:
                tags.append("parameters")
            tagged += 1
    if tagged != 1:
        raise HortusError(
            f"{notebook}: expected exactly one cell starting with {PARAMETERS_MARKER!r}, "
            f"found {tagged}"
        )
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, out)
    return nb


def parameter_names(nb: nbformat.NotebookNode, *, source: Path) -> list[str]:
    """Return the names assigned at top level in the notebook's `parameters` cell."""
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise HortusError(f"{source}: expected one cell tagged 'parameters', found {len(cells)}")
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError as exc:
        raise HortusError(f"{source}: parameters cell does not parse: {exc}") from None
    names: list[str] = []
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        for target in targets:
            elts = target.elts if isinstance(target, ast.Tuple) else [target]
            names += [e.id for e in elts if isinstance(e, ast.Name) and not e.id.startswith("_")]
    return sorted(set(names))


def parse_parameters(pairs: Iterable[str]) -> dict[str, Any]:
    """Parse `key=value` strings; each value is a YAML scalar (int, float, bool, null or str).

    An empty value is the empty string, and `1e-3` is a float (as in YAML 1.2).

    Examples
    --------
    >>> parse_parameters(["n=5", "rate=0.1", "fast=true", "title=zz", "out="])
    {'n': 5, 'rate': 0.1, 'fast': True, 'title': 'zz', 'out': ''}
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise HortusError(f"parameter {pair!r}: expected key=value with a Python name as key")
        if key in out:
            raise HortusError(f"parameter {key!r} given twice")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise HortusError(
                f"parameter {key}: value {raw!r} is not a YAML scalar: {exc}"
            ) from None
        if isinstance(value, str) and YAML11_FLOAT.fullmatch(raw.strip()):
            value = float(raw)  # YAML 1.1 reads 1e-3 as a string; YAML 1.2 and Python do not
        if value is not None and not isinstance(value, int | float | bool | str):
            raise HortusError(
                f"parameter {key}: value {raw!r} is a {type(value).__name__}; "
                "only scalars (int, float, bool, null, str) are accepted"
            )
        out[key] = value
    return out


def check_parameters(parameters: dict[str, Any], known: list[str], *, source: Path) -> None:
    """Raise if a parameter name is not assigned in the notebook's parameters cell."""
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise HortusError(
            f"{source}: unknown parameter(s) {', '.join(unknown)}; "
            f"the parameters cell defines: {', '.join(known) or 'nothing'}"
        )


def _execute(
    source: Path,
    notebook: Path,
    output: Path,
    parameters: dict[str, Any],
    *,
    cwd: Path,
    timeout: int,
) -> Path:
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(
            str(source),
            str(output),
            parameters=parameters,
            kernel_name=KERNEL,
            cwd=str(cwd),
            # the cells' progress bar on a terminal only: logs and tests stay clean
            progress_bar=progress_wanted(),
            log_output=False,
            execution_timeout=timeout,
        )
    except pm.PapermillExecutionError as exc:
        raise HortusError(
            f"notebook {notebook.name} failed in cell {exc.exec_count}: {exc.ename}: "
            f"{exc.evalue} (executed notebook kept at {output})"
        ) from None
    strip_volatile(output)
    return output


_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def strip_volatile(path: Path) -> None:
    """Remove what differs between two runs of the same notebook on the same inputs.

    papermill stamps each cell and the notebook with start and end times, durations and
    the temporary input path and gives its injected cell a random id, the kernel adds
    execution timestamps and marimo random UUIDs of UI elements; without them an
    executed notebook is the same bytes on a rebuild, so `dvc.lock` stays valid.
    """
    text = path.read_text(encoding="utf-8")
    # marimo gives every UI element a random UUID: number them in order of appearance
    seen: dict[str, str] = {}
    text = _UUID.sub(lambda m: seen.setdefault(m[0], f"00000000-0000-0000-0000-{len(seen):012d}"),
                     text)  # fmt: skip
    nb = json.loads(text)
    meta = nb.get("metadata", {}).get("papermill")
    if isinstance(meta, dict):
        for key in ("start_time", "end_time", "duration", "input_path", "output_path"):
            meta.pop(key, None)
    for cell in nb.get("cells", []):
        cmeta = cell.get("metadata", {})
        if "injected-parameters" in cmeta.get("tags", []):
            cell["id"] = "injected-parameters"  # papermill draws a random id
        cmeta.pop("execution", None)
        pm_meta = cmeta.get("papermill")
        if isinstance(pm_meta, dict):
            for key in ("start_time", "end_time", "duration"):
                pm_meta.pop(key, None)
    path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")


def run_notebook(
    notebook: Path,
    output: Path,
    parameters: dict[str, Any],
    *,
    cwd: Path,
    timeout: int = 1800,
) -> Path:
    """Execute a marimo notebook headless with papermill; write the executed ipynb to output."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{notebook.stem}.ipynb"
        export_ipynb(notebook, source)
        return _execute(source, notebook, output, parameters, cwd=cwd, timeout=timeout)


def publish_notebook(
    root: Path,
    name: str,
    parameters: dict[str, Any],
    *,
    out_dir: Path | None = None,
    timeout: int = 1800,
    exclude_input: bool = False,
) -> tuple[Path, Path]:
    """Run notebooks/NAME.py with checked parameters; write NAME.ipynb and an offline NAME.html.

    The outputs go to `out_dir` (default `<root>/reports/notebooks`); the kernel runs in
    `root`.  With `exclude_input` the HTML shows the outputs only (a report for readers
    of the results; the executed notebook keeps the code).  Returns the executed
    notebook and its HTML rendering.
    """
    notebook = notebook_path(root, name)
    folder = Path(out_dir) if out_dir is not None else root / "reports" / "notebooks"
    executed = folder / f"{notebook.stem}.ipynb"
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{notebook.stem}.ipynb"
        nb = export_ipynb(notebook, source)
        check_parameters(parameters, parameter_names(nb, source=notebook), source=notebook)
        _execute(source, notebook, executed, parameters, cwd=root, timeout=timeout)
    page = render_html(
        executed,
        folder / f"{notebook.stem}.html",
        parameters=parameters,
        exclude_input=exclude_input,
    )
    return executed, page


# ----------------------------------------------------------------- static HTML
CHART_MIME = re.compile(r"application/vnd\.vegalite\.v\d+\+json")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
EXTERNAL = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
DROP_WITH_CONTENT = {"script", "iframe", "object", "noscript", "template"}
DROP_TAG = {"link", "embed", "base", "meta"}
VOID = {"area", "br", "col", "hr", "img", "input", "source", "track", "wbr"}
SVG_LOADS = {"image", "use", "feimage"}  # SVG elements whose href is fetched
TABLE_ROWS = 200
OFFLINE_PROBES = (
    re.compile(r"<script\b", re.IGNORECASE),
    re.compile(r"""\bsrc\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE),
    re.compile(r"""<link\b[^>]*\bhref\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE),
    re.compile(r"@import", re.IGNORECASE),
)


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _json_attr(value: str | None) -> Any:
    """Decode a marimo `data-*` attribute (JSON); None when absent or not JSON."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return None


def rows_table_html(rows: list[dict], *, caption: str = "", limit: int = TABLE_ROWS) -> str:
    """Render a list of records as a static HTML table (first `limit` rows, vectorised)."""
    if not rows:
        return f"<p class='hortus-note'>{_esc(caption)}: no rows</p>"
    frame = pl.from_dicts(rows, strict=False, infer_schema_length=None)
    text = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        col = col.struct.json_encode() if dtype == pl.Struct else col
        col = col.cast(pl.List(pl.String)).list.join(", ") if dtype == pl.List else col
        col = col.round_sig_figs(6) if dtype.is_float() else col
        text.append(
            col.cast(pl.String)
            .fill_null("")
            .str.replace_all("&", "&amp;", literal=True)
            .str.replace_all("<", "&lt;", literal=True)
            .str.replace_all(">", "&gt;", literal=True)
        )
    body = (
        frame.head(limit)
        .select(
            pl.concat_str(
                [
                    pl.lit("<tr><td>"),
                    pl.concat_str(text, separator="</td><td>"),
                    pl.lit("</td></tr>"),
                ]
            ).alias("row")
        )
        .get_column("row")
        .str.join("\n")
        .item()
    )
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    more = (
        f"<p class='hortus-note'>first {limit} of {frame.height} rows</p>"
        if frame.height > limit
        else ""
    )
    cap = f"<caption>{_esc(caption)}</caption>" if caption else ""
    return (
        f"<table class='hortus-table'>{cap}<thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>{more}"
    )


def _chart_title(spec: dict) -> str:
    title = spec.get("title")
    if isinstance(title, dict):
        title = title.get("text")
    if isinstance(title, list):
        title = " ".join(map(str, title))
    if title:
        return str(title)
    for key in ("spec", "layer", "hconcat", "vconcat", "concat"):
        subs = spec.get(key)
        for sub in subs if isinstance(subs, list) else [subs] if isinstance(subs, dict) else []:
            if found := _chart_title(sub):
                return found
    return ""


def chart_id(spec: dict) -> str:
    """Return a short, stable identity of a Vega-Lite spec (the figure's `data-chart`)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _vl_version(spec: dict, known: list[str]) -> str | None:
    """Return the bundled Vega-Lite version matching the spec's $schema (None: the newest)."""
    found = re.search(r"/v(\d+)\.(\d+)(?:\.\d+)?\.json", str(spec.get("$schema", "")))
    if not found:
        return None
    major, minor = int(found[1]), int(found[2])
    same = [v for v in known if v.split(".")[0] == str(major)]
    exact = [v for v in same if v == f"{major}.{minor}"]
    older = [v for v in same if int(v.split(".")[1]) <= minor]
    pick = exact or older or same
    return max(pick, key=lambda v: tuple(map(int, v.split(".")))) if pick else None


def chart_svg(spec: dict) -> str:
    """Render a Vega-Lite spec to SVG with vl-convert, offline; raise ValueError if it fails.

    External data URLs are refused (`allowed_base_urls=[]`): a chart's data must be inline.
    """
    if importlib.util.find_spec("vl_convert") is None:
        raise ValueError("vl-convert-python is not installed (run `uv sync`)")
    import vl_convert as vlc

    version = _vl_version(spec, list(vlc.get_vegalite_versions()))
    try:
        return vlc.vegalite_to_svg(spec, vl_version=version, allowed_base_urls=[])
    except Exception as exc:  # vl-convert raises ValueError; a spec can break it otherwise
        lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
        reason = next((x for x in lines[1:] if not x.startswith("at ")), lines[0] if lines else "")
        raise ValueError(reason or type(exc).__name__) from None


def _chart_data_html(spec: dict) -> str:
    datasets = dict(spec.get("datasets") or {})
    inline = (spec.get("data") or {}).get("values")
    if isinstance(inline, list):
        datasets["values"] = inline
    return (
        "".join(
            rows_table_html(rows, caption=f"dataset {name}" if len(datasets) > 1 else "")
            for name, rows in datasets.items()
            if isinstance(rows, list)
        )
        or "<p class='hortus-note'>the chart has no inline data</p>"
    )


def chart_html(spec: dict) -> str:
    """Render a Vega-Lite spec statically: inline SVG, or its data as tables if that fails."""
    ident = chart_id(spec)
    try:
        svg = chart_svg(spec)
    except ValueError as exc:
        title = _chart_title(spec) or "untitled chart"
        return (
            f"<figure class='hortus-chart hortus-chart-data' data-chart='{ident}'><figcaption>"
            f"<strong>{_esc(title)}</strong> <span class='hortus-note'>(chart data (static): "
            f"the chart could not be rendered as SVG ({_esc(exc)}), so its data is shown)"
            f"</span></figcaption>{_chart_data_html(spec)}</figure>"
        )
    return f"<figure class='hortus-chart' data-chart='{ident}'>{_sanitize(svg)}</figure>"


def _altair_embed_spec(script: str) -> dict | None:
    """Return the Vega-Lite spec passed to altair's HTML embed script, if this is one."""
    if "vega-lite" not in script or "})(" not in script:
        return None
    start = script.rindex("})(") + 3
    try:
        spec, _ = json.JSONDecoder().raw_decode(script[start:])
    except json.JSONDecodeError:
        return None
    return spec if isinstance(spec, dict) else None


class _Static(HTMLParser):
    """Rebuild HTML without scripts or external URLs; marimo elements made static."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip: list[str] = []  # stack of tags whose content is dropped
        self.script: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skip:
            if tag == self.skip[-1] and tag not in VOID:
                self.skip.append(tag)
            return
        found = dict(attrs)
        if tag in DROP_WITH_CONTENT:
            self.skip.append(tag)
            self.script = []
            return
        if tag in DROP_TAG:
            return
        if tag == "marimo-mime-renderer":
            self.out.append(
                mime_html(_json_attr(found.get("data-mime")), _json_attr(found.get("data-data")))
            )
            self.skip.append(tag)
            return
        if tag == "marimo-table":
            rows = _json_attr(found.get("data-data"))
            rows = _json_attr(rows) if isinstance(rows, str) else rows
            self.out.append(
                rows_table_html(rows)
                if isinstance(rows, list)
                else "<p class='hortus-note'>table (interactive; its data is not embedded)</p>"
            )
            self.skip.append(tag)
            return
        if tag == "marimo-vega":  # mo.ui.altair_chart: the spec is an attribute
            spec = _json_attr(found.get("data-spec"))
            spec = _json_attr(spec) if isinstance(spec, str) else spec
            if isinstance(spec, dict):
                self.out.append(chart_html(spec))
            self.skip.append(tag)
            return
        if tag.startswith("marimo-"):
            inner = _json_attr(found.get("data-html"))  # callouts keep their body here
            if isinstance(inner, str) and inner:
                kind = _json_attr(found.get("data-kind"))
                kind = kind if isinstance(kind, str) and kind.isalpha() else "neutral"
                self.out.append(
                    f"<div class='hortus-callout hortus-{kind}'>{_sanitize(inner)}</div>"
                )
            label = _json_attr(found.get("data-label"))
            if isinstance(label, str) and label:
                self.out.append(f"<span class='hortus-label'>{_sanitize(label)}</span> ")
            value = found.get("data-initial-value")
            if label and value is not None:
                self.out.append(f"<code>{_esc(value)}</code> ")
            return
        loads = ("src", "srcset", "href", "xlink:href") if tag in SVG_LOADS else ("src", "srcset")
        kept = [
            (k, v)
            for k, v in attrs
            if not k.startswith("on") and not (k in loads and EXTERNAL.match(v or ""))
        ]
        text = "".join(f" {k}" if v is None else f' {k}="{_esc(v)}"' for k, v in kept)
        self.out.append(f"<{tag}{text}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        before = len(self.out)
        self.handle_starttag(tag, attrs)
        if self.skip and self.skip[-1] == tag and tag not in DROP_WITH_CONTENT:
            self.skip.pop()
        elif len(self.out) == before + 1 and self.out[-1].startswith(f"<{tag}"):
            # keep `<rect .../>` self-closing: inside SVG an unclosed element swallows the
            # elements after it (a chart's axes and marks would vanish)
            self.out[-1] = self.out[-1][:-1] + ("/>" if tag not in VOID else ">")

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag == self.skip[-1]:
                self.skip.pop()
                if not self.skip and tag == "script":
                    spec = _altair_embed_spec("".join(self.script))
                    if spec is not None:
                        self.out.append(chart_html(spec))
            return
        if tag in DROP_TAG or tag.startswith("marimo-") or tag in VOID:
            return
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self.skip:
            if self.skip[0] == "script":
                self.script.append(data)
            return
        self.out.append(_esc(data) if "<" in data or "&" in data else data)


def _sanitize(fragment: str) -> str:
    parser = _Static()
    parser.feed(fragment)
    parser.close()
    return "".join(parser.out)


def _has_content(fragment: str) -> bool:
    if re.search(r"<(img|svg|table|figure)\b", fragment, re.IGNORECASE):
        return True
    return bool(re.sub(r"<[^>]*>", "", fragment).strip())


def mime_html(mime: str | None, data: Any) -> str:
    """Render one output representation statically (no scripts, no external URLs)."""
    if not isinstance(mime, str):
        return ""
    if CHART_MIME.fullmatch(mime):
        spec = json.loads(data) if isinstance(data, str) else data
        return chart_html(spec) if isinstance(spec, dict) else ""
    if mime in ("image/png", "image/jpeg", "image/gif"):
        raw = data if isinstance(data, str) else ""
        uri = raw if raw.startswith("data:") else f"data:{mime};base64,{raw.strip()}"
        if EXTERNAL.match(raw):
            return ""
        return f"<img alt='figure' src='{_esc(uri)}'>"
    if mime == "image/svg+xml":
        return _sanitize(data if isinstance(data, str) else "".join(data))
    if mime == "text/html":
        return _sanitize(data if isinstance(data, str) else "".join(data))
    if mime == "text/markdown":
        import mistune

        return _sanitize(mistune.html(data if isinstance(data, str) else "".join(data)))
    text = data if isinstance(data, str) else "".join(map(str, data))
    return f"<pre>{_esc(ANSI.sub('', text))}</pre>"


MIME_ORDER = (
    "image/svg+xml",
    "image/png",
    "image/jpeg",
    "image/gif",
    "text/html",
    "text/markdown",
    "text/plain",
)


def static_output_html(output: dict) -> str:
    """Reduce one ipynb output to a static HTML fragment, falling back to text/plain."""
    kind = output.get("output_type")
    if kind == "stream":
        text = ANSI.sub("", output.get("text", ""))
        return f"<pre class='hortus-{_esc(output.get('name', 'stream'))}'>{_esc(text)}</pre>"
    if kind == "error":
        trace = ANSI.sub("", "\n".join(output.get("traceback", [])))
        return f"<pre class='hortus-error'>{_esc(trace or output.get('evalue', ''))}</pre>"
    data = output.get("data", {})
    charts = [m for m in data if CHART_MIME.fullmatch(m)]
    for mime in [*charts, *MIME_ORDER]:
        if mime in data:
            fragment = mime_html(mime, data[mime])
            if _has_content(fragment):
                return fragment
    return mime_html("text/plain", data.get("text/plain", ""))


def check_offline(page: str, *, source: Path) -> None:
    """Raise if an HTML page would load anything: a script, an external src, a stylesheet link."""
    for probe in OFFLINE_PROBES:
        if found := probe.search(page):
            at = page[max(found.start() - 60, 0) : found.end() + 60]
            raise HortusError(f"{source}: HTML is not offline-safe ({probe.pattern!r}) near {at!r}")


def _charts_note(body: str) -> str:
    """Say how the page's charts were rendered (counted from their figures)."""
    charts = len(re.findall(r"""<figure class=["']hortus-chart[ "']""", body))
    as_data = len(re.findall(r"""<figure class=["']hortus-chart hortus-chart-data["']""", body))
    if not charts:
        return "no charts"
    said = "1 chart, shown once" if charts == 1 else f"{charts} charts, each shown once"
    if not as_data:
        return f"{said}, as inline SVG"
    return (
        f"{said}: {charts - as_data} as inline SVG, {as_data} as a table of the chart's data "
        "(it could not be rendered; the reason is under its title)"
    )


PAGE_CSS = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; }
header.hortus-run { border-bottom: 1px solid #ccc; margin-bottom: 1rem; color: #444; }
.input_area { background: #f6f8fa; border-radius: 4px; }
.prompt { display: none; }
pre { overflow-x: auto; padding: 0.4rem; }
.hortus-error { background: #fdecea; }
.hortus-table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
.hortus-table th, .hortus-table td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
.hortus-note { color: #666; font-size: 0.85rem; }
figure.hortus-chart { margin: 1rem 0; }
.hortus-callout { border-left: 4px solid #999; background: #f6f6f6; padding: 0.3rem 0.8rem; }
.hortus-success { border-color: #4c9a2a; } .hortus-warn { border-color: #e0a100; }
.hortus-danger { border-color: #d62728; } .hortus-info { border-color: #1f77b4; }
"""


def render_html(
    executed: Path,
    out: Path,
    *,
    parameters: dict[str, Any] | None = None,
    exclude_input: bool = False,
) -> Path:
    """Render an executed notebook as one static, offline HTML page; return its path.

    Code cells are rendered by nbconvert's `basic` template (no scripts; without their
    code when `exclude_input`); every output is first reduced by `static_output_html`.
    Raises if the page would load anything.
    """
    from nbconvert import HTMLExporter
    from pygments.formatters import HtmlFormatter

    nb = nbformat.read(executed, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        fragments = [static_output_html(o) for o in cell.outputs]
        cell.outputs = [
            nbformat.v4.new_output("display_data", data={"text/html": f}) for f in fragments if f
        ]
    exporter = HTMLExporter(template_name="basic", exclude_input=exclude_input)
    body, _ = exporter.from_notebook_node(nb)
    title = nb.metadata.get("title") or executed.stem
    given = ", ".join(f"{k}={v!r}" for k, v in (parameters or {}).items()) or "defaults"
    header = (
        f"<header class='hortus-run'><h1>{_esc(executed.stem)}</h1>"
        f"<p>The executed notebook <code>{_esc(executed.name)}</code> (the papermill record, "
        f"beside this page) rendered as static HTML; parameters: <code>{_esc(given)}</code>.  "
        f"Offline: no scripts are loaded; {_charts_note(body)}.</p></header>"
    )
    css = HtmlFormatter().get_style_defs(".highlight") + PAGE_CSS
    page = (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(title)}</title><style>{css}</style></head>"
        f"<body>{header}{body}</body></html>\n"
    )
    check_offline(page, source=out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
