"""The table API on object storage against local disk (issue 16 item 2), in one run.

The same operations through `Lakehouse` on a lakehouse folder and on ``s3://`` served by
moto on 127.0.0.1 (an in-memory Python server: it measures Hortus's and delta-rs's
round trips and the extra work of the object-store path, not the latency or throughput
of a real S3 service, which is tens of milliseconds per request from a cloud VM):

- write a `--rows` frame (overwrite: one commit), read it back whole;
- `--appends` one-row appends to an operations table (one commit each: what the run log,
  audit log and events do), median per append;
- a lease taken and released (put-if-absent / compare-and-swap), median;
- a leased write (fenced: on S3 the token goes into the commit), median.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_objstore.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from _common import as_pipeline, machine_line  # noqa: E402

from hortus.lakehouse import lease  # noqa: E402
from hortus.lakehouse.tables import Lakehouse  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUCKET = "hortus-bench"


def _moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    import boto3

    boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="bench", aws_secret_access_key="bench",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)  # fmt: skip
    return proc, url


def _frame(lh: Lakehouse, rows: int) -> pl.DataFrame:
    schema = lh.catalog.get("ops.monitor_metrics").schema
    rng = np.random.default_rng(7)
    at = datetime(2025, 3, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "at": [at] * rows,
            "monitor": rng.choice(["drift", "freshness", "volume"], rows),
            "metric": rng.choice(["psi", "hours", "rows"], rows),
            "subject": [f"s{i % 1000}" for i in range(rows)],
            "value": rng.normal(size=rows),
            "labels": ["{}"] * rows,
            "batch_id": [f"b{i % 50}" for i in range(rows)],
        },
        schema=schema,
    )


def _median(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _run(lh: Lakehouse, lake: Path | str, rows: int, appends: int) -> dict[str, float]:
    out = {}
    df = _frame(lh, rows)
    t0 = time.perf_counter()
    lh.write("ops.monitor_metrics", df, mode="overwrite")
    out[f"write {rows:,} rows"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert lh.read("ops.monitor_metrics").height == rows
    out[f"read {rows:,} rows"] = time.perf_counter() - t0
    one = _frame(lh, 1)
    out["one-row append (median)"] = _median(lambda: lh.write("ops.monitor_metrics", one), appends)

    def take() -> None:
        lease.acquire(lake, "gold.kpi_daily", holder="bench", stage="bench", wait=0).release()

    out["lease acquire + release (median)"] = _median(take, 5)
    kpis = pl.DataFrame(schema=lh.catalog.get("gold.kpi_daily").schema)

    def leased() -> None:
        with lease.hold(lake, ["gold.kpi_daily"], holder="bench", stage="bench"):
            lh.write("gold.kpi_daily", kpis, mode="overwrite")

    out["leased overwrite, lease included (median)"] = _median(leased, 5)
    lh.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--appends", type=int, default=20)
    args = ap.parse_args()
    print(machine_line())
    tmp = Path(tempfile.mkdtemp(prefix="bench-objstore-"))
    as_pipeline(tmp)  # the repository's access policy, as the pipeline user
    shutil.copy(REPO / "hortus.yaml", tmp / "hortus.yaml")
    proc, url = _moto()
    os.environ.update(
        AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
    )  # fmt: skip
    try:
        local = _run(Lakehouse.open(tmp, stage="bench"), tmp / "lakehouse", args.rows, args.appends)
        uri = f"s3://{BUCKET}/lake"
        s3 = _run(Lakehouse.open(tmp, stage="bench", lakehouse=uri), uri, args.rows, args.appends)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'operation':44} {'local disk':>12} {'S3 (moto)':>12} {'ratio':>7}")
    for name, t in local.items():
        print(f"{name:44} {t:>10.3f} s {s3[name]:>10.3f} s {s3[name] / t:>6.1f}x")
    print(
        "\nS3 = moto on 127.0.0.1 (in-memory Python server): round trips and the object-store"
        "\npath's own work, not a real S3 service's latency or bandwidth."
    )


if __name__ == "__main__":
    main()
