"""Search the catalog: tags on tables and columns, ranked text search, list filters.

Tags come from the contracts (`tags:` on a table or a column, see
`hortus.lakehouse.contracts`) plus implicit ones derived from what the contract says:

- a column with a PII class (`pii:` direct, quasi or free_text) gets `pii`, and its
  table too; a `sensitive: true` column gets `sensitive`;
- a gold table named `fs_*` (a feature group's offline log) gets `feature`;
- a gold table named `kpi_*` gets `kpi`.

`search(catalog, text)` looks at table and column names, tags, owners and
descriptions and ranks what matches: an exact name first, then part of a name, then
a tag, then an owner, then a word of a description.  `suggest` offers close names when
nothing matches.  `hortus catalog search`, `hortus catalog list --tag/--layer/--owner/--pii`,
the explore notebook's search box and the docs site's catalog page all use these.

Search reads contracts only (no table data); callers pass `visible` (the user's read
grant, `Policy.decide`) so nobody finds a table they may not read.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hortus.lakehouse.contracts import Column, Contract

#: match kinds, best first (the rank of a hit is its kind's index)
KINDS = ("name", "name part", "tag", "owner", "description")


def column_tags(column: Column) -> tuple[str, ...]:
    """Return a column's tags: declared ones, then `pii` / `sensitive` when the contract says so."""
    implicit = ["pii"] if column.pii != "none" else []
    implicit += ["sensitive"] if column.sensitive else []
    return tuple(dict.fromkeys([*column.tags, *implicit]))


def table_tags(contract: Contract) -> tuple[str, ...]:
    """Return a table's tags: declared, `pii` (a PII column), `feature` (gold.fs_*), `kpi`."""
    implicit = []
    if any(c.pii != "none" for c in contract.columns):
        implicit.append("pii")
    if contract.layer == "gold" and contract.name.startswith("fs_"):
        implicit.append("feature")
    if contract.layer == "gold" and contract.name.startswith("kpi_"):
        implicit.append("kpi")
    return tuple(dict.fromkeys([*contract.tags, *implicit]))


def tags_index(contracts: Iterable[Contract]) -> dict[str, list[str]]:
    """Return tag -> sorted `layer.table` and `layer.table.column` names carrying it."""
    out: dict[str, set[str]] = {}
    for c in contracts:
        for t in table_tags(c):
            out.setdefault(t, set()).add(c.full_name)
        for col in c.columns:
            for t in column_tags(col):
                out.setdefault(t, set()).add(f"{c.full_name}.{col.name}")
    return {t: sorted(v) for t, v in sorted(out.items())}


@dataclass(frozen=True)
class Hit:
    """One search result: a table (column None) or a column, and why it matched."""

    table: str
    column: str | None
    kind: str  # one of KINDS
    text: str  # what matched (the name, tag, owner or the description)
    tags: tuple[str, ...]
    owner: str
    description: str = ""

    @property
    def rank(self) -> int:
        """Return the rank of the match kind (0 best)."""
        return KINDS.index(self.kind)

    @property
    def name(self) -> str:
        """Return `layer.table` or `layer.table.column`."""
        return self.table if self.column is None else f"{self.table}.{self.column}"

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict."""
        return {"name": self.name, "table": self.table, "column": self.column,
                "match": self.kind, "text": self.text, "tags": list(self.tags),
                "owner": self.owner, "description": self.description}  # fmt: skip


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9_]+", text.lower()))


def _match(query: str, name: str, full: str, tags: Iterable[str], owner: str, desc: str):
    """Return the best match kind and matched text of one table or column, or None."""
    q = query.lower()
    if q in (name.lower(), full.lower()):
        return "name", full
    # part of a name: a column's own name (a dotted query: its full name), a table's name
    if q in (full if "." in q or full.count(".") == 1 else name).lower():
        return "name part", full
    for t in tags:
        if q == t or (len(q) >= 3 and q in t):
            return "tag", t
    if q == owner.lower():
        return "owner", owner
    words = _words(q)
    if words and words <= _words(desc):
        return "description", desc
    return None


def search(
    contracts: Iterable[Contract], text: str, *, visible: Callable[[str], bool] | None = None
) -> list[Hit]:
    """Return the tables and columns matching `text`, best first (then by name).

    Every word of a multi-word query must appear in a description; names, tags and
    owners match the whole query (case-insensitive).  Tables for which `visible`
    returns False are left out.
    """
    query = " ".join(str(text).split())
    if not query:
        return []
    hits: list[Hit] = []
    for c in contracts:
        if visible is not None and not visible(c.full_name):
            continue
        ttags = table_tags(c)
        m = _match(query, c.name, c.full_name, ttags, c.owner, c.description)
        if m:
            hits.append(Hit(c.full_name, None, m[0], m[1], ttags, c.owner, c.description))
        for col in c.columns:
            ctags = column_tags(col)
            m = _match(query, col.name, f"{c.full_name}.{col.name}", ctags, "", col.description)
            if m:
                hits.append(Hit(c.full_name, col.name, m[0], m[1], ctags, c.owner, col.description))
    return sorted(hits, key=lambda h: (h.rank, h.column is not None, h.name))


def suggest(
    contracts: Iterable[Contract], text: str, *, visible: Callable[[str], bool] | None = None,
    n: int = 5,
) -> list[str]:  # fmt: skip
    """Return up to `n` table names, column names, tags or owners close to `text`."""
    words: set[str] = set()
    for c in contracts:
        if visible is not None and not visible(c.full_name):
            continue
        words |= {c.full_name, c.name, c.owner, *table_tags(c)}
        for col in c.columns:
            words |= {col.name, *column_tags(col)}
    return difflib.get_close_matches(str(text).lower(), sorted(words), n=n, cutoff=0.6)


def filter_tables(
    contracts: Iterable[Contract],
    *,
    layer: str | None = None,
    owner: str | None = None,
    tag: str | None = None,
    pii: bool | None = None,
) -> list[Contract]:
    """Return the contracts with that layer, owner, tag (table or one of its columns), PII."""
    out = []
    for c in contracts:
        tags = set(table_tags(c)) | {t for col in c.columns for t in column_tags(col)}
        if layer is not None and c.layer != layer:
            continue
        if owner is not None and c.owner != owner:
            continue
        if tag is not None and tag not in tags:
            continue
        if pii is not None and ("pii" in tags) != pii:
            continue
        out.append(c)
    return out
