"""The model-check settings of params.yaml (`ModelCheckConfig`) and `run_model_checks`."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from hortus.checks._behavioural import behavioural
from hortus.checks._efficiency import efficiency
from hortus.checks._fairness import fairness, task_fairness
from hortus.checks._importance import importance_check
from hortus.checks._inputs import model_outputs
from hortus.checks._result import CheckResult
from hortus.checks._schema import schema_conflicts
from hortus.checks._segments import segment_metrics_ci
from hortus.errors import HortusError
from hortus.models.modeling import ModelSpec, Signature

# section -> (check function, keyword arguments the runner fills in itself)
_SECTIONS: dict[str, tuple[Any, frozenset[str]]] = {
    "segment_metrics": (segment_metrics_ci, frozenset({"scores"})),
    "fairness": (fairness, frozenset({"group", "false_positive_rate", "exposure"})),
    "importance": (importance_check, frozenset({"sensitive", "proxies", "importance"})),
    "schema": (schema_conflicts, frozenset()),
    "efficiency": (efficiency, frozenset({"baseline"})),
    "behavioural": (behavioural, frozenset({"scores"})),
}


def _keywords(func: Any, reserved: frozenset[str]) -> set[str]:
    params = inspect.signature(func).parameters.values()
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY} - reserved


@dataclass(frozen=True)
class ModelCheckConfig:
    """The model-check settings of a params.yaml section.

    `segments` (default: the spec's), `sensitive` (declared sensitive
    attributes: fairness and importance) and `proxies` (feature -> sensitive
    column) apply to several checks; each other key names a check section
    whose keys are that check's keyword arguments (its thresholds):
    segment_metrics -> `segment_metrics_ci`, fairness -> `fairness`,
    importance -> `importance_check`, schema -> `schema_conflicts`,
    efficiency -> `efficiency`, behavioural -> `behavioural`.

    Examples
    --------
    >>> cfg = ModelCheckConfig.from_dict(
    ...     {"sensitive": ["age_band"], "fairness": {"top_k": 5, "min_ratio": 0.8}}
    ... )
    >>> cfg.fairness["top_k"], cfg.sensitive
    (5, ('age_band',))
    """

    segments: tuple[str, ...] | None = None
    sensitive: tuple[str, ...] = ()
    proxies: dict[str, str] = field(default_factory=dict)
    segment_metrics: dict[str, Any] = field(default_factory=dict)
    fairness: dict[str, Any] = field(default_factory=dict)
    importance: dict[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] = field(default_factory=dict)
    efficiency: dict[str, Any] = field(default_factory=dict)
    behavioural: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(
        cls, doc: Mapping[str, Any] | None, where: str = "model_checks"
    ) -> ModelCheckConfig:
        """Build the config from a params section, refusing unknown keys by name."""
        doc = dict(doc or {})
        known = {"segments", "sensitive", "proxies", *_SECTIONS}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise HortusError(
                f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}"
            )
        out: dict[str, Any] = {}
        for key in ("segments", "sensitive"):
            value = doc.get(key)
            if value is None:
                continue
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise HortusError(f"{where}.{key} must be a list of column names, got {value!r}")
            out[key] = tuple(str(v) for v in value)
        proxies = doc.get("proxies") or {}
        if not isinstance(proxies, Mapping):
            raise HortusError(f"{where}.proxies must map feature -> sensitive column")
        out["proxies"] = {str(k): str(v) for k, v in proxies.items()}
        for section, (func, reserved) in _SECTIONS.items():
            body = doc.get(section) or {}
            if not isinstance(body, Mapping):
                raise HortusError(f"{where}.{section} must be a mapping, got {body!r}")
            allowed = _keywords(func, reserved)
            bad = sorted(set(body) - allowed)
            if bad:
                raise HortusError(
                    f"{where}.{section}: unknown key(s) {bad}; {func.__name__} accepts "
                    f"{sorted(allowed)}"
                )
            out[section] = dict(body)
        return cls(**out)


def run_model_checks(
    pipeline: Any,
    df: pl.DataFrame,
    spec: ModelSpec,
    config: ModelCheckConfig,
    *,
    signature: Signature | None = None,
    serving_df: pl.DataFrame | None = None,
    baseline: Mapping[str, Any] | CheckResult | None = None,
    importance: pl.DataFrame | None = None,
) -> list[CheckResult]:
    """Run every model check configured by `config` on evaluation rows `df`.

    The model outputs (`model_outputs`) are computed once; every check
    follows `spec.task`.  Runs `segment_metrics_ci` (when there are
    segments; a configured metric that does not fit the task is replaced by
    the task's and the detail says so), `task_fairness` per sensitive column
    (ranking: the top `spec.k` of each `spec.group` list unless the section
    sets top_k or threshold; binary: score >= `spec.threshold`; multiclass:
    one-vs-rest at the predicted class; regression: error and prediction
    ratios), `importance_check`, `schema_conflicts` (when a signature is
    given; on `serving_df`, default `df` without the target), `efficiency`
    (against `baseline`) and `behavioural` (when it declares tests).
    """
    scores = model_outputs(pipeline, df, spec)
    segments = spec.segments if config.segments is None else config.segments
    out = []
    if segments:
        out.append(
            segment_metrics_ci(
                pipeline, df, spec, segments, scores=scores, **config.segment_metrics
            )
        )
    for col in config.sensitive:
        out.append(task_fairness(scores, df, spec, col, **config.fairness))
    out.append(
        importance_check(
            pipeline,
            df,
            spec,
            sensitive=config.sensitive,
            proxies=config.proxies,
            importance=importance,
            **config.importance,
        )
    )
    if signature is not None:
        frame = df.drop(spec.target) if serving_df is None else serving_df
        out.append(schema_conflicts(signature, frame, **config.schema))
    out.append(efficiency(pipeline, df, spec, baseline=baseline, **config.efficiency))
    if config.behavioural.get("invariance") or config.behavioural.get("directional"):
        given = None if spec.task == "multiclass" else scores
        out.append(behavioural(pipeline, df, spec, scores=given, **config.behavioural))
    return out
