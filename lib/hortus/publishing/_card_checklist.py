"""The governance checklist of a model card: each item passing or failing, and why.

Re-exported by `hortus.publishing.model_card`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from hortus.errors import TableNotFound
from hortus.lakehouse.tables import Lakehouse, read_contract
from hortus.publishing._card_data import RECEIPT_FIELDS, CardText, CheckItem


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "n/a"
    return "n/a" if value is None else str(value)


def _check_gate(runs: pl.DataFrame, name: str, version: int) -> CheckItem:
    if runs.height == 0:
        return CheckItem(
            "gate_passed", False, f"no gate run: `hortus gate {version} --model {name}`"
        )
    last = runs.row(-1, named=True)
    when = f"{last['finished_at']:%Y-%m-%d %H:%M} UTC"
    if last["passed"]:
        return CheckItem(
            "gate_passed", True, f"run {last['run_id']} ({when}): {last['checks']} checks passed"
        )
    return CheckItem(
        "gate_passed",
        False,
        f"run {last['run_id']} ({when}) failed {last['failed']} of {last['checks']} "
        f"check(s): {last['failed_checks']}",
    )


def _check_four_eyes(approvals: pl.DataFrame, author: str) -> CheckItem:
    if approvals.height == 0:
        return CheckItem("four_eyes", False, f"no approval recorded; the author is {author}")
    valid = approvals.filter(pl.col("not_author") & pl.col("grant_now"))
    if valid.height:
        who = ", ".join(valid["approver"].unique(maintain_order=True).to_list())
        return CheckItem("four_eyes", True, f"approved by {who}; the author is {author}")
    ignored = ", ".join(
        f"{r['approver']} ({'the author' if not r['not_author'] else 'no approve grant now'})"
        for r in approvals.iter_rows(named=True)
    )
    return CheckItem("four_eyes", False, f"no valid approval: {ignored}")


def _check_receipt(receipt: Mapping[str, Any]) -> tuple[CheckItem, CheckItem]:
    missing = [f for f in RECEIPT_FIELDS if not receipt.get(f) or receipt.get(f) == "unknown"]
    if not receipt.get("params"):
        missing.append("params")
    tables = dict(receipt.get("tables_read") or {})
    if not tables:
        missing.append("tables_read")
    hashes = dict(receipt.get("content_hashes") or {})
    unhashed = [t for t in tables if t not in hashes]
    if unhashed:
        missing.append(f"content_hashes of {', '.join(unhashed)}")
    complete = CheckItem(
        "receipt_complete",
        not missing,
        f"missing: {', '.join(missing)}"
        if missing
        else f"git commit, lock digests, data md5, params and {len(tables)} table version(s) "
        "with content hashes",
    )
    commit = receipt.get("git_commit") or "unknown"
    dirty = receipt.get("git_dirty")
    clean = CheckItem(
        "clean_build",
        commit != "unknown" and dirty is False,
        f"commit {commit[:12]}, "
        + ("clean tree" if dirty is False else "uncommitted changes at build time (git_dirty)"),
    )
    return complete, clean


def _check_training(training: pl.DataFrame) -> CheckItem:
    if training.height == 0:
        return CheckItem("training_data_verified", False, "the receipt lists no table read")
    bad = training.filter(~pl.col("matches"))
    if bad.height == 0:
        listed = ", ".join(f"{r['table']} v{r['version']}" for r in training.iter_rows(named=True))
        return CheckItem("training_data_verified", True, f"content hashes match: {listed}")
    why = "; ".join(
        f"{r['table']} v{r['version']}: "
        + (
            r["note"]
            or (
                "no content hash in the receipt"
                if r["recorded_hash"] is None
                else f"hash now {r['hash_now']} != recorded {r['recorded_hash']}"
                + (f" (masked for this user: {r['masked']})" if r["masked"] else "")
            )
        )
        for r in bad.iter_rows(named=True)
    )
    return CheckItem("training_data_verified", False, why)


def _check_pii(lh: Lakehouse, features: Sequence[str], tables: Sequence[str]) -> CheckItem:
    classes: dict[str, str] = {}
    for table in tables:
        try:
            contract = read_contract(lh.catalog, table)
        except TableNotFound:
            continue
        for c in contract.columns:
            classes.setdefault(c.name, c.pii)
    if not features:
        return CheckItem("no_pii_features", False, "no feature list recorded for the version")
    unknown = [f for f in features if f not in classes]
    pii = [f"{f} ({classes[f]})" for f in features if classes.get(f, "none") != "none"]
    if pii or unknown:
        parts = []
        if pii:
            parts.append(f"PII feature(s): {', '.join(pii)}")
        if unknown:
            parts.append(
                f"{len(unknown)} feature(s) not classified by any contract of the tables read "
                f"({', '.join(tables) or 'none'}): {', '.join(unknown[:8])}"
            )
        return CheckItem("no_pii_features", False, "; ".join(parts))
    return CheckItem(
        "no_pii_features",
        True,
        f"all {len(features)} features are classified pii=none by the contract(s) of "
        f"{', '.join(tables)}",
    )


def _check_from(name: str, result: Mapping[str, Any] | None, missing: str) -> CheckItem:
    if result is None:
        return CheckItem(name, False, missing)
    detail = f"{result['detail']} (value {_fmt(result.get('value'))}, threshold " + (
        f"{_fmt(result.get('threshold'))})"
    )
    return CheckItem(name, bool(result["passed"]), detail)


def _check_fairness(checks: list[dict[str, Any]], source: str) -> CheckItem:
    if not checks:
        return CheckItem("fairness", False, "no fairness evaluation (no sensitive attribute)")
    judged = [
        c
        for c in checks
        if any(isinstance(v, Mapping) and v.get("judged") for v in (c.get("stats") or {}).values())
    ]
    if not judged:
        return CheckItem(
            "fairness",
            False,
            f"nothing judged ({source}): groups too small for "
            + ", ".join(c["name"] for c in checks),
        )
    failed = [c for c in checks if not c["passed"]]
    detail = "; ".join(f"{c['name']}: {c['detail']}" for c in (failed or checks))
    return CheckItem("fairness", not failed, f"{detail} ({source})")


def _check_documented(text: CardText, model: str) -> CheckItem:
    missing = [
        what
        for what, value in (
            ("owners", text.owners),
            ("intended_use", text.intended_use),
            ("limitations", text.limitations),
        )
        if not value
    ]
    if missing:
        return CheckItem(
            "documented",
            False,
            f"params.yaml model_card.{model} lacks {', '.join(missing)}",
        )
    return CheckItem(
        "documented",
        True,
        f"owners: {', '.join(text.owners)}; intended use and {len(text.limitations)} "
        "limitation(s) stated",
    )
