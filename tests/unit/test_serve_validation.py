"""Request validation against a model spec: every client mistake is a 4xx naming the field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftloop.serve.validation import RequestRejected, RequestSchema, decode_json
from driftloop.stores.models import Encoder, FeatureSpec, ModelSpec

SPEC = ModelSpec(
    task="binary",
    target="y",
    features=(
        FeatureSpec("age", "numeric", nullable=False),
        FeatureSpec("income", "numeric", nullable=True),
        FeatureSpec("city", "categorical", categories=("paris", "rome", "7"), nullable=True),
    ),
    classes=(0, 1),
)
NUMERIC = ModelSpec(
    task="regression",
    target="y",
    features=(FeatureSpec("a", "numeric", nullable=False), FeatureSpec("b", "numeric", nullable=False)),
)


def rejected(schema: RequestSchema, body: object) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        schema.parse(body)
    return info.value


def test_shapes_encode_like_the_training_encoder() -> None:
    schema = RequestSchema(SPEC)
    records = [
        {"age": 30, "income": 1.5, "city": "rome"},
        {"age": 40.5, "income": None, "city": 7},
        {"age": 1, "income": 2, "city": "oslo"},
    ]
    expected = Encoder(SPEC).encode_records(records)
    for body in (
        records,
        {"records": records},
        {"columns": ["city", "age", "income"], "data": [[r["city"], r["age"], r["income"]] for r in records]},
    ):
        parsed = schema.parse(body)
        assert parsed.batch
        np.testing.assert_array_equal(parsed.X, expected)
    one = schema.parse({**records[0], "routing_key": "u-9"})
    assert not one.batch and one.routing_key == "u-9"
    np.testing.assert_array_equal(one.X, expected[:1])
    assert schema.parse(records).columns[2] == [
        "rome",
        "7",
        "oslo",
    ]  # categorical logged as received, as strings


def test_numeric_fast_path_equals_slow_path() -> None:
    schema = RequestSchema(NUMERIC)
    fast = schema.parse([{"a": 1, "b": 2.5}, {"b": 3, "a": -1e300}])
    np.testing.assert_array_equal(fast.X, [[1, 2.5], [-1e300, 3]])
    assert math.isnan(RequestSchema(SPEC).parse({"age": 1, "income": None, "city": None}).X[0, 1])


def test_every_bad_field_is_named() -> None:
    schema = RequestSchema(SPEC)
    err = rejected(schema, [{"age": "30", "income": True, "city": 1.5, "zip": 1}, {"income": 1, "city": "x"}])
    assert err.status == 422
    got = {(p["loc"], p["msg"].split(",")[0]) for p in err.problems}
    assert ("[0].zip", "is not a feature of the model") in got
    assert ("[0].age", "expected a number") in got
    assert ("[0].income", "expected a number") in got
    assert ("[0].city", "expected a string (category)") in got
    assert ("[1].age", "is required") in got


def test_null_only_where_nullable_and_no_nan_or_inf() -> None:
    schema = RequestSchema(SPEC)
    err = rejected(schema, {"age": None, "income": None, "city": None})
    assert err.problems == [{"loc": "age", "msg": "must not be null"}]
    for bad in ("NaN", "Infinity", "-Infinity", "1e400"):
        body = decode_json(f'{{"age": {bad}, "income": 1, "city": "rome"}}'.encode())
        err = rejected(schema, body)
        assert err.status == 422 and err.problems[0]["loc"] == "age" and "finite" in err.problems[0]["msg"]


def test_unknown_fields_can_be_ignored() -> None:
    body = {"a": 1, "b": 2, "extra": "x"}
    assert rejected(RequestSchema(NUMERIC), body).problems == [
        {"loc": "extra", "msg": "is not a feature of the model"}
    ]
    np.testing.assert_array_equal(RequestSchema(NUMERIC, unknown_fields="ignore").parse(body).X, [[1, 2]])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("a string", 422),
        (5, 422),
        ([], 422),
        ([1, 2], 422),
        ({"records": "x"}, 422),
        ({"columns": ["a", "a"], "data": [[1, 2]]}, 422),
        ({"columns": ["a", "b"], "data": [[1]]}, 422),
        ({"columns": ["a", "b"]}, 422),
        ({"a": 1, "b": 2, "routing_key": 1.5}, 422),
        ([{"a": 1, "b": 2}] * 11, 413),
    ],
)
def test_malformed_shapes(body: object, status: int) -> None:
    assert rejected(RequestSchema(NUMERIC, max_rows=10), body).status == status


def test_malformed_json_is_400() -> None:
    with pytest.raises(RequestRejected) as info:
        decode_json(b'{"a": ')
    assert info.value.status == 400 and "malformed JSON" in info.value.message
