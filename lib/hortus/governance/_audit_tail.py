"""Read the end of the audit log from the file(s) that hold it, not the whole table.

Every append needs the chain head (seq, hash), the key that signs next (from the last
record) and, when it tracks policy changes, the last policy_version logged.  The Delta
log's per-file statistics say which file holds the largest seq (``max.seq``) and which
files hold any policy_version at all (``null_count.policy_version`` < ``num_records``),
so an append opens one small file (two when the last record names no policy), however
many commits the log has.  `read_tail` returns None when the statistics cannot be
trusted for that (a file without them, a seq that appears twice): callers then read
the columns of every file, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import polars as pl

TAIL_COLUMNS = ("seq", "hash", "policy_version", "key_id", "action", "detail")


@dataclass(frozen=True)
class Tail:
    """The end of the log: head (seq, hash), last policy_version, the last record."""

    head: tuple[int, str] | None
    last_policy: str | None  # None: none logged, or not looked up (policy=False)
    last: dict[str, Any] | None  # seq, hash, policy_version, key_id, action, detail
    files_read: int


def _read(files: list[str], columns: tuple[str, ...], options: dict) -> pl.DataFrame:
    """Read `columns` of parquet files; a column a file lacks (legacy records) is null."""
    try:
        return pl.read_parquet(files, columns=list(columns), **options)
    except (pl.exceptions.ColumnNotFoundError, pl.exceptions.SchemaError):
        pass
    frames = []
    for f in files:  # data files of the log's last commit(s), a handful
        present = set(pl.scan_parquet(f, **options).collect_schema().names())
        got = pl.read_parquet(f, columns=[c for c in columns if c in present], **options)
        missing = [pl.lit(None, pl.String()).alias(c) for c in columns if c not in present]
        frames.append(got.with_columns(missing).select(columns))
    return pl.concat(frames, how="vertical_relaxed")


def read_tail(dt: Any, uri: str, options: dict, *, policy: bool) -> Tail | None:
    """Return the end of the log of Delta table `dt` at `uri`, or None to read everything.

    `options` are the storage options of `pl.read_parquet` (object storage).  With
    `policy`, the last policy_version is looked up too (in the newest files that hold one).
    """
    actions = dt.get_add_actions(flatten=True)
    if actions.num_rows == 0:
        return Tail(None, None, None, 0)
    names = set(actions.column_names)
    if "max.seq" not in names:
        return None
    tops = actions.column("max.seq").to_pylist()
    paths = actions.column("path").to_pylist()
    if any(t is None for t in tops) or any("://" in p for p in paths):
        return None
    url: Callable[[str], str] = lambda p: f"{uri}/{unquote(p)}"  # noqa: E731
    top = max(tops)
    files = [url(p) for p, t in zip(paths, tops, strict=True) if t == top]
    rows = _read(files, TAIL_COLUMNS, options).filter(pl.col("seq") == top)
    if rows.height != 1:  # stats that do not match, or a forked seq: read everything
        return None
    last = rows.row(0, named=True)
    read = len(files)
    last_policy = last["policy_version"]
    if last_policy is None and policy:
        nulls = (
            actions.column("null_count.policy_version").to_pylist()
            if "null_count.policy_version" in names
            else [None] * len(paths)
        )
        counts = actions.column("num_records").to_pylist()
        # files that may hold a policy_version, newest (largest seq) first
        candidates = sorted(
            (
                (t, p)
                for p, t, n, c in zip(paths, tops, nulls, counts, strict=True)
                if n is None or c is None or n < c
            ),
            reverse=True,
        )
        best: tuple[int, str] | None = None
        for t, p in candidates:  # usually the first one holds it
            if best is not None and best[0] >= t:
                break
            found = (
                _read([url(p)], ("seq", "policy_version"), options)
                .filter(pl.col("policy_version").is_not_null())
                .sort("seq")
                .tail(1)
            )
            read += 1
            if found.height and (best is None or int(found["seq"][0]) > best[0]):
                best = (int(found["seq"][0]), str(found["policy_version"][0]))
        last_policy = best[1] if best else None
    return Tail((int(last["seq"]), str(last["hash"])), last_policy, last, read)
