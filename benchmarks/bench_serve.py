"""Benchmark: `hortus serve` under load on loopback, against a bare Starlette floor.

Set-up (not timed): a simulated shop (`--users`, `--plants` so that about 50 plants are
in stock) through ingest, silver, the feature logs and the online store; a recommender
with the project's signature and the params.yaml estimator (HistGradientBoosting, 200
iterations, 31 leaves) fitted on store vectors, registered, gated, approved and
promoted to champion; a bearer token in HORTUS_SERVE_TOKENS.

Two servers, each its own process with uvicorn on 127.0.0.1 (one worker, OMP 1 thread):

1. hortus: `hortus.serving.service` as `hortus serve` runs it (token check, predict
   grant, audit records, signature checks, one batched policy-checked online lookup,
   prediction log micro-batches to Delta);
2. floor: a bare Starlette app that calls the same scikit-learn pipeline on features
   already in memory (each user's candidate matrix precomputed; /predict builds the
   typed frame from the JSON rows and scores it): no auth, no store, no log.

The load generator is an asyncio client written on raw HTTP/1.1 keep-alive
connections in this process (no httpx/locust: httpx is not in the lock, locust would
add a dependency tree and a gevent runtime, and both cost more client CPU per request
on the same 2 cores than a few lines of asyncio, which would slow the servers they
measure).  Per scenario: `--concurrency` connections in a closed loop for
`--seconds`; p50, p99, throughput and errors (non-200 or connection errors), then the
ratio hortus / floor.  And /recommend paced at `--rate` requests/s (open loop, one
connection per in-flight request up to the concurrency) for the target "p99 < 10 ms at
100 requests/s with zero errors".

Scenarios: /recommend (entity + k=10 over ~50 in-stock candidates), /predict 1 row,
/predict 100 rows.  The answers of both servers for the same request are compared
(scores equal to 1e-9): exit 1 when they differ or hortus answers an error.

Usage: python benchmarks/bench_serve.py [--users 2000] [--seconds 10] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from _common import REPO, as_pipeline, machine_line

TOKEN = "bench-serve-token-0123456789"
MODEL = "recommender"


# ------------------------------------------------------------------------- set-up
def prepare(root: Path, users: int, plants: int, days: int) -> dict:
    """Build the shop, store and champion in `root` (reused when present); return request data."""
    import polars as pl

    from hortus.checks.gate import GateResult, record
    from hortus.checks.model_checks import CheckResult
    from hortus.config import Paths
    from hortus.domains.plantshop.features import FEATURES
    from hortus.domains.plantshop.simulate import SimConfig, simulate
    from hortus.features import store as fsm
    from hortus.lakehouse import silver
    from hortus.lakehouse.catalog import Catalog
    from hortus.lakehouse.ingest import ingest
    from hortus.lakehouse.tables import Lakehouse
    from hortus.models import modeling
    from hortus.models.registry import Receipt, Registry
    from hortus.params import load_section
    from hortus.project.definition import Project, spec_for

    as_pipeline(root)
    shutil.copy(REPO / "hortus.yaml", root / "hortus.yaml")
    paths = Paths.at(root)
    lh = Lakehouse(paths=paths, catalog=Catalog.load(root=root), stage="bench", user="pipeline")
    if not lh.exists("silver.events"):
        t = time.perf_counter()
        simulate(SimConfig(seed=7, days=days, users=users, plants=plants), paths.data)
        ingest(paths.data, lh)
        silver.build(lh, silver.SilverOptions(key=b"bench-key"))
        fsm.build_offline(lh, FEATURES)
        at = lh.scan("silver.events").select(pl.col("ts").max()).collect().item()
        fsm.OnlineStore(paths.online_store, FEATURES).materialize(
            fsm.read_logs(lh, FEATURES), at + timedelta(microseconds=1),
            {c.full_name: c for c in lh.catalog},
        )  # fmt: skip
        print(f"  (prepared shop and online store in {time.perf_counter() - t:.0f} s)")
    project = Project.load(root)
    store = fsm.OnlineStore(paths.online_store, FEATURES)
    user_ids = lh.read("silver.users")["user_id"].sort().to_list()
    plant_ids = lh.read("silver.plants")["plant_id"].unique().sort().to_list()
    reg = Registry(lh, MODEL)
    if not reg.versions():
        rng = np.random.default_rng(3)
        pairs = [{"user_id": str(u), "plant_id": str(p)}
                 for u, p in zip(rng.choice(user_ids, 4000), rng.choice(plant_ids, 4000),
                                 strict=True)]  # fmt: skip
        frame = pl.DataFrame(store.get_vectors(pairs), infer_schema_length=None)
        interest = pl.col("plant_popularity__views_30d").fill_null(0) + 5 * pl.col(
            "user_plant__views_30d").fill_null(0)  # fmt: skip
        noise = pl.Series(rng.normal(0, 1, frame.height))
        frame = frame.with_columns(
            ((interest.rank() / pl.len() * 3 + noise) > 2.2).cast(pl.Int64).alias("label")
        )
        train = load_section(REPO / "params.yaml", "train")
        spec = spec_for(project, project.model(MODEL), lh.catalog, train)
        pipeline = modeling.build_pipeline(spec).fit(
            modeling.to_model_input(frame, spec), modeling.target_values(frame, spec)
        )
        signature = modeling.Signature.from_frame(frame, spec)
        path = root / "build" / "model.skops"
        path.parent.mkdir(exist_ok=True)
        sha = modeling.save_model(pipeline, signature, path)
        mv = reg.register(path, sha256=sha, signature=signature.to_dict(), metrics={},
                          receipt=Receipt.collect(root, params={}, tables_read={}),
                          spec=spec.to_dict())  # fmt: skip
        now = datetime.now(UTC)
        as_mia = Registry(Lakehouse(paths=paths, catalog=lh.catalog, user="mia"), MODEL)
        check = CheckResult("bench", True, 1.0, 1.0, "bench set-up")
        record(as_mia, GateResult(MODEL, mv.version, [check], started_at=now, finished_at=now),
               root / "gates", git_commit="bench")  # fmt: skip
        Registry(Lakehouse(paths=paths, catalog=lh.catalog, user="paula"), MODEL).approve(
            mv.version, reason="bench"
        )
        as_mia.promote(mv.version, reason="bench")
    rng = np.random.default_rng(11)
    users_sample = [str(u) for u in rng.choice(user_ids, 200, replace=False)]
    rows = store.get_vectors([{"user_id": u, "plant_id": str(rng.choice(plant_ids))}
                              for u in rng.choice(user_ids, 400)])  # fmt: skip
    clean = lambda v: {k: (None if isinstance(x, float) and x != x else x) for k, x in v.items()}  # noqa: E731
    return {"users": users_sample, "rows": [clean(r) for r in rows]}


# ------------------------------------------------------------------------ servers
def run_hortus(root: Path, port: int) -> None:
    import uvicorn

    from hortus.serving.service import ServeConfig, Service, build_app

    service = Service(ServeConfig(root=root))
    uvicorn.run(build_app(service), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, lifespan="on")  # fmt: skip


def run_floor(root: Path, port: int, users: list[str]) -> None:
    """A bare Starlette app: the same pipeline on features already in memory."""
    import polars as pl
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from hortus.domains.plantshop.scoring import candidate_items
    from hortus.features.online import open_store
    from hortus.lakehouse.tables import Lakehouse
    from hortus.serving._model import load_served

    lh = Lakehouse.open(root, user="pipeline")
    model = load_served(lh, MODEL, "champion")
    project_fs = __import__("hortus.domains.plantshop.features", fromlist=["FEATURES"]).FEATURES
    store = open_store(root, project_fs)
    plants = candidate_items(lh, store.refreshed_at)["plant_id"].to_list()
    spec, pipe = model.spec, model.pipeline
    from hortus.models.modeling import to_model_input

    matrices = {}
    for u in users:  # every request's candidate matrix, in memory before the first request
        frame = model.frame(store.get_vectors([{"user_id": u, "plant_id": p} for p in plants]))
        matrices[u] = to_model_input(frame, spec)
    schema = {c["name"]: c for c in model.signature.columns}
    kinds = {"string": pl.String, "int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean}
    dtypes = {n: kinds.get(c["type"], pl.String) for n, c in schema.items()}

    async def recommend(request: Request):
        body = json.loads(await request.body())
        user, k = body["entity"]["user_id"], body.get("k", 10)
        scores = pipe.predict_proba(matrices[user])[:, 1]
        top = sorted(range(len(plants)), key=lambda i: (-scores[i], plants[i]))[:k]
        return JSONResponse({"items": [{"plant_id": plants[i], "score": float(scores[i]),
                                        "rank": r} for r, i in enumerate(top, 1)]})  # fmt: skip

    async def predict(request: Request):
        rows = json.loads(await request.body())["rows"]
        frame = pl.DataFrame({n: [r.get(n) for r in rows] for n in schema}, schema=dtypes,
                             strict=False)  # fmt: skip
        scores = pipe.predict_proba(to_model_input(frame, spec))[:, 1]
        return JSONResponse({"predictions": [{"score": float(s)} for s in scores]})

    app = Starlette(routes=[Route(f"/v1/models/{MODEL}/recommend", recommend, methods=["POST"]),
                            Route(f"/v1/models/{MODEL}/predict", predict, methods=["POST"]),
                            Route("/healthz", lambda r: JSONResponse({"ok": True}))])  # fmt: skip
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, root: Path, users: list[str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = os.environ | {"OMP_NUM_THREADS": "1", "HORTUS_SERVE_TOKENS":
                        f"shop-web={TOKEN}@2099-01-01T00:00:00Z"}  # fmt: skip
    cmd = [sys.executable, __file__, "--server", kind, "--workdir", str(root), "--port", str(port),
           "--users-json", json.dumps(users)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=Path(__file__).parent)
    ready = "/readyz" if kind == "hortus" else "/healthz"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{kind} server exited with {proc.returncode}")
        try:
            status, _ = asyncio.run(_once(port, "GET", ready, b""))
            if status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"{kind} server did not become ready")


# ------------------------------------------------------------------------- client
def _request(method: str, path: str, body: bytes) -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


async def _read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status = int((await reader.readline()).split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _once(port: int, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_request(method, path, body))
    await writer.drain()
    out = await _read(reader)
    writer.close()
    return out


async def _closed_loop(port: int, path: str, bodies: list[bytes], conc: int, seconds: float):
    lat: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = w
        while time.perf_counter() < deadline:
            req = _request("POST", path, bodies[i % len(bodies)])
            i += conc
            t = time.perf_counter()
            writer.write(req)
            await writer.drain()
            status, _ = await _read(reader)
            lat.append(time.perf_counter() - t)
            errors += status != 200
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(conc)))
    return np.array(lat), errors, time.perf_counter() - t0


async def _paced(port: int, path: str, bodies: list[bytes], rate: float, seconds: float,
                 conc: int):  # fmt: skip
    """Open loop: one request every 1/rate s on a pool of keep-alive connections."""
    lat: list[float] = []
    errors = 0
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(conc):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))

    async def one(i: int, due: float) -> None:
        nonlocal errors
        reader, writer = await pool.get()
        try:
            writer.write(_request("POST", path, bodies[i % len(bodies)]))
            await writer.drain()
            status, _ = await _read(reader)
            lat.append(time.perf_counter() - due)  # from when it was due: queueing counts
            errors += status != 200
        finally:
            pool.put_nowait((reader, writer))

    n = int(rate * seconds)
    t0 = time.perf_counter()
    tasks = []
    for i in range(n):
        due = t0 + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return np.array(lat), errors, time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds process `pid` has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fmt(lat: np.ndarray, errors: int, wall: float) -> tuple[float, float, float, str]:
    p50, p99 = np.percentile(lat, 50) * 1e3, np.percentile(lat, 99) * 1e3
    rps = len(lat) / wall
    return p50, p99, rps, f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  {rps:7.1f} req/s  errors {errors}"


def compare(hport: int, fport: int, users: list[str], rows: list[dict]) -> int:
    """Return the number of answers where hortus and the floor disagree (or hortus errs)."""
    bad = 0
    for u in users[:10]:
        body = json.dumps({"entity": {"user_id": u}, "k": 10}).encode()
        hs, h = asyncio.run(_once(hport, "POST", f"/v1/models/{MODEL}/recommend", body))
        _, f = asyncio.run(_once(fport, "POST", f"/v1/models/{MODEL}/recommend", body))
        hi, fi = json.loads(h).get("items", []), json.loads(f)["items"]
        same = hs == 200 and [i["plant_id"] for i in hi] == [i["plant_id"] for i in fi]
        pairs = zip(hi, fi, strict=False)
        same = same and all(abs(a["score"] - b["score"]) < 1e-9 for a, b in pairs)
        bad += not same
    body = json.dumps({"rows": rows[:100]}).encode()
    hs, h = asyncio.run(_once(hport, "POST", f"/v1/models/{MODEL}/predict", body))
    _, f = asyncio.run(_once(fport, "POST", f"/v1/models/{MODEL}/predict", body))
    if hs != 200:
        print(f"hortus /predict answered {hs}: {h[:300]!r}")
        return bad + 1
    hp = [p["score"] for p in json.loads(h)["predictions"]]
    fp = [p["score"] for p in json.loads(f)["predictions"]]
    return bad + (not np.allclose(hp, fp, atol=1e-9))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--plants", type=int, default=60)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--server", choices=["hortus", "floor"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--users-json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.server == "hortus":
        run_hortus(Path(args.workdir), args.port)
        return 0
    if args.server == "floor":
        run_floor(Path(args.workdir), args.port, json.loads(args.users_json))
        return 0

    print(machine_line())
    root = Path(args.workdir or tempfile.mkdtemp(prefix="hortus-bench-serve-"))
    data = prepare(root, args.users, args.plants, args.days)
    users, rows = data["users"], data["rows"]
    servers = {}
    try:
        for kind in ("floor", "hortus"):
            servers[kind] = start(kind, root, users)
        hport, fport = servers["hortus"][1], servers["floor"][1]
        _, ready = asyncio.run(_once(hport, "GET", "/readyz", b""))
        cands = json.loads(asyncio.run(_once(hport, "POST", f"/v1/models/{MODEL}/recommend",
                           json.dumps({"entity": {"user_id": users[0]}}).encode()))[1])  # fmt: skip
        print(
            f"model {MODEL} v{json.loads(ready)['models'][MODEL]['version']}, "
            f"{cands.get('candidates')} candidates per /recommend, {args.concurrency} "
            f"connections, {args.seconds:g} s per run, servers: 1 uvicorn process each"
        )
        bad = compare(hport, fport, users, rows)
        rec = [json.dumps({"entity": {"user_id": u}, "k": 10}).encode() for u in users]
        one = [json.dumps({"rows": [r]}).encode() for r in rows]
        hundred = [json.dumps({"rows": rows[i : i + 100]}).encode() for i in range(0, 300, 50)]
        scenarios = [("/recommend k=10", "recommend", rec), ("/predict 1 row", "predict", one),
                     ("/predict 100 rows", "predict", hundred)]  # fmt: skip
        errors = 0
        for name, route, bodies in scenarios:
            path = f"/v1/models/{MODEL}/{route}"
            res = {}
            cpu = {}
            for kind, (proc, port) in (("floor", servers["floor"]), ("hortus", servers["hortus"])):
                c0 = cpu_seconds(proc.pid)
                lat, err, wall = asyncio.run(
                    _closed_loop(port, path, bodies, args.concurrency, args.seconds)
                )
                cpu[kind] = (cpu_seconds(proc.pid) - c0) / max(len(lat), 1) * 1e3
                res[kind] = _fmt(lat, err, wall)
                if kind == "hortus":
                    errors += err
                print(f"  {name:<18} {kind:<6} {res[kind][3]}  server CPU {cpu[kind]:5.2f} ms/req")
            (fp50, fp99, frps, _), (hp50, hp99, hrps, _) = res["floor"], res["hortus"]
            print(f"  {name:<18} ratio  p50 {hp50 / fp50:5.2f}x  p99 {hp99 / fp99:5.2f}x  "
                  f"throughput {hrps / frps:5.2f}x  CPU/req {cpu['hortus'] / cpu['floor']:5.2f}x "
                  "the floor's")  # fmt: skip
        for kind in ("floor", "hortus"):
            lat, err, wall = asyncio.run(_paced(servers[kind][1], f"/v1/models/{MODEL}/recommend",
                                                rec, args.rate, args.seconds,
                                                max(args.concurrency, 8)))  # fmt: skip
            if kind == "hortus":
                errors += err
            print(
                f"  /recommend at {args.rate:g} req/s {kind:<6} {_fmt(lat, err, wall)[3]}"
                + ("   (target: p99 < 10 ms, 0 errors)" if kind == "hortus" else "")
            )
        _, text = asyncio.run(_once(hport, "GET", "/metrics", b""))
        backlog = [ln for ln in text.decode().splitlines()
                   if ln.startswith("hortus_serve_prediction_log_backlog")]  # fmt: skip
        print(f"  hortus after the runs: {backlog[0] if backlog else '?'}")
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
        for proc, _ in servers.values():
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
    if bad or errors:
        print(f"FAILED: {bad} answer(s) differ from the floor's, {errors} hortus error(s)")
        return 1
    print("hortus and the floor gave the same rankings and scores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
