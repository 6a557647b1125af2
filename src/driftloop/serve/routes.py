"""The service's endpoints and their OpenAPI description.

Predict, feedback and admin read raw bodies (see `Service.read_json`) so that a client mistake always gets
its own status (400 malformed JSON, 413 too large, 415 wrong type, 422 invalid, 401/403 before any of
that for admin) instead of FastAPI's generic handling. Their request schemas are documented by hand, and
the predict record schema is built from the model being served when /openapi.json is asked for.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from driftloop.errors import ConflictError, UserError
from driftloop.serve import admin
from driftloop.serve.invocations import FORMATS, INVOCATIONS_PATH
from driftloop.serve.labels import LabelRule
from driftloop.serve.pool import describe
from driftloop.serve.schemas import RESPONSE_SCHEMAS, answer, ref
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
            "200": answer("one record: `prediction`; a list or columns: `predictions`", "PredictResponse"),
            "400": answer("malformed JSON, or a bad X-Request-ID"),
            "413": answer("body or row count over the limit"),
            "415": answer("not application/json"),
            "422": answer("invalid fields, one message per field"),
            "500": answer("the model failed", "ModelFailure"),
            "503": answer("no model loaded yet"),
        },
    }
}
INVOCATIONS_OPERATION: dict[str, Any] = {
    "post": {
        "summary": "MLflow's scoring protocol: dataframe_split, dataframe_records, instances, inputs or CSV",
        "description": 'Answers `{"predictions": ...}` as `mlflow models serve` does for the same registered '
        "model; routing, validation, the prediction log and the metrics are those of /v1/predict.",
        "operationId": "invocations",
        "parameters": [
            {"name": "X-Routing-Key", "in": "header", "required": False, "schema": {"type": "string"}},
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ref("InvocationsRequest")},
                "text/csv": {
                    "schema": {"type": "string", "description": "a header line, then one row a line"}
                },
            },
        },
        "responses": {
            "200": answer("one entry per row", "InvocationsResponse"),
            "400": answer("malformed JSON or CSV, or not exactly one format key", "InvocationsError"),
            "413": answer("body or row count over the limit", "InvocationsError"),
            "415": answer("neither application/json nor text/csv", "InvocationsError"),
            "422": answer("invalid fields, one message per field", "InvocationsError"),
            "500": answer("the model failed", "ModelFailure"),
            "503": answer("no model loaded yet", "InvocationsError"),
        },
    }
}
_ERROR = answer("client error")
_CLIENT_ERRORS: dict[str | int, dict[str, Any]] = {str(c): _ERROR for c in (400, 413, 415, 422)}
#: Any route but predict, when the server itself fails (the middleware in app.create_app).
_INTERNAL: dict[str | int, dict[str, Any]] = {"500": answer("internal error", "InternalError")}


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


#: Outcome names: an identifier of at most 64 characters (it becomes a key in reports and metric names).
OUTCOME_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_OUTCOMES = 20


@dataclass
class Feedback:
    """What one /v1/feedback body carried: labels, and named business outcomes, of earlier request ids."""

    ids: list[str] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    outcome_ids: list[str] = field(default_factory=list)
    outcome_names: list[str] = field(default_factory=list)
    outcome_values: list[float] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return len(self.ids) + len(set(self.outcome_ids) - set(self.ids))


def _outcome_problems(outcomes: Any, at: str) -> list[dict[str, str]]:
    if not isinstance(outcomes, dict) or not outcomes:
        return [{"loc": at, "msg": 'must be an object of named numbers, e.g. {"conversion": 1}'}]
    if len(outcomes) > MAX_OUTCOMES:
        return [{"loc": at, "msg": f"{len(outcomes)} outcomes; the limit is {MAX_OUTCOMES}"}]
    problems = []
    for name, value in outcomes.items():
        if not OUTCOME_NAME.fullmatch(name):
            problems.append({"loc": at, "msg": f"{name[:80]!r} is not an outcome name (letters, digits, _)"})
        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            problems.append({"loc": _join(at, name), "msg": f"must be a finite number, got {value!r:.80}"})
    return problems


def parse_feedback(body: Any, *, rule: LabelRule) -> Feedback:
    """`{"request_id", "label", "outcomes"}`, a list of them, or `{"feedback": [...]}` -> a Feedback.

    An item carries a label, named outcomes (`{"conversion": 1, "revenue": 12.5}`), or both. Labels follow
    `rule` (see serve.labels). Whether a request id belongs to a logged prediction is not looked up here (a
    log query per item on this route): the monitoring pass joins feedback with the predictions and reports
    the unmatched ones.
    """
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
    out = Feedback()
    problems: list[dict[str, str]] = []
    for i, item in enumerate(items):
        at = "" if where is None else f"{where}[{i}]"
        if not isinstance(item, dict):
            problems.append({"loc": at or "body", "msg": "must be an object with request_id and label"})
            continue
        for k in sorted(set(item) - {"request_id", "label", "outcomes"}):
            problems.append({"loc": _join(at, k), "msg": "is not a known key"})
        rid = item.get("request_id")
        if not isinstance(rid, str) or not 0 < len(rid) <= 200:
            problems.append(
                {"loc": _join(at, "request_id"), "msg": "must be a string of 1 to 200 characters"}
            )
        outcomes = item.get("outcomes")
        if outcomes is not None:
            problems.extend(_outcome_problems(outcomes, _join(at, "outcomes")))
        if "label" in item or outcomes is None:  # an item without outcomes is a label
            wrong = rule.problem(item.get("label"))
            if wrong is not None:
                problems.append({"loc": _join(at, "label"), "msg": wrong})
            out.ids.append(rid)  # type: ignore[arg-type]  # not a str only when a problem was recorded above
            out.labels.append(item.get("label"))
        if isinstance(outcomes, dict):
            for name, value in outcomes.items():
                out.outcome_ids.append(rid)  # type: ignore[arg-type]
                out.outcome_names.append(name)
                out.outcome_values.append(value)
        if len(problems) >= 50:
            break
    if problems:
        raise RequestRejected(422, "invalid request", problems[:50])
    return out


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def add_routes(app: FastAPI, service: Service) -> None:
    from driftloop.serve.app import error, json_response

    @app.post(
        "/v1/feedback",
        summary="Ground-truth labels for earlier request ids",
        openapi_extra={"requestBody": _body("FeedbackRequest")},
        responses={
            "200": answer("how many labels were accepted", "FeedbackAccepted"),
            **_CLIENT_ERRORS,
            "503": answer("the feedback log is full: try again"),
            **_INTERNAL,
        },
    )
    async def feedback(request: Request) -> Response:
        return await service.feedback(request)

    @app.get(
        "/healthz",
        summary="The process is alive",
        responses={"200": answer("alive", "Health"), **_INTERNAL},
    )
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get(
        "/ping",
        summary="MLflow's health check (also /health): 200 once a model is loaded",
        responses={
            "200": answer("a model is loaded", "Health"),
            "503": answer("no model loaded yet"),
            **_INTERNAL,
        },
    )
    async def ping() -> Response:
        if service.pool.state is None:
            return json_response({"detail": "no model loaded yet: see /readyz"}, 503)
        return json_response({"status": "ok"})

    app.get(
        "/health",
        summary="MLflow's health check (also /ping): 200 once a model is loaded",
        responses={
            "200": answer("a model is loaded", "Health"),
            "503": answer("no model loaded yet"),
            **_INTERNAL,
        },
    )(ping)

    @app.get(
        "/version",
        summary="driftloop's version and the champion model version served (MLflow servers answer theirs)",
        responses={"200": answer("versions", "Version"), **_INTERNAL},
    )
    async def version() -> Response:
        from driftloop import __version__

        state = service.pool.state
        champion = state.champion.version if state is not None else None
        return json_response({"version": __version__, "model_name": service.model_name, "champion": champion})

    @app.get(
        "/readyz",
        summary="Ready when a model is loaded; details on the store and the last swap",
        responses={
            "200": answer("a model is loaded (status `degraded`: the store is unreachable)", "Readiness"),
            "503": answer("no model loaded yet", "Readiness"),
            **_INTERNAL,
        },
    )
    async def readyz() -> Response:
        status = service.pool.status()
        return json_response(status, 200 if status["ready"] else 503)

    @app.get(
        "/metrics",
        summary="Prometheus metrics (all workers)",
        response_class=PlainTextResponse,  # else FastAPI documents an application/json answer with no schema
        responses={
            "200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **_INTERNAL,
        },
    )
    async def metrics() -> Response:
        body, ctype = await run_in_threadpool(service.metrics.render)
        return Response(body, media_type=ctype)

    @app.get(
        "/v1/deployment",
        summary="What this worker serves now: versions, strategy, weight",
        responses={
            "200": answer("the serving deployment and the store's state", "CurrentDeployment"),
            "503": answer("no model loaded yet", "NotReady"),
            **_INTERNAL,
        },
    )
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

    security: list[dict[str, list[str]]] = [{"bearer": []}]

    @app.post(
        "/v1/admin/deployment",
        summary="Change strategy, challenger and weight (bearer token)",
        openapi_extra={"requestBody": _body("DeploymentChange"), "security": security},
        responses={
            "200": answer("the deployment after the change", "Deployment"),
            "401": _ERROR,
            "403": _ERROR,
            "409": _ERROR,
            **_CLIENT_ERRORS,
            **_INTERNAL,
        },
    )
    async def admin_deployment(request: Request) -> Response:
        return await run_admin(request, DeploymentChange, change_deployment)

    @app.post(
        "/v1/admin/rollback",
        summary="Send all traffic back to the champion (bearer token)",
        openapi_extra={"requestBody": _body("Rollback"), "security": security},
        responses={
            "200": answer("the deployment after the change", "Deployment"),
            "401": _ERROR,
            "403": _ERROR,
            "409": _ERROR,
            **_CLIENT_ERRORS,
            **_INTERNAL,
        },
    )
    async def admin_rollback(request: Request) -> Response:
        return await run_admin(request, Rollback, do_rollback)


class _Denied(Exception):
    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None) -> None:
        self.status_code, self.message, self.headers = status_code, message, headers


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(name)}}}


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
            joins = state.champion.schema.joins if state else ()
            comps.update(_component_schemas(spec, service.cfg.serving.unknown_fields == "reject", joins))
            comps.update(RESPONSE_SCHEMAS)
            if service.cfg.serving.admin_token:
                base["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            base["paths"] = {
                PREDICT_OPERATION_PATH: PREDICT_OPERATION,
                INVOCATIONS_PATH: INVOCATIONS_OPERATION,
                **base.get("paths", {}),
            }
            cache.clear()
            cache[key] = base
        return cache[key]

    app.openapi = openapi  # type: ignore[method-assign]


def _component_schemas(spec: Any, closed: bool, joins: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    if spec is None:
        record: dict[str, Any] = {
            "type": "object",
            "additionalProperties": {"type": ["number", "string", "null"]},
        }
    else:
        props: dict[str, Any] = {}
        for f in spec.features:
            # The kinds' coercion rules (docs/contracts.md): what each kind takes besides its own JSON type.
            if f.kind == "numeric":
                types = ["number"]
            elif f.is_bool:
                types = ["boolean", "string", "integer"]
            else:
                types = ["string", "number"]
            props[f.name] = {"type": [*types, "null"] if f.nullable else types}
            if f.kind == "categorical" and f.categories:
                props[f.name]["examples"] = list(f.categories[:5])
        required = list(props)
        for name, kind in joins:  # optional, never given to the model, logged for joins
            props[name] = (
                {"type": ["string", "null"], "format": "date-time", "description": "ISO 8601; kept for joins"}
                if kind == "datetime"
                else {"type": ["string", "integer", "null"], "description": "kept for joins"}
            )
        record = {
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": not closed,
        }
    with_key = {**record, "properties": {**record.get("properties", {}), ROUTING_FIELD: {"type": "string"}}}
    label = {"type": ["string", "number"]}
    item = {
        "type": "object",
        "properties": {
            "request_id": {"type": "string"},
            "label": label,
            "outcomes": {
                "type": "object",
                "description": "named business outcomes of the request (conversion 0/1, revenue): "
                "see `driftloop experiment`",
                "additionalProperties": {"type": "number"},
                "maxProperties": MAX_OUTCOMES,
            },
        },
        "required": ["request_id"],
        "anyOf": [{"required": ["label"]}, {"required": ["outcomes"]}],
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
        "InvocationsRequest": _invocations_request(),
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
    }


def _invocations_request() -> dict[str, Any]:
    """One of MLflow's four JSON wrappers around the model's records (see serve.invocations)."""
    records = {"type": "array", "items": ref("Record")}
    columns = {"type": "object", "additionalProperties": {"type": "array"}, "description": "column -> values"}
    split = {
        "type": "object",
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "array"}},
            "index": {"type": "array"},
        },
        "required": ["columns", "data"],
        "additionalProperties": False,
    }
    shapes = {"dataframe_split": split, "dataframe_records": records}
    shapes |= {"instances": {"anyOf": [records, columns]}, "inputs": {"anyOf": [columns, records]}}
    assert tuple(shapes) == FORMATS
    extra = {ROUTING_FIELD: {"type": "string"}, "params": {"type": "object"}}
    return {
        "oneOf": [
            {
                "type": "object",
                "properties": {name: shape, **extra},
                "required": [name],
                "additionalProperties": False,
            }
            for name, shape in shapes.items()
        ]
    }
