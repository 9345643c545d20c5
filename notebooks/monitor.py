import marimo

__generated_with = "0.25.2"
app = marimo.App(
    width="medium",
    app_title="Hortus: monitoring dashboard",
)

with app.setup:
    from datetime import UTC, date, datetime, timedelta

    import altair as alt
    import marimo as mo
    import polars as pl

    from hortus.access import AccessDenied
    from hortus.alerts import ALERTS_TABLE, AlertState
    from hortus.audit import AuditLog, default_path
    from hortus.drift import compare
    from hortus.errors import HortusError
    from hortus.monitors import FLAG_METRICS, KPI_TABLE, METRICS_TABLE, TRAINING_SET
    from hortus.nbui import load_table, note, show_table
    from hortus.runlog import RUNS_TABLE
    from hortus.tables import Lakehouse

    #: columns of gold.training_set that are never compared for drift
    NOT_FEATURES = ("event_id", "rec_id", "user_id", "plant_id", "label", "position")
    #: the training-set column that holds the segment (region) of a row
    SEGMENT_COLUMN = "user_profile__region"


@app.cell
def _():
    # parameters
    # days: width of the default date range (ops clock) and of the drift/KPI window
    # (data clock); segment: the region preselected in the dropdown ("ALL" = every
    # row); model: the registered model whose champion staleness is shown.
    days = 14
    segment = "ALL"
    model = "recommender"
    return days, model, segment


@app.function
def in_range(frame: pl.DataFrame, column: str, start: date, stop: date) -> pl.DataFrame:
    """Keep the rows whose timestamp `column` falls on a day from `start` to `stop` inclusive."""
    return frame.filter(pl.col(column).dt.date().is_between(start, stop))


@app.function
def ops_clock(frames: dict[str, tuple[pl.DataFrame | None, str]]) -> tuple[date, date]:
    """Return the first and last day seen in the operations tables (today if none has rows)."""
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


@app.function
def latest_run(metrics: pl.DataFrame, monitor: str) -> pl.DataFrame:
    """Return the rows of a monitor's latest run (its newest `at`), one per metric and subject."""
    rows = metrics.filter(pl.col("monitor") == monitor)
    return rows.filter(pl.col("at") == pl.col("at").max())


@app.function
def freshness_table(metrics: pl.DataFrame) -> pl.DataFrame:
    """Pivot the latest freshness run to one row per table: age, SLA and a stale flag."""
    latest = latest_run(metrics, "freshness")
    if latest.height == 0:
        return pl.DataFrame(schema={"table": pl.String, "at": pl.Datetime("us", "UTC")})
    wide = latest.pivot(
        on="metric", index=["subject", "at"], values="value", aggregate_function="last"
    )
    order = [c for c in ("age_hours", "sla_hours", "stale") if c in wide.columns]
    table = wide.rename({"subject": "table"}).select("table", *order, "at")
    return table.sort("stale", "table", descending=[True, False]) if "stale" in order else table


@app.function
def feature_columns(frame: pl.DataFrame, features: list[str] | None, time: str) -> list[str]:
    """Return the columns to compare for drift: the model's features, else every data column."""
    if features:
        return [f for f in features if f in frame.columns and f != SEGMENT_COLUMN]
    return [c for c in frame.columns if c not in (*NOT_FEATURES, time, SEGMENT_COLUMN)]


@app.function
def drift_by_window(
    rows: pl.DataFrame, features: list[str], *, time: str, reference_share: float, window: str
) -> tuple[pl.DataFrame, datetime]:
    """Compare each `window` of the newest rows with the oldest `reference_share` of them.

    The reference is the rows before the `reference_share` quantile of `time` (the
    model's training part); every later window is compared with it by
    `hortus.drift.compare`.  Returns one row per feature and window with the
    statistic, its threshold, ``score = value / threshold`` (>= 1: drifted) and the
    cutoff between reference and current.
    """
    cutoff = rows.select(pl.col(time).quantile(reference_share, interpolation="lower")).item()
    reference = rows.filter(pl.col(time) < cutoff)
    current = rows.filter(pl.col(time) >= cutoff)
    if reference.height == 0 or current.height == 0:
        raise HortusError(
            f"drift: {rows.height} row(s) over too short a time range to split at the "
            f"{reference_share:.0%} quantile of {time!r}"
        )
    report = compare(
        reference.select(features),
        current.select(*features, time),
        features,
        time=time,
        window=window,
    )
    found = (
        report.to_frame()
        .filter(pl.col("window_start").is_not_null() & pl.col("skipped").is_null())
        .select("column", "window_start", "statistic", "value", "threshold", "drifted", "n_current")
        .with_columns((pl.col("value") / pl.col("threshold")).alias("score"))
    )
    return found, cutoff


@app.cell
def _():
    mo.md("""
    # Monitoring dashboard

    What the operations plane recorded: feature drift over time, table freshness,
    pipeline runs and their failures, alerts, model staleness and denied access
    attempts.  Everything is read through the lakehouse **as you** (`HORTUS_USER`):
    a table you may not read is named below instead of shown, and that attempt is
    itself audited.  Refresh the numbers with `hortus monitor run`.
    """)
    return


@app.cell
def _():
    lakehouse = Lakehouse.open(stage="monitor")
    metrics, metrics_note = load_table(lakehouse, METRICS_TABLE)
    runs, runs_note = load_table(lakehouse, RUNS_TABLE)
    alerts, alerts_note = load_table(lakehouse, ALERTS_TABLE)
    kpis, kpis_note = load_table(lakehouse, KPI_TABLE)
    return (
        alerts,
        alerts_note,
        kpis,
        kpis_note,
        lakehouse,
        metrics,
        metrics_note,
        runs,
        runs_note,
    )


@app.cell
def _(alerts, days, metrics, runs):
    # the date range is on the operations clock: when monitors, stages and alerts ran
    first_day, last_day = ops_clock(
        {"metrics": (metrics, "at"), "runs": (runs, "started_at"), "alerts": (alerts, "updated_at")}
    )
    default_start = max(first_day, last_day - timedelta(days=int(days)))
    return default_start, first_day, last_day


@app.cell
def _(default_start, first_day, last_day):
    date_range = mo.ui.date_range(
        start=first_day, stop=last_day, value=(default_start, last_day), label="Operations dates"
    )
    return (date_range,)


@app.cell
def _(kpis, segment):
    _regions = sorted(kpis["region"].unique().drop_nulls().to_list()) if kpis is not None else []
    _options = ["ALL", *[r for r in _regions if r != "ALL"]]
    segment_choice = mo.ui.dropdown(
        options=_options, value=segment if segment in _options else "ALL", label="Segment (region)"
    )
    return (segment_choice,)


@app.cell
def _(date_range, days, lakehouse, segment_choice):
    start, stop = date_range.value
    chosen_segment = segment_choice.value
    mo.vstack(
        [
            mo.hstack([date_range, segment_choice], justify="start"),
            mo.md(
                f"Viewing as **{lakehouse.user}**; operations from {start} to {stop}; "
                f"drift and KPIs over the last {days} days of data; segment **{chosen_segment}**."
            ),
        ]
    )
    return chosen_segment, start, stop


@app.cell
def _(metrics, metrics_note, start, stop):
    if metrics is None:
        _out = note(f"## Attention needed\n\n{metrics_note or ''}", "warn")
    else:
        _latest = metrics.filter(pl.col("at") == pl.col("at").max().over("monitor"))
        _flags = _latest.filter(pl.col("metric").is_in(FLAG_METRICS) & (pl.col("value") > 0))
        _window = in_range(metrics, "at", start, stop)
        _out = mo.vstack(
            [
                mo.md(
                    f"## Attention needed\n\n{_window.height:,} metric rows in the date range; "
                    f"the latest run of each monitor raised **{_flags.height}** flag(s)."
                ),
                show_table(_flags.select("monitor", "metric", "subject", "value", "labels", "at"))
                if _flags.height
                else note("No monitor flags anything in its latest run.", "success"),
            ]
        )
    _out
    return


@app.cell
def _(lakehouse, model):
    # the model's features and its training share (the reference of the drift check)
    _spec: dict = {}
    champion_note = None
    try:
        from hortus.registry import Registry

        _registry = Registry(lakehouse, model)
        _champion = _registry.aliases().get("champion")
        if _champion is not None:
            _spec = _registry.get(_champion).spec or {}
        else:
            champion_note = f"model `{model}` has no champion yet"
    except AccessDenied as _exc:
        champion_note = f"the registry of `{model}` is not readable by {lakehouse.user}: {_exc}"
    except HortusError as _exc:
        champion_note = f"no registry entry for `{model}`: {_exc}"
    model_features = list(_spec.get("features") or [])
    model_time = _spec.get("time") or "ts"
    reference_share = 1.0 - float(_spec.get("holdout_fraction") or 0.25)
    return champion_note, model_features, model_time, reference_share


@app.cell
def _(lakehouse):
    training, training_note = load_table(lakehouse, TRAINING_SET)
    return training, training_note


@app.cell
def _(chosen_segment, lakehouse, training):
    # the segment filters the training rows when this user sees the region in the clear
    segment_note = None
    if training is None or chosen_segment == "ALL":
        segment_rows = training
    elif SEGMENT_COLUMN not in training.columns:
        segment_rows = training
        segment_note = f"{TRAINING_SET} has no `{SEGMENT_COLUMN}` column: drift shown for ALL."
    elif training.filter(pl.col(SEGMENT_COLUMN) == chosen_segment).height == 0:
        segment_rows = training
        segment_note = (
            f"No {TRAINING_SET} row has `{SEGMENT_COLUMN}` = {chosen_segment} as "
            f"**{lakehouse.user}** sees it (masked for this user?): drift shown for ALL."
        )
    else:
        segment_rows = training.filter(pl.col(SEGMENT_COLUMN) == chosen_segment)
    return segment_note, segment_rows


@app.cell
def _(model_features, model_time, reference_share, segment_rows):
    # one comparison per segment choice: each day of the newest rows against the reference
    drift = None
    drift_error = None
    if segment_rows is not None and segment_rows.height and model_time in segment_rows.columns:
        _features = feature_columns(segment_rows, model_features, model_time)
        try:
            drift, _cutoff = drift_by_window(
                segment_rows,
                _features,
                time=model_time,
                reference_share=reference_share,
                window="1d",
            )
        except HortusError as _exc:
            drift_error = str(_exc)
    return drift, drift_error


@app.cell
def _(
    champion_note,
    days,
    drift,
    drift_error,
    reference_share,
    segment_note,
    training_note,
):
    _notes = [m for m in (champion_note, segment_note) if m]
    if drift is None:
        _why = training_note or drift_error or f"{TRAINING_SET} has no rows yet."
        _out = [mo.md("## Feature drift over time"), note(_why, "warn")]
    else:
        _recent = drift.filter(
            pl.col("window_start") > pl.col("window_start").max() - timedelta(days=int(days))
        )
        _share = _recent.group_by("window_start").agg(
            pl.col("drifted").mean().alias("share_drifted"), pl.len().alias("features")
        )
        _heat = (
            alt.Chart(_recent)
            .mark_rect()
            .encode(
                x=alt.X("yearmonthdate(window_start):O", title="day"),
                y=alt.Y("column:N", title=None, sort="-color"),
                color=alt.Color(
                    "score:Q",
                    title="value / threshold",
                    scale=alt.Scale(scheme="orangered", domainMid=1.0),
                ),
                tooltip=[
                    "column",
                    "window_start:T",
                    "statistic",
                    "value",
                    "threshold",
                    "drifted",
                    "n_current",
                ],
            )
            .properties(title="Drift per feature and day (>= 1 means drifted)", width=520)
        )
        _line = (
            alt.Chart(_share)
            .mark_line(point=True)
            .encode(
                x=alt.X("window_start:T", title="day"),
                y=alt.Y(
                    "share_drifted:Q",
                    title="share of features drifted",
                    scale=alt.Scale(domain=[0, 1]),
                ),
                tooltip=["window_start:T", "share_drifted", "features"],
            )
            .properties(height=140, width=520, title="Share of features drifted per day")
        )
        _out = [
            mo.md(
                f"## Feature drift over time\n\nEach day of the newest rows of {TRAINING_SET} "
                f"against the oldest {reference_share:.0%} (the model's training part); "
                f"{_recent['column'].n_unique()} features over {_share.height} day(s)."
            ),
            _line,
            _heat,
        ]
    mo.vstack([*_out, *[note(m) for m in _notes]])
    return


@app.cell
def _(chosen_segment, days, kpis, kpis_note):
    if kpis is None:
        _out = mo.vstack([mo.md("## Business KPIs"), note(kpis_note or "", "warn")])
    else:
        _rows = kpis.filter(pl.col("region") == chosen_segment)
        _rows = _rows.filter(pl.col("date") > pl.col("date").max() - timedelta(days=int(days)))
        _ratios = [c for c, t in _rows.schema.items() if t == pl.Float64]
        _long = _rows.unpivot(index=["date", "region"], on=_ratios, variable_name="kpi")
        _chart = (
            alt.Chart(_long)
            .mark_line(point=True)
            .encode(x="date:T", y=alt.Y("value:Q", title=None), tooltip=["date:T", "kpi", "value"])
            .properties(height=110, width=240)
            .facet(facet=alt.Facet("kpi:N", title=None), columns=3)
            .resolve_scale(y="independent")
            .properties(title=f"Daily KPIs, region {chosen_segment}")
        )
        _out = mo.vstack(
            [
                mo.md("## Business KPIs"),
                _chart if _long.height else note(f"No KPI rows for region {chosen_segment}."),
            ]
        )
    _out
    return


@app.cell
def _(metrics, metrics_note):
    if metrics is None:
        _out = mo.vstack([mo.md("## Table freshness"), note(metrics_note or "", "warn")])
    else:
        _fresh = freshness_table(metrics)
        _out = mo.vstack(
            [
                mo.md(
                    "## Table freshness\n\nHours since each table's last commit, against its SLA "
                    "(latest freshness run)."
                ),
                show_table(_fresh)
                if _fresh.height
                else note("No freshness metrics yet: run `hortus monitor run`."),
            ]
        )
    _out
    return


@app.cell
def _(runs, runs_note, start, stop):
    if runs is None:
        _out = mo.vstack([mo.md("## Pipeline runs"), note(runs_note or "", "warn")])
    else:
        _runs = in_range(runs, "started_at", start, stop)
        _failed = _runs.filter(pl.col("status") == "failed")
        _chart = (
            alt.Chart(_runs)
            .mark_point(filled=True, size=70)
            .encode(
                x=alt.X("started_at:T", title="started"),
                y=alt.Y("stage:N", title=None),
                color=alt.Color(
                    "status:N",
                    scale=alt.Scale(domain=["ok", "failed"], range=["#4c9a2a", "#d62728"]),
                ),
                size=alt.Size("duration_s:Q", title="duration (s)"),
                tooltip=[
                    "stage",
                    "status",
                    "started_at:T",
                    "duration_s",
                    "rows_in",
                    "rows_out",
                    "peak_memory_mb",
                    "error",
                ],
            )
            .properties(title="Stage runs (red: failed)", width=520)
        )
        _out = mo.vstack(
            [
                mo.md(
                    f"## Pipeline runs\n\n{_runs.height} run(s) in the date range, "
                    f"**{_failed.height}** failed."
                ),
                _chart if _runs.height else note("No stage runs in the date range."),
                show_table(_failed.select("stage", "started_at", "duration_s", "error", "run_id"))
                if _failed.height
                else mo.md(""),
            ]
        )
    _out
    return


@app.cell
def _(alerts, alerts_note, start, stop):
    if alerts is None:
        _out = mo.vstack([mo.md("## Alerts"), note(alerts_note or "", "warn")])
    else:
        _state = AlertState.from_rows(alerts).frame
        _events = in_range(alerts, "updated_at", start, stop)
        _chart = (
            alt.Chart(_events)
            .mark_bar()
            .encode(
                x=alt.X("yearmonthdate(updated_at):O", title="day"),
                y=alt.Y("count():Q", title="alert events"),
                color=alt.Color(
                    "severity:N", scale=alt.Scale(domain=["info", "warning", "critical"])
                ),
                tooltip=["rule", "subject", "status", "severity", "count()"],
            )
            .properties(title="Alert events per day", width=520, height=160)
        )
        _firing = _state.filter(pl.col("status") == "firing")
        _out = mo.vstack(
            [
                mo.md(
                    f"## Alerts\n\n**{_firing.height}** firing now; {_events.height} alert "
                    "event(s) in the date range."
                ),
                _chart if _events.height else note("No alert events in the date range."),
                show_table(
                    _firing.select(
                        "severity", "rule", "subject", "value", "condition", "first_seen", "message"
                    )
                )
                if _firing.height
                else note("Nothing is firing.", "success"),
            ]
        )
    _out
    return


@app.cell
def _(metrics, metrics_note, model, start, stop):
    if metrics is None:
        _out = mo.vstack([mo.md("## Model staleness"), note(metrics_note or "", "warn")])
    else:
        _rows = metrics.filter(
            (pl.col("monitor") == "model_staleness") & (pl.col("subject") == model)
        )
        _latest = latest_run(_rows, "model_staleness")
        _series = in_range(_rows, "at", start, stop).filter(pl.col("metric") == "staleness_score")
        _chart = (
            alt.Chart(_series)
            .mark_line(point=True)
            .encode(
                x=alt.X("at:T", title="monitor run"),
                y=alt.Y("value:Q", title="staleness score", scale=alt.Scale(domain=[0, 1])),
                tooltip=["at:T", "value", "labels"],
            )
            .properties(
                height=140, width=520, title=f"Staleness of {model}'s champion (0 fresh, 1 stale)"
            )
        )
        _out = mo.vstack(
            [
                mo.md("## Model staleness"),
                show_table(_latest.select("metric", "value", "labels", "at"))
                if _latest.height
                else note(
                    f"No staleness metrics for `{model}` yet (no champion, or no monitor run)."
                ),
                _chart if _series.height else mo.md(""),
            ]
        )
    _out
    return


@app.cell
def _(lakehouse, metrics, start, stop):
    # the access monitor's counts (ops.monitor_metrics) and, for users who may read the
    # audit log, the denied attempts themselves
    _counts = (
        in_range(metrics, "at", start, stop).filter(pl.col("metric") == "denied_attempts")
        if metrics is not None
        else None
    )
    try:
        lakehouse.authorize("read", "ops.audit_log", detail="monitor dashboard: denied attempts")
        _log = AuditLog.open(default_path(lakehouse.paths), secrets_dir=lakehouse.paths.secrets)
        denials = in_range(_log.show(denied_only=True), "ts", start, stop)
        denials_note = None
    except AccessDenied as _exc:
        denials, denials_note = (
            None,
            f"The audit log is not readable by **{lakehouse.user}**: {_exc}",
        )
    _parts = [mo.md("## Access denials")]
    if _counts is not None and _counts.height:
        _parts.append(
            alt.Chart(_counts)
            .mark_bar()
            .encode(
                x=alt.X("sum(value):Q", title="denied attempts (access monitor)"),
                y=alt.Y("subject:N", title=None, sort="-x"),
                tooltip=["subject", "sum(value):Q"],
            )
            .properties(title="Denied attempts per object", width=420)
        )
    if denials is not None:
        _parts.append(
            show_table(denials.select("ts", "user", "action", "object", "detail"))
            if denials.height
            else note("No denied attempts in the date range.", "success")
        )
    else:
        _parts.append(note(denials_note, "warn"))
    mo.vstack(_parts)
    return


if __name__ == "__main__":
    app.run()
