"""Promotion gates: data and model tests on a registered version, recorded in ops.

`run_gate` runs every check on a version and returns a `GateResult`; `record`
appends it to `ops.gate_results` and writes a machine-readable JSON and a human
markdown report.  `Registry.promote(..., alias="champion")` refuses a version
whose latest gate run failed (or that has none), listing each failed check with
its value and threshold.

Checks (each a `hortus.checks.model_checks.CheckResult`, so a gate lists them alike):

Data tests, on any contract-described table:
- ``contract[<table>]``: the table's rows against its data contract (the same
  `contracts.check_frame` that ingest uses; one definition, not two).
- ``pii``: the PII scanner over the given tables (`hortus.checks.pii_scan`): personal
  data where the contract says there is none fails.
- ``drift``: feature and target drift between the training snapshot and newer
  data (`hortus.monitoring.drift`, the statistics shared with monitoring); fails when the
  share of drifted features exceeds `max_drifted_share` or a column listed in
  `critical` (e.g. the target) drifted.
- ``skew``: the feature store's training/serving skew report.

Model tests (`hortus.checks.model_checks.run_model_checks`): metrics per segment with
bootstrap intervals, fairness per sensitive attribute, permutation importance,
input schema conflicts on serving input, efficiency against the champion
measured in the same run, behavioural invariance and directional tests.  Every
model check follows the spec's task (binary, ranking, multiclass, regression; see
`hortus.models.modeling.TASKS`): a setting of the `model_checks` section that does not fit
the task (e.g. `segment_metrics.metric: roc_auc` for a regression model, `top_k`
for a binary one) is replaced by the task's default or ignored, and the check's
detail says so.  `primary_metric(spec)` names the metric (and its direction) a
comparison with the champion should use.

Nothing here is specific to the plant shop: the stage in `hortus.pipeline.stages` picks
the tables, frames and thresholds (params.yaml `gate` section).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from hortus.checks.model_checks import (
    CheckResult,
    ModelCheckConfig,
    _fmt,  # one number format for check values in every report
    run_model_checks,
)
from hortus.errors import HortusError
from hortus.lakehouse.contracts import Contract, check_frame
from hortus.models.modeling import primary_metric  # re-exported: the gate's comparison metric

GATE_SECTIONS = ("drift", "pii", "skew", "model_checks", "champion")
#: checks whose table the registry keeps with the gate run (the model card shows the first
#: two; `hortus models compare` the per-segment intervals of any version)
COMPARISON_CHECKS = ("champion", "floors", "segment_metrics_ci")
__all__ = [
    "GATE_SECTIONS",
    "GateConfig",
    "GateResult",
    "contract_check",
    "drift_check",
    "pii_check",
    "primary_metric",
    "record",
    "run_gate",
    "skew_check",
]


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of a gate; `from_dict` maps a params.yaml `gate` section onto it.

    Examples
    --------
    >>> cfg = GateConfig.from_dict({"drift": {"max_drifted_share": 0.25}})
    >>> cfg.max_drifted_share, cfg.drift
    (0.25, {})
    """

    #: share of compared feature columns allowed to drift before the drift check fails
    max_drifted_share: float = 0.5
    #: columns whose drift alone fails the check (e.g. the target)
    critical: tuple[str, ...] = ()
    #: reference = the training rows of the last this many days (None: all of them)
    reference_days: float | None = None
    #: `hortus.monitoring.drift.DriftConfig` fields (thresholds, statistic per column)
    drift: dict = field(default_factory=dict)
    #: thresholds from the training rows' own variation (`hortus.monitoring.drift.
    #: CalibrationConfig` fields); None: the fixed thresholds of `drift`
    calibration: dict | None = None
    #: PII scan: rows with a match before a finding counts
    pii_min_rows: int = 1
    #: PII scan: rows sampled per table (None = every row)
    pii_sample_rows: int | None = None
    #: skew check: sampled entities, seed, relative tolerance
    skew_sample: int = 500
    skew_seed: int = 0
    skew_tolerance: float = 1e-9
    #: the model checks (see `hortus.checks.model_checks.ModelCheckConfig`)
    model: ModelCheckConfig = field(default_factory=ModelCheckConfig)
    #: comparison with the champion (`champion_comparison`: margin, n_boot, confidence,
    #: min_segment_size, seed) and the absolute `floors` of a first version
    champion: dict = field(default_factory=dict)
    floors: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None, where: str = "gate") -> GateConfig:
        """Build the config from a params section, refusing unknown keys by name."""
        doc = dict(doc or {})
        unknown = sorted(set(doc) - set(GATE_SECTIONS))
        if unknown:
            raise HortusError(f"{where}: unknown key(s) {unknown}; expected {GATE_SECTIONS}")
        drift = dict(doc.get("drift") or {})
        max_share = float(drift.pop("max_drifted_share", cls.max_drifted_share))
        critical = tuple(drift.pop("critical", ()) or ())
        reference_days = drift.pop("reference_days", None)
        calibration = drift.pop("calibration", None)
        if not 0 <= max_share <= 1:
            raise HortusError(f"{where}.drift.max_drifted_share must be in [0, 1]")
        pii = dict(doc.get("pii") or {})
        min_rows = int(pii.pop("min_rows", cls.pii_min_rows))
        sample_rows = pii.pop("sample_rows", None)
        if pii:
            raise HortusError(
                f"{where}.pii: unknown key(s) {sorted(pii)}; expected ['min_rows', 'sample_rows']"
            )
        skew = dict(doc.get("skew") or {})
        skew_fields = {k: skew.pop(k) for k in ("sample", "seed", "tolerance") if k in skew}
        if skew:
            raise HortusError(
                f"{where}.skew: unknown key(s) {sorted(skew)}; expected sample, seed, tolerance"
            )
        champion = dict(doc.get("champion") or {})
        floors = dict(champion.pop("floors", None) or {})
        known = {"margin", "n_boot", "confidence", "min_segment_size", "seed"}
        if set(champion) - known:
            raise HortusError(
                f"{where}.champion: unknown key(s) {sorted(set(champion) - known)}; expected "
                f"{sorted(known | {'floors'})}"
            )
        return cls(
            champion=champion,
            floors={str(k): float(v) for k, v in floors.items()},
            max_drifted_share=max_share,
            critical=critical,
            reference_days=None if reference_days is None else float(reference_days),
            drift=drift,
            calibration=None if calibration is None else dict(calibration),
            pii_min_rows=min_rows,
            pii_sample_rows=None if sample_rows is None else int(sample_rows),
            skew_sample=int(skew_fields.get("sample", cls.skew_sample)),
            skew_seed=int(skew_fields.get("seed", cls.skew_seed)),
            skew_tolerance=float(skew_fields.get("tolerance", cls.skew_tolerance)),
            model=ModelCheckConfig.from_dict(doc.get("model_checks"), f"{where}.model_checks"),
        )


# ----------------------------------------------------------------- data checks


def contract_check(df: pl.DataFrame, contract: Contract) -> CheckResult:
    """Check a table's rows against its contract (the ingest rules): no violation passes."""
    bad = check_frame(df, contract)
    rules = (
        bad.group_by("rule").agg(pl.len().alias("rows")).sort("rule")
        if bad.height and "rule" in bad.columns
        else None
    )
    first = bad["message"][0] if bad.height and "message" in bad.columns else ""
    return CheckResult(
        name=f"contract[{contract.full_name}]",
        passed=bad.height == 0,
        value=float(bad.height),
        threshold=0.0,
        detail=(
            f"{df.height:,} rows match the contract of {contract.full_name}"
            if bad.height == 0
            else f"{bad.height:,} of {df.height:,} rows of {contract.full_name} break its "
            f"contract, e.g. {first}"
        ),
        table=rules,
        stats={"rows": df.height, "violations": bad.height},
    )


def pii_check(scan: Any) -> CheckResult:
    """Turn a `hortus.checks.pii_scan.ScanResult` into a check: any violation fails."""
    violations = list(scan.violations)
    frame = scan.to_frame()
    return CheckResult(
        name="pii",
        passed=not violations,
        value=float(len(violations)),
        threshold=0.0,
        detail=(
            f"no personal data outside its declared columns in {len(scan.tables)} table(s)"
            if not violations
            else "; ".join(v.message for v in violations[:5])
            + (f"; and {len(violations) - 5} more" if len(violations) > 5 else "")
        ),
        table=frame if frame.height else None,
        stats={"tables": dict(scan.tables), "findings": len(scan.findings)},
    )


def drift_check(
    reference: pl.DataFrame | pl.LazyFrame,
    current: pl.DataFrame | pl.LazyFrame,
    columns: Sequence[str],
    *,
    max_drifted_share: float = 0.5,
    critical: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
    time: str | None = None,
    calibration: Mapping[str, Any] | None = None,
    increments: Mapping[str, Sequence[str]] | None = None,
    lineage: Mapping[str, Iterable[str]] | None = None,
) -> CheckResult:
    """Compare `columns` of the training snapshot with newer data (hortus.monitoring.drift).

    Fails when more than `max_drifted_share` of the compared (not skipped)
    columns drifted, or when any `critical` column drifted.  With `calibration`
    (and a `time` column) `reference` is the whole history: the current is compared
    with the history's last week (or its own length when longer), each column against
    a threshold from a null fitted to the history's like-window pairs
    (`hortus.monitoring.drift.calibrated_compare`); window aggregates named in
    `increments` (feature -> entity key columns) are judged on their per-entity
    increments too.  With `lineage` (feature -> source columns it reads) the detail
    and ``stats["via_lineage"]`` also name the compared features that were *not*
    flagged but read a source column of a flagged one: an explanation ("likely
    affected via lineage"), never counted as drifted.
    """
    from hortus.monitoring.drift import (
        CalibrationConfig,
        DriftConfig,
        calibrated_compare,
        compare,
    )

    drift_config = DriftConfig.from_dict(dict(config or {}))
    cal = CalibrationConfig.from_dict(calibration) if calibration is not None else None
    note = ""
    if cal is not None and cal.enabled and time is not None:
        report, got = calibrated_compare(
            reference.lazy().collect(),
            current.lazy().collect(),
            list(columns),
            time=time,
            config=drift_config,
            calibration=cal,
            increments=increments,
        )
        note = f"; {got.describe()}"
    else:
        report = compare(reference, current, list(columns), drift_config)
    judged = [r for r in report.overall() if r.skipped is None]
    drifted = [r.column for r in judged if r.drifted or r.null_drifted]
    share = len(drifted) / len(judged) if judged else 0.0
    crit = [c for c in critical if c in drifted]
    reasons = []
    if share > max_drifted_share:
        reasons.append(
            f"{len(drifted)} of {len(judged)} columns drifted (share {share:.3f} > "
            f"{max_drifted_share}): {', '.join(drifted[:10])}"
        )
    if crit:
        reasons.append(f"critical column(s) drifted: {', '.join(crit)}")
    via = _via_lineage(drifted, [r.column for r in judged], lineage)
    if via["features"]:
        named = ", ".join(via["sources"][:5]) + (" ..." if len(via["sources"]) > 5 else "")
        note += (
            f"; source drift, likely affected via lineage (not flagged by their own data): "
            f"{len(via['features'])} more feature(s) read a source column of a flagged one "
            f"({named})"
        )
    frame = report.to_frame()
    keep = [
        c
        for c in ("column", "kind", "statistic", "value", "p_value", "threshold", "drifted")
        if c in frame.columns
    ]
    return CheckResult(
        name="drift",
        passed=not reasons,
        value=1.0 if crit and share <= max_drifted_share else share,
        threshold=max_drifted_share,
        detail="; ".join(reasons) + note
        if reasons
        else f"{len(drifted)} of {len(judged)} columns drifted (share {share:.3f}){note}",
        table=frame.select(keep),
        stats={
            "drifted": drifted,
            "compared": len(judged),
            "critical_drifted": crit,
            "via_lineage": via,
        },
    )


def _via_lineage(
    drifted: Sequence[str], compared: Sequence[str], lineage: Mapping[str, Iterable[str]] | None
) -> dict[str, list[str]]:
    """Return the source columns of the drifted features and the other compared features
    that read one of them (lineage propagation: an explanation, not a detection).

    Examples
    --------
    >>> _via_lineage(["a"], ["a", "b", "c"], {"a": ["t.x"], "b": ["t.x", "t.y"], "c": ["t.z"]})
    {'sources': ['t.x'], 'features': ['b']}
    """
    if not lineage or not drifted:
        return {"sources": [], "features": []}
    sources = sorted({s for f in drifted for s in lineage.get(f, ())})
    hit = set(sources)
    others = [c for c in compared if c not in set(drifted) and hit & set(lineage.get(c, ()))]
    return {"sources": sources, "features": others}


def skew_check(report: Any) -> CheckResult:
    """Turn a feature-store `SkewReport` into a check: any mismatched feature fails."""
    d = report.to_dict()
    bad = list(d.get("mismatched_features") or [])
    return CheckResult(
        name="skew",
        passed=bool(report.ok),
        value=float(len(bad)),
        threshold=0.0,
        detail=(
            f"offline and online values agree for {d.get('entities')} entities x "
            f"{d.get('features')} features"
            if report.ok
            else f"training/serving skew in {len(bad)} feature(s): {', '.join(bad[:10])}"
        ),
        stats={k: v for k, v in d.items() if k != "details"},
    )


# --------------------------------------------------------------------- result


@dataclass
class GateResult:
    """Every check of one gate run on one model version."""

    model_name: str
    version: int
    checks: list[CheckResult]
    started_at: datetime
    finished_at: datetime
    baseline_version: int | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    @property
    def passed(self) -> bool:
        """Return True when every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        """Return the failed checks."""
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (the machine-readable result)."""
        return {
            "run_id": self.run_id,
            "model_name": self.model_name,
            "version": self.version,
            "passed": self.passed,
            "checks": len(self.checks),
            "failed": [c.name for c in self.failed],
            "baseline_version": self.baseline_version,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "results": [c.to_dict() for c in self.checks],
        }

    def summary(self) -> dict[str, Any]:
        """Return the figures for `dvc metrics show`."""
        out: dict[str, Any] = {
            "version": self.version,
            "passed": self.passed,
            "checks": len(self.checks),
            "failed": len(self.failed),
        }
        for c in self.checks:
            if isinstance(c.value, int | float) and c.value is not None:
                out[f"value.{c.name}"] = round(float(c.value), 6)
        return out

    def to_markdown(self) -> str:
        """Return the human report: verdict, then every check with value and threshold."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"# Gate: {self.model_name} v{self.version}: {verdict}",
            "",
            f"Run `{self.run_id}`, {self.started_at:%Y-%m-%d %H:%M:%S} UTC, "
            f"{len(self.checks)} checks, {len(self.failed)} failed"
            + (
                f"; efficiency compared with v{self.baseline_version}"
                if self.baseline_version
                else ""
            )
            + ".",
            "",
            "| check | result | value | threshold | detail |",
            "|---|---|---|---|---|",
        ]
        for c in self.checks:
            detail = c.detail.replace("|", "\\|").replace("\n", " ")
            lines.append(
                f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {_fmt(c.value)} | "
                f"{_fmt(c.threshold)} | {detail} |"
            )
        lines += _comparison_markdown(self.checks)
        return "\n".join(lines) + "\n"


def _comparison_markdown(checks: Sequence[CheckResult]) -> list[str]:
    """Return the champion comparison (or the floors) as a Markdown section, if present."""
    out: list[str] = []
    for c in checks:
        if c.name not in ("champion", "floors") or c.table is None or not c.table.height:
            continue
        title = (
            f"Compared with champion v{c.stats.get('champion_version')} "
            f"({c.stats.get('metric')}, paired bootstrap; difference > 0: candidate better)"
            if c.name == "champion"
            else "Absolute floors (no champion yet)"
        )
        cols = c.table.columns
        out += ["", f"## {title}", "", "| " + " | ".join(cols) + " |",
                "|" + "---|" * len(cols)]  # fmt: skip
        for row in c.table.iter_rows():
            out.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return out


# ------------------------------------------------------------------------ run


def run_gate(
    *,
    model_name: str,
    version: int,
    pipeline: Any,
    signature: Any,
    spec: Any,
    evaluation: pl.DataFrame,
    config: GateConfig,
    data_checks: Sequence[CheckResult] = (),
    serving: pl.DataFrame | None = None,
    baseline: CheckResult | None = None,
    baseline_version: int | None = None,
) -> GateResult:
    """Run the model checks on `evaluation` rows and combine them with `data_checks`.

    The checks follow `spec.task` (`run_model_checks`); the plant shop's ranking
    model gets the same checks and results as before tasks existed.
    """
    started = datetime.now(UTC)
    model = run_model_checks(
        pipeline,
        evaluation,
        spec,
        config.model,
        signature=signature,
        serving_df=serving,
        baseline=baseline,
    )
    return GateResult(
        model_name=model_name,
        version=version,
        checks=[*data_checks, *model],
        started_at=started,
        finished_at=datetime.now(UTC),
        baseline_version=baseline_version,
    )


def record(registry: Any, result: GateResult, report_dir: Path, *, git_commit: str) -> Path:
    """Write `<report_dir>/v<N>.json` and `.md`, and append the run to ops.gate_results."""
    from hortus.provenance import current_user

    report_dir.mkdir(parents=True, exist_ok=True)
    doc = result.to_dict()
    json_path = report_dir / f"v{result.version}.json"
    json_path.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    md_path = report_dir / f"v{result.version}.md"
    md_path.write_text(result.to_markdown(), encoding="utf-8")
    # the supporting tables stay in the JSON report; the registry keeps only those of the
    # comparison with the champion, the floors (small, shown in the model card) and the
    # per-segment intervals (one row per segment value, for `hortus models compare`)
    light = [
        {k: v for k, v in r.items() if k != "table" or r["name"] in COMPARISON_CHECKS}
        for r in doc["results"]
    ]
    registry.record_gate(
        result.version,
        {
            "run_id": result.run_id,
            "passed": result.passed,
            "checks": len(result.checks),
            "failed": len(result.failed),
            "failed_checks": ",".join(c.name for c in result.failed),
            "results": json.dumps(light, sort_keys=True, default=str),
            "baseline_version": result.baseline_version,
            "report": str(md_path),
            "actor": current_user(),
            "git_commit": git_commit,
            "started_at": result.started_at,
            "finished_at": result.finished_at,
        },
    )
    return md_path
