"""Data contracts: one definition per table drives validation, PII handling and docs.

A contract lists the columns of a table with their type, nullability, bounds,
allowed values, pattern, maximum length and PII class.  `contract_checks` turns a
contract into vectorised polars checks over raw (string) columns; `check_frame`
checks an already typed frame; the same contract gives the polars schema of the
typed table, the model input signature and the data dictionary.

String columns of a landed table (one with `landing:`) have a maximum length of
`DEFAULT_MAX_LENGTH` characters unless they declare their own `max_length` (a
smaller one for ids, or `null` for no limit): a value longer than that is a
`max_length` violation, so a hostile 20 MB id is quarantined, not loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from hortus.errors import ContractError

TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us", "UTC"),
}
PII_CLASSES = ("none", "direct", "quasi", "free_text")
#: maximum length (characters) of a string column of a landed table that declares none:
#: far above any real export's value (ids, names, addresses, review texts), far below
#: the sizes that exhaust memory
DEFAULT_MAX_LENGTH = 4096
LAYER_NAMES = ("bronze", "quarantine", "silver", "gold", "ops")
_COLUMN_KEYS = {
    "type",
    "nullable",
    "min",
    "max",
    "allowed",
    "pattern",
    "max_length",
    "pii",
    "generalise",
    "sensitive",
    "description",
    "tags",
}
_TABLE_KEYS = {
    "layer",
    "description",
    "owner",
    "freshness_sla_hours",
    "primary_key",
    "order_by",
    "landing",
    "columns",
    "on_extra_columns",
    "tags",
    "retention",
}
#: accepted datetime layouts; `%.f` also matches no fraction at all ("...T08:00:00Z"), so
#: each extra layout here costs a full parse of every value
_DATETIME_FORMATS = ("%Y-%m-%dT%H:%M:%S%.fZ", "%Y-%m-%d %H:%M:%S%.f")


@dataclass(frozen=True)
class Column:
    """One column of a contract."""

    name: str
    type: str
    nullable: bool = True
    min: Any = None
    max: Any = None
    allowed: tuple[Any, ...] | None = None
    pattern: str | None = None
    pii: str = "none"
    generalise: str | None = None
    sensitive: bool = False
    description: str = ""
    max_length: int | None = None  # characters, string columns only (rule `max_length`)
    tags: tuple[str, ...] = ()  # catalog search tags (`tags:` in the contract)

    @property
    def dtype(self) -> pl.DataType:
        """Return the polars dtype of the typed column."""
        return TYPES[self.type]


@dataclass(frozen=True)
class Landing:
    """Where a table's raw files land under data/ and in which format."""

    glob: str
    format: str  # csv | jsonl


@dataclass(frozen=True)
class Retention:
    """How long a table keeps its rows (`retention:` in the contract; `hortus maintain`)."""

    days: float
    column: str  # the date/datetime column whose age counts
    keep_for_receipts: bool = True  # never remove rows a registered model's receipt reads


@dataclass(frozen=True)
class Contract:
    """The data contract of one table.

    Examples
    --------
    >>> c = Contract.from_dict("t", {"layer": "silver", "owner": "me",
    ...     "columns": {"x": {"type": "int", "nullable": False, "min": 0}}})
    >>> c.schema
    Schema([('x', Int64)])
    """

    name: str
    layer: str
    columns: tuple[Column, ...]
    description: str = ""
    owner: str = "unowned"
    freshness_sla_hours: float | None = None
    primary_key: tuple[str, ...] = ()
    order_by: str | None = None
    landing: Landing | None = None
    on_extra_columns: str = "warn"
    shop_opened: datetime | None = None
    source: str = "<inline>"
    tags: tuple[str, ...] = ()  # catalog search tags (`tags:` in the contract)
    retention: Retention | None = None  # optional retention period (`retention:`)

    @property
    def full_name(self) -> str:
        """Return `layer.name`, the name used by the table API."""
        return f"{self.layer}.{self.name}"

    @property
    def schema(self) -> pl.Schema:
        """Return the polars schema of the typed table."""
        return pl.Schema({c.name: c.dtype for c in self.columns})

    @property
    def column_names(self) -> list[str]:
        """Return the column names in contract order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        """Return one column, or raise ContractError naming the table."""
        for c in self.columns:
            if c.name == name:
                return c
        raise ContractError(f"contract {self.full_name} has no column {name!r}")

    @property
    def required(self) -> list[str]:
        """Return the names of columns that must be present and non-null."""
        return [c.name for c in self.columns if not c.nullable]

    def pii_columns(self, *classes: str) -> list[str]:
        """Return the columns whose PII class is one of `classes`."""
        return [c.name for c in self.columns if c.pii in classes]

    @classmethod
    def from_dict(
        cls, name: str, spec: dict, *, source: str = "<inline>", shop_opened: Any = None
    ) -> Contract:
        """Build a contract from its YAML mapping, checking every key."""
        where = f"{source}: table {name!r}"
        if not isinstance(spec, dict):
            raise ContractError(f"{where}: expected a mapping")
        unknown = set(spec) - _TABLE_KEYS
        if unknown:
            raise ContractError(f"{where}: unknown key(s) {sorted(unknown)}")
        layer = spec.get("layer")
        if layer not in LAYER_NAMES:
            raise ContractError(f"{where}: layer must be one of {LAYER_NAMES}, got {layer!r}")
        cols = []
        for cname, cspec in (spec.get("columns") or {}).items():
            col = _column(cname, cspec or {}, f"{where}, column {cname!r}")
            if spec.get("landing") and col.type == "string" and "max_length" not in (cspec or {}):
                col = replace(col, max_length=DEFAULT_MAX_LENGTH)
            cols.append(col)
        if not cols:
            raise ContractError(f"{where}: no columns")
        names = {c.name for c in cols}
        pk = tuple(spec.get("primary_key") or ())
        for k in pk:
            if k not in names:
                raise ContractError(f"{where}: primary_key column {k!r} is not a column")
        landing = None
        if spec.get("landing"):
            lspec = spec["landing"]
            if lspec.get("format") not in ("csv", "jsonl"):
                raise ContractError(f"{where}: landing.format must be csv or jsonl")
            landing = Landing(glob=str(lspec["glob"]), format=lspec["format"])
        extra = spec.get("on_extra_columns", "warn")
        if extra not in ("warn", "refuse"):
            raise ContractError(f"{where}: on_extra_columns must be warn or refuse")
        return cls(
            name=name,
            layer=layer,
            columns=tuple(cols),
            description=str(spec.get("description", "")),
            owner=str(spec.get("owner", "unowned")),
            freshness_sla_hours=spec.get("freshness_sla_hours"),
            primary_key=pk,
            order_by=spec.get("order_by"),
            landing=landing,
            on_extra_columns=extra,
            shop_opened=_parse_datetime(shop_opened) if shop_opened else None,
            source=source,
            tags=_tags(spec.get("tags"), where),
            retention=_retention(spec.get("retention"), cols, where),
        )

    def to_dict(self) -> dict:
        """Return a JSON-friendly description (for `catalog show --json` and docs)."""
        return {
            "name": self.full_name,
            "description": self.description,
            "owner": self.owner,
            "freshness_sla_hours": self.freshness_sla_hours,
            "primary_key": list(self.primary_key),
            "landing": None if not self.landing else vars(self.landing),
            **({"tags": list(self.tags)} if self.tags else {}),
            **({"retention": vars(self.retention)} if self.retention else {}),
            "columns": [
                {k: v for k, v in vars(c).items() if v not in (None, (), "")}
                | ({"allowed": list(c.allowed)} if c.allowed else {})
                | ({"tags": list(c.tags)} if c.tags else {})
                for c in self.columns
            ],
        }


def _column(name: str, spec: dict, where: str) -> Column:
    unknown = set(spec) - _COLUMN_KEYS
    if unknown:
        raise ContractError(f"{where}: unknown key(s) {sorted(unknown)}")
    ctype = spec.get("type")
    if ctype not in TYPES:
        raise ContractError(f"{where}: type must be one of {sorted(TYPES)}, got {ctype!r}")
    pii = spec.get("pii", "none")
    if pii not in PII_CLASSES:
        raise ContractError(f"{where}: pii must be one of {PII_CLASSES}, got {pii!r}")
    max_length = spec.get("max_length")
    if max_length is not None and (
        ctype != "string" or isinstance(max_length, bool) or not isinstance(max_length, int)
        or max_length < 1
    ):  # fmt: skip
        raise ContractError(
            f"{where}: max_length must be a positive integer (characters) on a string "
            f"column, or null for no limit; got {max_length!r} on a {ctype} column"
        )
    allowed = spec.get("allowed")
    if allowed is not None and ctype == "string":
        odd = [v for v in allowed if not isinstance(v, str)]
        if odd:
            raise ContractError(
                f"{where}: allowed value(s) {odd} are not strings; quote them "
                "(YAML reads NO, yes, on, off as booleans and 01 as a number)"
            )
    return Column(
        name=name,
        type=ctype,
        nullable=bool(spec.get("nullable", True)),
        min=spec.get("min"),
        max=spec.get("max"),
        allowed=tuple(allowed) if allowed is not None else None,
        pattern=spec.get("pattern"),
        pii=pii,
        generalise=spec.get("generalise"),
        sensitive=bool(spec.get("sensitive", False)),
        description=str(spec.get("description", "")),
        max_length=max_length,
        tags=_tags(spec.get("tags"), where),
    )


#: a catalog tag: lower case words joined by hyphens (pii, kpi, gold-standard)
_TAG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def _tags(value: Any, where: str) -> tuple[str, ...]:
    """Return a contract's optional `tags:` list, each tag checked (lower-case-hyphenated)."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list):
        raise ContractError(f"{where}: tags must be a list, e.g. [kpi, gold-standard]")
    bad = [t for t in value if not isinstance(t, str) or not _TAG.fullmatch(t)]
    if bad:
        raise ContractError(
            f"{where}: tag(s) {bad} are not lower-case words joined by hyphens (e.g. gold-standard)"
        )
    return tuple(dict.fromkeys(value))


def _retention(value: Any, cols: list[Column], where: str) -> Retention | None:
    """Return a table's optional `retention: {days, column, keep_for_receipts}`, checked."""
    if value is None:
        return None
    example = "e.g. retention: {days: 90, column: logged_at}"
    if not isinstance(value, dict):
        raise ContractError(f"{where}: retention must be a mapping, {example}")
    unknown = set(value) - {"days", "column", "keep_for_receipts"}
    if unknown:
        raise ContractError(f"{where}: retention: unknown key(s) {sorted(unknown)}")
    days = value.get("days")
    if isinstance(days, bool) or not isinstance(days, int | float) or days <= 0:
        raise ContractError(f"{where}: retention.days must be a positive number, got {days!r}")
    types = {c.name: c.type for c in cols}
    column = value.get("column")
    if types.get(column) not in ("date", "datetime"):
        raise ContractError(
            f"{where}: retention.column must name a date or datetime column of the table "
            f"({', '.join(n for n, t in types.items() if t in ('date', 'datetime')) or 'none'}),"
            f" got {column!r}"
        )
    keep = value.get("keep_for_receipts", True)
    if not isinstance(keep, bool):
        raise ContractError(f"{where}: retention.keep_for_receipts must be true or false")
    return Retention(days=float(days), column=column, keep_for_receipts=keep)


def with_retention(contracts: dict[str, Contract], section: Any, source: str) -> None:
    """Set the retention a contract file's top-level `retention:` section gives other tables.

    A domain declares how long the platform's own tables keep their rows this way, e.g.
    ``retention: {ops.prediction_log: {days: 90, column: logged_at}}`` (in place).
    """
    if section is None:
        return
    if not isinstance(section, dict):
        raise ContractError(f"{source}: retention must map table names to retention settings")
    for name, spec in section.items():
        if name not in contracts:
            raise ContractError(f"{source}: retention: unknown table {name!r}")
        c = contracts[name]
        where = f"{source}: retention of {name}"
        contracts[name] = replace(c, retention=_retention(spec, list(c.columns), where))


def load_contracts(path: Path) -> dict[str, Contract]:
    """Load every table contract of a YAML file, keyed by `layer.name`."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or "tables" not in doc:
        raise ContractError(f"{path}: expected a mapping with a 'tables' key")
    opened = doc.get("shop_opened")
    out = {}
    for name, spec in doc["tables"].items():
        c = Contract.from_dict(name, spec, source=str(path), shop_opened=opened)
        out[c.full_name] = c
    return out


def _parse_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


# ---------------------------------------------------------------- parsing & checks


def parse_expr(
    col: Column, raw: pl.Expr, *, layouts: tuple[str, ...] = _DATETIME_FORMATS
) -> pl.Expr:
    """Return an expression casting a raw string column to the contract type (null if it fails).

    A datetime is tried in each of `layouts` (all accepted layouts by default).
    """
    if col.type == "string":
        return raw
    if col.type == "int":
        return raw.str.strip_chars().cast(pl.Int64, strict=False)
    if col.type == "float":
        return raw.str.strip_chars().cast(pl.Float64, strict=False)
    if col.type == "bool":
        return raw.str.to_lowercase().replace_strict(
            {"true": True, "false": False, "1": True, "0": False},
            default=None,
            return_dtype=pl.Boolean,
        )
    if col.type == "date":
        return raw.str.to_date("%Y-%m-%d", strict=False)
    return pl.coalesce(
        [raw.str.to_datetime(f, time_unit="us", time_zone="UTC", strict=False) for f in layouts]
    )


def parse_columns(df: pl.DataFrame, columns: Iterable[Column], *, suffix: str) -> pl.DataFrame:
    """Add a typed column `name + suffix` for each column of a frame of raw strings.

    The values of `parse_expr`, but a datetime is parsed in its first layout for
    every row and in the other layouts only for the rows that one failed on:
    `pl.coalesce` over the layouts would parse every row in every layout.
    """
    columns = list(columns)
    first = _DATETIME_FORMATS[:1]
    df = df.with_columns(
        [parse_expr(c, pl.col(c.name), layouts=first).alias(c.name + suffix) for c in columns]
    )
    for c in columns:
        if c.type != "datetime":
            continue
        typed = c.name + suffix
        failed = df.select(pl.col(typed).is_null() & pl.col(c.name).is_not_null()).to_series()
        if failed.any():
            idx = failed.arg_true()
            rest = _DATETIME_FORMATS[1:]
            again = df[idx].select(parse_expr(c, pl.col(c.name), layouts=rest)).to_series()
            df = df.with_columns(df[typed].clone().scatter(idx, again))
    return df


def _bound(col: Column, value: Any, contract: Contract, export_col: str | None) -> pl.Expr | None:
    if value is None:
        return None
    if value == "@shop_opened":
        if contract.shop_opened is None:
            raise ContractError(f"{contract.source}: {col.name} uses @shop_opened but none is set")
        return pl.lit(contract.shop_opened).cast(col.dtype)
    if value == "@export":
        return pl.col(export_col) if export_col else None
    if col.type == "date":
        return pl.lit(date.fromisoformat(str(value)))
    if col.type == "datetime":
        return pl.lit(_parse_datetime(value)).cast(col.dtype)
    return pl.lit(value)


def _msg(*parts: str | pl.Expr) -> pl.Expr:
    return pl.concat_str([pl.lit(p) if isinstance(p, str) else p for p in parts])


@dataclass(frozen=True)
class Check:
    """One contract rule on one column: a boolean condition (true = broken) and a message."""

    rule: str
    column: str | None
    broken: pl.Expr
    message: pl.Expr

    def violation(self) -> pl.Expr:
        """Return a struct(rule, column, message) where broken, else null."""
        return pl.when(self.broken).then(
            pl.struct(
                rule=pl.lit(self.rule), column=pl.lit(self.column, pl.String), message=self.message
            )
        )


def contract_checks(
    contract: Contract,
    *,
    typed_suffix: str = "",
    export_col: str | None = None,
    raw: Mapping[str, pl.Expr] | None = None,
) -> list[Check]:
    """Return one check per (column, rule) of a contract.

    Raw values are the string columns named like the contract columns (or the
    expressions of `raw`, by column name); typed values are the same names plus
    `typed_suffix`.  Messages show the offending value.
    """
    out = []
    for c in contract.columns:
        typed = pl.col(c.name + typed_suffix)
        raw_ = pl.col(c.name) if raw is None or c.name not in raw else raw[c.name]
        out += _column_checks(c, contract, raw_, typed, export_col)
    return out


def _column_checks(
    c: Column, contract: Contract, raw: pl.Expr, typed: pl.Expr, export_col: str | None
) -> list[Check]:
    """Return the checks of one column, in rule order (the first broken one is reported)."""
    out = []
    shown = raw.str.slice(0, 60)
    if not c.nullable:
        out.append(
            Check(
                "required",
                c.name,
                raw.is_null(),
                pl.lit(f"required value of {c.name} is missing"),
            )
        )
    if c.type != "string":
        out.append(
            Check(
                "type",
                c.name,
                raw.is_not_null() & typed.is_null(),
                _msg(f"{c.name}: '", shown, f"' is not a valid {c.type}"),
            )
        )
    if c.max_length is not None and c.type == "string":
        out.append(
            Check(
                "max_length",
                c.name,
                raw.str.len_chars() > c.max_length,
                _msg(
                    f"{c.name}: value of ",
                    raw.str.len_chars().cast(pl.String),
                    f" characters is longer than the maximum length {c.max_length}",
                ),
            )
        )
    lo = _bound(c, c.min, contract, export_col)
    if lo is not None:
        out.append(
            Check(
                "min",
                c.name,
                typed < lo,
                _msg(f"{c.name}: ", shown, " is below the minimum ", lo.cast(pl.String)),
            )
        )
    hi = _bound(c, c.max, contract, export_col)
    if hi is not None:
        rule = "future" if c.max == "@export" else "max"
        out.append(
            Check(
                rule,
                c.name,
                typed > hi,
                _msg(f"{c.name}: ", shown, " is above the maximum ", hi.cast(pl.String)),
            )
        )
    if c.allowed is not None:
        allowed = pl.Series(list(c.allowed)).cast(c.dtype)
        out.append(
            Check(
                "allowed",
                c.name,
                typed.is_not_null() & ~typed.is_in(allowed.implode()),
                _msg(f"{c.name}: '", shown, f"' is not one of {list(c.allowed)}"),
            )
        )
    if c.pattern is not None:
        out.append(
            Check(
                "pattern",
                c.name,
                typed.is_not_null() & ~raw.str.contains(f"^(?:{c.pattern})$"),
                _msg(f"{c.name}: '", shown, f"' does not match /{c.pattern}/"),
            )
        )
    if c.type == "string":
        out.append(
            Check(
                "encoding",
                c.name,
                raw.str.contains("\ufffd", literal=True),
                pl.lit(f"{c.name}: value holds bytes that are not valid UTF-8"),
            )
        )
    return out


def any_broken(checks: list[Check]) -> pl.Expr:
    """Return a boolean expression: does the row break any of the checks?"""
    if not checks:
        return pl.lit(False)
    return pl.any_horizontal([c.broken.fill_null(False) for c in checks])


def first_broken(checks: list[Check], field: str) -> pl.Expr:
    """Return the `rule` or `column` of the first check a row breaks (null if none)."""
    out = pl.lit(None, pl.String)
    for c in reversed(checks):
        value = pl.lit(getattr(c, field), pl.String)
        out = pl.when(c.broken.fill_null(False)).then(value).otherwise(out)
    return out


def broken_messages(checks: list[Check]) -> pl.Expr:
    """Return the messages of every check a row breaks, in order, joined by "; "."""
    if not checks:
        return pl.lit("")
    parts = [pl.when(c.broken.fill_null(False)).then(c.message) for c in checks]
    return pl.concat_str(parts, separator="; ", ignore_nulls=True)


def violations(checks: list[Check]) -> pl.Expr:
    """Return the list of violation structs of a row (evaluate on bad rows only: costly)."""
    return pl.concat_list([c.violation() for c in checks]).list.drop_nulls()


def check_frame(df: pl.DataFrame | pl.LazyFrame, contract: Contract) -> pl.DataFrame:
    """Check an already typed frame against its contract; return one row per violation.

    Used by data tests and monitors on any contract-described table.  Columns of
    the result: `row` (0-based), `rule`, `column`, `message`, by row and, within a
    row, in the contract's rule order.  Missing columns are reported with row = null.

    The rules run on the typed columns in one select that returns the broken rows
    of each rule (`arg_true`); messages are built for those rows only, so no
    column is cast to strings except the values shown in messages (a pattern or
    encoding rule on a column that is not a string still casts it).  The `type`
    rule cannot fire on a typed frame (a value casts to a non-null string).
    """
    lf = df.lazy()
    schema = lf.collect_schema()
    missing = [c for c in contract.column_names if c not in schema]
    rows = [
        {
            "row": None,
            "rule": "missing_column",
            "column": m,
            "message": f"column {m} required by {contract.full_name} is missing",
        }
        for m in missing
    ]
    present = [c for c in contract.columns if c.name in schema]
    sub = Contract(
        name=contract.name,
        layer=contract.layer,
        columns=tuple(present),
        shop_opened=contract.shop_opened,
        source=contract.source,
    )
    raw = {
        c.name: pl.col(c.name) if schema[c.name] == pl.String else pl.col(c.name).cast(pl.String)
        for c in present
    }
    checks = [
        # a value is null exactly where its string is: no cast to find missing values
        replace(k, broken=pl.col(k.column).is_null()) if k.rule == "required" else k
        for k in contract_checks(sub, raw=raw)
        if k.rule != "type"
    ]
    out_schema = {"row": pl.Int64, "rule": pl.String, "column": pl.String, "message": pl.String}
    found = pl.DataFrame(schema=out_schema)
    if checks:
        frame = (
            df
            if isinstance(df, pl.DataFrame)
            else lf.select([pl.col(c.name) for c in present]).collect()
        )
        hits = frame.select(
            [
                k.broken.fill_null(False).arg_true().implode().alias(str(i))
                for i, k in enumerate(checks)
            ]
        )
        broken = {}  # check number -> its broken rows
        for i in range(len(checks)):
            idx = hits[str(i)][0]  # a Series, not a list
            if len(idx):
                broken[i] = idx.cast(pl.Int64)
        if broken:
            found = _violation_rows(frame, sub, checks, broken, raw)
    if rows:
        found = pl.concat([pl.DataFrame(rows, schema=found.schema), found])
    return found


def _violation_rows(
    frame: pl.DataFrame,
    contract: Contract,
    checks: list[Check],
    broken: dict[int, pl.Series],
    raw: Mapping[str, pl.Expr],
) -> pl.DataFrame:
    """Return (row, rule, column, message) of the broken rows of each check, sorted.

    Each message is built from the offending rows only: the check is made again
    with its column gathered at those rows, and all of them run in one select.
    """
    exprs = []
    for i, idx in broken.items():
        k = checks[i]
        c = contract.column(k.column)
        gathered = pl.col(c.name).gather(idx)
        raw_at = gathered if raw[c.name].meta.eq(pl.col(c.name)) else gathered.cast(pl.String)
        (again,) = [
            m for m in _column_checks(c, contract, raw_at, gathered, None) if m.rule == k.rule
        ]
        violation = pl.struct(
            row=pl.lit(idx),
            _k=pl.lit(i, pl.Int32),  # literals are repeated to the rows' length
            rule=pl.lit(k.rule, pl.String),
            column=pl.lit(k.column, pl.String),
            message=again.message.cast(pl.String),
        )
        exprs.append(violation.implode().alias(str(i)))
    lists = frame.select(exprs)
    rows = pl.concat([lists[str(i)][0] for i in broken]).struct.unnest()
    return rows.sort("row", "_k").drop("_k")
