"""Request validation against a model spec: every client mistake is a 4xx naming the field."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest

from driftloop.serve.validation import RequestRejected, RequestSchema, check_prediction, decode_json
from driftloop.stores.models import Encoder, FeatureSpec, ModelSpec, Prediction

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
    fast = schema.parse([{"a": 1, "b": 2.5}, {"b": 3, "a": -3e38}])
    np.testing.assert_array_equal(fast.X, [[1, 2.5], [-3e38, 3]])
    assert math.isnan(RequestSchema(SPEC).parse({"age": 1, "income": None, "city": None}).X[0, 1])


def test_every_bad_field_is_named() -> None:
    schema = RequestSchema(SPEC)
    err = rejected(
        schema, [{"age": "30", "income": True, "city": True, "zip": 1}, {"income": 1, "city": "x"}]
    )
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


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        (b'{"\\ud800": 1, "b": 2}', "\\ud800"),
        (b'{"a": 1, "b": 2, "routing_key": "\\udc00x"}', "routing_key"),
        (b'[{"a": 1, "b": 2}, {"a": 1, "b": "\\ud800"}]', "[1].b"),
        (b'{"a": 1' + b"0" * 400 + b', "b": 2}', "a"),
        (b'{"feedback": [{"request_id": "\\ud83d", "label": 1}]}', "feedback[0].request_id"),
        (b'{"request_id": "r", "label": -1' + b"0" * 400 + b"}", "label"),
    ],
)
def test_valid_json_that_no_model_or_log_can_take_is_422_naming_the_field(raw: bytes, loc: str) -> None:
    with pytest.raises(RequestRejected) as info:
        decode_json(raw)
    err = info.value
    assert err.status == 422 and [p["loc"] for p in err.problems] == [loc]
    json.dumps(err.to_dict()).encode("utf-8")  # the answer itself is valid UTF-8 JSON
    orjson.dumps(err.to_dict())


def test_numbers_beyond_the_float32_range_are_refused_naming_the_field() -> None:
    schema = RequestSchema(SPEC)
    assert schema.parse({"age": 3.4e38, "income": -3.4e38, "city": "rome"}).X[0, 0] == 3.4e38
    for bad in ("1e308", "-1e50", "4e38", "1" + "0" * 300):
        for body in (f'{{"age": {bad}, "income": 1, "city": "rome"}}', f'[{{"age": 1, "income": {bad}}}]'):
            err = rejected(schema, decode_json(body.replace("}]", ', "city": null}]').encode()))
            assert err.status == 422, body
            assert err.problems[0]["loc"] in ("age", "[0].income") and "float32" in err.problems[0]["msg"]
    err = rejected(RequestSchema(NUMERIC), [{"a": 1, "b": 2}, {"a": 1e308, "b": 2}])  # the numeric fast path
    assert err.problems == [
        {"loc": "[1].a", "msg": "must be within +-3.402823e+38 (the float32 range), got number 1e+308"}
    ]


def test_a_non_finite_model_output_is_422_for_that_request() -> None:
    ok = Prediction(labels=np.array([1.0, 2.0]))
    check_prediction(ok, batch=True)
    with pytest.raises(RequestRejected) as info:
        check_prediction(Prediction(labels=np.array([1.0, np.inf])), batch=True)
    assert info.value.status == 422 and [p["loc"] for p in info.value.problems] == ["[1]"]
    proba = np.array([[0.5, 0.5], [np.nan, np.nan]])
    with pytest.raises(RequestRejected):
        check_prediction(Prediction(labels=np.array([0, 0]), proba=proba), batch=True)
