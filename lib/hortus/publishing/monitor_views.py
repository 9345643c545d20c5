"""The logic behind notebooks/monitor.py (the monitoring dashboard), for any project.

The notebook orchestrates and displays; these functions pick and compute:

- `in_range`, `ops_clock`: the date range on the operations clock (when monitors,
  stages and alerts ran);
- `latest_run`, `freshness_table`: a monitor's newest rows, table freshness per table;
- `model_options`, `registered_models`: which models the dashboard can show (the
  project's, then any other registered one);
- `model_context`: the features, time column and training share of a model (from its
  registered champion, else from its definition in hortus.yaml);
- `segment_columns`, `segment_values`, `filter_segment`: segment choices and rows;
- `kpi_layout`: the time and segment columns of a daily KPI table;
- `feature_columns`, `drift_by_window`: feature drift over the trailing week to each day,
  against the training part;
- `realized_series`: realized outcome metrics (the `realized` monitor) per day and
  model version, newest measurement of each, with the days still pending.

Nothing here names a domain: tables and columns come from the project definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl

from hortus.errors import HortusError
from hortus.governance.access import AccessDenied
from hortus.monitoring.drift import CalibrationConfig, _window_starts, calibrated_compare

#: the value of a segment dropdown that keeps every row
ALL = "ALL"


def in_range(frame: pl.DataFrame, column: str, start: date, stop: date) -> pl.DataFrame:
    """Keep the rows whose timestamp `column` falls on a day from `start` to `stop` inclusive.

    Examples
    --------
    >>> f = pl.DataFrame({"at": [datetime(2025, 1, 1, 9), datetime(2025, 1, 3, 9)]})
    >>> in_range(f, "at", date(2025, 1, 2), date(2025, 1, 3)).height
    1
    """
    return frame.filter(pl.col(column).dt.date().is_between(start, stop))


def ops_clock(frames: Mapping[str, tuple[pl.DataFrame | None, str]]) -> tuple[date, date]:
    """Return the first and last day seen in the operations tables (today if none has rows).

    `frames` maps a name to (frame or None, its timestamp column).

    Examples
    --------
    >>> f = pl.DataFrame({"at": [datetime(2025, 1, 1), datetime(2025, 1, 4)]})
    >>> ops_clock({"m": (f, "at"), "r": (None, "started_at")})
    (datetime.date(2025, 1, 1), datetime.date(2025, 1, 4))
    """
    spans = [
        frame.select(pl.col(col).min().dt.date().alias("a"), pl.col(col).max().dt.date().alias("b"))
        for frame, col in frames.values()
        if frame is not None and frame.height
    ]
    if not spans:
        today = datetime.now(UTC).date()
        return today, today
    both = pl.concat(spans)
    return both["a"].min(), both["b"].max()


def latest_run(metrics: pl.DataFrame, monitor: str) -> pl.DataFrame:
    """Return the rows of a monitor's latest run (its newest `at`), one per metric and subject.

    Examples
    --------
    >>> f = pl.DataFrame({"monitor": ["a", "a", "b"], "at": [1, 2, 3], "value": [1.0, 2.0, 3.0]})
    >>> latest_run(f, "a")["value"].to_list()
    [2.0]
    """
    rows = metrics.filter(pl.col("monitor") == monitor)
    return rows.filter(pl.col("at") == pl.col("at").max())


def freshness_table(metrics: pl.DataFrame) -> pl.DataFrame:
    """Pivot the latest freshness run to one row per table: age, SLA and a stale flag.

    Stale tables come first.  An empty frame (columns table, at) when no
    freshness run was recorded.
    """
    latest = latest_run(metrics, "freshness")
    if latest.height == 0:
        return pl.DataFrame(schema={"table": pl.String, "at": pl.Datetime("us", "UTC")})
    wide = latest.pivot(
        on="metric", index=["subject", "at"], values="value", aggregate_function="last"
    )
    order = [c for c in ("age_hours", "sla_hours", "stale") if c in wide.columns]
    hours = [pl.col(c).round(2) for c in ("age_hours", "sla_hours") if c in order]
    table = wide.rename({"subject": "table"}).with_columns(hours).select("table", *order, "at")
    return table.sort("stale", "table", descending=[True, False]) if "stale" in order else table


def retention_table(metrics: pl.DataFrame) -> pl.DataFrame:
    """Pivot the latest retention run to one row per table: retention, oldest row, rows due.

    Tables with rows past their retention come first.  An empty frame (columns table,
    at) when no retention run was recorded.
    """
    latest = latest_run(metrics, "retention")
    if latest.height == 0:
        return pl.DataFrame(schema={"table": pl.String, "at": pl.Datetime("us", "UTC")})
    wide = latest.pivot(
        on="metric", index=["subject", "at"], values="value", aggregate_function="last"
    )
    order = [
        c
        for c in ("retention_days", "oldest_age_days", "rows", "rows_past_retention")
        if c in wide.columns
    ]
    table = wide.rename({"subject": "table"}).select("table", *order, "at")
    if "rows_past_retention" in order:
        return table.sort("rows_past_retention", "table", descending=[True, False])
    return table


def registered_models(versions: pl.DataFrame | None) -> list[str]:
    """Return the sorted model names of the registry's versions table (none when unreadable).

    Examples
    --------
    >>> registered_models(pl.DataFrame({"name": ["b", "a", "b"]}))
    ['a', 'b']
    """
    if versions is None or "name" not in versions.columns:
        return []
    return sorted(versions["name"].drop_nulls().unique().to_list())


def model_options(
    project_models: Iterable[str], registered: Iterable[str], wanted: str | None, default: str
) -> tuple[list[str], str]:
    """Return the model dropdown's options (the project's, then other registered) and its value.

    The value is `wanted` when it is an option, else `default` (the project's
    default model).

    Examples
    --------
    >>> model_options(["rec", "churn"], ["old", "rec"], "", "rec")
    (['rec', 'churn', 'old'], 'rec')
    >>> model_options(["rec"], ["old"], "old", "rec")[1]
    'old'
    """
    options = list(dict.fromkeys([*project_models, *registered]))
    value = wanted if wanted and wanted in options else default
    if value not in options:
        options.insert(0, value)
    return options, value


@dataclass(frozen=True)
class ModelContext:
    """What the dashboard needs of a model: its table, time, features, segments, train share."""

    name: str
    table: str | None
    time: str | None
    features: tuple[str, ...]
    segments: tuple[str, ...]
    roles: tuple[str, ...]
    reference_share: float
    note: str | None = None


def model_context(lakehouse, name: str, model_def=None, *, default_holdout: float = 0.25):
    """Return the `ModelContext` of a model, from its registered champion if any.

    The champion's spec gives the features, time column and hold-out share (the
    drift reference is the training part, `1 - holdout_fraction`); the project's
    definition (`model_def`, a `hortus.project.definition.ModelDef` or None) gives the table,
    segments and roles, and stands in for the spec when there is no champion.
    `note` says why the champion could not be used (none yet, unreadable, unknown).
    """
    from hortus.models.registry import Registry

    spec: dict = {}
    note = None
    try:
        registry = Registry(lakehouse, name)
        champion = registry.aliases().get("champion")
        if champion is not None:
            spec = registry.get(champion).spec or {}
        else:
            note = f"model `{name}` has no champion yet"
    except AccessDenied as exc:
        note = f"the registry of `{name}` is not readable by {lakehouse.user}: {exc}"
    except HortusError as exc:
        note = f"no registry entry for `{name}`: {exc}"
    time = spec.get("time") or (model_def.time if model_def is not None else None)
    segments = tuple(spec.get("segments") or (model_def.segments if model_def else ()))
    roles = tuple(model_def.roles) if model_def is not None else ()
    roles += tuple(c for c in (spec.get("target"), spec.get("group")) if c and c not in roles)
    return ModelContext(
        name=name,
        table=model_def.table if model_def is not None else None,
        time=time,
        features=tuple(spec.get("features") or ()),
        segments=segments,
        roles=roles,
        reference_share=1.0 - float(spec.get("holdout_fraction") or default_holdout),
        note=note,
    )


def segment_columns(frame: pl.DataFrame | None, segments: Sequence[str]) -> list[str]:
    """Return the segment columns present in the frame (in the model's order).

    Examples
    --------
    >>> segment_columns(pl.DataFrame({"a": [1], "c": [2]}), ["c", "b", "a"])
    ['c', 'a']
    """
    if frame is None:
        return []
    return [c for c in segments if c in frame.columns]


def segment_values(frame: pl.DataFrame | None, column: str | None) -> list[str]:
    """Return the dropdown values of a segment column: ALL, then its sorted values as text.

    Examples
    --------
    >>> segment_values(pl.DataFrame({"r": ["b", "a", None, "ALL"]}), "r")
    ['ALL', 'a', 'b']
    """
    if frame is None or not column or column not in frame.columns:
        return [ALL]
    values = frame[column].cast(pl.String).drop_nulls().unique().sort().to_list()
    return [ALL, *[v for v in values if v != ALL]]


def filter_segment(
    frame: pl.DataFrame | None, column: str | None, value: str
) -> tuple[pl.DataFrame | None, str | None]:
    """Return the rows of one segment value, or every row with a note saying why.

    ALL, a missing column or a value no row has (masked for this user?) keep
    every row; the note names the column and value.

    Examples
    --------
    >>> f = pl.DataFrame({"r": ["a", "b", "b"]})
    >>> filter_segment(f, "r", "b")[0].height, filter_segment(f, "r", "z")[1] is not None
    (2, True)
    """
    if frame is None or value == ALL or not column:
        return frame, None
    if column not in frame.columns:
        return frame, f"no `{column}` column: shown for ALL."
    kept = frame.filter(pl.col(column).cast(pl.String) == value)
    if kept.height == 0:
        return frame, (
            f"No row has `{column}` = {value} as you see it (masked for you?): shown for ALL."
        )
    return kept, None


def kpi_layout(frame: pl.DataFrame) -> tuple[str | None, str | None]:
    """Return (time column, segment column) of a daily KPI table.

    The time column is the first date or datetime column; the segment column the
    first string column (None when the table has no segments).

    Examples
    --------
    >>> kpi_layout(pl.DataFrame({"date": [date(2025, 1, 1)], "region": ["ALL"], "n": [1]}))
    ('date', 'region')
    """
    time = next((c for c, t in frame.schema.items() if t.is_temporal()), None)
    seg = next((c for c, t in frame.schema.items() if t == pl.String), None)
    return time, seg


def feature_columns(
    frame: pl.DataFrame, features: Sequence[str] | None, *, exclude: Iterable[str] = ()
) -> list[str]:
    """Return the columns to compare for drift: the model's features, else every data column.

    Columns in `exclude` (time, target, ids, the segment shown) are left out either way.

    Examples
    --------
    >>> f = pl.DataFrame({"id": [1], "t": [1], "a": [1.0], "b": [2.0]})
    >>> feature_columns(f, None, exclude=["id", "t"]), feature_columns(f, ["b", "z"])
    (['a', 'b'], ['b'])
    """
    skip = set(exclude)
    if features:
        return [f for f in features if f in frame.columns and f not in skip]
    return [c for c in frame.columns if c not in skip]


def drift_by_window(
    rows: pl.DataFrame,
    features: list[str],
    *,
    time: str,
    reference_share: float,
    window: str,
    trailing: str | None = "7d",
    calibration: CalibrationConfig | None = None,
    increments: Mapping[str, Sequence[str]] | None = None,
) -> tuple[pl.DataFrame, datetime]:
    """Compare the newest rows, `window` by `window`, with the training part, as the monitors do.

    The history is the rows before the `reference_share` quantile of `time` (the
    model's training part).  Each later window gets one point: the rows of the
    `trailing` period ending with that window (from the cut-off at the earliest; None:
    the window's own rows), so the newest point judges the same rows as the staleness
    monitor when the newer rows span less than `trailing`.  A one-day point is judged
    on levels and its increments' mean only, against the history's last week; a point
    of two days or more is also judged on the weekday-aligned parts (the non-zero share
    and size of increments, a ratio's recent rate) against the same weekdays, which
    a day's rows cannot be (docs/monitoring.md measures the difference).  Each point is
    compared by
    `hortus.monitoring.drift.calibrated_compare`, the decision the staleness monitor and
    the gate use: against the history's last week, each feature against a threshold
    from a null fitted to the history's like-window pairs at that window's lag and
    size (so features that grow by construction are not flagged for growing).  Returns
    one row per feature and window (``window_start``: the window the point ends with)
    with the statistic, its threshold,
    ``score = value / threshold`` (>= 1: drifted), ``drifted`` (distribution or null
    share) and the cutoff between history and current.  Window aggregates in
    `increments` (feature -> entity key columns, `hortus.monitoring.drift.increments_for`)
    are judged on their per-entity increments too, as the gate and the monitor judge them.
    Raises HortusError when the rows span too short a time to split.
    """
    cutoff = rows.select(pl.col(time).quantile(reference_share, interpolation="lower")).item()
    history = rows.filter(pl.col(time) < cutoff)
    current = rows.filter(pl.col(time) >= cutoff)
    if history.height == 0 or current.height == 0:
        raise HortusError(
            f"drift: {rows.height} row(s) over too short a time range to split at the "
            f"{reference_share:.0%} quantile of {time!r}"
        )
    starts = _window_starts(current[time], window)
    current = current.with_columns(starts.alias("__window"))
    length = _window_length(window)
    reach = max(_window_length(trailing), length) if trailing else length
    first = current["__window"].min()
    increments = {
        f: ks for f, ks in (increments or {}).items() if all(k in rows.columns for k in ks)
    }
    keys = [k for ks in increments.values() for k in ks]
    wanted = list(dict.fromkeys([*features, time, *keys]))
    frames = []
    for start in current["__window"].unique(maintain_order=True).sort():
        # the windows of the trailing period ending with this one (not before the cut-off)
        lo = max(start + length - reach, first)
        part = current.filter(pl.col("__window").is_between(lo, start))
        report, _ = calibrated_compare(
            history.select(wanted),
            part.select(wanted),
            features,
            time=time,
            calibration=calibration,
            span=start + length - lo,
            increments=increments,
            preceding=current.filter(pl.col("__window") < lo).select(wanted)
            if increments
            else None,
        )
        frames.append(
            report.to_frame()
            .filter(pl.col("skipped").is_null())
            .with_columns(
                pl.lit(start).alias("window_start"),
                (pl.col("drifted") | pl.col("null_drifted").fill_null(False)).alias("drifted"),
            )
        )
    found = (
        pl.concat(frames)
        .sort("window_start", maintain_order=True)
        .select("column", "window_start", "statistic", "value", "threshold", "drifted", "n_current")
        .with_columns((pl.col("value") / pl.col("threshold")).alias("score"))
    )
    return found, cutoff


def _window_length(window: str) -> timedelta:
    """Return the length of a window such as "1d", "12h" or "1w" (at least an hour)."""
    import re

    units = {"h": 1 / 24, "d": 1.0, "w": 7.0}
    days = sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hdw])", window))
    if not days:
        raise HortusError(f"drift: window {window!r} must be in hours, days or weeks (1d, 7d)")
    return timedelta(days=days)


def realized_series(
    metrics: pl.DataFrame | None,
    model: str,
    metric: str = "realized_precision",
    *,
    segment: str = "all",
    value: str = "all",
) -> pl.DataFrame:
    """Return day, version, value, status of one realized metric of a model (newest run).

    Rows of the `realized` monitor for `model`'s versions and one segment (``all`` by
    default), the newest measurement per subject; pending days come as status
    ``pending`` with their pending lists in `lists` and no value.  Sorted by day, version.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> lab = '{"model_name":"m","model_version":"2","day":"2025-03-01","segment":"all",'
    >>> m = pl.DataFrame({"monitor": ["realized"] * 2, "metric": ["realized_precision"] * 2,
    ...     "subject": ["m v2 2025-03-01"] * 2, "value": [0.1, 0.2],
    ...     "labels": [lab + '"value":"all","status":"complete"}'] * 2,
    ...     "at": [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)]})
    >>> realized_series(m, "m").select("day", "version", "value").rows()
    [('2025-03-01', 2, 0.2)]
    """
    schema = {"day": pl.String, "version": pl.Int64, "value": pl.Float64,
              "status": pl.String, "lists": pl.Float64}  # fmt: skip
    if metrics is None or metrics.height == 0:
        return pl.DataFrame(schema=schema)
    rows = metrics.filter(
        (pl.col("monitor") == "realized")
        & pl.col("metric").is_in([metric, "realized_pending", "realized_lists"])
    ).with_columns(
        *[
            pl.col("labels").str.json_path_match(f"$.{k}").alias(f"_{k}")
            for k in ("model_name", "model_version", "day", "segment", "value", "status")
        ]
    )
    rows = rows.filter(
        (pl.col("_model_name") == model) & (pl.col("_segment") == segment)
        & (pl.col("_value") == value)
    ).sort("at")  # fmt: skip
    newest = rows.group_by("subject", "metric").agg(pl.all().last())
    # a subject's newest run decides its status (a pending day may have closed since)
    status = newest.group_by("subject").agg(pl.col("_status").sort_by("at").last().alias("status"))
    wide = (
        newest.join(status, on="subject")
        .filter(pl.col("_status") == pl.col("status"))
        .group_by("subject", "_day", "_model_version", "status")
        .agg(
            pl.col("value").filter(pl.col("metric") == metric).first().alias("value"),
            pl.col("value")
            .filter(pl.col("metric").is_in(["realized_lists", "realized_pending"]))
            .first()
            .alias("lists"),
        )
    )
    return (
        wide.select(
            pl.col("_day").alias("day"),
            pl.col("_model_version").cast(pl.Int64).alias("version"),
            "value",
            "status",
            "lists",
        )
        .cast(schema)
        .sort("day", "version")
    )
