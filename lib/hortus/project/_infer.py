"""Inferring types, ranges, PII, roles and the task of a source table: `infer`.

Re-exported by `hortus.project.scaffold`.
"""

from __future__ import annotations

import difflib
from datetime import date, datetime
from pathlib import Path

import polars as pl

from hortus.lakehouse.contracts import Column, parse_expr
from hortus.project._draft import (
    _EXTRA_DATES,
    _EXTRA_LAYOUTS,
    _ISO_LAYOUT,
    ADDRESS_RE,
    BIRTH_RE,
    DIRECT_KINDS,
    DIRECT_SHARE,
    ID_NAME_RE,
    MAX_ALLOWED,
    MAX_CLASSES,
    NAME_COLUMN_RE,
    SCAN_ROWS,
    SENSITIVE_NAMES,
    TASKS,
    ColumnDraft,
    Draft,
    InitError,
    _plain,
)
from hortus.project._read import _slug, read_source


def _parse(s: pl.Series, ctype: str) -> pl.Series:
    return pl.select(parse_expr(Column(s.name, ctype), pl.lit(s))).to_series()


def _parses(s: pl.Series, ctype: str) -> tuple[bool, pl.Series]:
    typed = _parse(s, ctype)
    return bool(typed.null_count() == s.null_count()), typed


def _normalise_datetime(s: pl.Series) -> pl.Series | None:
    """Return ISO UTC strings of a datetime column in another layout, or None."""
    parsed = pl.select(
        pl.coalesce(
            [
                pl.lit(s).str.to_datetime(f, time_unit="us", time_zone="UTC", strict=False)
                for f in _EXTRA_LAYOUTS
            ]  # fmt: skip
        )
    ).to_series()
    if parsed.null_count() != s.null_count():
        return None
    return parsed.dt.strftime(_ISO_LAYOUT).alias(s.name)


def _normalise_date(s: pl.Series) -> pl.Series | None:
    parsed = pl.select(
        pl.coalesce([pl.lit(s).str.to_date(f, strict=False) for f in _EXTRA_DATES])
    ).to_series()
    if parsed.null_count() != s.null_count():
        return None
    return parsed.dt.strftime("%Y-%m-%d").alias(s.name)


def infer_type(s: pl.Series) -> tuple[str, pl.Series, pl.Series | None]:
    """Return (contract type, typed values, normalised raw values or None) of a string column.

    The contract's own parsing (`hortus.lakehouse.contracts.parse_expr`) decides, so a column
    typed here never fails silver's `type` rule.  0/1 columns are int; `true`/`false`
    bool; dates and datetimes in other common layouts are normalised to ISO 8601 UTC
    (the third value: the strings the landing copy holds instead).

    Examples
    --------
    >>> infer_type(pl.Series("x", ["1", "2", None]))[0]
    'int'
    >>> infer_type(pl.Series("t", ["2025-03-01T08:00:00", "2025-03-02T09:30:00"]))[0]
    'datetime'
    """
    values = s.drop_nulls()
    if values.len() == 0:
        return "string", s, None
    lowered = set(values.str.to_lowercase().unique().to_list())
    if lowered <= {"true", "false"}:
        return "bool", _parse(s, "bool"), None
    for ctype in ("int", "float", "date", "datetime"):
        ok, typed = _parses(s, ctype)
        if ok:
            return ctype, typed, None
    if values.str.contains(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}$").all():
        fixed = _normalise_date(s)
        if fixed is not None:
            return "date", _parse(fixed, "date"), fixed
    if values.str.contains(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}[ T]\d").all():
        fixed = _normalise_datetime(s)
        if fixed is not None:
            return "datetime", _parse(fixed, "datetime"), fixed
    return "string", s, None


def infer_task(typed: pl.Series, ctype: str) -> str:
    """Return the task a target suggests: regression, binary or multiclass.

    A numeric target with more than 20 distinct values (or any non-integer value)
    is regression; 2 distinct values binary; 3..20 multiclass.

    Examples
    --------
    >>> infer_task(pl.Series([0, 1, 1, 0]), "int")
    'binary'
    >>> infer_task(pl.Series([0.5, 1.25, 3.0]), "float")
    'regression'
    """
    values = typed.drop_nulls()
    n = values.n_unique()
    if ctype in ("int", "float"):
        whole = ctype == "int" or bool((values == values.round(0)).all())
        if n > MAX_CLASSES or not whole:
            return "regression"
    if n <= 2:
        return "binary"
    return "multiclass"


def _suggest(name: str, columns: list[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _need_column(name: str, columns: list[str], option: str, path: Path) -> None:
    if name not in columns:
        raise InitError(
            f"{option} {name!r}: no such column in {path}{_suggest(name, columns)}; "
            f"its columns: {', '.join(columns)}"
        )


def _pii_findings(df: pl.DataFrame, columns: list[str]) -> dict[str, tuple[str, float]]:
    """Return {column: (kind, share of non-null sampled values)} from the PII scanner."""
    from hortus.checks.pii_scan import NAME_RE, scan_frame

    if not columns:
        return {}
    sample = df.select(columns)
    if sample.height > SCAN_ROWS:
        sample = sample.sample(n=SCAN_ROWS, seed=0)
    result = scan_frame(sample, table=f"source.{sample.width}", check_tokens=False)
    found: dict[str, tuple[str, float]] = {}
    for f in result.findings:
        nonnull = max(sample.height - sample[f.column].null_count(), 1)
        share = f.rows / nonnull
        if f.kind in DIRECT_KINDS and share >= DIRECT_SHARE:
            if f.column not in found or share > found[f.column][1]:
                found[f.column] = (f.kind, share)
        elif f.kind == "DOB":
            found.setdefault(f.column, ("DOB", share))
    # personal names: the scanner finds them next to other personal data; a column
    # of names on its own is found by its values' shape
    for c in columns:
        if c in found:
            continue
        values = sample[c].drop_nulls()
        if values.len() == 0:
            continue
        share = float(values.str.contains(f"^{NAME_RE}$").mean())
        # name-shaped values ("Jane Doe"): a column of names, unless a few categories
        if share >= 0.8 and (NAME_COLUMN_RE.search(c) or values.n_unique() > MAX_ALLOWED):
            found[c] = ("NAME", share)
    return found


def infer(
    source: Path,
    *,
    target: str,
    time: str | None = None,
    task: str | None = None,
    name: str | None = None,
    features: list[str] | None = None,
    sensitive: list[str] | None = None,
    ids: list[str] | None = None,
) -> Draft:
    """Read one table and draft a project from it (nothing is written).

    `features` (optional) is the explicit feature list; by default every column
    without another role.  `sensitive` adds sensitive attributes to those found by
    name; `ids` adds identifiers to those found by name and uniqueness.
    """
    source = Path(source)
    df = read_source(source)
    columns = df.columns
    if not target:
        raise InitError(f"--target is required: name the column to predict; columns: {columns}")
    _need_column(target, columns, "--target", source)
    if time is not None:
        _need_column(time, columns, "--time", source)
    for opt, names in (("--features", features), ("--sensitive", sensitive), ("--ids", ids)):
        for c in names or ():
            _need_column(c, columns, opt, source)
    if task is not None and task not in TASKS:
        raise InitError(f"--task {task!r}: expected one of {', '.join(TASKS)}")
    notes: list[str] = []
    n = df.height
    drafts: dict[str, ColumnDraft] = {}
    typed_cols: dict[str, pl.Series] = {}
    fixed: dict[str, pl.Series] = {}
    for c in columns:
        ctype, typed, norm = infer_type(df[c])
        if norm is not None:
            fixed[c] = norm
            notes.append(f"{c}: values normalised to ISO 8601 ({ctype}) in the landing copy")
        typed_cols[c] = typed
        d = ColumnDraft(c, ctype, nullable=bool(typed.null_count()), distinct=typed.n_unique())
        values = typed.drop_nulls()
        if ctype in ("int", "float", "date", "datetime") and values.len():
            d.min, d.max = _plain(values.min()), _plain(values.max())
        if (
            ctype == "string"
            and 0 < values.n_unique() <= MAX_ALLOWED
            and values.len() >= 2 * values.n_unique()
        ):
            d.allowed = sorted(values.unique().to_list())
        drafts[c] = d

    # ---- time
    shop_opened = None
    export_day = date.today()
    if time is not None:
        t = drafts[time]
        if t.type not in ("date", "datetime"):
            bad = df[time].drop_nulls()
            example = bad.head(3).to_list()
            raise InitError(
                f"--time {time!r}: its values do not parse as dates or datetimes "
                f"(e.g. {example}); use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[Z] "
                "(other common layouts are converted), or pick another --time"
            )
        if t.nullable:
            raise InitError(
                f"--time {time!r}: {typed_cols[time].null_count()} row(s) have no value; "
                "every row needs its time (fill them or drop those rows)"
            )
        t.role, t.why = "time", "time column: hold-out = the latest rows; not a feature"
        first, last = typed_cols[time].min(), typed_cols[time].max()
        first_day = (
            first if isinstance(first, date) and not isinstance(first, datetime) else first.date()
        )
        last_day = (
            last if isinstance(last, date) and not isinstance(last, datetime) else last.date()
        )
        shop_opened = f"{first_day.isoformat()}T00:00:00Z"
        export_day = last_day

    # ---- target and task
    tgt = drafts[target]
    y = typed_cols[target]
    if y.null_count() == n:
        raise InitError(f"--target {target!r} has no values; pick a column with labels")
    classes = y.drop_nulls().n_unique()
    if classes < 2:
        raise InitError(
            f"--target {target!r} has one value only ({y.drop_nulls()[0]!r} in all "
            f"{n - y.null_count()} labelled rows): a model needs at least two classes; "
            "pick another --target, or add rows of the other class(es)"
        )
    inferred = infer_task(y, tgt.type)
    task = task or inferred
    if task == "binary":
        if classes > 2:
            raise InitError(
                f"--target {target!r} has {classes} values but --task binary needs two; "
                f"use --task {inferred}"
            )
        ok = tgt.type == "bool" or (tgt.type == "int" and set(y.drop_nulls().to_list()) <= {0, 1})
        if not ok:
            shown = sorted(map(str, y.drop_nulls().unique().to_list()))
            raise InitError(
                f"--target {target!r} holds {shown}: a binary target must be 0/1 or "
                "true/false; recode it in the file, or use --task multiclass"
            )
    elif task == "multiclass":
        if tgt.type not in ("string", "int", "bool"):
            raise InitError(
                f"--target {target!r} is {tgt.type}: multiclass needs class labels "
                "(strings or integers); use --task regression"
            )
        if classes > 50:
            raise InitError(
                f"--target {target!r} has {classes} distinct values: too many classes; "
                "use --task regression for a numeric target, or group the classes"
            )
    elif task == "regression" and tgt.type not in ("int", "float"):
        raise InitError(
            f"--target {target!r} is {tgt.type}, not numeric: regression needs numbers; "
            f"use --task {'multiclass' if classes > 2 else 'binary'}"
        )
    if tgt.nullable:
        notes.append(f"{target}: {y.null_count()} row(s) without a label")
    tgt.role, tgt.why = "target", f"target ({task})"
    if tgt.allowed is None and task != "regression" and tgt.type == "string":
        tgt.allowed = sorted(y.drop_nulls().unique().to_list())

    # ---- personal data, identifiers, sensitive attributes
    strings = [c for c in columns if drafts[c].type == "string" and c not in (target, time)]
    pii = _pii_findings(df, strings)
    for c, (kind, share) in pii.items():
        d = drafts[c]
        if kind == "DOB":
            d.pii, d.sensitive, d.role = "quasi", True, "sensitive"
            d.why = "date of birth (PII scanner): quasi-identifier, sensitive; not a feature"
            continue
        d.pii, d.role, d.allowed = "direct", "pii", None
        d.why = (
            f"PII scanner: {kind} in {share:.0%} of sampled values; tokenised in silver, "
            "not a feature"
        )
    for c in columns:
        d = drafts[c]
        if c in (target, time) or d.pii != "none":
            continue
        if BIRTH_RE.search(c) and d.type in ("date", "datetime"):
            d.pii, d.sensitive, d.role = "quasi", True, "sensitive"
            d.why = "date of birth: quasi-identifier, sensitive (confirm); not a feature"
        elif d.type == "string" and ADDRESS_RE.search(c):
            d.pii, d.role, d.allowed = "direct", "pii", None
            d.why = "postal address (by name): tokenised in silver, not a feature"
        elif d.type == "string" and NAME_COLUMN_RE.search(c) and d.distinct > MAX_ALLOWED:
            d.pii, d.role, d.allowed = "direct", "pii", None
            d.why = "personal name (by column name): tokenised in silver, not a feature"
    for c in columns:
        d = drafts[c]
        if c in (target, time) or d.role != "feature":
            continue
        unique = d.distinct == n and d.type in ("string", "int") and not d.nullable
        if c in (ids or ()) or ID_NAME_RE.search(c) or unique:
            d.role, d.allowed = "id", None
            d.why = "identifier (" + ("unique per row" if unique else "named like an id") + ")"
            d.min = d.max = None
            if c in (features or ()):
                raise InitError(
                    f"--features names {c!r}, which looks like an identifier ("
                    f"{'a different value in every row' if unique else 'named like an id'}): "
                    "a model would memorise rows instead of learning; drop it from "
                    "--features (it is kept as an id)"
                )
    wanted_sensitive = set(sensitive or ())
    for c in columns:
        d = drafts[c]
        if c in (target, time) or d.role in ("id", "pii"):
            if c in wanted_sensitive:
                raise InitError(f"--sensitive {c!r} is the {d.role} column; it cannot be sensitive")
            continue
        if c.lower() in SENSITIVE_NAMES or c in wanted_sensitive:
            # a feature, as the plant shop's region and age band are: the gate judges
            # fairness across the sensitive features and fails one that drives the model
            d.sensitive = True
            d.why = (
                "confirm: sensitive attribute, a feature: the gate judges fairness across "
                "its groups and fails it if it (or a proxy) ranks high in importance"
            )
            if d.pii == "none" and d.type == "string":
                d.pii = "quasi"
    for c in columns:
        d = drafts[c]
        if d.role == "feature" and d.distinct <= 1:
            d.role, d.why = "constant", "one value in every row: not a feature"
        elif d.role == "feature" and d.type == "string" and d.allowed is None:
            if df[c].drop_nulls().str.len_chars().mean() > 40:
                d.pii, d.role = "free_text", "text"
                d.why = "free text: personal data redacted in silver; not a feature"
            elif d.distinct > MAX_ALLOWED * 10:
                notes.append(f"{c}: {d.distinct} distinct strings (a high-cardinality feature)")

    # ---- explicit features
    if features:
        for c in features:
            d = drafts[c]
            if d.role in ("target", "time", "pii"):
                raise InitError(
                    f"--features names {c!r}, the {d.role} column"
                    + (" (direct personal data, tokenised in silver)" if d.role == "pii" else "")
                    + "; drop it from --features"
                )
        for c in columns:
            d = drafts[c]
            if c in features and d.role != "feature":
                d.role, d.why = "feature", (d.why + "; a feature by --features").lstrip("; ")
            elif c not in features and d.role == "feature":
                d.role, d.why = "unused", "not in --features"
    if not [c for c in drafts.values() if c.role == "feature"]:
        raise InitError(
            f"{source}: no column is left as a feature (roles: "
            + ", ".join(f"{c.name}={c.role}" for c in drafts.values())
            + "); add feature columns or pass --features"
        )

    # ---- the landing copy: the source bytes when silver reads them as they are
    table = _slug(source.stem, "table")
    project = _slug(name or table, "name")
    if fixed or source.suffix.lower() != ".csv":
        landing = df.with_columns(list(fixed.values())).write_csv().encode("utf-8")
    else:
        landing = source.read_bytes()
    return Draft(
        source=source,
        name=project,
        table=table,
        task=task,
        target=target,
        time=time,
        columns=list(drafts.values()),
        landing=landing,
        landing_name=f"{table}-{export_day.isoformat()}.csv",
        rows=n,
        shop_opened=shop_opened,
        notes=notes,
    )
