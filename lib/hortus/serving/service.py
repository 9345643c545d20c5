"""`hortus serve`: the online scoring service (ASGI: Starlette on uvicorn).

Routes
------
- ``POST /v1/models/{name}/predict``: ``{"rows": [{feature: value, ...}, ...]}``; the
  rows are checked against the model's signature from the registry (every missing
  column, wrong type, null in a non-nullable column and unseen category is listed in
  one 422; a refused request logs no prediction), scored, and answered with one
  output per row (``score``, and ``prediction`` for classifiers and regressors);
- ``POST /v1/models/{name}/recommend`` (ranking models): ``{"entity": {"user_id":
  "..."}, "k": 10}``; the features of the entity and of every candidate come from the
  online store, the candidates from the model definition (``scoring.candidates`` in
  hortus.yaml); the answer is the top k items with their scores and ranks.  The store's
  vectors are not re-checked against the signature (the skew check compares the store
  with the training features; a buyer with no history has nulls training may not have
  seen, which the estimator scores as missing values rather than refusing the buyer);
- every answer (errors included) carries ``model``, ``version`` (when one is loaded)
  and ``request_id`` (also the ``X-Request-Id`` header);
- ``GET /healthz`` (the process answers), ``GET /readyz`` (200 only when every served
  model and, for ranking models, the online store are loaded; else 503 saying what is
  missing), ``GET /metrics`` (Prometheus text, `hortus.serving._metrics`),
  ``GET /openapi.json`` (hand-built OpenAPI 3.1) and ``GET /docs`` (a self-contained
  page rendered from it: no CDN, works offline).

Identity and access
-------------------
``Authorization: Bearer <token>`` maps to a user of access_policy.yaml
(`hortus.serving._tokens`: tokens with an expiry from ``HORTUS_SERVE_TOKENS`` or the
git-ignored ``.hortus/secrets/serve_tokens.yaml``, hashes only).  Missing, unknown or
expired token: 401.  The user needs the ``predict`` grant on the model (models:
predict in the policy), else 403 naming what is missing.  Every call that reaches the
access decision, allowed or denied (401s included, as user ``anonymous``), is recorded
in ``ops.audit_log`` through the background writer (one hash-chained commit per flush,
not one per request).

Bad input
---------
Malformed JSON 400; a body over ``max_body`` bytes 413; an unknown model 404; an
unknown entity 404 naming it; a model whose artifact fails its hash check (or cannot
be loaded) 503 with the registry's message; an unexpected failure 500 with the request
id.  The service stays up in every case.

Hot swap and prediction logging: `hortus.serving._swap` and `hortus.serving._writer`.
Scoring runs on the event loop: a hand-off to Starlette's thread pool was measured
(in process, 4 concurrent /recommend of 54 candidates) at the same CPU per request and
a p50 of 27 ms against 6-8 ms inline (the threads contend for the interpreter); run
several processes behind a proxy for more throughput.  The model scores through its
compiled form when it has one (`hortus.serving._scorer`: the same outputs bit for bit,
a third of the CPU of the scikit-learn pipeline on a 50-row request).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from hortus.errors import HortusError, SignatureError
from hortus.governance.access import Policy
from hortus.governance.audit import AuditRecord
from hortus.lakehouse.tables import Lakehouse
from hortus.serving._features import ServingFeatures, UnknownEntity
from hortus.serving._metrics import Metrics
from hortus.serving._model import (
    ServedModel,
    check_rows,
    features_json,
    load_served,
    output_rows,
)
from hortus.serving._openapi import docs_page, openapi
from hortus.serving._swap import Watcher
from hortus.serving._tokens import AuthError, TokenStore
from hortus.serving._writer import BackgroundWriter

PREDICTION_LOG = "ops.prediction_log"
DEFAULT_PORT = 8765
#: the service's own identity (access_policy.yaml): registry, events, features, log
SERVICE_USER = "hortus-serve"


@dataclass
class ServeConfig:
    """What one service process serves and how (see the module docstring)."""

    root: Path
    models: tuple[str, ...] = ()  # empty: every model of the project definition
    alias: str = "champion"
    user: str = SERVICE_USER  # identity of the service's own reads and writes
    poll: float = 1.0
    max_body: int = 1_000_000
    max_rows: int = 1_000
    max_k: int = 100
    flush_interval: float = 2.0  # seconds between prediction log micro-batches
    spill: Path | None = None


class _Refused(Exception):
    """An answer other than 200, raised inside a handler."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class Service:
    """The state of one service process: models, features, identity, writer, watcher."""

    def __init__(self, config: ServeConfig):
        from hortus.project.definition import Project

        self.config = config
        self.project = Project.load(config.root)
        self.lh = Lakehouse.open(config.root, stage="serve", user=config.user)
        self.watch_lh = Lakehouse.open(config.root, stage="serve", user=self.lh.user)
        self.model_names = list(config.models or self.project.models)
        for name in self.model_names:
            self.project.model(name)  # unknown in hortus.yaml: a clear error at start
        self.models: dict[str, ServedModel] = {}
        self.errors: dict[str, str] = {}
        self.features: ServingFeatures | None = None
        self.metrics = Metrics()
        self.policy = Policy.for_project(self.lh.paths.policy)
        self.tokens = TokenStore.load(self.lh.paths.secrets)
        self._identity_stamp = self._identity_files()
        writer_lh = Lakehouse.open(config.root, stage="serve", user=self.lh.user)
        # outside the lakehouse (which may be what fails); .hortus/ is git-ignored
        spill = (
            config.spill or self.lh.paths.root / ".hortus" / "serve" / "prediction_log.spill.jsonl"
        )
        self.writer = BackgroundWriter(
            lambda df: writer_lh.write(
                PREDICTION_LOG, df, mode="append", inputs={}, note="hortus serve micro-batch"
            ),  # fmt: skip
            self.lh.catalog.get(PREDICTION_LOG).schema,
            spill,
            audit=writer_lh._audit,  # the append's own audit buffer: one commit per flush
            interval=config.flush_interval,
        )
        self.watcher = Watcher(self, poll=config.poll)
        self.started = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Service:
        """Load every model and the online store, start the writer and the watcher."""
        self.writer.start()  # replays a spill file left by an earlier run
        for name in self.model_names:
            self.reload(name)
        self.refresh_features(force=True)
        self.watcher.start()
        self.started = True
        return self

    def stop(self) -> None:
        """Stop watching and flush the prediction log and audit records."""
        self.watcher.stop()
        self.writer.stop()
        self.lh.close()
        self.watch_lh.close()
        self.started = False

    def reload(self, name: str) -> bool:
        """Load the version the alias names now if it is not served; return whether swapped."""
        from hortus.serving._model import resolve_version

        current = self.models.get(name)
        try:
            version = resolve_version(self.watch_lh, name, self.config.alias)
            if current is not None and current.version == version:
                self.errors.pop(name, None)
                return False
            served = load_served(self.watch_lh, name, version, alias=self.config.alias)
            self._warm(served)
        except Exception as exc:  # keep serving what is loaded; say why in /readyz
            self.errors[name] = f"{type(exc).__name__}: {exc}" if not isinstance(
                exc, HortusError) else str(exc)  # fmt: skip
            return False
        self.models[name] = served  # the atomic swap: one reference assignment
        self.errors.pop(name, None)
        if current is not None:
            self.metrics.swapped(name)
        return True

    def _warm(self, served: ServedModel) -> None:
        """Score one synthetic row so the first real request does not pay for lazy set-up."""
        row = {}
        for c in served.signature.columns:
            cats = c.get("categories")
            if cats:
                row[c["name"]] = cats[0]
            elif c["type"] in ("int", "float"):
                row[c["name"]] = c.get("min") if isinstance(c.get("min"), int | float) else 0
            else:
                row[c["name"]] = None
        with contextlib.suppress(Exception):  # best effort; real rows are checked on their own
            served.score(served.frame([row]))

    def _needs_store(self) -> bool:
        return any(self.project.model(n).task == "ranking" for n in self.model_names)

    def refresh_features(self, *, force: bool = False) -> None:
        """Open the online store, or take a new materialisation or refresh into account."""
        if not self._needs_store():
            return
        current = self.features
        try:
            if current is not None and not force:
                if current.changed():
                    current.refresh()  # new candidates and as-of time; lookups follow by themselves
                return
            fs = self.project.feature_set()
            if fs is None:
                raise HortusError(f"{self.project.source} declares no features: nothing to rank")
            ranking = next(self.project.model(n) for n in self.model_names
                           if self.project.model(n).task == "ranking")  # fmt: skip
            feats = ServingFeatures(self.watch_lh, self.project, fs, ranking,
                                    audit_sink=self.writer.sink())  # fmt: skip
            for name, model in self.models.items():
                masked = feats.masked_inputs(model.names)
                if masked:
                    raise HortusError(
                        f"the service user {self.lh.user} reads model {name}'s input(s) "
                        f"{', '.join(masked)} masked: grant it `unmask` on their feature "
                        "tables (gold.fs_*) in access_policy.yaml"
                    )
            self.features = feats
            self.errors.pop("_online_store", None)
        except Exception as exc:
            self.errors["_online_store"] = str(exc)

    def _identity_files(self) -> tuple:
        out = []
        for p in (self.lh.paths.policy, self.lh.paths.secrets / "serve_tokens.yaml"):
            try:
                out.append(p.stat().st_mtime_ns)
            except OSError:
                out.append(None)
        return tuple(out)

    def refresh_identity(self) -> None:
        """Reload the access policy and the token file when either changed on disk."""
        stamp = self._identity_files()
        if stamp == self._identity_stamp:
            return
        try:
            self.policy = Policy.for_project(self.lh.paths.policy)
            self.tokens = TokenStore.load(self.lh.paths.secrets)
            self._identity_stamp = stamp
            self.errors.pop("_identity", None)
        except HortusError as exc:  # keep the previous policy and tokens
            self.errors["_identity"] = str(exc)

    # -------------------------------------------------------------------- status
    def readiness(self) -> tuple[bool, dict]:
        missing = [n for n in self.model_names if n not in self.models]
        store = not self._needs_store() or self.features is not None
        ready = self.started and not missing and store
        doc = {
            "ready": ready,
            "models": {
                n: {
                    "version": m.version,
                    "alias": m.alias,
                    "sha256": m.sha256,
                    "loaded_at": m.loaded_at.isoformat(),
                }
                for n, m in self.models.items()
            },  # fmt: skip
            "not_loaded": {n: self.errors.get(n, "loading") for n in missing},
            "online_store": (
                {
                    "store": self.features.where,
                    "materialized_at": self.features.materialized_at.isoformat(),
                }
                if self.features is not None
                else self.errors.get("_online_store")
            )
            if self._needs_store()
            else None,  # fmt: skip
            "errors": {k: v for k, v in self.errors.items() if k not in missing},
            "prediction_log_backlog": self.writer.backlog,
        }
        return ready, doc

    # ------------------------------------------------------------------- access
    def _audit(self, user: str, name: str, outcome: str, detail: str, version: str | None):
        self.writer.audit_record(AuditRecord(user=user, action="predict", object=name,
                                             outcome=outcome, detail=detail,
                                             policy_version=version,
                                             ts=datetime.now(UTC)))  # fmt: skip

    def authorize(self, request: Request, name: str, route: str, rid: str) -> str:
        """Return the caller's user, or raise _Refused 401/404/403 (audited either way)."""
        try:
            entry = self.tokens.identify(request.headers.get("authorization"))
        except AuthError as exc:
            self._audit("anonymous", name, "denied", f"{route} request={rid} missing: {exc}",
                        self.policy.version)  # fmt: skip
            raise _Refused(401, str(exc)) from None
        if name not in self.model_names:
            self._audit(entry.user, name, "denied", f"{route} request={rid} unknown model",
                        self.policy.version)  # fmt: skip
            raise _Refused(404, f"unknown model {name!r}: this service serves "
                                f"{', '.join(self.model_names)}")  # fmt: skip
        decision = self.policy.decide(entry.user, "predict", name)
        if not decision.allowed:
            self._audit(entry.user, name, "denied",
                        f"{route} request={rid} missing: {decision.missing} stage=serve",
                        decision.policy_version)  # fmt: skip
            raise _Refused(403, f"{entry.user} may not call model {name}: missing "
                                f"{decision.missing}")  # fmt: skip
        self._audit(entry.user, name, "allowed",
                    f"{route} request={rid} stage=serve grant: {decision.grant}",
                    decision.policy_version)  # fmt: skip
        return entry.user

    def served(self, name: str) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            why = self.errors.get(name, "it is still loading")
            raise _Refused(503, f"model {name} is not available: {why}")
        return model


# ------------------------------------------------------------------------ handlers
async def _body(request: Request, limit: int) -> object:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _Refused(413, f"request body of {length} bytes is over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Refused(400, f"malformed JSON body: {exc}") from None


def _answer(status: int, doc: dict, rid: str) -> JSONResponse:
    return JSONResponse(doc, status_code=status, headers={"X-Request-Id": rid})


def _call(service: Service, route: str, work):
    """Wrap a model endpoint: request id, auth, errors as JSON, metrics, never a crash."""

    async def endpoint(request: Request) -> Response:
        t0 = time.perf_counter()
        rid = uuid.uuid4().hex
        name = request.path_params["name"]
        model: ServedModel | None = None
        status = 200
        try:
            user = service.authorize(request, name, route, rid)  # 401, then 404, then 403
            payload = await _body(request, service.config.max_body)
            model = service.served(name)
            doc = work(service, model, payload, user, rid, t0)
            response = _answer(200, doc, rid)
        except _Refused as exc:
            status = exc.status
            response = _answer(status, _error(name, model, rid, exc.message, **exc.extra), rid)
        except UnknownEntity as exc:
            status = 404
            response = _answer(404, _error(name, model, rid, str(exc), entity=exc.entity), rid)
        except SignatureError as exc:
            status = 422
            response = _answer(422, _error(name, model, rid, str(exc)), rid)
        except Exception as exc:  # noqa: BLE001 - the service stays up and says so
            status = 500
            response = _answer(500, _error(name, model, rid, f"internal error "
                                           f"({type(exc).__name__}: {exc})"), rid)  # fmt: skip
        service.metrics.observe(route, name if name in service.model_names else "-", status,
                                time.perf_counter() - t0)  # fmt: skip
        return response

    return endpoint


def _error(name: str, model: ServedModel | None, rid: str, message: str, **extra) -> dict:
    return {"model": name, "version": model.version if model else None, "request_id": rid,
            "error": message} | extra  # fmt: skip


def _predict(service: Service, model: ServedModel, payload, user: str, rid: str, t0: float):
    if not isinstance(payload, dict) or "rows" not in payload:
        raise _Refused(422, 'expected a JSON object {"rows": [{feature: value, ...}, ...]}')
    rows = payload["rows"]
    if isinstance(rows, list) and len(rows) > service.config.max_rows:
        raise _Refused(413, f"{len(rows)} rows is over the limit of {service.config.max_rows}")
    problems = model.checker.check(rows) if model.checker else check_rows(rows, model.signature)
    if problems:
        raise _Refused(422, f"{len(problems)} problem(s) with the rows: see `problems`",
                       problems=problems)  # fmt: skip
    outputs = output_rows(model.outputs(rows))
    ms = (time.perf_counter() - t0) * 1000
    now = datetime.now(UTC)
    names = model.names
    service.writer.add([
        {"batch_id": rid, "model_name": model.name, "model_version": model.version,
         "request": f'{{"row": {i}}}', "features": features_json(row, names),
         "score": o["score"], "rank": None, "as_of": now, "logged_at": now,
         "prediction": None if o.get("prediction") is None else str(o["prediction"]),
         "caller": user, "latency_ms": ms}
        for i, (row, o) in enumerate(zip(rows, outputs, strict=True))
    ])  # fmt: skip
    return {"model": model.name, "version": model.version, "request_id": rid,
            "predictions": outputs}  # fmt: skip


def _recommend(service: Service, model: ServedModel, payload, user: str, rid: str, t0: float):
    if model.task != "ranking":
        raise _Refused(422, f"model {model.name} is a {model.task} model: use /predict")
    feats = service.features
    if feats is None:
        raise _Refused(503, f"online store not loaded: {service.errors.get('_online_store')}")
    if not isinstance(payload, dict) or not isinstance(payload.get("entity"), dict):
        raise _Refused(422, 'expected a JSON object {"entity": {key: value}, "k": 10}')
    entity, k = payload["entity"], payload.get("k", 10)
    problems = []
    if not entity:
        problems.append({"field": "entity", "problem": f"name one of {feats.keys}"})
    for key, value in entity.items():
        if key not in feats.keys:
            problems.append(
                {
                    "field": f"entity.{key}",
                    "problem": f"not a request key (keys: {', '.join(feats.keys)})",
                }
            )
        elif not isinstance(value, str | int) or isinstance(value, bool):
            problems.append({"field": f"entity.{key}", "problem": "must be a string or integer"})
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= service.config.max_k:
        problems.append(
            {"field": "k", "problem": f"must be an integer in 1..{service.config.max_k}"}
        )
    if problems:
        raise _Refused(422, f"{len(problems)} problem(s) with the request", problems=problems)
    items = feats.item_keys(list(entity))
    for _ in range(3):  # a candidate the store does not know yet is left out, not a 404
        cands = feats.candidates
        if cands is None or not items or not set(items) <= set(cands.columns):
            raise _Refused(422, f"model {model.name} has no candidates for an entity of "
                                f"{sorted(entity)}")  # fmt: skip
        cand_rows = feats.candidate_rows(items)
        entities = [dict(entity) | c for c in cand_rows]
        try:
            vectors = feats.vectors(entities)
            break
        except UnknownEntity as exc:
            if set(exc.entity) & set(entity) or not feats.drop_candidate(exc.entity):
                raise
    else:
        raise _Refused(503, "the online store does not know several candidates; retry")
    scores = model.outputs(vectors)["score"].tolist()
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], tuple(cand_rows[i].values())))
    top = order[:k]
    ranked = [cand_rows[i] | {"score": float(scores[i]), "rank": r}
              for r, i in enumerate(top, start=1)]  # fmt: skip
    ms = (time.perf_counter() - t0) * 1000
    now = datetime.now(UTC)
    names = model.names
    service.writer.add([
        {"batch_id": rid, "model_name": model.name, "model_version": model.version,
         "request": json.dumps(entities[i], sort_keys=True, default=str),
         "features": features_json(vectors[i], names),
         "score": float(scores[i]), "rank": r, "as_of": feats.materialized_at,
         "logged_at": now, "prediction": None, "caller": user, "latency_ms": ms}
        for r, i in enumerate(top, start=1)
    ])  # fmt: skip
    return {"model": model.name, "version": model.version, "request_id": rid,
            "entity": entity, "k": k, "candidates": len(cand_rows),
            "as_of": feats.materialized_at.isoformat(), "items": ranked}  # fmt: skip


def build_app(service: Service) -> Starlette:
    """Return the ASGI app of a service (its lifespan starts and stops the service)."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready, doc = service.readiness()
        return JSONResponse(doc, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        models = {n: (m.version, m.alias) for n, m in service.models.items()}
        return PlainTextResponse(service.metrics.render(models, service.writer),
                                 media_type="text/plain; version=0.0.4")  # fmt: skip

    async def schema(request: Request) -> Response:
        return JSONResponse(openapi(service))

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page())

    @asynccontextmanager
    async def lifespan(app):
        if not service.started:
            service.start()
        try:
            yield
        finally:
            service.stop()

    routes = [
        Route("/v1/models/{name}/predict", _call(service, "predict", _predict), methods=["POST"]),
        Route(
            "/v1/models/{name}/recommend", _call(service, "recommend", _recommend), methods=["POST"]
        ),  # fmt: skip
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/openapi.json", schema),
        Route("/docs", docs),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def serve(config: ServeConfig, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Run the service with uvicorn until interrupted (flushing the log on the way out)."""
    import uvicorn

    service = Service(config)
    uvicorn.run(build_app(service), host=host, port=port, log_level="warning",
                access_log=False, lifespan="on")  # fmt: skip


__all__ = ["DEFAULT_PORT", "ServeConfig", "Service", "build_app", "serve"]
