"""Silver: typed, deduplicated, contract-checked tables with personal data tokenised.

Every bronze row ends in exactly one place: the silver table (accepted) or
`quarantine.rows` (rejected, with the first rule it broke and all its
violations).  `process` is a pure function over one batch of bronze rows;
`build` runs it for every landed table over the bronze batches not processed
yet, so it serves both full rebuilds (`dvc repro`) and micro-batches.

Memory bound (issue 18 item 1; benchmarks/bench_hostile_ingest.py runs silver in a
fresh process after each hostile case, tests/test_chaos.py asserts it): silver's peak
RSS over its process baseline stays within BOUND_X (8) x the bytes + BOUND_ROW_BYTES
(1 KB) x the rows of its largest chunk + BOUND_FIXED_MB (160 MB), whatever the
history.  A chunk is whole bronze files, at most `chunk_rows` rows and CHUNK_BYTES
(256 MiB) of strings unless one file is larger; a file is at most what ingest's caps
let in (`ingest.max_file_mb` decompressed, lines under `ingest.max_line_kb`).  What
grows with history is streamed, never held: the keys already in silver (a semi join
with the chunk's keys), the batch ids processed, the redaction send-back scan, and
the content hashes pinned after the run (`Lakehouse.content_hash`).  Held whole: the
customers' direct identifiers for redaction (`known_pii_values`, one string each).
`chunk_sizes` gives the chunks a run will take, `memory_bound_mb` the bound in MB.
Measured (benchmarks/README.md): one day of 1M events (221 MB), 1,019 MB over the
baseline (0.35 of the bound), and the same after 3 days of history; the day landed
twice, 1M non-JSON lines, 80 rows of 0.9 MB: 0.42, 0.46, 0.63 of the bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta

import numpy as np
import polars as pl
import pyarrow as pa

from hortus.executor.base import Executor, executor_for
from hortus.executor.plan import TableRead, resolve_read
from hortus.lakehouse.contracts import (
    Column,
    Contract,
    any_broken,
    broken_messages,
    contract_checks,
    first_broken,
    parse_columns,
)
from hortus.lakehouse.pii import check_current, redact_text, tokenize
from hortus.lakehouse.silver_schema import AGE_BANDS, stored_contract
from hortus.lakehouse.tables import Lakehouse

QUARANTINE = "quarantine.rows"
#: a chunk of whole bronze files holds at most this many bytes of strings (and about
#: `chunk_rows` rows; at least one file): the unit of silver's memory bound
CHUNK_BYTES = 256 * 2**20
#: the stated memory bound (module docstring): x chunk bytes, per chunk row, fixed MB
BOUND_X, BOUND_ROW_BYTES, BOUND_FIXED_MB = 8.0, 1000, 160
_T = "__t"  # suffix of typed columns during processing
_META = ["_source_file", "_line", "_batch_id", "_file_date"]


@dataclass
class SilverResult:
    """The outcome of one batch: accepted rows, quarantined rows, landed count."""

    table: str
    accepted: pl.DataFrame
    quarantined: pl.DataFrame
    landed: int

    def __post_init__(self) -> None:
        total = self.accepted.height + self.quarantined.height
        if total != self.landed:  # the invariant every report relies on
            raise AssertionError(
                f"{self.table}: landed {self.landed} != accepted "
                f"{self.accepted.height} + quarantined {self.quarantined.height}"
            )


@dataclass
class SilverOptions:
    """Knobs of silver processing (from params.yaml's silver section)."""

    key: bytes
    future_tolerance: timedelta = timedelta(hours=1)
    known_pii: list[str] = field(default_factory=list)


def _ndjson_bytes(raw: pl.Series) -> bytes:
    """Return the lines of a string Series as one NDJSON buffer (newline-separated).

    polars joins the lines into one value; its Arrow bytes are taken as they are:
    no Python string per line.
    """
    arr = raw.str.join("\n").to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)
    lo, hi = offsets[arr.offset], offsets[arr.offset + 1]
    return memoryview(arr.buffers()[2])[lo:hi].tobytes()


def _decode_strings(raw: pl.Series, names: list[str]) -> pl.DataFrame:
    """Decode JSON object lines into one string column per name, in line order.

    polars' NDJSON reader does it multi-threaded; raises `pl.exceptions.ComputeError`
    when a line is not valid JSON.
    """
    schema = {n: pl.String for n in names}
    if raw.len() == 0:
        return pl.DataFrame(schema=schema)
    try:
        decoded = pl.read_ndjson(_ndjson_bytes(raw), schema=schema)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise pl.exceptions.ComputeError(f"invalid JSON line: {exc}") from None
    if decoded.height != raw.len():  # e.g. two objects on one line: decode one by one
        raise pl.exceptions.ComputeError("NDJSON reader saw another number of lines")
    return decoded


def _decode_json(lines: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """Add one raw string column per contract column, plus `_malformed`, from `_raw`.

    Lines that are not `{...}` are malformed without parsing (truncated lines); the
    rest are decoded in one vectorised pass, malformed ones standing in as `{}` so
    the rows keep their landing order.  Only if that pass still meets invalid JSON
    is every line validated (JSONPath returns null instead of failing).
    """
    names = contract.column_names

    def braced(raw: pl.Expr) -> pl.Expr:
        return (raw.str.starts_with("{") & raw.str.ends_with("}")).fill_null(False)

    malformed = lines.select(~braced(pl.col("_raw"))).to_series()
    if malformed.any():  # look again, past surrounding white space, at the few flagged
        idx = malformed.arg_true()
        again = lines[idx].select(~braced(pl.col("_raw").str.strip_chars())).to_series()
        malformed = malformed.scatter(idx, again)

    def stand_in(bad: pl.Series) -> pl.Series:
        return lines["_raw"].clone().scatter(bad.arg_true(), "{}")

    try:
        decoded = _decode_strings(stand_in(malformed), names)
    except pl.exceptions.ComputeError:
        invalid = lines.select(pl.col("_raw").str.json_path_match("$").is_null()).to_series()
        malformed = malformed | invalid
        decoded = _decode_strings(stand_in(malformed), names)
    return pl.concat([lines, decoded, malformed.alias("_malformed").to_frame()], how="horizontal")


def _age_band(birth: pl.Expr, at: pl.Expr) -> pl.Expr:
    years = (
        at.dt.year()
        - birth.dt.year()
        - ((at.dt.month() * 100 + at.dt.day()) < (birth.dt.month() * 100 + birth.dt.day())).cast(
            pl.Int32
        )
    )
    out = pl.lit(None, pl.String)
    for lo, hi, label in reversed(AGE_BANDS):
        out = pl.when((years >= lo) & (years < hi)).then(pl.lit(label)).otherwise(out)
    return out


def process(
    bronze: pl.DataFrame,
    contract: Contract,
    options: SilverOptions,
    *,
    existing_keys: pl.DataFrame | pl.LazyFrame | None = None,
) -> SilverResult:
    """Turn one batch of bronze rows into accepted silver rows and quarantined rows.

    `existing_keys` holds the primary keys already in silver (earlier batches):
    a row repeating one of them is a duplicate.  A LazyFrame (a scan of silver's
    keys) is streamed for the keys of this batch only (`_matching_keys`).
    """
    assert contract.landing is not None
    names = contract.column_names
    is_json = contract.landing.format == "jsonl"
    # malformed CSV rows land with their text in `_raw` (hortus.lakehouse.landing)
    csv_bad = not is_json and "_raw" in bronze.columns
    df = (
        _decode_json(bronze, contract)
        if is_json
        else bronze.with_columns(
            (pl.col("_raw").is_not_null() if csv_bad else pl.lit(False)).alias("_malformed")
        )
    )
    # empty strings carry no value: treat them as missing
    df = df.with_columns(
        [pl.when(pl.col(n).str.strip_chars() != "").then(pl.col(n)).alias(n) for n in names]
    )
    export = (pl.col("_file_date").cast(pl.Datetime("us", "UTC")) + pl.duration(days=1)).fill_null(
        pl.col("_ingested_at")
    ) + pl.lit(options.future_tolerance)
    df = parse_columns(df, contract.columns, suffix=_T).with_columns(export.alias("_export"))
    checks = contract_checks(contract, typed_suffix=_T, export_col="_export")
    if is_json and not _may_hold_replacement_chars(df):
        checks = [c for c in checks if c.rule != "encoding"]  # nothing to find: skip the scans
    broken = pl.col("_malformed") | any_broken(checks)
    df = _in_landing_order(df.with_columns(broken.alias("_bad")))
    # duplicates: among rows otherwise valid, keep the first occurrence of each key
    # (bad rows get a null key, so they never count as an occurrence)
    key_t = [k + _T for k in contract.primary_key]
    dup = pl.lit(False)
    if key_t:
        key = pl.col(key_t[0]) if len(key_t) == 1 else pl.struct(key_t)
        dup = ~pl.col("_bad") & ~pl.when(~pl.col("_bad")).then(key).is_first_distinct()
        if existing_keys is not None:
            existing_keys = _matching_keys(existing_keys, df.filter(~pl.col("_bad")), contract)
        if existing_keys is not None and existing_keys.height:
            seen = existing_keys.rename({k: k + _T for k in contract.primary_key}).with_columns(
                pl.lit(True).alias("_seen")
            )
            df = df.join(seen, on=key_t, how="left", maintain_order="left")
            dup = dup | (~pl.col("_bad") & pl.col("_seen").fill_null(False))
    df = df.with_columns(dup.alias("_dup"))
    rejected = df.filter(pl.col("_bad") | pl.col("_dup"))

    # messages are built for rejected rows only (building them for all rows is costly)
    def by_reason(json: pl.Expr, duplicate: pl.Expr, broken: pl.Expr) -> pl.Expr:
        return (
            pl.when(pl.col("_malformed"))
            .then(json)
            .when(pl.col("_dup"))
            .then(duplicate)
            .otherwise(broken)
        )

    raw = pl.col("_raw") if is_json else pl.struct(names).struct.json_encode()
    if csv_bad:
        raw = pl.coalesce(pl.col("_raw"), raw)
    bad_csv = (
        pl.concat_str(pl.lit("malformed CSV row ("), pl.col("_csv_error"), pl.lit("): "),
                      pl.col("_raw").str.slice(0, 80))
        if csv_bad
        else pl.lit("")
    )  # fmt: skip
    quarantined = rejected.select(
        pl.lit(contract.full_name).alias("table"),
        pl.col("_source_file").alias("source_file"),
        pl.col("_line").alias("line"),
        pl.col("_batch_id").alias("batch_id"),
        by_reason(
            pl.lit("json" if is_json else "csv"), pl.lit("duplicate"), first_broken(checks, "rule")
        ).alias("rule"),
        by_reason(
            pl.lit(None, pl.String),
            pl.lit(",".join(contract.primary_key)),
            first_broken(checks, "column"),
        ).alias("column"),
        by_reason(
            pl.concat_str(pl.lit("malformed JSON line: "), pl.col("_raw").str.slice(0, 80))
            if is_json
            else bad_csv,
            pl.concat_str(
                pl.lit("duplicate key "),
                pl.concat_str([pl.col(k) for k in key_t] or [pl.lit("")], separator="|"),
                pl.lit(" (first occurrence kept)"),
            ),
            broken_messages(checks),
        ).alias("message"),
        raw.alias("raw"),
    )
    accepted = df.filter(~pl.col("_bad") & ~pl.col("_dup")).select(
        *[_silver_column(c, contract, options) for c in contract.columns],
        pl.col("_source_file"),
        pl.col("_line"),
        pl.col("_batch_id"),
    )
    accepted = _unnest_generalised(accepted).select(
        [pl.col(c.name) for c in stored_contract(contract).columns]
        + [pl.col("_source_file"), pl.col("_line"), pl.col("_batch_id")]
    )
    return SilverResult(contract.full_name, accepted, quarantined, bronze.height)


def _matching_keys(
    existing: pl.DataFrame | pl.LazyFrame, batch: pl.DataFrame, contract: Contract
) -> pl.DataFrame:
    """Return the keys of `existing` that a valid row of `batch` (typed columns) repeats.

    A scan of silver's keys is streamed through a semi join with this batch's keys
    (the join's hash table), so memory holds the batch's keys, not silver's whole
    history.  (`is_in` a list of a million keys took 20x longer.)
    """
    if isinstance(existing, pl.DataFrame):
        return existing
    pk = contract.primary_key
    mine = batch.select([pl.col(k + _T).alias(k) for k in pk]).unique()
    return existing.join(mine.lazy(), on=pk, how="semi").collect(engine="streaming")


def _may_hold_replacement_chars(lines: pl.DataFrame) -> bool:
    """Return whether a value decoded from `_raw` may hold U+FFFD (the mark of bad bytes).

    One scan of the raw lines instead of one per string column: a decoded value
    holds U+FFFD only if its line does, or writes it (or a surrogate, which a
    decoder may replace by it) as a \\u escape.
    """
    pattern = r"\x{FFFD}|\\u(?:[fF]{3}[dD]|[dD][89abAB])"
    return bool(lines.select(pl.col("_raw").str.contains(pattern).any()).item())


def _in_landing_order(df: pl.DataFrame) -> pl.DataFrame:
    """Return the rows ordered by source file and line, sorting only when it must.

    Bronze keeps each file's rows together in line order, but a scan may return
    its Delta files in any order (deltalake lists the newest first).  Then the runs
    of whole files are put in order by slicing (a loop over files, not rows); only
    rows of one file split or out of line order need a full sort.
    """
    file, line = pl.col("_source_file"), pl.col("_line")
    new_run = (file != file.shift(1)).fill_null(True)
    facts = df.select(
        ordered=((file > file.shift(1)) | ((file == file.shift(1)) & (line > line.shift(1))))
        .slice(1)
        .all(),
        lines_rise=(new_run | (line > line.shift(1))).all(),
    ).row(0, named=True)
    if facts["ordered"]:
        return df
    runs = df.select(pl.int_range(pl.len()).alias("start"), file, new_run.alias("new"))
    runs = runs.filter("new")
    if not facts["lines_rise"] or runs["_source_file"].n_unique() != runs.height:
        return df.sort("_source_file", "_line")
    ends = runs["start"].shift(-1).fill_null(df.height)
    runs = runs.with_columns(ends.alias("end")).sort("_source_file")
    return pl.concat(
        [df.slice(a, b - a) for a, b in runs.select("start", "end").iter_rows()], rechunk=False
    )


def _silver_column(
    c: Column, contract: Contract, options: SilverOptions
) -> pl.Expr | list[pl.Expr]:
    typed = pl.col(c.name + _T)
    if c.pii == "direct":
        return tokenize(typed, options.key).alias(c.name)
    if c.pii == "free_text":
        return redact_text(typed, options.known_pii).alias(c.name)
    if c.generalise == "age_band":
        at = pl.col((contract.order_by or c.name) + _T)
        at_date = (
            at.dt.date() if contract.column(contract.order_by or c.name).type == "datetime" else at
        )
        return pl.struct(
            _age_band(typed, at_date).alias("age_band"),
            typed.dt.year().cast(pl.Int64).alias("birth_year"),
        ).alias("_gen_" + c.name)
    return typed.alias(c.name)


def _unnest_generalised(df: pl.DataFrame) -> pl.DataFrame:
    gen = [c for c in df.columns if c.startswith("_gen_")]
    return df.unnest(gen) if gen else df


# ------------------------------------------------------------------ the stage


def processed_batches(lh: Lakehouse, contract: Contract) -> set[str]:
    """Return the bronze batch ids already turned into silver or quarantine rows."""
    done: set[str] = set()
    if lh.exists(contract.full_name):
        done |= set(
            lh.scan(contract.full_name)
            .select("_batch_id")
            .unique()
            .collect(engine="streaming")
            .to_series()
            .to_list()
        )
    if lh.exists(QUARANTINE):
        done |= set(
            lh.scan(QUARANTINE)
            .filter(pl.col("table") == contract.full_name)
            .select("batch_id")
            .unique()
            .collect(engine="streaming")
            .to_series()
            .to_list()
        )
    return done


def partial_batches(lh: Lakehouse, contract: Contract) -> pl.DataFrame:
    """Return the bronze batches whose silver + quarantine rows do not add up to their rows.

    A batch is written as accepted rows, then quarantined rows, chunk by chunk; a
    crash in between leaves it partly processed.  One row per such batch: landed,
    accepted, quarantined.
    """
    bronze = "bronze." + contract.name
    if not lh.exists(bronze):
        return pl.DataFrame(schema={"batch": pl.String, "landed": pl.UInt32})

    def counts(name: str, column: str, alias: str, where: pl.Expr | None = None) -> pl.LazyFrame:
        if not lh.exists(name):
            return pl.LazyFrame(schema={"batch": pl.String, alias: pl.UInt32})
        scan = lh.scan(name)
        scan = scan if where is None else scan.filter(where)
        return scan.group_by(pl.col(column).alias("batch")).agg(pl.len().alias(alias))

    landed = counts(bronze, "_batch_id", "landed")
    accepted = counts(contract.full_name, "_batch_id", "accepted")
    quarantined = counts(
        QUARANTINE, "batch_id", "quarantined", pl.col("table") == contract.full_name
    )
    both = (
        landed.join(accepted, on="batch", how="left")
        .join(quarantined, on="batch", how="left")
        .with_columns(pl.col("accepted", "quarantined").fill_null(0))
    )
    touched = (pl.col("accepted") + pl.col("quarantined")) > 0
    missing = pl.col("landed") != pl.col("accepted") + pl.col("quarantined")
    return both.filter(touched & missing).sort("batch").collect(engine="streaming")


def _undo_partial_batches(lh: Lakehouse, contract: Contract) -> set[str]:
    """Delete the rows of partly processed batches from silver and quarantine; return them.

    They are then processed again as a whole, so landed = accepted + quarantined
    holds after a crash between the two commits of a chunk (or between chunks).
    """
    partial = partial_batches(lh, contract)
    batches = partial["batch"].to_list()
    if batches:
        note = f"undo partial silver batch(es) {', '.join(batches)} before reprocessing"
        lh.delete_rows(contract.full_name, "_batch_id", batches, note=note)
        if lh.exists(QUARANTINE):
            rows = lh.scan(QUARANTINE).filter(
                (pl.col("table") == contract.full_name) & pl.col("batch_id").is_in(batches)
            )
            if rows.select(pl.len()).collect().item():
                lh.delete_rows(
                    QUARANTINE,
                    "batch_id",
                    batches,
                    where={"table": contract.full_name},
                    note=f"{note} of {contract.full_name}",
                )
    return set(batches)


def _identifier_tables(lh: Lakehouse) -> list[tuple[Contract, list[str]]]:
    """Return the landed CSV tables with direct identifiers (customers), and those columns."""
    out = []
    for contract in lh.catalog.landed():
        cols = contract.pii_columns("direct")
        if contract.landing.format == "csv" and cols and lh.exists("bronze." + contract.name):
            out.append((contract, cols))
    return out


def known_pii_values(lh: Lakehouse, *, unprocessed_only: bool = False) -> list[str]:
    """Return the raw direct identifiers of customers (restricted zone) for text redaction.

    With `unprocessed_only`, only those of bronze batches silver has not processed
    yet (customers who arrived since the last run; see `redact_again`).
    """
    values: list[str] = []
    for contract, cols in _identifier_tables(lh):
        scan = lh.scan("bronze." + contract.name)
        if unprocessed_only:
            done = processed_batches(lh, contract) - set(partial_batches(lh, contract)["batch"])
            scan = scan.filter(~pl.col("_batch_id").is_in(pl.Series(sorted(done)).implode()))
        frame = scan.select(cols).collect()
        for c in cols:
            values += frame[c].drop_nulls().unique().to_list()
    return sorted(set(values))


def redact_again(lh: Lakehouse, values: list[str]) -> dict[str, list[str]]:
    """Send back the silver batches whose free text holds one of `values`; return them per table.

    Redaction replaces the customers' identifiers known when a row is processed
    (`known_pii_values`).  A review processed before its author's users file
    arrived keeps the author's raw name; so, before a run processes new customers
    (`values`: their identifiers), every silver batch of a table with free-text
    columns whose text still holds one of them is deleted from silver in one
    audited Delta commit (`Lakehouse.delete_rows`, its note says why).  The run
    then processes those bronze batches again like new ones, with every
    identifier known, and commits them (audited): redaction no longer depends on
    the order in which files arrive.  A crash in between is the crash
    `_undo_partial_batches` already recovers from (the batch is reprocessed whole),
    and the new customers stay unprocessed until it is done, so the next run
    finds the same batches again.
    """
    # the values redact_text replaces (it skips those shorter than 4 characters)
    values = sorted({v for v in values if v and len(v) >= 4})
    sent: dict[str, list[str]] = {}
    if not values:
        return sent
    for contract in lh.catalog.landed():
        cols = contract.pii_columns("free_text")
        if not cols or not lh.exists(contract.full_name):
            continue
        holds = pl.any_horizontal(
            [pl.col(c).str.contains_any(values).fill_null(False) for c in cols]
        )
        batches = sorted(
            lh.scan(contract.full_name).filter(holds).select("_batch_id").unique()
            .collect(engine="streaming").to_series().to_list()
        )  # fmt: skip
        if batches:
            note = (
                f"redact again: the free text of batch(es) {', '.join(batches)} holds "
                "identifiers of customers who arrived later; reprocessed with them known"
            )
            lh.delete_rows(contract.full_name, "_batch_id", batches, note=note)
            sent[contract.full_name] = batches
    return sent


def build(
    lh: Lakehouse,
    options: SilverOptions,
    *,
    chunk_rows: int = 2_000_000,
    executor: Executor | None = None,
) -> list[dict]:
    """Process every unprocessed bronze batch of every landed table; return per-table counts.

    Bronze rows are processed in chunks of whole files (about `chunk_rows` rows),
    duplicates are checked against the keys already accepted.  Free text is
    redacted with every customer identifier in bronze, and silver batches whose
    text holds an identifier of a customer who arrived after them are processed
    again first (`redact_again`; their batch ids under `redacted_again`, their
    rows counted again in landed/accepted/quarantined of this run).  Chunks run on
    the `executor` (default: the project's; see `_chunk_results`), committed here.
    """
    check_current(lh.paths, options.key)  # never a key a rotation retired (pii.py)
    executor = executor or executor_for(lh.paths.root)
    options = replace(options, known_pii=options.known_pii or known_pii_values(lh))
    again = redact_again(lh, known_pii_values(lh, unprocessed_only=True))
    summary = []
    for contract in lh.catalog.landed():
        bronze_name = "bronze." + contract.name
        counts = {"table": contract.full_name, "landed": 0, "accepted": 0, "quarantined": 0}
        if not lh.exists(bronze_name):
            summary.append(counts | {"rules": {}})
            continue
        done = processed_batches(lh, contract) - _undo_partial_batches(lh, contract)
        todo = lh.scan(bronze_name).filter(
            ~pl.col("_batch_id").is_in(pl.Series(sorted(done)).implode())
        )
        files = _file_sizes(todo)
        rules: dict[str, int] = {}
        inputs = _write_inputs(lh, contract)  # lineage of this table's writes, not the stage's
        tasks = executor.kind != "local" and executor.distributes(int(files["n"].sum()))
        rows = min(chunk_rows, executor.config.chunk_rows) if tasks else chunk_rows
        chunks = _chunks(files, rows, CHUNK_BYTES)
        for result in _chunk_results(lh, contract, options, todo, chunks, executor if tasks
                                     else None, done):  # fmt: skip
            if result.accepted.height:
                lh.write(contract.full_name, result.accepted, mode="append", inputs=inputs)
            if result.quarantined.height:
                lh.write(QUARANTINE, result.quarantined, mode="append", inputs=inputs)
            counts["landed"] += result.landed
            counts["accepted"] += result.accepted.height
            counts["quarantined"] += result.quarantined.height
            for rule, n in result.quarantined.group_by("rule").len().iter_rows():
                rules[rule] = rules.get(rule, 0) + n
        summary.append(
            counts
            | {"rules": dict(sorted(rules.items()))}
            | ({"redacted_again": again[contract.full_name]} if contract.full_name in again else {})
        )
    _ensure_tables(lh)
    return summary


def _chunk_results(
    lh: Lakehouse,
    contract: Contract,
    options: SilverOptions,
    todo: pl.LazyFrame,
    chunks: list[list[str]],
    executor: Executor | None,
    done: set[str],
) -> Iterator[SilverResult]:
    """Yield each chunk's result in chunk order; the caller commits it before the next.

    In-process (`executor` None) each chunk is checked against silver's keys as
    committed so far (earlier runs and chunks).  On an executor the chunks run as
    tasks, each against silver's keys of before this run (a read plan at that
    version); a chunk accepting a key that an earlier chunk of this run committed
    is processed again here against silver's keys now: the result of the in-order run.
    Every task has succeeded before the first commit (`settle`): a task that fails
    for good leaves this table as it was.
    """
    pk = list(contract.primary_key)

    def keys_now() -> pl.LazyFrame | None:
        exists = pk and lh.exists(contract.full_name)
        return lh.scan(contract.full_name).select(pk) if exists else None

    def in_order(chunk: list[str]) -> SilverResult:
        batch = todo.filter(pl.col("_source_file").is_in(pl.Series(chunk).implode())).collect()
        # the keys already in silver (earlier runs and chunks): only this chunk's, streamed
        return process(batch, contract, options, existing_keys=keys_now())

    if executor is None:
        yield from (in_order(chunk) for chunk in chunks)
        return
    bronze = resolve_read(lh, "bronze." + contract.name)
    keys = resolve_read(lh, contract.full_name, pk) if keys_now() is not None else None
    fresh = ~pl.col("_batch_id").is_in(pl.Series(sorted(done), dtype=pl.String).implode())
    parts = [bronze.sliced(fresh & pl.col("_source_file").is_in(pl.Series(c).implode()))
             for c in chunks]  # fmt: skip
    results = executor.map(_process_chunk, parts, shared=(contract, options, keys), settle=True)
    for i, (chunk, result) in enumerate(zip(chunks, results, strict=True)):
        now = keys_now()
        if i and now is not None and result.accepted.height:
            mine = result.accepted.select(pk).lazy()
            if now.join(mine, on=pk, how="semi").select(pl.len()).collect().item():
                result = in_order(chunk)
        yield result


def _process_chunk(
    rows: TableRead, contract: Contract, options: SilverOptions, keys: TableRead | None
) -> SilverResult:
    """Task: process one chunk of bronze rows against silver's keys of before the run."""
    return process(rows.read(), contract, options, existing_keys=keys and keys.scan())


def _write_inputs(lh: Lakehouse, contract: Contract) -> dict[str, int]:
    """Return the tables (and versions) one silver table's rows come from.

    Its own bronze table; a table with free text also depends on the bronze tables of
    customer identifiers its text is redacted with (`known_pii_values`).
    """
    names = ["bronze." + contract.name]
    if contract.pii_columns("free_text"):
        names += ["bronze." + c.name for c, _ in _identifier_tables(lh)]
    return {n: lh.reads.get(n, lh.version(n)) for n in dict.fromkeys(names) if lh.exists(n)}


def _ensure_tables(lh: Lakehouse) -> None:
    """Create empty silver and quarantine tables that got no rows, so readers never fail."""
    meta = {"_source_file": pl.String, "_line": pl.Int64, "_batch_id": pl.String}
    for contract in lh.catalog.landed():
        if not lh.exists(contract.full_name):
            schema = dict(stored_contract(contract).schema) | meta
            lh.write(contract.full_name, pl.DataFrame(schema=schema), mode="append",
                     inputs=_write_inputs(lh, contract))  # fmt: skip
    if not lh.exists(QUARANTINE):
        lh.write(QUARANTINE, pl.DataFrame(schema=lh.catalog.get(QUARANTINE).schema), mode="append")


def _file_sizes(todo: pl.LazyFrame) -> pl.DataFrame:
    """Return each bronze file's rows (`n`) and bytes of strings (`bytes`), by file name.

    Streamed: one pass over the unprocessed bronze rows, holding one row per file.
    """
    meta = {"_source_file", "_batch_id", "_file_sha256"}
    strings = [n for n, t in todo.collect_schema().items() if t == pl.String and n not in meta]
    size = pl.sum_horizontal([pl.col(c).str.len_bytes().fill_null(0).cast(pl.Int64)
                              for c in strings] or [pl.lit(0, pl.Int64)])  # fmt: skip
    return (
        todo.group_by("_source_file")
        .agg(pl.len().alias("n"), size.sum().alias("bytes"))
        .sort("_source_file")
        .collect(engine="streaming")
    )


def chunk_sizes(lh: Lakehouse, chunk_rows: int = 2_000_000) -> list[tuple[int, int]]:
    """Return the (bytes, rows) of each chunk the next `build` will take (in process)."""
    sizes = []
    for contract in lh.catalog.landed():
        bronze = "bronze." + contract.name
        if not lh.exists(bronze):
            continue
        done = processed_batches(lh, contract) - set(partial_batches(lh, contract)["batch"])
        todo = lh.scan(bronze).filter(~pl.col("_batch_id").is_in(pl.Series(sorted(done)).implode()))
        files = _file_sizes(todo)
        for chunk in _chunks(files, chunk_rows, CHUNK_BYTES):
            part = files.filter(pl.col("_source_file").is_in(pl.Series(chunk).implode()))
            sizes.append((int(part["bytes"].sum()), int(part["n"].sum())))
    return sizes


def memory_bound_mb(chunks: list[tuple[int, int]]) -> float:
    """Return silver's stated memory bound, in MB over its baseline, for these chunks."""
    worst = max((BOUND_X * b + BOUND_ROW_BYTES * n for b, n in chunks), default=0)
    return worst / 1e6 + BOUND_FIXED_MB


def _chunks(files: pl.DataFrame, chunk_rows: int, chunk_bytes: int) -> list[list[str]]:
    """Group whole files into chunks of about chunk_rows rows and at most chunk_bytes bytes.

    A chunk holds at least one file (a loop over files, not rows).
    """
    chunks: list[list[str]] = []
    current: list[str] = []
    rows = size = 0
    for name, n, nbytes in files.select("_source_file", "n", "bytes").iter_rows():
        if current and (rows + n > chunk_rows or size + nbytes > chunk_bytes):
            chunks.append(current)
            current, rows, size = [], 0, 0
        current.append(name)
        rows += n
        size += nbytes
    if current:
        chunks.append(current)
    return chunks


def reconcile(lh: Lakehouse) -> list[dict]:
    """Return, per landed table, bronze rows vs silver + quarantine rows (must be equal)."""
    out = []
    for contract in lh.catalog.landed():
        bronze = "bronze." + contract.name
        landed = lh.scan(bronze).select(pl.len()).collect().item() if lh.exists(bronze) else 0
        accepted = (
            lh.scan(contract.full_name).select(pl.len()).collect().item()
            if lh.exists(contract.full_name)
            else 0
        )
        quarantined = (
            lh.scan(QUARANTINE)
            .filter(pl.col("table") == contract.full_name)
            .select(pl.len())
            .collect()
            .item()
            if lh.exists(QUARANTINE)
            else 0
        )
        out.append(
            {
                "table": contract.full_name,
                "landed": landed,
                "accepted": accepted,
                "quarantined": quarantined,
                "reconciles": landed == accepted + quarantined,
            }
        )
    return out
