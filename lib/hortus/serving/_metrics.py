"""Prometheus metrics of the service, written by hand in the text exposition format 0.0.4.

- ``hortus_serve_requests_total{route, model, status}``: counter of answered requests;
- ``hortus_serve_request_seconds{route, model}``: latency histogram (cumulative
  ``_bucket{le=...}``, ``_sum``, ``_count``);
- ``hortus_serve_model_version{model, alias}``: the version being served (gauge);
- ``hortus_serve_model_swaps_total{model}``: hot swaps done;
- ``hortus_serve_prediction_log_backlog``: prediction rows not yet in ops.prediction_log;
- ``hortus_serve_prediction_log_spilled_total`` / ``_write_failures_total``.

Updates happen on the event-loop thread (one request at a time touches them); the
reader takes a snapshot under a lock, so a scrape never sees half an update.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _labels(**kv: object) -> str:
    parts = []
    for k, v in kv.items():
        text = str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{k}="{text}"')
    return "{" + ",".join(parts) + "}"


class Metrics:
    """Counters and histograms of one service process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.hist: dict[tuple[str, str], list[float]] = {}
        self.sums: dict[tuple[str, str], float] = defaultdict(float)
        self.swaps: dict[str, int] = defaultdict(int)

    def observe(self, route: str, model: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        with self._lock:
            self.requests[(route, model, status)] += 1
            key = (route, model)
            counts = self.hist.get(key)
            if counts is None:
                counts = self.hist[key] = [0] * (len(BUCKETS) + 1)
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self.sums[key] += seconds

    def swapped(self, model: str) -> None:
        with self._lock:
            self.swaps[model] += 1

    def render(self, models: dict[str, tuple[int, str]], writer) -> str:
        """Return the exposition text (`models`: name -> (version, alias))."""
        with self._lock:
            requests = dict(self.requests)
            hist = {k: list(v) for k, v in self.hist.items()}
            sums = dict(self.sums)
            swaps = dict(self.swaps)
        out = [
            "# HELP hortus_serve_requests_total Requests answered, by route, model and status.",
            "# TYPE hortus_serve_requests_total counter",
        ]
        for (route, model, status), n in sorted(requests.items()):
            out.append(
                f"hortus_serve_requests_total{_labels(route=route, model=model, status=status)} {n}"
            )
        out += [
            "# HELP hortus_serve_request_seconds Time to answer a request.",
            "# TYPE hortus_serve_request_seconds histogram",
        ]
        for (route, model), counts in sorted(hist.items()):
            acc = 0
            for le, n in zip((*BUCKETS, "+Inf"), counts, strict=True):
                acc += n
                labels = _labels(route=route, model=model, le=le)
                out.append(f"hortus_serve_request_seconds_bucket{labels} {acc}")
            out.append(f"hortus_serve_request_seconds_sum{_labels(route=route, model=model)} "
                       f"{sums[(route, model)]:.6f}")  # fmt: skip
            out.append(
                f"hortus_serve_request_seconds_count{_labels(route=route, model=model)} {acc}"
            )
        out += [
            "# HELP hortus_serve_model_version Registry version being served.",
            "# TYPE hortus_serve_model_version gauge",
        ]
        for name, (version, alias) in sorted(models.items()):
            out.append(f"hortus_serve_model_version{_labels(model=name, alias=alias)} {version}")
        out += [
            "# HELP hortus_serve_model_swaps_total Hot swaps to a new version.",
            "# TYPE hortus_serve_model_swaps_total counter",
        ]
        for name, n in sorted(swaps.items()):
            out.append(f"hortus_serve_model_swaps_total{_labels(model=name)} {n}")
        if writer is not None:
            out += [
                "# HELP hortus_serve_prediction_log_backlog Prediction rows not yet in "
                "ops.prediction_log (memory and spill file).",
                "# TYPE hortus_serve_prediction_log_backlog gauge",
                f"hortus_serve_prediction_log_backlog {writer.backlog}",
                "# HELP hortus_serve_prediction_log_spilled_total Rows written to the spill file.",
                "# TYPE hortus_serve_prediction_log_spilled_total counter",
                f"hortus_serve_prediction_log_spilled_total {writer.spilled}",
                "# HELP hortus_serve_prediction_log_write_failures_total Failed log appends.",
                "# TYPE hortus_serve_prediction_log_write_failures_total counter",
                f"hortus_serve_prediction_log_write_failures_total {writer.failures}",
            ]
        return "\n".join(out) + "\n"
