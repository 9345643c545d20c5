"""Alert sinks (a JSON-lines file, a webhook) and the delivery of notifications to them.

Every delivery attempt returns a `Delivery` (ok, attempts, HTTP status,
error); a sink that fails never raises, so it never stops monitoring.  Secrets
(a webhook token) come only from environment variables named in the sink
configuration (`build_sinks`).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from hortus.monitoring._alert_rules import AlertRule, AlertRuleError
from hortus.monitoring._alert_state import _TS, AlertEvent

DELIVERIES_TABLE = "ops.alert_deliveries"
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
