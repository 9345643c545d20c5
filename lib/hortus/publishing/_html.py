"""The site's HTML: page frame (inline CSS, navigation), escaping and markdown rendering.

Re-exported by `hortus.publishing.site`.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import mistune
from mistune.renderers.html import HTMLRenderer

from hortus.publishing.notebooks import check_offline

DOCS_DIR = "docs"
PAGES = {
    "architecture.html": "Architecture: data flow, pipeline DAG (from `dvc dag`) and stages",
    "data_dictionary.html": "Data dictionary: every catalogued table's contract and lineage",
    "parameters.html": "Parameters: every key of params.yaml with its value and meaning",
    "models.html": "Models: registered versions, aliases, gates, approvals and reports",
    "catalog.html": "Catalog: tags of tables and columns (pii, kpi, feature, ...), every table",
    "lineage.html": "Lineage: tables -> features -> model versions -> predictions, as a graph",
}


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _inline(text: str) -> str:
    """Escape text and show its `backticked` parts as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _esc(text))


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
