"""Cost of the signed audit log (issue 18 item 7) against the HMAC chain it replaced.

Appends N records in one batch (each chained with SHA-256 and signed with Ed25519) and
verifies them (one signature check per record), and times the same records' HMAC-SHA256
chain (what the log computed per record before signatures) as the peer.  Also the raw
Ed25519 sign/verify cost of the installed `cryptography`, so a slow figure can be told
apart from Hortus' own overhead (canonical JSON, Delta write).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_audit.py [--records 5000]
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

from hortus.governance.audit import AuditLog, AuditRecord, content_hash, record_hash  # noqa: E402

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    n = parser.parse_args().records
    print(machine_line())
    records = [
        AuditRecord("alex", "read", f"silver.t{i}", detail="grant: analysts read silver.*",
                    policy_version="p" * 64, ts=T0 + timedelta(seconds=i))
        for i in range(n)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(Path(tmp) / "audit_log", b"bench-secret")
        t = time.perf_counter()
        log.append(*records)
        append_s = time.perf_counter() - t
        t = time.perf_counter()
        result = log.verify()
        verify_s = time.perf_counter() - t
        assert result.ok, result
        rows = log._frame().with_columns(pl.col("ts").dt.epoch("us")).to_dicts()
    t = time.perf_counter()
    for row in rows:  # the HMAC chain's per-record work (the peer)
        record_hash(row, b"bench-secret")
    hmac_s = time.perf_counter() - t
    t = time.perf_counter()
    for row in rows:
        content_hash(row)
    sha_s = time.perf_counter() - t
    key = Ed25519PrivateKey.generate()
    msg = b"m" * 52
    t = time.perf_counter()
    sigs = [key.sign(msg) for _ in range(min(n, 2000))]
    sign_us = (time.perf_counter() - t) / len(sigs) * 1e6
    pub = key.public_key()
    t = time.perf_counter()
    for s in sigs:
        pub.verify(s, msg)
    verify_us = (time.perf_counter() - t) / len(sigs) * 1e6
    print(f"records: {n:,}")
    print(f"append (chain + sign + Delta commit): {append_s:.2f} s  {n / append_s:,.0f} records/s")
    print(f"verify (hash + signature + links + anchor): {verify_s:.2f} s  "
          f"{n / verify_s:,.0f} records/s")  # fmt: skip
    print(f"peer, HMAC-SHA256 chain hash only: {hmac_s:.3f} s  {n / hmac_s:,.0f} records/s")
    print(f"SHA-256 content hash only: {sha_s:.3f} s")
    print(f"raw Ed25519 (cryptography): sign {sign_us:.0f} us, verify {verify_us:.0f} us")
    print(f"ratio verify / HMAC chain: {verify_s / hmac_s:.1f}x")


if __name__ == "__main__":
    main()
