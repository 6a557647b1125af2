"""Row validation of batch-scoring partitions against a model spec: every bad row found, with its reasons."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from driftloop.scale.scoring import encode
from driftloop.scale.validate import check_partition
from driftloop.stores.models import Encoder, FeatureSpec, ModelBundle, ModelSpec

SPEC = ModelSpec(
    task="binary",
    target="y",
    features=(
        FeatureSpec("age", "numeric", nullable=False),
        FeatureSpec("income", "numeric"),
        FeatureSpec("city", "categorical", categories=("paris", "rome", "3")),
        FeatureSpec("plan", "categorical", categories=("a", "b"), nullable=False),
    ),
    classes=(0, 1),
)


def test_typed_columns_valid_rows_and_every_reason() -> None:
    frame = pd.DataFrame(
        {
            "age": [30.0, np.nan, 41.0, np.inf, 22.0],
            "income": [1.5, 2.0, None, 3.0, -np.inf],
            "city": ["paris", "oslo", None, "rome", "rome"],
            "plan": ["a", "b", "a", None, "b"],
        }
    )
    checked = check_partition(frame, SPEC)
    assert checked.ok.tolist() == [True, False, True, False, False]
    assert checked.reasons[1] == "age: missing, and the model does not accept nulls"
    assert checked.reasons[3] == (
        "age: must be a finite number, got inf; plan: missing, and the model does not accept nulls"
    )
    assert checked.reasons[4] == "income: must be a finite number, got -inf"
    assert checked.reasons[0] is None and checked.n_rejected == 3
    # Valid rows keep nulls of nullable features; an unseen category ("oslo" was rejected with its row) is
    # not an error by itself.
    assert checked.columns["city"] == ["paris", None]
    assert np.isnan(checked.columns["income"][1])


def test_text_columns_as_csv_gives_them() -> None:
    frame = pd.DataFrame(
        {
            "age": pd.Series(["30", "4O", "1e2", None], dtype="str"),
            "income": pd.Series(["1.5", "", "inf", "2"], dtype=object).replace("", None),
            "city": pd.Series(["3", "paris", "x", "rome"], dtype="str"),
            "plan": pd.Series(["a", "a", "b", "b"], dtype="str"),
        }
    )
    checked = check_partition(frame, SPEC)
    assert checked.ok.tolist() == [True, False, False, False]
    assert checked.reasons[1] == "age: expected a number, got '4O'"
    assert checked.reasons[2] == "income: must be a finite number, got 'inf'"
    assert checked.reasons[3] == "age: missing, and the model does not accept nulls"
    assert checked.columns["age"].tolist() == [30.0]


def test_mixed_object_columns_and_categories_from_numbers() -> None:
    frame = pd.DataFrame(
        {
            "age": pd.Series([True, 5, "x", 7.5], dtype=object),
            "income": [1.0, 2.0, 3.0, 4.0],
            "city": pd.Series([3, 3.0, 2.5, "rome"], dtype=object),
            "plan": ["a", "b", "a", "b"],
        }
    )
    checked = check_partition(frame, SPEC)
    assert checked.reasons[0] == "age: expected a number, got True"
    assert checked.ok.tolist() == [False, True, False, True]
    assert checked.reasons[2] == "age: expected a number, got 'x'; city: expected a category (text), got 2.5"
    assert checked.columns["city"] == ["3", "rome"]


def test_fast_encoding_equals_the_model_encoder() -> None:
    frame = pd.DataFrame(
        {
            "age": [30.0, 41.0, 22.0],
            "income": [1.5, np.nan, 3.0],
            "city": ["paris", "oslo", None],
            "plan": ["b", "a", "b"],
        }
    )
    checked = check_partition(frame, SPEC)
    bundle = ModelBundle(SPEC, estimator=None, flavor="sklearn")
    fast = encode(bundle, checked.columns)
    reference = Encoder(SPEC).encode_frame(frame)
    np.testing.assert_array_equal(fast, reference)
    assert math.isnan(fast[1, 2]) and math.isnan(fast[2, 2])
