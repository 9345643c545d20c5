"""Monitoring: batch monitors, drift, alert rules and sinks, events, watch, run log.

Public names are re-exported lazily (PEP 562): `from hortus.monitoring import X` imports
only the module that defines X.  Patch a name in its defining module, not here.
"""

from __future__ import annotations

from hortus._lazy import lazy_exports

_EXPORTS = {
    "run_all": "hortus.monitoring.monitors",
    "MonitorConfig": "hortus.monitoring.monitors",
    "compare": "hortus.monitoring.drift",
    "DriftConfig": "hortus.monitoring.drift",
    "Profile": "hortus.monitoring.drift",
    "run_alerts": "hortus.monitoring.alerts",
    "load_rules": "hortus.monitoring.alerts",
    "emit": "hortus.monitoring.events",
    "Event": "hortus.monitoring.events",
    "watch": "hortus.monitoring.watch",
    "record_run": "hortus.monitoring.runlog",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
