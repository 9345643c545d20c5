"""Cost of the signed audit log (issue 18 item 7) against the HMAC chain it replaced.

Three parts, all measured in this run:

1. **append on a long log**: a log of `--commits` commits of `--per-commit` records
   (a few thousand records), then the first append of a fresh `AuditLog` (what each
   `hortus` process pays): reading the chain head from the file of the last seq (now)
   against reading the seq/hash/policy columns of every file (what `AuditLog.head()`
   did before, the peer);
2. **verify**: the same log (one signed chain head per commit), the same records
   re-signed on every record (the format written earlier in session 8: one Ed25519
   check per record), and one batch of `--records` records (one signature in all);
   peer: the HMAC-SHA256 chain hash of the same records (what the log computed per
   record before signatures);
3. the raw Ed25519 sign/verify cost of the installed `cryptography`, so a slow figure
   can be told apart from Hortus' own overhead (canonical JSON, Delta reads).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_audit.py [--commits 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line  # noqa: E402

from hortus.governance._audit_keys import derived_key  # noqa: E402
from hortus.governance.audit import (  # noqa: E402
    AuditLog,
    AuditRecord,
    content_hash,
    record_hash,
    signed_message,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SECRET = b"bench-secret"


def _records(n: int, start: int = 0) -> list[AuditRecord]:
    return [
        AuditRecord("alex", "read", f"silver.t{i}", detail="grant: analysts read silver.*",
                    policy_version="p" * 64 if i % 4 else None, ts=T0 + timedelta(seconds=i))
        for i in range(start, start + n)
    ]  # fmt: skip


def _timed(fn, repeat: int = 3) -> tuple[float, object]:
    """Return the median seconds of `repeat` calls and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2], out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--per-commit", type=int, default=10)
    parser.add_argument("--records", type=int, default=5000, help="records of the one-batch log")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ops" / "audit_log"
        log = AuditLog(path, SECRET)
        t = time.perf_counter()
        for c in range(args.commits):
            log.append(*_records(args.per_commit, c * args.per_commit), track_policy=True)
        build_s = time.perf_counter() - t
        n = args.commits * args.per_commit + 1
        print(f"long log: {args.commits} commits x {args.per_commit} records (+policy_change) "
              f"= {n:,} records, built in {build_s:.1f} s")  # fmt: skip

        # 1. the first append of a fresh process: tail read vs the old full column read
        def full_read() -> tuple:
            fresh = AuditLog(path, SECRET)
            cols = fresh._columns("seq", "hash", "policy_version", "key_id", "action", "detail")
            cols = cols.sort("seq")
            return (int(cols["seq"][-1]), cols["policy_version"].drop_nulls()[-1])

        def tail_read() -> tuple:
            fresh = AuditLog(path, SECRET)
            return (fresh.head()[0], fresh.last_policy_version(), fresh.tail_files_read)

        full_s, full = _timed(full_read)
        tail_s, tail = _timed(tail_read)
        assert full == tail[:2], (full, tail)
        fresh = AuditLog(path, SECRET)
        t = time.perf_counter()
        fresh.append(*_records(1, 10**6), track_policy=True)
        append_s = time.perf_counter() - t
        print(f"head + last policy, full column read (before; peer): {full_s * 1000:,.0f} ms")
        print(f"head + last policy, tail files only (now): {tail_s * 1000:,.0f} ms "
              f"({tail[2]} files read)  ratio {full_s / tail_s:.0f}x faster")  # fmt: skip
        print(f"first append of a fresh AuditLog (tail read + sign + commit + anchor): "
              f"{append_s * 1000:,.0f} ms")  # fmt: skip

        # 2. verify: one signature per commit, against one per record
        verify_s, result = _timed(lambda: AuditLog(path, SECRET).verify())
        assert result.ok, result
        rows = log._frame().to_dicts()
        key = derived_key(SECRET)
        for row in rows:  # the earlier format: every record signed
            row["sig"] = key.sign(signed_message(row["hash"])).hex()
        pl.DataFrame(rows, schema=log._frame().schema).write_delta(str(path), mode="overwrite")
        per_record_s, result = _timed(lambda: AuditLog(path, SECRET).verify())
        assert result.ok, result
        epoch_rows = log._frame().with_columns(pl.col("ts").dt.epoch("us")).to_dicts()
    with tempfile.TemporaryDirectory() as tmp:
        one = AuditLog(Path(tmp) / "audit_log", SECRET)
        one.append(*_records(args.records))
        batch_s, result = _timed(one.verify)
        assert result.ok, result
    t = time.perf_counter()
    for row in epoch_rows:  # the HMAC chain's per-record work (the peer)
        record_hash(row, SECRET)
    hmac_s = time.perf_counter() - t
    t = time.perf_counter()
    for row in epoch_rows:
        content_hash(row)
    sha_s = time.perf_counter() - t
    pkey = Ed25519PrivateKey.generate()
    msg = b"m" * 52
    t = time.perf_counter()
    sigs = [pkey.sign(msg) for _ in range(2000)]
    sign_us = (time.perf_counter() - t) / len(sigs) * 1e6
    pub = pkey.public_key()
    t = time.perf_counter()
    for s in sigs:
        pub.verify(s, msg)
    verify_us = (time.perf_counter() - t) / len(sigs) * 1e6
    print(f"verify, {n:,} records, signed head per commit (now): {verify_s:.2f} s  "
          f"{n / verify_s:,.0f} records/s")  # fmt: skip
    print(f"verify, same records, signed every record (before): {per_record_s:.2f} s  "
          f"{n / per_record_s:,.0f} records/s  ratio {per_record_s / verify_s:.1f}x")  # fmt: skip
    print(f"verify, {args.records:,} records in one commit (one signature): {batch_s:.2f} s  "
          f"{args.records / batch_s:,.0f} records/s")  # fmt: skip
    print(f"peer, HMAC-SHA256 chain hash only ({n:,}): {hmac_s:.3f} s  "
          f"{n / hmac_s:,.0f} records/s")  # fmt: skip
    print(f"SHA-256 content hash only ({n:,}): {sha_s:.3f} s")
    print(f"raw Ed25519 (cryptography): sign {sign_us:.0f} us, verify {verify_us:.0f} us")
    print(f"ratio verify (per-commit heads) / HMAC chain: {verify_s / hmac_s:.1f}x")


if __name__ == "__main__":
    main()
