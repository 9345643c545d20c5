"""Tests of `hortus serve`: the real service on uvicorn, talked to over HTTP on 127.0.0.1.

One module fixture copies the session's small simulated shop (conftest `shop`) into a
project of its own, trains a small recommender on its labelled impressions, registers,
gates, approves and promotes it to champion, materialises the online store and issues
bearer tokens; then it starts the service with uvicorn in a thread on a free port.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from threadpoolctl import threadpool_limits

from hortus.config import Paths
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.tables import Lakehouse
from hortus.serving._tokens import TOKENS_ENV, TOKENS_FILE, token_hash

MODEL = "recommender"
TOKENS = {"shop-web": "tok-shop-web-0123456789", "alex": "tok-alex-0123456789",
          "mia": "tok-mia-0123456789"}  # fmt: skip
EXPIRED = "tok-expired-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_user(paths: Paths, user: str) -> Lakehouse:
    return Lakehouse(paths=paths, catalog=Catalog.load(root=paths.root), stage="test", user=user)


_EXAMPLES: dict[str, pl.DataFrame] = {}


def examples(paths: Paths) -> pl.DataFrame:
    """Return 2000 seeded (user, plant) vectors of the online store with a synthetic label.

    The serve tests need a real scikit-learn pipeline with the project's signature, not
    a good model: building the labelled impressions as the features stage does would
    cost ~15 s, one batched lookup of 2000 vectors in the store well under one.
    """
    import numpy as np

    from hortus.domains.plantshop.features import FEATURES
    from hortus.features.store import OnlineStore

    key = str(paths.root)
    if key not in _EXAMPLES:
        lh = as_user(paths, "pipeline")
        users = lh.read("silver.users")["user_id"].sort().to_list()
        plants = lh.read("silver.plants")["plant_id"].unique().sort().to_list()
        rng = np.random.default_rng(3)
        store = OnlineStore(paths.online_store, FEATURES)
        pairs = [
            {"user_id": str(u), "plant_id": str(p)}
            for u, p in zip(rng.choice(users, 2000), rng.choice(plants, 2000), strict=True)
        ]
        rows = [e | v for e, v in zip(pairs, store.get_vectors(pairs), strict=True)]
        store.close()
        frame = pl.DataFrame(rows, infer_schema_length=None)
        interest = pl.col("plant_popularity__views_30d").fill_null(0) + 5 * pl.col(
            "user_plant__views_30d"
        ).fill_null(0)
        noise = pl.Series(rng.normal(0, 1, frame.height))
        label = ((interest.rank() / pl.len() * 3 + noise) > 2.2).cast(pl.Int64)
        _EXAMPLES[key] = frame.with_columns(label.alias("label"))
    return _EXAMPLES[key]


def train_version(paths: Paths, folder: Path, *, seed: int, max_iter: int = 15):
    """Fit the project's recommender (small and fast) and register it; return the version."""
    from hortus.models import modeling
    from hortus.models.registry import Receipt, Registry
    from hortus.project.definition import Project, spec_for

    lh = as_user(paths, "pipeline")
    project = Project.load(paths.root)
    data = examples(paths)
    train = {"estimator": "hgb", "max_iter": max_iter, "seed": seed, "k": 5}
    spec = spec_for(project, project.model(MODEL), lh.catalog, train)
    with threadpool_limits(limits=1):
        pipeline = modeling.build_pipeline(spec).fit(
            modeling.to_model_input(data, spec), modeling.target_values(data, spec)
        )
    signature = modeling.Signature.from_frame(data, spec)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"model_{seed}.skops"
    sha = modeling.save_model(pipeline, signature, path)
    mv = Registry(lh, MODEL).register(
        path, sha256=sha, signature=signature.to_dict(), metrics={},
        receipt=Receipt.collect(paths.root, params={"seed": seed}, tables_read={}),
        spec=spec.to_dict(),
    )  # fmt: skip
    return mv.version


def make_champion(paths: Paths, version: int) -> None:
    """Gate, approve (paula) and promote (mia) a version to champion."""
    from hortus.checks.gate import GateResult, record
    from hortus.checks.model_checks import CheckResult
    from hortus.models.registry import Registry

    now = datetime.now(UTC)
    reg = Registry(as_user(paths, "mia"), MODEL)
    check = CheckResult("smoke", True, 1.0, 1.0, "recorded by the serve test")
    record(reg, GateResult(MODEL, version, [check], started_at=now, finished_at=now),
           paths.root / "gates", git_commit="c0ffee")  # fmt: skip
    Registry(as_user(paths, "paula"), MODEL).approve(version, reason="serve test")
    reg.promote(version, reason="serve test")


@pytest.fixture(scope="module")
def served_project(shop, tmp_path_factory) -> Paths:
    """Return a copy of the session shop with a champion recommender, online store, tokens."""
    from hortus.domains.plantshop.features import FEATURES
    from hortus.features import store as fsm

    root = tmp_path_factory.mktemp("serve")
    shutil.copytree(shop.paths.root, root, dirs_exist_ok=True)
    paths = Paths.at(root)
    lh = as_user(paths, "pipeline")
    at = lh.scan("silver.events").select(pl.col("ts").max()).collect().item()
    at += timedelta(microseconds=1)
    fsm.OnlineStore(paths.online_store, FEATURES).materialize(
        fsm.read_logs(lh, FEATURES), at, {c.full_name: c for c in lh.catalog}
    )
    make_champion(paths, train_version(paths, root / "build", seed=1))
    far = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    entries = [{"user": u, "sha256": token_hash(t), "expires": far} for u, t in TOKENS.items()]
    entries.append({"user": "shop-web", "sha256": token_hash(EXPIRED), "expires": past})
    paths.secrets.mkdir(parents=True, exist_ok=True)
    (paths.secrets / TOKENS_FILE).write_text(json.dumps({"version": 1, "tokens": entries}))
    return paths


class Running:
    """A service started with uvicorn in a thread; `url`, `service`, `stop()`."""

    def __init__(self, paths: Paths, **config):
        import uvicorn

        from hortus.serving.service import ServeConfig, Service, build_app

        self.service = Service(ServeConfig(root=paths.root, poll=0.2,
                                           flush_interval=0.2, **config))  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(build_app(self.service), host="127.0.0.1", port=self.port,
                             log_level="warning", access_log=False, lifespan="on")  # fmt: skip
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.time() < deadline, "service did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture(scope="module")
def running(served_project):
    run = Running(served_project)
    yield run
    run.stop()


def call(
    url: str,
    path: str,
    body=None,
    *,
    token: str | None = TOKENS["shop-web"],
    raw: bytes | None = None,
) -> tuple[int, dict | str]:
    """POST JSON (or GET without a body); return (status, parsed JSON or text)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(
        url + path, data=data, method="POST" if data is not None else "GET"
    )
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def oversized(port: int, path: str, length: int) -> tuple[int, dict]:
    """Announce a body of `length` bytes, send a little of it, read the answer.

    The service answers 413 from the Content-Length alone, before reading the body; a
    client that pushed the whole body first could see the connection reset instead.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKENS['shop-web']}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"entity": ')
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
            data.lower().split(b"content-length:")[1].split(b"\r\n")[0]
        ):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def some_user(paths: Paths) -> str:
    """Return a user with a history in the store (every feature the signature needs is set)."""
    lh = as_user(paths, "pipeline")
    for user in lh.read("silver.users")["user_id"].sort()[:50]:
        if _vector(paths, user, "p0001")["user_activity__days_since_sessions"] is not None:
            return user
    raise AssertionError("no user with sessions")


def feature_row(running: Running, paths: Paths) -> dict:
    """Return one valid model input row (a user x plant vector of the online store)."""
    plant = running.service.features.candidates["plant_id"][0]
    return _vector(paths, some_user(paths), plant)


def _vector(paths: Paths, user: str, plant: str) -> dict:
    from hortus.domains.plantshop.features import FEATURES
    from hortus.features.store import OnlineStore

    store = OnlineStore(paths.online_store, FEATURES)
    try:
        return store.get_vector({"user_id": user, "plant_id": plant})
    finally:
        store.close()


# ---------------------------------------------------------------------- the happy path
def test_recommend_returns_top_k_in_stock_plants_with_model_version_and_request_id(
    running, served_project
):
    """Check that /recommend ranks the in-stock candidates of hortus.yaml for a known user."""
    from hortus.domains.plantshop.scoring import candidate_items

    user = some_user(served_project)
    status, doc = call(running.url, f"/v1/models/{MODEL}/recommend",
                       {"entity": {"user_id": user}, "k": 5})  # fmt: skip
    assert status == 200, doc
    assert doc["model"] == MODEL and doc["version"] == 1 and len(doc["request_id"]) == 32
    items = doc["items"]
    assert [i["rank"] for i in items] == [1, 2, 3, 4, 5]
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    lh = as_user(served_project, "pipeline")
    in_stock = set(candidate_items(lh, running.service.features.materialized_at)["plant_id"])
    assert doc["candidates"] == len(in_stock) and {i["plant_id"] for i in items} <= in_stock


def test_recommend_scores_match_the_batch_scorer_for_the_same_features(running, served_project):
    """Check that the served scores equal the model's scores of the same online vectors."""
    user = some_user(served_project)
    status, doc = call(running.url, f"/v1/models/{MODEL}/recommend",
                       {"entity": {"user_id": user}, "k": 3})  # fmt: skip
    assert status == 200
    model = running.service.models[MODEL]
    rows = [_vector(served_project, user, i["plant_id"]) for i in doc["items"]]
    want = model.score(model.frame(rows))["score"].to_list()
    assert [i["score"] for i in doc["items"]] == pytest.approx(want, abs=1e-12)


def test_predict_scores_rows_and_refuses_bad_rows_listing_every_problem(running, served_project):
    """Check /predict on 2 valid rows, then a 422 naming each bad field (and nothing logged)."""
    row = feature_row(running, served_project)
    status, doc = call(running.url, f"/v1/models/{MODEL}/predict", {"rows": [row, row]})
    assert status == 200, doc.get("problems", doc)
    assert doc["version"] == 1 and len(doc["predictions"]) == 2
    assert 0 <= doc["predictions"][0]["score"] <= 1
    bad = dict(row)
    del bad["plant_catalog__price"]
    bad["user_profile__region"] = "ATLANTIS"
    bad["plant_popularity__views_7d"] = "many"
    status, err = call(running.url, f"/v1/models/{MODEL}/predict", {"rows": [row, bad]})
    assert status == 422
    problems = {(p["row"], p["column"]): p["problem"] for p in err["problems"]}
    assert problems[(1, "plant_catalog__price")] == "missing column"
    assert "unseen category 'ATLANTIS'" in problems[(1, "user_profile__region")]
    assert "has type str, expected float" in problems[(1, "plant_popularity__views_7d")]
    assert len(problems) == 3 and err["model"] == MODEL and err["request_id"]
    running.service.writer.flush()
    log = as_user(served_project, "mia").read("ops.prediction_log")
    assert log.filter(pl.col("batch_id") == err["request_id"]).height == 0
    assert log.filter(pl.col("batch_id") == doc["request_id"]).height == 2


def test_predictions_are_logged_with_caller_version_latency(running, served_project):
    """Check that a served recommendation lands in ops.prediction_log with its request."""
    user = some_user(served_project)
    status, doc = call(running.url, f"/v1/models/{MODEL}/recommend",
                       {"entity": {"user_id": user}, "k": 4})  # fmt: skip
    assert status == 200
    running.service.writer.flush()
    log = as_user(served_project, "mia").read("ops.prediction_log")
    rows = log.filter(pl.col("batch_id") == doc["request_id"]).sort("rank")
    assert rows["rank"].to_list() == [1, 2, 3, 4]
    assert set(rows["caller"]) == {"shop-web"} and set(rows["model_version"]) == {1}
    assert (rows["latency_ms"] > 0).all()
    assert json.loads(rows["request"][0]) == {"plant_id": doc["items"][0]["plant_id"],
                                              "user_id": user}  # fmt: skip
    assert rows["score"].to_list() == pytest.approx([i["score"] for i in doc["items"]])


# ------------------------------------------------------------------------- bad input
def test_bad_input_gets_the_right_status_and_a_clear_message(running, served_project):
    """Check 400, 413, 404 (model, entity), 401 (missing, unknown, expired) and 403."""
    url = running.url
    path = f"/v1/models/{MODEL}/recommend"
    status, doc = call(url, path, raw=b'{"entity": {"user_id": ')
    assert status == 400 and "malformed JSON" in doc["error"]
    status, doc = oversized(running.port, path, 2_000_000)
    assert status == 413 and "over the limit" in doc["error"]
    status, doc = call(url, "/v1/models/no-such-model/recommend", {"entity": {"user_id": "u"}})
    assert status == 404 and "unknown model 'no-such-model'" in doc["error"]
    status, doc = call(url, path, {"entity": {"user_id": "u999999"}, "k": 3})
    assert status == 404 and "u999999" in doc["error"] and doc["entity"] == {"user_id": "u999999"}
    status, doc = call(url, path, {"entity": {"user_id": "u000001"}}, token=None)
    assert status == 401 and "missing bearer token" in doc["error"]
    status, doc = call(url, path, {"entity": {"user_id": "u000001"}}, token="not-a-token")
    assert status == 401 and doc["error"] == "unknown bearer token"
    status, doc = call(url, path, {"entity": {"user_id": "u000001"}}, token=EXPIRED)
    assert status == 401 and "expired" in doc["error"] and EXPIRED not in doc["error"]
    status, doc = call(url, path, {"entity": {"user_id": "u000001"}}, token=TOKENS["alex"])
    assert status == 403 and "alex may not call model recommender" in doc["error"]
    assert "predict" in doc["error"]
    status, doc = call(url, path, {"entity": {"shop": "x"}, "k": 0})
    assert status == 422 and {p["field"] for p in doc["problems"]} == {"entity.shop", "k"}
    status, doc = call(url, "/healthz")
    assert status == 200  # still up


def test_every_allowed_and_denied_call_is_audited(running, served_project):
    """Check that the audit log holds allowed and denied predict calls (hash chain intact)."""
    from hortus.governance.audit import AuditLog, default_path

    path = f"/v1/models/{MODEL}/recommend"
    ok_status, ok = call(running.url, path, {"entity": {"user_id": some_user(served_project)}})
    no_status, no = call(running.url, path, {"entity": {"user_id": "u1"}}, token=TOKENS["alex"])
    assert (ok_status, no_status) == (200, 403)
    running.service.writer.flush()
    log = AuditLog.open(default_path(served_project), secrets_dir=served_project.secrets)
    assert log.verify().ok
    calls = log.show().filter(pl.col("action") == "predict")
    mine = calls.filter(pl.col("detail").str.contains(ok["request_id"]))
    assert mine.select("user", "outcome", "object").row(0) == ("shop-web", "allowed", MODEL)
    denied = calls.filter(pl.col("detail").str.contains(no["request_id"]))
    assert denied.select("user", "outcome").row(0) == ("alex", "denied")
    assert "predict on recommender" in denied["detail"][0]
    reads = log.show().filter(
        (pl.col("object") == "online_store") & (pl.col("user") == "hortus-serve")
    )
    assert reads.height and "purpose=serve" in reads["detail"][-1]  # the store's own audit


# ------------------------------------------------------------ health, metrics, schema
def test_health_readiness_metrics_openapi_and_offline_docs(running):
    """Check /healthz, /readyz, /metrics (Prometheus text), /openapi.json and /docs."""
    status, doc = call(running.url, "/readyz")
    assert status == 200 and doc["ready"] and doc["models"][MODEL]["version"] == 1
    assert doc["online_store"]["materialized_at"]
    call(running.url, f"/v1/models/{MODEL}/recommend", {"entity": {"user_id": "u999999"}})
    status, text = call(running.url, "/metrics")
    assert status == 200
    assert 'hortus_serve_model_version{model="recommender",alias="champion"} 1' in text
    assert 'hortus_serve_requests_total{route="recommend",model="recommender",status="404"}' in text
    assert (
        'hortus_serve_request_seconds_bucket{route="recommend",model="recommender",le="+Inf"}'
        in text
    )
    assert "hortus_serve_prediction_log_backlog " in text
    status, schema = call(running.url, "/openapi.json")
    assert schema["openapi"].startswith("3.") and f"/v1/models/{MODEL}/recommend" in schema["paths"]
    row = schema["paths"][f"/v1/models/{MODEL}/predict"]["post"]["requestBody"]
    assert "user_profile__region" in json.dumps(row)
    status, page = call(running.url, "/docs")
    assert status == 200 and "openapi.json" in page
    assert "http://" not in page and "https://" not in page  # nothing from a CDN


def test_a_token_issued_while_running_is_accepted_without_a_restart(running, served_project):
    """Check that the service reloads the token file when it changes (hashes only on disk)."""
    from hortus.serving._tokens import issue

    token, _ = issue(served_project.secrets, "mia", days=1)
    path = f"/v1/models/{MODEL}/recommend"
    body = {"entity": {"user_id": some_user(served_project)}, "k": 2}
    deadline = time.time() + 20
    while (status := call(running.url, path, body, token=token)[0]) == 401:
        assert time.time() < deadline
        time.sleep(0.2)
    assert status == 200
    assert call(running.url, path, body, token=TOKENS["shop-web"])[0] == 200  # old ones too


def test_a_service_identity_that_reads_features_masked_is_not_ready(served_project):
    """Check that the service refuses to rank with masked inputs (mia: no unmask on gold.fs_*)."""
    run = Running(served_project, user="mia")
    try:
        status, ready = call(run.url, "/readyz")
        assert status == 503 and not ready["ready"]
        assert "mia reads model recommender's input(s)" in ready["errors"]["_online_store"]
        assert "user_profile__region" in ready["errors"]["_online_store"]
        status, doc = call(run.url, f"/v1/models/{MODEL}/recommend",
                           {"entity": {"user_id": some_user(served_project)}})  # fmt: skip
        assert status == 503 and "online store not loaded" in doc["error"]
    finally:
        run.stop()


# ------------------------------------------------------------------ tampered artifact
def test_tampered_artifact_is_503_with_a_clear_message_and_the_service_stays_up(served_project):
    """Check that a champion whose artifact fails its hash check is not served (503)."""
    from hortus.models.registry import Registry

    reg = Registry(as_user(served_project, "mia"), MODEL)
    path = reg.artifact_path("champion")
    original = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        run = Running(served_project)
        try:
            status, doc = call(run.url, f"/v1/models/{MODEL}/recommend",
                               {"entity": {"user_id": some_user(served_project)}})  # fmt: skip
            assert status == 503, doc
            assert "has been altered" in doc["error"] and "refusing to load it" in doc["error"]
            status, ready = call(run.url, "/readyz")
            assert status == 503 and not ready["ready"] and "altered" in ready["not_loaded"][MODEL]
            assert call(run.url, "/healthz")[0] == 200
        finally:
            run.stop()
    finally:
        path.write_bytes(original)
        path.chmod(0o444)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == reg.get("champion").artifact_sha256


def test_tokens_from_the_environment_are_hashed_and_expire(tmp_path):
    """Check the token store: env entries, the file format (hashes only), expiry."""
    from hortus.errors import HortusError
    from hortus.serving._tokens import AuthError, TokenStore, issue

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    store = TokenStore.load(tmp_path, {TOKENS_ENV: f"shop-web=s3cret@{later}"})
    assert store.identify("Bearer s3cret").user == "shop-web"
    with pytest.raises(AuthError, match="unknown bearer token"):
        store.identify("Bearer other")
    with pytest.raises(AuthError, match="expired"):
        store.identify("Bearer s3cret", now=datetime.now(UTC) + timedelta(hours=2))
    token, file = issue(tmp_path, "mia", days=1)
    assert token not in file.read_text() and token_hash(token) in file.read_text()
    assert file.stat().st_mode & 0o077 == 0
    assert TokenStore.load(tmp_path, {}).identify(f"Bearer {token}").user == "mia"
    file.write_text(
        "version: 1\ntokens:\n- {user: mia, token: abc, sha256: x, expires: 2030-01-01}\n"
    )
    with pytest.raises(HortusError, match="clear-text token"):
        TokenStore.load(tmp_path, {})


# --------------------------------------------------------------------- hot swap (last)
def _expected_scores(running, paths: Paths, user: str, version: int) -> dict[str, float]:
    """Return each candidate's score under one version, computed offline from its artifact."""
    from hortus.serving._model import load_served

    m = load_served(as_user(paths, "mia"), MODEL, version)
    items = running.service.features.candidates["plant_id"].to_list()
    rows = [_vector(paths, user, p) for p in items]
    return dict(zip(items, m.score(m.frame(rows))["score"].to_list(), strict=True))


def _under_load(running, user: str, move, want: int, clients: int = 2) -> list[list[tuple]]:
    """Call /recommend from `clients` threads while `move()` moves the alias to `want`."""
    from concurrent.futures import ThreadPoolExecutor

    body = {"entity": {"user_id": user}, "k": 5}
    stop = threading.Event()

    def client() -> list[tuple[int, int | None, dict]]:
        seen = []
        while not stop.is_set():
            status, doc = call(running.url, f"/v1/models/{MODEL}/recommend", body)
            items = {i["plant_id"]: i["score"] for i in doc.get("items", [])}
            seen.append((status, doc.get("version"), items))
            time.sleep(0.03)  # steady load that leaves the (shared) GIL to the promotion
        return seen

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client) for _ in range(clients)]
        time.sleep(0.3)
        move()
        deadline = time.time() + 60
        while running.service.models[MODEL].version != want:
            assert time.time() < deadline, running.service.errors
            time.sleep(0.05)
        time.sleep(0.3)
        stop.set()
        return [f.result() for f in futures]


def _check_answers(per_client: list[list[tuple]], expected: dict, old: int, new: int) -> None:
    """Every answer 200, from old or new, with exactly that version's scores; no flip back."""
    answers = [a for seen in per_client for a in seen]
    assert len(answers) > 10
    assert {status for status, _, _ in answers} == {200}
    for _, version, scores in answers:
        assert version in (old, new)
        for plant, score in scores.items():
            assert score == pytest.approx(expected[version][plant], abs=1e-12), version
    for seen in per_client:
        versions = [v for _, v, _ in seen]
        assert versions == sorted(versions, key=lambda v: v == new)  # old...old new...new
        assert versions[-1] == new


def test_promotion_under_load_swaps_atomically_and_every_answer_is_one_whole_version(
    running, served_project
):
    """Check hot swap: v2 is promoted while clients call /recommend.

    Every answer must be 200, carry version 1 or 2 and exactly the scores that version
    gives (computed offline from each version's artifact), so no answer came from a
    half-loaded model; per client the version never goes back; one swap is counted.
    """
    user = some_user(served_project)
    v2 = train_version(served_project, served_project.root / "build", seed=2, max_iter=25)
    expected = {v: _expected_scores(running, served_project, user, v) for v in (1, v2)}
    assert expected[1] != expected[v2]
    swaps = running.service.metrics.swaps.get(MODEL, 0)
    seen = _under_load(running, user, lambda: make_champion(served_project, v2), v2)
    _check_answers(seen, expected, 1, v2)
    assert running.service.metrics.swaps[MODEL] == swaps + 1
    status, text = call(running.url, "/metrics")
    assert f'hortus_serve_model_version{{model="recommender",alias="champion"}} {v2}' in text
    assert any(e["type"] == "model_promoted" for e in running.service.watcher.events)


@pytest.mark.slow
def test_rollback_under_load_swaps_back(running, served_project):
    """Check that a rollback of the champion under load swaps back the same way."""
    from hortus.models.registry import Registry

    reg = Registry(as_user(served_project, "mia"), MODEL)
    current = reg.get("champion").version
    if current == 1:  # run alone: promote a second version first
        current = train_version(served_project, served_project.root / "build", seed=2)
        make_champion(served_project, current)
    user = some_user(served_project)
    expected = {v: _expected_scores(running, served_project, user, v) for v in (1, current)}
    seen = _under_load(running, user, lambda: reg.rollback(reason="serve test"), 1)
    _check_answers(seen, expected, current, 1)


@pytest.mark.slow
def test_hortus_serve_command_flushes_every_prediction_on_sigterm(served_project):
    """Check `hortus serve` as a process: answers, then SIGTERM mid-stream loses no log row."""
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    hortus = Path(sys.executable).with_name("hortus")
    proc = subprocess.Popen([str(hortus), "serve", "--port", str(port), "--poll", "0.5"],
                            cwd=served_project.root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
            try:
                if call(url, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        user = some_user(served_project)
        ids = []
        for _ in range(30):
            status, doc = call(url, f"/v1/models/{MODEL}/recommend",
                               {"entity": {"user_id": user}, "k": 3})  # fmt: skip
            assert status == 200
            ids.append(doc["request_id"])
        proc.send_signal(signal.SIGTERM)  # right after the last answer: rows still buffered
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, -signal.SIGTERM), out  # uvicorn re-raises it after shutdown
    assert f"on http://127.0.0.1:{port}" in out
    log = as_user(served_project, "mia").read("ops.prediction_log")
    mine = log.filter(pl.col("batch_id").is_in(ids))
    assert mine.height == 3 * len(ids)  # every answered request's rows, none lost
    # and every call's audit record, buffered like the rows, flushed on the way out
    from hortus.governance.audit import AuditLog, default_path

    audit = AuditLog.open(default_path(served_project), secrets_dir=served_project.secrets)
    calls = audit.show().filter((pl.col("action") == "predict") & (pl.col("outcome") == "allowed"))
    logged = set(calls["detail"].str.extract(r"request=([0-9a-f]+)").to_list())
    assert set(ids) <= logged
    assert audit.verify().ok
