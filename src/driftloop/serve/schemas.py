"""JSON schemas of every answer the service gives: the one place the OpenAPI document takes them from.

The routes build their answers as plain dicts (orjson, no response models: the predict path skips FastAPI
altogether), so the shapes are written out here by hand. The schemas are closed (`additionalProperties:
false`) so that a field added to an answer and not documented here fails the tests that validate real
answers against /openapi.json, and so that generated clients get exact types.
"""

from __future__ import annotations

from typing import Any

from driftloop.serve.router import CHALLENGER, CHAMPION, STRATEGIES

__all__ = ["RESPONSE_SCHEMAS", "answer", "ref"]

_STR = {"type": "string"}
_OPT_STR = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
# A class label or a regression value as the model gives it (labels keep their JSON type: 6, "red", true).
_LABEL = {"type": ["string", "number", "boolean"]}
_ARM = {"type": "string", "enum": [CHAMPION, CHALLENGER], "description": "which model answered"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _closed(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
        **extra,
    }


_PROBLEMS = {
    "type": "array",
    "items": _closed({"loc": _STR, "msg": _STR}),
    "description": "one entry per problem, naming the field (loc) and what is wrong (msg)",
}
_ANSWERED_BY = {"request_id": _STR, "model_version": _STR, "arm": _ARM}
_SERVING = {
    "model_name": _STR,
    "revision": {"type": "integer"},
    "strategy": {"type": "string", "enum": list(STRATEGIES)},
    "challenger_weight": {"type": "number", "minimum": 0, "maximum": 1},
    "champion": _STR,
    "challenger": _OPT_STR,
    "configured_challenger": {**_OPT_STR, "description": "the deployment's challenger, loaded or not"},
    "compiled": {
        "type": "object",
        "additionalProperties": {"type": "boolean"},
        "description": "model version -> served by the compiled predictor",
    },
    "updated_at": _TIME,
    "reason": _STR,
    "actor": _STR,
}
_STORE = _closed(
    {
        "reachable": {"type": "boolean"},
        "error": _OPT_STR,
        "last_ok_age_seconds": {"type": ["number", "null"], "minimum": 0},
    }
)
_READINESS = {
    "ready": {"type": "boolean"},
    "status": {"type": "string", "enum": ["ok", "degraded", "not_ready"]},
    "model_name": _STR,
    "store": _STORE,
    "last_swap_error": _OPT_STR,
    "deployment": ref("ServingDeployment"),
}
_READINESS_REQUIRED = ["ready", "status", "model_name", "store", "last_swap_error"]

#: Component name -> schema. Added to /openapi.json's components by routes.install_openapi.
RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Prediction": _closed(
        {
            **_ANSWERED_BY,
            "prediction": _LABEL,
            "probabilities": {
                "type": "object",
                "additionalProperties": {"type": "number"},
                "description": "class label (as a string) -> probability; classifiers only",
            },
        },
        required=[*_ANSWERED_BY, "prediction"],
        description="The answer to one record.",
    ),
    "Predictions": _closed(
        {
            **_ANSWERED_BY,
            "predictions": {"type": "array", "items": _LABEL},
            "classes": {"type": "array", "items": _LABEL, "description": "classifiers only"},
            "probabilities": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "number"}},
                "description": "one row per record, one column per entry of `classes`; classifiers only",
            },
        },
        required=[*_ANSWERED_BY, "predictions"],
        description="The answer to a list of records or columnar data; row i of the log is `request_id:i`.",
    ),
    "PredictResponse": {"oneOf": [ref("Prediction"), ref("Predictions")]},
    "ModelFailure": _closed(
        {"detail": _STR, "request_id": _STR, "model_version": _STR, "arm": _STR},
        description="The model failed to answer; the server's log has the traceback under request_id.",
    ),
    "FeedbackAccepted": _closed({"accepted": {"type": "integer", "minimum": 1}}),
    "Health": _closed({"status": {"type": "string", "enum": ["ok"]}}),
    "Readiness": _closed(_READINESS, required=_READINESS_REQUIRED),
    "ServingDeployment": _closed(_SERVING, description="What this worker serves now."),
    "CurrentDeployment": _closed({**_SERVING, "store": _STORE}),
    "NotReady": _closed({"detail": _STR, **_READINESS}, required=["detail", *_READINESS_REQUIRED]),
    "Deployment": _closed(
        {
            "model_name": _STR,
            "revision": {"type": "integer"},
            "champion": _OPT_STR,
            "challenger": _OPT_STR,
            "strategy": {"type": "string", "enum": list(STRATEGIES)},
            "challenger_weight": {"type": "number", "minimum": 0, "maximum": 1},
            "rollout_step": {"type": ["integer", "null"]},
            "step_started_at": _TIME,
            "updated_at": _TIME,
            "reason": _STR,
            "actor": _STR,
        },
        description="The deployment row after the change (its revision counts changes).",
    ),
    "Error": _closed(
        {
            "detail": _STR,
            "errors": _PROBLEMS,
        },
        required=["detail"],
    ),
    "InvocationsResponse": _closed(
        {
            "predictions": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"type": "number", "description": "regression: the predicted value"},
                        {
                            "type": "object",
                            "properties": {"prediction": _LABEL},
                            "patternProperties": {"^proba_": {"type": "number"}},
                            "required": ["prediction"],
                            "additionalProperties": False,
                            "description": "classifier: the class and `proba_<class>` per class",
                        },
                    ]
                },
            }
        },
        description="MLflow's answer: one entry per row, as `mlflow models serve` gives for the model.",
    ),
    "InvocationsError": _closed(
        {
            "error_code": _STR,
            "message": {"type": "string", "description": "MLflow's field: the problem(s) in one line"},
            "detail": _STR,
            "errors": _PROBLEMS,
        },
        required=["error_code", "message", "detail"],
    ),
    "Version": _closed({"version": _STR, "model_name": _STR, "champion": _OPT_STR}),
    "InternalError": _closed(
        {"detail": _STR, "request_id": _STR},
        description="A failure inside the server; its log has the traceback under request_id.",
    ),
}

# -- Open Inference Protocol (V2): serve/v2.py ------------------------------------------------------------------
_V2_DATATYPE = {
    "type": "string",
    "enum": ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]
    + ["FP16", "FP32", "FP64", "BYTES"],
}
_V2_TENSOR_META = _closed(
    {"name": _STR, "datatype": _V2_DATATYPE, "shape": {"type": "array", "items": {"type": "integer"}}}
)
_V2_PARAM = {"type": ["string", "number", "boolean"]}
RESPONSE_SCHEMAS |= {
    "V2Error": _closed({"error": _STR, "request_id": _STR}, required=["error"], description="A V2 error."),
    "V2Live": _closed({"live": {"type": "boolean"}}),
    "V2Ready": _closed({"ready": {"type": "boolean"}}),
    "V2ModelReady": _closed({"name": _STR, "ready": {"type": "boolean"}}),
    "V2Server": _closed({"name": _STR, "version": _STR, "extensions": {"type": "array", "items": _STR}}),
    "V2ModelMetadata": _closed(
        {
            "name": _STR,
            "versions": {"type": "array", "items": _STR, "description": "the versions served now"},
            "platform": _STR,
            "inputs": {"type": "array", "items": _V2_TENSOR_META, "description": "one per feature"},
            "outputs": {"type": "array", "items": _V2_TENSOR_META},
        }
    ),
    "V2InferenceResponse": _closed(
        {
            "model_name": _STR,
            "model_version": _STR,
            "id": {**_STR, "description": "the request's `id`, when it sent one"},
            "parameters": _closed({"request_id": _STR, "arm": _ARM}),
            "outputs": {
                "type": "array",
                "items": _closed(
                    {
                        "name": {"type": "string", "enum": ["predict", "predict_proba"]},
                        "datatype": _V2_DATATYPE,
                        "shape": {"type": "array", "items": {"type": "integer"}},
                        "parameters": {
                            "type": "object",
                            "additionalProperties": _V2_PARAM,
                            "description": "`classes` (predict_proba's column order, as a JSON string); "
                            "`binary_data_size` when the data follows the JSON header in binary",
                        },
                        "data": {"type": "array", "items": {"type": ["number", "string", "boolean"]}},
                    },
                    required=["name", "datatype", "shape"],
                ),
            },
        },
        required=["model_name", "model_version", "parameters", "outputs"],
    ),
}


def answer(description: str, schema: str = "Error") -> dict[str, Any]:
    """An OpenAPI response object: `description`, with a JSON body following the component `schema`."""
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}
