"""The pipeline DAG from `dvc dag`: parsing, a layered layout and its inline SVG drawing.

Re-exported by `hortus.publishing.site`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hortus.errors import HortusError
from hortus.publishing._html import _esc


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


def place_layers(
    layers: list[list[str]], dx: int, dv: int, dy: int, h: int
) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """Centre each layer's nodes in slots (dx wide, dv for virtual nodes); return w, h, xy."""

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
    return width, height, xy


def edge_paths(
    chains: dict[tuple[str, str], list[str]],
    xy: dict[str, tuple[float, float]],
    h: float,
    *,
    marker: str,
    stroke_width: float,
) -> list[str]:
    """Draw each edge as a curve through its virtual nodes, from box bottom to box top."""
    paths = []
    for (a, b), chain in chains.items():
        pts = [(xy[a][0], xy[a][1] + h / 2), *(xy[v] for v in chain), (xy[b][0], xy[b][1] - h / 2)]
        d = f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"
        for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
            ym = (y0 + y1) / 2
            d += f" C{x0:.1f},{ym:.1f} {x1:.1f},{ym:.1f} {x1:.1f},{y1:.1f}"
        paths.append(
            f"<path d='{d}' fill='none' stroke='#57606a' stroke-width='{stroke_width}' "
            f"marker-end='url(#{marker})'><title>{_esc(a)} → {_esc(b)}</title></path>"
        )
    return paths


def dag_svg(dag: Dag, *, stage_names: Iterable[str] = ()) -> str:
    """Draw a DAG top-down as inline SVG (boxes and curved arrows), no external renderer."""
    layers, chains = layered_layout(dag.nodes, dag.edges)
    stages = set(stage_names)
    dx, dv, dy, h = 150, 34, 74, 32  # slot widths of a node and of a virtual node
    width, height, xy = place_layers(layers, dx, dv, dy, h)
    paths = edge_paths(chains, xy, h, marker="arrow", stroke_width=1.3)
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
