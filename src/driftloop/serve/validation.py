"""Request bodies checked against the model's spec and turned into a schema-ordered float matrix.

Accepted shapes for `POST /v1/predict`:

    {"alcohol": 9.4, ...}                                 one record (optional "routing_key")
    [{"alcohol": 9.4, ...}, ...]                          a list of records
    {"records": [{...}, ...], "routing_key": "u-1"}      a list of records with a routing key
    {"columns": ["alcohol", ...], "data": [[9.4, ...]]}   columnar (pandas "split"), optional "routing_key"

Every feature of the spec must be present; null is accepted only for features the spec marks nullable.
Numbers must be finite JSON numbers (not strings, not booleans); categorical values are strings (integers
are accepted and read as their decimal string). Fields the model does not know are rejected or ignored
(config `serving.unknown_fields`). Each problem is reported with its location, and no pandas is involved:
the hot path is lists -> numpy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from driftloop.stores.models import ModelSpec

ROUTING_FIELD = "routing_key"
MAX_REPORTED_PROBLEMS = 50
_MISSING = object()
_NUMBER_TYPES = (int, float)
_FLOAT_INT = frozenset((int, float))


class RequestRejected(Exception):
    """A client mistake: HTTP `status` with a message and, for 422, one problem per field."""

    def __init__(self, status: int, message: str, problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"detail": self.message}
        if self.problems:
            out["errors"] = self.problems
        return out


def decode_json(body: bytes) -> Any:
    """orjson first (fast); the standard library second, only to tell NaN/Infinity apart from garbage.

    JSON has no NaN or Infinity, but many clients (Python's json, pandas) emit them; those bodies parse here
    so that validation can answer 422 naming the field instead of a bare 400.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        first_error = str(exc)
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise RequestRejected(400, f"malformed JSON: {first_error}") from None


@dataclass
class ParsedRequest:
    """A validated request: `X` is (n, p) float64 in spec order; `columns` are the features as received."""

    X: np.ndarray
    columns: list[Any]
    batch: bool
    routing_key: str | None

    @property
    def n_rows(self) -> int:
        return self.X.shape[0]


class RequestSchema:
    """Validation and encoding for one model spec. Built once per loaded model; `parse` runs per request."""

    def __init__(self, spec: ModelSpec, *, unknown_fields: str = "reject", max_rows: int = 10_000) -> None:
        self.spec = spec
        self.names = tuple(spec.feature_names)
        self.kinds = tuple(f.kind for f in spec.features)
        self.nullable = tuple(f.nullable for f in spec.features)
        self.name_set = frozenset(self.names)
        self.reject_unknown = unknown_fields == "reject"
        self.all_numeric = all(k == "numeric" for k in self.kinds)
        # A C-level "pick these keys in this order": one call per record instead of one per value.
        self._getter = itemgetter(*self.names) if len(self.names) > 1 else lambda rec: (rec[self.names[0]],)
        self.max_rows = max_rows
        self.codes: list[dict[str, float] | None] = [
            {str(c): float(i) for i, c in enumerate(f.categories)} if f.kind == "categorical" else None
            for f in spec.features
        ]

    # -- shapes ---------------------------------------------------------------------------------------------

    def parse(self, body: Any) -> ParsedRequest:
        routing_key = None
        if isinstance(body, list):
            return self._records(body, "", None)
        if not isinstance(body, dict):
            raise RequestRejected(
                422, "the body must be a JSON object (one record), a list of records, or columnar data"
            )
        if ROUTING_FIELD in body and ROUTING_FIELD not in self.name_set:
            body = dict(body)
            routing_key = _routing_key(body.pop(ROUTING_FIELD))
        if "columns" in body and "columns" not in self.name_set:
            return self._columnar(body, routing_key)
        if "records" in body and "records" not in self.name_set:
            extra = sorted(set(body) - {"records"})
            if extra:
                raise RequestRejected(
                    422, "invalid request", [{"loc": k, "msg": "is not a known key"} for k in extra]
                )
            return self._records(body["records"], "records", routing_key)
        return self._rows([body], batch=False, routing_key=routing_key, where=lambda i: "")

    def _records(self, records: Any, loc: str, routing_key: str | None) -> ParsedRequest:
        if not isinstance(records, list):
            raise RequestRejected(422, "invalid request", [{"loc": loc, "msg": "must be a list of records"}])
        prefix = f"{loc}" if loc else ""
        return self._rows(records, batch=True, routing_key=routing_key, where=lambda i: f"{prefix}[{i}]")

    def _rows(self, records: list[Any], *, batch: bool, routing_key: str | None, where: Any) -> ParsedRequest:
        self._check_count(len(records))
        if self.all_numeric:
            p, getter = len(self.names), self._getter
            try:
                rows = [getter(rec) for rec in records if len(rec) == p]
            except (KeyError, TypeError):
                rows = None
            if rows is not None and len(rows) == len(records):
                fast = self._fast(rows, batch, routing_key)
                if fast is not None:
                    return fast
        problems: list[dict[str, str]] = []
        for i, rec in enumerate(records):
            if type(rec) is not dict:
                problems.append({"loc": where(i) or "body", "msg": "must be an object of feature values"})
            elif len(rec) != len(self.names) or not self.name_set.issuperset(rec):
                extra = [k for k in rec if k not in self.name_set]
                if extra and self.reject_unknown:
                    for k in extra:
                        problems.append({"loc": _join(where(i), k), "msg": "is not a feature of the model"})
            if len(problems) >= MAX_REPORTED_PROBLEMS:
                break
        if any(type(rec) is not dict for rec in records):
            raise RequestRejected(422, "invalid request", problems[:MAX_REPORTED_PROBLEMS])
        raw = [[rec.get(name, _MISSING) for rec in records] for name in self.names]
        return self._encode(raw, batch, routing_key, lambda i, name: _join(where(i), name), problems)

    def _columnar(self, body: dict[str, Any], routing_key: str | None) -> ParsedRequest:
        extra = sorted(set(body) - {"columns", "data", "index"})
        if extra:
            raise RequestRejected(
                422, "invalid request", [{"loc": k, "msg": "is not a known key"} for k in extra]
            )
        columns, data = body.get("columns"), body.get("data", _MISSING)
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise RequestRejected(
                422, "invalid request", [{"loc": "columns", "msg": "must be a list of names"}]
            )
        if data is _MISSING or not isinstance(data, list):
            raise RequestRejected(422, "invalid request", [{"loc": "data", "msg": "must be a list of rows"}])
        self._check_count(len(data))
        problems: list[dict[str, str]] = []
        if len(set(columns)) != len(columns):
            problems.append({"loc": "columns", "msg": "names must be unique"})
        for name in self.names:
            if name not in columns:
                problems.append({"loc": f"columns.{name}", "msg": "is required"})
        if self.reject_unknown:
            problems += [
                {"loc": f"columns.{c}", "msg": "is not a feature of the model"}
                for c in columns
                if c not in self.name_set
            ]
        width = len(columns)
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != width:
                problems.append({"loc": f"data[{i}]", "msg": f"must be a list of {width} values"})
            if len(problems) >= MAX_REPORTED_PROBLEMS:
                break
        if problems:
            raise RequestRejected(422, "invalid request", problems[:MAX_REPORTED_PROBLEMS])
        if self.all_numeric and tuple(columns) == self.names:
            fast = self._fast(data, True, routing_key)
            if fast is not None:
                return fast
        position = {c: j for j, c in enumerate(columns)}
        raw = [[row[position[name]] for row in data] for name in self.names]
        return self._encode(raw, True, routing_key, lambda i, name: f"data[{i}].{name}")

    def _check_count(self, n: int) -> None:
        if n == 0:
            raise RequestRejected(422, "the request holds no records")
        if n > self.max_rows:
            raise RequestRejected(413, f"the request holds {n} records; the limit is {self.max_rows}")

    def _fast(self, rows: list[list[Any]], batch: bool, routing_key: str | None) -> ParsedRequest | None:
        """Clean all-numeric input in one numpy conversion; None sends it to the per-value checks."""
        if not _FLOAT_INT.issuperset(map(type, chain.from_iterable(rows))):
            return None
        try:
            X = np.array(rows, dtype=np.float64)
        except (OverflowError, ValueError):
            return None
        if X.ndim != 2 or X.shape[1] != len(self.names) or not np.isfinite(X).all():
            return None
        return ParsedRequest(
            X=X, columns=[X[:, j] for j in range(X.shape[1])], batch=batch, routing_key=routing_key
        )

    # -- values -----------------------------------------------------------------------------------------------

    def _encode(
        self,
        raw: list[list[Any]],
        batch: bool,
        routing_key: str | None,
        loc: Any,
        problems: list[dict[str, str]] | None = None,
    ) -> ParsedRequest:
        """Check and convert column by column; `problems` found earlier are reported together with these."""
        n = len(raw[0]) if raw else 0
        X = np.empty((n, len(self.names)), dtype=np.float64)
        columns: list[Any] = []
        problems = list(problems or [])
        for j, (name, col) in enumerate(zip(self.names, raw, strict=True)):
            codes = self.codes[j]
            if codes is None:
                arr, bad = self._numeric(col, name, j, loc)
                problems += bad
                if arr is not None and not problems:
                    X[:, j] = arr
                    columns.append(X[:, j])
            else:
                values, bad = self._categorical(col, name, j, loc)
                problems += bad
                if not problems:
                    X[:, j] = [math.nan if v is None else codes.get(v, math.nan) for v in values]
                    columns.append(values)
            if len(problems) >= MAX_REPORTED_PROBLEMS:
                break
        if problems:
            raise RequestRejected(422, "invalid request", problems[:MAX_REPORTED_PROBLEMS])
        return ParsedRequest(X=X, columns=columns, batch=batch, routing_key=routing_key)

    def _numeric(self, col: list[Any], name: str, j: int, loc: Any) -> tuple[Any, list[dict[str, str]]]:
        if all(type(v) is float or type(v) is int for v in col):
            arr = np.array(col, dtype=np.float64)
            if np.isfinite(arr).all():
                return arr, []
        problems = []
        values = []
        for i, v in enumerate(col):
            msg = None
            if v is _MISSING:
                msg = "is required"
            elif v is None:
                if not self.nullable[j]:
                    msg = "must not be null"
                v = math.nan
            elif type(v) is bool or not isinstance(v, _NUMBER_TYPES):
                msg = f"expected a number, got {_describe(v)}"
            elif not math.isfinite(v):
                msg = f"must be a finite number, got {v!r}"
            if msg:
                problems.append({"loc": loc(i, name), "msg": msg})
                if len(problems) >= MAX_REPORTED_PROBLEMS:
                    break
            values.append(v)
        if problems:
            return None, problems
        try:
            return np.array(values, dtype=np.float64), []
        except OverflowError:  # an integer beyond float range
            return None, [{"loc": name, "msg": "number out of range"}]

    def _categorical(
        self, col: list[Any], name: str, j: int, loc: Any
    ) -> tuple[list[Any], list[dict[str, str]]]:
        if all(type(v) is str for v in col):
            return col, []
        values: list[Any] = []
        problems = []
        for i, v in enumerate(col):
            msg = None
            if v is _MISSING:
                msg = "is required"
            elif v is None:
                if not self.nullable[j]:
                    msg = "must not be null"
            elif type(v) is int:
                v = str(v)
            elif type(v) is float and math.isfinite(v) and v.is_integer():
                v = str(int(v))
            elif type(v) is not str:
                msg = f"expected a string (category), got {_describe(v)}"
            if msg:
                problems.append({"loc": loc(i, name), "msg": msg})
                if len(problems) >= MAX_REPORTED_PROBLEMS:
                    break
            values.append(v)
        return values, problems


def _routing_key(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    if type(value) is int:
        return str(value)
    raise RequestRejected(
        422, "invalid request", [{"loc": ROUTING_FIELD, "msg": "must be a non-empty string or an integer"}]
    )


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe(v: Any) -> str:
    kind = {bool: "boolean", str: "string", list: "list", dict: "object", float: "number"}.get(
        type(v), type(v).__name__
    )
    text = repr(v)
    return f"{kind} {text[:40]}" if kind in ("string", "boolean", "number") else kind
