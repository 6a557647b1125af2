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
    assert parse_feedback([{"request_id": "a", "label": "1"}], rule=BINARY) == (["a"], ["1"])
