"""params.yaml documented by its comments: the comment parser and the parameters page.

Re-exported by `hortus.publishing.site`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from hortus.errors import HortusError
from hortus.publishing._html import _esc, _inline, page_html

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
