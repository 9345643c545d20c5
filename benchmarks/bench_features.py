"""Benchmark: online feature lookups and point-in-time training-set builds.

1. Online lookup latency: p50/p99 over 10,000 `OnlineStore.get_vector` calls (a
   50-feature vector: 7 SQLite primary-key lookups + derived features in Python),
   against a peer measured in the same run: the same vectors from plain Python
   dicts already in memory (the floor of any in-process store).
2. Training-set build for ~1M labelled impressions: label + all 50 features as of
   each impression (`feature_store.training_set`), against a peer: one polars
   `join_asof` of the spine to the raw events of one group (the floor of the
   as-of join, for 1 group instead of 7).

Usage: python benchmarks/bench_features.py [--users 20000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from _common import as_pipeline


def main() -> None:
    """Run both benchmarks and print figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--lookups", type=int, default=10_000)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    from hortus.config import Paths
    from hortus.domains.plantshop.features import FEATURES
    from hortus.domains.plantshop.simulate import SimConfig, simulate
    from hortus.domains.plantshop.training import labelled_impressions
    from hortus.features import store as fsm
    from hortus.lakehouse import silver
    from hortus.lakehouse.catalog import Catalog
    from hortus.lakehouse.ingest import ingest
    from hortus.lakehouse.tables import Lakehouse

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    root = Path(args.workdir or tempfile.mkdtemp(prefix="hortus-bench-fs-"))
    as_pipeline(root)
    paths = Paths.at(root)
    lh = Lakehouse(paths=paths, catalog=Catalog.load(), stage="bench")
    if not lh.exists("silver.events"):
        t = time.perf_counter()
        simulate(SimConfig(seed=7, days=args.days, users=args.users, plants=300), paths.data)
        ingest(paths.data, lh)
        silver.build(lh, silver.SilverOptions(key=b"bench-key"))
        print(f"  (prepared silver for {args.users:,} users in {time.perf_counter() - t:.0f} s)")

    # ---------------------------------------------------------- training set
    t0 = time.perf_counter()
    fsm.build_offline(lh, FEATURES)
    t1 = time.perf_counter()
    spine = labelled_impressions(lh.scan("silver.events"), 7)
    examples = fsm.training_set(lh, FEATURES, spine, "ts")
    t2 = time.perf_counter()
    events = lh.read("silver.events", columns=["user_id", "ts", "event_type"]).sort("ts")
    s0 = time.perf_counter()
    peer = spine.select("user_id", "ts").sort("ts").join_asof(
        events.rename({"ts": "ets"}), left_on="ts", right_on="ets", by="user_id",
        strategy="backward", allow_exact_matches=False,
    )  # fmt: skip
    s1 = time.perf_counter()
    assert peer.height == spine.height
    print(
        f"training set: {examples.height:,} labelled examples x {len(FEATURES.feature_names)} "
        f"features; offline logs {t1 - t0:.2f} s, labels + PIT join {t2 - t1:.2f} s, "
        f"{examples.height / (t2 - t1):,.0f} examples/s"
    )
    print(f"  peer (1 raw join_asof, 1 group, no features): {s1 - s0:.2f} s; "
          f"ratio {(t2 - t1) / (s1 - s0):.1f}x")  # fmt: skip

    # ---------------------------------------------------------------- lookups
    logs = fsm.read_logs(lh, FEATURES)
    store = fsm.OnlineStore(root / "online.sqlite", FEATURES)
    end = events["ts"].max()
    m0 = time.perf_counter()
    store.materialize(logs, end + timedelta(microseconds=1), {c.full_name: c for c in lh.catalog})
    m1 = time.perf_counter()
    keys = fsm.sample_entities(lh, args.lookups, 1).rows()
    rng = np.random.default_rng(0)
    order = rng.integers(0, len(keys), args.lookups)
    store.get_vector({"user_id": keys[0][0], "plant_id": keys[0][1]})  # open + warm
    lat = np.empty(args.lookups)
    for i, j in enumerate(order):
        u, p = keys[j]
        a = time.perf_counter()
        vec = store.get_vector({"user_id": u, "plant_id": p})
        lat[i] = time.perf_counter() - a
    assert len(vec) == len(FEATURES.feature_names)
    # peer: the same vectors from dicts in memory
    cache = {k: store.get_vector({"user_id": k[0], "plant_id": k[1]}) for k in set(keys)}
    plat = np.empty(args.lookups)
    for i, j in enumerate(order):
        a = time.perf_counter()
        _ = dict(cache[keys[j]])
        plat[i] = time.perf_counter() - a
    p50, p99 = np.percentile(lat, 50) * 1e6, np.percentile(lat, 99) * 1e6
    q50, q99 = np.percentile(plat, 50) * 1e6, np.percentile(plat, 99) * 1e6
    print(
        f"online store: materialised in {m1 - m0:.2f} s, {store.path.stat().st_size / 1e6:.0f} MB; "
        f"{args.lookups:,} lookups of {len(vec)} features: p50 {p50:.0f} us, p99 {p99:.0f} us "
        f"(target p99 < 1000 us)"
    )
    print(f"  peer (dict copy in memory): p50 {q50:.1f} us, p99 {q99:.1f} us; "
          f"p99 ratio {p99 / q99:.0f}x")  # fmt: skip
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
