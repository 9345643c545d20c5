"""Compare registered versions of a model side by side (`hortus models compare A B [C...]`).

Everything is read from what the registry keeps for each version, so any two
versions compare, however old:

- params: the train params of each build receipt, flattened (`a.b.c`); only the
  keys whose values differ are listed, plus the training spec's estimator and
  feature count when those differ;
- metrics: the overall hold-out metrics registered with the version;
- segments: per segment value the primary metric's estimate with its bootstrap
  interval (the gate's `segment_metrics_ci` table, read from the JSON report of
  the version's latest gate run, `reports/gate/<model>/v<N>.json`, when that
  report is still there and belongs to that run);
- gate: the latest gate run of each version: verdict, and each check's verdict,
  value and threshold (ops.gate_results);
- data: the pinned data (data.dvc md5), git commit, the Delta version of every
  table read, and the content hashes of the training rows;
- efficiency: model size and latency measured by the gate's efficiency check.

Examples
--------
>>> reg = Registry(Lakehouse.open(), "recommender")            # doctest: +SKIP
>>> cmp = compare_versions(reg, ["champion", "2"])             # doctest: +SKIP
>>> cmp.metrics[0]                                             # doctest: +SKIP
{'name': 'roc_auc', 'values': [0.8456, 0.8512], 'best': 1}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hortus.errors import HortusError

#: efficiency figures the gate measures, in the order shown, with the better direction
EFFICIENCY = (
    ("model_bytes", "model size (bytes)", "lower"),
    ("row_p99_ms", "row latency p99 (ms)", "lower"),
    ("batch_p99_ms", "batch latency p99 (ms)", "lower"),
    ("throughput_rows_per_s", "throughput (rows/s)", "higher"),
    ("peak_memory_bytes", "peak memory (bytes)", "lower"),
)

#: overall metrics where lower is better (every other metric: higher is better)
LOWER_IS_BETTER = frozenset(
    {"log_loss", "rmse", "mae", "mse", "brier", "brier_score", "mape", "ece"}
)
#: registered numbers that describe the hold-out rather than the model's quality
DESCRIPTIVE = frozenset({"n", "groups", "groups_with_positives", "positives", "base_rate", "k"})


@dataclass
class Comparison:
    """Versions of one model side by side; every list's `values` has one entry per version."""

    model: str
    versions: list[int]
    labels: list[str]  # "v3 (champion)"
    params: list[dict] = field(default_factory=list)  # {name, values}: differing keys only
    params_same: int = 0  # number of param keys equal in every version
    metrics: list[dict] = field(default_factory=list)  # {name, values, best}
    segment_metric: str | None = None
    segments: list[dict] = field(default_factory=list)  # {segment, value, values: [ci|None]}
    gates: list[dict] = field(default_factory=list)  # {check, values: [{passed, value, ...}]}
    gate_runs: list[dict | None] = field(default_factory=list)  # latest run per version
    data: list[dict] = field(default_factory=list)  # {name, values, differ}
    efficiency: list[dict] = field(default_factory=list)  # {name, label, values, best}
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict (what `hortus models compare --json` prints)."""
        return asdict(self)


# ------------------------------------------------------------------- helpers
def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys.

    >>> flatten({"a": {"b": 1, "c": [1, 2]}, "d": None})
    {'a.b': 1, 'a.c': [1, 2], 'd': None}
    """
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out |= flatten(value, name)
        else:
            out[name] = value
    return out


def best_index(values: list[Any], lower: bool) -> int | None:
    """Return the index of the best number (None when fewer than two numbers or a tie).

    >>> best_index([0.8, 0.9, None], lower=False), best_index([2, 2], lower=True)
    (1, None)
    """
    nums = [(v, i) for i, v in enumerate(values) if isinstance(v, int | float)]
    if len(nums) < 2:
        return None
    pick = min(nums) if lower else max(nums)
    if sum(1 for v, _ in nums if v == pick[0]) > 1:
        return None
    return pick[1]


def _gate_report(run: dict, root: Path) -> dict | None:
    """Return the JSON report of a gate run if it is still there and is that run's."""
    report = run.get("report")
    if not report:
        return None
    path = Path(report)
    path = (path if path.is_absolute() else root / path).with_suffix(".json")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if doc.get("run_id") == run.get("run_id") else None


def _label(mv) -> str:
    return f"v{mv.version}" + (f" ({', '.join(mv.aliases)})" if mv.aliases else "")


# -------------------------------------------------------------------- compare
def compare_versions(registry, refs: list[str | int], *, root: Path | None = None) -> Comparison:
    """Compare versions (numbers or aliases) of the registry's model; at least two.

    `root` is the project root that relative gate-report paths are resolved against
    (default: the registry's lakehouse root).  Reads go through the registry, so the
    acting user needs read on ops.model_versions and ops.gate_results.
    """
    if len(refs) < 2:
        raise HortusError("models compare: give at least two versions (e.g. 1 2, or champion 3)")
    mvs = [registry.get(r) for r in refs]
    seen = [mv.version for mv in mvs]
    if len(set(seen)) < len(seen):
        raise HortusError(
            "models compare: the references name the same version more than once: "
            + ", ".join(f"{r}=v{v}" for r, v in zip(refs, seen, strict=True))
        )
    root = Path(root) if root is not None else registry._lh.paths.root
    cmp = Comparison(model=registry.name, versions=seen, labels=[_label(mv) for mv in mvs])
    _params(cmp, mvs)
    _metrics(cmp, mvs)
    runs = _gates(cmp, registry, mvs)
    _segments(cmp, runs, root)
    _data(cmp, mvs)
    _efficiency(cmp, runs)
    return cmp


def _params(cmp: Comparison, mvs: list) -> None:
    flat = [flatten(mv.params or {}) for mv in mvs]
    for i, mv in enumerate(mvs):
        spec = mv.spec or {}
        if spec:
            flat[i]["spec.estimator"] = spec.get("estimator")
            flat[i]["spec.features"] = len(spec.get("features") or ())
            flat[i]["spec.target"] = spec.get("target")
    keys = sorted(set().union(*flat))
    for key in keys:
        values = [f.get(key) for f in flat]
        if any(_canon(v) != _canon(values[0]) for v in values[1:]):
            cmp.params.append({"name": key, "values": values})
        else:
            cmp.params_same += 1


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _metrics(cmp: Comparison, mvs: list) -> None:
    names = sorted(set().union(*(mv.metrics or {} for mv in mvs)))
    quality = [n for n in names if n not in DESCRIPTIVE]
    for name in quality + [n for n in names if n in DESCRIPTIVE]:
        values = [(mv.metrics or {}).get(name) for mv in mvs]
        if not any(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            continue  # text fields are not compared
        best = None if name in DESCRIPTIVE else best_index(values, name in LOWER_IS_BETTER)
        cmp.metrics.append({"name": name, "values": values, "best": best})


def _gates(cmp: Comparison, registry, mvs: list) -> list[dict | None]:
    frame = registry.gates()
    runs: list[dict | None] = []
    for mv in mvs:
        mine = frame.filter(frame["version"] == mv.version) if frame.height else frame
        run = mine.row(-1, named=True) if mine.height else None
        runs.append(run)
        if run is None:
            cmp.notes.append(f"v{mv.version} has no gate run: `hortus gate {mv.version}`")
    cmp.gate_runs = [
        None
        if r is None
        else {
            "run_id": r["run_id"],
            "passed": r["passed"],
            "checks": r["checks"],
            "failed": r["failed"],
            "finished_at": str(r["finished_at"]),
            "baseline_version": r["baseline_version"],
            "report": r["report"],
        }
        for r in runs
    ]
    results = [
        {c["name"]: c for c in json.loads(r["results"])} if r is not None else {} for r in runs
    ]
    order: list[str] = []
    for res in results:
        order += [n for n in res if n not in order]
    for name in order:
        values = []
        for res in results:
            c = res.get(name)
            values.append(
                None
                if c is None
                else {
                    "passed": c.get("passed"),
                    "value": c.get("value"),
                    "threshold": c.get("threshold"),
                    "detail": c.get("detail"),
                }
            )
        cmp.gates.append({"check": name, "values": values})
    return runs


def _segment_check(run: dict | None, root: Path) -> tuple[dict | None, str]:
    """Return the gate run's segment_metrics_ci check with its table, and where it came from.

    The registry keeps that table with the run (ops.gate_results.results); runs recorded
    before it did have it only in the JSON report, if that report is still there.
    """
    if run is None:
        return None, ""
    for check in json.loads(run["results"]):
        if check.get("name") == "segment_metrics_ci" and check.get("table"):
            return check, "registry"
    doc = _gate_report(run, root)
    for check in (doc or {}).get("results", []):
        if check.get("name") == "segment_metrics_ci" and check.get("table"):
            return check, "report"
    return None, ""


def _segments(cmp: Comparison, runs: list[dict | None], root: Path) -> None:
    per_version: list[dict[tuple, dict]] = []
    for v, run in zip(cmp.versions, runs, strict=True):
        check, _ = _segment_check(run, root)
        rows: dict[tuple, dict] = {}
        if check is None:
            if run is not None:
                cmp.notes.append(
                    f"v{v}: per-segment intervals not available (gate run {run['run_id']} "
                    f"kept no segment table and its JSON report is gone; `hortus gate {v}` "
                    "records them again)"
                )
        else:
            stats = check.get("stats") or {}
            cmp.segment_metric = cmp.segment_metric or stats.get("metric")
            for row in check.get("table") or []:
                rows[(row.get("segment"), row.get("value"))] = {
                    "estimate": row.get("estimate"),
                    "low": row.get("ci_low"),
                    "high": row.get("ci_high"),
                    "n": row.get("n"),
                    "status": row.get("status"),
                }
        per_version.append(rows)
    keys: list[tuple] = []
    for rows in per_version:
        keys += [k for k in rows if k not in keys]
    for seg, value in keys:
        cmp.segments.append(
            {
                "segment": seg,
                "value": value,
                "values": [rows.get((seg, value)) for rows in per_version],
            }
        )


def _data(cmp: Comparison, mvs: list) -> None:
    rows: list[tuple[str, list]] = [
        ("data_md5 (data.dvc)", [mv.receipt.get("data_md5") for mv in mvs]),
        ("git_commit", [str(mv.receipt.get("git_commit") or "")[:12] or None for mv in mvs]),
        ("git_dirty", [mv.receipt.get("git_dirty") for mv in mvs]),
        ("created_at (UTC)", [f"{mv.created_at:%Y-%m-%d %H:%M}" for mv in mvs]),
        ("author", [mv.author for mv in mvs]),
    ]
    tables = sorted(set().union(*((mv.receipt.get("tables_read") or {}) for mv in mvs)))
    for t in tables:
        rows.append((f"{t} (Delta version)", [(mv.receipt.get("tables_read") or {}).get(t)
                                               for mv in mvs]))  # fmt: skip
    hashes = sorted(set().union(*((mv.receipt.get("content_hashes") or {}) for mv in mvs)))
    for t in hashes:
        rows.append((f"{t} (rows, content)", [(mv.receipt.get("content_hashes") or {}).get(t)
                                               for mv in mvs]))  # fmt: skip
    for name, values in rows:
        differ = any(_canon(v) != _canon(values[0]) for v in values[1:])
        cmp.data.append({"name": name, "values": values, "differ": differ})


def _efficiency(cmp: Comparison, runs: list[dict | None]) -> None:
    stats = []
    for run in runs:
        found: dict = {}
        if run is not None:
            for c in json.loads(run["results"]):
                if c.get("name") == "efficiency":
                    found = c.get("stats") or {}
        stats.append(found)
    for key, label, better in EFFICIENCY:
        values = [s.get(key) for s in stats]
        if all(v is None for v in values):
            continue
        cmp.efficiency.append(
            {
                "name": key,
                "title": label,
                "values": values,
                "best": best_index(values, better == "lower"),
            }
        )
