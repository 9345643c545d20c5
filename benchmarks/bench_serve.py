"""Benchmark: `hortus serve` under load on loopback, against floors and MLflow's model server.

Set-up (not timed): a simulated shop (`--users`, `--plants` so that about 50 plants are
in stock) through ingest, silver, the feature logs and the online store; a recommender
with the project's signature and the params.yaml estimator (HistGradientBoosting, 200
iterations, 31 leaves) fitted on store vectors, registered, gated, approved and
promoted to champion; a bearer token in HORTUS_SERVE_TOKENS.

Servers, each its own process on 127.0.0.1 (uvicorn, one worker, OMP_NUM_THREADS=1):

1. hortus: `hortus.serving.service` as `hortus serve` runs it (token check, predict
   grant, audit records, signature checks, one batched policy-checked online lookup,
   the compiled scorer of `hortus.serving._scorer`, prediction log micro-batches to
   Delta);
2. floor: a bare Starlette app that calls the same scikit-learn pipeline
   (``pipeline.predict_proba``) on features already in memory (each user's candidate
   matrix precomputed; /predict builds the typed frame from the JSON rows and scores
   it): no auth, no store, no checks, no log.  The floor the issue names;
3. floor-compiled: the same bare app scoring with hortus' compiled scorer (the same
   trees, the encoders folded into dicts) on in-memory estimator matrices: what the
   model alone costs hortus, so "hortus / floor-compiled" is the service's overhead;
4. mlflow (when `--mlflow-python` names a Python with MLflow, e.g. the
   `.bench-peers-mlflow` environment of `make bench-serve-peers`): the same fitted
   pipeline saved as an MLflow sklearn model (skops format, ``predict_proba``, the
   signature inferred from the rows) and served by ``mlflow models serve
   --env-manager local``; /invocations with the same 1 and 100 rows as /predict.

The load generator runs in its own process (`--client`), an asyncio client on raw
HTTP/1.1 keep-alive connections (no httpx: not in the lock; locust would add a
gevent runtime; both cost more client CPU per request on the same 2 cores).  Its CPU is
measured and printed beside each run so it can be seen not to dominate the cores.
Closed loop: `--concurrency` connections for `--seconds` each; open loop: requests
paced at `--rate` per second whatever the answers (latency counted from when a request
was due, so queueing counts), for the target "/recommend p99 < 10 ms at 100 requests/s
with zero errors".  p50, p99, throughput, errors (non-200 or connection errors),
server CPU per request (from /proc, the server's whole process tree) and ratios.

Scenarios: /recommend (entity + k=10 over ~50 in-stock candidates), /predict 1 row,
/predict 100 rows, /recommend and /predict 1 row paced.  The answers of hortus and
the floors (and MLflow's) for the same request are compared (scores equal to 1e-9):
exit 1 when they differ or hortus answers an error.

Usage: python benchmarks/bench_serve.py [--users 2000] [--seconds 10] [--concurrency 4]
       [--rate 100] [--mlflow-python .bench-peers-mlflow/bin/python]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
    champion = reg.get("champion")
    names = reg.load("champion")[1].names
    return {
        "users": users_sample,
        "rows": [clean(r) for r in rows],
        "names": names,
        "artifact": str(reg.verify("champion")),
        "sha256": champion.artifact_sha256,
    }


# ------------------------------------------------------------------------ servers
def run_hortus(root: Path, port: int) -> None:
    import uvicorn

    from hortus.serving.service import ServeConfig, Service, build_app

    service = Service(ServeConfig(root=root))
    uvicorn.run(build_app(service), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, lifespan="on")  # fmt: skip


def run_floor(root: Path, port: int, users: list[str], compiled: bool = False) -> None:
    """A bare Starlette app: the same model on features already in memory.

    `compiled`: score with hortus' compiled scorer on estimator matrices (floor-compiled),
    else with ``pipeline.predict_proba`` on `to_model_input` matrices (the floor).
    """
    import polars as pl
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from hortus.domains.plantshop.scoring import candidate_items
    from hortus.features.online import open_store
    from hortus.lakehouse.tables import Lakehouse
    from hortus.models.modeling import to_model_input
    from hortus.serving._model import load_served

    lh = Lakehouse.open(root, user="pipeline")
    model = load_served(lh, MODEL, "champion")
    project_fs = __import__("hortus.domains.plantshop.features", fromlist=["FEATURES"]).FEATURES
    store = open_store(root, project_fs)
    plants = candidate_items(lh, store.refreshed_at)["plant_id"].to_list()
    spec, pipe, scorer = model.spec, model.pipeline, model.scorer
    if compiled and scorer is None:
        raise SystemExit("the champion did not compile: no floor-compiled")
    matrices = {}
    for u in users:  # every request's candidate matrix, in memory before the first request
        vectors = store.get_vectors([{"user_id": u, "plant_id": p} for p in plants])
        matrices[u] = scorer.matrix(vectors) if compiled else to_model_input(
            model.frame(vectors), spec)  # fmt: skip
    proba = scorer.predict_proba if compiled else pipe.predict_proba
    schema = {c["name"]: c for c in model.signature.columns}
    kinds = {"string": pl.String, "int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean}
    dtypes = {n: kinds.get(c["type"], pl.String) for n, c in schema.items()}

    async def recommend(request: Request):
        body = json.loads(await request.body())
        user, k = body["entity"]["user_id"], body.get("k", 10)
        scores = proba(matrices[user])[:, 1]
        top = sorted(range(len(plants)), key=lambda i: (-scores[i], plants[i]))[:k]
        return JSONResponse({"items": [{"plant_id": plants[i], "score": float(scores[i]),
                                        "rank": r} for r, i in enumerate(top, 1)]})  # fmt: skip

    async def predict(request: Request):
        rows = json.loads(await request.body())["rows"]
        if compiled:
            x = scorer.matrix(rows)
        else:
            frame = pl.DataFrame({n: [r.get(n) for r in rows] for n in schema}, schema=dtypes,
                                 strict=False)  # fmt: skip
            x = to_model_input(frame, spec)
        scores = proba(x)[:, 1]
        return JSONResponse({"predictions": [{"score": float(s)} for s in scores]})

    app = Starlette(routes=[Route(f"/v1/models/{MODEL}/recommend", recommend, methods=["POST"]),
                            Route(f"/v1/models/{MODEL}/predict", predict, methods=["POST"]),
                            Route("/healthz", lambda r: JSONResponse({"ok": True}))])  # fmt: skip
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def mlflow_save(out: Path, artifact: Path, sha256: str, rows_file: Path) -> None:
    """Run in the MLflow environment: save the registered pipeline as an MLflow model.

    The artifact's sha256 is checked against the registry's before skops reads it; the
    model directory is written in MLflow's skops format (no pickle), with the signature
    MLflow infers from the benchmark's rows and ``predict_proba`` as the pyfunc method.
    """
    import hashlib

    import mlflow.sklearn
    import pandas as pd
    import skops.io as sio
    from mlflow.models import infer_signature

    data = artifact.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise SystemExit(f"{artifact}: sha256 differs from the registry's: not loading it")
    trusted = sio.get_untrusted_types(data=data)
    pipeline = sio.loads(data, trusted=trusted)
    doc = json.loads(rows_file.read_text())
    frame = pd.DataFrame(doc["data"], columns=doc["columns"])
    signature = infer_signature(frame, pipeline.predict_proba(frame))
    from importlib.metadata import version

    pins = [f"{p}=={version(p)}" for p in ("mlflow", "scikit-learn", "skops", "numpy")]
    mlflow.sklearn.save_model(
        pipeline,
        str(out),
        serialization_format="skops",
        skops_trusted_types=trusted,
        signature=signature,
        pyfunc_predict_fn="predict_proba",
        pip_requirements=pins,
    )  # fmt: skip (no requirement inference)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, root: Path, users: list[str], mlflow: tuple | None = None
          ) -> tuple[subprocess.Popen, int]:  # fmt: skip
    port = free_port()
    env = os.environ | {"OMP_NUM_THREADS": "1", "HORTUS_SERVE_TOKENS":
                        f"shop-web={TOKEN}@2099-01-01T00:00:00Z"}  # fmt: skip
    if kind == "mlflow":
        python, model_dir = mlflow
        mlflow_bin = Path(python).parent / "mlflow"
        cmd = [str(mlflow_bin), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port), "-w", "1"]  # fmt: skip
        # its uvicorn is in its environment's bin; without its access log and the
        # per-request scikit-learn warning (feature names of a DataFrame) on stderr
        env |= {
            "MLFLOW_TRACKING_URI": f"file://{root / 'mlruns'}",
            "DO_NOT_TRACK": "1",
            "MLFLOW_ENABLE_TELEMETRY": "false",
            "UVICORN_ACCESS_LOG": "false",
            "PYTHONWARNINGS": "ignore",
            "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        ready = "/ping"
    else:
        cmd = [sys.executable, __file__, "--server", kind, "--workdir", str(root), "--port",
               str(port), "--users-json", json.dumps(users)]  # fmt: skip
        ready = "/readyz" if kind == "hortus" else "/healthz"
    proc = subprocess.Popen(cmd, env=env, cwd=Path(__file__).parent, start_new_session=True)
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
    os.killpg(proc.pid, signal.SIGKILL)
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


def run_client(spec_file: Path) -> None:
    """The load generator process: run one load, print its latencies, errors and own CPU."""
    spec = json.loads(spec_file.read_text())
    bodies = [b.encode() for b in spec["bodies"]]
    c0 = time.process_time()
    if spec["mode"] == "closed":
        lat, errors, wall = asyncio.run(
            _closed_loop(spec["port"], spec["path"], bodies, spec["conc"], spec["seconds"])
        )
    else:
        lat, errors, wall = asyncio.run(_paced(spec["port"], spec["path"], bodies, spec["rate"],
                                               spec["seconds"], spec["conc"]))  # fmt: skip
    cpu = time.process_time() - c0
    print(json.dumps({"lat": lat.tolist(), "errors": errors, "wall": wall, "cpu": cpu}))


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds of process `pid` and its descendants (/proc)."""
    kids, total, todo = _children(), 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        todo += kids.get(p, [])
    return total


def load(server: tuple, path: str, bodies: list[bytes], args, *, rate: float | None = None
         ) -> dict:  # fmt: skip
    """Run one load from a separate generator process; return its figures."""
    proc, port = server
    spec = {"port": port, "path": path, "bodies": [b.decode() for b in bodies],
            "mode": "paced" if rate else "closed", "rate": rate, "seconds": args.seconds,
            "conc": max(args.concurrency, 8) if rate else args.concurrency}  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        c0 = cpu_seconds(proc.pid)
        out = subprocess.run([sys.executable, __file__, "--client", f.name], check=True,
                             capture_output=True, text=True, env=os.environ | {
                                 "OMP_NUM_THREADS": "1"})  # fmt: skip
        server_cpu = cpu_seconds(proc.pid) - c0
    finally:
        os.unlink(f.name)
    res = json.loads(out.stdout)
    lat = np.array(res["lat"])
    n = max(len(lat), 1)
    return {"p50": np.percentile(lat, 50) * 1e3, "p99": np.percentile(lat, 99) * 1e3,
            "rps": len(lat) / res["wall"], "errors": res["errors"], "n": len(lat),
            "cpu": server_cpu / n * 1e3, "client_cpu": res["cpu"] / n * 1e3,
            "client_share": res["cpu"] / res["wall"] * 100}  # fmt: skip


def _line(name: str, kind: str, r: dict) -> str:
    return (f"  {name:<22} {kind:<14} p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  "
            f"{r['rps']:6.1f} req/s  errors {r['errors']}  server CPU {r['cpu']:5.2f} ms/req  "
            f"client CPU {r['client_cpu']:4.2f} ms/req ({r['client_share']:.0f}% of a core)"
            )  # fmt: skip


def _ratio(name: str, a: str, b: str, res: dict) -> str:
    x, y = res[a], res[b]
    return (f"  {name:<22} {a} / {b}: p50 {x['p50'] / y['p50']:5.2f}x  p99 "
            f"{x['p99'] / y['p99']:5.2f}x  throughput {x['rps'] / y['rps']:5.2f}x  CPU/req "
            f"{x['cpu'] / y['cpu']:5.2f}x")  # fmt: skip


def _get(port: int, path: str, body: bytes) -> tuple[int, dict]:
    status, raw = asyncio.run(_once(port, "POST", path, body))
    return status, json.loads(raw)


def compare(ports: dict[str, int], users: list[str], rows: list[dict], mlflow_body) -> int:
    """Return the number of answers where hortus, the floors and MLflow disagree."""
    bad = 0
    rec = f"/v1/models/{MODEL}/recommend"
    for u in users[:10]:
        body = json.dumps({"entity": {"user_id": u}, "k": 10}).encode()
        hs, h = _get(ports["hortus"], rec, body)
        hi = h.get("items", [])
        for kind in ("floor", "floor-compiled"):
            fi = _get(ports[kind], rec, body)[1]["items"]
            same = hs == 200 and [i["plant_id"] for i in hi] == [i["plant_id"] for i in fi]
            pairs = zip(hi, fi, strict=False)
            same = same and all(abs(a["score"] - b["score"]) < 1e-9 for a, b in pairs)
            bad += not same
    body = json.dumps({"rows": rows[:100]}).encode()
    hs, h = _get(ports["hortus"], f"/v1/models/{MODEL}/predict", body)
    if hs != 200:
        print(f"hortus /predict answered {hs}: {str(h)[:300]}")
        return bad + 1
    hp = [p["score"] for p in h["predictions"]]
    for kind in ("floor", "floor-compiled"):
        fp = [p["score"] for p in _get(ports[kind], f"/v1/models/{MODEL}/predict", body)[1][
            "predictions"]]  # fmt: skip
        bad += not np.allclose(hp, fp, atol=1e-9, rtol=0)
    if "mlflow" in ports:
        ms, m = _get(ports["mlflow"], "/invocations", mlflow_body(rows[:100]))
        mp = [p[1] for p in m.get("predictions", [])] if ms == 200 else []
        if len(mp) != len(hp) or not np.allclose(hp, mp, atol=1e-9, rtol=0):
            print(f"mlflow /invocations answered {ms}, scores differ from hortus': "
                  f"{str(m)[:300]}")  # fmt: skip
            bad += 1
    return bad


def breakdown(root: Path, users: list[str], rows: list[dict], n: int = 300) -> None:
    """Print where one request's CPU goes, in process (the service's own objects, no HTTP)."""
    os.environ["HORTUS_SERVE_TOKENS"] = f"shop-web={TOKEN}@2099-01-01T00:00:00Z"
    from hortus.serving.service import ServeConfig, Service, build_app

    service = Service(ServeConfig(root=root, flush_interval=3600.0)).start()
    app = build_app(service)
    model, feats = service.models[MODEL], service.features
    cands = feats.candidate_rows(feats.item_keys(["user_id"]))
    stages: dict[str, list[float]] = {}

    def timed(name, fn, *a):
        c = time.thread_time()
        out = fn(*a)
        stages.setdefault(name, []).append((time.thread_time() - c) * 1e3)
        return out

    async def call(path: str, body: bytes) -> int:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 2), "headers": [
                     (b"authorization", f"Bearer {TOKEN}".encode()),
                     (b"content-type", b"application/json"),
                     (b"content-length", str(len(body)).encode())]}  # fmt: skip
        sent, status = [False], []

        async def receive():
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)

        async def send(msg):
            if msg["type"] == "http.response.start":
                status.append(msg["status"])

        await app(scope, receive, send)
        return status[0]

    rec = f"/v1/models/{MODEL}/recommend"

    async def run() -> None:
        for i in range(n):
            await one(i)

    async def one(i: int) -> None:
        u = users[i % len(users)]
        ents = [{"user_id": u} | c for c in cands]
        vectors = timed("online lookup (policy, audit record), 54 candidates", feats.vectors, ents)
        x = timed("estimator matrix from the vectors (compiled scorer)", model.scorer.matrix,
                  vectors)  # fmt: skip
        timed("trees: 200 iterations x 54 rows (compiled scorer)", model.scorer.predict_proba, x)
        timed("the same by the scikit-learn pipeline (typed frame + predict_proba)",
              lambda v: model.score(model.frame(v)), vectors)  # fmt: skip
        body = json.dumps({"entity": {"user_id": u}, "k": 10}).encode()
        c = time.process_time()
        assert await call(rec, body) == 200
        stages.setdefault("whole /recommend through the ASGI app (no HTTP parsing)", []).append(
            (time.process_time() - c) * 1e3)  # fmt: skip

    asyncio.run(run())
    backlog = service.writer.backlog
    c = time.process_time()
    service.writer.flush()
    flush_ms = (time.process_time() - c) * 1e3
    print(f"in-process CPU per /recommend (median of {n}; OMP_NUM_THREADS=1):")
    for name, v in stages.items():
        print(f"  {name:<70} {np.median(v):6.2f} ms")
    print(
        f"  one prediction log flush of {backlog} rows and {2 * n} audit records: "
        f"{flush_ms:.0f} ms CPU (every 2 s while serving)"
    )
    service.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--plants", type=int, default=60)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--workdir", default=None)
    ap.add_argument(
        "--mlflow-python",
        default=None,
        help="a Python with MLflow (make bench-serve-peers: .bench-peers-mlflow)",
    )
    ap.add_argument(
        "--server", choices=["hortus", "floor", "floor-compiled"], help=argparse.SUPPRESS
    )
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--users-json", help=argparse.SUPPRESS)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--mlflow-save", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="print where one /recommend's CPU goes (in process) and exit",
    )
    args = ap.parse_args()
    if args.client:
        run_client(Path(args.client))
        return 0
    if args.mlflow_save:
        out, artifact, sha, rows_file = args.mlflow_save
        mlflow_save(Path(out), Path(artifact), sha, Path(rows_file))
        return 0
    if args.server == "hortus":
        run_hortus(Path(args.workdir), args.port)
        return 0
    if args.server in ("floor", "floor-compiled"):
        run_floor(Path(args.workdir), args.port, json.loads(args.users_json),
                  compiled=args.server == "floor-compiled")  # fmt: skip
        return 0

    print(machine_line())
    root = Path(args.workdir or tempfile.mkdtemp(prefix="hortus-bench-serve-"))
    data = prepare(root, args.users, args.plants, args.days)
    users, rows = data["users"], data["rows"]
    names = data["names"]
    if args.breakdown:
        breakdown(root, users, rows)
        return 0

    def mlflow_body(rs: list[dict]) -> bytes:
        return json.dumps({"dataframe_split": {"columns": names,
                           "data": [[r.get(n) for n in names] for r in rs]}}).encode()  # fmt: skip

    mlflow = None
    if args.mlflow_python:
        model_dir = root / "mlflow-model"
        shutil.rmtree(model_dir, ignore_errors=True)
        rows_file = root / "mlflow-rows.json"
        rows_file.write_text(json.dumps(json.loads(mlflow_body(rows))["dataframe_split"]))
        subprocess.run([args.mlflow_python, __file__, "--mlflow-save", str(model_dir),
                        data["artifact"], data["sha256"], str(rows_file)], check=True,
                       env=os.environ | {"DO_NOT_TRACK": "1"})  # fmt: skip
        mlflow = (args.mlflow_python, model_dir)
    servers: dict[str, tuple] = {}
    kinds = ["floor", "floor-compiled", "hortus"] + (["mlflow"] if mlflow else [])
    try:
        for kind in kinds:
            servers[kind] = start(kind, root, users, mlflow)
        ports = {k: v[1] for k, v in servers.items()}
        hport = ports["hortus"]
        _, ready = asyncio.run(_once(hport, "GET", "/readyz", b""))
        cands = json.loads(asyncio.run(_once(hport, "POST", f"/v1/models/{MODEL}/recommend",
                           json.dumps({"entity": {"user_id": users[0]}}).encode()))[1])  # fmt: skip
        print(
            f"model {MODEL} v{json.loads(ready)['models'][MODEL]['version']}, "
            f"{cands.get('candidates')} candidates per /recommend, {args.concurrency} "
            f"connections, {args.seconds:g} s per run, servers: {', '.join(kinds)} "
            "(1 uvicorn worker each); the load generator is a separate process"
        )
        bad = compare(ports, users, rows, mlflow_body)
        rec = [json.dumps({"entity": {"user_id": u}, "k": 10}).encode() for u in users]
        one = [json.dumps({"rows": [r]}).encode() for r in rows]
        hundred = [json.dumps({"rows": rows[i : i + 100]}).encode() for i in range(0, 300, 50)]
        m_one = [mlflow_body([r]) for r in rows]
        m_hundred = [mlflow_body(rows[i : i + 100]) for i in range(0, 300, 50)]
        scenarios = [("/recommend k=10", "recommend", rec, None),
                     ("/predict 1 row", "predict", one, m_one),
                     ("/predict 100 rows", "predict", hundred, m_hundred)]  # fmt: skip
        errors = 0
        for name, route, bodies, m_bodies in scenarios:
            path = f"/v1/models/{MODEL}/{route}"
            res = {}
            for kind in kinds:
                if kind == "mlflow":
                    if m_bodies is None:
                        continue
                    res[kind] = load(servers[kind], "/invocations", m_bodies, args)
                else:
                    res[kind] = load(servers[kind], path, bodies, args)
                errors += res[kind]["errors"] if kind == "hortus" else 0
                print(_line(name, kind, res[kind]))
            print(_ratio(name, "hortus", "floor", res))
            print(_ratio(name, "hortus", "floor-compiled", res))
            if "mlflow" in res:
                print(_ratio(name, "mlflow", "hortus", res))
        for name, route, bodies, m_bodies in scenarios[:2]:
            path = f"/v1/models/{MODEL}/{route}"
            label = f"{name} at {args.rate:g}/s"
            for kind in kinds:
                if kind == "mlflow" and m_bodies is None:
                    continue
                is_m = kind == "mlflow"
                r = load(servers[kind], "/invocations" if is_m else path,
                         m_bodies if is_m else bodies, args, rate=args.rate)  # fmt: skip
                errors += r["errors"] if kind == "hortus" else 0
                print(_line(label, kind, r)
                      + ("   (target: p99 < 10 ms, 0 errors)" if kind == "hortus"
                         and route == "recommend" else ""))  # fmt: skip
        _, text = asyncio.run(_once(hport, "GET", "/metrics", b""))
        backlog = [ln for ln in text.decode().splitlines()
                   if ln.startswith("hortus_serve_prediction_log_backlog")]  # fmt: skip
        print(f"  hortus after the runs: {backlog[0] if backlog else '?'}")
    finally:
        for proc, _ in servers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in servers.values():
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    if bad or errors:
        print(f"FAILED: {bad} answer(s) differ between the servers, {errors} hortus error(s)")
        return 1
    print("hortus, the floors" + (" and MLflow" if mlflow else "")
          + " gave the same rankings and scores")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
