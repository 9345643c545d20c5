"""Generated documentation site: static, offline HTML pages built from the system itself.

`build_site` is what `hortus docs` (the DVC stage `docs`) writes:

- reports/data_dictionary.md, and under reports/docs/:
- architecture.html: the data-flow diagram (inline SVG) with the catalogued tables of each
  step, the pipeline DAG reported by `dvc dag --dot` drawn by a small layered layout
  (inline SVG, no graphviz), the `dvc dag --md` mermaid listing, and every stage of
  dvc.yaml with its cmd, deps, params and outs;
- data_dictionary.html: the data dictionary (the markdown rendered with mistune);
- parameters.html: every key of params.yaml with its value and its meaning, taken from
  the comment lines directly above the key or its trailing comment
  (`parse_param_comments`); keys without either are flagged "undocumented";
- models.html: every registered model's versions with aliases, latest gate run,
  approvals, metrics and the link to the published report (reports/models/<model>/<N>/);
- gate/<model>/v<N>.html: each gate report reports/gate/<model>/v<N>.md rendered;
- reports/index.html: one page linking every generated report that exists.

Every page is one HTML file with inline CSS and inline SVG: no scripts, stylesheets,
fonts or images are loaded (`hortus.publishing.notebooks.check_offline` is asserted on each).
Nothing depends on the time of generation, so the same system gives the same bytes.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mistune
import polars as pl
import yaml
from mistune.renderers.html import HTMLRenderer

from hortus.config import Paths
from hortus.errors import HortusError
from hortus.governance.access import AccessDenied
from hortus.lakehouse.tables import Lakehouse
from hortus.publishing.docs import data_dictionary
from hortus.publishing.notebooks import check_offline

DOCS_DIR = "docs"
PAGES = {
    "architecture.html": "Architecture: data flow, pipeline DAG (from `dvc dag`) and stages",
    "data_dictionary.html": "Data dictionary: every catalogued table's contract and lineage",
    "parameters.html": "Parameters: every key of params.yaml with its value and meaning",
    "models.html": "Models: registered versions, aliases, gates, approvals and reports",
}


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _inline(text: str) -> str:
    """Escape text and show its `backticked` parts as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _esc(text))


# ================================================================ params.yaml
_KEY_LINE = re.compile(
    r"""^(?P<indent>[ ]*)(?P<key>[A-Za-z_][\w.\-]*|"[^"]+"|'[^']+')[ ]*:(?:[ ]+(?P<rest>.*))?$"""
)
_BLOCK_SCALAR = re.compile(r"[|>][+-]?\d*")


@dataclass(frozen=True)
class ParamDoc:
    """One key of a params file: its dotted name, value and documented meaning.

    `source` says where the meaning came from: "above" (comment lines directly above
    the key), "trailing" (a comment after the value), "above+trailing", or "" when the
    key is undocumented.  `section` is True for a key whose value is a block mapping.
    """

    path: tuple[str, ...]
    line: int
    value: Any
    meaning: str
    source: str
    section: bool

    @property
    def key(self) -> str:
        """Return the dotted key, e.g. `gate.drift.alpha`."""
        return ".".join(self.path)

    @property
    def documented(self) -> bool:
        """Return whether a comment gives the key's meaning."""
        return bool(self.meaning)


def split_comment(text: str) -> tuple[str, str]:
    """Split a YAML value from its trailing comment (a `#` after a space, outside quotes).

    Examples
    --------
    >>> split_comment("[a, b]  # the list")
    ('[a, b]', 'the list')
    >>> split_comment("'x # y' # z")
    ("'x # y'", 'z')
    """
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip(), text[i + 1 :].strip()
    return text.rstrip(), ""


def _balance(text: str) -> int:
    """Return opened minus closed flow brackets of a value (quoted text ignored)."""
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", text)
    return sum(unquoted.count(c) for c in "[{") - sum(unquoted.count(c) for c in "]}")


def _lookup(doc: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def parse_param_comments(text: str, *, source: str = "params.yaml") -> list[ParamDoc]:
    """Return every mapping key of a YAML params file with its value and commented meaning.

    A key's meaning is the block of comment lines directly above it (no blank line in
    between) and/or its trailing comment.  Keys of block mappings are followed into
    nested sections (`gate.drift.alpha`); a flow mapping or a list is one key whose
    value is the whole collection.  Comments above a list item or inside a multi-line
    flow value document no key.  Values come from `yaml.safe_load` of the same text.

    Examples
    --------
    >>> docs = parse_param_comments("# the seed\\nseed: 3\\nrate: 0.1  # per day\\nn: 2\\n")
    >>> [(d.key, d.value, d.meaning or "undocumented") for d in docs]
    [('seed', 3, 'the seed'), ('rate', 0.1, 'per day'), ('n', 2, 'undocumented')]
    """
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise HortusError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise HortusError(f"{source}: expected a mapping of sections at the top level")
    out: list[ParamDoc] = []
    pending: list[str] = []  # comment lines directly above the current line
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing block mappings
    skip_deeper: int | None = None  # inside a block sequence or block scalar
    depth = 0  # open brackets of a multi-line flow value
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        stripped = line.strip()
        if depth > 0:
            depth += _balance(split_comment(line)[0])
            pending = []
            continue
        if not stripped or stripped in ("---", "..."):
            pending = []
            continue
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        indent = len(line) - len(line.lstrip(" "))
        if skip_deeper is not None and indent > skip_deeper:
            pending = []
            continue
        skip_deeper = None
        if stripped == "-" or stripped.startswith("- "):
            skip_deeper = indent  # a list item's nested lines belong to the parent key
            depth = _balance(split_comment(stripped[1:])[0])
            pending = []
            continue
        m = _KEY_LINE.match(line)
        if not m:
            raise HortusError(f"{source}:{lineno}: cannot read a key in {stripped[:80]!r}")
        key = m.group("key").strip("'\"")
        value_text, trailing = split_comment(m.group("rest") or "")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(k for _, k in stack), key)
        try:
            value = _lookup(doc, path)
        except (KeyError, TypeError):
            raise HortusError(
                f"{source}:{lineno}: key {'.'.join(path)} is not where its indentation puts it"
            ) from None
        above = " ".join(pending)
        where = "+".join(s for s, c in (("above", above), ("trailing", trailing)) if c)
        meaning = "; ".join(c for c in (above, trailing) if c)
        section = value_text == "" and isinstance(value, dict) and bool(value)
        out.append(ParamDoc(path, lineno, value, meaning, where, section))
        pending = []
        if value_text == "":
            stack.append((indent, key))
        elif _BLOCK_SCALAR.fullmatch(value_text):
            skip_deeper = indent
        else:
            depth = _balance(value_text)
            if depth == 0:
                skip_deeper = indent  # deeper lines continue a multi-line plain/quoted scalar
    return out


def undocumented(docs: Iterable[ParamDoc]) -> list[str]:
    """Return the dotted keys that have no comment giving their meaning."""
    return [d.key for d in docs if not d.documented]


# ===================================================================== HTML
CSS = """
body { font-family: system-ui, sans-serif; max-width: 78rem; margin: 1.5rem auto;
       padding: 0 1rem; color: #1f2328; line-height: 1.45; }
nav.site { border-bottom: 1px solid #d0d7de; padding-bottom: .5rem; margin-bottom: 1rem; }
nav.site a { margin-right: 1rem; }
a { color: #0969da; }
code, pre { font-family: ui-monospace, monospace; font-size: .85em; }
pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; border-radius: 4px; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
.note { color: #57606a; font-size: .9rem; }
.badge { display: inline-block; border-radius: 9px; padding: 0 .5rem; font-size: .8rem;
         background: #ddf4ff; color: #0550ae; margin-right: .2rem; white-space: nowrap; }
.badge.champion { background: #dafbe1; color: #116329; font-weight: 600; }
.ok { color: #116329; font-weight: 600; }
.fail { color: #cf222e; font-weight: 600; }
.undocumented { background: #fff1e5; color: #953800; font-weight: 600; }
svg text { font-family: system-ui, sans-serif; }
figure.diagram { margin: 1rem 0; overflow-x: auto; }
ul.links li { margin: .25rem 0; }
.missing { color: #8c959f; }
"""


def page_html(title: str, body: str, *, home: str = "../index.html", nav: str = "") -> str:
    """Wrap a body in a complete offline HTML page (inline CSS, no scripts)."""
    links = [(home, "index")] + [(nav + name, name.removesuffix(".html")) for name in PAGES]
    bar = "".join(f"<a href='{_esc(href)}'>{_esc(label)}</a>" for href, label in links)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
        f"<nav class='site'>{bar}</nav><h1>{_esc(title)}</h1>\n{body}\n</body></html>\n"
    )


def _slug(text: str) -> str:
    """Return a GitHub-style anchor of a heading (tags and punctuation dropped)."""
    plain = html.unescape(re.sub(r"<[^>]+>", "", text)).strip().lower()
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", plain))


class _AnchoredHTML(HTMLRenderer):
    """mistune's HTML renderer with GitHub-style ids on headings (for `#table` links)."""

    def heading(self, text: str, level: int, **attrs: Any) -> str:
        """Render a heading with an id taken from its text."""
        return super().heading(text, level, **({"id": _slug(text)} | attrs))


def markdown_html(text: str) -> str:
    """Render markdown (tables included) to HTML; raw HTML in the source is escaped.

    Examples
    --------
    >>> markdown_html("## `silver.orders`")
    '<h2 id="silverorders"><code>silver.orders</code></h2>\\n'
    """
    md = mistune.create_markdown(renderer=_AnchoredHTML(escape=True), plugins=["table"])
    return str(md(text))


def _write(path: Path, page: str) -> Path:
    check_offline(page, source=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


# ====================================================================== DAG
@dataclass(frozen=True)
class Dag:
    """The pipeline DAG as `dvc dag` reports it: nodes, edges and its text forms."""

    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    dot: str = ""
    mermaid: str = ""


_DOT_NODE = re.compile(r'^\s*"(?P<a>(?:[^"\\]|\\.)*)"\s*;?\s*$')
_DOT_EDGE = re.compile(r'^\s*"(?P<a>(?:[^"\\]|\\.)*)"\s*->\s*"(?P<b>(?:[^"\\]|\\.)*)"\s*;?\s*$')


def parse_dot(dot: str) -> Dag:
    """Read the nodes and edges of `dvc dag --dot` output (one statement per line).

    Examples
    --------
    >>> parse_dot('strict digraph {\\n"a";\\n"b";\\n"a" -> "b";\\n}\\n').edges
    (('a', 'b'),)
    """
    nodes: list[str] = []
    edges: list[tuple[str, str]] = []
    for line in dot.splitlines():
        if m := _DOT_EDGE.match(line):
            edges.append((m.group("a"), m.group("b")))
        elif m := _DOT_NODE.match(line):
            nodes.append(m.group("a"))
    for a, b in edges:
        nodes += [n for n in (a, b) if n not in nodes]
    return Dag(tuple(nodes), tuple(edges), dot=dot)


def _dvc() -> str:
    beside = Path(sys.executable).with_name("dvc")
    return str(beside) if beside.exists() else "dvc"


def dvc_dag(root: Path, *, timeout: int = 120) -> Dag:
    """Run `dvc dag --dot` and `dvc dag --md` in the project root; return the DAG.

    Raises HortusError with dvc's message when it fails (e.g. not a DVC repository).
    """
    env = os.environ | {"DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATER": "1"}
    procs = {
        form: subprocess.Popen(
            [_dvc(), "dag", f"--{form}"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for form in ("dot", "md")
    }
    done = {form: (p, *p.communicate(timeout=timeout)) for form, p in procs.items()}
    for form, (proc, _, err) in done.items():
        if proc.returncode != 0:
            raise HortusError(
                f"`dvc dag --{form}` failed in {root} (exit {proc.returncode}): "
                f"{err.strip()[-800:]}"
            )
    dag = parse_dot(done["dot"][1])
    return Dag(dag.nodes, dag.edges, dot=done["dot"][1], mermaid=done["md"][1])


def layered_layout(
    nodes: Iterable[str], edges: Iterable[tuple[str, str]], *, sweeps: int = 4
) -> tuple[list[list[str]], dict[tuple[str, str], list[str]]]:
    """Place a DAG in layers (longest path from the sources) ordered to reduce crossings.

    Edges spanning several layers pass through virtual nodes, one per layer crossed,
    which take part in the ordering (barycenter sweeps down and up).  Returns the
    layers (lists of node names; virtual nodes start with NUL) and, per edge, its
    chain of virtual nodes.  Raises HortusError on a cycle.

    Examples
    --------
    >>> layers, chains = layered_layout("abc", [("a", "b"), ("b", "c"), ("a", "c")])
    >>> [[n for n in layer if not n.startswith("\\0")] for layer in layers]
    [['a'], ['b'], ['c']]
    >>> len(chains[("a", "c")])
    1
    """
    nodes = list(dict.fromkeys(nodes))
    edges = list(dict.fromkeys(edges))
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        preds.setdefault(b, []).append(a)
        succs.setdefault(a, []).append(b)
        preds.setdefault(a, [])
        succs.setdefault(b, [])
        nodes += [n for n in (a, b) if n not in nodes]
    indeg = {n: len(preds[n]) for n in nodes}
    ready = [n for n in nodes if indeg[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for s in succs[n]:
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
    if len(order) != len(nodes):
        raise HortusError(f"the DAG has a cycle among {sorted(set(nodes) - set(order))}")
    layer: dict[str, int] = {}
    for n in order:
        layer[n] = max((layer[p] + 1 for p in preds[n]), default=0)
    layers: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for n in order:
        layers[layer[n]].append(n)
    up: dict[str, list[str]] = {n: list(preds[n]) for n in nodes}  # adjacent-layer preds
    down: dict[str, list[str]] = {n: [] for n in nodes}
    chains: dict[tuple[str, str], list[str]] = {}
    for a, b in edges:
        chain = [f"\0{a}->{b}#{i}" for i in range(layer[a] + 1, layer[b])]
        chains[(a, b)] = chain
        for i, v in enumerate(chain):
            layers[layer[a] + 1 + i].append(v)
        path = [a, *chain, b]
        up[b].remove(a)
        for u, v in zip(path, path[1:], strict=False):
            up.setdefault(v, []).append(u)
            down.setdefault(u, []).append(v)
    for _ in range(sweeps):
        for rows, nbrs, step in ((range(1, len(layers)), up, -1),
                                 (range(len(layers) - 2, -1, -1), down, 1)):  # fmt: skip
            for i in rows:
                pos = {n: j for j, n in enumerate(layers[i + step])}
                keys = {}
                for j, n in enumerate(layers[i]):
                    ps = [pos[p] for p in nbrs.get(n, []) if p in pos]
                    keys[n] = sum(ps) / len(ps) if ps else float(j)
                layers[i] = sorted(layers[i], key=keys.__getitem__)
    return layers, chains


def dag_svg(dag: Dag, *, stage_names: Iterable[str] = ()) -> str:
    """Draw a DAG top-down as inline SVG (boxes and curved arrows), no external renderer."""
    layers, chains = layered_layout(dag.nodes, dag.edges)
    stages = set(stage_names)
    dx, dv, dy, h = 150, 34, 74, 32  # slot widths of a node and of a virtual node

    def slot(n: str) -> int:
        return dv if n.startswith("\0") else dx

    width = max((sum(map(slot, row)) for row in layers), default=dx) + 20
    height = len(layers) * dy + 10
    xy: dict[str, tuple[float, float]] = {}
    for i, row in enumerate(layers):
        x = (width - sum(map(slot, row))) / 2
        for n in row:
            xy[n] = (x + slot(n) / 2, 20 + i * dy + h / 2)
            x += slot(n)
    paths = []
    for (a, b), chain in chains.items():
        pts = [(xy[a][0], xy[a][1] + h / 2), *(xy[v] for v in chain), (xy[b][0], xy[b][1] - h / 2)]
        d = f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"
        for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
            ym = (y0 + y1) / 2
            d += f" C{x0:.1f},{ym:.1f} {x1:.1f},{ym:.1f} {x1:.1f},{y1:.1f}"
        paths.append(
            f"<path d='{d}' fill='none' stroke='#57606a' stroke-width='1.3' "
            f"marker-end='url(#arrow)'><title>{_esc(a)} → {_esc(b)}</title></path>"
        )
    boxes = []
    for n in dag.nodes:
        x, y = xy[n]
        w = max(96, 8 * len(n) + 24)
        fill = "#ddf4ff" if n in stages else "#fff8c5"
        boxes.append(
            f"<g class='node'><rect x='{x - w / 2:.1f}' y='{y - h / 2:.1f}' width='{w}' "
            f"height='{h}' rx='6' fill='{fill}' stroke='#0969da'/>"
            f"<text x='{x:.1f}' y='{y + 4:.1f}' text-anchor='middle' font-size='13'>"
            f"{_esc(n)}</text></g>"
        )
    return (
        f"<svg role='img' aria-label='pipeline DAG' viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' style='max-width:100%;height:auto'>"
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' "
        "markerHeight='7' orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' "
        "fill='#57606a'/></marker></defs>" + "".join(paths) + "".join(boxes) + "</svg>"
    )


# ============================================================ architecture
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


# ============================================================== parameters
def _value_text(value: Any) -> str:
    """Return a value as one line of YAML (flow style), as it could be written in params.yaml."""
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"), sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def parameters_page(docs: list[ParamDoc], *, source: str = "params.yaml") -> str:
    """Render every key of params.yaml with its value and meaning; flag undocumented keys."""
    missing = undocumented(docs)
    summary = (
        f"<p>{len(docs)} keys, <span class='ok'>all documented</span>.</p>"
        if not missing
        else f"<p>{len(docs)} keys, <span class='undocumented'>{len(missing)} undocumented</span>: "
        + ", ".join(f"<code>{_esc(k)}</code>" for k in missing)
        + "</p>"
    )
    body = [
        f"<p>Every key of <code>{_esc(source)}</code> (one section per stage; only stage entry "
        "points and notebook setup cells read it). The meaning is the comment directly above "
        "the key or after its value; a key without one is flagged <span "
        "class='undocumented'>undocumented</span>. Generated by <code>hortus docs</code>.</p>",
        summary,
    ]
    sections = [d for d in docs if len(d.path) == 1]
    body.append(
        "<p>Sections: "
        + " · ".join(f"<a href='#{_esc(d.key)}'>{_esc(d.key)}</a>" for d in sections)
        + "</p>"
    )
    for top in sections:
        keys = [d for d in docs if d.path[0] == top.key]
        body.append(f"<h2 id='{_esc(top.key)}'><code>{_esc(top.key)}</code></h2>")
        body.append(
            f"<p>{_inline(top.meaning)}</p>"
            if top.documented
            else "<p><span class='undocumented'>undocumented</span></p>"
        )
        rows = []
        for d in keys[1:]:
            value = (
                "<span class='note'>(section)</span>"
                if d.section
                else (f"<code>{_esc(_value_text(d.value))}</code>")
            )
            meaning = (
                _inline(d.meaning)
                if d.documented
                else "<span class='undocumented'>undocumented</span>"
            )
            rows.append(
                f"<tr id='{_esc(d.key)}'><td><code>{_esc(d.key)}</code></td><td>{value}</td>"
                f"<td>{meaning}</td><td class='note'>{d.line}</td></tr>"
            )
        if rows:
            body.append(
                "<table><thead><tr><th>key</th><th>value</th><th>meaning</th><th>line</th>"
                f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            )
        elif not top.section:
            body.append(f"<p>Value: <code>{_esc(_value_text(top.value))}</code></p>")
    return page_html("Parameters", "\n".join(body))


# ================================================================== models
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


# =================================================================== index
# One-line descriptions of the reports other stages write (by path under reports/).
DESCRIPTIONS = {
    "data_dictionary.md": "the data dictionary as markdown (the source of the HTML page)",
    "ingest.json": "ingest: files landed, skipped and refused, rows per table",
    "silver.json": "silver: landed = accepted + quarantined per table, rules broken",
    "kpis.json": "daily KPIs: sessions, orders, revenue, conversion and click-through",
    "features.json": "feature store: log rows, online store, offline/online skew check",
    "train/metrics.json": "training metrics on the hold-out (ROC AUC, NDCG@k, ...)",
    "train/run.json": "training run: spec, params and tables read",
    "register.json": "the version this build registered and the model's aliases",
    "gate.json": "the latest gate run: checks passed and failed, promotion decision",
    "score.json": "batch scoring: model version used, predictions written per model",
    "monitor.json": "monitoring: metric rows written, alerts fired and resolved",
    "alerts.jsonl": "alert log sink: one JSON line per alert fired or resolved",
}


def _link(href: str, label: str, note: str, extra: str = "") -> str:
    return f"<li><a href='{_esc(href)}'>{_esc(label)}</a> — {_inline(note)}{extra}</li>"


def index_page(reports: Path, stages: dict[str, dict]) -> str:
    """Render reports/index.html: a link with a one-line description to every report present."""
    docs = [_link(f"{DOCS_DIR}/{n}", n.removesuffix(".html"), d) for n, d in PAGES.items()]
    body = [
        "<p>Everything the pipeline publishes, generated by <code>hortus docs</code> (DVC "
        "stage <code>docs</code>, last in <code>dvc repro</code>). Static offline pages: "
        "no scripts.</p>",
        f"<h2>Documentation</h2><ul class='links'>{''.join(docs)}"
        + _link("data_dictionary.md", "data_dictionary.md", DESCRIPTIONS["data_dictionary.md"])
        + "</ul>",
    ]
    models = sorted(
        (p for p in reports.glob("models/*/*/model_report.html") if p.parent.name.isdigit()),
        key=lambda p: (p.parent.parent.name, int(p.parent.name)),
    )
    items = []
    for p in models:
        name, n = p.parent.parent.name, int(p.parent.name)
        card = read_model_report(reports, name, n).card
        verdict = card_verdict(card)
        note = f"model card and governance checklist of {name} v{n}" + (
            "" if verdict is None else f" (checklist {'passes' if verdict else 'fails'})"
        )
        items.append(_link(p.relative_to(reports).as_posix(), f"{name} v{n} model report", note))
    body.append(
        "<h2>Model reports</h2>"
        + (
            f"<ul class='links'>{''.join(items)}</ul>"
            if items
            else "<p class='note'>None published yet (<code>hortus notebooks publish "
            "champion</code>).</p>"
        )
    )
    nbs = []
    for folder in sorted(p for p in reports.glob("train/*") if p.is_dir()):
        stem = f"train/{folder.name}/train"
        for ext, note in ((".html", f"executed training notebook of {folder.name} (HTML)"),
                          (".ipynb", f"executed training notebook of {folder.name} "
                                     "(papermill record)")):  # fmt: skip
            if (reports / f"{stem}{ext}").is_file():
                nbs.append(_link(f"{stem}{ext}", f"{stem}{ext}", note))
    for p in sorted(reports.glob("notebooks/*.html")):
        nbs.append(
            _link(
                p.relative_to(reports).as_posix(), p.name, f"notebook {p.stem}, executed headless"
            )
        )
    body.append(
        "<h2>Notebooks</h2>"
        + (f"<ul class='links'>{''.join(nbs)}</ul>" if nbs else "<p class='note'>None yet.</p>")
    )
    gates = sorted(
        reports.glob("gate/*/v*.md"),
        key=lambda p: (p.parent.name, int(re.sub(r"\D", "", p.stem) or 0)),
    )
    items = []
    for p in gates:
        model = p.parent.name
        rendered = reports / DOCS_DIR / "gate" / model / f"{p.stem}.html"
        first = p.read_text(encoding="utf-8").splitlines()[:1]
        note = first[0].lstrip("# ").strip() if first else "gate report"
        source_href = f"gate/{model}/{p.name}"
        href = rendered.relative_to(reports).as_posix() if rendered.is_file() else source_href
        source = f" (<a href='{_esc(source_href)}'>markdown</a>)"
        items.append(_link(href, f"gate {model} {p.stem}", note, source))
    body.append(
        "<h2>Gate reports</h2>"
        + (f"<ul class='links'>{''.join(items)}</ul>" if items else "<p class='note'>None yet.</p>")
    )
    declared: dict[str, str] = {}
    for stage, st in stages.items():
        for kind in ("metrics", "outs", "plots"):
            for item in _as_list(st.get(kind)):
                path = item.split(" (")[0]
                if path.startswith("reports/") and not path.endswith("/"):
                    declared.setdefault(path.removeprefix("reports/"), stage)
    summaries = []
    for rel in sorted(set(DESCRIPTIONS) - {"data_dictionary.md"} | set(declared)):
        path = reports / rel
        if (
            not path.is_file()
            or rel == "index.html"
            or not rel.endswith((".json", ".jsonl", ".csv"))
        ):
            continue
        stage = declared.get(rel)
        note = DESCRIPTIONS.get(rel) or f"written by stage {stage}"
        if stage and rel in DESCRIPTIONS:
            note += f" (stage {stage})"
        summaries.append(_link(rel, rel, note))
    body.append(
        "<h2>Monitoring and stage summaries</h2>"
        + (
            f"<ul class='links'>{''.join(summaries)}</ul>"
            if summaries
            else "<p class='note'>None yet.</p>"
        )
    )
    shots = [
        _link(p.relative_to(reports).as_posix(), p.name, "screenshot of an app (browser test)")
        for p in sorted(reports.glob("screenshots/*.png"))
    ]
    if shots:
        body.append(f"<h2>App screenshots</h2><ul class='links'>{''.join(shots)}</ul>")
    return page_html("Hortus reports", "\n".join(body), home="index.html", nav=f"{DOCS_DIR}/")


# =================================================================== build
def build_site(paths: Paths, lh: Lakehouse) -> dict:
    """Write the data dictionary, the docs pages and reports/index.html; return a summary.

    Reads the catalog and the registry through `lh` (as its user), dvc.yaml, params.yaml,
    `dvc dag` (when the project has a dvc.yaml) and the reports other stages wrote.
    """
    reports = paths.reports
    docs_dir = reports / DOCS_DIR
    dictionary = data_dictionary(lh)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "data_dictionary.md").write_text(dictionary, encoding="utf-8")
    written = []
    for md in sorted(reports.glob("gate/*/v*.md")):
        text = md.read_text(encoding="utf-8")
        head, _, rest = text.partition("\n")
        title, text = (
            (head.lstrip("# ").strip(), rest) if head.startswith("# ") else (md.stem, text)
        )
        page = page_html(title, markdown_html(text), home="../../../index.html", nav="../../")
        written.append(_write(docs_dir / "gate" / md.parent.name / f"{md.stem}.html", page))
    stages = load_stages(paths.root)
    dag = dvc_dag(paths.root) if (paths.root / "dvc.yaml").exists() else None
    written.append(
        _write(docs_dir / "architecture.html", architecture_page(paths.root, lh, dag, stages))
    )
    written.append(
        _write(
            docs_dir / "data_dictionary.html",
            page_html("Data dictionary", markdown_html(dictionary.split("\n", 1)[1])),
        )
    )
    params_file = paths.root / "params.yaml"
    params = (
        parse_param_comments(params_file.read_text(encoding="utf-8"), source=str(params_file))
        if params_file.exists()
        else []
    )
    written.append(_write(docs_dir / "parameters.html", parameters_page(params)))
    written.append(_write(docs_dir / "models.html", models_page(lh, reports, docs_dir)))
    written.append(_write(reports / "index.html", index_page(reports, stages)))
    return {
        "data_dictionary": "reports/data_dictionary.md",
        "pages": [p.relative_to(paths.root).as_posix() for p in written],
        "dag_edges": len(dag.edges) if dag else 0,
        "undocumented_params": undocumented(params),
    }
