import marimo

__generated_with = "0.25.2"
app = marimo.App(
    width="medium",
    app_title="Hortus: monitoring dashboard",
)

with app.setup:
    from datetime import timedelta

    import altair as alt
    import marimo as mo
    import polars as pl

    from hortus.publishing import monitor_views as mv
    from hortus.governance.access import AccessDenied
    from hortus.monitoring.alerts import ALERTS_TABLE, AlertState
    from hortus.governance.audit import AuditLog, default_path
    from hortus.errors import HortusError
    from hortus.monitoring.monitors import FLAG_METRICS, METRICS_TABLE
    from hortus.publishing.nbui import load_table, note, show_table
    from hortus.project.definition import Project
    from hortus.models.registry import VERSIONS
    from hortus.monitoring.runlog import RUNS_TABLE
    from hortus.lakehouse.tables import Lakehouse


@app.cell
def _():
    # parameters
    # days: width of the default date range (ops clock) and of the drift/KPI window
    # (data clock); model: the model shown ("" = the project's default model, hortus.yaml);
    # segment: the segment value preselected ("ALL" = every row) of the model's first
    # segment column, or of `segment_column` when set.
    days = 14
    model = ""
    segment = "ALL"
    segment_column = ""
    return days, model, segment, segment_column


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
    project = Project.load()
    lakehouse = Lakehouse.open(stage="monitor")
    metrics, metrics_note = load_table(lakehouse, METRICS_TABLE)
    runs, runs_note = load_table(lakehouse, RUNS_TABLE)
    alerts, alerts_note = load_table(lakehouse, ALERTS_TABLE)
    _versions, _ = load_table(lakehouse, VERSIONS)
    registered = mv.registered_models(_versions)
    return (
        alerts,
        alerts_note,
        lakehouse,
        metrics,
        metrics_note,
        project,
        registered,
        runs,
        runs_note,
    )


@app.cell
def _(alerts, days, metrics, runs):
    # the date range is on the operations clock: when monitors, stages and alerts ran
    first_day, last_day = mv.ops_clock(
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
def _(model, project, registered):
    _options, _value = mv.model_options(
        project.models, registered, model, project.default_model
    )
    model_choice = mo.ui.dropdown(options=_options, value=_value, label="Model")
    return (model_choice,)


@app.cell
def _(lakehouse, model_choice, project):
    # the chosen model's features and training share (the reference of the drift check)
    chosen_model = model_choice.value
    context = mv.model_context(lakehouse, chosen_model, project.models.get(chosen_model))
    return chosen_model, context


@app.cell
def _(context, lakehouse):
    if context.table is not None:
        training, training_note = load_table(lakehouse, context.table)
    else:
        training, training_note = (
            None,
            f"model `{context.name}` is registered but not defined in hortus.yaml: "
            "its table is unknown.",
        )
    return training, training_note


@app.cell
def _(context, segment_column, training):
    _columns = mv.segment_columns(training, context.segments)
    if segment_column and segment_column not in _columns and training is not None:
        _columns = mv.segment_columns(training, [segment_column, *_columns])
    segment_column_choice = mo.ui.dropdown(
        options=_columns or ["(none)"],
        value=segment_column if segment_column in _columns else (_columns or ["(none)"])[0],
        label="Segment column",
    )
    return (segment_column_choice,)


@app.cell
def _(kpis, segment, segment_column_choice, training):
    # the values of the model's segment column, and those of the KPI table's own segment
    # column (a value applies wherever it occurs; masked values do not show)
    _kpi_by = mv.kpi_layout(kpis)[1] if kpis is not None else None
    _options = sorted(
        set(mv.segment_values(training, segment_column_choice.value))
        | set(mv.segment_values(kpis, _kpi_by)),
        key=lambda v: (v != mv.ALL, v),
    )
    segment_choice = mo.ui.dropdown(
        options=_options, value=segment if segment in _options else mv.ALL, label="Segment"
    )
    return (segment_choice,)


@app.cell
def _(
    chosen_model,
    date_range,
    days,
    lakehouse,
    model_choice,
    segment_choice,
    segment_column_choice,
):
    start, stop = date_range.value
    chosen_segment = segment_choice.value
    chosen_column = (
        segment_column_choice.value if segment_column_choice.value != "(none)" else None
    )
    mo.vstack(
        [
            mo.hstack(
                [model_choice, date_range, segment_column_choice, segment_choice],
                justify="start",
            ),
            mo.md(
                f"Viewing **{chosen_model}** as **{lakehouse.user}**; operations from {start} "
                f"to {stop}; drift and KPIs over the last {days} days of data; "
                f"segment **{chosen_segment}**"
                + (f" of `{chosen_column}`." if chosen_column else ".")
            ),
        ]
    )
    return chosen_column, chosen_segment, start, stop


@app.cell
def _(metrics, metrics_note, start, stop):
    if metrics is None:
        _out = note(f"## Attention needed\n\n{metrics_note or ''}", "warn")
    else:
        _latest = metrics.filter(pl.col("at") == pl.col("at").max().over("monitor"))
        _flags = _latest.filter(pl.col("metric").is_in(FLAG_METRICS) & (pl.col("value") > 0))
        _window = mv.in_range(metrics, "at", start, stop)
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
def _(chosen_column, chosen_segment, training):
    # the segment filters the training rows when this user sees the column in the clear
    segment_rows, segment_note = mv.filter_segment(training, chosen_column, chosen_segment)
    return segment_note, segment_rows


@app.cell
def _(chosen_column, context, project, segment_rows):
    # one comparison per segment choice: the trailing week to each day against the reference
    from hortus.monitoring.drift import increments_for as _increments_for

    drift = None
    drift_error = None
    _time = context.time
    if segment_rows is not None and segment_rows.height and _time in segment_rows.columns:
        _features = mv.feature_columns(
            segment_rows,
            context.features,
            exclude=[*context.roles, *([chosen_column] if chosen_column else [])],
        )
        try:
            drift, _cutoff = mv.drift_by_window(
                segment_rows,
                _features,
                time=_time,
                reference_share=context.reference_share,
                window="1d",
                # window aggregates judged on per-entity increments too, as the monitor does
                increments=_increments_for(project, _features),
            )
        except HortusError as _exc:
            drift_error = str(_exc)
    elif segment_rows is not None and segment_rows.height:
        drift_error = f"model `{context.name}` has no time column: no drift over time."
    return drift, drift_error


@app.cell
def _(context, days, drift, drift_error, segment_note, training_note):
    _notes = [m for m in (context.note, segment_note) if m]
    if drift is None:
        _why = training_note or drift_error or f"{context.table} has no rows yet."
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
            .properties(
                title="Drift per feature, trailing week to each day (>= 1 means drifted)",
                width=520,
            )
        )
        _line = (
            alt.Chart(_share)
            .mark_line(point=True)
            .encode(
                x=alt.X("window_start:T", title="day", axis=alt.Axis(format="%d %b")),
                y=alt.Y(
                    "share_drifted:Q",
                    title="share of features drifted",
                    scale=alt.Scale(domain=[0, 1]),
                ),
                tooltip=["window_start:T", "share_drifted", "features"],
            )
            .properties(
                height=140, width=520, title="Share of features drifted, trailing week to each day"
            )
        )
        _out = [
            mo.md(
                f"## Feature drift over time\n\nThe newest rows of {context.table} up to each "
                f"day (its trailing week, from the training cut-off at the earliest) against "
                f"the oldest {context.reference_share:.0%} (the model's training part), as the "
                f"staleness monitor judges them; {_recent['column'].n_unique()} features over "
                f"{_share.height} day(s)."
            ),
            _line,
            _heat,
        ]
    mo.vstack([*_out, *[note(m) for m in _notes]])
    return


@app.cell
def _(lakehouse, project):
    if project.kpis is None:
        kpis, kpis_note = None, f"Project {project.name} declares no KPI table (`kpis`)."
    else:
        kpis, kpis_note = load_table(lakehouse, project.kpis.table)
    return kpis, kpis_note


@app.cell
def _(chosen_segment, days, kpis, kpis_note, project):
    if kpis is None or mv.kpi_layout(kpis)[0] is None:
        _why = kpis_note or f"`{project.kpis.table}` has no date column."
        _out = mo.vstack([mo.md("## Business KPIs"), note(_why, "warn")])
    else:
        # the KPI table's own time and segment columns; the segment value chosen above
        # when the KPI table has it, else every row of ALL
        _time, _by = mv.kpi_layout(kpis)
        _values = mv.segment_values(kpis, _by)
        _value = chosen_segment if chosen_segment in _values else mv.ALL
        _rows = kpis if _by is None else kpis.filter(pl.col(_by).cast(pl.String) == _value)
        _rows = _rows.filter(pl.col(_time) > pl.col(_time).max() - timedelta(days=int(days)))
        _ratios = [c for c, t in _rows.schema.items() if t == pl.Float64]
        _long = _rows.unpivot(index=[_time], on=_ratios, variable_name="kpi")
        _title = f"Daily KPIs, {_by} {_value}" if _by else "Daily KPIs"
        _chart = (
            alt.Chart(_long)
            .mark_line(point=True)
            .encode(
                x=alt.X(f"{_time}:T", title=None, axis=alt.Axis(format="%d %b")),
                y=alt.Y("value:Q", title=None),
                tooltip=[f"{_time}:T", "kpi", "value"],
            )
            .properties(height=110, width=240)
            .facet(facet=alt.Facet("kpi:N", title=None), columns=3)
            .resolve_scale(y="independent")
            .properties(title=_title)
        )  # fmt: skip
        _out = mo.vstack(
            [
                mo.md(f"## Business KPIs\n\n`{project.kpis.table}`"),
                _chart if _long.height else note(f"No KPI rows for {_title[11:]}."),
            ]
        )
    _out
    return


@app.cell
def _(metrics, metrics_note):
    if metrics is None:
        _out = mo.vstack([mo.md("## Table freshness"), note(metrics_note or "", "warn")])
    else:
        _fresh = mv.freshness_table(metrics)
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
def _(metrics, metrics_note):
    if metrics is None:
        _out = mo.vstack([mo.md("## Retention"), note(metrics_note or "", "warn")])
    else:
        _ret = mv.retention_table(metrics)
        _out = mo.vstack(
            [
                mo.md(
                    "## Retention\n\nPer table whose contract declares a retention: the period "
                    "(days), the age of its oldest row (days) and the rows past it that "
                    "`hortus maintain` has not removed (a refused retention, or between runs)."
                ),
                show_table(_ret)
                if _ret.height
                else note("No retention metrics yet: run `hortus monitor run`."),
            ]
        )
    _out
    return


@app.cell
def _(runs, runs_note, start, stop):
    if runs is None:
        _out = mo.vstack([mo.md("## Pipeline runs"), note(runs_note or "", "warn")])
    else:
        _runs = mv.in_range(runs, "started_at", start, stop)
        _failed = _runs.filter(pl.col("status") == "failed")
        _chart = (
            alt.Chart(_runs)
            .mark_point(filled=True, size=70)
            .encode(
                x=alt.X("started_at:T", title="started (UTC)", axis=alt.Axis(format="%d %b %H:%M")),
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
        _events = mv.in_range(alerts, "updated_at", start, stop)
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
def _(chosen_model, metrics, metrics_note, start, stop):
    if metrics is None:
        _out = mo.vstack([mo.md("## Model staleness"), note(metrics_note or "", "warn")])
    else:
        _rows = metrics.filter(
            (pl.col("monitor") == "model_staleness") & (pl.col("subject") == chosen_model)
        )
        _latest = mv.latest_run(_rows, "model_staleness")
        _series = mv.in_range(_rows, "at", start, stop).filter(pl.col("metric") == "staleness_score")
        _chart = (
            alt.Chart(_series)
            .mark_line(point=True)
            .encode(
                x=alt.X("at:T", title="monitor run (UTC)", axis=alt.Axis(format="%d %b %H:%M")),
                y=alt.Y("value:Q", title="staleness score", scale=alt.Scale(domain=[0, 1])),
                tooltip=["at:T", "value", "labels"],
            )
            .properties(
                height=140, width=520, title=f"Staleness of {chosen_model}'s champion (0 fresh, 1 stale)"
            )
        )
        _out = mo.vstack(
            [
                mo.md("## Model staleness"),
                show_table(_latest.select("metric", "value", "labels", "at"))
                if _latest.height
                else note(
                    f"No staleness metrics for `{chosen_model}` yet (no champion, or no monitor run)."
                ),
                _chart if _series.height else mo.md(""),
            ]
        )
    _out
    return


@app.cell
def _(chosen_model, metrics, metrics_note):
    # the `realized` monitor: logged predictions joined with what happened afterwards
    # (the model's `outcomes` in hortus.yaml); days are data days, not monitor runs
    _head = mo.md(
        "## Realized outcomes\n\nWhat buyers did with what was served: realized precision "
        "per day and model version (`hortus monitor run`; days whose outcome window is still "
        "open are *pending*, not zero)."
    )
    if metrics is None:
        _out = mo.vstack([_head, note(metrics_note or "", "warn")])
    else:
        _prec = mv.realized_series(metrics, chosen_model)
        _done = _prec.filter(pl.col("status") == "complete")
        _pending = _prec.filter(pl.col("status") == "pending")
        _drift = (
            metrics.filter((pl.col("monitor") == "realized") & (pl.col("metric") == "score_drift"))
            .with_columns(
                pl.col("labels").str.json_path_match("$.model_name").alias("model"),
                pl.col("labels").str.json_path_match("$.day").alias("day"),
                pl.col("labels").str.json_path_match("$.model_version").alias("version"),
            )
            .filter(pl.col("model") == chosen_model)
            .sort("at")
            .group_by("subject")
            .agg(pl.all().last())
        )
        _parts = [_head]
        if _done.height:
            _parts.append(
                alt.Chart(_done.with_columns(pl.col("version").cast(pl.String)))
                .mark_line(point=True)
                .encode(
                    x=alt.X("day:T", title="day of the prediction", axis=alt.Axis(format="%d %b")),
                    y=alt.Y("value:Q", title="realized precision"),
                    color=alt.Color("version:N", title="version"),
                    tooltip=["day", "version", "value", "lists"],
                )
                .properties(height=160, width=520, title=f"Realized precision of {chosen_model}")
            )
        else:
            _parts.append(
                note(
                    f"No realized outcomes for `{chosen_model}` yet: no logged predictions, no "
                    "`outcomes` in hortus.yaml, or no complete outcome window."
                )
            )
        if _pending.height:
            _parts.append(
                note(
                    f"{_pending.height} day(s) pending (outcome window still open): "
                    + ", ".join(f"{d} v{v}" for d, v in _pending.select("day", "version").rows()),
                    "info",
                )
            )
        if _drift.height:
            _parts.append(
                alt.Chart(_drift.select("day", "version", "value"))
                .mark_line(point=True)
                .encode(
                    x=alt.X("day:T", title="day of the prediction", axis=alt.Axis(format="%d %b")),
                    y=alt.Y("value:Q", title="served vs hold-out scores (drift statistic)"),
                    color=alt.Color("version:N", title="version"),
                    tooltip=["day", "version", "value"],
                )
                .properties(height=140, width=520, title="Score drift against training")
            )
        _out = mo.vstack(_parts)
    _out
    return


@app.cell
def _(lakehouse, metrics, start, stop):
    # the access monitor's counts (ops.monitor_metrics) and, for users who may read the
    # audit log, the denied attempts themselves
    _counts = (
        mv.in_range(metrics, "at", start, stop).filter(pl.col("metric") == "denied_attempts")
        if metrics is not None
        else None
    )
    try:
        lakehouse.authorize("read", "ops.audit_log", detail="monitor dashboard: denied attempts")
        _log = AuditLog.open(default_path(lakehouse.paths), secrets_dir=lakehouse.paths.secrets)
        denials = mv.in_range(_log.show(denied_only=True), "ts", start, stop)
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
