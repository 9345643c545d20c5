"""Benchmark: in-process online feature lookups (issue 15 item 5), against a dict floor.

For a simulated shop the online store is materialised and a random stream of
requests is looked up:

1. one request (user x plant, a 50-feature vector: 7 groups + 8 derived features)
   with `get_vector`, p50/p99 over `--lookups` calls (target p99 < 0.2 ms);
2. one recommendation's candidates: 1 user x `--candidates` plants in one
   `get_vectors` call (one query per group for all of them), p50/p99;
3. the same through the policy wrapper (`open_online`, masking + audit record) as
   a user who may read the feature tables (ml-engineer `mia`).

The floor is measured in the same run: the same vectors copied from plain Python
dicts already in memory (what any in-process store must at least do).  With
`--redis URL` (a running redis-server) the Redis backend is measured too, loaded
from the same snapshot.  Both stores' vectors are checked equal to the floor's:
exit 1 on any difference.

Usage: python benchmarks/bench_online.py [--users 20000] [--lookups 10000] [--redis URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from _common import as_pipeline, machine_line, peak_rss_mb


def _pcts(lat: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(lat, 50) * 1e6), float(np.percentile(lat, 99) * 1e6)


def _time(fn, args_list) -> tuple[np.ndarray, np.ndarray]:
    """Return wall-clock and thread CPU seconds of each call (CPU: not the waits of a busy box)."""
    lat = np.empty(len(args_list))
    cpu = np.empty(len(args_list))
    for i, a in enumerate(args_list):
        c = time.thread_time()
        t = time.perf_counter()
        fn(a)
        lat[i] = time.perf_counter() - t
        cpu[i] = time.thread_time() - c
    return lat, cpu


def _line(name: str, got: tuple, floor: tuple | None = None) -> str:
    (p50, p99), (c50, c99) = _pcts(got[0]), _pcts(got[1])
    out = (
        f"  {name:<40} wall p50 {p50:8.1f} p99 {p99:8.1f} us | CPU p50 {c50:7.1f} p99 {c99:7.1f} us"
    )
    if floor is not None:
        f99 = _pcts(floor[0])[1]
        out += f" | wall p99 {p99 / f99:.0f}x the floor's"
    return out


def main() -> int:
    """Build a store, run the lookups, print figures; exit 1 if a store disagrees."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--plants", type=int, default=300)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--lookups", type=int, default=10_000)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--redis", default=None, help="redis://host:port/db of a running server")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    from hortus.config import Paths
    from hortus.domains.plantshop.features import FEATURES
    from hortus.domains.plantshop.simulate import SimConfig, simulate
    from hortus.features import store as fsm
    from hortus.features.online import open_online
    from hortus.lakehouse import silver
    from hortus.lakehouse.catalog import Catalog
    from hortus.lakehouse.ingest import ingest
    from hortus.lakehouse.tables import Lakehouse

    print(machine_line())
    root = Path(args.workdir or tempfile.mkdtemp(prefix="hortus-bench-online-"))
    as_pipeline(root)
    paths = Paths.at(root)
    lh = Lakehouse(paths=paths, catalog=Catalog.load(), stage="bench")
    if not lh.exists("silver.events"):
        t = time.perf_counter()
        cfg = SimConfig(seed=7, days=args.days, users=args.users, plants=args.plants)
        simulate(cfg, paths.data)
        ingest(paths.data, lh)
        silver.build(lh, silver.SilverOptions(key=b"bench-key"))
        fsm.build_offline(lh, FEATURES)
        print(f"  (prepared silver and feature logs in {time.perf_counter() - t:.0f} s)")
    logs = fsm.read_logs(lh, FEATURES)
    contracts = {c.full_name: c for c in lh.catalog}
    end = lh.scan("silver.events").select("ts").max().collect().item()
    at = end + timedelta(microseconds=1)
    store = fsm.OnlineStore(paths.online_store, FEATURES)
    m0 = time.perf_counter()
    rows = store.materialize(logs, at, contracts)
    mb = paths.online_store.stat().st_size / 1e6
    print(f"sqlite store: {sum(rows.values()):,} rows materialised in "
          f"{time.perf_counter() - m0:.2f} s ({mb:.0f} MB)")  # fmt: skip

    pairs = fsm.sample_entities(lh, "silver.events", ("user_id", "plant_id"), 5000, 1).rows()
    plants = sorted({p for _, p in pairs})
    rng = np.random.default_rng(0)
    singles = [dict(zip(("user_id", "plant_id"), pairs[j], strict=True))
               for j in rng.integers(0, len(pairs), args.lookups)]  # fmt: skip
    n_rec = max(1, args.lookups // 20)
    k = min(args.candidates, len(plants))
    recs = [[{"user_id": pairs[j][0], "plant_id": p} for p in rng.choice(plants, k, replace=False)]
            for j in rng.integers(0, len(pairs), n_rec)]  # fmt: skip

    # the floor: vectors already in memory, copied out of a dict
    cache = {}
    for batch in [[e] for e in singles] + recs:
        for e, v in zip(batch, store.get_vectors(batch), strict=True):
            cache[(e["user_id"], e["plant_id"])] = v
    floor1 = _time(lambda e: dict(cache[(e["user_id"], e["plant_id"])]), singles)
    floor_k = _time(lambda b: [dict(cache[(e["user_id"], e["plant_id"])]) for e in b], recs)

    bad = 0
    print(f"{args.lookups:,} single lookups ({len(FEATURES.feature_names)} features) and "
          f"{n_rec:,} recommendation lookups of {k} candidates:")  # fmt: skip
    print(_line("floor: dict copy, 1 vector", floor1))
    print(_line(f"floor: dict copy, {k} vectors", floor_k))
    stores = [("sqlite", store)]
    if args.redis:
        from hortus.features._redis import RedisOnlineStore

        rstore = RedisOnlineStore(args.redis, FEATURES, prefix="hortus-bench")
        r0 = time.perf_counter()
        rstore.materialize(logs, at, contracts)
        print(f"redis store: materialised in {time.perf_counter() - r0:.2f} s")
        stores.append(("redis", rstore))
    for name, s in stores:
        s.get_vector(singles[0])  # open + warm
        lat1 = _time(s.get_vector, singles)
        latk = _time(s.get_vectors, recs)
        print(_line(f"{name}: get_vector, 1 vector", lat1, floor1))
        print(_line(f"{name}: get_vectors, {k} vectors", latk, floor_k))
        for batch in recs[:50]:
            want = [cache[(e["user_id"], e["plant_id"])] for e in batch]
            if s.get_vectors(batch) != want:
                bad += 1
    online = open_online(lh, FEATURES, user="mia", store=store)
    latp = _time(lambda b: online.get_vectors(b, purpose="bench"), recs)
    online.close()
    print(_line(f"sqlite + policy (mia, masked, audited), {k}", latp, floor_k))
    print("  (target: in-process lookup p99 < 200 us; CPU time is the cost of a lookup, wall time")
    print("   adds the waits for the cores on a shared machine: see the load average above;")
    print(
        "   Redis CPU is the client's only, its server and the loopback round trips add wall time)"
    )
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    if bad:
        print(f"DIFFERENT: {bad} recommendation batches differ from the floor's vectors")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
