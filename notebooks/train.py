import marimo

__generated_with = "0.25.2"
app = marimo.App(
    width="medium",
    app_title="Hortus: train the plant recommender",
)


@app.cell
def _():
    import marimo as mo

    return (mo,)


@app.cell
def _():
    # parameters
    # Defaults come from params.yaml's `train` section.  The DVC `train` stage runs this
    # notebook with papermill, which injects the run's values right after this cell.
    # output_dir "" writes nothing: interactive sessions and tests never touch DVC outputs.
    from hortus.config import find_root
    from hortus.params import load_section

    _train = load_section(find_root() / "params.yaml", "train")
    estimator = _train["estimator"]
    max_iter = _train["max_iter"]
    learning_rate = _train["learning_rate"]
    max_leaf_nodes = _train["max_leaf_nodes"]
    l2_regularization = _train["l2_regularization"]
    min_samples_leaf = _train["min_samples_leaf"]
    holdout_fraction = _train["holdout_fraction"]
    k = _train["k"]
    seed = _train["seed"]
    output_dir = ""
    return (
        estimator,
        holdout_fraction,
        k,
        l2_regularization,
        learning_rate,
        max_iter,
        max_leaf_nodes,
        min_samples_leaf,
        output_dir,
        seed,
    )


@app.cell
def _(mo):
    mo.md("""
    # Train the plant recommender

    Each example is a recommendation impression (a plant shown to a user), labelled 1
    when the user ordered that plant within the label horizon.  Every feature is
    taken as of the impression time from the feature store (`gold.training_set`), so
    nothing from the future leaks in.  The hold-out is the last part of the time range.
    This notebook only orchestrates and shows; the work is done by `hortus.modeling`.
    """)
    return


@app.cell
def _(holdout_fraction, k, learning_rate, max_iter, max_leaf_nodes, mo):
    controls = mo.ui.dictionary(
        {
            "max_iter": mo.ui.slider(20, 600, step=10, value=max_iter, label="boosting iterations"),
            "learning_rate": mo.ui.number(
                0.005, 1.0, step=0.005, value=learning_rate, label="learning rate"
            ),
            "max_leaf_nodes": mo.ui.slider(4, 128, value=max_leaf_nodes, label="leaves per tree"),
            "holdout_fraction": mo.ui.slider(
                0.1, 0.5, step=0.05, value=holdout_fraction, label="hold-out share (latest)"
            ),
            "k": mo.ui.slider(1, 20, value=k, label="k for precision/recall/NDCG@k"),
        }
    )
    mo.vstack([mo.md("## Settings"), controls])
    return (controls,)


@app.cell
def _():
    import json
    from pathlib import Path

    import altair as alt
    import polars as pl

    from hortus import modeling
    from hortus.plantshop.features import CATEGORICAL, FEATURES
    from hortus.plantshop.training import LABEL, TRAINING_SET
    from hortus.tables import Lakehouse, frame_hash

    return (
        CATEGORICAL,
        FEATURES,
        LABEL,
        Lakehouse,
        Path,
        TRAINING_SET,
        alt,
        frame_hash,
        json,
        modeling,
        pl,
    )


@app.cell
def _(Lakehouse, TRAINING_SET, frame_hash):
    lakehouse = Lakehouse.open(stage="train")
    examples = lakehouse.read(TRAINING_SET)
    # Delta versions of what was read, and an order-independent content hash of it:
    # `hortus reproduce` compares the rebuilt table by content, not by file names
    tables_read = dict(lakehouse.reads)
    content_hashes = {TRAINING_SET: frame_hash(examples)}
    return content_hashes, examples, lakehouse, tables_read


@app.cell
def _(LABEL, alt, examples, mo, pl):
    _daily = (
        examples.group_by(pl.col("ts").dt.date().alias("day"))
        .agg(pl.len().alias("impressions"), pl.col(LABEL).mean().alias("positive_rate"))
        .sort("day")
    )
    _chart = (
        alt.Chart(_daily)
        .mark_bar()
        .encode(x="day:T", y="impressions:Q", tooltip=["day:T", "impressions", "positive_rate"])
        .properties(height=160, width=600, title="Labelled impressions per day")
    )
    mo.vstack(
        [
            mo.md(
                f"## Data\n\n{examples.height:,} labelled impressions, "
                f"{int(examples[LABEL].sum()):,} positive "
                f"({examples[LABEL].mean():.2%}), from {examples['ts'].min():%Y-%m-%d} "
                f"to {examples['ts'].max():%Y-%m-%d}; {examples['user_id'].n_unique():,} users, "
                f"{examples['plant_id'].n_unique():,} plants."
            ),
            _chart,
        ]
    )
    return


@app.cell
def _(
    CATEGORICAL,
    FEATURES,
    LABEL,
    controls,
    estimator,
    l2_regularization,
    min_samples_leaf,
    modeling,
    seed,
):
    settings = dict(controls.value)
    spec = modeling.ModelSpec(
        target=LABEL,
        features=tuple(FEATURES.feature_names),
        categorical=tuple(CATEGORICAL),
        time="ts",
        group="rec_id",
        segments=("user_profile__region", "user_profile__age_band", "user_profile__device"),
        k=int(settings["k"]),
        holdout_fraction=float(settings["holdout_fraction"]),
        seed=int(seed),
        estimator=estimator,
        params={
            "max_iter": int(settings["max_iter"]),
            "learning_rate": float(settings["learning_rate"]),
            "max_leaf_nodes": int(settings["max_leaf_nodes"]),
            "l2_regularization": float(l2_regularization),
            "min_samples_leaf": int(min_samples_leaf),
        },
    )
    return settings, spec


@app.cell
def _(TRAINING_SET, examples, lakehouse, modeling, spec):
    # the signature's types, categories and ranges come from the training-set contract
    result = modeling.train(examples, spec, contracts=[lakehouse.catalog.get(TRAINING_SET)])
    return (result,)


@app.cell
def _(mo, pl, result):
    _rows = [
        {"metric": m, "hold-out": result.metrics.get(m), "train": result.train_metrics.get(m)}
        for m in result.metrics
    ]
    mo.vstack(
        [
            mo.md(
                f"## Metrics\n\nTrained on {result.n_train:,} rows before "
                f"{result.cutoff}, evaluated on {result.n_test:,} later rows."
            ),
            mo.ui.table(pl.DataFrame(_rows, strict=False), selection=None),
        ]
    )
    return


@app.cell
def _(alt, mo, result):
    _curve = (
        alt.Chart(result.learning_curve)
        .mark_line(point=True)
        .encode(
            x="train_rows:Q", y=alt.Y("roc_auc:Q", scale=alt.Scale(zero=False)), color="split:N"
        )
        .properties(height=220, width=420, title="Learning curve (ROC AUC)")
    )
    _top = result.importance.sort("importance_mean", descending=True).head(20)
    _imp = (
        alt.Chart(_top)
        .mark_bar()
        .encode(
            x=alt.X("importance_mean:Q", title="drop in ROC AUC when permuted"),
            y=alt.Y("feature:N", sort="-x"),
            tooltip=["feature", "importance_mean", "importance_std"],
        )
        .properties(height=360, width=420, title="Permutation importance (top 20)")
    )
    mo.vstack([mo.md("## Learning curve and feature importance"), _curve, _imp])
    return


@app.cell
def _(alt, mo, pl, result):
    # Evaluation: ROC AUC per segment with 95% bootstrap intervals, and fairness of the
    # top-k selection across each sensitive attribute (hortus.model_checks, as the gate)
    from hortus.model_checks import fairness, segment_metrics_ci

    _scores = result.predictions["score"].to_numpy()
    segment_check = segment_metrics_ci(
        None, result.predictions, result.spec, scores=_scores, n_boot=200, min_segment_size=100
    )
    _seg = segment_check.table.filter(segment_check.table["status"] != "insufficient")
    _base = alt.Chart().encode(y=alt.Y("value:N", title=None))
    _points = _base.mark_point(filled=True).encode(
        x=alt.X("estimate:Q", title="ROC AUC (hold-out)", scale=alt.Scale(zero=False)),
        tooltip=["segment", "value", "n", "positives", "estimate", "ci_low", "ci_high"],
    )
    _bars = _base.mark_rule().encode(x="ci_low:Q", x2="ci_high:Q")
    _segment_chart = (
        alt.layer(_bars, _points, data=_seg)
        .facet(row=alt.Row("segment:N", title=None))
        .resolve_scale(y="independent")
        .properties(title="ROC AUC per segment, 95% bootstrap interval")
    )
    _fair = []
    for _col in result.spec.segments:
        _f = fairness(_scores, result.predictions, _col, result.spec.target,
                      top_k=result.spec.k, group=result.spec.group, min_group_size=100)  # fmt: skip
        _fair.append(_f.table.with_columns(pl.lit(_col).alias("attribute")))
    fairness_table = pl.concat(
        [t.select("attribute", "group", "n", "selection_rate", "true_positive_rate",
                  "mean_exposure") for t in _fair]
    )  # fmt: skip
    _fair_chart = (
        alt.Chart(fairness_table)
        .mark_bar()
        .encode(
            x=alt.X("selection_rate:Q", title="share of impressions in the top k"),
            y=alt.Y("group:N", title=None),
            row=alt.Row("attribute:N", title=None),
            tooltip=["attribute", "group", "n", "selection_rate", "true_positive_rate"],
        )
        .resolve_scale(y="independent")
        .properties(width=360, title="Selection rate by group (four-fifths rule in the gate)")
    )
    mo.vstack(
        [
            mo.md("## Evaluation by segment and fairness (hold-out)"),
            mo.md(f"Segments: {segment_check.detail}"),
            _segment_chart,
            _fair_chart,
            mo.ui.table(result.segment_metrics, selection=None),
        ]
    )
    return


@app.cell
def _(
    Path,
    content_hashes,
    json,
    mo,
    modeling,
    output_dir,
    result,
    settings,
    spec,
    tables_read,
):
    # Write the run's outputs only when asked (the DVC stage passes output_dir).
    if output_dir:
        _out = Path(output_dir)
        _out.mkdir(parents=True, exist_ok=True)
        sha256 = modeling.save_model(result.pipeline, result.signature, _out / "model.skops")
        result.learning_curve.write_csv(_out / "learning_curve.csv")
        result.importance.write_csv(_out / "importance.csv")
        result.segment_metrics.write_csv(_out / "segment_metrics.csv")
        (_out / "metrics.json").write_text(
            json.dumps(
                {k: round(v, 6) for k, v in result.metrics.items()}, indent=2, sort_keys=True
            )
            + "\n"
        )
        _run = {
            "artifact": str(_out / "model.skops"),
            "sha256": sha256,
            "spec": spec.to_dict(),
            "settings": settings,
            "metrics": result.metrics,
            "tables_read": tables_read,
            "content_hashes": content_hashes,
            "n_train": result.n_train,
            "n_test": result.n_test,
            "cutoff": str(result.cutoff),
        }
        (_out / "run.json").write_text(json.dumps(_run, indent=2, sort_keys=True, default=str))
        _msg = mo.md(f"Saved the model to `{_out / 'model.skops'}` (sha256 `{sha256[:16]}`...).")
    else:
        _msg = mo.md("Interactive run: nothing written (set `output_dir` to save).")
    _msg
    return


if __name__ == "__main__":
    app.run()
