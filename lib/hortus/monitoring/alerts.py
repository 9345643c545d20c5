"""Alert rules over monitoring metrics, with deduplicated notifications to sinks.

Rules are data (a list in params.yaml, parsed by `load_rules`); each watches one
metric of the long-format metrics frame (`ops.monitor_metrics`: at, monitor,
metric, subject, value, labels, batch_id), optionally for some subjects only:

```yaml
alerts:
  sinks:
    log: {type: jsonl, path: lakehouse/ops/alerts.jsonl}
    ops-webhook: {type: webhook, url: "http://127.0.0.1:9000/hook",
                  headers_from_env: {Authorization: HORTUS_WEBHOOK_TOKEN}}
  rules:
    - {name: stale-orders, metric: freshness_hours, subject: silver.orders,
       condition: "> 26", severity: warning, sinks: [log]}
    - {name: no-predictions, metric: rows_logged, condition: "absent_for 90",
       severity: critical, sinks: [log, ops-webhook]}
    - {name: gate-failed, metric: event.gate_failed, condition: ">= 1",
       severity: critical, sinks: [ops-webhook], for_events: [gate_failed]}
```

Semantics of `evaluate` (one vectorised polars pass per rule):

- a threshold rule compares the latest value of each subject (at or before
  `now`) with its threshold; an `absent_for N` rule is true for a subject whose
  latest value is older than N minutes (or, for subjects the rule names, never
  seen; a rule without a subject filter that sees no row at all fires on `*`);
- the condition becoming true fires an alert (one `firing` notification); while
  it stays true the alert is deduplicated (no notification, `last_seen` moves);
  when it clears the alert resolves (one `resolved` notification).  A subject
  with no current value keeps its state.

State is the latest row per (rule, subject) of the append-only table
`ops.alerts`, so deduplication survives restarts (`AlertState.load`).  Every
delivery attempt to a sink is recorded in `ops.alert_deliveries` (ok, attempts,
HTTP status, error): a sink that fails is recorded there and never stops
monitoring.  `run_alerts` does the whole loop: load state, evaluate, notify,
persist.  Secrets (a webhook token) come only from environment variables named
in the sink configuration.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from hortus.errors import HortusError
from hortus.monitoring.event_types import check_event_type

ALERTS_TABLE = "ops.alerts"
DELIVERIES_TABLE = "ops.alert_deliveries"
METRICS_TABLE = "ops.monitor_metrics"
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
_TS = pl.Datetime("us", "UTC")
ALERT_SCHEMA = pl.Schema(
    {
        "alert_id": pl.String(),
        "rule": pl.String(),
        "metric": pl.String(),
        "subject": pl.String(),
        "severity": pl.String(),
        "status": pl.String(),
        "notified": pl.Boolean(),
        "first_seen": _TS,
        "last_seen": _TS,
        "resolved_at": _TS,
        "value": pl.Float64(),
        "threshold": pl.Float64(),
        "condition": pl.String(),
        "message": pl.String(),
        "updated_at": _TS,
    }
)
DELIVERY_SCHEMA = pl.Schema(
    {
        "at": _TS,
        "alert_id": pl.String(),
        "rule": pl.String(),
        "subject": pl.String(),
        "status": pl.String(),
        "sink": pl.String(),
        "sink_type": pl.String(),
        "ok": pl.Boolean(),
        "attempts": pl.Int64(),
        "http_status": pl.Int64(),
        "error": pl.String(),
    }
)
METRIC_COLUMNS = ("at", "metric", "subject", "value")


class AlertRuleError(HortusError):
    """An alert rule or sink configuration is malformed."""


# --------------------------------------------------------------------- rules
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


# --------------------------------------------------------------------- state
@dataclass(frozen=True)
class AlertEvent:
    """One evaluation outcome of a rule for a subject.

    `status` is firing or resolved; `notify` is true when the alert just fired or
    just resolved (the notifications), false for a repeat while firing.
    """

    alert_id: str
    rule: str
    metric: str
    subject: str
    severity: str
    status: str
    notify: bool
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    value: float | None
    threshold: float
    condition: str
    message: str
    updated_at: datetime
    sinks: tuple[str, ...] = ()

    def payload(self) -> dict[str, Any]:
        """Return the JSON-ready notification sent to sinks."""
        out: dict[str, Any] = {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "metric": self.metric,
            "subject": self.subject,
            "severity": self.severity,
            "status": self.status,
            "value": self.value,
            "threshold": self.threshold,
            "condition": self.condition,
            "message": self.message,
        }
        for k in ("first_seen", "last_seen", "resolved_at", "updated_at"):
            v = getattr(self, k)
            out[k] = v.isoformat() if v is not None else None
        return out

    def row(self) -> dict[str, Any]:
        """Return the ops.alerts row of this outcome."""
        return {k: (self.notify if k == "notified" else getattr(self, k)) for k in ALERT_SCHEMA}


@dataclass(frozen=True)
class AlertState:
    """The current alert of each (rule, subject): the latest row of ops.alerts per pair."""

    frame: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ALERT_SCHEMA))

    @classmethod
    def load(cls, lh: Any) -> AlertState:
        """Load the current state from ops.alerts (empty if never written)."""
        return cls.from_rows(lh.scan_or_empty(ALERTS_TABLE).collect())

    @classmethod
    def from_rows(cls, rows: pl.DataFrame) -> AlertState:
        """Reduce ops.alerts rows to the latest row per (rule, subject)."""
        latest = (
            rows.select(list(ALERT_SCHEMA))
            .sort("updated_at", maintain_order=True)
            .unique(["rule", "subject"], keep="last", maintain_order=True)
        )
        return cls(latest.cast(dict(ALERT_SCHEMA)))

    @property
    def firing(self) -> pl.DataFrame:
        """Return the alerts currently firing."""
        return self.frame.filter(pl.col("status") == "firing")

    def apply(self, events: Sequence[AlertEvent]) -> AlertState:
        """Return the state after these evaluation outcomes (this state is not changed)."""
        if not events:
            return self
        return AlertState.from_rows(pl.concat([self.frame, events_frame(events)]))


def events_frame(events: Sequence[AlertEvent]) -> pl.DataFrame:
    """Return evaluation outcomes as ops.alerts rows."""
    return pl.DataFrame([e.row() for e in events], schema=ALERT_SCHEMA)


# ---------------------------------------------------------------- evaluation
def normalize_metrics(metrics: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Return the metric columns rules use (at, monitor, metric, subject, value), typed."""
    lf = metrics.lazy()
    names = lf.collect_schema().names()
    missing = [c for c in METRIC_COLUMNS if c not in names]
    if missing:
        raise HortusError(
            f"metrics frame lacks column(s) {missing} (needs {list(METRIC_COLUMNS)}, "
            f"the long format of {METRICS_TABLE}); has {names}"
        )
    if "monitor" not in names:
        lf = lf.with_columns(monitor=pl.lit(None, pl.String))
    return lf.select(
        pl.col("at").cast(_TS),
        pl.col("monitor").cast(pl.String),
        pl.col("metric").cast(pl.String),
        pl.col("subject").cast(pl.String),
        pl.col("value").cast(pl.Float64),
    )


def _current(rule: AlertRule, metrics: pl.LazyFrame, now: datetime) -> pl.DataFrame:
    """Return subject, value, breach for one rule at `now` (latest value per subject)."""
    lf = metrics.filter(pl.col("metric") == rule.metric, pl.col("at") <= now)
    if rule.monitor is not None:
        lf = lf.filter(pl.col("monitor") == rule.monitor)
    if rule.subjects:
        lf = lf.filter(pl.col("subject").is_in(list(rule.subjects)))
    latest = (
        lf.sort("at").group_by("subject").agg(pl.col("value").last(), pl.col("at").last()).collect()
    )
    if rule.absent_for is None:
        return latest.select("subject", "value", breach=rule.breach(pl.col("value")))
    expected = list(rule.subjects) if rule.subjects else ["*"] if latest.is_empty() else []
    if expected:
        latest = pl.DataFrame({"subject": expected}, schema={"subject": pl.String}).join(
            latest, on="subject", how="full", coalesce=True
        )
    age = (pl.lit(now, _TS) - pl.col("at")).dt.total_microseconds() / 60e6
    return latest.select(
        "subject",
        value=age,  # minutes since last seen; null if never seen
        breach=age.is_null() | (age > rule.absent_for),
    )


def _alert_id(rule: str, subject: str, first_seen: datetime) -> str:
    key = f"{rule}\x1f{subject}\x1f{first_seen.isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def evaluate(
    rules: Sequence[AlertRule],
    metrics: pl.DataFrame | pl.LazyFrame,
    state: AlertState | None = None,
    *,
    now: datetime | None = None,
) -> list[AlertEvent]:
    """Evaluate rules over a long-format metrics frame; return fired, repeated and resolved alerts.

    Pure: `state` is not changed (use `state.apply(events)` or `run_alerts`).
    Only outcomes with `notify=True` are notifications.

    Examples
    --------
    >>> m = pl.DataFrame({"at": [datetime(2026, 1, 1, tzinfo=UTC)], "metric": ["psi"],
    ...                   "subject": ["price"], "value": [0.4]})
    >>> r = AlertRule.from_dict({"name": "psi", "metric": "psi", "condition": "> 0.2",
    ...                          "severity": "warning", "sinks": ["log"]})
    >>> [(e.status, e.notify) for e in evaluate([r], m, now=datetime(2026, 1, 2, tzinfo=UTC))]
    [('firing', True)]
    """
    now = now or datetime.now(UTC)
    state = state or AlertState()
    lf = normalize_metrics(metrics)
    firing = state.firing
    out: list[AlertEvent] = []
    for rule in rules:
        current = _current(rule, lf, now)
        previous = firing.filter(pl.col("rule") == rule.name).select(
            "subject", "alert_id", "first_seen", "last_seen", was_firing=pl.lit(True)
        )
        merged = current.join(previous, on="subject", how="left").filter(
            pl.col("breach") | pl.col("was_firing").fill_null(False)
        )
        merged = merged.with_columns(
            status=pl.when(pl.col("breach")).then(pl.lit("firing")).otherwise(pl.lit("resolved")),
            notify=pl.col("breach") != pl.col("was_firing").fill_null(False),
            first_seen=pl.col("first_seen").fill_null(pl.lit(now, _TS)),
        )
        for r in merged.to_dicts():  # alerts of one rule, not data rows
            out.append(_event(rule, r, now))
    return out


def _event(rule: AlertRule, r: dict[str, Any], now: datetime) -> AlertEvent:
    firing = r["status"] == "firing"
    value = r["value"]
    shown = "never seen" if value is None else f"{value:.6g}"
    if rule.absent_for is not None:
        what = (
            f"{rule.metric} of {r['subject']} last seen {shown} min ago "
            f"(absent_for {rule.absent_for:g})"
        )
    else:
        what = f"{rule.metric} of {r['subject']} = {shown} ({rule.condition})"
    return AlertEvent(
        alert_id=r["alert_id"] or _alert_id(rule.name, r["subject"], r["first_seen"]),
        rule=rule.name,
        metric=rule.metric,
        subject=r["subject"],
        severity=rule.severity,
        status=r["status"],
        notify=r["notify"],
        first_seen=r["first_seen"],
        last_seen=now if firing else r["last_seen"],  # resolved: last time it was true
        resolved_at=None if firing else now,
        value=value,
        threshold=rule.absent_for if rule.absent_for is not None else rule.threshold,
        condition=rule.condition,
        message=f"[{rule.severity}] {rule.name} {'FIRING' if firing else 'resolved'}: {what}",
        updated_at=now,
        sinks=rule.sinks,
    )


# --------------------------------------------------------------------- sinks
@dataclass(frozen=True)
class Delivery:
    """The outcome of sending one notification to one sink."""

    sink: str
    sink_type: str
    ok: bool
    attempts: int
    http_status: int | None = None
    error: str | None = None


class Sink(Protocol):
    """Anything that takes a notification (JSON-ready dict) and reports the delivery."""

    name: str
    type: str

    def send(self, payload: Mapping[str, Any]) -> Delivery:
        """Deliver one notification; never raise for a delivery failure."""
        ...


@dataclass
class JsonlSink:
    """Append one JSON object per notification to a file (created with its folder)."""

    path: Path
    name: str = "jsonl"
    type: str = "jsonl"

    def send(self, payload: Mapping[str, Any]) -> Delivery:
        """Append the notification as one JSON line; record an OS error as a failed delivery."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(payload, sort_keys=True) + "\n")
        except OSError as exc:
            return Delivery(self.name, self.type, False, 1, error=f"{self.path}: {exc}")
        return Delivery(self.name, self.type, True, 1)


@dataclass
class WebhookSink:
    """POST each notification as JSON to a URL, retrying connection errors and 5xx.

    Up to ``1 + retries`` attempts, sleeping ``backoff * 2**(k-1)`` seconds before
    retry k.  A 4xx answer is not retried.  After the last attempt the failure is
    returned as a Delivery (ok=False, last error), never raised.
    """

    url: str
    timeout: float = 2.0
    retries: int = 3
    backoff: float = 0.2
    headers: Mapping[str, str] = field(default_factory=dict)
    name: str = "webhook"
    type: str = "webhook"

    def send(self, payload: Mapping[str, Any]) -> Delivery:
        """POST the notification; return the delivery outcome after retries."""
        body = json.dumps(payload, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", **self.headers}
        status: int | None = None
        error: str | None = None
        attempts = 0
        for attempt in range(1 + max(0, self.retries)):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            attempts += 1
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    status = resp.status
                return Delivery(self.name, self.type, True, attempts, status)
            except urllib.error.HTTPError as exc:
                status, error = exc.code, f"HTTP {exc.code} {exc.reason}"
                if exc.code < 500:
                    break  # the request itself is wrong: retrying will not help
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                status = None
                reason = getattr(exc, "reason", exc)
                error = f"{type(reason).__name__}: {reason}"
        return Delivery(
            self.name,
            self.type,
            False,
            attempts,
            status,
            f"{self.url}: {error} after {attempts} attempt(s)",
        )


def build_sinks(
    config: Mapping[str, Mapping[str, Any]], *, env: Mapping[str, str] | None = None
) -> dict[str, Sink]:
    """Build sinks from their configuration by name; secrets come from environment variables.

    ``{"log": {"type": "jsonl", "path": "..."}, "ops-webhook": {"type": "webhook",
    "url": "...", "timeout": 2, "retries": 3, "backoff": 0.2,
    "headers_from_env": {"Authorization": "HORTUS_WEBHOOK_TOKEN"}}}``: each header
    value is read from the named variable of `env` (default: os.environ).  Literal
    `headers`/`token` values are refused, so secrets never sit in params.yaml.
    """
    env = os.environ if env is None else env
    sinks: dict[str, Sink] = {}
    for name, spec in config.items():
        where = f"alert sink {name!r}"
        if not isinstance(spec, Mapping):
            raise AlertRuleError(f"{where}: must be a mapping with a `type`")
        kind = spec.get("type")
        if kind == "jsonl":
            _keys(where, spec, {"type", "path"})
            if not spec.get("path"):
                raise AlertRuleError(f"{where}: jsonl sink needs a `path`")
            sinks[name] = JsonlSink(Path(spec["path"]), name=name)
        elif kind == "webhook":
            if "headers" in spec or "token" in spec:
                raise AlertRuleError(
                    f"{where}: secrets are not allowed in the configuration; name the "
                    "environment variable instead: headers_from_env: {Header: VARIABLE}"
                )
            _keys(where, spec, {"type", "url", "timeout", "retries", "backoff", "headers_from_env"})
            url = spec.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise AlertRuleError(f"{where}: webhook needs an http(s) `url`, got {url!r}")
            headers = {}
            for header, var in dict(spec.get("headers_from_env") or {}).items():
                if var not in env:
                    raise AlertRuleError(
                        f"{where}: header {header!r} reads environment variable {var}, "
                        "which is not set"
                    )
                headers[header] = env[var]
            sinks[name] = WebhookSink(
                url,
                timeout=float(spec.get("timeout", 2.0)),
                retries=int(spec.get("retries", 3)),
                backoff=float(spec.get("backoff", 0.2)),
                headers=headers,
                name=name,
            )
        else:
            raise AlertRuleError(f"{where}: unknown type {kind!r}; expected jsonl or webhook")
    return sinks


def _keys(where: str, spec: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise AlertRuleError(f"{where}: unknown key(s) {unknown}; known: {sorted(allowed)}")


def check_sinks(rules: Sequence[AlertRule], sinks: Mapping[str, Sink]) -> None:
    """Refuse rules that name a sink that is not configured (names the rule)."""
    for rule in rules:
        missing = [s for s in rule.sinks if s not in sinks]
        if missing:
            raise AlertRuleError(
                f"alert rule {rule.name!r}: unknown sink(s) {missing}; "
                f"configured sinks: {sorted(sinks)}"
            )


def notify(events: Sequence[AlertEvent], sinks: Mapping[str, Sink]) -> pl.DataFrame:
    """Send each notification (notify=True) to its rule's sinks; return the delivery rows."""
    rows = []
    for event in events:
        if not event.notify:
            continue
        for sink_name in event.sinks:
            if sink_name not in sinks:
                raise AlertRuleError(
                    f"alert rule {event.rule!r}: unknown sink {sink_name!r}; "
                    f"configured sinks: {sorted(sinks)}"
                )
            d = sinks[sink_name].send(event.payload())
            rows.append(
                {
                    "at": datetime.now(UTC),
                    "alert_id": event.alert_id,
                    "rule": event.rule,
                    "subject": event.subject,
                    "status": event.status,
                    "sink": d.sink,
                    "sink_type": d.sink_type,
                    "ok": d.ok,
                    "attempts": d.attempts,
                    "http_status": d.http_status,
                    "error": d.error,
                }
            )
    return pl.DataFrame(rows, schema=DELIVERY_SCHEMA)


# ---------------------------------------------------------------- whole loop
@dataclass(frozen=True)
class AlertRun:
    """What one alerting pass did: its outcomes, deliveries and the new state."""

    events: list[AlertEvent]
    deliveries: pl.DataFrame
    state: AlertState

    @property
    def notifications(self) -> list[AlertEvent]:
        """Return the outcomes that were sent to sinks (fired or resolved)."""
        return [e for e in self.events if e.notify]


def persist(lh: Any, events: Sequence[AlertEvent], deliveries: pl.DataFrame) -> None:
    """Append evaluation outcomes to ops.alerts and delivery outcomes to ops.alert_deliveries."""
    if events:
        lh.write(ALERTS_TABLE, events_frame(events), mode="append")
    if deliveries.height:
        lh.write(DELIVERIES_TABLE, deliveries, mode="append")


def run_alerts(
    lh: Any,
    rules: Sequence[AlertRule],
    metrics: pl.DataFrame | pl.LazyFrame,
    sinks: Mapping[str, Sink],
    *,
    state: AlertState | None = None,
    now: datetime | None = None,
) -> AlertRun:
    """Load the alert state, evaluate rules, notify sinks and persist both; return the run.

    `state` defaults to `AlertState.load(lh)` (ops.alerts), so a restarted
    process does not notify again for alerts already firing.
    """
    check_sinks(rules, sinks)
    state = AlertState.load(lh) if state is None else state
    events = evaluate(rules, metrics, state, now=now)
    deliveries = notify(events, sinks)
    persist(lh, events, deliveries)
    return AlertRun(events, deliveries, state.apply(events))
