"""The `realized` monitor: what happened after the predictions that were served.

A model that declares `outcomes` in the project definition (hortus.yaml; see
`hortus.project.definition.OutcomesDef`) has its logged predictions
(ops.prediction_log: batch scoring and `hortus serve`) joined with its outcome table:
a logged prediction is *positive* when a row of the table with the same keys meets
the `positive` condition within `window_days` after the prediction's ``as_of``, and
*exposed* when one meets the `exposed` condition in that window.

A list is the rows of one batch (or online request) with the same keys except the
item (for a ranking model the last key; other models: every prediction is its own
list).  The recommended rows are the top `k` of a list (rank <= k; every logged rank
when `k` is not set); for a model without ranks, the rows scored at or above its
threshold.  Metrics per model version, day of ``as_of`` (UTC) and segment (``all``,
then each of the model's `segments` read from the logged features):

- ``realized_precision``: positive recommended rows / recommended rows;
- ``realized_hit_rate``: lists with at least one positive recommended row / lists;
- ``realized_ctr`` (with `exposed`): exposed rows that are positive / exposed rows;
- ``realized_lists``, ``realized_items``: how many lists and recommended rows;
- ``realized_pending``: lists whose outcome window has not closed yet.

Only complete windows count: a prediction's window closes at ``as_of + window_days``,
and the clock is the outcome table's last ``time`` (the data's "now", so a simulated
or replayed history is judged by its own time, not the wall clock).  A day with any
list whose window is still open is reported as pending (``realized_pending`` = its
lists) with no precision, never as zero.

``realized_precision_last`` (subject ``<model> v<version>``) repeats the latest
complete day's overall precision: the metric an alert rule watches
(``realized-precision-low`` in params.yaml).  ``score_drift`` compares each day's
served scores with the version's training hold-out scores (the registered spec's
time split of its training rows, scored by the version's pipeline) with
`hortus.monitoring.drift.compare` (its default statistic: exact KS up to
`small_sample_rows`, the normalised Wasserstein distance above; labels: statistic, p-value,
drifted).  For a ranking model served scores are the top k of every
candidate, so their level sits above the hold-out's: read the trend, not the level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from hortus.lakehouse.tables import Lakehouse
from hortus.monitoring._monitor_base import _can_read, _long, _project, _utc, empty_metrics

MONITOR = "realized"
PREDICTION_LOG = "ops.prediction_log"
ALL = "all"

_ROW = "_row"
_LIST = "_list"


def _condition(cond: Any) -> pl.Expr:
    col = pl.col(cond.column)
    if cond.values:
        return col.is_in(list(cond.values))
    return col.cast(pl.Float64, strict=False).fill_null(0) > 0


def prediction_rows(
    log: pl.DataFrame | pl.LazyFrame,
    keys: Sequence[str],
    segments: Sequence[str] = (),
) -> pl.DataFrame:
    """Decode logged predictions: request keys from `request`, segments from `features`.

    Returns model_name, model_version, batch_id, as_of, rank, score, the keys and the
    segment columns (as text; null when a row does not carry them).
    """
    lf = log.lazy()
    names = lf.collect_schema().names()
    segs = [
        pl.col("features").str.json_path_match(f"$.{s}").alias(s)
        if "features" in names
        else pl.lit(None, pl.String).alias(s)
        for s in segments
    ]
    return lf.select(
        "model_name",
        pl.col("model_version").cast(pl.Int64),
        "batch_id",
        pl.col("as_of").cast(pl.Datetime("us", "UTC")),
        pl.col("rank").cast(pl.Int64),
        pl.col("score").cast(pl.Float64),
        *[pl.col("request").str.json_path_match(f"$.{k}").alias(k) for k in keys],
        *segs,
    ).collect()


def realized_frame(
    preds: pl.DataFrame,
    outcomes: pl.DataFrame | pl.LazyFrame,
    od: Any,
    *,
    horizon: datetime | None = None,
    segments: Sequence[str] = (),
    ranking: bool = True,
    threshold: float = 0.5,
) -> pl.DataFrame:
    """Return realized metrics per model_name, model_version, day, segment, value (wide).

    `preds` as `prediction_rows` gives (keys named as the request keys); `outcomes`
    the outcome table (its columns as `od`, an `OutcomesDef`, names them); `horizon`
    the clock (default: the outcome table's last time).  Columns: lists, items,
    positives, hits, exposed, exposed_positives, pending_lists, precision, hit_rate,
    ctr (null without exposures), status ("complete" or "pending").
    """
    req = [a for a, _ in od.keys]
    out_lf = outcomes.lazy()
    if horizon is None:
        horizon = out_lf.select(pl.col(od.time).max()).collect().item()
    horizon = _utc(horizon) if horizon is not None else None
    window = timedelta(days=od.window_days)
    item = req[-1:] if ranking and len(req) > 1 else []
    list_keys = [k for k in req if k not in item] if ranking else req
    p = preds.with_row_index(_ROW).with_columns(
        pl.col("as_of").dt.date().alias("day"),
        pl.struct("model_name", "model_version", "batch_id", *list_keys).hash().alias(_LIST),
    )
    if ranking:
        chosen = pl.col("rank").is_not_null() & (
            pl.col("rank") <= od.k if od.k is not None else pl.lit(True)
        )
    else:
        chosen = pl.col("score") >= threshold
    p = p.filter(chosen)
    closes = pl.col("as_of") + pl.duration(microseconds=int(window / timedelta(microseconds=1)))
    p = p.with_columns(
        (closes <= pl.lit(horizon, pl.Datetime("us", "UTC")) if horizon else pl.lit(False)).alias(
            "_complete"
        )
    )

    def flag(cond: Any, name: str) -> pl.DataFrame:
        ev = (
            out_lf.filter(_condition(cond))
            .select(
                *[pl.col(b).cast(pl.String).alias(a) for a, b in od.keys],
                pl.col(od.time).cast(pl.Datetime("us", "UTC")).alias("_t"),
            )  # fmt: skip
            .collect()
        )
        hit = (
            p.select(_ROW, *req, "as_of")
            .join(ev, on=req, how="inner")
            .filter((pl.col("_t") >= pl.col("as_of")) & (pl.col("_t") < pl.col("as_of") + window))
            .select(_ROW)
            .unique()
            .with_columns(pl.lit(True).alias(name))
        )
        return hit

    p = p.join(flag(od.positive, "_pos"), on=_ROW, how="left")
    if od.exposed is not None:
        p = p.join(flag(od.exposed, "_exp"), on=_ROW, how="left")
    else:
        p = p.with_columns(pl.lit(False).alias("_exp"))
    p = p.with_columns(pl.col("_pos").fill_null(False), pl.col("_exp").fill_null(False))
    # one row per (prediction, segment): "all", then each segment column
    parts = [p.with_columns(pl.lit(ALL).alias("segment"), pl.lit(ALL).alias("value"))]
    for s in segments:
        parts.append(
            p.filter(pl.col(s).is_not_null()).with_columns(
                pl.lit(s).alias("segment"), pl.col(s).cast(pl.String).alias("value")
            )
        )
    cols = [_ROW, _LIST, "model_name", "model_version", "day", "_complete", "_pos", "_exp"]
    long = pl.concat([x.select(*cols, "segment", "value") for x in parts])
    group = ["model_name", "model_version", "day", "segment", "value"]
    per_list = long.group_by(*group, _LIST).agg(
        pl.col("_complete").all().alias("complete"),
        pl.len().alias("items"),
        pl.col("_pos").sum().alias("positives"),
        pl.col("_exp").sum().alias("exposed"),
        (pl.col("_exp") & pl.col("_pos")).sum().alias("exposed_positives"),
    )
    done = pl.col("complete")
    agg = per_list.group_by(group).agg(
        done.sum().alias("lists"),
        (~done).sum().alias("pending_lists"),
        pl.col("items").filter(done).sum().alias("items"),
        pl.col("positives").filter(done).sum().alias("positives"),
        (pl.col("positives") > 0).filter(done).sum().alias("hits"),
        pl.col("exposed").filter(done).sum().alias("exposed"),
        pl.col("exposed_positives").filter(done).sum().alias("exposed_positives"),
    )
    pending = pl.col("pending_lists") > 0
    return agg.with_columns(
        pl.when(pending).then(pl.lit("pending")).otherwise(pl.lit("complete")).alias("status"),
        pl.when(pending | (pl.col("items") == 0)).then(None)
        .otherwise(pl.col("positives") / pl.col("items")).alias("precision"),
        pl.when(pending | (pl.col("lists") == 0)).then(None)
        .otherwise(pl.col("hits") / pl.col("lists")).alias("hit_rate"),
        pl.when(pending | (pl.col("exposed") == 0) | pl.lit(od.exposed is None)).then(None)
        .otherwise(pl.col("exposed_positives") / pl.col("exposed")).alias("ctr"),
    ).sort(group)  # fmt: skip


def realized_metrics_frame(
    realized: pl.DataFrame, at: datetime, *, window_days: float, k: int | None
) -> pl.DataFrame:
    """Turn `realized_frame` output into ops.monitor_metrics rows (see the module doc)."""
    if realized.height == 0:
        return empty_metrics()
    who = pl.concat_str(pl.col("model_name"), pl.lit(" v"), pl.col("model_version").cast(pl.String))
    subject = pl.concat_str(
        who,
        pl.lit(" "),
        pl.col("day").cast(pl.String),
        pl.when(pl.col("segment") == ALL)
        .then(pl.lit(""))
        .otherwise(pl.concat_str(pl.lit(" "), pl.col("segment"), pl.lit("="), pl.col("value"))),
    )
    df = realized.with_columns(
        pl.col("day").cast(pl.String),
        pl.lit(window_days).alias("window_days"),
        pl.lit(k, pl.Int64).alias("k"),
        pl.col("precision").alias("realized_precision"),
        pl.col("hit_rate").alias("realized_hit_rate"),
        pl.col("ctr").alias("realized_ctr"),
        pl.when(pl.col("status") == "complete").then(pl.col("lists")).alias("realized_lists"),
        pl.when(pl.col("status") == "complete").then(pl.col("items")).alias("realized_items"),
        pl.when(pl.col("status") == "pending").then(pl.col("pending_lists"))
        .alias("realized_pending"),
    )  # fmt: skip
    labels = ["model_name", "model_version", "day", "segment", "value", "status", "k",
              "window_days"]  # fmt: skip
    values = ["realized_precision", "realized_hit_rate", "realized_ctr", "realized_lists",
              "realized_items", "realized_pending"]  # fmt: skip
    rows = _long(
        df.with_columns(realized.select(subject.alias("_subject"))["_subject"]),
        monitor=MONITOR,
        at=at,
        subject=pl.col("_subject"),
        values=values,
        labels=labels,
    )
    last = (
        df.filter((pl.col("segment") == ALL) & (pl.col("status") == "complete"))
        .sort("day")
        .group_by("model_name", "model_version")
        .agg(pl.all().last())
    )
    latest = _long(
        last.with_columns(last.select(who.alias("_who"))["_who"]),
        monitor=MONITOR,
        at=at,
        subject=pl.col("_who"),
        values=["realized_precision"],
        labels=["model_name", "model_version", "day", "k", "window_days"],
    ).with_columns(pl.lit("realized_precision_last").alias("metric"))
    return pl.concat([rows, latest])


def score_drift_frame(
    served: pl.DataFrame,
    reference: Mapping[tuple[str, int], Sequence[float]],
    at: datetime,
    config: Any = None,
) -> pl.DataFrame:
    """Return score_drift rows per model version and day: served scores against `reference`.

    `served` has model_name, model_version, as_of and score; `reference` maps
    (model_name, version) to the training hold-out scores.  Versions without a
    reference are left out.
    """
    from hortus.monitoring.drift import compare

    rows = []
    frame = served.with_columns(pl.col("as_of").dt.date().alias("day"))
    for (name, version, day), part in frame.group_by(
        "model_name", "model_version", "day", maintain_order=True
    ):
        ref = reference.get((str(name), int(version)))
        if ref is None or len(ref) < 2 or part.height < 2:
            continue
        result = compare(
            pl.DataFrame({"score": list(ref)}, schema={"score": pl.Float64}),
            part.select(pl.col("score").cast(pl.Float64)),
            ["score"],
            config,
        ).results[0]
        rows.append({"model_name": name, "model_version": version, "day": str(day),
                     "statistic": result.statistic, "p_value": result.p_value,
                     "drifted": int(result.drifted), "n_reference": len(ref),
                     "n_served": part.height, "score_drift": result.value,
                     "score_mean": float(part["score"].mean())})  # fmt: skip
    if not rows:
        return empty_metrics()
    df = pl.DataFrame(rows)
    subject = pl.concat_str(
        pl.col("model_name"), pl.lit(" v"), pl.col("model_version").cast(pl.String),
        pl.lit(" "), pl.col("day"),
    )  # fmt: skip
    return _long(
        df,
        monitor=MONITOR,
        at=at,
        subject=subject,
        values=["score_drift", "score_mean"],
        labels=["model_name", "model_version", "day", "statistic", "p_value", "drifted",
                "n_reference", "n_served"],
    )  # fmt: skip


def holdout_scores(lh: Lakehouse, model: str, version: int, *, max_rows: int = 20_000):
    """Return a version's training hold-out scores (seeded sample), or None if not found.

    The training rows are the model table at the Delta version its receipt read (as
    the staleness monitor finds them); the hold-out is the registered spec's time
    split of them; the version's pipeline scores it.
    """
    from hortus.models._spec import ModelSpec
    from hortus.models._split import time_split
    from hortus.models.modeling import score_frame
    from hortus.models.registry import Registry
    from hortus.monitoring._monitor_models import _training_rows, training_table

    try:
        registry = Registry(lh, model)
        mv = registry.get(version)
        table = training_table(lh, model, mv.receipt)
        read = (mv.receipt.get("tables_read") or {}).get(table) if table else None
        if read is None or not mv.spec or not _can_read(lh, table):
            return None
        spec = ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in mv.spec.items()})
        latest = lh.read(table)
        rows, _ = _training_rows(lh, table, mv.receipt, int(read), latest, spec.time)
        if rows is None:
            return None
        _, hold, _ = time_split(rows, spec)
        if hold.height > max_rows:
            hold = hold.sample(n=max_rows, seed=0)
        pipeline, signature = registry.load(version)
        return score_frame(pipeline, signature, hold, spec)["score"].to_list()
    except Exception:  # noqa: BLE001 - no reference is "not measured", never a failed monitor
        return None


def realized(
    lh: Lakehouse,
    at: datetime,
    *,
    model: str | None = None,
    horizon: datetime | None = None,
    reference: Mapping[tuple[str, int], Sequence[float]] | None = None,
    drift: Any = None,
) -> pl.DataFrame:
    """Realized outcome and score drift rows of every model declaring `outcomes`.

    `reference` (model_name, version) -> hold-out scores replaces `holdout_scores`
    (tests); `horizon` the outcome clock (default: the outcome table's last time).
    Nothing without ops.prediction_log, a project definition or a readable outcome table.
    """
    project = _project(lh)
    if project is None or not _can_read(lh, PREDICTION_LOG):
        return empty_metrics()
    frames = [empty_metrics()]
    for m in project.models.values():
        od = m.outcomes
        if od is None or (model is not None and m.name != model) or not _can_read(lh, od.table):
            continue
        log = lh.scan(PREDICTION_LOG).filter(pl.col("model_name") == m.name)
        preds = prediction_rows(log, [a for a, _ in od.keys], m.segments)
        if preds.height == 0:
            continue
        table = lh.scan(od.table)
        got = realized_frame(preds, table, od, horizon=horizon, segments=m.segments,
                             ranking=m.task == "ranking", threshold=m.threshold)  # fmt: skip
        frames.append(realized_metrics_frame(got, at, window_days=od.window_days, k=od.k))
        refs = dict(reference or {})
        if reference is None:
            for v in preds["model_version"].unique().to_list():
                scores = holdout_scores(lh, m.name, int(v))
                if scores is not None:
                    refs[(m.name, int(v))] = scores
        frames.append(score_drift_frame(preds, refs, at, drift))
    return pl.concat(frames)
