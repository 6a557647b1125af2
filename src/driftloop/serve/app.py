"""The HTTP prediction service: FastAPI app with predict, feedback, health, metrics and admin endpoints.

`create_app(cfg)` builds one worker's app. The predict path avoids FastAPI's body parsing: it reads the raw
bytes (with a size limit), parses with orjson, validates and encodes against the routed model's spec into a
numpy matrix, predicts through the micro-batcher and answers with orjson bytes. Logging and metrics are
appends to in-memory buffers; shadow scoring runs after the response is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.background import BackgroundTask

from driftloop.config import Config
from driftloop.serve import docs, invocations, routes, v2
from driftloop.serve.batching import MicroBatcher
from driftloop.serve.labels import LabelRule, label_rule
from driftloop.serve.metrics import Metrics, value_bucket
from driftloop.serve.pool import LoadedModel, ModelPool, ServingState, describe
from driftloop.serve.router import CHAMPION, SHADOW, Route, route
from driftloop.serve.tracing import AccessLog, RequestContext, request_context
from driftloop.serve.validation import (
    ROUTING_FIELD,
    ParsedRequest,
    RequestRejected,
    check_prediction,
    decode_json,
)
from driftloop.stores.logfiles import KINDS
from driftloop.stores.metadata import MetadataStore
from driftloop.stores.predlog import (
    ErrorEntry,
    FeedbackEntry,
    LogWriter,
    OutcomeEntry,
    PredictionEntry,
    now_us,
)

log = logging.getLogger(__name__)
JSON = "application/json"


class Answer(NamedTuple):
    """What the predict path answered, and who: the access log and the response headers name the version."""

    status: int
    payload: bytes
    model_version: str | None = None
    arm: str | None = None
    rows: int | None = None
    after: Callable[[], Awaitable[None]] | None = None
    """Shadow scoring, run once the answer has left."""
    ctx: RequestContext | None = None
    """The request's identity (None only when its X-Request-ID was refused)."""


CONFIG_ENV = "DRIFTLOOP_SERVE_CONFIG_JSON"
PREDICT_PATH = "/v1/predict"
FAST_PATHS = frozenset((PREDICT_PATH, invocations.INVOCATIONS_PATH))
"""Served by PredictFastPath: /v1/predict and MLflow's /invocations, the routes that carry the traffic."""
QUIET_PATHS = frozenset({"/metrics", "/healthz", "/readyz", "/ping", "/health"})
"""Scraped and probed every few seconds: an access-log line each would bury the requests people look for."""


def json_response(
    payload: Any,
    status: int = 200,
    background: BackgroundTask | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status, headers=headers, media_type=JSON, background=background)


def error(exc: RequestRejected) -> Response:
    return json_response(exc.to_dict(), exc.status)


class Service:
    """Everything one worker holds: the model pool, the log writers, the batchers and the metrics."""

    def __init__(self, cfg: Config, *, metadata: MetadataStore | None = None) -> None:
        from driftloop.stores.tracking import TrackingStore

        self.cfg = cfg
        s = cfg.serving
        self.metrics = Metrics(model_name=cfg.project.name)
        self._label_rules: list[tuple[ServingState, LabelRule]] = []  # one: the state served now
        self.metadata = metadata or MetadataStore.connect(cfg.stores.resolved_database_url(), create=False)
        self.tracking = TrackingStore.from_config(cfg)
        self.model_name = cfg.project.name
        self.pool = ModelPool(
            self.model_name,
            lambda: self.metadata.get_deployment(self.model_name),
            self.tracking.model_dir,
            poll_seconds=s.poll_seconds,
            unknown_fields=s.unknown_fields,
            max_rows=s.max_rows_per_request,
            join_columns=(cfg.data.id_column, cfg.data.timestamp_column),
            metrics=self.metrics,
            compile_models=s.compile_models,
        )
        log_dir = cfg.stores.resolved_log_dir()
        self.writers = {
            kind: LogWriter(
                log_dir,
                kind,  # type: ignore[arg-type]
                flush_seconds=s.log_flush_seconds,
                flush_rows=s.log_flush_rows,
                max_queue_rows=s.log_queue_rows,
                on_drop=self.metrics.log_dropped.labels(kind).inc,
                on_depth=self.metrics.log_queue_rows.labels(kind).set,
                on_quarantine=self.metrics.log_quarantined.labels(kind).inc,
            )
            for kind in KINDS
        }
        self._reported: set[tuple[str, str, str]] = set()
        self.batcher = MicroBatcher()
        self.invocations = invocations.Invocations()
        self.shadow_batcher = MicroBatcher(delay_seconds=0.002)
        self.max_body = s.max_body_bytes
        self.access = AccessLog(s.access_log)

    def start(self) -> None:
        self.metrics.model_ready.set(0)  # counted in the minimum over workers from the start
        self.metrics.process.start()
        for writer in self.writers.values():
            writer.start()
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop()
        self.batcher.close()
        self.shadow_batcher.close()
        for writer in self.writers.values():
            writer.close()
        self.metrics.process.stop()
        Metrics.mark_process_dead()

    # -- request plumbing -----------------------------------------------------------------------------------

    def check_headers(self, ctype: str | None, length: str | None, *, csv: bool = False) -> str:
        """The body's media type (`application/json`, or `text/csv` where `csv` allows it) or a 4xx."""
        media = (ctype or "").split(";", 1)[0].strip().lower()
        if media.endswith("+json"):
            media = JSON
        if media != JSON and not (csv and media == invocations.CSV):
            expected = " or ".join(invocations.MEDIA_TYPES) if csv else JSON
            raise RequestRejected(415, f"content type must be {expected}, got {ctype or 'none'}")
        if length is not None:
            if not length.isdigit():
                raise RequestRejected(400, "invalid Content-Length header")
            if int(length) > self.max_body:
                raise RequestRejected(413, f"body of {length} bytes is over the limit of {self.max_body}")
        return media

    async def read_body(self, receive: Any) -> bytes:
        """The raw ASGI body, refused as soon as it passes the limit (also without a Content-Length)."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestRejected(400, "the client went away before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise RequestRejected(413, f"body is over the limit of {self.max_body} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if not body:
            raise RequestRejected(400, "empty body: send a JSON document")
        return body

    async def read_json(self, request: Request) -> Any:
        self.check_headers(request.headers.get("content-type"), request.headers.get("content-length"))
        return decode_json(await self.read_body(request.receive))

    # -- predict --------------------------------------------------------------------------------------------

    async def predict(
        self,
        ctype: str | None,
        length: str | None,
        routing_header: str | None,
        receive: Any,
        request_id_header: str | None = None,
        traceparent: str | None = None,
        mlflow: bool = False,
    ) -> Answer:
        """One prediction request from raw ASGI parts -> status, JSON body, who answered, work to run after.

        The request id is the client's `X-Request-ID` when it sent a usable one (else fresh); an unusable one
        is a 400 like any other client mistake, through the same path. `mlflow`: the body and the answer are
        MLflow's scoring protocol (`/invocations`, see serve.invocations); everything between is the same.
        """
        t0 = time.perf_counter()
        ctx: RequestContext | None = None
        try:
            ctx = request_context(request_id_header, traceparent)
            state = self.pool.state
            if state is None:
                raise RequestRejected(503, "no model loaded yet: see /readyz")
            media = self.check_headers(ctype, length, csv=mlflow)
            raw = await self.read_body(receive)
            body = self.invocations.decode(raw, media) if mlflow else decode_json(raw)
        except RequestRejected as exc:
            self.metrics.observe_request("", "", exc.status, None)
            refusal = invocations.error_payload(exc) if mlflow else exc.to_dict()
            return Answer(exc.status, orjson.dumps(refusal), ctx=ctx)
        key = _routing_key(body) or routing_header
        if mlflow:
            inv = self.invocations
            return await self.score(
                ctx,
                state,
                lambda model: model.schema.parse(inv.adapt(body, model.schema)),
                key,
                t0,
                render=inv.render,
                reject=inv.reject,
            )
        return await self.score(ctx, state, lambda model: model.schema.parse(body), key, t0)

    async def score(
        self,
        ctx: RequestContext,
        state: ServingState,
        parse: Callable[[LoadedModel], ParsedRequest],
        routing_key: str | None,
        t0: float,
        *,
        version: str | None = None,
        render: Render | None = None,
        reject: Callable[[RequestRejected], tuple[int, bytes]] | None = None,
    ) -> Answer:
        """Route, validate, predict, log and count one request whose body is read: every protocol's path.

        `parse` turns the body into the routed model's matrix (each protocol reads its own shape; the shadow
        challenger parses the same body for itself). `version` pins a served version instead of routing
        (no shadow then); `render` writes the answer (default: /v1/predict's JSON) and `reject` a client
        mistake (default: status and `{"detail", "errors"}`).
        """
        request_id = ctx.request_id
        model: LoadedModel | None = None
        arm, rows = "", 0
        try:
            if version is None:
                key = routing_key or request_id
                dep = state.deployment
                r = route(key, dep.strategy, dep.challenger_weight, state.challenger is not None)
            else:
                r = pinned_route(state, version)
            arm = r.arm
            model = state.champion if r.arm == CHAMPION else state.challenger
            assert model is not None
            parsed = parse(model)
            rows = len(parsed.X)
            pred = await self.batcher.submit(model, parsed.X)
            check_prediction(pred, batch=parsed.batch)
            labels = pred.labels.tolist()
            payload = (render or _v1_payload)(model, r.arm, request_id, parsed, labels, pred.proba)
            outcomes = _outcomes(model, labels, pred.proba)
        except RequestRejected as exc:
            status, payload = (exc.status, orjson.dumps(exc.to_dict())) if reject is None else reject(exc)
            self.metrics.observe_request("", "", status, None)
            return Answer(status, payload, ctx=ctx)
        except Exception as exc:  # the model (or a bug) failed: a counted, logged JSON 500, never a bare one
            failed = self._failed(exc, request_id, model, arm, rows, t0)
            return Answer(500, failed, model.version if model else None, arm or None, rows, ctx=ctx)
        latency = time.perf_counter() - t0
        ts = now_us()
        self._log(model, r.arm, request_id, parsed, labels, pred.proba, ts, latency, pred.cpu_seconds)
        self.metrics.observe_request(model.version, r.arm, 200, latency)
        self.metrics.count_cpu(model.version, r.arm, pred.cpu_seconds)
        self.metrics.count_outcomes(model.version, r.arm, outcomes)
        after: Callable[[], Awaitable[None]] | None = None
        if r.shadow and state.challenger is not None:
            challenger = state.challenger

            async def shadow() -> None:
                await self._shadow(challenger, parse, request_id, ts)

            after = shadow

        return Answer(200, payload, model.version, r.arm, rows, after, ctx)

    def _failed(
        self, exc: Exception, request_id: str, model: LoadedModel | None, arm: str, rows: int, t0: float
    ) -> bytes:
        """Count, log and answer a request that failed inside the server (5xx, the routed model's fault)."""
        version = model.version if model is not None else ""
        error = type(exc).__name__
        self._report_failure(exc, version, arm, request_id)
        self.metrics.observe_request(version, arm, 500, None)
        self._log_error(request_id, version, arm, 500, error, rows, t0)
        detail = f"the model failed to answer ({error}); the failure is logged under this request_id"
        return orjson.dumps(
            {"detail": detail, "request_id": request_id, "model_version": version, "arm": arm}
        )

    def _report_failure(self, exc: Exception, version: str, arm: str, request_id: str) -> None:
        # One traceback per version and error class and worker: a model failing on every fifth row would
        # otherwise flood the log; each failure is still counted in the metrics and the error log.
        key = (version, arm, type(exc).__name__)
        if key not in self._reported:
            self._reported.add(key)
            log.error("request %s: v%s (%s) failed", request_id, version, arm, exc_info=exc)
        else:
            log.debug("request %s: v%s (%s) failed: %r", request_id, version, arm, exc)

    def _log_error(
        self, request_id: str, version: str, arm: str, status: int | None, error: str, rows: int, t0: float
    ) -> None:
        self.writers["errors"].put(
            ErrorEntry(
                request_id=request_id,
                ts_us=now_us(),
                model_name=self.model_name,
                model_version=version,
                arm=arm,
                source="online",
                status=status,
                error=error,
                rows=rows,
                latency_ms=(time.perf_counter() - t0) * 1000.0,
            )
        )

    def _log(
        self,
        model: LoadedModel,
        arm: str,
        request_id: str,
        parsed: Any,
        labels: Any,
        proba: Any,
        ts: int,
        latency: float,
        cpu_seconds: float | None,
    ) -> None:
        spec = model.schema
        self.writers["predictions"].put(
            PredictionEntry(
                request_id=request_id,
                batch=parsed.batch,
                ts_us=ts,
                model_name=self.model_name,
                model_version=model.version,
                arm=arm,
                source="online",
                feature_names=spec.names,
                feature_kinds=spec.kinds,
                columns=parsed.columns,
                labels=labels,
                proba=proba,
                classes=model.class_keys,
                latency_ms=latency * 1000.0,
                join_names=spec.join_names,
                join_kinds=spec.join_kinds,
                join_columns=parsed.joins or (),
                predict_cpu_ms=None if cpu_seconds is None else cpu_seconds * 1000.0,
            )
        )

    async def _shadow(
        self, challenger: LoadedModel, parse: Callable[[LoadedModel], ParsedRequest], request_id: str, ts: int
    ) -> None:
        """Score the challenger on the same input, for the log only: its answer is never served."""
        t0 = time.perf_counter()
        rows = 0
        try:
            parsed = parse(challenger)
            rows = len(parsed.X)
            pred = await self.shadow_batcher.submit(challenger, parsed.X)
            check_prediction(pred, batch=parsed.batch)  # a non-finite answer is not logged either
        except RequestRejected as exc:  # input the challenger refuses, or a non-finite answer: not a failure
            log.debug("shadow scoring of %s refused: %s", request_id, exc)
            return
        except Exception as exc:  # the client already has its answer; the failure goes to the error log
            self._report_failure(exc, challenger.version, SHADOW, request_id)
            self._log_error(request_id, challenger.version, SHADOW, None, type(exc).__name__, rows, t0)
            return
        latency = time.perf_counter() - t0
        labels = pred.labels.tolist()
        self._log(challenger, SHADOW, request_id, parsed, labels, pred.proba, ts, latency, pred.cpu_seconds)
        self.metrics.count_cpu(challenger.version, SHADOW, pred.cpu_seconds)
        self.metrics.count_outcomes(challenger.version, SHADOW, _outcomes(challenger, labels, pred.proba))

    # -- feedback -------------------------------------------------------------------------------------------

    async def feedback(self, request: Request) -> Response:
        try:
            state = self.pool.state
            if state is None:
                raise RequestRejected(503, "no model loaded yet: see /readyz")
            body = await self.read_json(request)
            fb = routes.parse_feedback(body, rule=_label_rule(state, self._label_rules))
        except RequestRejected as exc:
            return error(exc)
        ts = now_us()
        regression = state.champion.regression
        if fb.ids and not self.writers["feedback"].put(FeedbackEntry(fb.ids, fb.labels, regression, ts)):
            return json_response({"detail": "feedback log is full, try again"}, 503)
        if fb.outcome_ids and not self.writers["outcomes"].put(
            OutcomeEntry(fb.outcome_ids, fb.outcome_names, fb.outcome_values, ts)
        ):
            return json_response({"detail": "outcome log is full, try again"}, 503)
        return json_response({"accepted": fb.accepted})


def _label_rule(state: ServingState, cache: list[tuple[ServingState, LabelRule]]) -> LabelRule:
    """The feedback label rule of the state being served, made once per state (states are replaced whole)."""
    if cache and cache[0][0] is state:
        return cache[0][1]
    rule = label_rule(state.champion.regression, [c for m in state.models() for c in m.classes])
    cache[:] = [(state, rule)]
    return rule


Render = Callable[[LoadedModel, str, str, ParsedRequest, list[Any], Any], bytes]
"""(model, arm, request id, parsed request, labels, class probabilities or None) -> the answer's body."""


def _v1_payload(
    model: LoadedModel, arm: str, request_id: str, parsed: ParsedRequest, labels: list[Any], proba: Any
) -> bytes:
    out: dict[str, Any] = {"request_id": request_id, "model_version": model.version, "arm": arm}
    if parsed.batch:
        out["predictions"] = labels
        if proba is not None:
            out["classes"] = model.classes
            out["probabilities"] = proba
    else:
        out["prediction"] = labels[0]
        if proba is not None:
            out["probabilities"] = dict(zip(model.class_keys, proba[0].tolist(), strict=True))
    return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)


def pinned_route(state: ServingState, version: str) -> Route:
    """The route of a request that names its version: that model, no shadow; 404 if it is not served now."""
    arm = state.arm_of(version)
    if arm is None:
        served = ", ".join(m.version for m in state.models())
        raise RequestRejected(404, f"version {version} is not served now (served: {served})")
    return Route(arm, False)


def _routing_key(body: Any) -> str | None:
    if type(body) is dict:
        value = body.get(ROUTING_FIELD)
        if isinstance(value, str) and value:
            return value
        if type(value) is int:
            return str(value)
    return None


def _outcomes(model: LoadedModel, labels: list[Any], proba: Any) -> dict[str, int]:
    """Rows per predicted class (class label string) or per value bucket (regression), for the metrics."""
    if proba is None:
        return dict(Counter(value_bucket(float(v)) for v in labels))
    if len(labels) == 1:
        return {model.class_keys[int(np.argmax(proba[0]))]: 1}
    counts = np.bincount(np.argmax(proba, axis=1), minlength=len(model.class_keys))
    return {model.class_keys[i]: int(counts[i]) for i in np.flatnonzero(counts)}


def create_app(cfg: Config, *, metadata: MetadataStore | None = None) -> PredictFastPath:
    """One worker's app. The model loads in the background after start-up; /readyz says when it is there."""
    service = Service(cfg, metadata=metadata)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.start()
        # Accept connections only once a model is loaded (or the wait is over and /readyz must explain why):
        # with several workers on one socket, a worker still loading would otherwise answer 503s.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, service.pool.wait_ready, cfg.serving.startup_wait_seconds)
        try:
            yield
        finally:
            # uvicorn has drained in-flight requests (and their shadow tasks) before we get here.
            await asyncio.get_running_loop().run_in_executor(None, service.stop)

    app = FastAPI(
        title="driftloop prediction service",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # CDN pages: serve.docs installs offline ones
        redoc_url=None,
        description="Predictions from the champion (and challenger) of the deployed model, with feedback.",
    )
    app.state.service = service

    @app.middleware("http")
    async def unexpected(request: Request, call_next: Any) -> Response:
        # Feedback, admin and the read-only routes: a bug or a failing store must still be a counted JSON
        # 500 with an id to look up in the server's log, never a bare text one that no metric sees (an
        # exception handler would answer, then re-raise, and uvicorn would reset the connection).
        t0 = time.perf_counter()
        method, path = request.method, request.url.path
        try:
            ctx = request_context(request.headers.get("x-request-id"), request.headers.get("traceparent"))
            request.state.ctx = ctx  # the routes that log predictions (V2) use this request id
        except RequestRejected as exc:  # an X-Request-ID it cannot log or join on
            service.access.write(None, method, path, exc.status, time.perf_counter() - t0)
            return json_response(exc.to_dict(), exc.status)
        try:
            response = await call_next(request)
        except Exception as exc:
            log.error("%s %s failed (request %s)", method, path, ctx.request_id, exc_info=exc)
            service.metrics.observe_request("", "", 500, None)
            detail = f"internal error: {type(exc).__name__}"
            response = json_response({"detail": detail, "request_id": ctx.request_id}, 500)
        for name, value in ctx.headers():
            response.headers[name.decode()] = value.decode()
        if path not in QUIET_PATHS:
            # A route that predicts (V2 inference) names its model version in the answer's header.
            version = response.headers.get("x-model-version")
            service.access.write(
                ctx, method, path, response.status_code, time.perf_counter() - t0, model_version=version
            )
        return response

    routes.add_routes(app, service)
    v2.add_routes(app, service)
    routes.install_openapi(app, service)
    docs.install_docs(app)
    return PredictFastPath(app, service)


class PredictFastPath:
    """ASGI entry point: `POST /v1/predict` and `/invocations` go straight to the service, the rest to FastAPI.

    The predict path is the one that carries the traffic; skipping the framework's routing, request object
    and middleware stack for it roughly halves the Python work per request. It is documented in the
    OpenAPI document like the others (see routes.install_openapi).
    """

    def __init__(self, app: FastAPI, service: Service) -> None:
        self.app = app
        self.service = service
        self.state = app.state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path")  # a lifespan scope has none
        if scope["type"] != "http" or path not in FAST_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            payload = orjson.dumps({"detail": "Method Not Allowed"})
            await _send(send, 405, payload, ((b"allow", b"POST"),))
            return
        ctype = length = routing = request_id = traceparent = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")
            elif name == b"x-routing-key":
                routing = value.decode("latin-1")
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
        t0 = time.perf_counter()
        service = self.service
        mlflow = path == invocations.INVOCATIONS_PATH
        a = await service.predict(ctype, length, routing, receive, request_id, traceparent, mlflow)
        await _send(send, a.status, a.payload, a.ctx.headers(a.model_version) if a.ctx else ())
        service.access.write(
            a.ctx, "POST", path, a.status, time.perf_counter() - t0, model_version=a.model_version,
            arm=a.arm, rows=a.rows,
        )  # fmt: skip
        if a.after is not None:
            await a.after()  # shadow scoring: after the answer has left


async def _send(send: Any, status: int, payload: bytes, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def create_app_from_env() -> PredictFastPath:
    """Factory for uvicorn workers: the serve command passes the validated config in the environment."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{CONFIG_ENV} is not set: start the server with `driftloop serve`")
    cfg = Config.model_validate(orjson.loads(raw))
    logging.basicConfig(
        level=os.environ.get("DRIFTLOOP_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return create_app(cfg)


__all__ = ["PredictFastPath", "Service", "create_app", "create_app_from_env", "describe"]
