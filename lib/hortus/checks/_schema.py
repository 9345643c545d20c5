"""A serving frame against the model signature (`schema_conflicts`)."""

from __future__ import annotations

import polars as pl

from hortus.checks._result import CheckResult, _decide
from hortus.errors import SignatureError
from hortus.models.modeling import Signature

_PROBLEM_KINDS = (
    ("extra column", "extra"),
    ("is missing", "missing"),
    ("has type", "type"),
    ("null value", "null"),
    ("unseen categor", "unseen_category"),
    ("below the minimum", "out_of_range"),
    ("above the maximum", "out_of_range"),
)


def schema_conflicts(
    signature: Signature, serving_df: pl.DataFrame, *, fail_on_warnings: bool = False
) -> CheckResult:
    """Check a serving frame against a model signature and that the scorer refuses conflicts.

    Every problem `Signature.check` finds is listed with its kind (missing,
    type, null, unseen_category, out_of_range, extra) and whether it blocks
    scoring.  Then `Signature.validate`, the gate in front of the scorer, is
    run: with blocking problems it must raise `SignatureError` naming each of
    them, without them it must accept the frame; either surprise fails the
    check.  The check fails on blocking problems (on warnings too with
    `fail_on_warnings`).
    """
    what = "schema_conflicts"
    problems = signature.check(serving_df)
    kinds = []
    for p in problems:
        kinds.append(next((k for text, k in _PROBLEM_KINDS if text in p), "other"))
    table = pl.DataFrame(
        {
            "kind": kinds,
            "blocking": [not p.startswith("warning:") for p in problems],
            "problem": [p.removeprefix("warning: ") for p in problems],
        },
        schema={"kind": pl.String, "blocking": pl.Boolean, "problem": pl.String},
    )
    blocking = [p for p in problems if not p.startswith("warning:")]
    warnings = [p.removeprefix("warning: ") for p in problems if p.startswith("warning:")]
    failures: list[tuple[str, float | None, float | None]] = []
    refusal: str | None = None
    try:
        signature.validate(serving_df)
    except SignatureError as exc:
        refusal = str(exc)
    unnamed = [p for p in blocking if refusal is None or p not in refusal]
    if blocking:
        failures.append(
            (
                f"{len(blocking)} blocking conflict(s) with the model signature: "
                + "; ".join(blocking),
                float(len(blocking)),
                0.0,
            )
        )
        if refusal is None:
            failures.append(
                ("the scorer accepted a frame with blocking conflicts", float(len(blocking)), 0.0)
            )
        elif unnamed:
            failures.append(
                (f"the scorer's refusal does not name {unnamed}", float(len(unnamed)), 0.0)
            )
    elif refusal is not None:
        failures.append(
            (f"the scorer refused a frame without blocking conflicts: {refusal}", 1.0, 0.0)
        )
    if fail_on_warnings and warnings:
        failures.append(
            (
                f"{len(warnings)} warning(s) with fail_on_warnings: " + "; ".join(warnings),
                float(len(warnings)),
                0.0,
            )
        )
    stats = {
        "blocking": len(blocking),
        "warnings": len(warnings),
        "scorer_rejects": refusal is not None,
        "refusal": refusal,
        "rows": serving_df.height,
    }
    ok = f"{serving_df.height} row(s) match the signature of {len(signature.columns)} column(s)" + (
        f"; warning(s): {'; '.join(warnings)}" if warnings else ""
    )
    return _decide(what, failures, (float(len(blocking)), 0.0), ok, table, stats)
