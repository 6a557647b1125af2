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
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.background import BackgroundTask

from driftloop.config import Config
from driftloop.serve import routes
from driftloop.serve.batching import MicroBatcher
from driftloop.serve.metrics import Metrics, value_bucket
from driftloop.serve.pool import LoadedModel, ModelPool, describe
from driftloop.serve.router import CHAMPION, SHADOW, route
from driftloop.serve.validation import ROUTING_FIELD, RequestRejected, decode_json
from driftloop.stores.metadata import MetadataStore
from driftloop.stores.predlog import FeedbackEntry, LogWriter, PredictionEntry, now_us

log = logging.getLogger(__name__)
JSON = "application/json"
CONFIG_ENV = "DRIFTLOOP_SERVE_CONFIG_JSON"
PREDICT_PATH = "/v1/predict"


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
        self.metrics = Metrics()
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
            )
            for kind in ("predictions", "feedback")
        }
        self.batcher = MicroBatcher()
        self.shadow_batcher = MicroBatcher(delay_seconds=0.002)
        self.max_body = s.max_body_bytes

    def start(self) -> None:
        self.metrics.model_ready.set(0)  # counted in the minimum over workers from the start
        for writer in self.writers.values():
            writer.start()
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop()
        self.batcher.close()
        self.shadow_batcher.close()
        for writer in self.writers.values():
            writer.close()
        Metrics.mark_process_dead()

    # -- request plumbing -----------------------------------------------------------------------------------

    def check_headers(self, ctype: str | None, length: str | None) -> None:
        media = (ctype or "").split(";", 1)[0].strip().lower()
        if media != JSON and not media.endswith("+json"):
            raise RequestRejected(415, f"content type must be {JSON}, got {ctype or 'none'}")
        if length is not None:
            if not length.isdigit():
                raise RequestRejected(400, "invalid Content-Length header")
            if int(length) > self.max_body:
                raise RequestRejected(413, f"body of {length} bytes is over the limit of {self.max_body}")

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
        self, ctype: str | None, length: str | None, routing_header: str | None, receive: Any
    ) -> tuple[int, bytes, Any]:
        """One prediction request from raw ASGI parts -> (status, JSON body, work to run after answering)."""
        t0 = time.perf_counter()
        try:
            state = self.pool.state
            if state is None:
                raise RequestRejected(503, "no model loaded yet: see /readyz")
            self.check_headers(ctype, length)
            body = decode_json(await self.read_body(receive))
            request_id = uuid.uuid4().hex
            key = _routing_key(body) or routing_header or request_id
            dep = state.deployment
            r = route(key, dep.strategy, dep.challenger_weight, state.challenger is not None)
            model = state.champion if r.arm == CHAMPION else state.challenger
            assert model is not None
            parsed = model.schema.parse(body)
            pred = await self.batcher.submit(model, parsed.X)
        except RequestRejected as exc:
            self.metrics.observe_request("", "", exc.status, None)
            return exc.status, orjson.dumps(exc.to_dict()), None
        labels = pred.labels.tolist()
        latency = time.perf_counter() - t0
        out: dict[str, Any] = {"request_id": request_id, "model_version": model.version, "arm": r.arm}
        if parsed.batch:
            out["predictions"] = labels
            if pred.proba is not None:
                out["classes"] = model.classes
                out["probabilities"] = pred.proba
        else:
            out["prediction"] = labels[0]
            if pred.proba is not None:
                out["probabilities"] = dict(zip(model.class_keys, pred.proba[0].tolist(), strict=True))
        ts = now_us()
        self._log(model, r.arm, request_id, parsed, labels, pred.proba, ts, latency)
        self.metrics.observe_request(model.version, r.arm, 200, latency)
        self.metrics.count_outcomes(model.version, r.arm, _outcomes(model, labels, pred.proba))
        after = None
        if r.shadow and state.challenger is not None:
            challenger = state.challenger

            async def after() -> None:
                await self._shadow(challenger, body, request_id, ts)

        return 200, orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY), after

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
            )
        )

    async def _shadow(self, challenger: LoadedModel, body: Any, request_id: str, ts: int) -> None:
        """Score the challenger on the same input, for the log only: its answer is never served."""
        t0 = time.perf_counter()
        try:
            parsed = challenger.schema.parse(body)
            pred = await self.shadow_batcher.submit(challenger, parsed.X)
        except Exception as exc:  # a challenger that cannot score this input changes nothing for the client
            log.debug("shadow scoring of %s failed: %s", request_id, exc)
            return
        latency = time.perf_counter() - t0
        labels = pred.labels.tolist()
        self._log(challenger, SHADOW, request_id, parsed, labels, pred.proba, ts, latency)
        self.metrics.count_outcomes(challenger.version, SHADOW, _outcomes(challenger, labels, pred.proba))

    # -- feedback -------------------------------------------------------------------------------------------

    async def feedback(self, request: Request) -> Response:
        try:
            state = self.pool.state
            if state is None:
                raise RequestRejected(503, "no model loaded yet: see /readyz")
            body = await self.read_json(request)
            ids, labels = routes.parse_feedback(body, regression=state.champion.regression)
        except RequestRejected as exc:
            return error(exc)
        accepted = self.writers["feedback"].put(
            FeedbackEntry(
                request_ids=ids, labels=labels, regression=state.champion.regression, ts_us=now_us()
            )
        )
        if not accepted:
            return json_response({"detail": "feedback log is full, try again"}, 503)
        return json_response({"accepted": len(ids)})


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
        description="Predictions from the champion (and challenger) of the deployed model, with feedback.",
    )
    app.state.service = service
    routes.add_routes(app, service)
    routes.install_openapi(app, service)
    return PredictFastPath(app, service)


class PredictFastPath:
    """ASGI entry point: `POST /v1/predict` goes straight to the service, everything else to FastAPI.

    The predict path is the one that carries the traffic; skipping the framework's routing, request object
    and middleware stack for it roughly halves the Python work per request. It is documented in the
    OpenAPI document like the others (see routes.install_openapi).
    """

    def __init__(self, app: FastAPI, service: Service) -> None:
        self.app = app
        self.service = service
        self.state = app.state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PREDICT_PATH:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            payload = orjson.dumps({"detail": "Method Not Allowed"})
            await _send(send, 405, payload, ((b"allow", b"POST"),))
            return
        ctype = length = routing = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")
            elif name == b"x-routing-key":
                routing = value.decode("latin-1")
        status, payload, after = await self.service.predict(ctype, length, routing, receive)
        await _send(send, status, payload)
        if after is not None:
            await after()  # shadow scoring: after the answer has left


async def _send(send: Any, status: int, payload: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
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
