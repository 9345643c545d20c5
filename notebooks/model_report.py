import marimo

__generated_with = "0.25.2"
app = marimo.App(
    width="medium",
    app_title="Hortus: model report",
)

with app.setup:
    import json
    from pathlib import Path

    import altair as alt
    import marimo as mo
    import polars as pl
    import yaml

    from hortus.publishing import monitor_views, report_views
    from hortus.config import find_root
    from hortus.errors import HortusError
    from hortus.publishing.model_card import build_card, settings_from_params
    from hortus.publishing.nbui import load_table, note, show_table
    from hortus.project.definition import Project, ProjectError
    from hortus.models.registry import VERSIONS
    from hortus.lakehouse.tables import Lakehouse
    from hortus.publishing.train_views import importance_title


@app.cell
def _():
    # parameters
    # model: a model name ("" = the project's default model, hortus.yaml); version: a
    # version number (3) or an alias (champion, challenger); card_path: where to write
    # the machine-readable card as JSON ("" writes nothing; `hortus notebooks publish`
    # sets it).
    model = ""
    version = "champion"
    card_path = ""
    return card_path, model, version


@app.cell
def _(model):
    # the models to choose from: the project's (hortus.yaml), then any other registered
    lakehouse = Lakehouse.open(stage="model_report")
    try:
        _project = Project.load()
        _names, _default = list(_project.models), _project.default_model
    except ProjectError:
        _names, _default = [], model
    _versions, _ = load_table(lakehouse, VERSIONS)
    _options, _value = monitor_views.model_options(
        _names, monitor_views.registered_models(_versions), model, _default
    )
    model_choice = mo.ui.dropdown(options=_options, value=_value, label="Model")
    return lakehouse, model_choice


@app.cell
def _(model_choice):
    # the card's text (params.yaml `model_card.<model>`) and the thresholds the
    # checklist judges with (params.yaml `gate`: the promotion gate's own numbers)
    chosen = model_choice.value
    _file = find_root() / "params.yaml"
    _doc = yaml.safe_load(_file.read_text(encoding="utf-8")) if _file.is_file() else {}
    card_text, gate_config = settings_from_params(_doc or {}, chosen)
    return card_text, chosen, gate_config


@app.cell
def _(card_text, chosen, gate_config, lakehouse, version):
    try:
        card = build_card(
            lakehouse,
            chosen,
            version,
            text=card_text,
            config=gate_config,
            train_dir=report_views.train_dir(lakehouse.paths.reports, chosen),
        )
        card_error = None
    except HortusError as _exc:
        card, card_error = None, str(_exc)
    return card, card_error


@app.cell
def _(card, card_error, chosen, lakehouse, model_choice, version):
    if card is None:
        _out = mo.vstack(
            [
                model_choice,
                mo.md(f"# Model report: `{chosen}` {version}"),
                note(f"No report for **{lakehouse.user}**: {card_error}", "danger"),
            ]
        )
    else:
        _failed = card.failed
        _verdict = (
            note(
                f"**Governance checklist: PASS** ({len(card.checklist)} of "
                f"{len(card.checklist)} items).",
                "success",
            )
            if card.passed
            else note(
                f"**Governance checklist: FAIL**: {len(_failed)} of {len(card.checklist)} "
                f"items failed: {', '.join(i.name for i in _failed)}.",
                "danger",
            )
        )
        _aliases = ", ".join(card.aliases) or "no alias"
        _out = mo.vstack(
            [
                model_choice,
                mo.md(
                    f"# Model report: `{card.model}` v{card.version}\n\n"
                    f"Version **{card.version}** ({_aliases}; requested as `{version}`), "
                    f"read as **{card.viewer}** on {card.generated_at:%Y-%m-%d %H:%M} UTC.  "
                    "Everything below comes from the model registry, the lakehouse and the "
                    "verified artifact; the checklist at the end passes or fails item by item."
                ),
                _verdict,
            ]
        )
    _out
    return


@app.cell
def _(card):
    if card is None:
        _out = mo.md("")
    else:
        _d = card.details
        _out = mo.vstack(
            [
                mo.md(
                    f"## Model details\n\nA {_d.get('task') or 'binary'} model: "
                    f"**{_d['algorithm']}** trained to predict "
                    f"`{_d['target']}` from {len(_d['features'])} features; registered by "
                    f"**{_d['author']}** on {_d['created_at']:%Y-%m-%d %H:%M} UTC."
                ),
                show_table(report_views.key_values(_d)),
            ]
        )
    _out
    return


@app.cell
def _(card):
    if card is None:
        _out = mo.md("")
    else:
        _t = card.text
        _missing = f"*not stated: add it to params.yaml `model_card.{card.model}`*"
        _limits = "\n".join(f"- {x}" for x in _t.limitations) or _missing
        _owners = "\n".join(f"- {x}" for x in _t.owners) or _missing
        _out = mo.md(
            f"## Intended use\n\n{_t.intended_use or _missing}\n\n"
            f"**Out of scope:** {_t.out_of_scope or 'not stated'}\n\n"
            f"## Limitations\n\n{_limits}\n\n## Owners\n\n{_owners}"
        )
    _out
    return


@app.cell
def _(card):
    if card is None:
        _out = mo.md("")
    else:
        _e = card.evaluation
        _span = (
            f"{_e['train_rows']:,} training rows from {_e['train_from']} to before the "
            f"cut-off {_e['cutoff']}"
            if _e and _e.get("cutoff") is not None
            else f"{_e['train_rows']:,} training rows ({_e['split']} split)"
            if _e
            else "the training rows could not be rebuilt (see the notes)"
        )
        _out = mo.vstack(
            [
                mo.md(
                    "## Training data\n\nEach table the receipt says training read, at the "
                    "Delta version read, with the content hash recorded at training and the "
                    f"hash of that version now (as **{card.viewer}** sees it); landing "
                    f"snapshot `data.dvc` md5 **{card.receipt.get('data_md5')}**.  {_span}."
                ),
                show_table(
                    card.training.select(
                        "table", "version", "rows", "matches", "masked", "row_filter",
                        "recorded_hash", "hash_now", "note",
                    )  # fmt: skip
                )
                if card.training.height
                else note("The receipt lists no table read.", "warn"),
            ]
        )
    _out
    return


@app.cell
def _(card):
    if card is None:
        _out = mo.md("")
    elif not card.evaluation:
        _out = mo.vstack(
            [mo.md("## Evaluation data"), note("The hold-out could not be rebuilt.", "warn")]
        )
    else:
        _e = card.evaluation
        _out = mo.vstack(
            [
                mo.md(
                    f"## Evaluation data\n\nThe hold-out of `{_e['table']}` v{_e['version']} "
                    f"({_e['split']} split with the registered spec): **{_e['holdout_rows']:,}** "
                    f"rows, {report_views.target_text(_e)}."
                ),
                show_table(report_views.key_values(_e)),
            ]
        )
    _out
    return


@app.cell
def _(card):
    if card is None:
        _out = mo.md("")
    else:
        _metrics = report_views.metrics_frame(card.metrics, card.recomputed)
        _metric = report_views.segment_metric(card.details.get("task"))
        _parts = [
            mo.md(
                "## Metrics\n\nOverall metrics as registered for the version (measured at "
                "training) and recomputed now with the verified artifact on the rebuilt "
                "hold-out (they agree when the data and code are the same)."
            ),
            show_table(_metrics),
        ]
        if card.segments is not None and card.segments.height:
            _seg = card.segments.filter(pl.col("estimate").is_not_null())
            _base = alt.Chart().encode(y=alt.Y("value:N", title=None))
            _points = _base.mark_point(filled=True).encode(
                x=alt.X("estimate:Q", title=f"{_metric} (hold-out)", scale=alt.Scale(zero=False)),
                color=alt.Color("status:N"),
                tooltip=["segment", "value", "n", "estimate", "ci_low", "ci_high", "status"],
            )  # fmt: skip
            _bars = _base.mark_rule().encode(x="ci_low:Q", x2="ci_high:Q")
            _parts += [
                mo.md("### Per segment, with 95% bootstrap intervals"),
                alt.layer(_bars, _points, data=_seg)
                .facet(row=alt.Row("segment:N", title=None))
                .resolve_scale(y="independent")
                .properties(title=f"{_metric} per segment of {card.model} v{card.version}"),
                show_table(card.segments),
            ]
        else:
            _parts.append(note("No per-segment metrics for this version.", "warn"))
        _out = mo.vstack(_parts)
    _out
    return


@app.cell
def _(card):
    if card is None:
        _out = mo.md("")
    else:
        _checks = report_views.checks_frame(card.fairness_checks)
        _parts = [
            mo.md(
                "## Fairness\n\n"
                + report_views.fairness_text(
                    card.details.get("task"),
                    k=card.details.get("k"),
                    threshold=card.details.get("threshold"),
                )
                + " per group of each sensitive attribute; a measure fails when the "
                "smallest group's value is below the threshold times the largest "
                "(four-fifths rule)."
            ),
            show_table(_checks)
            if _checks.height
            else note("No fairness evaluation for this version.", "warn"),
        ]
        if card.fairness is not None and card.fairness.height:
            _measure, _title = report_views.fairness_measure(card.fairness)
            _extra = {"color": alt.Color("judged:N")} if "judged" in card.fairness.columns else {}
            _parts += [
                alt.Chart(card.fairness)
                .mark_bar()
                .encode(
                    x=alt.X(f"{_measure}:Q", title=_measure.replace("_", " ")),
                    y=alt.Y("group:N", title=None),
                    row=alt.Row("attribute:N", title=None),
                    tooltip=list(card.fairness.columns),
                    **_extra,
                )
                .resolve_scale(y="independent")
                .properties(width=360, title=_title),
                show_table(card.fairness),
            ]
        _out = mo.vstack(_parts)
    _out
    return


@app.cell
def _(card):
    if card is None:
        _out = mo.md("")
    elif card.importance is None or card.importance.height == 0:
        _out = mo.vstack(
            [mo.md("## Feature importance"), note("No importance for this version.", "warn")]
        )
    else:
        _top = card.importance.sort("importance_mean", descending=True).head(20)
        _out = mo.vstack(
            [
                mo.md(
                    "## Feature importance\n\nPermutation importance: the "
                    f"{importance_title(card.details.get('task') or 'binary')} (a feature's "
                    "values shuffled on the hold-out)."
                ),
                alt.Chart(_top)
                .mark_bar()
                .encode(
                    x=alt.X(
                        "importance_mean:Q",
                        title=importance_title(card.details.get("task") or "binary"),
                    ),
                    y=alt.Y("feature:N", sort="-x", title=None),
                    tooltip=["feature", "importance_mean", "importance_std", "share"],
                )
                .properties(width=420, title=f"Permutation importance of {card.model} "
                            f"v{card.version} (top 20)"),  # fmt: skip
                show_table(_top),
            ]
        )
    _out
    return


@app.cell
def _(card):
    if card is None:
        _out = mo.md("")
    elif card.gate_runs.height == 0:
        _out = mo.vstack(
            [
                mo.md("## Gate results"),
                note(
                    f"No gate run for v{card.version}: `hortus gate {card.version} "
                    f"--model {card.model}`.",
                    "warn",
                ),
            ]
        )
    else:
        _latest = card.gate_runs.row(-1, named=True)
        _checks = report_views.checks_frame(card.gate_checks)
        _compared, _title = report_views.comparison_frame(card.gate_checks)
        _out = mo.vstack(
            [
                mo.md(
                    f"## Gate results\n\n{card.gate_runs.height} gate run(s); the latest, "
                    f"`{_latest['run_id']}` by {_latest['actor']}, "
                    f"**{'passed' if _latest['passed'] else 'failed'}** "
                    f"({_latest['failed']} of {_latest['checks']} checks failed)."
                ),
                show_table(_checks),
                *([mo.md(f"### {_title}"), show_table(_compared)] if _compared is not None else []),
                show_table(card.gate_runs.drop("results")),
            ]
        )
    _out
    return


@app.cell
def _(card):
    if card is None:
        _out = mo.md("")
    elif card.drift is None:
        _out = mo.vstack(
            [
                mo.md("## Drift since training"),
                note("Drift since training could not be measured (see the notes).", "warn"),
            ]
        )
    else:
        _d = card.drift
        _parts = [
            mo.md(
                f"## Drift since training\n\n**{'below' if _d['passed'] else 'ABOVE'} the "
                f"threshold**: {_d['detail']} (share {_d['value']:.3f}, threshold "
                f"{_d['threshold']}).  "
                + (
                    f"Reference: {_d['reference']} ({_d['reference_rows']:,} rows); current: "
                    f"{_d['current']} ({_d['current_rows']:,} rows)."
                    if "reference" in _d
                    else "As recorded by the gate."
                )
            )
        ]
        if card.drift_table is not None and card.drift_table.height:
            _scores = card.drift_table.filter(pl.col("threshold").is_not_null()).with_columns(
                (pl.col("value") / pl.col("threshold")).alias("score")
            )
            _parts += [
                alt.Chart(_scores.sort("score", descending=True).head(30))
                .mark_bar()
                .encode(
                    x=alt.X("score:Q", title="statistic / threshold (>= 1: drifted)"),
                    y=alt.Y("column:N", sort="-x", title=None),
                    color=alt.Color("drifted:N"),
                    tooltip=["column", "statistic", "value", "threshold", "drifted"],
                )
                .properties(width=420, title="Drift per column since training (top 30)"),
                show_table(card.drift_table),
            ]
        _out = mo.vstack(_parts)
    _out
    return


@app.cell
def _(card):
    if card is None:
        _out = mo.md("")
    else:
        _out = mo.vstack(
            [
                mo.md(
                    "## Reproducibility receipt\n\nWhat it takes to rebuild this version: "
                    f"`hortus reproduce {card.version}` rebuilds it from this receipt and "
                    "compares the result."
                ),
                show_table(report_views.key_values(card.receipt)),
            ]
        )
    _out
    return


@app.cell
def _(card):
    if card is None:
        _out = mo.md("")
    elif card.approvals.height == 0:
        _out = mo.vstack(
            [
                mo.md("## Approvals"),
                note(
                    f"No approval of v{card.version}: an approver who is not its author runs "
                    f"`HORTUS_USER=<approver> hortus models approve {card.version} "
                    f"--model {card.model}`.",
                    "warn",
                ),
            ]
        )
    else:
        _out = mo.vstack([mo.md("## Approvals"), show_table(card.approvals)])
    _out
    return


@app.cell
def _(card):
    if card is None:
        _out = mo.md("")
    else:
        _table = card.checklist_frame()
        _out = mo.vstack(
            [
                mo.md(
                    f"## Governance checklist\n\n**Verdict: {'PASS' if card.passed else 'FAIL'}** "
                    f"({len(card.checklist) - len(card.failed)} of {len(card.checklist)} "
                    "items passed)."
                ),
                show_table(_table),
                note("\n".join(f"- {n}" for n in card.notes), "info")
                if card.notes
                else mo.md(""),
            ]
        )
    _out
    return


@app.cell
def _(card, card_path):
    # the machine-readable card, for the generated docs index (`hortus notebooks publish`)
    if card is not None and card_path:
        _path = Path(card_path)
        _path.parent.mkdir(parents=True, exist_ok=True)
        _path.write_text(json.dumps(card.summary(), indent=2, sort_keys=True) + "\n")
        _out = mo.md(f"Card written to `{_path}`.")
    else:
        _out = mo.md("")
    _out
    return


if __name__ == "__main__":
    app.run()
