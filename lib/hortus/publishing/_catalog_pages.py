"""Docs-site pages of the catalog (tags index) and of lineage (a graph, inline SVG).

catalog.html: every tag (declared in the contracts, plus the implicit pii, sensitive,
feature and kpi of `hortus.lakehouse.catalog_search`) with the tables and columns that
carry it, then every table with its layer, owner, tags, description and tagged columns.
The page is static (the site loads no scripts): the browser's find-in-page searches it,
and `hortus catalog search` ranks.

lineage.html: the lineage graph of `hortus.governance.lineage` (tables, feature groups,
model versions, predictions) drawn with the site's layered layout (`_dag.layered_layout`)
as inline SVG, and the same edges as a table (upstream, version read, downstream).
Both read through the table API as the docs stage's user.
"""

from __future__ import annotations

from hortus.errors import HortusError
from hortus.lakehouse.catalog_search import column_tags, table_tags, tags_index
from hortus.lakehouse.tables import Lakehouse
from hortus.publishing._dag import edge_paths, layered_layout, place_layers
from hortus.publishing._html import _esc, page_html

CATALOG_PAGE = "catalog.html"
LINEAGE_PAGE = "lineage.html"

#: node fill per kind (model versions stand out; the restricted zone is greyed)
FILLS = {
    "model": "#ddf4ff",
    "feature": "#dafbe1",
    "gold": "#fff8c5",
    "silver": "#f6f8fa",
    "bronze": "#eaeef2",
    "quarantine": "#eaeef2",
    "ops": "#fbefff",
}


def _anchor(text: str) -> str:
    return "tag-" + "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in text)


def catalog_page(lh: Lakehouse) -> str:
    """Return the catalog page: tags index, then every table with its tags and tagged columns."""
    contracts = list(lh.catalog)
    index = tags_index(contracts)
    parts = [
        "<p>Tags come from the contracts (<code>tags:</code> on a table or a column) plus "
        "implicit ones: <code>pii</code> (a column with a PII class, and its table), "
        "<code>sensitive</code>, <code>feature</code> (gold.fs_* feature logs), "
        "<code>kpi</code> (gold.kpi_*). Search from the command line with "
        "<code>hortus catalog search TEXT</code> or filter with "
        "<code>hortus catalog list --tag TAG</code>.</p>",
        "<h2>Tags</h2><p>"
        + " ".join(
            f"<a href='#{_anchor(t)}'><code>{_esc(t)}</code></a> ({len(v)})"
            for t, v in index.items()
        )
        + "</p>",
    ]
    for tag, names in index.items():
        tables = [n for n in names if n.count(".") == 1]
        columns = [n for n in names if n.count(".") == 2]
        parts.append(f"<h3 id='{_anchor(tag)}'>{_esc(tag)}</h3>")
        if tables:
            parts.append(
                "<p>tables: "
                + ", ".join(f"<a href='#{_esc(n)}'><code>{_esc(n)}</code></a>" for n in tables)
                + "</p>"
            )
        if columns:
            parts.append(
                "<p>columns: " + ", ".join(f"<code>{_esc(n)}</code>" for n in columns) + "</p>"
            )
    parts.append(
        "<h2>Tables</h2><table><thead><tr><th>table</th><th>layer</th><th>owner</th>"
        "<th>tags</th><th>description</th><th>tagged columns</th></tr></thead><tbody>"
    )
    for c in contracts:
        tagged = [
            f"<code>{_esc(col.name)}</code> ({_esc(', '.join(column_tags(col)))})"
            for col in c.columns
            if column_tags(col)
        ]
        parts.append(
            f"<tr id='{_esc(c.full_name)}'><td><code>{_esc(c.full_name)}</code></td>"
            f"<td>{_esc(c.layer)}</td><td>{_esc(c.owner)}</td>"
            f"<td>{_esc(', '.join(table_tags(c))) or '-'}</td><td>{_esc(c.description)}</td>"
            f"<td>{', '.join(tagged) or '-'}</td></tr>"
        )
    parts.append("</tbody></table>")
    return page_html("Catalog: tags of tables and columns", "\n".join(parts))


def lineage_svg(nodes: dict[str, str], edges: list[tuple[str, str]]) -> str:
    """Draw a lineage graph top-down as inline SVG; node width follows the longest label."""
    layers, chains = layered_layout(list(nodes), edges)
    h, dy, dv = 30, 80, 30
    dx = max((7 * len(n) + 24 for n in nodes), default=120) + 12
    width, height, xy = place_layers(layers, dx, dv, dy, h)
    out = edge_paths(chains, xy, h, marker="larrow", stroke_width=1.2)
    for n, kind in nodes.items():
        x, y = xy[n]
        w = 7 * len(n) + 24
        out.append(
            f"<g class='node'><rect x='{x - w / 2:.1f}' y='{y - h / 2:.1f}' width='{w}' "
            f"height='{h}' rx='6' fill='{FILLS.get(kind, '#ffffff')}' stroke='#0969da'/>"
            f"<text x='{x:.1f}' y='{y + 4:.1f}' text-anchor='middle' font-size='12'>"
            f"{_esc(n)}<title>{_esc(kind)}</title></text></g>"
        )
    return (
        f"<svg role='img' aria-label='lineage graph' viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' style='max-width:100%;height:auto'>"
        "<defs><marker id='larrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' "
        "markerHeight='7' orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' "
        "fill='#57606a'/></marker></defs>" + "".join(out) + "</svg>"
    )


def lineage_page(lh: Lakehouse) -> str:
    """Return the lineage page: the graph (inline SVG) and its edges as a table."""
    from hortus.governance.lineage import build

    graph = build(lh)
    intro = (
        "<p>What each table, feature group and model version was built from, as recorded: "
        "each Delta commit names the tables (and versions) that write read and, for "
        "predictions, the model version that wrote them; each registered model version's "
        "receipt names the tables it was trained on. Ask one node with "
        "<code>hortus lineage NAME --upstream</code> or <code>--downstream</code>.</p>"
    )
    if not graph.edges:
        body = intro + "<p class='missing'>No lineage recorded yet: run the pipeline.</p>"
        return page_html("Lineage", body)
    edges = sorted(graph.edges)
    legend = " ".join(
        f"<span style='background:{fill};border:1px solid #0969da;padding:0 .4em'>"
        f"{_esc(kind)}</span>"
        for kind, fill in FILLS.items()
        if kind in graph.nodes.values()
    )
    rows = "".join(
        f"<tr><td><code>{_esc(a)}</code></td><td>{'' if v is None else f'v{v}'}</td>"
        f"<td><code>{_esc(b)}</code></td></tr>"
        for (a, b), v in sorted(graph.edges.items())
    )
    hidden = (
        f"<p class='missing'>{graph.hidden} table(s) the docs user may not read are left out.</p>"
        if graph.hidden
        else ""
    )
    try:
        svg = lineage_svg(graph.nodes, edges)
    except HortusError as exc:  # a cycle (a table reading its own output): the table only
        svg = f"<p class='missing'>not drawn: {_esc(exc)}</p>"
    body = (
        intro
        + f"<p>{legend}</p><figure class='diagram'>{svg}</figure>"
        + hidden
        + "<h2>Edges</h2><table><thead><tr><th>upstream</th><th>version read</th>"
        + f"<th>downstream</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return page_html("Lineage", body)
