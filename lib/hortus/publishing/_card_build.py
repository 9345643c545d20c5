"""`build_card`: assemble the model card of one registered version.

Re-exported by `hortus.publishing.model_card` (its docstring describes the card).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from threadpoolctl import threadpool_limits

from hortus.checks.gate import GateConfig
from hortus.errors import ArtifactError
from hortus.governance.access import AccessDenied
from hortus.lakehouse.tables import Lakehouse
from hortus.models.registry import Registry
from hortus.publishing._card_checklist import (
    _check_documented,
    _check_fairness,
    _check_four_eyes,
    _check_from,
    _check_gate,
    _check_pii,
    _check_receipt,
    _check_training,
)
from hortus.publishing._card_data import CardText, CheckItem, ModelCard
from hortus.publishing._card_evaluation import _evaluate, _Evaluation
from hortus.publishing._card_facts import (
    _approvals_table,
    _details,
    _from_train_dir,
    _gate_checks,
    _sig,
    _training_tables,
    spec_of,
    task_metrics,
)


def build_card(
    lh: Lakehouse,
    model: str,
    ref: str | int,
    *,
    text: CardText | None = None,
    config: GateConfig | None = None,
    train_dir: Path | None = None,
) -> ModelCard:
    """Assemble the model card of version `ref` (number or alias) of `model`, as `lh.user`.

    Reads the registry row, the gate runs and approvals of the version, verifies the
    artifact, reads each training table at the Delta version in the receipt, rebuilds
    the hold-out with the registered spec and evaluates the verified model on it
    (metrics, segments with intervals, fairness, importance), measures drift since
    training, and judges the governance checklist.  Raises HortusError (AccessDenied
    included) only when the version itself cannot be read; every other missing piece
    becomes a note and, where it matters, a failed checklist item.

    Examples
    --------
    >>> card = build_card(Lakehouse.open(user="sam"), "recommender", "champion")  # doctest: +SKIP
    >>> card.passed, [i.name for i in card.failed]                                # doctest: +SKIP
    (False, ['four_eyes', 'clean_build'])
    """
    text = text or CardText()
    config = config or GateConfig()
    reg = Registry(lh, model)
    mv = reg.get(ref)
    notes: list[str] = []
    spec = spec_of(mv)
    if spec is None:
        notes.append(f"model {model} v{mv.version} has no training spec recorded")
    pipeline = None
    try:
        pipeline, _ = reg.load(mv.version)
        verified = CheckItem(
            "artifact_verified", True, f"sha256 {mv.artifact_sha256[:16]}... verified before load"
        )
    except ArtifactError as exc:
        verified = CheckItem("artifact_verified", False, str(exc))
        notes.append(f"the artifact could not be loaded: {exc}")
    gate_error = approval_error = None
    try:
        runs = reg.gates(mv.version)
    except AccessDenied as exc:
        runs = pl.DataFrame()
        gate_error = f"gate results not readable by {lh.user}: {exc}"
        notes.append(gate_error)
    try:
        approvals = _approvals_table(lh, reg, mv.version)
    except AccessDenied as exc:
        approvals = pl.DataFrame(schema={"approver": pl.String})
        approval_error = f"approvals not readable by {lh.user}: {exc}"
        notes.append(approval_error)
    gate_checks = _gate_checks(runs)
    by_name = {c["name"]: c for c in gate_checks}
    receipt = dict(mv.receipt)
    training, table, snapshot, read_notes = _training_tables(lh, receipt, spec)
    notes += read_notes
    from hortus.governance.erasure import erasures_of  # right to erasure (ops.erasures)

    notes += [
        f"{n}; this version was trained on an erased person's data: retraining is the "
        "model owner's decision"
        for n in erasures_of(lh, receipt.get("tables_read") or {})
    ]

    ev = _Evaluation()
    if snapshot is not None and spec is not None and pipeline is not None:
        assert table is not None
        # one thread: on a shared machine OpenMP threads oversubscribe (see stages.gate)
        with threadpool_limits(1):
            ev = _evaluate(
                lh, table, int(receipt["tables_read"][table]), snapshot, spec, pipeline,
                config, _from_train_dir(train_dir, mv.artifact_sha256, spec)[1],
            )  # fmt: skip
        notes += ev.notes
    else:
        why = (
            "no readable training table in the receipt"
            if snapshot is None
            else "no training spec"
            if spec is None
            else "the artifact could not be loaded"
        )
        notes.append(
            f"the hold-out could not be rebuilt ({why}): segment, fairness and drift "
            "results are those the gate recorded for this version"
        )
        segments, importance, train_note = _from_train_dir(train_dir, mv.artifact_sha256, spec)
        if train_note:
            notes.append(train_note)
        ev = _Evaluation(
            segments=segments,
            segment_check=by_name.get("segment_metrics_ci"),
            fair_checks=[c for n, c in by_name.items() if n.startswith("fairness[")],
            fair_source="as recorded by the gate",
            importance=importance,
            drift=by_name.get("drift"),
        )

    features = list(spec.features) if spec else [c["name"] for c in _sig(mv)]
    complete, clean = _check_receipt(receipt)
    checklist = [
        _check_gate(runs, model, mv.version)
        if gate_error is None
        else CheckItem("gate_passed", False, gate_error),
        _check_four_eyes(approvals, mv.author)
        if approval_error is None
        else CheckItem("four_eyes", False, approval_error),
        verified,
        complete,
        clean,
        _check_training(training),
        _check_pii(lh, features, list(training["table"])),
        _check_from(
            "segments_ok", ev.segment_check, "no segment evaluation (no segments, or no hold-out)"
        ),
        _check_fairness(ev.fair_checks, ev.fair_source),
        _check_from("drift", ev.drift, "drift since training could not be measured"),
        _check_documented(text, model),
    ]
    return ModelCard(
        model=model,
        version=mv.version,
        aliases=mv.aliases,
        viewer=lh.user,
        generated_at=datetime.now(UTC),
        details=_details(mv, spec, pipeline),
        text=text,
        receipt=receipt,
        training=training,
        evaluation=ev.evaluation,
        metrics=task_metrics(mv.metrics, spec),
        recomputed=None if ev.recomputed is None else task_metrics(ev.recomputed, spec),
        segments=ev.segments,
        fairness=ev.fairness,
        fairness_checks=ev.fair_checks,
        importance=ev.importance,
        gate_runs=runs,
        gate_checks=gate_checks,
        drift=ev.drift,
        drift_table=ev.drift_table,
        approvals=approvals,
        checklist=checklist,
        notes=notes,
    )
