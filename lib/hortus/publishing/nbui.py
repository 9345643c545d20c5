"""Small display helpers shared by the marimo notebooks (notebooks/*.py).

Each works both in a live marimo session (interactive widgets) and in a headless
run (papermill, `python notebooks/X.py`), where outputs are static HTML that the
published reports keep.
"""

from __future__ import annotations

import marimo as mo
import polars as pl

from hortus.publishing.explore import read_or_note as load_table
from hortus.publishing.notebooks import rows_table_html

__all__ = ["load_table", "note", "show_table"]


def note(message: str, kind: str = "neutral") -> mo.Html:
    """Return a callout for a missing or unreadable piece of a page (markdown message)."""
    return mo.callout(mo.md(message), kind=kind)


def show_table(frame: pl.DataFrame, limit: int = 60) -> object:
    """Return an interactive table in marimo, else a static HTML table (papermill reports)."""
    if mo.running_in_notebook():
        return mo.ui.table(frame, selection=None)
    if frame.is_empty():
        return mo.md("*(no rows)*")
    return mo.Html(rows_table_html(frame.to_dicts(), limit=limit))
