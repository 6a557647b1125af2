"""Request bodies checked against the model's spec and turned into a schema-ordered float matrix.

Accepted shapes for `POST /v1/predict`:

    {"alcohol": 9.4, ...}                                 one record (optional "routing_key")
    [{"alcohol": 9.4, ...}, ...]                          a list of records
    {"records": [{...}, ...], "routing_key": "u-1"}      a list of records with a routing key
    {"columns": ["alcohol", ...], "data": [[9.4, ...]]}   columnar (pandas "split"), optional "routing_key"

Every feature of the spec must be present; null is accepted only for features the spec marks nullable.
Numbers must be finite JSON numbers within the float32 range, |x| <= MAX_ABS (not strings, not booleans):
tree ensembles score in float32 and a scaled linear model overflows on larger values, so a value a model
cannot take is refused here, naming the field, instead of failing the micro-batch it would share with other
requests. Categorical and bool values follow the one rule per kind of `driftloop.kinds` (docs/contracts.md):
categorical values are strings, or numbers read as their decimal string (7 and 7.0 as "7", 2.5 as "2.5");
a bool feature (a categorical one trained on False/True) takes true/false, "true"/"FALSE", 1/0 or "1"/"0",
and anything else is refused naming the field. The model's id and timestamp columns (`ModelSpec.id_column`,
`timestamp_column`) are accepted beside the features, optional, never given to the model, and logged for
joins: the id as a string (or integer), the timestamp as an ISO 8601 string. Text
that is not valid Unicode (a lone surrogate escape such as "\\ud800", in a key or a value) and integers
beyond the float range are refused when the body is decoded, so no such value reaches a model or the
prediction log. Fields the model does not know are rejected or ignored
(config `serving.unknown_fields`). Each problem is reported with its location, and no pandas is involved:
the hot path is lists -> numpy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from driftloop.kinds import as_timestamp, bool_key, category_key
from driftloop.stores.models import ModelSpec, Prediction

ROUTING_FIELD = "routing_key"
MAX_REPORTED_PROBLEMS = 50
_MISSING = object()
_NUMBER_TYPES = (int, float)
_FLOAT_INT = frozenset((int, float))
#: The largest magnitude a numeric feature may have: float32's largest finite value (about 3.4e38).
MAX_ABS = float(np.finfo(np.float32).max)
_FLOAT_MAX = float(np.finfo(np.float64).max)
#: The bool rule's usual spellings, precomputed for the hot path (any other goes through `FeatureSpec.key`).
_BOOL_SPELLINGS: dict[Any, str] = {
    v: bool_key(v) for v in (True, False, "True", "False", "true", "false", "TRUE", "FALSE", "1", "0")
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


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
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise RequestRejected(400, f"malformed JSON: {first_error}") from None
    # Only the standard library lets these through (orjson refuses them), so only this slow path checks.
    problems = _unrepresentable(value)
    if problems:
        raise RequestRejected(422, "invalid request", problems)
    return value


def _unrepresentable(value: Any) -> list[dict[str, str]]:
    """Strings that are not valid Unicode and integers beyond float range, by location (iterative: deep
    nesting cannot overflow the stack)."""
    problems: list[dict[str, str]] = []
    stack: list[tuple[str, Any]] = [("", value)]
    while stack and len(problems) < MAX_REPORTED_PROBLEMS:
        loc, v = stack.pop()
        kind = type(v)
        if kind is dict:
            for k, item in v.items():
                key = _printable(k)
                if key != k:
                    problems.append(
                        {"loc": _join(loc, key), "msg": "key is not valid Unicode (lone surrogate)"}
                    )
                stack.append((_join(loc, key), item))
        elif kind is list:
            stack.extend((f"{loc}[{i}]", item) for i, item in enumerate(v))
        elif kind is str:
            if _printable(v) != v:
                problems.append({"loc": loc or "body", "msg": "is not valid Unicode text (lone surrogate)"})
        elif kind is int and abs(v) > _FLOAT_MAX:
            problems.append({"loc": loc or "body", "msg": "number out of range"})
    return problems


def _printable(text: str) -> str:
    """`text` itself when it encodes as UTF-8; otherwise with its lone surrogates written as \\uXXXX."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("ascii", "replace")
    return text


@dataclass
class ParsedRequest:
    """A validated request: `X` is (n, p) float64 in spec order; `columns` are the features as received."""

    X: np.ndarray
    columns: list[Any]
    batch: bool
    routing_key: str | None
    joins: list[list[Any]] | None = None
    """Per join column of the schema, one value per row: id strings, timestamps as microseconds since the
    epoch (UTC), None where not sent. None when the model has no join columns."""

    @property
    def n_rows(self) -> int:
        return self.X.shape[0]


class RequestSchema:
    """Validation and encoding for one model spec. Built once per loaded model; `parse` runs per request."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        unknown_fields: str = "reject",
        max_rows: int = 10_000,
        join_columns: tuple[str | None, str | None] = (None, None),
    ) -> None:
        """`join_columns`: the (id, timestamp) columns to accept when the spec names none (a model trained
        before specs recorded them), from the serving config's `data` section."""
        self.spec = spec
        self.names = tuple(spec.feature_names)
        id_column = spec.id_column or (None if spec.timestamp_column else join_columns[0])
        ts_column = spec.timestamp_column or (None if spec.id_column else join_columns[1])
        pairs = [(id_column, "text"), (ts_column, "datetime")]
        self.joins = tuple((n, k) for n, k in pairs if n and n not in self.names)
        self.join_names = tuple(n for n, _ in self.joins)
        self.join_kinds = tuple(k for _, k in self.joins)
        self.known = frozenset(self.names) | frozenset(self.join_names)
        self.keys = tuple(f.key for f in spec.features)
        self.bools = tuple(f.is_bool for f in spec.features)
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
                fast = self._fast(rows, batch, routing_key)  # type: ignore[arg-type]  # rows of values
                if fast is not None:
                    return fast
        problems: list[dict[str, str]] = []
        for i, rec in enumerate(records):
            if type(rec) is not dict:
                problems.append({"loc": where(i) or "body", "msg": "must be an object of feature values"})
            elif len(rec) != len(self.names) or not self.name_set.issuperset(rec):
                extra = [k for k in rec if k not in self.known]
                if extra and self.reject_unknown:
                    for k in extra:
                        problems.append({"loc": _join(where(i), k), "msg": "is not a feature of the model"})
            if len(problems) >= MAX_REPORTED_PROBLEMS:
                break
        if any(type(rec) is not dict for rec in records):
            raise RequestRejected(422, "invalid request", problems[:MAX_REPORTED_PROBLEMS])
        raw = [[rec.get(name, _MISSING) for rec in records] for name in self.names]
        joins = [[rec.get(name) for rec in records] for name in self.join_names]
        return self._encode(raw, batch, routing_key, lambda i, name: _join(where(i), name), problems, joins)

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
                if c not in self.known
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
        joins = [
            [row[position[name]] for row in data] if name in position else [None] * len(data)
            for name in self.join_names
        ]
        return self._encode(raw, True, routing_key, lambda i, name: f"data[{i}].{name}", None, joins)

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
        # NaN compares False: one test refuses NaN, infinities and values beyond MAX_ABS.
        if X.ndim != 2 or X.shape[1] != len(self.names) or not (np.abs(X) <= MAX_ABS).all():
            return None
        joins = [[None] * X.shape[0] for _ in self.joins] if self.joins else None
        return ParsedRequest(
            X=X,
            columns=[X[:, j] for j in range(X.shape[1])],
            batch=batch,
            routing_key=routing_key,
            joins=joins,
        )

    # -- values -----------------------------------------------------------------------------------------------

    def _encode(
        self,
        raw: list[list[Any]],
        batch: bool,
        routing_key: str | None,
        loc: Any,
        problems: list[dict[str, str]] | None = None,
        joins: list[list[Any]] | None = None,
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
        keys = None
        if self.joins:
            keys = []
            for (name, kind), col in zip(self.joins, joins or [[None] * n for _ in self.joins], strict=True):
                values, bad = _join_values(col, name, kind, loc)
                problems += bad
                keys.append(values)
        if problems:
            raise RequestRejected(422, "invalid request", problems[:MAX_REPORTED_PROBLEMS])
        return ParsedRequest(X=X, columns=columns, batch=batch, routing_key=routing_key, joins=keys)

    def _numeric(self, col: list[Any], name: str, j: int, loc: Any) -> tuple[Any, list[dict[str, str]]]:
        if all(type(v) is float or (type(v) is int and abs(v) <= MAX_ABS) for v in col):
            arr = np.array(col, dtype=np.float64)
            if (np.abs(arr) <= MAX_ABS).all():
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
            elif type(v) is float and not math.isfinite(v):
                msg = f"must be a finite number, got {v!r}"
            elif abs(v) > MAX_ABS:
                msg = f"must be within +-{MAX_ABS:.7g} (the float32 range), got {_describe(v)}"
            if msg:
                problems.append({"loc": loc(i, name), "msg": msg})
                if len(problems) >= MAX_REPORTED_PROBLEMS:
                    break
            values.append(v)
        if problems:
            return None, problems
        return np.array(values, dtype=np.float64), []

    def _categorical(
        self, col: list[Any], name: str, j: int, loc: Any
    ) -> tuple[list[Any], list[dict[str, str]]]:
        key = self.keys[j]
        if not self.bools[j] and all(type(v) is str for v in col):
            return col, []  # strings are categories as they are: nothing to convert
        if self.bools[j]:
            try:  # the common spellings by one dict lookup each (1 and 1.0 hash as True: the same rule)
                mapped = [_BOOL_SPELLINGS.get(v) for v in col]
            except TypeError:  # an unhashable value (a list): the per-value checks name it
                mapped = [None]
            if None not in mapped:
                return mapped, []
        values: list[Any] = []
        problems = []
        for i, v in enumerate(col):
            msg = None
            if v is _MISSING:
                msg = "is required"
            elif v is None:
                if not self.nullable[j]:
                    msg = "must not be null"
            else:
                try:
                    v = key(v)
                except ValueError as exc:
                    msg = str(exc)
            if msg:
                problems.append({"loc": loc(i, name), "msg": msg})
                if len(problems) >= MAX_REPORTED_PROBLEMS:
                    break
            values.append(v)
        return values, problems


def check_prediction(pred: Prediction, *, batch: bool) -> None:
    """Refuse (422) a request whose model output is not finite: it is that input, never served or logged.

    Row-wise models give each row its own output, so only the request holding such a row is refused.
    """
    out = pred.proba if pred.proba is not None else np.asarray(pred.labels, dtype=np.float64)
    finite = np.isfinite(out) if out.ndim == 1 else np.isfinite(out).all(axis=1)
    if finite.all():
        return
    msg = "the model's output for this record is not a finite number: a value is beyond what it can score"
    bad = np.flatnonzero(~finite)[:MAX_REPORTED_PROBLEMS]
    problems = [{"loc": f"[{i}]" if batch else "body", "msg": msg} for i in bad.tolist()]
    raise RequestRejected(422, "the model cannot score this input", problems)


def _join_values(col: list[Any], name: str, kind: str, loc: Any) -> tuple[list[Any], list[dict[str, str]]]:
    """A join column's values as logged (id: string; timestamp: microseconds since the epoch, UTC)."""
    values: list[Any] = []
    problems: list[dict[str, str]] = []
    for i, v in enumerate(col):
        if v is None:
            values.append(None)
            continue
        try:
            if kind == "datetime":
                t = as_timestamp(v)
                values.append((t - _EPOCH) // _MICROSECOND)
            elif type(v) is bool or (type(v) is float and not v.is_integer()):  # never true or 2.5
                raise ValueError(f"expected a string or an integer (an id), got {_describe(v)}")
            else:
                values.append(category_key(v))
        except ValueError as exc:
            problems.append({"loc": loc(i, name), "msg": str(exc)})
            if len(problems) >= MAX_REPORTED_PROBLEMS:
                break
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
    kind = {bool: "boolean", str: "string", list: "list", dict: "object", float: "number", int: "number"}.get(
        type(v), type(v).__name__
    )
    text = repr(v)
    return f"{kind} {text[:40]}" if kind in ("string", "boolean", "number") else kind
