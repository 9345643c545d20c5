import marimo

__generated_with = "0.25.2"
app = marimo.App(
    width="medium",
    app_title="Hortus: train a model",
)


@app.cell
def _():
    import marimo as mo

    return (mo,)


@app.cell
def _():
    # parameters
    # model: the project's model to train ("" = its default model, hortus.yaml).
    # Defaults come from params.yaml's `train` section (None = not set there); the DVC
    # `train` stage runs this notebook with papermill, which injects the run's values
    # right after this cell.  Per-model values (`train.models.<model>`) apply unless a
    # value given here differs from the section's.  output_dir "" writes nothing:
    # interactive sessions and tests never touch DVC outputs.
    from hortus.config import find_root
    from hortus.params import load_section

    _train = load_section(find_root() / "params.yaml", "train")
    model = ""
    estimator = _train.get("estimator")
    max_iter = _train.get("max_iter")
    learning_rate = _train.get("learning_rate")
    max_leaf_nodes = _train.get("max_leaf_nodes")
    l2_regularization = _train.get("l2_regularization")
    min_samples_leaf = _train.get("min_samples_leaf")
    holdout_fraction = _train.get("holdout_fraction")
    k = _train.get("k")
    seed = _train.get("seed")
    threads = _train.get("threads")
    output_dir = ""
    return (
        estimator,
        find_root,
        holdout_fraction,
        k,
        l2_regularization,
        learning_rate,
        load_section,
        max_iter,
        max_leaf_nodes,
        min_samples_leaf,
        model,
        output_dir,
        seed,
        threads,
    )


@app.cell
def _():
    from pathlib import Path

    import altair as alt
    import polars as pl

    from hortus.models import modeling
    from hortus.publishing import train_views
    from hortus.project.definition import Project, resolve_features, spec_for
    from hortus.lakehouse.tables import Lakehouse, frame_hash

    return (
        Lakehouse,
        Path,
        Project,
        alt,
        frame_hash,
        modeling,
        pl,
        resolve_features,
        spec_for,
        train_views,
    )


@app.cell
def _(
    Project,
    estimator,
    find_root,
    holdout_fraction,
    k,
    l2_regularization,
    learning_rate,
    load_section,
    max_iter,
    max_leaf_nodes,
    min_samples_leaf,
    model,
    seed,
    threads,
    train_views,
):
    # the project (hortus.yaml), the model to train and its train params (params.yaml)
    project = Project.load()
    model_def = project.model(model or None)
    train_params = train_views.effective_train_params(
        load_section(find_root() / "params.yaml", "train"),
        model_def.name,
        {
            "estimator": estimator,
            "max_iter": max_iter,
            "learning_rate": learning_rate,
            "max_leaf_nodes": max_leaf_nodes,
            "l2_regularization": l2_regularization,
            "min_samples_leaf": min_samples_leaf,
            "holdout_fraction": holdout_fraction,
            "k": k,
            "seed": seed,
            "threads": threads,
        },
    )
    return model_def, project, train_params


@app.cell
def _(mo, model_def, project):
    _desc = f"{model_def.description}\n\n" if model_def.description else ""
    _time = (
        f"The hold-out is the latest part of the time range (`{model_def.time}`), so "
        "nothing from the future leaks into training."
        if model_def.time
        else "Without a time column the hold-out is a seeded random share of the rows."
    )
    mo.md(f"""
    # Train `{model_def.name}` ({model_def.task}) of project {project.name}

    {_desc}The model learns `{model_def.target}` from the rows of `{model_def.table}`.
    {_time}  This notebook only orchestrates and shows; the work is done by
    `hortus.models.modeling` and `hortus.publishing.train_views`.
    """)
    return


@app.cell
def _(mo, train_params):
    # one control per tunable number the train params set (hgb: iterations, learning
    # rate, leaves); the hold-out share and k always
    _sliders = {
        "max_iter": lambda v: mo.ui.slider(
            10, max(600, int(v)), step=10, value=int(v), label="iterations"
        ),
        "learning_rate": lambda v: mo.ui.number(
            0.005, 1.0, step=0.005, value=float(v), label="learning rate"
        ),
        "max_leaf_nodes": lambda v: mo.ui.slider(
            4, max(128, int(v)), value=int(v), label="leaves per tree"
        ),
        "holdout_fraction": lambda v: mo.ui.slider(
            0.05, 0.5, step=0.05, value=float(v), label="hold-out share (latest)"
        ),
        "k": lambda v: mo.ui.slider(1, max(20, int(v)), value=int(v), label="k for the @k metrics"),
    }
    _shown = {"holdout_fraction": 0.2, "k": 5} | {
        n: train_params[n] for n in _sliders if train_params.get(n) is not None
    }
    controls = mo.ui.dictionary({n: _sliders[n](v) for n, v in _shown.items()})
    mo.vstack([mo.md("## Settings"), controls])
    return (controls,)


@app.cell
def _(Lakehouse, frame_hash, model_def):
    lakehouse = Lakehouse.open(stage="train")
    examples = lakehouse.read(model_def.table)
    # Delta versions of what was read, and an order-independent content hash of it:
    # `hortus reproduce` compares the rebuilt table by content, not by file names
    tables_read = dict(lakehouse.reads)
    content_hashes = {model_def.table: frame_hash(examples)}
    return content_hashes, examples, lakehouse, tables_read


@app.cell
def _(controls, lakehouse, model_def, project, spec_for, train_params):
    # the UI's values replace the train params' (same keys, same order, same types)
    _casts = {"max_iter": int, "max_leaf_nodes": int, "k": int,
              "learning_rate": float, "holdout_fraction": float}  # fmt: skip
    settings = {n: _casts[n](v) for n, v in controls.value.items()}
    spec = spec_for(project, model_def, lakehouse.catalog, train_params | settings)
    return settings, spec


@app.cell
def _(alt, examples, mo, model_def, spec, train_views):
    _daily = train_views.daily_rows(examples, spec)
    _parts = [mo.md(f"## Data\n\n{train_views.data_summary(examples, spec, table=model_def.table)}")]
    if _daily is not None and _daily.height:
        _parts.append(
            alt.Chart(_daily)
            .mark_bar()
            .encode(x="day:T", y="rows:Q", tooltip=list(_daily.columns))
            .properties(height=160, width=600, title="Labelled rows per day")
        )
    mo.vstack(_parts)
    return


@app.cell
def _(examples, lakehouse, model_def, modeling, spec):
    # the signature's types, categories and ranges come from the table's contract
    result = modeling.train(examples, spec, contracts=[lakehouse.catalog.get(model_def.table)])
    return (result,)


@app.cell
def _(mo, modeling, result, train_views):
    _primary, _higher = modeling.primary_metric(result.spec)
    _value = result.metrics.get(_primary)
    _shown = f"{_value:.4f}" if isinstance(_value, float) else str(_value)
    mo.vstack(
        [
            mo.md(
                f"## Metrics\n\nTrained on {result.n_train:,} rows before "
                f"{result.cutoff}, evaluated on {result.n_test:,} later rows.  Primary "
                f"metric ({result.spec.task}): **{train_views.metric_label(_primary)} "
                f"{_shown}** ({'higher' if _higher else 'lower'} is better)."
            ),
            mo.ui.table(train_views.metrics_table(result), selection=None),
        ]
    )
    return


@app.cell
def _(alt, mo, result, train_views):
    _metric = train_views.curve_metric(result.spec)
    _label = train_views.metric_label(_metric)
    _curve = (
        alt.Chart(result.learning_curve)
        .mark_line(point=True)
        .encode(
            x="train_rows:Q", y=alt.Y(f"{_metric}:Q", scale=alt.Scale(zero=False)), color="split:N"
        )
        .properties(height=220, width=420, title=f"Learning curve ({_label})")
    )
    _top = result.importance.sort("importance_mean", descending=True).head(20)
    _imp = (
        alt.Chart(_top)
        .mark_bar()
        .encode(
            x=alt.X("importance_mean:Q", title=train_views.importance_title(result.spec)),
            y=alt.Y("feature:N", sort="-x"),
            tooltip=["feature", "importance_mean", "importance_std"],
        )
        .properties(height=360, width=420, title="Permutation importance (top 20)")
    )
    mo.vstack([mo.md("## Learning curve and feature importance"), _curve, _imp])
    return


@app.cell
def _(
    alt,
    lakehouse,
    mo,
    model_def,
    modeling,
    project,
    resolve_features,
    result,
    train_views,
):
    # Evaluation: the task's metric per segment with 95% bootstrap intervals, and the
    # selection rate per group of each sensitive attribute (hortus.checks.model_checks, as the
    # gate): the top k of each list for ranking, score >= threshold for binary
    _check, _check_note = train_views.segment_check(result, n_boot=200, min_segment_size=100)
    _parts = [mo.md("## Evaluation by segment and fairness (hold-out)"), mo.md(f"Segments: {_check_note}")]
    if _check is not None:
        _metric = train_views.metric_label(modeling.TASKS[result.spec.task].segment_metric)
        _seg = _check.table.filter(_check.table["status"] != "insufficient")
        _base = alt.Chart().encode(y=alt.Y("value:N", title=None))
        _points = _base.mark_point(filled=True).encode(
            x=alt.X("estimate:Q", title=f"{_metric} (hold-out)",
                    scale=alt.Scale(zero=False)),
            tooltip=["segment", "value", "n", "estimate", "ci_low", "ci_high"],
        )  # fmt: skip
        _parts.append(
            alt.layer(_base.mark_rule().encode(x="ci_low:Q", x2="ci_high:Q"), _points, data=_seg)
            .facet(row=alt.Row("segment:N", title=None))
            .resolve_scale(y="independent")
            .properties(title=f"{_metric} per segment, 95% bootstrap interval")
        )
    _, _, _sensitive = resolve_features(model_def, lakehouse.catalog, project.feature_set())
    fairness_table, _measure, _rule = train_views.fairness_table(
        result, list(dict.fromkeys([*_sensitive, *result.spec.segments])), min_group_size=100
    )
    if fairness_table is not None and fairness_table.height:
        _color = {"color": alt.Color("class:N")} if "class" in fairness_table.columns else {}
        _parts.append(
            alt.Chart(fairness_table)
            .mark_bar()
            .encode(
                x=alt.X(f"{_measure}:Q", title=_rule),
                y=alt.Y("group:N", title=None),
                row=alt.Row("attribute:N", title=None),
                tooltip=list(fairness_table.columns),
                **_color,
            )
            .resolve_scale(y="independent")
            .properties(width=360, title=f"Fairness by group: {_rule} (judged in the gate)")
        )
    else:
        _parts.append(mo.md(f"Fairness: {_rule}."))
    _parts.append(mo.ui.table(result.segment_metrics, selection=None))
    mo.vstack(_parts)
    return


@app.cell
def _(
    Path,
    content_hashes,
    mo,
    model_def,
    output_dir,
    result,
    settings,
    tables_read,
    train_views,
):
    # Write the run's outputs only when asked (the DVC stage passes output_dir).
    if output_dir:
        _out = Path(output_dir)
        sha256 = train_views.write_run(
            _out,
            result,
            model_name=model_def.name,
            table=model_def.table,
            settings=settings,
            tables_read=tables_read,
            content_hashes=content_hashes,
        )
        _msg = mo.md(f"Saved the model to `{_out / 'model.skops'}` (sha256 `{sha256[:16]}`...).")
    else:
        _msg = mo.md("Interactive run: nothing written (set `output_dir` to save).")
    _msg
    return


if __name__ == "__main__":
    app.run()
