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

from hortus.errors import HortusError  # noqa: F401
from hortus.monitoring._alert_evaluate import (  # noqa: F401
    METRIC_COLUMNS,
    METRICS_TABLE,
    _alert_id,
    _current,
    _event,
    evaluate,
    normalize_metrics,
)
from hortus.monitoring._alert_rules import (  # noqa: F401
    _ABSENT,
    _CONDITION,
    _RULE_KEYS,
    OPERATORS,
    SEVERITIES,
    AlertRule,
    AlertRuleError,
    _names,
    _parse_condition,
    load_rules,
)
from hortus.monitoring._alert_run import AlertRun, persist, run_alerts  # noqa: F401
from hortus.monitoring._alert_sinks import (  # noqa: F401
    DELIVERIES_TABLE,
    DELIVERY_SCHEMA,
    Delivery,
    JsonlSink,
    Sink,
    WebhookSink,
    _keys,
    build_sinks,
    check_sinks,
    notify,
)
from hortus.monitoring._alert_state import (  # noqa: F401
    _TS,
    ALERT_SCHEMA,
    ALERTS_TABLE,
    AlertEvent,
    AlertState,
    events_frame,
)
from hortus.monitoring.event_types import check_event_type  # noqa: F401

__all__ = [
    "ALERTS_TABLE",
    "ALERT_SCHEMA",
    "AlertEvent",
    "AlertRule",
    "AlertRuleError",
    "AlertRun",
    "AlertState",
    "DELIVERIES_TABLE",
    "DELIVERY_SCHEMA",
    "Delivery",
    "JsonlSink",
    "METRICS_TABLE",
    "METRIC_COLUMNS",
    "OPERATORS",
    "SEVERITIES",
    "Sink",
    "WebhookSink",
    "build_sinks",
    "check_sinks",
    "evaluate",
    "events_frame",
    "load_rules",
    "normalize_metrics",
    "notify",
    "persist",
    "run_alerts",
]
