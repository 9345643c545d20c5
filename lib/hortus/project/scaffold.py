"""`hortus init`: scaffold a new Hortus project from one table (CSV or Parquet).

`infer(source, ...)` reads the table and drafts everything a project needs:

- a draft data contract (`contracts.yaml`): per column its type (the same parsing
  silver applies, so a drafted type never quarantines a row of the source),
  nullability, observed range, allowed values of low-cardinality strings, the PII
  class the PII scanner (`hortus.checks.pii_scan`) and column names suggest, and the
  sensitive attributes to confirm;
- the roles of the columns: the target, the time column, identifiers (unique per row
  or named like `id` / `*_id`: never features), direct personal data (tokenised in
  silver, never features), sensitive attributes (judged by the fairness check, not
  features by default), segments (low-cardinality strings, sensitive ones included)
  and the features (everything else);
- the task when `--task` is absent: a numeric target with many values is
  regression, two classes binary, 3..20 multiclass.

`init_project(dest, draft)` writes the project into a temporary sibling folder and
renames it to `dest` only when every file is written and the project loads, so a
failure leaves nothing behind: the project definition `hortus.yaml`, `params.yaml`,
`dvc.yaml`, `access_policy.yaml`, the four notebooks, data and pipeline tests, a
Makefile, `pyproject.toml`, a README, `.gitignore`/`.dvcignore`, the landing copy of the
table under `data/` pinned by `data.dvc`, a git repository with DVC initialised.

Dependency on Hortus: Hortus is not on a package index, so the new project depends
on it by path (`[tool.uv.sources] hortus = {path = <this checkout>, editable = true}`):
the project follows the checkout it was made from.  To pin a Hortus build instead,
build a wheel in the checkout (`uv build`) and point the source at the wheel file.

Every mistake in the input (no header, empty file, unknown target or time column,
one-class target, unparseable time, an identifier chosen as a feature) raises
`InitError` with what to change, before anything is written.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from hortus.errors import HortusError
from hortus.lakehouse.contracts import Column, parse_expr

TASKS = ("binary", "multiclass", "regression")
MAX_CLASSES = 20  # at most this many distinct target values is classification
MAX_ALLOWED = 20  # strings with at most this many distinct values get an allowed list
MIN_ROWS = 20  # fewer rows than this cannot train and judge a model
SCAN_ROWS = 5000  # rows sampled by the PII scanner
ID_NAME_RE = re.compile(
    r"(?i)^(id|uuid|guid|key|index|row|rownum|row_?id)$|(_id|_uuid|_key|Id|ID)$"
)
NAME_COLUMN_RE = re.compile(
    r"(?i)^(full_?name|first_?name|last_?name|given_?name|family_?name|surname|"
    r"customer_?name|client_?name|person_?name|name)$"
)
ADDRESS_RE = re.compile(r"(?i)(^|_)(address|street|postcode|zip_?code|postal_?code)($|_)")
BIRTH_RE = re.compile(r"(?i)birth|(^|_)dob($|_)")
#: column names that suggest a sensitive (protected) attribute; confirm each
SENSITIVE_NAMES = frozenset({
    "sex", "gender", "race", "ethnicity", "ethnic_group", "ethnic_origin", "age", "age_band",
    "age_group", "religion", "nationality", "citizenship", "disability", "marital_status",
    "sexual_orientation", "pregnancy", "pregnant", "skin_colour", "skin_color", "caste",
    "political_opinion", "union_membership", "national_origin",
})  # fmt: skip
#: PII scanner kinds that make a column a direct identifier when most values match
DIRECT_KINDS = ("EMAIL", "PHONE", "IP", "IBAN", "CARD", "NAME")
DIRECT_SHARE = 0.5  # share of non-null sampled values that must match
_ISO_LAYOUT = "%Y-%m-%dT%H:%M:%S%.6fZ"  # how normalised datetimes are written to landing
#: extra datetime layouts accepted from the source (normalised to ISO UTC in landing)
_EXTRA_LAYOUTS = ("%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f",
                  "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%d/%m/%Y %H:%M:%S",
                  "%m/%d/%Y %H:%M:%S")  # fmt: skip
_EXTRA_DATES = ("%Y/%m/%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y")


class InitError(HortusError):
    """`hortus init` cannot make a project from this input; the message says what to change."""


@dataclass
class ColumnDraft:
    """What init inferred about one column of the source table."""

    name: str
    type: str
    nullable: bool
    distinct: int
    min: Any = None
    max: Any = None
    allowed: list | None = None
    pii: str = "none"
    sensitive: bool = False
    role: str = "feature"  # feature | target | time | id | pii | sensitive | constant
    why: str = ""  # the reason for the role / PII class, written as a comment

    def contract(self, *, time: bool) -> dict:
        """Return the contract mapping of this column."""
        out: dict[str, Any] = {"type": self.type, "nullable": self.nullable}
        if time:
            out["min"] = "@shop_opened"
            out["max"] = "@export"
        elif self.min is not None and self.pii == "none":
            out["min"], out["max"] = self.min, self.max
        if self.allowed is not None:
            out["allowed"] = self.allowed
        if self.pii != "none":
            out["pii"] = self.pii
        if self.sensitive:
            out["sensitive"] = True
        out["description"] = _describe(self)
        return out


@dataclass
class Draft:
    """Everything `init_project` writes, inferred from one table."""

    source: Path
    name: str  # project and model name
    table: str  # silver table name
    task: str
    target: str
    time: str | None
    columns: list[ColumnDraft]
    landing: bytes  # the CSV bytes written to data/<table>/
    landing_name: str  # data/<table>/<landing_name>
    rows: int
    shop_opened: str | None
    notes: list[str] = field(default_factory=list)

    def role(self, role: str) -> list[str]:
        """Return the names of the columns with a role."""
        return [c.name for c in self.columns if c.role == role]

    @property
    def features(self) -> list[str]:
        return self.role("feature")

    @property
    def ids(self) -> list[str]:
        return self.role("id")

    @property
    def sensitive(self) -> list[str]:
        return [c.name for c in self.columns if c.sensitive]

    @property
    def segments(self) -> list[str]:
        """Low-cardinality string columns (sensitive ones included) that are not roles."""
        return [
            c.name
            for c in self.columns
            if c.type in ("string", "bool")
            and c.allowed is not None
            and 2 <= c.distinct <= MAX_ALLOWED
            and c.role in ("feature", "sensitive")
        ]

    @property
    def direct(self) -> list[str]:
        return [c.name for c in self.columns if c.pii == "direct"]


# ---------------------------------------------------------------- reading


def _slug(text: str, what: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    slug = re.sub(r"_?\d{4}_\d{2}_\d{2}$", "", slug)  # a trailing export date
    if not slug or not slug[0].isalpha():
        slug = f"t_{slug}" if slug else "table"
    return slug


def _read_csv(path: Path) -> pl.DataFrame:
    raw = path.read_bytes()
    if not raw.strip():
        raise InitError(f"{path} is empty: it needs a header line naming the columns and data rows")
    text = raw.decode("utf-8", errors="replace")
    first = text.splitlines()[0]
    header = next(csv.reader(io.StringIO(first)))
    _check_header(path, header)
    try:
        df = pl.read_csv(raw, infer_schema=False, encoding="utf8-lossy")
    except pl.exceptions.PolarsError as exc:
        raise InitError(f"{path}: not a readable CSV file ({exc})") from None
    return df


def _check_header(path: Path, header: list[str]) -> None:
    """Refuse a first line that looks like data rather than column names."""
    names = [h.strip() for h in header]
    empty = [i + 1 for i, h in enumerate(names) if not h]
    dup = sorted({h for h in names if h and names.count(h) > 1})
    data_like = [h for h in names if h and _looks_like_value(h)]
    if data_like and (len(data_like) * 2 >= len(names) or len(names) == 1):
        raise InitError(
            f"{path} has no header: its first line ({', '.join(names[:6])}"
            f"{', ...' if len(names) > 6 else ''}) looks like data, not column names. "
            "Add a first line naming every column (e.g. customer_id,age,churned), then rerun"
        )
    if empty:
        raise InitError(
            f"{path}: the header has no name for column(s) {empty} (1-based); "
            "name every column in the first line"
        )
    if dup:
        raise InitError(f"{path}: the header repeats column name(s) {dup}; make every name unique")
    internal = [h for h in names if h.startswith("_")]
    if internal:
        raise InitError(
            f"{path}: column name(s) {internal} start with '_', which Hortus reserves for "
            "ingestion metadata; rename them"
        )


def _looks_like_value(text: str) -> bool:
    t = text.strip().strip('"')
    if re.fullmatch(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?", t):
        return True
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}([ T].*)?", t):
        return True
    return t.lower() in ("true", "false")


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        df = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InitError(f"{path}: not a readable Parquet file ({exc})") from None
    if not df.columns:
        raise InitError(f"{path} is empty: it has no columns")
    _check_header(path, df.columns)
    out = []
    for name, dtype in df.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                col = col.dt.replace_time_zone("UTC")
            col = col.dt.convert_time_zone("UTC").dt.strftime(_ISO_LAYOUT)
        elif dtype == pl.Date:
            col = col.dt.strftime("%Y-%m-%d")
        elif dtype == pl.Boolean:
            col = col.replace_strict({True: "true", False: "false"}, return_dtype=pl.String)
        elif dtype.is_nested():
            col = col.map_elements(str, return_dtype=pl.String)  # lists, structs: as text
        out.append(col.cast(pl.String).alias(name))
    return df.select(out)


def read_source(path: Path) -> pl.DataFrame:
    """Read a CSV or Parquet table as strings (empty values are null)."""
    path = Path(path)
    if not path.is_file():
        raise InitError(f"{path}: no such file; pass --from FILE.csv or FILE.parquet")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        df = _read_csv(path)
    elif suffix in (".parquet", ".pq"):
        df = _read_parquet(path)
    else:
        raise InitError(f"{path}: expected a .csv or .parquet file, got {suffix or 'no suffix'}")
    df = df.with_columns(
        [pl.when(pl.col(c).str.strip_chars() != "").then(pl.col(c)).alias(c) for c in df.columns]
    )
    if df.height == 0:
        raise InitError(
            f"{path} is empty: it has a header ({', '.join(df.columns[:6])}) but no data rows"
        )
    if df.height < MIN_ROWS:
        raise InitError(
            f"{path} has {df.height} data row(s); a model needs at least {MIN_ROWS} "
            "(several hundred to judge segments and fairness)"
        )
    return df


# ---------------------------------------------------------------- inference


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


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return float(value)
    return value


def _describe(c: ColumnDraft) -> str:
    return f"TODO: what {c.name} means ({c.distinct:,} distinct values in the source)."


# ---------------------------------------------------------------- rendering

TEMPLATES = Path(__file__).parent / "templates" / "init"
NOTEBOOKS = ("explore", "train", "monitor", "model_report")


def hortus_checkout() -> Path:
    """Return the Hortus checkout this package runs from (the folder with its pyproject)."""
    here = Path(__file__).resolve()
    root = next(
        (p for p in here.parents if (p / "pyproject.toml").exists() and (p / "notebooks").is_dir()),
        None,
    )
    if root is None:
        raise InitError(
            f"hortus init needs a Hortus source checkout (lib/hortus, notebooks/); this "
            f"hortus runs from {Path(__file__).parent}: install it from the checkout "
            "(`uv sync` or `pip install -e <checkout>`)"
        )
    return root


def _flow(value: Any) -> str:
    """Return a value as one line of YAML (flow style), quoted where YAML needs it."""
    text = yaml.safe_dump([value], default_flow_style=True, width=100_000, sort_keys=False)
    return text.strip()[1:-1]


CONTRACT_HEADER = """\
# Data contract of {name}, drafted by `hortus init` from {source} ({rows} rows).
# A DRAFT: confirm every line.  Ranges and allowed values are the ones observed in
# the file: new data outside them is quarantined, so widen them where the data may go.
#
# One contract per table drives: ingest validation and quarantine rules, PII
# tokenisation, the model input signature and the generated data dictionary.
# Column keys:
#   type:     string | int | float | bool | date | datetime   (datetime = UTC, microseconds)
#   nullable: false means the value is required (rule `required`)
#   min/max:  numeric or temporal bounds (rules `min` / `max`); a datetime max of
#             "@export" means "not after the landing file's export time" (file date + 1 day)
#             plus the silver `future_tolerance` parameter; "@shop_opened" is the
#             top-level `shop_opened` (the earliest time in the data, at midnight UTC)
#   allowed:  closed set of values (rule `allowed`)
#   pattern:  regular expression the whole value must match (rule `pattern`)
#   pii:      none | direct | quasi | free_text
#             direct    -> replaced by a keyed HMAC token in silver (raw stays in restricted bronze)
#             quasi     -> kept (masked on read for users without `unmask`)
#             free_text -> e-mails, phones, cards, IBANs, IPs and dates redacted in silver
#   sensitive: true marks attributes used for fairness/segment checks (confirm each)
# Table keys: layer, description, owner, freshness_sla_hours, primary_key,
#   landing (glob under data/ and format csv | jsonl; files may be gzip-compressed)
"""


def render_contract(d: Draft) -> str:
    """Return contracts.yaml: the draft contract of the one table, with comments."""
    lines = [CONTRACT_HEADER.format(name=d.table, source=d.source.name, rows=d.rows)]
    lines.append("version: 1")
    lines.append(f"domain: {d.name}")
    if d.shop_opened:
        lines.append(f'shop_opened: "{d.shop_opened}"  # the earliest {d.time} (midnight UTC)')
    lines += ["", "tables:", f"  {d.table}:", "    layer: silver"]
    lines.append(f"    description: {_flow(f'TODO: describe the table (from {d.source.name}).')}")
    lines.append("    owner: data-engineers  # TODO: the team that owns this data")
    lines.append("    freshness_sla_hours: null  # TODO: hours between new files, when known")
    ids = [c.name for c in d.columns if c.role == "id" and c.distinct == d.rows]
    if ids:
        lines.append(f"    primary_key: {_flow(ids[:1])}  # unique per row in the file")
    if d.time:
        lines.append(f"    order_by: {d.time}")
    lines.append(f'    landing: {{glob: "{d.table}/*.csv*", format: csv}}')
    lines.append("    columns:")
    width = max(len(c.name) for c in d.columns) + 1
    for c in d.columns:
        key = _flow(c.name)
        comment = f"  # {c.why}" if c.why else ""
        body = _flow(c.contract(time=c.name == d.time))
        lines.append(f"      {(key + ':').ljust(width + 1)} {body}{comment}")
    return "\n".join(lines) + "\n"


def render_project(d: Draft) -> str:
    """Return hortus.yaml: one model on the silver table, no features/examples/kpis."""
    sens = d.sensitive
    features = d.features
    lines = [
        "# The project definition (hortus.project), drafted by `hortus init`.  Every stage,",
        "# CLI command, monitor, notebook, report and the docs site reads it.  Tunable",
        "# numbers stay in params.yaml; this file says *what* the project is.",
        "version: 1",
        f"name: {d.name}",
        f"description: {_flow(f'TODO: what {d.name} is for (from {d.source.name}).')}",
        "contracts: contracts.yaml",
        "# no `features`, `examples` or `kpis`: the model trains on its silver table directly",
        "models:",
        f"  {d.name}:",
        f"    description: {_flow(f'Predicts {d.target} ({d.task}).')}",
        f"    task: {d.task}",
        f"    table: silver.{d.table}",
        f"    target: {_flow(d.target)}",
        "    # every column without another role (identifiers, direct personal data and",
        "    # dates of birth are left out).  Sensitive attributes are features: the gate",
        "    # judges fairness across the sensitive features (and fails one that ranks high",
        "    # in importance); one you drop from here is no longer judged",
        f"    features: {_flow(features)}",
        "    categorical: auto  # the string and bool features",
    ]
    if d.time:
        lines.append(f"    time: {_flow(d.time)}  # the hold-out is the latest rows")
    lines.append("    # metrics per value of each (low-cardinality string columns)")
    lines.append(f"    segments: {_flow(d.segments)}")
    if sens:
        lines.append("    # confirm: fairness is judged across the groups of each")
        lines.append(f"    sensitive: {_flow(sens)}")
    else:
        lines.append("    sensitive: auto  # none found by name: list them when there are")
    lines.append("    # identifiers: never features; changing one must not change a prediction")
    lines.append(f"    ids: {_flow(d.ids)}")
    return "\n".join(lines) + "\n"


def _metric(task: str) -> str:
    from hortus.models.modeling import primary_metric

    return primary_metric(task)[0]


def render_params(d: Draft) -> str:
    """Return params.yaml: the generic sections of the Hortus example, for this model."""
    metric = _metric(d.task)
    segment_metric = {"binary": "roc_auc"}.get(d.task, metric)
    invariance = _flow(d.ids)
    text = (TEMPLATES / "params.yaml").read_text(encoding="utf-8")
    reps = {
        "@@MODEL@@": d.name,
        "@@TARGET@@": d.target,
        "@@SEGMENT_METRIC@@": segment_metric,
        "@@INVARIANCE@@": invariance,
        "@@REFERENCE_DAYS@@": "null",
    }
    for k, v in reps.items():
        text = text.replace(k, v)
    return text


def render_dvc(d: Draft) -> str:
    """Return dvc.yaml: the generic stages, with deps on this project's own files."""
    text = (TEMPLATES / "dvc.yaml").read_text(encoding="utf-8")
    metric = _metric(d.task)
    curve_y = {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "rmse"}[d.task]
    del metric
    return (
        text.replace("@@MODEL@@", d.name)
        .replace("@@TABLE@@", d.table)
        .replace("@@CURVE_Y@@", curve_y)
    )


def _fill(text: str, d: Draft, checkout: Path) -> str:
    roles = "; ".join(
        f"{role}: {', '.join(names)}"
        for role, names in (
            ("target", [d.target]),
            ("time", [d.time] if d.time else []),
            ("features", d.features),
            ("ids", d.ids),
            ("direct personal data (tokenised)", d.direct),
            ("sensitive (confirm)", d.sensitive),
            ("segments", d.segments),
            ("not used", [c.name for c in d.columns if c.role in ("constant", "unused", "text")]),
        )
        if names
    )
    note = (
        " (converted to CSV with datetimes as ISO 8601 UTC)"
        if d.landing != _source_bytes(d)
        else " (the same bytes)"
    )
    reps = {
        "@@NAME@@": d.name,
        "@@MODEL@@": d.name,
        "@@TABLE@@": d.table,
        "@@TARGET@@": d.target,
        "@@TASK@@": d.task,
        "@@SOURCE@@": d.source.name,
        "@@ROWS@@": f"{d.rows:,}",
        "@@HORTUS_ROOT@@": str(checkout),
        "@@LANDING@@": d.landing_name,
        "@@LANDING_NOTE@@": note,
        "@@ROLES@@": roles,
        "@@SENSITIVE_GLOBS@@": _flow([f"silver.{d.table}.{c}" for c in d.sensitive]),
    }
    for k, v in reps.items():
        text = text.replace(k, v)
    return text


def _source_bytes(d: Draft) -> bytes:
    return d.source.read_bytes() if d.source.suffix.lower() == ".csv" else b""


def files(d: Draft, checkout: Path) -> dict[str, bytes]:
    """Return every file of the new project (relative path -> bytes), data included."""
    out: dict[str, str | bytes] = {
        "contracts.yaml": render_contract(d),
        "hortus.yaml": render_project(d),
        "params.yaml": render_params(d),
        "dvc.yaml": render_dvc(d),
        f"data/{d.table}/{d.landing_name}": d.landing,
    }
    for rel in ("Makefile", "README.md", "pyproject.toml", "access_policy.yaml",
                "tests/conftest.py", "tests/test_data.py", "tests/test_pipeline.py"):  # fmt: skip
        out[rel] = _fill((TEMPLATES / rel).read_text(encoding="utf-8"), d, checkout)
    out[".gitignore"] = (TEMPLATES / "gitignore").read_text(encoding="utf-8")
    out[".dvcignore"] = (TEMPLATES / "dvcignore").read_text(encoding="utf-8")
    for nb in NOTEBOOKS:
        out[f"notebooks/{nb}.py"] = (checkout / "notebooks" / f"{nb}.py").read_bytes()
    return {k: v.encode("utf-8") if isinstance(v, str) else v for k, v in out.items()}


# ---------------------------------------------------------------- writing


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    env = os.environ | {"DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    except OSError as exc:
        raise InitError(f"{what}: cannot run {cmd[0]} ({exc})") from None
    if done.returncode != 0:
        raise InitError(f"{what} failed: {(done.stderr or done.stdout).strip()[-800:]}")


def _git_identity(cwd: Path) -> bool:
    done = subprocess.run(["git", "var", "GIT_COMMITTER_IDENT"], cwd=cwd, capture_output=True)
    return done.returncode == 0


def init_project(dest: Path, d: Draft, *, commit: bool = True) -> dict:
    """Write the project of a draft to `dest` (which must not exist or be empty).

    Everything is written into a temporary sibling folder: the files, `git init`,
    `dvc init` (analytics and update checks off), `dvc add data` (data.dvc), a check
    that the project and its contracts load, and an initial commit when git knows who
    you are.  Only then is the folder renamed to `dest`; on any failure it is removed.
    """
    dest = Path(dest).absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InitError(f"{dest} already exists and is not empty; pick a new folder")
    if shutil.which("git") is None:
        raise InitError("hortus init needs git (DVC pins the data inside a git repository)")
    checkout = hortus_checkout()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.init-", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the project is an ordinary folder
    try:
        for rel, data in files(d, checkout).items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        _check_loads(tmp, d)
        dvc = [sys.executable, "-m", "dvc"]
        _run(["git", "init", "--quiet"], tmp, "git init")
        _run([*dvc, "init", "--quiet"], tmp, "dvc init")
        # offline: no analytics, no update checks; nothing staged in git behind your back
        (tmp / ".dvc" / "config").write_text(
            "[core]\n    analytics = false\n    check_update = false\n    autostage = false\n",
            encoding="utf-8",
        )
        _run([*dvc, "add", "--quiet", "data"], tmp, "dvc add data")
        _run(["git", "add", "-A"], tmp, "git add")
        committed = False
        if commit and _git_identity(tmp):
            msg = f"hortus init {dest.name} --from {d.source.name}: draft project"
            _run(["git", "commit", "--quiet", "-m", msg], tmp, "git commit")
            committed = True
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"path": str(dest), "committed": committed}


def _check_loads(root: Path, d: Draft) -> None:
    """Refuse to finish a project whose definition or contract does not load."""
    from hortus.errors import ContractError
    from hortus.lakehouse.catalog import Catalog
    from hortus.project.definition import Project, ProjectError

    try:
        project = Project.load(root)
        catalog = Catalog.load(root=root)
        project.validate(catalog)
    except (ProjectError, ContractError) as exc:  # a bug of init, not of the input
        raise InitError(f"the drafted project does not load ({exc}); please report this") from None
