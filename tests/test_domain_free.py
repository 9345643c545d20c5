"""The generic library names no example domain's tables, columns or models.

Every table, column and model the plant shop's definition declares (its contracts,
the derived feature-log and training-set contracts, hortus.yaml's models) is looked
for as a string literal in every module of lib/hortus outside the domain packages,
and in the notebooks; so is the word plantshop.  Names that Hortus's own built-in
tables also use (e.g. `score`, `ts` of the audit log) are generic and allowed, and
so are a few words of Hortus's own vocabulary listed in GENERIC_WORDS.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hortus.lakehouse.catalog import BRONZE_META, BUILTIN_CONTRACTS, Catalog
from hortus.lakehouse.contracts import load_contracts
from hortus.project.definition import Project

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib" / "hortus"
DOMAIN = Project.load(ROOT)
# column type names (`date`), the bronze payload of JSON lines (`_raw`), the policy's
# `users` key, polars' `category` dtype, the PII scanner's `text` kind and the feature
# store's point-in-time join `training_set` (a qualified `gold.training_set` is still found)
# "address": a Ray cluster's address (params.yaml executor.address), not a postal one
GENERIC_WORDS = {"date", "text", "category", "_raw", "users", "training_set", "address"}


def _domain_dirs() -> list[Path]:
    return [p for p in LIB.rglob("*") if p.is_dir() and p.name == DOMAIN.name]


def _declared() -> tuple[set[str], set[str]]:
    """Return (qualified table names, bare table/column/model names) of the domain."""
    catalog = Catalog.load(root=ROOT)
    builtin = load_contracts(BUILTIN_CONTRACTS)
    generic = {c.name for t in builtin.values() for c in t.columns}
    generic |= {t.name for t in builtin.values()} | {c.name for c in BRONZE_META}
    domain = [c for c in catalog if c.full_name not in builtin]
    tables = {c.full_name for c in domain if c.layer != "bronze"}
    names = {c.name for c in domain} | {col.name for c in domain for col in c.columns}
    names |= set(DOMAIN.models)
    return tables, names - generic - GENERIC_WORDS


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def _library_files() -> list[Path]:
    skip = _domain_dirs()
    return sorted(p for p in LIB.rglob("*.py") if not any(d in p.parents for d in skip)) + sorted(
        (ROOT / "notebooks").glob("*.py")
    )


def test_domain_declares_names_to_look_for():
    """Check that the guard below has the plant shop's tables, columns and model to find."""
    tables, names = _declared()
    assert len(tables) >= 8 and len(names) >= 30
    assert _domain_dirs(), f"no domain package named {DOMAIN.name} under lib/hortus"


@pytest.mark.parametrize("path", _library_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_library_module_names_no_domain_table_column_or_model(path):
    """Check that a generic module's string literals name nothing of the example domain."""
    tables, names = _declared()
    word = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?")
    found = []
    for line, text in _literals(path):
        if DOMAIN.name in text.lower():
            found.append((line, DOMAIN.name))
        for token in word.findall(text):
            if token in tables or (token in names and token == text.strip()):
                found.append((line, token))
    assert not found, f"{path.relative_to(ROOT)} names the example domain: {found}"
