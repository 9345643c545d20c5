import marimo

__generated_with = "0.25.2"
app = marimo.App(
    width="medium",
    app_title="Hortus: explore the lakehouse",
)

with app.setup:
    from datetime import UTC, datetime, timedelta

    import altair as alt
    import marimo as mo
    import polars as pl

    from hortus.publishing import explore, monitor_views
    from hortus.lakehouse import catalog_search
    from hortus.config import LAYERS
    from hortus.publishing.nbui import note, show_table
    from hortus.project.definition import Project
    from hortus.lakehouse.tables import Lakehouse


@app.cell
def _():
    # parameters
    # table: the table preselected for contract, lineage and column profile ("" = the
    # default model's table, hortus.yaml); layer: the layer filter of the table list
    # ("ALL" = every layer); segment: the value of the KPI table's segment column
    # ("ALL" = every row); days: width of the default KPI date range; search: text
    # filtering the table list by name, tag (pii, kpi, feature, ...), owner or
    # description words, best matches first ("" = every table).
    table = ""
    layer = "ALL"
    segment = "ALL"
    days = 30
    search = ""
    return days, layer, search, segment, table


@app.cell
def _():
    mo.md("""
    # Explore the lakehouse

    Every catalogued table with its data contract, lineage and versions, a column
    profile of the table you pick, and the daily business KPIs.  Everything is read
    through the lakehouse **as you** (`HORTUS_USER`): row filters and column masking
    apply, a table you may not read is named with the grant you lack instead of
    shown, and every read (and every refused read) is audited.
    """)
    return


@app.cell
def _():
    project = Project.load()
    lakehouse = Lakehouse.open(stage="explore")
    overview = explore.table_overview(lakehouse)
    return lakehouse, overview, project


@app.cell
def _(layer, overview, search):
    _layers = ["ALL", *[name for name in LAYERS if name in set(overview["layer"])]]
    layer_choice = mo.ui.dropdown(
        options=_layers, value=layer if layer in _layers else "ALL", label="Layer"
    )
    search_box = mo.ui.text(
        value=search,
        label="Search",
        placeholder="name, tag (pii, kpi, feature), owner or words",
    )
    return layer_choice, search_box


@app.cell
def _(lakehouse, layer_choice, overview, search_box):
    _by_layer = (
        overview
        if layer_choice.value == "ALL"
        else overview.filter(pl.col("layer") == layer_choice.value)
    )
    _tags = {
        c.full_name: ", ".join(catalog_search.table_tags(c)) for c in lakehouse.catalog
    }
    _by_layer = _by_layer.with_columns(
        pl.col("table").replace_strict(_tags, default="").alias("tags")
    )
    _query = search_box.value.strip()
    search_note = None
    if _query:
        # the same ranked search as `hortus catalog search` (tables and their columns)
        _hits = catalog_search.search(lakehouse.catalog, _query)
        _rank = {t: i for i, t in enumerate(dict.fromkeys(h.table for h in _hits))}
        shown_tables = (
            _by_layer.filter(pl.col("table").is_in(list(_rank)))
            .with_columns(pl.col("table").replace_strict(_rank, default=0).alias("_rank"))
            .sort("_rank")
            .drop("_rank")
        )
        if not shown_tables.height:  # no hit: say so, and keep the layer's tables
            _close = catalog_search.suggest(lakehouse.catalog, _query)
            search_note = f"No table or column matches `{_query}`" + (
                f"; did you mean: {', '.join(_close)}?" if _close else ""
            ) + "  Showing every table of the layer."
            shown_tables = _by_layer
    else:
        shown_tables = _by_layer
    return search_note, shown_tables


@app.cell
def _(layer_choice, pl, project, shown_tables, table):
    _options = shown_tables["table"].to_list()
    _readable = (
        shown_tables.filter(pl.col("readable"))["table"].to_list()
        if "readable" in shown_tables.columns
        else _options
    )
    _wanted = table or project.model().table
    if not table and _wanted not in _readable and _readable:
        _wanted = _readable[0]  # open on a table this user may read, not on a denial
    _first = _wanted if _wanted in _options else (_options[0] if _options else None)
    table_choice = mo.ui.dropdown(
        options=_options, value=_first, label="Table", searchable=True
    )
    table_note = (
        None
        if _wanted in _options
        else f"Table `{_wanted}` is not a catalogued table of layer {layer_choice.value}; "
        f"showing `{_first}`."
    )
    return table_choice, table_note


@app.cell
def _(lakehouse, layer_choice, search_box, search_note, shown_tables):
    _readable = shown_tables.filter(pl.col("readable"))
    _chart = (
        alt.Chart(_readable.filter(pl.col("rows").is_not_null()))
        .mark_bar()
        .encode(
            x=alt.X("rows:Q", title=f"rows visible to {lakehouse.user}"),
            y=alt.Y("table:N", title=None, sort="-x"),
            color=alt.Color("layer:N"),
            tooltip=["table", "layer", "rows", "version", "owner"],
        )
        .properties(title=f"Rows per readable table ({layer_choice.value})", width=480)
    )
    mo.vstack(
        [
            mo.md("## Tables and contracts"),
            mo.hstack([layer_choice, search_box], justify="start"),
            note(search_note) if search_note else mo.md(""),
            mo.md(
                f"Viewing as **{lakehouse.user}**: {_readable.height} of {shown_tables.height} "
                f"table(s) of layer **{layer_choice.value}** readable; "
                f"{shown_tables.filter(pl.col('written')).height} written so far.  "
                "`access` names the grant that lets you read a table, or what you lack."
            ),
            show_table(
                shown_tables.select(
                    "table", "owner", "tags", "freshness_sla_hours", "written", "version",
                    "rows", "pii_columns", "sensitive_columns", "access",
                )  # fmt: skip
            ),
            _chart if _readable.height else note("No readable table in this layer."),
        ]
    )
    return


@app.cell
def _(lakehouse, table_choice):
    selected = table_choice.value
    frame, frame_note = (
        explore.read_or_note(lakehouse, selected) if selected else (None, "No table to show.")
    )
    history = (
        explore.version_history(lakehouse, selected)
        if frame is not None and lakehouse.exists(selected)
        else None
    )
    return frame, frame_note, history, selected


@app.cell
def _(history, lakehouse, selected, table_choice, table_note):
    _contract = lakehouse.catalog.get(selected)
    _columns = explore.contract_frame(lakehouse, selected)
    _sla = f"{_contract.freshness_sla_hours} h" if _contract.freshness_sla_hours else "none"
    _parts = [
        mo.md(f"## Contract and lineage of `{selected}`"),
        table_choice,
        mo.md(
            f"{_contract.description}\n\n"
            f"- **Owner:** {_contract.owner}\n"
            f"- **Freshness SLA:** {_sla}\n"
            f"- **Primary key:** {', '.join(_contract.primary_key) or '-'}\n"
            f"- **PII columns:** {', '.join(_contract.pii_columns('direct', 'quasi', 'free_text')) or 'none'}"
        ),
        show_table(_columns),
    ]
    if table_note:
        _parts.insert(1, note(table_note, "warn"))
    if history is not None:
        _last = history.row(-1, named=True)
        _parts += [
            mo.md(
                f"### Versions over time\n\n{history.height} Delta version(s); the latest "
                f"(v{_last['version']}) was written by stage `{_last['stage']}` as "
                f"**{_last['user']}** from `{_last['inputs']}`.  Rows are counted as "
                f"**{lakehouse.user}** sees them (latest {explore.MAX_VERSIONS} versions)."
            ),
            alt.Chart(history.filter(pl.col("rows").is_not_null()))
            .mark_line(point=True, interpolate="step-after")
            .encode(
                x=alt.X("timestamp:T", title="commit time"),
                y=alt.Y("rows:Q", title="rows"),
                tooltip=["version", "timestamp:T", "operation", "rows_added", "rows", "stage",
                         "user"],  # fmt: skip
            )
            .properties(title=f"Rows per version of {selected}", width=480, height=160),
            show_table(history.sort("version", descending=True)),
        ]
    mo.vstack(_parts)
    return


@app.cell
def _(frame, frame_note, lakehouse, selected):
    if frame is None:
        _out = mo.vstack([mo.md(f"## Column profile of `{selected}`"), note(frame_note, "warn")])
    else:
        column_profile = explore.profile(frame)
        _chart = (
            alt.Chart(column_profile)
            .mark_bar()
            .encode(
                x=alt.X("null_rate:Q", title="share of nulls", scale=alt.Scale(domain=[0, 1])),
                y=alt.Y("column:N", title=None, sort=None),
                tooltip=["column", "dtype", "nulls", "null_rate", "distinct"],
            )
            .properties(title=f"Null rate per column of {selected}", width=420)
        )
        _out = mo.vstack(
            [
                mo.md(
                    f"## Column profile of `{selected}`\n\n{frame.height:,} rows and "
                    f"{frame.width} columns as **{lakehouse.user}** sees them (masked "
                    "columns show tokens or nulls)."
                ),
                show_table(column_profile),
                _chart,
            ]
        )
    _out
    return


@app.cell
def _(lakehouse, project):
    # the project's daily KPI table (hortus.yaml `kpis`), its date and segment columns
    if project.kpis is None:
        kpi_table = None
        kpis, kpis_note = None, f"Project {project.name} declares no KPI table (`kpis`)."
    else:
        kpi_table = project.kpis.table
        kpis, kpis_note = explore.read_or_note(lakehouse, kpi_table)
    kpi_time, kpi_by = monitor_views.kpi_layout(kpis) if kpis is not None else (None, None)
    if kpis is not None and kpi_time is None:
        kpis, kpis_note = None, f"`{kpi_table}` has no date column to plot over."
    return kpi_by, kpi_table, kpi_time, kpis, kpis_note


@app.cell
def _(kpi_by, kpis, segment):
    _options = monitor_views.segment_values(kpis, kpi_by)
    segment_choice = mo.ui.dropdown(
        options=_options,
        value=segment if segment in _options else monitor_views.ALL,
        label=f"Segment ({kpi_by})" if kpi_by else "Segment",
    )
    return (segment_choice,)


@app.cell
def _(days, kpi_time, kpis):
    if kpis is not None and kpis.height:
        _first = kpis[kpi_time].cast(pl.Date).min()
        _last = kpis[kpi_time].cast(pl.Date).max()
    else:
        _first = _last = datetime.now(UTC).date()
    kpi_dates = mo.ui.date_range(
        start=_first,
        stop=_last,
        value=(max(_first, _last - timedelta(days=int(days) - 1)), _last),
        label="KPI dates",
    )
    return (kpi_dates,)


@app.cell
def _(
    kpi_by,
    kpi_dates,
    kpi_table,
    kpi_time,
    kpis,
    kpis_note,
    segment,
    segment_choice,
):
    _start, _stop = kpi_dates.value
    _header = [
        mo.md("## KPI trends"),
        mo.hstack([segment_choice, kpi_dates], justify="start"),
    ]
    if kpis is None:
        _out = mo.vstack([*_header, note(kpis_note or "", "warn")])
    else:
        _long = explore.metric_trends(
            kpis,
            segment=segment_choice.value,
            start=_start,
            stop=_stop,
            time=kpi_time,
            by=kpi_by,
        ).rename({kpi_time: "date"})
        _which = f"{kpi_by} {segment_choice.value}" if kpi_by else "all rows"
        _chart = (
            alt.Chart(_long)
            .mark_line(point=True)
            .encode(
                x=alt.X("date:T", title=None),
                y=alt.Y("value:Q", title=None),
                tooltip=["date:T", "metric", "value"],
            )
            .properties(height=110, width=220)
            .facet(facet=alt.Facet("metric:N", title=None), columns=3)
            .resolve_scale(y="independent")
            .properties(title=f"Daily KPIs, {_which}, {_start} to {_stop}")
        )
        _missing = (
            f"{kpi_by} `{segment}` has no KPI rows visible to you; showing ALL."
            if kpi_by and segment not in ("ALL", segment_choice.value)
            else None
        )
        _out = mo.vstack(
            [
                *_header,
                mo.md(
                    f"{_long['date'].n_unique()} day(s) of {kpi_table} for {_which} "
                    f"from {_start} to {_stop}."
                ),
                *([note(_missing, "warn")] if _missing else []),
                _chart if _long.height else note("No KPI rows in this date range."),
            ]
        )
    _out
    return


if __name__ == "__main__":
    app.run()
