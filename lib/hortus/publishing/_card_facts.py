"""Facts of a registered version: details, training tables, the train stage's record.

The registry row, the tables of the receipt read at their recorded versions, the
segment metrics and importance of reports/train when they belong to the artifact, the
gate results and approvals.  Re-exported by `hortus.publishing.model_card`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
from deltalake.exceptions import DeltaError

from hortus.errors import HortusError, TableNotFound
from hortus.governance.access import AccessDenied
from hortus.lakehouse.tables import Lakehouse, frame_hash, read_contract
from hortus.models.modeling import TASKS, ModelSpec, primary_metric
from hortus.models.registry import ModelVersion, Registry


# ------------------------------------------------------------------- helpers
def spec_of(mv: ModelVersion) -> ModelSpec | None:
    """Return the registered training spec of a version (None if none was recorded)."""
    if not mv.spec:
        return None
    return ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in mv.spec.items()})


def _algorithm(pipeline: Any, spec: ModelSpec | None) -> str:
    if pipeline is not None and hasattr(pipeline, "steps"):
        est = pipeline.steps[-1][1]
        return f"{type(est).__module__.split('.')[0]} {type(est).__name__}"
    return spec.estimator if spec else "unknown"


# metrics of a ranked list: shown for ranking models only
_RANKING_KEYS = frozenset(
    {"precision_at_k", "recall_at_k", "ndcg_at_k", "groups", "groups_with_positives", "k"}
)


def task_metrics(metrics: Mapping[str, Any], spec: ModelSpec | None) -> dict[str, Any]:
    """Return `metrics` without the ranked-list metrics unless the spec is a ranking model.

    A binary model registered before tasks existed carries @k metrics of the whole
    frame as one list (NDCG 1.0 and the like); they say nothing about a classifier.
    """
    if spec is None or spec.task == "ranking":
        return dict(metrics)
    return {k: v for k, v in metrics.items() if k not in _RANKING_KEYS}


def _details(mv: ModelVersion, spec: ModelSpec | None, pipeline: Any) -> dict[str, Any]:
    return {
        "name": mv.name,
        "version": mv.version,
        "aliases": list(mv.aliases),
        "artifact_sha256": mv.artifact_sha256,
        "artifact_path": mv.artifact_path,
        "author": mv.author,
        "created_at": mv.created_at,
        "task": spec.task if spec else None,
        "primary_metric": primary_metric(spec)[0] if spec else None,
        "algorithm": _algorithm(pipeline, spec),
        "estimator": spec.estimator if spec else None,
        "hyperparameters": dict(spec.params) if spec else {},
        "target": spec.target if spec else None,
        "features": list(spec.features) if spec else [n["name"] for n in _sig(mv)],
        "categorical": list(spec.categorical) if spec else [],
        "time": spec.time if spec else None,
        "group": spec.group if spec else None,
        "segments": list(spec.segments) if spec else [],
        "k": spec.k if spec and spec.task == "ranking" else None,
        "threshold": spec.threshold if spec and spec.task == "binary" else None,
        "holdout_fraction": spec.holdout_fraction if spec else None,
        "seed": spec.seed if spec else None,
        "notes": mv.notes,
    }


def _sig(mv: ModelVersion) -> list[dict]:
    return list((mv.signature or {}).get("columns") or [])


def _training_tables(
    lh: Lakehouse, receipt: Mapping[str, Any], spec: ModelSpec | None
) -> tuple[pl.DataFrame, str | None, pl.DataFrame | None, list[str]]:
    """Read every table of the receipt at its recorded version; return rows, eval table, frame."""
    recorded = dict(receipt.get("content_hashes") or {})
    rows, notes = [], []
    chosen: tuple[str | None, pl.DataFrame | None] = (None, None)
    need = [] if spec is None else [*spec.features, spec.target, spec.time, spec.group,
                                    *spec.segments]  # fmt: skip
    for table, version in dict(receipt.get("tables_read") or {}).items():
        row = {
            "table": table,
            "version": int(version),
            "rows": None,
            "recorded_hash": recorded.get(table),
            "hash_now": None,
            "matches": False,
            "masked": None,
            "row_filter": None,
            "note": "",
        }
        try:
            frame = lh.read(table, version=int(version))
        except AccessDenied as exc:
            row["note"] = f"not readable by {lh.user}: {exc}"
        except TableNotFound as exc:
            row["note"] = str(exc)
        except DeltaError as exc:
            row["note"] = f"version {version} can no longer be read: {exc}"
        except HortusError as exc:  # e.g. its files were removed by a right-to-erasure request
            row["note"] = str(exc)
        else:
            assert lh.policy is not None
            plan = lh.policy.read_plan(
                lh.user, table, frame.columns, read_contract(lh.catalog, table)
            )
            row |= {
                "rows": frame.height,
                "hash_now": frame_hash(frame),
                "masked": ", ".join(plan.masked),
                "row_filter": " OR ".join(plan.filters) or "all rows",
            }
            hidden = sorted(set(plan.masked) & set(need)) + (["rows"] if plan.filters else [])
            if hidden:
                notes.append(
                    f"{table} as {lh.user} sees it differs from the training data "
                    f"({', '.join(hidden)} masked or filtered): the hold-out metrics, segments, "
                    "fairness and drift below are computed on that view; publish as a user "
                    "who sees the table in the clear (the pipeline) for the faithful report"
                )
            row["matches"] = (
                row["recorded_hash"] is not None and row["hash_now"] == row["recorded_hash"]
            )
            if chosen[0] is None and all(c in frame.columns for c in need if c):
                chosen = (table, frame)
        if row["note"]:
            notes.append(f"training table {table} v{version}: {row['note']}")
        rows.append(row)
    schema = {
        "table": pl.String,
        "version": pl.Int64,
        "rows": pl.Int64,
        "recorded_hash": pl.String,
        "hash_now": pl.String,
        "matches": pl.Boolean,
        "masked": pl.String,
        "row_filter": pl.String,
        "note": pl.String,
    }
    return pl.DataFrame(rows, schema=schema), chosen[0], chosen[1], notes


def _from_train_dir(
    train_dir: Path | None, sha256: str, spec: ModelSpec | None = None
) -> tuple[pl.DataFrame | None, pl.DataFrame | None, str | None]:
    """Return segment metrics and importance of reports/train if they belong to this artifact.

    The estimate is the task's segment metric column (roc_auc for binary and ranking).
    """
    if train_dir is None or not (train_dir / "run.json").is_file():
        return None, None, None
    run = json.loads((train_dir / "run.json").read_text(encoding="utf-8"))
    if run.get("sha256") != sha256:
        return None, None, None
    segments = importance = None
    if (train_dir / "segment_metrics.csv").is_file():
        raw = pl.read_csv(train_dir / "segment_metrics.csv")
        metric = TASKS[spec.task].segment_metric if spec is not None else "roc_auc"
        if metric not in raw.columns:
            metric = "roc_auc"
        segments = raw.select(
            "segment",
            pl.col("value").cast(pl.String),
            "n",
            pl.col("positives") if "positives" in raw.columns else pl.lit(None, pl.Int64),
            pl.col(metric).alias("estimate"),
            pl.lit(None, pl.Float64).alias("ci_low"),
            pl.lit(None, pl.Float64).alias("ci_high"),
            pl.lit("not judged").alias("status"),
        )
    if (train_dir / "importance.csv").is_file():
        raw = pl.read_csv(train_dir / "importance.csv")
        positive = raw.filter(pl.col("importance_mean") > 0)["importance_mean"].sum()
        importance = raw.sort("importance_mean", descending=True).with_columns(
            share=pl.max_horizontal(pl.col("importance_mean"), 0.0) / (positive or 1.0),
            rank=pl.int_range(1, pl.len() + 1),
        )
    note = f"segment metrics and importance from {train_dir} (same artifact sha256; no intervals)"
    return segments, importance, note


def _gate_checks(runs: pl.DataFrame) -> list[dict[str, Any]]:
    if runs.height == 0:
        return []
    return list(json.loads(runs["results"][-1]))


def _approvals_table(lh: Lakehouse, reg: Registry, version: int) -> pl.DataFrame:
    approvals = reg.approvals(version)
    if approvals.height == 0:
        return approvals
    assert lh.policy is not None
    may = [lh.policy.decide(a, "approve", reg.name).allowed for a in approvals["approver"]]
    return approvals.with_columns(
        (pl.col("approver") != pl.col("author")).alias("not_author"),
        pl.Series("grant_now", may, dtype=pl.Boolean),
    )
