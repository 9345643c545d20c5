"""Benchmark: contract checks on 1M typed rows (~30 rules), against one polars select.

Data (seeded, not timed): `--rows` typed rows (default 1M) of a 13-column contract
(string ids with patterns, ints and floats with bounds, allowed values, dates and
datetimes with bounds, required columns, a free-text note with a maximum length), with
about 0.5% of the values of each checked column broken (out of bounds, not allowed, not
matching, missing, too long).

Measured in the same process, median of `--repeat` runs:

1. hortus: `hortus.lakehouse.contracts.check_frame(df, contract)`: one row per violation
   (row, rule, column, message), then counted per (rule, column);
2. floor: a single `df.select(...)` of one boolean sum per rule, written by hand from the
   same contract: the violation counts and nothing else (no messages, no row numbers);
3. before: the former `check_frame` (every column cast back to strings, then a list of
   violation structs per broken row; the reference of tests/test_contracts.py), once.

The counts per (rule, column) must agree exactly, and the violations (row, rule, column,
message) equal the former implementation's; the script exits non-zero otherwise.

Usage: python benchmarks/bench_contracts.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, date, datetime

import numpy as np
import polars as pl
from _common import machine_line, peak_rss_mb

SPEC = {
    "layer": "silver",
    "columns": {
        "order_id": {"type": "string", "nullable": False, "pattern": "o[0-9]{7}"},
        "user_id": {"type": "string", "nullable": False, "pattern": "u[0-9]{6}"},
        "channel": {"type": "string", "allowed": ["app", "email", "search", "social", "web"]},
        "country": {"type": "string", "nullable": False, "allowed": ["DE", "FR", "NL", "PL"]},
        "quantity": {"type": "int", "nullable": False, "min": 1, "max": 50},
        "rank": {"type": "int", "min": 0, "max": 1000},
        "price": {"type": "float", "nullable": False, "min": 0.0, "max": 5000.0},
        "discount": {"type": "float", "min": 0.0, "max": 0.9},
        "rating": {"type": "int", "allowed": [1, 2, 3, 4, 5]},
        "gift": {"type": "bool"},
        "order_date": {"type": "date", "nullable": False, "min": "2024-01-01",
                       "max": "2026-12-31"},
        "shipped_at": {"type": "datetime", "min": "2024-01-01T00:00:00Z",
                       "max": "2027-01-31T00:00:00Z"},
        "note": {"type": "string", "max_length": 40},
    },
}  # fmt: skip
BAD = 0.005  # share of broken values per checked column


def make_frame(rows: int, seed: int) -> pl.DataFrame:
    """Return `rows` typed rows matching SPEC's types, about BAD of each column broken."""
    rng = np.random.default_rng(seed)

    def broken() -> np.ndarray:
        return rng.uniform(size=rows) < BAD

    ids = rng.integers(0, 10_000_000, rows)
    order_id = pl.Series(ids).cast(pl.String).str.zfill(7)
    order_id = pl.when(pl.Series(broken())).then("x" + order_id).otherwise("o" + order_id)
    users = pl.Series(rng.integers(0, 1_000_000, rows)).cast(pl.String).str.zfill(6)
    df = pl.DataFrame({"_u": users, "_uo": broken(), "_oid": pl.select(order_id).to_series()})
    chan = np.array(["app", "email", "search", "social", "web", "fax"])
    chan_i = np.where(broken(), 5, rng.integers(0, 5, rows))
    country = np.array(["DE", "FR", "NL", "PL", "XX"])
    epoch = datetime(2024, 1, 1, tzinfo=UTC)
    day = rng.integers(0, 1000, rows)
    day = np.where(broken(), -30, day)
    shipped = day * 86_400_000_000 + rng.integers(0, 86_400_000_000, rows)
    shipped = np.where(broken(), 1200 * 86_400_000_000, shipped)
    return df.select(
        order_id=pl.when(pl.Series(broken())).then(None).otherwise(pl.col("_oid")),
        user_id=pl.when(pl.col("_uo")).then("u" + pl.col("_u") + "!").otherwise("u" + pl.col("_u")),
        channel=pl.Series(np.where(rng.uniform(size=rows) < 0.02, None, chan[chan_i])),
        country=pl.Series(country[np.where(broken(), 4, rng.integers(0, 4, rows))]),
        quantity=pl.Series(np.where(broken(), 0, rng.integers(1, 51, rows))),
        rank=pl.Series(np.where(broken(), 1001, rng.integers(0, 1001, rows))),
        price=pl.Series(np.where(broken(), -1.0, np.round(rng.gamma(2.0, 30.0, rows), 2))),
        discount=pl.Series(np.where(broken(), 0.95, rng.uniform(0.0, 0.9, rows))),
        rating=pl.Series(np.where(broken(), 0, rng.integers(1, 6, rows))),
        gift=pl.Series(rng.uniform(size=rows) < 0.1),
        order_date=pl.lit(date(2024, 1, 1)) + pl.duration(days=pl.Series(day)),
        shipped_at=pl.lit(epoch) + pl.duration(microseconds=pl.Series(shipped)),
        note=pl.lit("a plant in a pot, watered weekly; thank you!" * 2).str.slice(
            0, pl.Series(np.where(broken(), 45, rng.integers(0, 41, rows)))
        ),
    ).with_columns(
        pl.when(pl.Series(broken())).then(None).otherwise(pl.col("quantity")).alias("quantity"),
    )


def _literal(c, value) -> pl.Expr:
    if c.type == "date":
        return pl.lit(date.fromisoformat(value))
    if c.type == "datetime":
        return pl.lit(datetime.fromisoformat(value)).cast(c.dtype)
    return pl.lit(value).cast(c.dtype)


def floor_counts(df: pl.DataFrame, contract) -> dict[tuple[str, str], int]:
    """Return the violation count per (rule, column) with one select (the floor)."""
    exprs = []
    for c in contract.columns:
        col = pl.col(c.name)
        name = c.name
        if not c.nullable:
            exprs.append(col.is_null().sum().alias(f"required|{name}"))
        if c.min is not None:
            exprs.append((col < _literal(c, c.min)).sum().alias(f"min|{name}"))
        if c.max is not None:
            exprs.append((col > _literal(c, c.max)).sum().alias(f"max|{name}"))
        if c.allowed is not None:
            allowed = pl.Series(list(c.allowed)).cast(c.dtype).implode()
            exprs.append((col.is_not_null() & ~col.is_in(allowed)).sum().alias(f"allowed|{name}"))
        if c.pattern is not None:
            exprs.append((~col.str.contains(f"^(?:{c.pattern})$")).sum().alias(f"pattern|{name}"))
        if c.max_length is not None:
            exprs.append((col.str.len_chars() > c.max_length).sum().alias(f"max_length|{name}"))
        if c.type == "string":
            exprs.append(col.str.contains("\ufffd", literal=True).sum().alias(f"encoding|{name}"))
    row = df.select(exprs).row(0, named=True)
    return {tuple(k.split("|")): int(v) for k, v in row.items() if v}


def former_check_frame(df: pl.DataFrame, contract) -> pl.DataFrame:
    """Return the violations as the former `check_frame` found them (strings for all rows)."""
    from hortus.lakehouse.contracts import any_broken, contract_checks, violations

    lf = df.lazy().select(
        [pl.col(c.name).cast(pl.String).alias(c.name) for c in contract.columns]
        + [pl.col(c.name).alias(c.name + "__t") for c in contract.columns]
    )
    checks = contract_checks(contract, typed_suffix="__t")
    return (
        lf.with_row_index("row")
        .filter(any_broken(checks))
        .select(pl.col("row").cast(pl.Int64), violations(checks).alias("_v"))
        .explode("_v")
        .drop_nulls("_v")
        .unnest("_v")
        .collect()
    )


def main() -> int:
    """Run the benchmark and print figures and the ratio to the floor."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from hortus.lakehouse.contracts import Contract, check_frame, contract_checks

    print(machine_line())
    contract = Contract.from_dict("orders_bench", SPEC)
    df = make_frame(args.rows, args.seed)
    assert df.schema == contract.schema, (df.schema, contract.schema)
    n_rules = len(contract_checks(contract))
    n_typed = sum(c.type != "string" for c in contract.columns)
    print(
        f"data: {args.rows:,} typed rows x {len(contract.columns)} columns, "
        f"{n_rules} rules ({n_typed} of them type rules, which cannot fire on a typed "
        f"frame), {df.estimated_size('mb'):,.0f} MB in memory"
    )
    check_frame(df.head(1000), contract)  # warm up

    times_h, times_f, cpu_h, cpu_f = [], [], [], []
    for _ in range(args.repeat):
        t, c = time.perf_counter(), time.process_time()
        found = check_frame(df, contract)
        ours = found.group_by("rule", "column").len()
        times_h.append(time.perf_counter() - t)
        cpu_h.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        floor = floor_counts(df, contract)
        times_f.append(time.perf_counter() - t)
        cpu_f.append(time.process_time() - c)
    t_h, t_f = statistics.median(times_h), statistics.median(times_f)
    c_h, c_f = statistics.median(cpu_h), statistics.median(cpu_f)
    t, c = time.perf_counter(), time.process_time()
    before = former_check_frame(df, contract)
    t_b, c_b = time.perf_counter() - t, time.process_time() - c
    counts = {(r, c): n for r, c, n in ours.iter_rows()}
    print(f"\n{'':<56} {'seconds':>8} {'cpu s':>8} {'x floor':>8} {'cpu x':>7}")
    print(f"{'hortus check_frame (one row per violation) + counts':<56} {t_h:>8.3f} "
          f"{c_h:>8.3f} {t_h / t_f:>7.2f}x {c_h / c_f:>6.2f}x")  # fmt: skip
    print(f"{'floor: one polars select of violation counts':<56} {t_f:>8.3f} "
          f"{c_f:>8.3f} {1.0:>7.2f}x {1.0:>6.2f}x")  # fmt: skip
    print(f"{'before: former check_frame (strings for all rows), 1 run':<56} {t_b:>8.3f} "
          f"{c_b:>8.3f} {t_b / t_f:>7.2f}x {c_b / c_f:>6.2f}x")  # fmt: skip
    print(
        f"(median of {args.repeat} runs; peak RSS {peak_rss_mb():,.0f} MB; cpu s = user + "
        "system CPU of all threads, which another job on the machine disturbs less)"
    )
    print(
        f"violations: {found.height:,} in {len(counts)} (rule, column) pairs, "
        f"{found['row'].n_unique():,} rows broken; equal to the former: {found.equals(before)}"
    )
    if counts != floor:
        diff = sorted(set(counts.items()) ^ set(floor.items()))
        print(f"FAIL: counts differ from the floor: {diff}", file=sys.stderr)
        return 1
    if not found.equals(before):
        print("FAIL: violations differ from the former check_frame", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
