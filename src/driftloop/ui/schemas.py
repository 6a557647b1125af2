"""JSON schemas of the loop page's routes (/ui/api/...), published inline in the OpenAPI document.

The answers are plain dicts (see ui/api.py); their top levels are closed so that a field added there and not
here fails the test that validates real answers against /openapi.json. Stored documents that other stages
own (a gate report, an event's evidence, a monitoring pass's performance groups) stay open objects.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMAS", "ui_answer"]

_STR = {"type": "string"}
_OPT_STR = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_NUM = {"type": ["number", "null"]}
_INT = {"type": "integer"}
_OBJ = {"type": "object"}
_OPT_OBJ = {"type": ["object", "null"]}


def _closed(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **extra,
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_DEPLOYMENT = _closed(
    {
        "model_name": _STR,
        "revision": _INT,
        "champion": _OPT_STR,
        "challenger": _OPT_STR,
        "strategy": _STR,
        "challenger_weight": {"type": "number"},
        "rollout_step": {"type": ["integer", "null"]},
        "step_started_at": _TIME,
        "updated_at": _TIME,
        "reason": _STR,
        "actor": _STR,
    }
)
_VERSION = _closed(
    {
        "version": _STR,
        "run_id": _STR,
        "data_version": _OPT_STR,
        "family": _OPT_STR,
        "metric": _OPT_STR,
        "cv": _NUM,
        "gate": _OPT_STR,
    }
)
_ARM = _closed(
    {
        "version": _STR,
        "requests": _INT,
        "errors": _INT,
        "error_rate": _NUM,
        "p95_latency_ms": _NUM,
        "labeled": _INT,
        "metric": _NUM,
    }
)
_CANARY = _closed(
    {
        "step": _INT,
        "steps": {"type": "array", "items": {"type": "number"}},
        "weight": {"type": "number"},
        "step_started_at": _TIME,
        "dwell_seconds": {"type": "number"},
        "decision": _closed(
            {"action": {"type": "string", "enum": ["hold", "advance", "promote", "rollback"]}, "reason": _STR}
        ),
        "arms": _closed({"champion": _ARM, "challenger": _ARM}),
        "rules": _OBJ,
    },
    description="The current canary step, each arm's evidence since it began, and the controller's decision.",
)
_FEATURE = _closed(
    {
        "method": _OPT_STR,
        "score": _NUM,
        "threshold": _NUM,
        "score_kind": _OPT_STR,
        "drift": {"type": ["boolean", "null"]},
    }
)
_WINDOW = _closed(
    {
        "id": _INT,
        "ts": _TIME,
        "model_version": _OPT_STR,
        "window_start": _TIME,
        "window_end": _TIME,
        "rows": _INT,
        "status": _OPT_STR,
        "dataset_drift": {"type": ["boolean", "null"]},
        "drift_share": _NUM,
        "drift_share_threshold": _NUM,
        "features": {"type": "object", "additionalProperties": _FEATURE},
        "metric": {**_OPT_STR, "description": "the project's metric, the one the loop judges by"},
        "performance": {"type": "array", "items": _OBJ, "description": "per version and arm, with CIs"},
        "estimated": {
            "type": "array",
            "items": _OBJ,
            "description": "per version and arm, estimated without labels, with 95 % bands",
        },
        "alerts": {"type": "array"},
    }
)
_MINUTE = _closed(
    {
        "minute": {"type": "string", "format": "date-time"},
        "rows_per_second": {"type": "number"},
        "error_rate": _NUM,
        "answered": _INT,
        "errors": _INT,
        "p99_latency_ms": _NUM,
    }
)
_EVENT = _closed(
    {
        "id": _INT,
        "ts": {"type": "string", "format": "date-time"},
        "model_name": _STR,
        "kind": _STR,
        "message": _STR,
        "model_version": _OPT_STR,
        "run_id": _OPT_STR,
        "data_version": _OPT_STR,
        "evidence": _OBJ,
    }
)
_CHANGE = _closed(
    {
        "revision": _INT,
        "at": _TIME,
        "champion": _OPT_STR,
        "champion_share": {"type": "number"},
        "challenger": _OPT_STR,
        "challenger_share": {"type": "number"},
        "strategy": _STR,
        "reason": _STR,
        "actor": _STR,
    }
)
_DATA = {
    "type": "object",
    "properties": {
        "version": _STR,
        "digest": _STR,
        "source": _STR,
        "rows": _INT,
        "parents": {"type": "array", "items": _STR},
    },
    "required": ["version"],
    "additionalProperties": False,
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Now": _closed(
        {
            "model_name": _STR,
            "deployment": _DEPLOYMENT,
            "champion": _nullable(_VERSION),
            "challenger": _nullable(_VERSION),
            "canary": _nullable(_CANARY),
            "pool": {
                **_OPT_OBJ,
                "description": "the serving worker's /readyz answer; null under `driftloop ui`",
            },
            "now": {"type": "string", "format": "date-time"},
            "admin": {"type": "boolean", "description": "this origin serves the admin API"},
        }
    ),
    "History": _closed({"changes": {"type": "array", "items": _CHANGE}}),
    "Monitoring": _closed({"windows": {"type": "array", "items": _WINDOW}}),
    "Traffic": _closed({"minutes": _INT, "series": {"type": "array", "items": _MINUTE}}),
    "Events": _closed(
        {"events": {"type": "array", "items": _EVENT}, "alerts": {"type": "array", "items": _OBJ}}
    ),
    "VersionLineage": _closed(
        {
            "version": _STR,
            "run_id": _STR,
            "role": _OPT_STR,
            "aliases": {"type": "array", "items": _STR},
            "tags": {"type": "object", "additionalProperties": _STR},
            "data": _DATA,
            "gate": _OPT_OBJ,
        }
    ),
    "Explanation": _closed(
        {
            "request_id": _STR,
            "outcome": {"type": "string", "enum": ["answered", "failed"]},
            "served": _OBJ,
            "model": _OBJ,
            "data": _DATA,
            "feedback": _OPT_OBJ,
        }
    ),
}
_DETAIL = {
    "description": "",
    "content": {"application/json": {"schema": _closed({"detail": _STR})}},
}


def ui_answer(name: str, *, not_found: bool = False) -> dict[str | int, dict[str, Any]]:
    """OpenAPI responses of one /ui/api route: 200 with `name`'s schema (inline), and its 4xx answers."""
    out: dict[str | int, dict[str, Any]] = {
        "200": {"description": name, "content": {"application/json": {"schema": SCHEMAS[name]}}}
    }
    if not_found:
        out["404"] = {**_DETAIL, "description": "not in the stores"}
        out["422"] = {**_DETAIL, "description": "a malformed path or query parameter"}
    return out
