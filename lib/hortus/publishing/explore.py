"""Browse a lakehouse as one user sees it: tables, contracts, lineage, profiles, trends.

The logic behind notebooks/explore.py, general to any contract-described table:

- `table_overview`: one row per catalogued table with its contract summary (layer,
  owner, freshness SLA, PII and sensitive columns), whether it has been written, its
  current Delta version, whether the acting user may read it (the grant that allows
  it, or what is missing) and, when readable, its row count as the user sees it;
- `contract_frame`: a table's columns as stored (silver keeps tokens and generalised
  columns), with type, rules, PII class and description;
- `version_history`: the lineage of each Delta version (`Lakehouse.history`) with the
  rows of that version as the user sees them;
- `read_or_note`: read a table, or say why not (never written; not readable by the
  user, naming the user and the missing grant);
- `profile`: column profiles of any frame (null rate, distinct values, min, max,
  mean, top values), computed in one lazy pass plus one group-by per column;
- `metric_trends`: numeric columns of a daily table (such as a project's KPI table)
  in long format for one segment and a date range, ready for a line chart.

Every read goes through `hortus.lakehouse.tables.Lakehouse`, so the access policy applies
(row filters, masking) and each read or denied attempt is audited.  Deciding whether
a table is readable for the overview uses `Policy.decide`, which records nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import polars as pl

from hortus.governance.access import AccessDenied
from hortus.lakehouse.contracts import Contract
from hortus.lakehouse.tables import Lakehouse, read_contract
from hortus.publishing.docs import _rules  # one rendering of a column's rules for docs and explore

#: most recent Delta versions whose row counts `version_history` reads
MAX_VERSIONS = 25

_OVERVIEW_SCHEMA = {
    "table": pl.String,
    "layer": pl.String,
    "owner": pl.String,
    "freshness_sla_hours": pl.Float64,
    "columns": pl.Int64,
    "pii_columns": pl.String,
    "sensitive_columns": pl.String,
    "written": pl.Boolean,
    "version": pl.Int64,
    "readable": pl.Boolean,
    "rows": pl.Int64,
    "access": pl.String,
    "description": pl.String,
}


def _names(frame_or_contract: Contract, *, pii: bool) -> str:
    cols = frame_or_contract.columns
    picked = [c.name for c in cols if (c.pii != "none" if pii else c.sensitive)]
    return ", ".join(picked)


def table_overview(lh: Lakehouse, names: Iterable[str] | None = None) -> pl.DataFrame:
    """Return one row per catalogued table as the acting user sees the lakehouse.

    Columns: table, layer, owner, freshness_sla_hours, columns, pii_columns,
    sensitive_columns, written, version (current Delta version; null if never
    written), readable, rows (as the user sees them: row filter applied; null when
    not readable or not written), access (the allowing grant, or what is missing)
    and description.  Row counts are audited reads; the readability decision is
    not (it touches no data).

    Examples
    --------
    >>> table_overview(Lakehouse.open(user="alex")).filter(pl.col("readable"))  # doctest: +SKIP
    """
    assert lh.policy is not None
    rows = []
    for name in lh.catalog.names() if names is None else names:
        contract = read_contract(lh.catalog, name)
        written = lh.exists(name)
        decision = lh.policy.decide(lh.user, "read", name)
        count = None
        if written and decision.allowed:
            count = lh.scan(name).select(pl.len()).collect().item()
        rows.append(
            {
                "table": name,
                "layer": contract.layer,
                "owner": contract.owner,
                "freshness_sla_hours": contract.freshness_sla_hours,
                "columns": len(contract.columns),
                "pii_columns": _names(contract, pii=True),
                "sensitive_columns": _names(contract, pii=False),
                "written": written,
                "version": lh.version(name) if written else None,
                "readable": decision.allowed,
                "rows": count,
                "access": (
                    f"read via {decision.grant}"
                    if decision.allowed
                    else f"denied: missing {decision.missing}"
                ),
                "description": contract.description,
            }
        )
    return pl.DataFrame(rows, schema=_OVERVIEW_SCHEMA)


def contract_frame(lh: Lakehouse, name: str) -> pl.DataFrame:
    """Return a table's columns as stored: name, type, nullable, rules, PII, sensitive, meaning.

    Uses the stored contract (`hortus.lakehouse.tables.read_contract`): silver shows keyed
    tokens and generalised columns, bronze its ingestion metadata.
    """
    contract = read_contract(lh.catalog, name)
    return pl.DataFrame(
        [
            {
                "column": c.name,
                "type": c.type,
                "nullable": c.nullable,
                "rules": _rules(c),
                "pii": c.pii,
                "sensitive": c.sensitive,
                "description": c.description,
            }
            for c in contract.columns
        ],
        schema={
            "column": pl.String,
            "type": pl.String,
            "nullable": pl.Boolean,
            "rules": pl.String,
            "pii": pl.String,
            "sensitive": pl.Boolean,
            "description": pl.String,
        },
    )


def read_or_note(lh: Lakehouse, name: str) -> tuple[pl.DataFrame | None, str | None]:
    """Read a table as the acting user; return (frame, None) or (None, why it is missing).

    A table never written gives a "no data yet" note; a table the user may not read
    gives a note naming the user and the missing grant (the denial is audited).
    """
    if not lh.exists(name):
        return None, f"`{name}`: no data yet (the table has never been written)."
    try:
        return lh.read(name), None
    except AccessDenied as exc:
        return None, f"`{name}` is not readable by **{lh.user}**: {exc}"


def version_history(lh: Lakehouse, name: str, *, max_versions: int = MAX_VERSIONS) -> pl.DataFrame:
    """Return the lineage of a table's Delta versions with the rows of each, as the user sees them.

    One row per version (`Lakehouse.history`: timestamp, operation, rows_added, stage,
    inputs with the versions read, git commit, user) plus `rows`, the row count of
    that version after the user's row filter, for the latest `max_versions` versions
    (null for older ones).  Needs the read grant (AccessDenied otherwise, audited).
    """
    hist = lh.history(name)
    recent = hist["version"].tail(max_versions).to_list()
    counts = pl.DataFrame(
        {
            "version": recent,
            "rows": [lh.scan(name, version=v).select(pl.len()).collect().item() for v in recent],
        },
        schema={"version": pl.Int64, "rows": pl.Int64},
    )
    return hist.join(counts, on="version", how="left").select(
        "version", "timestamp", "operation", "rows_added", "rows", "stage", "inputs", "user",
        "git_commit",
    )  # fmt: skip


def _orderable(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype.is_temporal() or dtype in (pl.String, pl.Boolean)


def profile(frame: pl.DataFrame | pl.LazyFrame, *, top: int = 3) -> pl.DataFrame:
    """Return one profile row per column of a frame.

    Columns: column, dtype, rows, nulls, null_rate, distinct (nulls not counted), min,
    max (as text, for any orderable type), mean (numbers and booleans) and
    top_values ("value (count)" of the `top` most frequent non-null values, for
    columns other than floats and times whose values repeat; "all distinct" when
    every value is unique).
    The counts and extremes come from one lazy pass; top values from one
    group-by per column, all collected together.

    Examples
    --------
    >>> p = profile(pl.DataFrame({"a": [1, 2, None], "b": ["x", "x", "y"]}))
    >>> p.select("column", "nulls", "distinct", "min", "max", "top_values").rows()
    [('a', 1, 2, '1', '2', 'all distinct'), ('b', 0, 2, 'x', 'y', 'x (2), y (1)')]
    """
    lf = frame.lazy()
    schema = lf.collect_schema()
    exprs: list[pl.Expr] = [pl.len().alias("__rows")]
    for i, (name, dtype) in enumerate(schema.items()):
        col = pl.col(name)
        exprs += [
            col.null_count().alias(f"n{i}"),
            col.drop_nulls().n_unique().alias(f"d{i}"),
        ]
        if _orderable(dtype):
            exprs += [
                col.min().cast(pl.String).alias(f"lo{i}"),
                col.max().cast(pl.String).alias(f"hi{i}"),
            ]
        if dtype.is_numeric() or dtype == pl.Boolean:
            exprs.append(col.cast(pl.Float64).mean().alias(f"m{i}"))
    stats = lf.select(exprs).collect().row(0, named=True)
    rows = stats["__rows"]
    wanted = [
        (i, name)
        for i, (name, dtype) in enumerate(schema.items())
        if not (dtype.is_float() or dtype.is_temporal() or dtype.is_nested())
        and 0 < stats[f"d{i}"] < rows - stats[f"n{i}"]
    ]
    tops = pl.collect_all(
        [
            lf.select(pl.col(name).drop_nulls().cast(pl.String).alias("v"))
            .group_by("v")
            .len()
            .sort(["len", "v"], descending=[True, False])
            .head(top)
            .select(pl.format("{} ({})", "v", "len").str.join(", ").alias("top"))
            for _, name in wanted
        ]
    )
    top_of = {i: t.item() for (i, _), t in zip(wanted, tops, strict=True)}
    out = [
        {
            "column": name,
            "dtype": str(dtype),
            "rows": rows,
            "nulls": stats[f"n{i}"],
            "null_rate": stats[f"n{i}"] / rows if rows else None,
            "distinct": stats[f"d{i}"],
            "min": stats.get(f"lo{i}"),
            "max": stats.get(f"hi{i}"),
            "mean": stats.get(f"m{i}"),
            "top_values": top_of.get(
                i, "all distinct" if rows and stats[f"d{i}"] == rows - stats[f"n{i}"] else ""
            ),
        }
        for i, (name, dtype) in enumerate(schema.items())
    ]
    return pl.DataFrame(
        out,
        schema={
            "column": pl.String,
            "dtype": pl.String,
            "rows": pl.Int64,
            "nulls": pl.Int64,
            "null_rate": pl.Float64,
            "distinct": pl.Int64,
            "min": pl.String,
            "max": pl.String,
            "mean": pl.Float64,
            "top_values": pl.String,
        },
    )


def metric_trends(
    frame: pl.DataFrame,
    *,
    segment: str,
    start: date,
    stop: date,
    time: str = "date",
    by: str | None = None,
    metrics: Iterable[str] | None = None,
) -> pl.DataFrame:
    """Return a daily metrics table in long format (time, metric, value) for one segment.

    Keeps the rows whose `by` column (the table's segment column; None: no
    segments, every row) equals `segment` and whose `time` falls from `start` to
    `stop` inclusive; `metrics` defaults to every numeric column other than `time`
    and `by`.

    Examples
    --------
    >>> kpis = pl.DataFrame({"date": [date(2025, 3, 1), date(2025, 3, 2)],
    ...                      "area": ["ALL", "ALL"], "orders": [3, 5]})
    >>> metric_trends(kpis, segment="ALL", by="area", start=date(2025, 3, 2),
    ...               stop=date(2025, 3, 9)).rows()
    [(datetime.date(2025, 3, 2), 'orders', 5.0)]
    """
    names = (
        [c for c, t in frame.schema.items() if t.is_numeric() and c not in (time, by)]
        if metrics is None
        else list(metrics)
    )
    in_range = pl.col(time).cast(pl.Date).is_between(start, stop)
    kept = frame.filter(in_range if by is None else (pl.col(by) == segment) & in_range)
    return (
        kept.select(time, *[pl.col(m).cast(pl.Float64) for m in names])
        .unpivot(index=time, on=names, variable_name="metric", value_name="value")
        .sort("metric", time)
    )
