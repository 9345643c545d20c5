"""Table maintenance: compact small files, checkpoint, apply retention, vacuum (`hortus maintain`).

Every run adds small Delta commits to the operations tables (audit log, run log,
monitor metrics, events, prediction log) and nothing else rewrites them, so a
table grows one small Parquet file and one JSON commit per append.  `maintain`

1. compacts the small files of every ``ops`` table (and of any other table with
   at least `MaintainConfig.min_small_files` files under `small_file_bytes`) into
   one file per bin (Delta OPTIMIZE: a new version, the old versions stay readable);
2. writes a checkpoint at the current version of each table it touched, so a
   process opening the table reads one Parquet checkpoint and the commits after it
   instead of every JSON commit;
3. applies each contract's retention (`retention: {days, column, keep_for_receipts}`):
   deletes the rows whose `column` is older than `days` in one audited Delta commit
   (lineage note ``retention``), then vacuums the files those rows were in;
4. vacuums the files compaction made obsolete once they are older than
   `vacuum_hours` (default a week, so a reader that opened an old version keeps it
   meanwhile).

Time travel that registered receipts depend on is kept: every version a registered
model version's receipt names (``tables_read``) is passed to Delta's vacuum as a
version to keep, and no commit log is cleaned up (maintain's own commits run without
deltalake's expired-log cleanup, and a table a receipt reads gets the table property
``delta.enableExpiredLogCleanup=false`` so other writers' automatic checkpoints do not
delete its commits after 30 days either), so `DeltaTable(path, version=v)` still opens it.
Retention that would remove rows such a version holds is refused with the reason
(which model version, which table version, how old its oldest row is, and what to
change) unless the contract says ``keep_for_receipts: false``; then the rows go and
the receipt's version is recorded in the commit note and the audit record as removed
by retention (`removed_by_retention`).

Needs the `maintain` grant (access_policy.yaml) on each table maintained; every action is audited
(action ``maintain``).  `dry_run` reports what would be done and changes nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties

from hortus.errors import HortusError
from hortus.lakehouse._objstore import TableLocation

if TYPE_CHECKING:
    from hortus.lakehouse.tables import Lakehouse

AUDIT_TABLE = "ops.audit_log"
REGISTRY_TABLE = "ops.model_versions"
RETENTION_NOTE = "retention"
#: maintain's own commits: a checkpoint, and never the expired-log cleanup (time travel)
_HOOKS = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)
_NO_LOG_CLEANUP = "delta.enableExpiredLogCleanup"


@dataclass(frozen=True)
class MaintainConfig:
    """Thresholds of `maintain` (params.yaml `maintain:` section)."""

    enabled: bool = True
    small_file_bytes: int = 8 * 1024 * 1024  # a file under this is small
    min_small_files: int = 16  # a non-ops table is compacted from this many small files
    target_file_bytes: int = 128 * 1024 * 1024
    vacuum_hours: float = 168.0  # files compaction removed are deleted after this long
    retention_vacuum_hours: float = 0.0  # files retention removed: deleted at once
    checkpoint_commits: int = 10  # checkpoint a table this many commits after its last one

    @classmethod
    def from_dict(cls, d: dict | None, *, source: str = "params.yaml") -> MaintainConfig:
        """Build from a mapping; an unknown key or a value of the wrong type is refused.

        (The same rules as params_schema's `maintain` section, which `hortus params
        check` applies; checked here too because this module cannot import it.)
        """
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise HortusError(
                f"{source}: maintain: unknown key(s) {sorted(unknown)}; known: "
                f"{sorted(cls.__dataclass_fields__)}"
            )
        for key, value in d.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if key == "enabled":
                ok, expected = isinstance(value, bool), "true or false"
            elif key.endswith("_hours"):
                ok, expected = number and value >= 0, "number >= 0"
            else:
                ok, expected = isinstance(value, int) and number and value >= 1, "int >= 1"
            if not ok:
                raise HortusError(f"{source}: maintain.{key}: expected {expected}, got {value!r}")
        return cls(**d)


@dataclass
class TableReport:
    """What maintain did (or would do) to one table."""

    table: str
    files_before: int = 0
    small_files: int = 0
    compacted: dict[str, int] | None = None  # files removed / added
    checkpoint: int | None = None  # version checkpointed
    retention: dict[str, Any] | None = None
    vacuumed: int = 0  # files deleted
    kept_for_receipts: list[str] = field(default_factory=list)  # model@vN (table version)
    log_cleanup_disabled: bool = False  # the table keeps every commit file (receipts)
    error: str | None = None

    @property
    def changed(self) -> bool:
        """Whether anything was (or would be) done."""
        rows = (self.retention or {}).get("rows_deleted") or 0
        return bool(self.compacted or self.checkpoint is not None or rows or self.vacuumed)


@dataclass
class MaintainReport:
    """Per-table reports of one maintain run."""

    dry_run: bool
    at: datetime
    tables: list[TableReport]

    @property
    def refused(self) -> list[TableReport]:
        """Tables whose retention was refused (a receipt needs their rows)."""
        return [t for t in self.tables if (t.retention or {}).get("status") == "refused"]

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict."""
        return {
            "dry_run": self.dry_run,
            "at": self.at.isoformat(timespec="seconds"),
            "tables": [asdict(t) for t in self.tables],
        }


def config_from_params(root: Path, params: Path | str | None = None, **override) -> MaintainConfig:
    """Return params.yaml's optional `maintain:` section (defaults when absent); `override` wins."""
    import yaml

    path = Path(params) if params else Path(root) / "params.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    section = (doc or {}).get("maintain")
    if section is not None and not isinstance(section, dict):
        raise HortusError(f"{path.name}: maintain: expected a mapping of keys, got {section!r}")
    return MaintainConfig.from_dict(
        dict(section or {}) | {k: v for k, v in override.items() if v is not None},
        source=path.name,
    )


def summary(report: MaintainReport) -> dict:
    """Return a short summary of a run (the monitor stage's report)."""
    rets = [t.retention or {} for t in report.tables]
    return {
        "tables_compacted": sum(1 for t in report.tables if t.compacted),
        "files_compacted": sum(
            (t.compacted or {}).get("files_removed") or 0 for t in report.tables
        ),
        "checkpoints": sum(1 for t in report.tables if t.checkpoint is not None),
        "rows_deleted": {
            t.table: r["rows_deleted"]
            for t, r in zip(report.tables, rets, strict=True)
            if r.get("rows_deleted")
        },  # fmt: skip
        "files_vacuumed": sum(t.vacuumed for t in report.tables),
        "retention_refused": [t.retention["message"] for t in report.refused],
        "errors": {t.table: t.error for t in report.tables if t.error},
    }


def receipt_versions(lh: Lakehouse) -> dict[str, list[tuple[str, int]]]:
    """Return, per table, the (model@vN, Delta version) pairs registered receipts read."""
    if not lh.exists(REGISTRY_TABLE):
        return {}
    reg = lh.read(REGISTRY_TABLE, columns=["name", "version", "tables_read"])
    out: dict[str, list[tuple[str, int]]] = {}
    for row in reg.iter_rows(named=True):
        for table, version in (json.loads(row["tables_read"] or "{}") or {}).items():
            out.setdefault(table, []).append((f"{row['name']}@v{row['version']}", int(version)))
    return out


def _table_path(lh: Lakehouse, name: str) -> Path | str:
    """Return a table's folder, or its object-store URI (hortus.lakehouse._objstore)."""
    where = lh.location(name)
    return where.local if where.local is not None else where.uri


def _dt(path: Path | str, version: int | None = None) -> DeltaTable:
    """Open a table by folder or URI (storage options from the environment)."""
    return TableLocation.of(path).delta(version)


def _lineage(lh: Lakehouse, note: str) -> CommitProperties:
    from hortus.lakehouse.tables import LINEAGE_PREFIX

    meta = {
        "stage": lh.stage,
        "inputs": "{}",
        "user": lh.user,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": note,
    }
    return CommitProperties(custom_metadata={LINEAGE_PREFIX + k: v for k, v in meta.items()})


def _last_checkpoint(path: Path | str) -> int | None:
    try:
        text = TableLocation.of(path).read_text("_delta_log/_last_checkpoint")
        return int(json.loads(text)["version"])
    except (OSError, ValueError, KeyError):
        return None


def _literal(value: datetime, dtype: pl.DataType) -> str:
    if dtype == pl.Date:
        return f"'{value.date().isoformat()}'"
    return f"'{value.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'"


def _oldest(lh: Lakehouse, name: str, column: str, version: int | None = None) -> Any:
    return lh.scan(name, version=version).select(pl.col(column).min()).collect().item()


def _version_oldest(path: Path | str, column: str, version: int) -> Any:
    """Return the oldest `column` value of one table version, from the log's file statistics.

    Read by the maintaining process (its `maintain` grant), not a user read: only the
    minimum of one column, from the Delta log (the data files when it has no statistics).
    """
    dt = _dt(path, version)
    actions = dt.get_add_actions(flatten=True)
    key = f"min.{column}"
    if actions.num_rows == 0:
        return None
    if key in actions.column_names and actions.column(key).null_count == 0:
        return min(actions.column(key).to_pylist())
    return pl.from_arrow(dt.to_pyarrow_table(columns=[column]))[column].min()


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)  # a date


def _retention(
    lh: Lakehouse,
    name: str,
    now: datetime,
    receipts: list[tuple[str, int]],
    config: MaintainConfig,
    dry_run: bool,
    report: TableReport,
) -> list[int]:
    """Apply one table's retention; return the versions vacuum must keep."""
    ret = lh.catalog.get(name).retention
    assert ret is not None
    cutoff = now - timedelta(days=ret.days)
    dtype = lh.catalog.get(name).schema[ret.column]
    lit = _literal(cutoff, dtype)
    due = (
        lh.scan(name)
        .filter(pl.col(ret.column) < pl.lit(cutoff if dtype != pl.Date else cutoff.date()))
        .select(pl.len())
        .collect()
        .item()
    )
    oldest = _as_datetime(_oldest(lh, name, ret.column))
    info: dict[str, Any] = {
        "days": ret.days,
        "column": ret.column,
        "cutoff": cutoff.isoformat(timespec="seconds"),
        "oldest": oldest.isoformat(timespec="seconds") if oldest else None,
        "rows_due": int(due),
        "rows_deleted": 0,
        "status": "ok",
        "message": "",
    }
    report.retention = info
    # the receipts whose table version holds rows older than the cutoff
    needing = []
    for model, version in receipts:
        try:
            first = _as_datetime(_version_oldest(_table_path(lh, name), ret.column, version))
        except Exception as exc:  # noqa: BLE001 - a version already gone: say so, keep going
            needing.append((model, version, None, f"{type(exc).__name__}: {exc}"))
            continue
        if first is not None and first < cutoff:
            needing.append((model, version, first, None))
    keep = [v for _, v, _, _ in needing] if ret.keep_for_receipts else []
    if needing and ret.keep_for_receipts:
        model, version, first, _ = needing[0]
        age = (now - first).total_seconds() / 86400 if first else None
        need = f", whose oldest row is {age:.0f} days old" if age is not None else ""
        info["status"] = "refused"
        info["message"] = (
            f"retention of {name} ({ret.days:g} days) is shorter than the receipt of {model} "
            f"needs: it reads {name}@v{version}{need}. Nothing was deleted from {name}. "
            f"Lengthen retention.days to at least {math.ceil(age or ret.days) + 1}, retire "
            f"{model}, or set retention.keep_for_receipts: false to delete anyway (then "
            f"{model}'s inputs are removed by retention and it cannot be rebuilt from them)"
            + (f"; {len(needing) - 1} other receipt(s) too" if len(needing) > 1 else "")
        )
        report.kept_for_receipts = [f"{m} ({name}@v{v})" for m, v, _, _ in needing]
        return keep
    if not due:
        return keep
    removed = [f"{m} ({name}@v{v})" for m, v, _, _ in needing]
    note = f"{RETENTION_NOTE}: rows with {ret.column} before {cutoff:%Y-%m-%dT%H:%M:%SZ}"
    if removed:
        note += f"; removes the inputs of {', '.join(removed)}"
        info["receipts_removed"] = removed
    if dry_run:
        info["rows_deleted"] = int(due)
        info["message"] = "dry run: would delete"
        return keep
    decision = lh.authorize("maintain", name, detail=note)
    dt = _dt(_table_path(lh, name))
    metrics = dt.delete(
        f'"{ret.column}" < {lit}',
        commit_properties=_lineage(lh, note),
        post_commithook_properties=_HOOKS,
    )
    deleted = int((metrics or {}).get("num_deleted_rows", 0) or 0)
    info["rows_deleted"] = deleted
    version = _dt(_table_path(lh, name)).version()
    lh._record("delete", name, f"v{version} rows={deleted} {note}", decision)
    return keep


def _vacuum(
    lh: Lakehouse, name: str, hours: float, keep: list[int], dry_run: bool, report: TableReport
) -> None:
    dt = _dt(_table_path(lh, name))
    files = dt.vacuum(
        retention_hours=max(0, int(hours)),
        dry_run=dry_run,
        enforce_retention_duration=False,
        keep_versions=sorted(set(keep)) or None,
        commit_properties=_lineage(lh, "maintain: vacuum"),
        post_commithook_properties=_HOOKS,
    )
    report.vacuumed = len(files)


def maintain_table(
    lh: Lakehouse,
    name: str,
    *,
    config: MaintainConfig,
    receipts: list[tuple[str, int]],
    now: datetime,
    dry_run: bool = False,
) -> TableReport:
    """Compact, checkpoint, apply retention and vacuum one table; return what was done."""
    report = TableReport(table=name)
    path = _table_path(lh, name)
    if not lh.exists(name):
        return report
    decision = lh._require("maintain", name)  # refused before anything is looked at
    dt = _dt(path)
    _count_files(dt, config, report)
    is_ops = name.startswith("ops.")
    compact = report.small_files >= (2 if is_ops else config.min_small_files)
    if compact:
        if dry_run:
            report.compacted = {"files_removed": report.small_files, "files_added": None}
        else:
            _compact(lh, dt, config, report)
    if receipts and dt.metadata().configuration.get(_NO_LOG_CLEANUP) != "false":
        # other writers' automatic checkpoints would otherwise delete commit files older
        # than 30 days, and a receipt's version with them
        report.log_cleanup_disabled = True
        if not dry_run:
            dt.alter.set_table_properties(
                {_NO_LOG_CLEANUP: "false"}, commit_properties=_lineage(lh, "maintain: keep log")
            )
    keep = [v for _, v in receipts]
    vacuum_hours = config.vacuum_hours
    has_retention = lh.catalog.get(name).retention is not None
    if has_retention:
        keep_ret = _retention(lh, name, now, receipts, config, dry_run, report)
        if (report.retention or {}).get("rows_deleted"):
            keep, vacuum_hours = keep_ret, config.retention_vacuum_hours
    if is_ops or compact or has_retention:  # other tables keep their time travel as it is
        _vacuum(lh, name, vacuum_hours, keep, dry_run, report)
    version = _dt(path).version()
    last = _last_checkpoint(path)
    rows = (report.retention or {}).get("rows_deleted")
    if last != version and (
        report.compacted or rows or version - (last or -1) >= config.checkpoint_commits
    ):
        report.checkpoint = version
        if not dry_run:
            _dt(path).create_checkpoint()
    if not dry_run and report.changed:
        lh._record("maintain", name, json.dumps(_summary(report)), decision)
    return report


def _summary(r: TableReport) -> dict:
    ret = r.retention or {}
    return {
        "compacted": r.compacted,
        "checkpoint": r.checkpoint,
        "rows_deleted": ret.get("rows_deleted", 0),
        "vacuumed": r.vacuumed,
        "retention": ret.get("status"),
    }


def tables_to_maintain(lh: Lakehouse) -> list[str]:
    """Return the tables maintain looks at: every catalogued table that exists."""
    return [n for n in lh.catalog.names() if lh.exists(n)]


def maintain(
    lh: Lakehouse,
    *,
    config: MaintainConfig | None = None,
    dry_run: bool = False,
    tables: list[str] | None = None,
    now: datetime | None = None,
) -> MaintainReport:
    """Maintain every table (or `tables`); see the module docstring.  Audited per table."""
    config = config or MaintainConfig()
    now = now or datetime.now(UTC)
    names = tables if tables is not None else tables_to_maintain(lh)
    receipts = receipt_versions(lh)
    lh.flush_audit()
    reports = []
    for name in names:
        if name == AUDIT_TABLE:
            continue  # last: its own maintenance must not race the records written meanwhile
        try:
            reports.append(
                maintain_table(
                    lh,
                    name,
                    config=config,
                    receipts=receipts.get(name, []),
                    now=now,
                    dry_run=dry_run,
                )  # fmt: skip
            )
        except HortusError:
            raise
        except Exception as exc:  # noqa: BLE001 - one table's failure is reported, not fatal
            reports.append(TableReport(table=name, error=f"{type(exc).__name__}: {exc}"))
    if AUDIT_TABLE in names and lh.exists(AUDIT_TABLE):
        kept = receipts.get(AUDIT_TABLE, [])
        if dry_run:
            reports.append(
                maintain_table(
                    lh, AUDIT_TABLE, config=config, receipts=kept, now=now, dry_run=True
                )  # fmt: skip
            )
        else:
            decision = lh.authorize("maintain", AUDIT_TABLE, detail="compact")  # flushed now
            with lh._audit.log()._locked():  # appends wait: the head they read stays the head
                report = _maintain_audit(lh, config, kept)
            reports.append(report)
            if report.changed:
                lh._record("maintain", AUDIT_TABLE, json.dumps(_summary(report)), decision)
    lh.flush_audit()
    return MaintainReport(dry_run=dry_run, at=now, tables=reports)


def _maintain_audit(
    lh: Lakehouse, config: MaintainConfig, receipts: list[tuple[str, int]]
) -> TableReport:
    """Compact and checkpoint the audit log under its append lock (records of this run wait)."""
    path = _table_path(lh, AUDIT_TABLE)
    report = TableReport(table=AUDIT_TABLE)
    dt = _dt(path)
    _count_files(dt, config, report)
    if report.small_files >= 2:
        _compact(lh, dt, config, report)
    _vacuum(lh, AUDIT_TABLE, config.vacuum_hours, [v for _, v in receipts], False, report)
    version = _dt(path).version()
    if _last_checkpoint(path) != version:
        _dt(path).create_checkpoint()
        report.checkpoint = version
    return report


def _count_files(dt: DeltaTable, config: MaintainConfig, report: TableReport) -> None:
    """Record a table's data files and how many of them are small (under small_file_bytes)."""
    sizes = dt.get_add_actions(flatten=True).column("size_bytes").to_pylist()
    report.files_before = len(sizes)
    report.small_files = sum(1 for s in sizes if s < config.small_file_bytes)


def _compact(lh: Lakehouse, dt: DeltaTable, config: MaintainConfig, report: TableReport) -> None:
    """Compact a table's small files into files of about target_file_bytes; record it."""
    m = dt.optimize.compact(
        target_size=config.target_file_bytes,
        commit_properties=_lineage(lh, "maintain: compact small files"),
        post_commithook_properties=_HOOKS,
    )
    report.compacted = {
        "files_removed": int(m.get("numFilesRemoved", 0)),
        "files_added": int(m.get("numFilesAdded", 0)),
    }


def removed_by_retention(lh: Lakehouse, name: str, version: int) -> str | None:
    """Return the note of the retention commit that removed `name`@v`version`'s files, if any.

    For readers of an old version (model cards, drift against a receipt's version) that
    fail to open it: the answer names the retention run instead of a missing file.
    """
    from hortus.lakehouse.tables import LINEAGE_PREFIX

    try:
        history = _dt(_table_path(lh, name)).history()
    except Exception:  # noqa: BLE001
        return None
    for h in history:
        note = str(h.get(LINEAGE_PREFIX + "note") or "")
        if h["version"] > version and note.startswith(RETENTION_NOTE) and f"@v{version})" in note:
            when = datetime.fromtimestamp(h["timestamp"] / 1000, UTC)
            return f"{name}@v{version} was removed by retention on {when:%Y-%m-%d} ({note})"
    return None


def retention_status(lh: Lakehouse, *, now: datetime | None = None) -> pl.DataFrame:
    """Return one row per table with a retention: days, oldest row age, rows due (read-only)."""
    now = now or datetime.now(UTC)
    rows = []
    for name in lh.catalog.names():
        ret = lh.catalog.get(name).retention
        if ret is None:
            continue
        row = {"table": name, "days": ret.days, "oldest_age_days": None, "rows_due": 0,
               "rows": 0, "built": lh.exists(name)}  # fmt: skip
        if row["built"]:
            cutoff = now - timedelta(days=ret.days)
            dtype = lh.catalog.get(name).schema[ret.column]
            lit = cutoff if dtype != pl.Date else cutoff.date()
            stats = (
                lh.scan(name)
                .select(
                    pl.len().alias("rows"),
                    pl.col(ret.column).min().alias("oldest"),
                    (pl.col(ret.column) < pl.lit(lit)).sum().alias("due"),
                )
                .collect()
                .row(0, named=True)
            )
            oldest = _as_datetime(stats["oldest"])
            row |= {
                "rows": int(stats["rows"]),
                "rows_due": int(stats["due"] or 0),
                "oldest_age_days": (now - oldest).total_seconds() / 86400 if oldest else None,
            }
        rows.append(row)
    return pl.DataFrame(
        rows,
        schema={
            "table": pl.String,
            "days": pl.Float64,
            "oldest_age_days": pl.Float64,
            "rows_due": pl.Int64,
            "rows": pl.Int64,
            "built": pl.Boolean,
        },  # fmt: skip
    )
