"""Alert rules: a condition on one metric, its severity and the sinks to notify.

Rules are data (a list in params.yaml); `load_rules` parses them, refusing
unknown keys, unknown sinks, bad conditions and duplicate names.  See
`hortus.monitoring.alerts` for the format and the semantics of evaluation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from hortus.errors import HortusError
from hortus.monitoring.event_types import check_event_type

SEVERITIES = ("info", "warning", "critical")
OPERATORS = (">=", "<=", "==", "!=", ">", "<")
_CONDITION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_ABSENT = re.compile(r"^\s*absent_for\s+(\d+\.?\d*|\.\d+)\s*$")
_RULE_KEYS = {
    "name",
    "metric",
    "subject",
    "monitor",
    "condition",
    "severity",
    "sinks",
    "for_events",
    "description",
}


class AlertRuleError(HortusError):
    """An alert rule or sink configuration is malformed."""


@dataclass(frozen=True)
class AlertRule:
    """One alert rule: a condition on a metric, its severity and where to send it.

    Examples
    --------
    >>> r = AlertRule.from_dict({"name": "psi-high", "metric": "psi", "condition": "> 0.2",
    ...                          "severity": "warning", "sinks": ["log"]})
    >>> (r.op, r.threshold, r.condition)
    ('>', 0.2, '> 0.2')
    """

    name: str
    metric: str
    severity: str
    sinks: tuple[str, ...]
    op: str | None = None
    threshold: float | None = None
    absent_for: float | None = None  # minutes
    subjects: tuple[str, ...] = ()
    monitor: str | None = None
    for_events: tuple[str, ...] = ()
    description: str = ""

    @property
    def condition(self) -> str:
        """Return the condition as written in a rule: '> 0.2' or 'absent_for 90'."""
        if self.absent_for is not None:
            return f"absent_for {self.absent_for:g}"
        return f"{self.op} {self.threshold:g}"

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, sinks: Iterable[str] | None = None) -> AlertRule:
        """Build a rule from its mapping, refusing unknown keys, sinks and bad conditions.

        `condition` is ``"OP NUMBER"`` (OP one of > >= < <= == !=) or
        ``"absent_for MINUTES"``, or the mapping ``{op, threshold}`` or
        ``{absent_for}``.  `subject` is one subject or a list; `sinks` (when
        given) are the configured sink names the rule may use.
        """
        if not isinstance(spec, Mapping):
            raise AlertRuleError(f"alert rule must be a mapping, got {type(spec).__name__}")
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip():
            raise AlertRuleError(f"alert rule {dict(spec)!r} has no name")
        where = f"alert rule {name!r}"
        unknown = sorted(set(spec) - _RULE_KEYS)
        if unknown:
            raise AlertRuleError(f"{where}: unknown key(s) {unknown}; known: {sorted(_RULE_KEYS)}")
        metric = spec.get("metric")
        if not isinstance(metric, str) or not metric:
            raise AlertRuleError(f"{where}: `metric` is required (a metric name)")
        severity = spec.get("severity", "warning")
        if severity not in SEVERITIES:
            raise AlertRuleError(f"{where}: severity {severity!r} is not one of {SEVERITIES}")
        op, threshold, absent_for = _parse_condition(where, spec.get("condition"))
        rule_sinks = _names(where, "sinks", spec.get("sinks"))
        if not rule_sinks:
            raise AlertRuleError(f"{where}: `sinks` must name at least one sink")
        if sinks is not None:
            missing = [s for s in rule_sinks if s not in set(sinks)]
            if missing:
                raise AlertRuleError(
                    f"{where}: unknown sink(s) {missing}; configured sinks: {sorted(sinks)}"
                )
        for_events = _names(where, "for_events", spec.get("for_events"))
        for t in for_events:
            check_event_type(t, where=where)
        monitor = spec.get("monitor")
        if monitor is not None and not isinstance(monitor, str):
            raise AlertRuleError(f"{where}: `monitor` must be a string")
        return cls(
            name=name,
            metric=metric,
            severity=severity,
            sinks=rule_sinks,
            op=op,
            threshold=threshold,
            absent_for=absent_for,
            subjects=_names(where, "subject", spec.get("subject")),
            monitor=monitor,
            for_events=for_events,
            description=str(spec.get("description", "")),
        )

    def breach(self, value: pl.Expr) -> pl.Expr:
        """Return the expression that is true where `value` breaches a threshold rule."""
        t = pl.lit(self.threshold)
        ops = {
            ">": value > t,
            ">=": value >= t,
            "<": value < t,
            "<=": value <= t,
            "==": value == t,
            "!=": value != t,
        }
        return ops[self.op].fill_null(False)  # a null value breaches nothing


def _parse_condition(where: str, cond: Any) -> tuple[str | None, float | None, float | None]:
    if isinstance(cond, Mapping):
        if set(cond) == {"absent_for"}:
            cond = f"absent_for {cond['absent_for']}"
        elif set(cond) == {"op", "threshold"}:
            cond = f"{cond['op']} {cond['threshold']}"
        else:
            raise AlertRuleError(
                f"{where}: condition mapping must be {{op, threshold}} or {{absent_for}}, "
                f"got keys {sorted(cond)}"
            )
    if not isinstance(cond, str):
        raise AlertRuleError(
            f"{where}: `condition` is required, e.g. '> 0.2' or 'absent_for 90', got {cond!r}"
        )
    m = _CONDITION.match(cond)
    if m:
        threshold = float(m.group(2))
        if not math.isfinite(threshold):
            raise AlertRuleError(f"{where}: condition {cond!r} has a non-finite threshold")
        return m.group(1), threshold, None
    m = _ABSENT.match(cond)
    if m:
        minutes = float(m.group(1))
        if minutes <= 0:
            raise AlertRuleError(f"{where}: condition {cond!r} needs absent_for > 0 minutes")
        return None, None, minutes
    raise AlertRuleError(
        f"{where}: bad condition {cond!r}; expected 'OP NUMBER' with OP one of "
        f"{' '.join(OPERATORS)}, or 'absent_for MINUTES'"
    )


def _names(where: str, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise AlertRuleError(f"{where}: `{key}` must be a name or a list of names, got {value!r}")


def load_rules(
    specs: Iterable[Mapping[str, Any]], *, sinks: Iterable[str] | None = None
) -> list[AlertRule]:
    """Parse a list of rule mappings (params.yaml style); refuse duplicates and unknown sinks.

    Examples
    --------
    >>> rules = load_rules([{"name": "x", "metric": "m", "condition": "< 1",
    ...                      "severity": "info", "sinks": ["log"]}], sinks=["log"])
    >>> rules[0].name
    'x'
    """
    sink_names = list(sinks) if sinks is not None else None
    rules = [AlertRule.from_dict(s, sinks=sink_names) for s in specs]
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise AlertRuleError(f"alert rule name(s) {dupes} defined more than once")
    return rules
