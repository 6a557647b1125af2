"""Feedback labels: of the model's kind of class, one of its two for a binary model, finite for regression."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.serve.labels import label_rule
from driftloop.serve.routes import parse_feedback
from driftloop.serve.validation import RequestRejected

WINE = label_rule(False, [np.int64(q) for q in range(3, 9)])  # classes as a trained spec holds them
BINARY = label_rule(False, [0, 1])
COLOURS = label_rule(False, ["red", "rose", "white"])
FLAGS = label_rule(False, [False, True])
AMOUNT = label_rule(True, [])


@pytest.mark.parametrize(
    ("rule", "label", "error"),
    [
        (BINARY, 1, None),
        (BINARY, "0", None),
        (BINARY, 1.0, None),
        (BINARY, 2, "must be one of the model's classes (0, 1), got 2"),
        (BINARY, "cat", 'must be one of the model\'s classes (0, 1), got "cat"'),
        (WINE, 9, None),  # a quality the model never predicted: true, and retraining needs it
        (WINE, "9", None),
        (WINE, "cat", 'must be an integer class label like the model\'s (3, 4, 5, 6, 7, 8), got "cat"'),
        (WINE, 6.5, "must be an integer class label like the model's (3, 4, 5, 6, 7, 8), got 6.5"),
        (WINE, True, "must be an integer class label like the model's (3, 4, 5, 6, 7, 8), got true"),
        (WINE, None, "is required and must be a class label (string or number), got null"),
        (WINE, 10**400, "is required and must be a class label (string or number), got 1000"),
        (COLOURS, "orange", None),
        (COLOURS, 3, "must be a text class label like the model's (red, rose, white), got 3"),
        (FLAGS, True, None),
        (FLAGS, "True", None),
        (FLAGS, 1, "must be one of the model's classes (False, True), got 1"),
        (AMOUNT, 2.5, None),
        (AMOUNT, "2.5", 'is required and must be a finite number, got "2.5"'),
        (AMOUNT, float("inf"), "is required and must be a finite number, got Infinity"),
    ],
)
def test_label_rules(rule, label, error) -> None:  # noqa: ANN001
    found = rule.problem(label)
    assert found == error or (error is not None and found is not None and found.startswith(error))


def test_parse_feedback_names_every_bad_item() -> None:
    body = {
        "feedback": [{"request_id": "a", "label": 1}, {"request_id": "b", "label": 2}, {"request_id": "c"}]
    }
    with pytest.raises(RequestRejected) as raised:
        parse_feedback(body, rule=BINARY)
    assert raised.value.status == 422
    assert [p["loc"] for p in raised.value.problems] == ["feedback[1].label", "feedback[2].label"]
    fb = parse_feedback([{"request_id": "a", "label": "1"}], rule=BINARY)
    assert (fb.ids, fb.labels, fb.outcome_ids) == (["a"], ["1"], [])


def test_feedback_carries_named_outcomes_with_or_without_a_label() -> None:
    body = [
        {"request_id": "a", "label": "1", "outcomes": {"conversion": 1, "revenue": 12.5}},
        {"request_id": "b", "outcomes": {"conversion": 0}},
    ]
    fb = parse_feedback(body, rule=BINARY)
    assert (fb.ids, fb.labels) == (["a"], ["1"])  # b carries no label: no label row
    assert list(zip(fb.outcome_ids, fb.outcome_names, fb.outcome_values, strict=True)) == [
        ("a", "conversion", 1),
        ("a", "revenue", 12.5),
        ("b", "conversion", 0),
    ]
    assert fb.accepted == 2


@pytest.mark.parametrize(
    ("outcomes", "loc", "msg"),
    [
        ({}, "outcomes", "must be an object of named numbers"),
        ([1], "outcomes", "must be an object of named numbers"),
        ({"conversion": True}, "outcomes.conversion", "must be a finite number, got True"),
        ({"revenue": "12"}, "outcomes.revenue", "must be a finite number, got '12'"),
        ({"revenue": float("nan")}, "outcomes.revenue", "must be a finite number"),
        ({"1st": 1}, "outcomes", "'1st' is not an outcome name"),
        ({"a b": 1}, "outcomes", "'a b' is not an outcome name"),
    ],
)
def test_bad_outcomes_are_named(outcomes: object, loc: str, msg: str) -> None:
    with pytest.raises(RequestRejected) as raised:
        parse_feedback({"request_id": "a", "outcomes": outcomes}, rule=BINARY)
    (problem,) = raised.value.problems
    assert problem["loc"] == loc and problem["msg"].startswith(msg), problem
