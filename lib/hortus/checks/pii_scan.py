"""PII scan: a data test that finds personal data where the contracts say none may be.

The scanner reuses the free-text patterns of `hortus.lakehouse.pii.TEXT_PATTERNS` (the same
definitions silver uses to redact) and adds validation on top:

- CARD: the candidate's digits pass the Luhn check (13 to 19 digits, not all zero);
- IBAN: the candidate passes the ISO 13616 mod-97 check;
- IP: octet ranges are already in the pattern;
- DOB (date of birth): a DATE value in a column named like a birth date, or a DATE
  within a few words of "born", "birthday", "birth date", "date of birth" or "DOB";
- NAME: a capitalised First (particle) Last pair within `name_window` words of an
  e-mail, phone, IP, date of birth or valid card/IBAN, or after a cue such as
  "my name is", "I am", "Thanks," or "Regards,";
- UNTOKENISED: a value of a `direct` column outside the restricted layers that is
  not a keyed token.

Keyed tokens (`tok_` + 24 hex) and the placeholders silver writes (`[EMAIL]`,
`[PII]`...) are blanked before matching, so they never count.  Every column is
scanned with whole-column polars expressions (`str.contains`, `str.extract_all`);
validation runs as polars expressions over the extracted candidates only.

Findings carry counts and a masked example (`j***@e******.com`,
`**** **** **** 1234`); no unmasked value is ever stored or printed.  Compared
with the table's contract, a finding is a violation when the column's PII class
does not allow it; `ScanResult.raise_for_violations()` turns violations into a
`PIIViolation` that names table, column, kind, rows, rule and the masked example.

Examples
--------
>>> df = pl.DataFrame({"note": ["call +44 7700 900123", "all good"]})
>>> r = scan_frame(df, table="gold.notes")
>>> [(f.column, f.kind, f.rows, f.example) for f in r.findings]
[('note', 'PHONE', 1, '+** **** ****23')]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import polars as pl

from hortus.config import RESTRICTED_LAYERS
from hortus.errors import HortusError
from hortus.lakehouse.contracts import Contract
from hortus.lakehouse.pii import TEXT_PATTERNS, TOKEN_HEX, TOKEN_PREFIX
from hortus.lakehouse.tables import Lakehouse

KINDS = ("EMAIL", "IBAN", "PHONE", "CARD", "IP", "DOB", "NAME", "UNTOKENISED")

TOKEN_RE = rf"{re.escape(TOKEN_PREFIX)}[0-9a-f]{{{TOKEN_HEX}}}"
# the placeholders redact_text writes: known values -> [PII], patterns -> [LABEL]
PLACEHOLDER_RE = r"\[(?:PII|" + "|".join(TEXT_PATTERNS) + r")\]"
_NEUTRAL_RE = rf"\b{TOKEN_RE}\b|{PLACEHOLDER_RE}"
_BLANK = "#"  # what matched or neutralised text is replaced with (breaks digit runs)

_DATE = f"(?:{TEXT_PATTERNS['DATE']})"
_DOB_CUE = r"(?i:\bborn\b|\bbirthday\b|\bbirth[ -]?date\b|\bdate of birth\b|\bd\.?o\.?b\b\.?)"
DOB_TEXT_RE = (
    rf"{_DOB_CUE}[^\w\n]*(?:[\w']+[^\w\n]+){{0,3}}{_DATE}"
    rf"|{_DATE}[^\w\n]+(?:[\w']+[^\w\n]+){{0,2}}{_DOB_CUE}"
)
BIRTH_COLUMN_RE = r"(?i)birth|\bdob\b|born"

_NAME_WORD = r"\p{Lu}(?:'\p{Lu})?\p{Ll}+(?:\p{Lu}\p{Ll}+)?(?:-\p{Lu}\p{Ll}+)?"
_PARTICLE = r"(?:van|von|de|der|den|du|le|la|da|di|del|ten|ter|zu)"
NAME_RE = rf"\b{_NAME_WORD}(?:[ \t]+(?:{_PARTICLE}[ \t]+){{0,2}}{_NAME_WORD}){{1,2}}\b"
_NAME_CUE = r"(?i:\bmy name is|\bi am|\bi'm|\bname:|\bthanks,|\bregards,|\bsincerely,|\bcheers,)"

_CHECKED = ("IBAN", "CARD")  # kinds whose regex candidates are validated before they count


class PIIViolation(HortusError):
    """Personal data found where the table's contract does not allow it."""

    def __init__(self, message: str, violations: Sequence[Finding]):
        super().__init__(message)
        self.violations = tuple(violations)


@dataclass(frozen=True)
class Finding:
    """One (table, column, kind) with matches: how many rows, a masked example, the verdict."""

    table: str
    column: str
    kind: str
    rows: int
    rows_scanned: int
    example: str  # masked; never the raw value
    example_row: int  # 0-based row of the example in the table (before sampling)
    pii_class: str | None  # contract class of the column; None without contract/column
    violation: bool
    rule: str

    @property
    def message(self) -> str:
        """Return a one-line, human-readable description (masked example only)."""
        verdict = "VIOLATION" if self.violation else "allowed"
        cls = self.pii_class or "undeclared"
        return (
            f"{self.table}.{self.column}: {self.kind} in {self.rows} of {self.rows_scanned} "
            f"row(s), e.g. {self.example!r} (row {self.example_row}); {verdict}: rule "
            f"{self.rule} (contract pii class: {cls})"
        )


@dataclass(frozen=True)
class ScanResult:
    """The findings of a scan over one or more tables."""

    findings: tuple[Finding, ...] = ()
    tables: dict[str, int] = field(default_factory=dict)  # rows scanned per table
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)  # columns scanned

    @property
    def violations(self) -> list[Finding]:
        """Return the findings that break the contract."""
        return [f for f in self.findings if f.violation]

    @property
    def ok(self) -> bool:
        """Return whether the scan found no violation."""
        return not self.violations

    def merge(self, other: ScanResult) -> ScanResult:
        """Return the union of two scan results."""
        return ScanResult(
            findings=self.findings + other.findings,
            tables=self.tables | other.tables,
            columns=self.columns | other.columns,
        )

    def to_dict(self) -> dict:
        """Return a JSON-friendly summary: verdict, tables scanned and every finding."""
        return {
            "ok": self.ok,
            "violations": len(self.violations),
            "tables": dict(self.tables),
            "columns": {t: list(c) for t, c in self.columns.items()},
            "findings": [asdict(f) for f in self.findings],
        }

    def to_frame(self) -> pl.DataFrame:
        """Return one row per finding (masked examples only)."""
        schema = {
            "table": pl.String,
            "column": pl.String,
            "kind": pl.String,
            "rows": pl.Int64,
            "rows_scanned": pl.Int64,
            "example": pl.String,
            "example_row": pl.Int64,
            "pii_class": pl.String,
            "violation": pl.Boolean,
            "rule": pl.String,
        }
        return pl.DataFrame([asdict(f) for f in self.findings], schema=schema, orient="row")

    def raise_for_violations(self) -> None:
        """Raise PIIViolation naming table, column, kind, rows, rule and masked example."""
        bad = self.violations
        if bad:
            lines = "\n".join("  " + f.message for f in bad)
            raise PIIViolation(f"PII scan failed: {len(bad)} violation(s)\n{lines}", bad)


# ------------------------------------------------------------------ validation


def luhn_valid(candidates: pl.Expr) -> pl.Expr:
    """Return whether each candidate's digits (13 to 19, not all zero) pass the Luhn check.

    Examples
    --------
    >>> pl.select(luhn_valid(pl.lit("4111 1111 1111 1111"))).item()
    True
    """
    digits = candidates.str.replace_all(r"[^0-9]", "")
    n = digits.str.len_chars()
    padded = digits.str.zfill(19)  # leading zeros do not change the Luhn sum
    total = pl.lit(0, pl.Int64)
    for i in range(19):  # fixed positions, each a whole-column expression
        d = padded.str.slice(i, 1).cast(pl.Int64)
        if (18 - i) % 2 == 1:  # every second digit from the right is doubled
            d = d * 2
            d = pl.when(d > 9).then(d - 9).otherwise(d)
        total = total + d
    return n.is_between(13, 19) & (total % 10 == 0) & (digits.str.strip_chars("0") != "")


_LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
_LETTER_VALUES = [str(10 + i) for i in range(26)]


def iban_valid(candidates: pl.Expr) -> pl.Expr:
    """Return whether each candidate is an IBAN whose mod-97 checksum is 1 (ISO 13616).

    Examples
    --------
    >>> pl.select(iban_valid(pl.lit("DE89 3704 0044 0532 0130 00"))).item()
    True
    """
    compact = candidates.str.replace_all(r"\s", "").str.to_uppercase()
    rearranged = pl.concat_str(compact.str.slice(4), compact.str.slice(0, 4))
    number = rearranged.str.replace_many(_LETTERS, _LETTER_VALUES)  # A=10 ... Z=35
    rest = pl.lit(0, pl.Int64)
    for start in range(0, 70, 7):  # 7 digits at a time keeps every step inside Int64
        chunk = number.str.slice(start, 7)
        k = chunk.str.len_chars()
        value = pl.when(k > 0).then(chunk.cast(pl.Int64, strict=False)).otherwise(0)
        rest = (rest * pl.lit(10, pl.Int64).pow(k.cast(pl.Int64)) + value) % 97
    length = compact.str.len_chars()
    shape = compact.str.contains(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]+$")
    return length.is_between(15, 34) & shape & (rest == 1)


# --------------------------------------------------------------------- masking


def _mask_keep(value: str, keep_last: int, keep_first: int = 0) -> str:
    """Mask letters and digits except the first/last few; keep separators."""
    idx = [i for i, ch in enumerate(value) if ch.isalnum()]
    keep = set(idx[:keep_first]) | set(idx[len(idx) - keep_last :] if keep_last else [])
    return "".join(ch if (i in keep or not ch.isalnum()) else "*" for i, ch in enumerate(value))


def _mask_word(word: str) -> str:
    return word[:1] + "*" * (len(word) - 1) if word else word


def mask(kind: str, value: str) -> str:
    """Return a masked form of one matched value, safe to print and store.

    Examples
    --------
    >>> mask("EMAIL", "jane@example.com")
    'j***@e******.com'
    >>> mask("CARD", "4111 1111 1111 1234")
    '**** **** **** 1234'
    """
    value = value.strip()
    if kind == "EMAIL":
        local, _, domain = value.partition("@")
        host, dot, tld = domain.rpartition(".")
        return f"{_mask_word(local)}@{'.'.join(_mask_word(p) for p in host.split('.'))}{dot}{tld}"
    if kind == "CARD":
        return _mask_keep(value, keep_last=4)
    if kind == "IBAN":
        return _mask_keep(value, keep_last=2, keep_first=2)
    if kind == "PHONE":
        return _mask_keep(value, keep_last=2)
    if kind == "IP":
        first, _, rest = value.partition(".")
        return first + "." + re.sub(r"[0-9]+", "*", rest)
    if kind == "DOB":
        return _mask_keep(value, keep_last=0)
    if kind == "NAME":
        return " ".join(_mask_word(w) for w in value.split())
    return _mask_word(value[:12]) + ("..." if len(value) > 12 else "")


# -------------------------------------------------------------------- matching


def _near(patterns: Iterable[str], window: int) -> str:
    """Return a regex for a NAME within `window` words before or after one of `patterns`."""
    pats = "|".join(f"(?:{p})" for p in patterns)
    gap = rf"[^\w\n]+(?:[\w'.-]+[^\w\n]+){{0,{window}}}"
    return rf"{NAME_RE}{gap}(?:{pats})|(?:{pats}){gap}{NAME_RE}"


def _extract(frame: pl.DataFrame, col: str, kind: str, pattern: str) -> pl.DataFrame:
    """Return (row, kind, value) for every match of `pattern` in `frame[col]`."""
    return (
        frame.select("row", pl.col(col).str.extract_all(pattern).alias("value"))
        .explode("value")
        .drop_nulls("value")
        .select("row", pl.lit(kind).alias("kind"), "value")
    )


_EMPTY = pl.DataFrame(schema={"row": pl.Int64, "kind": pl.String, "value": pl.String})


def text_matches(frame: pl.DataFrame, *, name_window: int = 3) -> pl.DataFrame:
    """Return (row, kind, value) of every validated PII match in a text column.

    `frame` has `row` (Int64) and `text` (String).  Tokens and redaction
    placeholders are blanked first.  Kinds are then looked for in the order EMAIL,
    IBAN, PHONE, CARD, IP, and every candidate of a kind is blanked before the next
    one, as redaction does, so the digits of an IBAN or a phone number are never
    read as a card (unlike redaction, phones come before cards: a 13-digit phone
    number may pass the Luhn check).  DOB and NAME come last.
    """
    t = pl.col("text")
    patterns = [TEXT_PATTERNS[k] for k in ("EMAIL", "IBAN", "PHONE", "CARD", "IP")]
    any_re = "|".join(f"(?:{p})" for p in [*patterns, DOB_TEXT_RE, _NAME_CUE])
    work = (
        frame.drop_nulls("text")
        .with_columns(t.str.replace_all(_NEUTRAL_RE, _BLANK))
        .filter(t.str.contains(any_re))
        .with_columns(t.alias("neutral"))
    )
    if work.height == 0:
        return _EMPTY
    found: dict[str, pl.DataFrame] = {}
    for kind in ("EMAIL", "IBAN", "PHONE", "CARD", "IP"):
        m = _extract(work, "text", kind, TEXT_PATTERNS[kind])
        if kind == "IBAN":
            m = m.filter(iban_valid(pl.col("value")))
        elif kind == "CARD":
            m = m.filter(luhn_valid(pl.col("value")))
        found[kind] = m
        # blank every candidate of this kind (as redaction does), valid or not
        work = work.with_columns(t.str.replace_all(TEXT_PATTERNS[kind], _BLANK))
    found["DOB"] = _extract(work, "text", "DOB", DOB_TEXT_RE).with_columns(
        pl.col("value").str.extract(f"({_DATE})", 1)
    )
    # names next to such values (or after a cue), looked for in the neutralised text
    always = [TEXT_PATTERNS[k] for k in ("EMAIL", "PHONE", "IP")] + [DOB_TEXT_RE]
    cue = rf"{_NAME_CUE}[ \t]+{NAME_RE}"
    names = [_extract(work, "neutral", "NAME", _near(always, name_window) + "|" + cue)]
    fin_rows = pl.concat([found[k]["row"] for k in _CHECKED]).unique()
    if fin_rows.len():
        fin = work.filter(pl.col("row").is_in(fin_rows.implode()))
        near_fin = _near([TEXT_PATTERNS[k] for k in _CHECKED], name_window)
        names.append(_extract(fin, "neutral", "NAME", near_fin))
    found["NAME"] = pl.concat(names).with_columns(pl.col("value").str.extract(f"({NAME_RE})", 1))
    parts = [f.with_columns(pl.col("row").cast(pl.Int64)) for f in found.values()]
    return pl.concat(parts).drop_nulls()


# --------------------------------------------------------------------- columns


def _text_expr(name: str, dtype: pl.DataType, explicit: bool) -> pl.Expr | None:
    """Return an expression giving a column as text to scan, or None if it is not scanned."""
    col = pl.col(name)
    if dtype == pl.String:
        return col
    if isinstance(dtype, pl.Categorical | pl.Enum):
        return col.cast(pl.String)
    if isinstance(dtype, pl.Struct):
        return col.struct.json_encode()
    if isinstance(dtype, pl.List | pl.Array):
        inner = dtype.inner
        if inner == pl.String or isinstance(inner, pl.Categorical | pl.Enum) or explicit:
            lst = col if isinstance(dtype, pl.List) else col.arr.to_list()
            return lst.list.eval(pl.element().cast(pl.String)).list.join(" ")
        return None
    if explicit and (dtype.is_numeric() or dtype.is_temporal() or dtype == pl.Boolean):
        return col.cast(pl.String)
    return None


def _is_birth_column(name: str) -> bool:
    return re.search(BIRTH_COLUMN_RE, name) is not None


def _column_dob(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.DataFrame:
    """Return DOB matches of a column named like a birth date (date values in it)."""
    if dtype in (pl.Date,) or isinstance(dtype, pl.Datetime):
        value = pl.col(name).dt.strftime("%Y-%m-%d")
        return frame.filter(pl.col(name).is_not_null()).select(
            "row", pl.lit("DOB").alias("kind"), value.alias("value")
        )
    if dtype == pl.String:
        value = pl.col(name).str.extract(f"({_DATE})", 1)
        return frame.select("row", pl.lit("DOB").alias("kind"), value.alias("value")).drop_nulls()
    return _EMPTY


def _untokenised(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """Return the values of a direct column that are not keyed tokens."""
    v = pl.col(name).cast(pl.String)
    return frame.filter(v.is_not_null() & ~v.str.contains(f"^{TOKEN_RE}$")).select(
        "row", pl.lit("UNTOKENISED").alias("kind"), v.alias("value")
    )


def _verdict(kind: str, layer: str | None, pii_class: str | None, contract: Contract | None,
             column: str) -> tuple[bool, str]:  # fmt: skip
    """Return (is a violation, rule) for a finding of `kind` in a column of class `pii_class`."""
    if contract is None:
        return True, "no_contract_declares_pii"
    if pii_class is None:
        return True, "pii_in_undeclared_column"
    if pii_class == "none":
        return True, "pii_in_non_pii_column"
    if layer in RESTRICTED_LAYERS:
        return False, "allowed_in_restricted_layer"
    if pii_class == "direct":
        return True, "direct_pii_not_tokenised"
    if pii_class == "free_text":
        return True, "free_text_not_redacted"
    # quasi: a date of birth may stay unless the contract generalises it
    if kind == "DOB":
        if contract.column(column).generalise:
            return True, "quasi_pii_not_generalised"
        return False, "quasi_pii_kept_by_contract"
    return True, "direct_pii_in_quasi_column"


def scan_frame(
    df: pl.DataFrame | pl.LazyFrame,
    *,
    table: str,
    columns: Sequence[str] | None = None,
    contract: Contract | None = None,
    sample_rows: int | None = None,
    seed: int = 0,
    min_rows: int = 1,
    name_window: int = 3,
    check_tokens: bool = True,
) -> ScanResult:
    """Scan a frame for personal data; return findings with counts and masked examples.

    Every string-like column is scanned (strings, categoricals, lists of strings,
    structs as JSON); columns named like a birth date also count their date values
    as DOB.  `columns` restricts the scan (explicit columns of any type are read as
    text).  `sample_rows` scans a seeded random sample instead of every row.  A
    (column, kind) is reported when at least `min_rows` rows match.

    With a `contract`, each finding is judged against the column's PII class (see
    the module docstring); without one, every finding is a violation.  With
    `check_tokens`, values of `direct` columns outside the restricted layers that
    are not keyed tokens are reported as UNTOKENISED.
    """
    if min_rows < 1:
        raise HortusError(f"PII scan of {table}: min_rows must be >= 1, got {min_rows}")
    lf = df.lazy()
    schema = lf.collect_schema()
    if columns is not None:
        missing = [c for c in columns if c not in schema]
        if missing:
            raise HortusError(
                f"PII scan of {table}: column(s) {missing} not in the table "
                f"(columns: {', '.join(schema.names())})"
            )
    wanted = list(columns) if columns is not None else schema.names()
    texts: dict[str, pl.Expr] = {}
    for name in wanted:
        expr = _text_expr(name, schema[name], explicit=columns is not None)
        if expr is not None:
            texts[name] = expr
    births = [n for n in wanted if _is_birth_column(n)]
    layer = contract.layer if contract is not None else table.partition(".")[0]
    direct = set(contract.pii_columns("direct")) if contract is not None else set()
    tokenised = [
        n for n in wanted if check_tokens and n in direct and layer not in RESTRICTED_LAYERS
    ]
    keep = sorted(set(texts) | set(births) | set(tokenised), key=wanted.index)
    row = "__pii_scan_row"
    frame = lf.select(pl.int_range(pl.len(), dtype=pl.Int64).alias(row), *keep).collect()
    if sample_rows is not None and frame.height > sample_rows:
        frame = frame.sample(n=sample_rows, seed=seed).sort(row)
    frame = frame.rename({row: "row"})
    declared = set(contract.column_names) if contract is not None else set()
    findings: list[Finding] = []
    for name in keep:  # a loop over columns; each step is whole-column
        parts = []
        if name in texts:
            text = frame.select("row", texts[name].alias("text"))
            parts.append(text_matches(text, name_window=name_window))
        if name in births:
            parts.append(_column_dob(frame, name, schema[name]))
        if name in tokenised:
            parts.append(_untokenised(frame, name))
        if not parts:
            continue
        matches = pl.concat(parts)
        summary = (
            matches.sort("row")
            .group_by("kind", maintain_order=True)
            .agg(
                pl.col("row").n_unique().alias("rows"),
                pl.col("row").first().alias("example_row"),
                pl.col("value").first().alias("value"),
            )
            .filter(pl.col("rows") >= min_rows)
        )
        pii_class = contract.column(name).pii if name in declared else None
        # a loop over the few (column, kind) findings, not over rows
        for kind, rows, example_row, value in summary.iter_rows():
            violation, rule = _verdict(kind, layer, pii_class, contract, name)
            findings.append(
                Finding(
                    table=table,
                    column=name,
                    kind=kind,
                    rows=int(rows),
                    rows_scanned=frame.height,
                    example=mask(kind, value),
                    example_row=int(example_row),
                    pii_class=pii_class,
                    violation=violation,
                    rule=rule,
                )
            )
    order = {k: i for i, k in enumerate(KINDS)}
    findings.sort(key=lambda f: (keep.index(f.column), order.get(f.kind, len(order))))
    return ScanResult(
        findings=tuple(findings), tables={table: frame.height}, columns={table: tuple(keep)}
    )


def scan_table(
    lh: Lakehouse,
    name: str,
    contract: Contract | None = None,
    *,
    columns: Sequence[str] | None = None,
    sample_rows: int | None = None,
    seed: int = 0,
    min_rows: int = 1,
    name_window: int = 3,
    check_tokens: bool = True,
) -> ScanResult:
    """Scan one catalogued table and judge the findings against its contract.

    The contract defaults to the catalog's; for landed silver tables it is the
    contract as silver stores it (tokens, generalised columns).  Columns that the
    contract does not declare (e.g. `_source_file`) are treated as `pii: none`.
    """
    if contract is None:
        contract = lh.catalog.get(name)
        if contract.layer == "silver" and contract.landing is not None:
            from hortus.lakehouse.silver import stored_contract

            contract = stored_contract(contract)
    return scan_frame(
        lh.scan(name),
        table=name,
        columns=columns,
        contract=contract,
        sample_rows=sample_rows,
        seed=seed,
        min_rows=min_rows,
        name_window=name_window,
        check_tokens=check_tokens,
    )


def scan_lakehouse(
    lh: Lakehouse,
    layers: Sequence[str] = ("silver", "gold"),
    *,
    sample_rows: int | None = None,
    seed: int = 0,
    min_rows: int = 1,
    name_window: int = 3,
    check_tokens: bool = True,
) -> ScanResult:
    """Scan every written table of the given layers; return the merged result."""
    result = ScanResult()
    for layer in layers:
        for name in lh.catalog.names(layer):
            if lh.exists(name):
                result = result.merge(
                    scan_table(
                        lh,
                        name,
                        sample_rows=sample_rows,
                        seed=seed,
                        min_rows=min_rows,
                        name_window=name_window,
                        check_tokens=check_tokens,
                    )
                )
    return result
