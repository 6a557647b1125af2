"""MLflow's scoring protocol (`POST /invocations`) on driftloop's own predict path.

MLflow clients send one of four JSON wrappers or a CSV table:

    {"dataframe_split": {"columns": [...], "data": [[...], ...]}}     pandas "split" (optional "index")
    {"dataframe_records": [{...}, ...]}                                pandas "records"
    {"instances": [{...}, ...]}  or  {"instances": {"col": [...]}}     TF-serving rows or columns
    {"inputs": {"col": [...]}}   or  {"inputs": [{...}, ...]}          TF-serving columns or rows
    text/csv with a header line                                        what `DataFrame.to_csv(index=False)` writes

`Invocations.decode` turns each into a shape `validation.RequestSchema` already parses (columnar or a list
of records), so validation, routing, micro-batching, the prediction log and the metrics are those of
/v1/predict. `adapt` does what only the served model's spec can do: CSV cells are text, so a numeric
feature's cells become numbers (an empty cell is missing) and anything else is left for validation to name.
The answer is `{"predictions": ...}` exactly as MLflow's scoring server gives it for the same registered
model (its `python_function` flavor, `stores/driftloop_pyfunc.py`): for a classifier one record per row with
`prediction` and `proba_<class>`, for regression the values. A top-level `routing_key` beside the format key
is driftloop's: the sticky A/B key, as on /v1/predict; MLflow's `params` are accepted and unused (the model
takes none).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import numpy as np
import orjson

from driftloop.serve.validation import ROUTING_FIELD, RequestRejected, RequestSchema, decode_json
from driftloop.stores.driftloop_pyfunc import PREDICTION_COLUMN, proba_column

__all__ = ["FORMATS", "INVOCATIONS_PATH", "MEDIA_TYPES", "Invocations", "error_payload"]

INVOCATIONS_PATH = "/invocations"
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
CSV = "text/csv"
MEDIA_TYPES = ("application/json", CSV)
_ALLOWED_BESIDE = frozenset((ROUTING_FIELD, "params"))
_CSV_MARK = "__driftloop_csv__"
"""Marks a columnar body that came from CSV (cells are text), for `adapt`. Not a JSON key anyone can send:
JSON bodies are rebuilt by `decode`, which keeps only `columns` and `data`."""


class Invocations:
    """The /invocations protocol: request bodies in, the MLflow answer out (one instance per service)."""

    def decode(self, raw: bytes, media: str) -> Any:
        """A raw body (JSON or CSV, as `media` says) -> a body `RequestSchema.parse` takes, routing key kept."""
        if media == CSV:
            return _from_csv(raw)
        doc = decode_json(raw)
        if not isinstance(doc, dict):
            raise _format_error(f"the body must be a JSON object with one of the keys {', '.join(FORMATS)}")
        keys = [k for k in doc if k in FORMATS]
        others = sorted(set(doc) - set(FORMATS) - _ALLOWED_BESIDE)
        if len(keys) != 1 or others:
            found = ", ".join(sorted(doc)) or "none"
            raise _format_error(f"expected exactly one of the keys {', '.join(FORMATS)}; found: {found}")
        fmt = keys[0]
        body = _convert(fmt, doc[fmt])
        if ROUTING_FIELD in doc:
            body[ROUTING_FIELD] = doc[ROUTING_FIELD]
        return body

    @staticmethod
    def adapt(body: dict[str, Any], schema: RequestSchema) -> dict[str, Any]:
        """The body for this model: CSV text cells of its numeric features as numbers."""
        if _CSV_MARK not in body:
            return body
        numeric = {name for name, kind in zip(schema.names, schema.kinds, strict=True) if kind == "numeric"}
        positions = [j for j, c in enumerate(body["columns"]) if c in numeric]
        data = [list(row) for row in body["data"]]
        for row in data:
            for j in positions:
                if j < len(row):
                    row[j] = _number(row[j])
        return {"columns": body["columns"], "data": data}

    @staticmethod
    def render(
        model: Any, arm: str, request_id: str, parsed: Any, labels: list[Any], proba: np.ndarray | None
    ) -> bytes:
        """`{"predictions": ...}` as MLflow's server writes the pyfunc model's answer (pandas "records")."""
        if proba is None:
            return orjson.dumps({"predictions": labels}, option=orjson.OPT_SERIALIZE_NUMPY)
        names = [proba_column(c) for c in model.classes]
        rows = [
            {PREDICTION_COLUMN: label, **dict(zip(names, row, strict=True))}
            for label, row in zip(labels, proba.tolist(), strict=True)
        ]
        return orjson.dumps({"predictions": rows}, option=orjson.OPT_SERIALIZE_NUMPY)

    @staticmethod
    def reject(exc: RequestRejected) -> tuple[int, bytes]:
        return exc.status, orjson.dumps(error_payload(exc))


def error_payload(exc: RequestRejected) -> dict[str, Any]:
    """driftloop's error body plus MLflow's `error_code` and `message`, which MLflow clients print."""
    message = exc.message
    if exc.problems:
        message += ": " + "; ".join(f"{p['loc']}: {p['msg']}" for p in exc.problems)
    code = "BAD_REQUEST" if exc.status in (400, 422) else "INVALID_PARAMETER_VALUE"
    if exc.status == 503:
        code = "TEMPORARILY_UNAVAILABLE"
    return {"error_code": code, "message": message, **exc.to_dict()}


def _convert(fmt: str, value: Any) -> dict[str, Any]:
    if fmt == "dataframe_split":
        if not isinstance(value, dict):
            raise _invalid(fmt, "must be an object with columns and data")
        extra = sorted(set(value) - {"columns", "data", "index"})
        if extra:
            raise _invalid(f"{fmt}.{extra[0]}", "is not a key of the split format (columns, data, index)")
        return {"columns": value.get("columns"), "data": value.get("data")}
    if isinstance(value, list):
        if value and not all(isinstance(r, dict) for r in value):
            raise _invalid(fmt, "must be a list of records (objects of feature values)")
        return {"records": value}
    if fmt != "dataframe_records" and isinstance(value, dict):
        return _columns(fmt, value)
    raise _invalid(
        fmt, "must be a list of records" + (" or an object of columns" if fmt != "dataframe_records" else "")
    )


def _columns(fmt: str, value: dict[str, Any]) -> dict[str, Any]:
    """{"col": [v, ...], ...} -> columnar; every column a list of the same length."""
    lengths = set()
    for name, col in value.items():
        if not isinstance(col, list):
            raise _invalid(f"{fmt}.{name}", "must be a list of values (one per row)")
        lengths.add(len(col))
    if len(lengths) > 1:
        raise _invalid(fmt, f"the columns have different lengths ({', '.join(map(str, sorted(lengths)))})")
    return {"columns": list(value), "data": [list(row) for row in zip(*value.values(), strict=True)]}


def _from_csv(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _format_error(f"the CSV body is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise _format_error(f"malformed CSV: {exc}") from None
    rows = [r for r in rows if r]  # blank lines, as pandas skips them
    if not rows:
        raise _format_error("the CSV body has no header line")
    header, data = rows[0], rows[1:]
    for i, row in enumerate(data, start=2):
        if len(row) != len(header):
            raise _format_error(f"malformed CSV: line {i} has {len(row)} fields, the header {len(header)}")
    cells = [[None if c == "" else c for c in row] for row in data]
    return {"columns": header, "data": cells, _CSV_MARK: True}


def _number(cell: Any) -> Any:
    """A CSV cell of a numeric feature: a number when it reads as a finite one or NaN (pandas reads "nan" as
    missing too); anything else as it is, for validation to name."""
    if not isinstance(cell, str):
        return cell
    try:
        value = float(cell)
    except ValueError:
        return cell
    if math.isnan(value):
        return None
    return value if math.isfinite(value) else cell


def _invalid(loc: str, msg: str) -> RequestRejected:
    return RequestRejected(422, "invalid request", [{"loc": loc, "msg": msg}])


def _format_error(message: str) -> RequestRejected:
    return RequestRejected(400, message)
