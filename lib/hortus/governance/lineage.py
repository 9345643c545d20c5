"""Lineage as a graph: tables, feature groups, model versions and predictions.

Built from what is recorded, never from what the code says should happen:

- each Delta commit of a table carries the tables (and versions) that write read
  (`Lakehouse.write(inputs=...)`), and, for predictions, the model version that wrote
  them (`model=` "name@vN") and the feature groups used (`features=`);
- each registered model version's receipt (ops.model_versions) names the tables it was
  trained on, at which versions.

Edges run upstream -> downstream: `bronze.customers -> silver.customers`,
`gold.examples -> model churn@v3 -> gold.predictions_churn`.  A table's edges
are the union over its commits (the newest version read per input).  Bookkeeping
tables (`ops.*`) appear only when a commit names a model (the prediction log).

Reads go through the table API as the Lakehouse's user: `Lakehouse.history` (read
grant, audited) per table; tables the user may not read are left out of the graph
and counted in `hidden` (asking about one of them directly is refused and audited).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

from hortus.errors import TableNotFound
from hortus.lakehouse.tables import Lakehouse

MODEL = "model"


@dataclass
class Graph:
    """Nodes (id -> kind) and edges (upstream, downstream) -> version read (or None)."""

    nodes: dict[str, str] = field(default_factory=dict)
    edges: dict[tuple[str, str], int | None] = field(default_factory=dict)
    hidden: int = 0  # tables left out: the user may not read them

    def add(self, src: str, dst: str, version: int | None = None) -> None:
        """Add an edge (keeping the newest version read)."""
        known = [v for v in (self.edges.get((src, dst)), version) if v is not None]
        self.edges[(src, dst)] = max(known) if known else None

    def walk(self, start: str, direction: str) -> list[tuple[str, str, int | None, int]]:
        """Return the edges reached from `start` upstream or downstream, with their depth."""
        up = direction == "upstream"
        seen, out = {start}, []
        queue = deque([(start, 1)])
        while queue:
            node, depth = queue.popleft()
            for (a, b), v in sorted(self.edges.items()):
                if (b if up else a) != node:
                    continue
                nxt = a if up else b
                out.append((a, b, v, depth))
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append((nxt, depth + 1))
        return out


def kind(name: str, catalog_names: set[str]) -> str:
    """Return a node's kind: model, feature (gold.fs_*), or the table's layer."""
    if name.startswith(MODEL + " "):
        return MODEL
    if name.startswith("gold.fs_"):
        return "feature"
    return name.split(".", 1)[0] if name in catalog_names else "table"


def model_node(name: str, version: int | str) -> str:
    """Return the node id of a model version: 'model recommender@v3'."""
    return f"{MODEL} {name}@v{str(version).lstrip('v')}"


def build(lh: Lakehouse, *, include_ops: bool = False) -> Graph:
    """Return the lineage graph of every table and model version `lh`'s user may read.

    Edges from or to a table the user may not read are left out too (only the count
    of such tables is said).
    """
    graph = Graph()
    names = set(lh.catalog.names())
    assert lh.policy is not None
    for name in sorted(names):
        if not lh.exists(name):
            continue
        if not lh.policy.decide(lh.user, "read", name).allowed:
            graph.hidden += 1
            continue
        _table_edges(lh, name, graph, include_ops=include_ops)
    _model_edges(lh, graph)
    hidden = {n for n in names if not lh.policy.decide(lh.user, "read", n).allowed}
    graph.edges = {e: v for e, v in graph.edges.items() if not hidden & set(e)}
    for a, b in graph.edges:
        for n in (a, b):
            graph.nodes.setdefault(n, kind(n, names))
    return graph


def _table_edges(lh: Lakehouse, name: str, graph: Graph, *, include_ops: bool) -> None:
    history = lh.history(name)
    ops = name.startswith("ops.")
    for row in history.iter_rows(named=True):
        model = row.get("model")
        if ops and not model and not include_ops:
            continue
        if model:
            mname, _, ver = model.partition("@")
            graph.add(model_node(mname, ver), name)
        try:
            inputs = json.loads(row["inputs"] or "{}")
        except ValueError:
            continue
        for src, version in inputs.items():
            if src == name or (src.startswith("ops.") and not include_ops):
                continue
            graph.add(src, name, int(version) if version is not None else None)


def _model_edges(lh: Lakehouse, graph: Graph) -> None:
    """Add table -> model version edges from the registry receipts (if readable)."""
    from hortus.models._registry_base import VERSIONS

    assert lh.policy is not None
    if not lh.exists(VERSIONS) or not lh.policy.decide(lh.user, "read", VERSIONS).allowed:
        return
    frame = lh.scan(VERSIONS).select("name", "version", "receipt").collect()
    for row in frame.iter_rows(named=True):
        node = model_node(row["name"], row["version"])
        graph.nodes[node] = MODEL
        try:
            read = json.loads(row["receipt"] or "{}").get("tables_read") or {}
        except ValueError:
            continue
        for src, version in read.items():
            if not src.startswith("ops."):
                graph.add(src, node, int(version))


def resolve(graph: Graph, lh: Lakehouse, what: str) -> str:
    """Return the node id of a table name, a model version (name@v3, name:3) or a model name.

    A model name alone means its newest registered version.  Asking about a table the
    user may not read is refused and audited (AccessDenied); an unknown name says what
    is known.
    """
    if what in lh.catalog.names():
        assert lh.policy is not None
        if not lh.policy.decide(lh.user, "read", what).allowed:
            lh.history(what)  # refused and audited: no lineage of a table one may not read
        if not lh.exists(what):
            raise TableNotFound(f"{what} has not been written yet: no lineage recorded")
        return what
    text = what.removeprefix(MODEL + " ").replace(":", "@")
    name, _, ver = text.partition("@")
    models = sorted(
        (n for n, k in graph.nodes.items() if k == MODEL),
        key=lambda n: int(n.rsplit("@v", 1)[1]),
    )
    if ver:
        node = model_node(name, ver)
        if node in graph.nodes:
            return node
    else:
        mine = [n for n in models if n.split(" ", 1)[1].split("@")[0] == name]
        if mine:
            return mine[-1]
    known = sorted({n.split(" ", 1)[1].split("@")[0] for n in models})
    raise TableNotFound(
        f"no table or model {what!r}; tables: `hortus catalog list`, models with "
        f"registered versions: {', '.join(known) or 'none'}"
    )


def answer(lh: Lakehouse, what: str, *, upstream: bool = True, downstream: bool = True) -> dict:
    """Return the lineage of a table or model version as a JSON-friendly dict.

    {"node", "kind", "upstream": [{"from", "to", "version", "depth"}], "downstream": [...],
    "hidden": tables left out because the user may not read them}.
    """
    graph = build(lh)
    node = resolve(graph, lh, what)
    out: dict = {"node": node, "kind": graph.nodes.get(node) or kind(node, set()),
                 "hidden": graph.hidden}  # fmt: skip
    for direction, wanted in (("upstream", upstream), ("downstream", downstream)):
        if wanted:
            out[direction] = [
                {"from": a, "to": b, "version": v, "depth": d}
                for a, b, v, d in graph.walk(node, direction)
            ]
    return out
