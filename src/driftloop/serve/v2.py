"""The Open Inference Protocol (KServe V2, as Triton, KServe and Seldon MLServer speak it) over HTTP.

    GET  /v2                                           server metadata
    GET  /v2/health/live, /v2/health/ready             200 or 503 ({"live"} / {"ready"}, as KServe answers)
    GET  /v2/models/{name}[/versions/{v}]              model metadata: inputs (one tensor per feature), outputs
    GET  /v2/models/{name}[/versions/{v}]/ready        200, 503 (nothing loaded) or 404 (not served)
    POST /v2/models/{name}[/versions/{v}]/infer        named input tensors -> `predict` (+ `predict_proba`)

The model name is the project's name. A version is one of the served versions (champion or challenger);
without one the request is routed like /v1/predict (A/B, canary, shadow). Inference goes through the same
path as /v1/predict (`Service.score`): the tensors become columnar rows that the routed model's
`RequestSchema` validates, so the micro-batcher, the prediction log, the metrics and the shadow scoring are
the ones /v1/predict has. A client mistake is a 4xx with `{"error": "..."}` naming the input tensor.

Inputs are one tensor per feature named like it, of shape [n] or [n, 1], or a single [n, p] tensor with the
features in the model's order. Both the JSON tensor data and Triton's binary tensor extension
(`Inference-Header-Content-Length`, which tritonclient uses by default) are read, and outputs are written
in binary when the request asks for it (`binary_data` on an output, or `binary_data_output`).
"""

from __future__ import annotations

import math
import re
import struct
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from driftloop.serve.pool import LoadedModel, ServingState
from driftloop.serve.schemas import answer
from driftloop.serve.tracing import request_context
from driftloop.serve.validation import ParsedRequest, RequestRejected, decode_json

if TYPE_CHECKING:
    from driftloop.serve.app import Service

__all__ = ["PREDICT_OUTPUT", "PROBA_OUTPUT", "add_routes", "model_metadata", "read_inputs"]

PREDICT_OUTPUT = "predict"
PROBA_OUTPUT = "predict_proba"
"""MLServer's names for a scikit-learn model's outputs: the label (or value) and the class probabilities."""
HEADER_LENGTH = "inference-header-content-length"
PLATFORM = "driftloop"
_OCTET = "application/octet-stream"
#: Numpy types of the fixed-size datatypes in the binary tensor extension (little-endian).
_BINARY: dict[str, str] = {
    "BOOL": "?",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
_INTS = frozenset(k for k in _BINARY if "INT" in k)
_FLOATS = frozenset({"FP16", "FP32", "FP64"})
#: Which datatypes each kind of feature takes (the kinds' coercion rules in docs/contracts.md do the rest).
_NUMERIC_TYPES = _INTS | _FLOATS
_BOOL_TYPES = frozenset({"BOOL", "BYTES"}) | _INTS
_CATEGORY_TYPES = frozenset({"BYTES"}) | _INTS | _FLOATS
_LOC = re.compile(r"^data\[(\d+)\]\.(.+)$")
_COLUMN = re.compile(r"^columns\.(.+)$")


class V2Error(RequestRejected):
    """A mistake in the V2 request itself (its tensors, outputs or path): 400 unless told otherwise."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(status, message)


# -- metadata -------------------------------------------------------------------------------------------------


def feature_datatype(feature: Any) -> str:
    if feature.kind == "numeric":
        return "FP64"
    return "BOOL" if feature.is_bool else "BYTES"


def _label_datatype(model: LoadedModel) -> str:
    if model.regression:
        return "FP64"
    classes = model.classes
    if all(type(c) is bool for c in classes):
        return "BOOL"
    if all(isinstance(c, (int, np.integer)) and type(c) is not bool for c in classes):
        return "INT64"
    if all(isinstance(c, (int, float, np.number)) and type(c) is not bool for c in classes):
        return "FP64"
    return "BYTES"


def model_metadata(name: str, state: ServingState, model: LoadedModel) -> dict[str, Any]:
    """The V2 model metadata of one served model: one input per feature, its outputs."""
    outputs = [{"name": PREDICT_OUTPUT, "datatype": _label_datatype(model), "shape": [-1]}]
    if not model.regression:
        outputs.append({"name": PROBA_OUTPUT, "datatype": "FP64", "shape": [-1, len(model.classes)]})
    return {
        "name": name,
        "versions": [m.version for m in state.models()],
        "platform": PLATFORM,
        "inputs": [
            {"name": f.name, "datatype": feature_datatype(f), "shape": [-1]} for f in model.spec.features
        ],
        "outputs": outputs,
    }


# -- inputs ---------------------------------------------------------------------------------------------------


class Tensor:
    """One input tensor of the request, its values flattened to a Python list (row-major)."""

    __slots__ = ("datatype", "name", "shape", "values")

    def __init__(self, name: str, datatype: str, shape: list[int], values: list[Any]) -> None:
        self.name, self.datatype, self.shape, self.values = name, datatype, shape, values

    @property
    def rows(self) -> int:
        return self.shape[0]


def read_inputs(body: bytes, header_length: str | None) -> tuple[dict[str, Any], list[Tensor]]:
    """The request's JSON header and its input tensors (JSON data or the binary tensor extension)."""
    binary = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise V2Error(f"Inference-Header-Content-Length {header_length!r} is not within the body")
        cut = int(header_length)
        body, binary = body[:cut], body[cut:]
    doc = decode_json(body) if body else None
    if not isinstance(doc, dict):
        raise V2Error("the body must be an inference request: a JSON object with 'inputs'")
    unknown = sorted(set(doc) - {"id", "parameters", "inputs", "outputs"})
    if unknown:
        raise V2Error(f"unknown key(s) in the inference request: {', '.join(unknown)}")
    if "id" in doc and not isinstance(doc["id"], str):
        raise V2Error("'id' must be a string")
    raw = doc.get("inputs")
    if not isinstance(raw, list) or not raw:
        raise V2Error("'inputs' must be a non-empty list of tensors")
    tensors: list[Tensor] = []
    offset = 0
    for i, item in enumerate(raw):
        tensor, used = _tensor(item, i, binary, offset)
        offset += used
        tensors.append(tensor)
    if offset != len(binary):
        raise V2Error(f"{len(binary) - offset} bytes of binary data follow the inputs that no input claims")
    names = [t.name for t in tensors]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise V2Error(f"input {dup[0]!r} is given more than once")
    return doc, tensors


def _tensor(item: Any, i: int, binary: bytes, offset: int) -> tuple[Tensor, int]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        raise V2Error(f"inputs[{i}] must be a tensor object with a 'name'")
    name = item["name"]
    at = f"input {name!r}"
    datatype, shape = item.get("datatype"), item.get("shape")
    if datatype not in _BINARY and datatype != "BYTES":
        raise V2Error(f"{at}: unsupported datatype {datatype!r}")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise V2Error(f"{at}: shape must be [n] or [n, k] of non-negative integers, got {shape!r}")
    size = math.prod(shape)
    params = item.get("parameters") or {}
    if not isinstance(params, dict):
        raise V2Error(f"{at}: 'parameters' must be an object")
    nbytes = params.get("binary_data_size")
    if nbytes is not None:
        if type(nbytes) is not int or nbytes < 0 or offset + nbytes > len(binary):
            raise V2Error(f"{at}: binary_data_size {nbytes!r} is beyond the binary data sent")
        if "data" in item:
            raise V2Error(f"{at}: both 'data' and binary_data_size given")
        values = _from_binary(binary[offset : offset + nbytes], datatype, at)
        used = nbytes
    else:
        if "data" not in item:
            raise V2Error(f"{at}: no 'data'")
        values = _from_json(item["data"], datatype, at)
        used = 0
    if len(values) != size:
        raise V2Error(f"{at}: {len(values)} values for shape {shape} ({size} expected)")
    return Tensor(name, datatype, shape, values), used


def _from_binary(raw: bytes, datatype: str, at: str) -> list[Any]:
    if datatype == "BYTES":
        values: list[Any] = []
        pos = 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise V2Error(f"{at}: truncated BYTES element")
            (n,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + n > len(raw):
                raise V2Error(f"{at}: truncated BYTES element")
            try:
                values.append(raw[pos : pos + n].decode("utf-8"))
            except UnicodeDecodeError:
                raise V2Error(f"{at}: element {len(values)} is not UTF-8 text") from None
            pos += n
        return values
    dtype = np.dtype(_BINARY[datatype])
    if len(raw) % dtype.itemsize:
        raise V2Error(f"{at}: {len(raw)} bytes is not a whole number of {datatype} values")
    arr = np.frombuffer(raw, dtype=dtype)
    if datatype in _FLOATS:
        arr64 = arr.astype(np.float64)
        # NaN is how a float tensor says "missing": null to the validation, refused unless nullable.
        return [None if v != v else v for v in arr64.tolist()]
    return arr.tolist()


def _from_json(data: Any, datatype: str, at: str) -> list[Any]:
    values = _flatten(data, at)
    for j, v in enumerate(values):
        if v is None:
            continue
        if datatype == "BOOL":
            ok = type(v) is bool
        elif datatype == "BYTES":
            ok = type(v) is str
        elif datatype in _INTS:
            ok = type(v) is int
        else:
            ok = type(v) in (int, float)
        if not ok:
            raise V2Error(f"{at}: element {j} is {type(v).__name__} {str(v)[:40]!r}, not {datatype}")
    return values


def _flatten(data: Any, at: str) -> list[Any]:
    """Tensor data as the spec allows it: flat, or nested row-major lists."""
    if not isinstance(data, list):
        raise V2Error(f"{at}: 'data' must be a list")
    if not any(type(v) is list for v in data):
        return data
    out: list[Any] = []
    for row in data:
        if type(row) is list:
            if any(type(v) is list for v in row):
                raise V2Error(f"{at}: data nested deeper than the tensor's two dimensions")
            out.extend(row)
        else:
            out.append(row)
    return out


def to_columns(model: LoadedModel, tensors: Sequence[Tensor]) -> tuple[dict[str, Any], str | None]:
    """The tensors as a columnar body for the model's `RequestSchema`, and the 2-D tensor's name if one."""
    features = model.spec.features
    by_name = {f.name: f for f in features}
    if len(tensors) == 1 and len(tensors[0].shape) == 2 and tensors[0].shape[1] == len(features) > 1:
        t = tensors[0]
        if t.name not in by_name:  # one [n, p] tensor with the features in the model's order
            p = len(features)
            data = [t.values[i * p : (i + 1) * p] for i in range(t.rows)]
            return {"columns": [f.name for f in features], "data": data}, t.name
    rows = tensors[0].rows
    for t in tensors:
        if len(t.shape) == 2 and t.shape[1] != 1:
            raise V2Error(
                f"input {t.name!r}: shape {t.shape}: one tensor per feature takes [n] or [n, 1]; a single "
                f"[n, {len(features)}] tensor takes all features in the model's order"
            )
        if t.rows != rows:
            raise V2Error(f"input {t.name!r} has {t.rows} rows, input {tensors[0].name!r} has {rows}")
        f = by_name.get(t.name)
        if f is None:
            continue  # an unknown feature: the schema rejects or ignores it (serving.unknown_fields)
        kinds = _NUMERIC_TYPES if f.kind == "numeric" else _BOOL_TYPES if f.is_bool else _CATEGORY_TYPES
        if t.datatype not in kinds:
            raise V2Error(
                f"input {t.name!r}: datatype {t.datatype} does not fit this {_kind(f)} feature; "
                f"send {feature_datatype(f)}"
            )
    columns = [t.name for t in tensors]
    data = [list(row) for row in zip(*(t.values for t in tensors), strict=True)]
    return {"columns": columns, "data": data}, None


def _kind(feature: Any) -> str:
    return "numeric" if feature.kind == "numeric" else "bool" if feature.is_bool else "categorical"


def v2_message(exc: RequestRejected, matrix: str | None, names: Sequence[str]) -> str:
    """The validation's problems (located in the columnar body) told in terms of the input tensors."""
    if not exc.problems:
        return exc.message
    told = []
    for p in exc.problems:
        loc, msg = p.get("loc", ""), p.get("msg", "")
        m = _LOC.match(loc)
        c = _COLUMN.match(loc)
        if m and matrix is not None:
            row, name = m.groups()
            col = names.index(name) if name in names else "?"
            told.append(f"input {matrix!r}[{row}, {col}] (feature {name!r}) {msg}")
        elif m:
            row, name = m.groups()
            told.append(f"input {name!r}[{row}] {msg}")
        elif c:
            told.append(f"input {c.group(1)!r} {msg}")
        else:
            told.append(f"{loc} {msg}".strip())
    return f"{exc.message}: " + "; ".join(told)


# -- outputs --------------------------------------------------------------------------------------------------


def requested_outputs(doc: dict[str, Any], model: LoadedModel) -> list[tuple[str, bool]]:
    """(output name, as binary) in the order asked for; all outputs when none is named."""
    available = [PREDICT_OUTPUT] if model.regression else [PREDICT_OUTPUT, PROBA_OUTPUT]
    params = doc.get("parameters") or {}
    default_binary = bool(params.get("binary_data_output", False)) if isinstance(params, dict) else False
    asked = doc.get("outputs")
    if asked is None:
        return [(name, default_binary) for name in available]
    if not isinstance(asked, list):
        raise V2Error("'outputs' must be a list of {name} objects")
    out = []
    for i, o in enumerate(asked):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise V2Error(f"outputs[{i}] must be an object with a 'name'")
        if o["name"] not in available:
            raise V2Error(f"output {o['name']!r} is not an output of this model ({', '.join(available)})")
        oparams = o.get("parameters") or {}
        binary = oparams.get("binary_data", default_binary) if isinstance(oparams, dict) else default_binary
        out.append((o["name"], bool(binary)))
    return out


def _encode_binary(values: Any, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for v in values:
            b = str(v).encode("utf-8")
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    return np.asarray(values, dtype=_BINARY[datatype]).tobytes()


def render_outputs(
    doc: dict[str, Any],
    model: LoadedModel,
    arm: str,
    request_id: str,
    name: str,
    labels: list[Any],
    proba: Any,
    outputs: list[tuple[str, bool]],
) -> tuple[bytes, int | None]:
    """The inference response body, and the JSON header's length when binary outputs follow it."""
    n = len(labels)
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for out_name, binary in outputs:
        if out_name == PREDICT_OUTPUT:
            datatype = _label_datatype(model)
            values: Any = [str(v) for v in labels] if datatype == "BYTES" else labels
            shape = [n]
            params: dict[str, Any] = {}
        else:
            datatype, values, shape = "FP64", np.asarray(proba, dtype=np.float64), [n, len(model.classes)]
            # Parameter values are scalars in the protocol: the class order as a JSON string.
            params = {"classes": orjson.dumps(list(model.class_keys)).decode()}
        tensor: dict[str, Any] = {"name": out_name, "datatype": datatype, "shape": shape}
        if binary:
            blob = _encode_binary(values.reshape(-1) if isinstance(values, np.ndarray) else values, datatype)
            blobs.append(blob)
            params = {**params, "binary_data_size": len(blob)}
        else:
            tensor["data"] = values.reshape(-1) if isinstance(values, np.ndarray) else values
        if params:
            tensor["parameters"] = params
        tensors.append(tensor)
    response: dict[str, Any] = {
        "model_name": name,
        "model_version": model.version,
        "outputs": tensors,
        "parameters": {"request_id": request_id, "arm": arm},
    }
    if "id" in doc:
        response["id"] = doc["id"]
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


# -- routes ---------------------------------------------------------------------------------------------------


def _error(message: str, status: int) -> Response:
    return Response(orjson.dumps({"error": message}), status, media_type="application/json")


def add_routes(app: FastAPI, service: Service) -> None:
    """The V2 endpoints on `app` (FastAPI routes: the middleware gives them request ids and counted 500s)."""
    name = service.model_name
    err = answer("the V2 error format", "V2Error")
    not_served: dict[int | str, dict[str, Any]] = {
        "404": answer("no such model or version served here", "V2Error")
    }
    internal: dict[int | str, dict[str, Any]] = {"500": answer("internal error", "InternalError")}

    def served(model_name: str, version: str | None) -> tuple[ServingState, LoadedModel]:
        if model_name != name:
            raise V2Error(f"model {model_name!r} is not served here (this server serves {name!r})", 404)
        state = service.pool.state
        if state is None:
            raise V2Error("no model loaded yet: see /v2/health/ready", 503)
        if version is None:
            return state, state.champion
        arm = state.arm_of(version)
        if arm is None:
            served = ", ".join(m.version for m in state.models())
            raise V2Error(f"version {version!r} of {name!r} is not served now (served: {served})", 404)
        return state, state.champion if arm == "champion" else state.challenger  # type: ignore[return-value]

    @app.get("/v2", summary="V2 server metadata", responses={"200": answer("server", "V2Server"), **internal})
    async def server_metadata() -> Response:
        from driftloop import __version__

        return _json({"name": "driftloop", "version": __version__, "extensions": ["binary_tensor_data"]})

    @app.get(
        "/v2/health/live",
        summary="V2 liveness (clients read the status: 200)",
        responses={"200": answer("alive", "V2Live"), **internal},
    )
    async def live() -> Response:
        return _json({"live": True})

    @app.get(
        "/v2/health/ready",
        summary="V2 readiness (clients read the status: 200 when a model is loaded, else 503)",
        responses={
            "200": answer("ready", "V2Ready"),
            "503": answer("no model loaded yet", "V2Ready"),
            **internal,
        },
    )
    async def ready() -> Response:
        ok = service.pool.state is not None
        return _json({"ready": ok}, 200 if ok else 503)

    async def metadata(model_name: str, version: str | None) -> Response:
        try:
            state, model = served(model_name, version)
        except V2Error as exc:
            return _error(exc.message, exc.status)
        return _json(model_metadata(name, state, model))

    async def model_ready(model_name: str, version: str | None) -> Response:
        try:
            served(model_name, version)
        except V2Error as exc:
            return _error(exc.message, exc.status)
        return _json({"name": model_name, "ready": True})

    def read_responses(description: str, schema: str) -> dict[int | str, dict[str, Any]]:
        return {"200": answer(description, schema), **not_served, "503": err, **internal}

    meta_responses = read_responses("inputs and outputs of the model", "V2ModelMetadata")
    ready_responses = read_responses("the model (version) is served and loaded", "V2ModelReady")
    infer_responses: dict[int | str, dict[str, Any]] = {
        "200": answer("output tensors (binary ones follow the JSON header)", "V2InferenceResponse"),
        "400": err,
        **not_served,
        "413": err,
        "503": err,
        "500": answer("the model failed (its request_id names it in the log)", "V2Error"),
    }
    infer_body = {"requestBody": {"required": True, "content": {"application/json": {"schema": V2_REQUEST}}}}

    @app.get("/v2/models/{model_name}", summary="V2 model metadata", responses=meta_responses)
    async def model_metadata_route(model_name: str) -> Response:
        return await metadata(model_name, None)

    @app.get(
        "/v2/models/{model_name}/versions/{version}",
        summary="V2 model metadata of a served version",
        responses=meta_responses,
    )
    async def version_metadata_route(model_name: str, version: str) -> Response:
        return await metadata(model_name, version)

    @app.get("/v2/models/{model_name}/ready", summary="V2 model readiness", responses=ready_responses)
    async def model_ready_route(model_name: str) -> Response:
        return await model_ready(model_name, None)

    @app.get(
        "/v2/models/{model_name}/versions/{version}/ready",
        summary="V2 readiness of a served version",
        responses=ready_responses,
    )
    async def version_ready_route(model_name: str, version: str) -> Response:
        return await model_ready(model_name, version)

    @app.post(
        "/v2/models/{model_name}/infer",
        summary="V2 inference, routed like /v1/predict",
        responses=infer_responses,
        openapi_extra=infer_body,
    )
    async def infer_route(model_name: str, request: Request) -> Response:
        return await infer(request, model_name, None)

    @app.post(
        "/v2/models/{model_name}/versions/{version}/infer",
        summary="V2 inference by a served version (no routing)",
        responses=infer_responses,
        openapi_extra=infer_body,
    )
    async def version_infer_route(model_name: str, version: str, request: Request) -> Response:
        return await infer(request, model_name, version)

    async def infer(request: Request, model_name: str, version: str | None) -> Response:
        t0 = time.perf_counter()
        ctx = getattr(request.state, "ctx", None) or request_context(
            request.headers.get("x-request-id"), request.headers.get("traceparent")
        )
        try:
            state, _ = served(model_name, version)
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > service.max_body:
                raise V2Error(f"body of {length} bytes is over the limit of {service.max_body}", 413)
            doc, tensors = read_inputs(
                await service.read_body(request.receive), request.headers.get(HEADER_LENGTH)
            )
        except RequestRejected as exc:
            service.metrics.observe_request("", "", exc.status, None)
            return _error(v2_message(exc, None, ()), exc.status)
        params = doc.get("parameters")
        key = params.get("routing_key") if isinstance(params, dict) else None
        routing_key = key if isinstance(key, str) and key else request.headers.get("x-routing-key")
        matrix: list[str | None] = [None]
        names: list[str] = []
        header_length: list[int | None] = [None]

        def parse(model: LoadedModel) -> ParsedRequest:
            body, matrix[0] = to_columns(model, tensors)
            names[:] = [f.name for f in model.spec.features]
            return model.schema.parse(body)

        def render(
            model: LoadedModel, arm: str, request_id: str, parsed: Any, labels: list[Any], proba: Any
        ) -> bytes:
            outputs = requested_outputs(doc, model)
            payload, header_length[0] = render_outputs(
                doc, model, arm, request_id, name, labels, proba, outputs
            )
            return payload

        def reject(exc: RequestRejected) -> tuple[int, bytes]:
            status = 400 if exc.status == 422 else exc.status  # V2 has no 422: a bad tensor is a 400
            return status, orjson.dumps({"error": v2_message(exc, matrix[0], names)})

        a = await service.score(
            ctx, state, parse, routing_key, t0, version=version, render=render, reject=reject
        )
        headers = {"x-model-version": a.model_version} if a.model_version else {}
        media = "application/json"
        if a.status == 200 and header_length[0] is not None:
            headers["inference-header-content-length"] = str(header_length[0])
            media = _OCTET
        if a.status == 500:  # the V2 error format, with the request id to look the failure up by
            detail = orjson.loads(a.payload)
            body = orjson.dumps({"error": detail["detail"], "request_id": detail["request_id"]})
        else:
            body = a.payload
        response = Response(body, a.status, headers=headers, media_type=media)
        if a.after is not None:  # shadow scoring once the answer has left, as on /v1/predict
            from starlette.background import BackgroundTask

            response.background = BackgroundTask(a.after)
        return response


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json")


_TENSOR_IN = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string", "description": "a feature's name, or any name for one [n, p] tensor"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 2},
        "datatype": {"type": "string", "enum": ["BYTES", *_BINARY]},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
V2_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {
            "type": "object",
            "properties": {"routing_key": {"type": "string"}, "binary_data_output": {"type": "boolean"}},
        },
        "inputs": {"type": "array", "items": _TENSOR_IN, "minItems": 1},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "enum": [PREDICT_OUTPUT, PROBA_OUTPUT]},
                    "parameters": {"type": "object"},
                },
            },
        },
    },
}
