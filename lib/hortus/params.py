"""Read params.yaml (only stage entry points and notebook setup cells call this)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from hortus.errors import HortusError


def read_params(path: Path) -> dict[str, Any]:
    """Return a whole params file as a mapping, or raise a clear error naming the file."""
    path = Path(path)
    if not path.exists():
        raise HortusError(f"{path}: parameters file not found")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise HortusError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise HortusError(f"{path}: expected a mapping of sections, got {type(doc).__name__}")
    return doc


def load_section(path: Path, section: str) -> dict[str, Any]:
    """Return one section of params.yaml, or raise a clear error naming file and section.

    Stage commands check the section against its schema too (`hortus.params_schema`,
    called by the CLI's `_params`, which this module must not import: the schemas
    use the library's own config parsers, and those use `refuse_unknown_keys` here).
    """
    path = Path(path)
    doc = read_params(path)
    if section not in doc:
        raise HortusError(f"{path}: no section {section!r} (sections: {', '.join(doc)})")
    return doc[section] or {}


def refuse_unknown_keys(
    data: Mapping[str, Any],
    known: Iterable[str],
    *,
    source: str,
    error: type[HortusError] = HortusError,
) -> None:
    """Raise `error` naming the keys of `data` that are not in `known`, and the allowed ones.

    Examples
    --------
    >>> refuse_unknown_keys({"alpah": 1}, ["alpha"], source="drift")
    Traceback (most recent call last):
    ...
    hortus.errors.HortusError: drift: unknown key(s) alpah; allowed: alpha
    """
    known = set(known)
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(
            f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
        )
