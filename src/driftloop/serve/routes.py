"""The service's endpoints and their OpenAPI description.

Predict, feedback and admin read raw bodies (see `Service.read_json`) so that a client mistake always gets
its own status (400 malformed JSON, 413 too large, 415 wrong type, 422 invalid, 401/403 before any of
that for admin) instead of FastAPI's generic handling. Their request schemas are documented by hand, and
the predict record schema is built from the model being served when /openapi.json is asked for.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from driftloop.errors import ConflictError, UserError
from driftloop.serve import admin
from driftloop.serve.pool import describe
from driftloop.serve.validation import ROUTING_FIELD, RequestRejected

if TYPE_CHECKING:
    from driftloop.serve.app import Service

MAX_FEEDBACK = 10_000
PREDICT_OPERATION_PATH = "/v1/predict"
#: Served by app.PredictFastPath, outside FastAPI's router, so described here by hand.
PREDICT_OPERATION: dict[str, Any] = {
    "post": {
        "summary": "Predict one record, a list of records or columnar data",
        "operationId": "predict",
        "parameters": [
            {"name": "X-Routing-Key", "in": "header", "required": False, "schema": {"type": "string"}},
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
        },
        "responses": {
            "200": {"description": "predictions, probabilities, model_version, arm, request_id"},
            "400": {"description": "malformed JSON"},
            "413": {"description": "body or row count over the limit"},
            "415": {"description": "not application/json"},
            "422": {"description": "invalid fields, one message per field"},
            "503": {"description": "no model loaded yet"},
        },
    }
}
_ERROR = {
    "description": "client error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_CLIENT_ERRORS = {str(c): _ERROR for c in (400, 413, 415, 422)}


class DeploymentChange(BaseModel):
    """Admin change of the strategy and weight. `challenger`, if given, must be the current challenger."""

    model_config = ConfigDict(extra="forbid")
    strategy: Literal["single", "ab", "canary", "shadow", "bluegreen"]
    challenger_weight: float | None = Field(None, ge=0.0, le=1.0)
    challenger: str | None = Field(None, min_length=1, max_length=32, pattern=r"^[0-9]+$")
    reason: str = Field("", max_length=500)


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=500)


def parse_feedback(body: Any, *, regression: bool) -> tuple[list[str], list[Any]]:
    """`{"request_id", "label"}`, a list of them, or `{"feedback": [...]}` -> ids and labels."""
    if isinstance(body, dict) and "feedback" in body:
        if set(body) != {"feedback"}:
            raise RequestRejected(
                422,
                "invalid request",
                [{"loc": k, "msg": "is not a known key"} for k in sorted(set(body) - {"feedback"})],
            )
        items, where = body["feedback"], "feedback"
    elif isinstance(body, list):
        items, where = body, ""
    else:
        items, where = [body], None
    if not isinstance(items, list):
        raise RequestRejected(422, "invalid request", [{"loc": "feedback", "msg": "must be a list"}])
    if not items:
        raise RequestRejected(422, "no feedback items")
    if len(items) > MAX_FEEDBACK:
        raise RequestRejected(413, f"{len(items)} feedback items; the limit is {MAX_FEEDBACK}")
    ids, labels, problems = [], [], []
    for i, item in enumerate(items):
        at = "" if where is None else f"{where}[{i}]"
        if not isinstance(item, dict):
            problems.append({"loc": at or "body", "msg": "must be an object with request_id and label"})
            continue
        for k in sorted(set(item) - {"request_id", "label"}):
            problems.append({"loc": _join(at, k), "msg": "is not a known key"})
        rid, label = item.get("request_id"), item.get("label")
        if not isinstance(rid, str) or not 0 < len(rid) <= 200:
            problems.append(
                {"loc": _join(at, "request_id"), "msg": "must be a string of 1 to 200 characters"}
            )
        if not _valid_label(label, regression):
            kind = "a finite number" if regression else "a string or a number"
            problems.append({"loc": _join(at, "label"), "msg": f"is required and must be {kind}"})
        ids.append(rid)
        labels.append(label)
        if len(problems) >= 50:
            break
    if problems:
        raise RequestRejected(422, "invalid request", problems[:50])
    return ids, labels


def _valid_label(label: Any, regression: bool) -> bool:
    if isinstance(label, bool) or label is None:
        return False
    if isinstance(label, int | float):
        return math.isfinite(label)
    return not regression and isinstance(label, str) and 0 < len(label) <= 200


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def add_routes(app: FastAPI, service: Service) -> None:
    from driftloop.serve.app import error, json_response

    @app.post(
        "/v1/feedback",
        summary="Ground-truth labels for earlier request ids",
        openapi_extra={"requestBody": _body("FeedbackRequest")},
        responses={"200": {"description": "accepted"}, **_CLIENT_ERRORS},
    )
    async def feedback(request: Request) -> Response:
        return await service.feedback(request)

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", summary="Ready when a model is loaded; details on the store and the last swap")
    async def readyz() -> Response:
        status = service.pool.status()
        return json_response(status, 200 if status["ready"] else 503)

    @app.get("/metrics", summary="Prometheus metrics (all workers)")
    async def metrics() -> Response:
        body, ctype = await run_in_threadpool(service.metrics.render)
        return Response(body, media_type=ctype)

    @app.get("/v1/deployment", summary="What this worker serves now: versions, strategy, weight")
    async def deployment() -> Response:
        state = service.pool.state
        if state is None:
            return json_response({"detail": "no model loaded yet", **service.pool.status()}, 503)
        return json_response(describe(state) | {"store": service.pool.status()["store"]})

    token = service.cfg.serving.admin_token
    if not token:
        return  # no token configured: the admin endpoints do not exist (404), they are never open

    async def guarded(request: Request, model: type[BaseModel]) -> BaseModel:
        denied = admin.check_bearer(
            request.headers.get("authorization"), token, service.cfg.serving.admin_token_previous
        )
        if denied is not None:
            headers = {"WWW-Authenticate": "Bearer"} if denied.status == 401 else None
            raise _Denied(denied.status, denied.message, headers)
        body = await service.read_json(request)
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            problems = [
                {"loc": ".".join(str(p) for p in e["loc"]) or "body", "msg": e["msg"]} for e in exc.errors()
            ]
            raise RequestRejected(422, "invalid request", problems) from None

    async def run_admin(request: Request, model: type[BaseModel], action: Any) -> Response:
        try:
            change = await guarded(request, model)
            actor = f"admin-api:{request.client.host if request.client else 'unknown'}"
            dep = await run_in_threadpool(action, change, actor)
        except _Denied as exc:
            return json_response({"detail": exc.message}, exc.status_code, headers=exc.headers)
        except RequestRejected as exc:
            return error(exc)
        except ConflictError as exc:
            return json_response({"detail": f"{exc}: read the deployment again and retry"}, 409)
        except UserError as exc:
            return json_response({"detail": str(exc)}, 422)
        service.pool.poke()
        return json_response(dep.to_dict())

    def stores() -> Any:
        from driftloop.stores import Stores

        return Stores(cfg=service.cfg, metadata=service.metadata, tracking=service.tracking)

    def change_deployment(change: DeploymentChange, actor: str) -> Any:
        return admin.change_strategy(
            stores(),
            strategy=change.strategy,
            weight=change.challenger_weight,
            challenger=change.challenger,
            reason=change.reason,
            actor=actor,
        )

    def do_rollback(change: Rollback, actor: str) -> Any:
        return admin.rollback(stores(), reason=change.reason, actor=actor)

    security = [{"bearer": []}]

    @app.post(
        "/v1/admin/deployment",
        summary="Change strategy, challenger and weight (bearer token)",
        openapi_extra={"requestBody": _body("DeploymentChange"), "security": security},
        responses={
            "200": {"description": "new deployment"},
            "401": _ERROR,
            "403": _ERROR,
            "409": _ERROR,
            **_CLIENT_ERRORS,
        },
    )
    async def admin_deployment(request: Request) -> Response:
        return await run_admin(request, DeploymentChange, change_deployment)

    @app.post(
        "/v1/admin/rollback",
        summary="Send all traffic back to the champion (bearer token)",
        openapi_extra={"requestBody": _body("Rollback"), "security": security},
        responses={
            "200": {"description": "new deployment"},
            "401": _ERROR,
            "403": _ERROR,
            "409": _ERROR,
            **_CLIENT_ERRORS,
        },
    )
    async def admin_rollback(request: Request) -> Response:
        return await run_admin(request, Rollback, do_rollback)


class _Denied(Exception):
    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None) -> None:
        self.status_code, self.message, self.headers = status_code, message, headers


def _body(name: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
    }


def install_openapi(app: FastAPI, service: Service) -> None:
    """OpenAPI whose predict schema names the served model's features (rebuilt when the model changes)."""
    cache: dict[Any, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        state = service.pool.state
        spec = state.champion.spec if state else None
        key = id(spec)
        if key not in cache:
            base = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            comps = base.setdefault("components", {}).setdefault("schemas", {})
            comps.update(_component_schemas(spec, service.cfg.serving.unknown_fields == "reject"))
            if service.cfg.serving.admin_token:
                base["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            base["paths"] = {PREDICT_OPERATION_PATH: PREDICT_OPERATION, **base.get("paths", {})}
            cache.clear()
            cache[key] = base
        return cache[key]

    app.openapi = openapi  # type: ignore[method-assign]


def _component_schemas(spec: Any, closed: bool) -> dict[str, Any]:
    if spec is None:
        record: dict[str, Any] = {
            "type": "object",
            "additionalProperties": {"type": ["number", "string", "null"]},
        }
    else:
        props: dict[str, Any] = {}
        for f in spec.features:
            kind: Any = "number" if f.kind == "numeric" else "string"
            props[f.name] = {"type": [kind, "null"] if f.nullable else kind}
            if f.kind == "categorical" and f.categories:
                props[f.name]["examples"] = list(f.categories[:5])
        record = {
            "type": "object",
            "properties": props,
            "required": list(props),
            "additionalProperties": not closed,
        }
    with_key = {**record, "properties": {**record.get("properties", {}), ROUTING_FIELD: {"type": "string"}}}
    label = {"type": ["string", "number"]}
    item = {
        "type": "object",
        "properties": {"request_id": {"type": "string"}, "label": label},
        "required": ["request_id", "label"],
        "additionalProperties": False,
    }
    return {
        "Record": record,
        "PredictRequest": {
            "anyOf": [
                with_key,
                {"type": "array", "items": {"$ref": "#/components/schemas/Record"}, "minItems": 1},
                {
                    "type": "object",
                    "properties": {
                        "records": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                        ROUTING_FIELD: {"type": "string"},
                    },
                    "required": ["records"],
                },
                {
                    "type": "object",
                    "properties": {
                        "columns": {"type": "array", "items": {"type": "string"}},
                        "data": {"type": "array", "items": {"type": "array"}},
                        ROUTING_FIELD: {"type": "string"},
                    },
                    "required": ["columns", "data"],
                },
            ]
        },
        "FeedbackItem": item,
        "FeedbackRequest": {
            "anyOf": [
                {"$ref": "#/components/schemas/FeedbackItem"},
                {"type": "array", "items": {"$ref": "#/components/schemas/FeedbackItem"}},
                {
                    "type": "object",
                    "properties": {
                        "feedback": {"type": "array", "items": {"$ref": "#/components/schemas/FeedbackItem"}}
                    },
                    "required": ["feedback"],
                },
            ]
        },
        "DeploymentChange": DeploymentChange.model_json_schema(),
        "Rollback": Rollback.model_json_schema(),
        "Error": {
            "type": "object",
            "properties": {
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"loc": {"type": "string"}, "msg": {"type": "string"}},
                    },
                },
            },
            "required": ["detail"],
        },
    }
