"""The user guide: docs/*.md of the project rendered into reports/docs/guide/*.html.

The README stays short and links these pages; the docs site carries the same text, so
a reader of the published site does not need the repository.  Links between guide pages
(`models.md`, `docs/models.md#promotion-gates`) become links to the rendered pages;
links to other repository files are left as text paths.

Re-exported by `hortus.publishing.site`.
"""

from __future__ import annotations

import re
from pathlib import Path

from hortus.publishing._html import DOCS_DIR, _esc, _write, markdown_html, page_html

GUIDE_DIR = "guide"
_MD_LINK = re.compile(r"\]\((?:\.\./)?(?:docs/)?([\w-]+)\.md(#[\w-]*)?\)")


def guide_sources(root: Path) -> list[Path]:
    """Return the project's guide pages (docs/*.md), sorted by name."""
    return sorted((root / "docs").glob("*.md")) if (root / "docs").is_dir() else []


def _title(text: str, fallback: str) -> tuple[str, str]:
    head, _, rest = text.partition("\n")
    return (head[2:].strip(), rest) if head.startswith("# ") else (fallback, text)


def guide_pages(root: Path, reports: Path) -> list[Path]:
    """Render every docs/*.md to reports/docs/guide/<name>.html plus an index; return them."""
    out_dir = reports / DOCS_DIR / GUIDE_DIR
    written, items = [], []
    for md in guide_sources(root):
        title, body = _title(md.read_text(encoding="utf-8"), md.stem)
        body = _MD_LINK.sub(lambda m: f"]({m.group(1)}.html{m.group(2) or ''})", body)
        page = page_html(title, markdown_html(body), home="../../index.html", nav="../")
        written.append(_write(out_dir / f"{md.stem}.html", page))
        items.append(f"<li><a href='{_esc(md.stem)}.html'>{_esc(title)}</a></li>")
    if written:
        body = f"<ul class='links'>{''.join(items)}</ul>"
        written.append(
            _write(
                out_dir / "index.html",
                page_html("User guide", body, home="../../index.html", nav="../"),
            )
        )
    return written
