"""Access monitor: denied attempts per table and user, from the audit log."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from hortus.governance.audit import AuditLog, default_path
from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring._monitor_base import (
    _long,
    _utc,
)


# ------------------------------------------------------------- denied access
def denied_access_frame(
    audit: pl.DataFrame, at: datetime, *, window_hours: float | None = 24.0
) -> pl.DataFrame:
    """Count denied attempts per object and user in the `window_hours` before `at` (None: all)."""
    at = _utc(at)
    denied = audit.filter(
        ((pl.col("outcome") == "denied") | (pl.col("action") == "denied")) & (pl.col("ts") <= at)
    )
    if window_hours is not None:
        denied = denied.filter(pl.col("ts") > at - timedelta(hours=window_hours))
    wide = (
        denied.group_by("object", "user")
        .agg(
            pl.len().alias("denied_attempts"),
            pl.col("action").unique().sort().str.join(",").alias("actions"),
            pl.col("ts").max().dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("last_at"),
        )
        .sort("object", "user")
    )
    return _long(
        wide,
        monitor="access",
        at=at,
        subject=pl.col("object"),
        values=("denied_attempts",),
        labels=("user", "actions", "last_at"),
    )


def denied_access(
    lh: Lakehouse, at: datetime, *, window_hours: float | None = 24.0
) -> pl.DataFrame:
    """Count denied access attempts by table and user from the audit log.

    Reading the audit log needs the read grant on ops.audit_log (audited).
    """
    lh.authorize("read", "ops.audit_log", detail="monitor: denied attempts")
    log = AuditLog.open(default_path(lh.paths), secrets_dir=lh.paths.secrets)
    return denied_access_frame(log.show(denied_only=True), at, window_hours=window_hours)
