"""Reading the source table of `hortus init` (CSV or Parquet) as strings.

Re-exported by `hortus.project.scaffold`.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import polars as pl

from hortus.project._draft import _ISO_LAYOUT, MIN_ROWS, InitError


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
    from hortus.lakehouse.locate import table_at

    if table_at(path) is not None:  # a file inside a lakehouse is refused there (policy)
        raise InitError(f"{path}: a lakehouse table is read through the table API, not copied")
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
