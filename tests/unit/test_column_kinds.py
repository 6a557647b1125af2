"""One coercion rule per column kind, the same at every door: a CSV file, a Parquet file, training's encoder,
the JSON predict door and the monitoring reference (issue #16, items 4, 5 and 8).

One table holds a column of every kind. Each case says what the column is in memory (as a Parquet writer
keeps it), which kind and dtype it must read as, and which JSON spellings of its values the predict door
must take as the same value (or refuse, naming the field).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from driftloop.config import config_from_dict
from driftloop.data.features import feature_specs
from driftloop.data.io import read_table
from driftloop.data.schema import infer_schema
from driftloop.monitor.check import category_strings
from driftloop.serve.validation import RequestRejected, RequestSchema
from driftloop.stores.models import Encoder, ModelSpec

N = 60  # more distinct texts than max_categories (50): the note and id columns are text, not categories


@dataclass
class Case:
    column: str
    native: pd.Series
    """The column as a Parquet writer holds it (pandas extension and category dtypes included)."""
    kind: str
    dtype: str
    as_text: Any = None
    """Another spelling of the values as text, which must read as the same column (in Parquet and CSV)."""
    same: list[tuple[Any, Any]] = field(default_factory=list)
    """(JSON value sent, table value it must equal) at the predict door."""
    refused: list[Any] = field(default_factory=list)
    """JSON values the predict door must refuse with a 422 naming the field."""


i = np.arange(N)
WHEN = pd.Series(pd.date_range("2024-01-01", periods=N, freq="h"))
CASES = [
    Case("count", pd.Series(i % 7), "numeric", "int64", same=[(3, 3), (3.0, 3)], refused=["3", True, None]),
    Case("ratio", pd.Series(i * 0.25 + 0.1), "numeric", "float64", same=[(0.35, 0.35)], refused=["0.35"]),
    Case(
        "gappy",
        pd.Series(pd.array([None if k % 5 == 0 else int(k) for k in i], dtype="Int64")),
        "numeric",
        "float64",
        same=[(None, np.nan), (4, 4)],
        refused=[False],
    ),
    Case(
        "flag",
        pd.Series(i % 3 == 0),
        "bool",
        "bool",
        as_text=lambda s: s.map({True: "true", False: "FALSE"}),
        same=[
            *((v, True) for v in (True, "true", "TRUE", "True", 1, "1", 1.0)),
            *((v, False) for v in (False, "false", "False", "FALSE", 0, "0")),
        ],
        refused=["yes", "", 2, 0.5, None, [True]],
    ),
    Case(
        "maybe",
        pd.Series(pd.array([None if k % 4 == 0 else bool(k % 2) for k in i], dtype="boolean")),
        "bool",
        "boolean",
        as_text=lambda s: s.map({True: "True", False: "false"}),
        same=[(None, None), ("true", True), (0, False)],
        refused=["no"],
    ),
    Case(
        "colour",
        pd.Series(
            pd.Categorical(
                np.array(["red", "green", "blue"])[i % 3], categories=["red", "green", "blue", "x"]
            )
        ),
        "categorical",
        "str",
        same=[("red", "red"), ("green", "green")],
        refused=[True, [1], {"a": 1}],
    ),
    Case(
        "grade",  # numbers declared categorical (data.feature_types): JSON numbers read as their decimal
        pd.Series(i % 3 + 1),
        "numeric",
        "int64",
        same=[(2, 2), (2.0, 2), ("2", 2)],
        refused=[True, float("inf")],
    ),
    Case("note", pd.Series([f"note {k}" for k in i]), "text", "str"),
    Case(
        "order_id",
        pd.Series([f"o-{k}" for k in i]),
        "text",
        "str",
        same=[("o-7", "o-7")],
        refused=[True, 2.5],
    ),
    Case(
        "when",
        WHEN,
        "datetime",
        "datetime64[us, UTC]",
        as_text=lambda s: s.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        same=[
            ("2024-01-01T05:00:00Z", pd.Timestamp("2024-01-01 05:00", tz="UTC")),
            ("2024-01-01 05:00", pd.Timestamp("2024-01-01 05:00", tz="UTC")),
            ("2024-01-01T07:00:00+02:00", pd.Timestamp("2024-01-01 05:00", tz="UTC")),
        ],
        refused=[1704085200, "01/01/2024", True, "2024-02-30"],
    ),
]
BY_NAME = {c.column: c for c in CASES}
FEATURES = ["count", "ratio", "gappy", "flag", "maybe", "colour", "grade"]
JOINS = {"order_id": "text", "when": "datetime"}


def native_frame() -> pd.DataFrame:
    return pd.DataFrame({**{c.column: c.native for c in CASES}, "y": i % 2})


def text_frame() -> pd.DataFrame:
    """The same data where a column has another text spelling, as another tool would write it."""
    frame = native_frame()
    for c in CASES:
        if c.as_text is not None:
            frame[c.column] = c.as_text(c.native).astype(object)
    return frame


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """The one table read through every file door."""
    folder: Path = tmp_path_factory.mktemp("kinds")
    paths = {
        "parquet": folder / "native.parquet",
        "csv": folder / "native.csv",
        "parquet-text": folder / "text.parquet",
        "csv-text": folder / "text.csv",
    }
    native_frame().to_parquet(paths["parquet"])
    native_frame().to_csv(paths["csv"], index=False)
    text_frame().to_parquet(paths["parquet-text"])
    text_frame().to_csv(paths["csv-text"], index=False, sep=";")
    return {door: read_table(path) for door, path in paths.items()}


@pytest.mark.parametrize("door", ["csv", "parquet-text", "csv-text"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.column)
def test_every_file_door_reads_a_column_as_the_parquet_door_does(
    doors: dict[str, pd.DataFrame], case: Case, door: str
) -> None:
    reference, got = doors["parquet"][case.column], doors[door][case.column]
    assert str(reference.dtype) == case.dtype
    pd.testing.assert_series_equal(got, reference)
    assert infer_schema(doors[door])[case.column].kind == case.kind
    assert infer_schema(doors["parquet"])[case.column].kind == case.kind


def test_a_category_column_reads_as_its_values_without_unused_categories(
    doors: dict[str, pd.DataFrame],
) -> None:
    assert infer_schema(doors["parquet"])["colour"].categories == ["blue", "green", "red"]


def model_spec(frame: pd.DataFrame) -> ModelSpec:
    cfg = config_from_dict(
        {
            "data": {
                "target": "y",
                "id_column": "order_id",
                "timestamp_column": "when",
                "exclude": ["note"],
                "feature_types": {"grade": "categorical"},
            }
        },
        environ={},
    )
    specs, _ = feature_specs(cfg, frame, infer_schema(frame))
    assert [f.name for f in specs] == FEATURES
    return ModelSpec(
        task="binary",
        target="y",
        features=tuple(specs),
        classes=(0, 1),
        id_column="order_id",
        timestamp_column="when",
    )


def json_value(v: Any) -> Any:
    """A table value as a client replaying the table sends it in JSON."""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v.item() if isinstance(v, np.generic) else v


@pytest.mark.parametrize("door", ["csv", "parquet"])
def test_replayed_rows_encode_at_the_predict_door_as_at_training(
    doors: dict[str, pd.DataFrame], door: str
) -> None:
    frame = doors[door]
    spec = model_spec(frame)
    records = [
        {name: json_value(frame[name].iloc[k]) for name in [*FEATURES, *JOINS]} for k in range(len(frame))
    ]
    parsed = RequestSchema(spec).parse(records)
    np.testing.assert_array_equal(parsed.X, Encoder(spec).encode_frame(frame))
    # What the log keeps is what monitoring compares with the reference: the same category strings.
    for j, f in enumerate(spec.features):
        if f.kind == "categorical":
            reference = [None if pd.isna(v) else v for v in category_strings(frame[f.name])]
            assert list(parsed.columns[j]) == reference
    ids, times = parsed.joins
    assert ids == frame["order_id"].tolist()
    assert (
        times == (frame["when"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds().mul(1e6).astype(int).tolist()
    )


def one_row(frame: pd.DataFrame, **values: Any) -> dict[str, Any]:
    row = {name: json_value(frame[name].iloc[1]) for name in FEATURES}
    return {**row, **values}


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.same and c.column in FEATURES], ids=lambda c: c.column
)
def test_each_json_spelling_of_a_feature_value_encodes_as_the_table_value(
    doors: dict[str, pd.DataFrame], case: Case
) -> None:
    frame = doors["parquet"]
    spec = model_spec(frame)
    schema = RequestSchema(spec)
    j = FEATURES.index(case.column)
    for sent, table_value in case.same:
        as_table = frame.head(1).copy()
        as_table[case.column] = pd.Series([table_value], dtype=frame[case.column].dtype)
        expected = Encoder(spec).encode_frame(as_table)[0, j]
        got = schema.parse(one_row(frame, **{case.column: sent})).X[0, j]
        np.testing.assert_equal(got, expected, err_msg=f"{case.column}={sent!r}")


@pytest.mark.parametrize("case", [c for c in CASES if c.refused], ids=lambda c: c.column)
def test_a_value_not_of_the_kind_is_a_422_naming_the_field(
    doors: dict[str, pd.DataFrame], case: Case
) -> None:
    frame = doors["parquet"]
    schema = RequestSchema(model_spec(frame))
    for sent in case.refused:
        with pytest.raises(RequestRejected) as info:
            schema.parse(one_row(frame, **{case.column: sent}))
        assert info.value.status == 422
        assert [p["loc"] for p in info.value.problems] == [case.column], sent


@pytest.mark.parametrize("case", [BY_NAME["order_id"], BY_NAME["when"]], ids=lambda c: c.column)
def test_join_columns_are_optional_and_each_spelling_is_logged_as_the_table_value(
    doors: dict[str, pd.DataFrame], case: Case
) -> None:
    frame = doors["parquet"]
    schema = RequestSchema(model_spec(frame))
    k = list(JOINS).index(case.column)
    assert schema.parse(one_row(frame)).joins == [[None], [None]]
    for sent, table_value in case.same:
        logged = schema.parse(one_row(frame, **{case.column: sent})).joins[k][0]
        if isinstance(table_value, pd.Timestamp):
            logged = datetime.fromtimestamp(logged / 1e6, UTC)
        assert logged == table_value


def test_an_id_sent_as_an_integer_is_logged_as_its_decimal_string(doors: dict[str, pd.DataFrame]) -> None:
    frame = doors["parquet"]
    assert RequestSchema(model_spec(frame)).parse(one_row(frame, order_id=7)).joins[0] == ["7"]


def test_the_same_data_in_parquet_and_as_text_in_csv_does_not_drift(tmp_path: Path) -> None:
    """`driftloop drift` reads both files through the same door: a datetime against the same dates as text,
    booleans against "True"/"False" text, a category against its values, are the same columns."""
    from driftloop.monitor.tables import compare_files

    reference, current = tmp_path / "reference.parquet", tmp_path / "current.csv"
    days = pd.Series(pd.to_datetime(["2024-03-01", "2024-03-02", "2024-03-03"])[i % 3])
    native = native_frame().assign(day=days)
    native.assign(flag=native["flag"].map({True: "True", False: "False"})).to_parquet(reference)
    native.to_csv(current, index=False)
    report = compare_files(reference, current)
    columns = report["drift"]["columns"]
    assert {name: c["statistic"] for name, c in columns.items() if c["drift"] or c["error"]} == {}
    assert {"flag", "colour", "maybe"} <= set(columns)
    assert "day" in report["skipped"]  # a date is not tested, whichever the format


def test_training_records_the_id_and_timestamp_columns_init_keeps_for_joins(
    doors: dict[str, pd.DataFrame],
) -> None:
    from driftloop.stores.metadata import DatasetRecord
    from driftloop.train.prepare import prepare

    frame = doors["csv"]
    cfg = config_from_dict(
        {"data": {"target": "y", "id_column": "order_id", "timestamp_column": "when", "exclude": ["note"]}},
        environ={},
    )
    record = DatasetRecord(
        version="v1",
        digest="d",
        created_at=datetime.now(UTC),
        source="test",
        path="kinds.csv",
        n_rows=len(frame),
        n_columns=frame.shape[1],
        schema=infer_schema(frame).to_dict(),
    )
    spec = prepare(cfg, frame, record).spec
    assert (spec.id_column, spec.timestamp_column) == ("order_id", "when")
    assert ModelSpec.from_dict(spec.to_dict()) == spec  # stored with the model, read back by the server
    joins = RequestSchema(spec).parse(one_row(frame, order_id="o-3", when="2024-01-01")).joins
    assert joins == [["o-3"], [1704067200 * 10**6]]


def test_logged_rows_come_back_for_retraining_as_the_training_table_holds_them(
    doors: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    """The retraining door: features logged at serving, joined with feedback, concatenated with the training
    snapshot, must be of the same kinds (a bool column mixed with "True" text cannot even be stored)."""
    import pyarrow as pa

    from driftloop.loop.retrain import in_snapshot_types, labeled_production_rows
    from driftloop.stores.predlog import FeedbackEntry, LogWriter, PredictionEntry

    frame = doors["parquet"]
    spec = model_spec(frame)
    sent = [one_row(frame, flag=v, maybe=m) for v, m in (("true", None), (0, "FALSE"), (True, 1))]
    parsed = RequestSchema(spec).parse(sent)
    schema = RequestSchema(spec)
    writers = {
        kind: LogWriter(tmp_path, kind, flush_seconds=60).start() for kind in ("predictions", "feedback")
    }
    writers["predictions"].put(
        PredictionEntry(
            request_id="r",
            batch=True,
            ts_us=1_700_000_000_000_000,
            model_name="m",
            model_version="1",
            arm="champion",
            source="online",
            feature_names=schema.names,
            feature_kinds=schema.kinds,
            columns=parsed.columns,
            labels=[1, 0, 1],
            proba=np.array([[0.2, 0.8], [0.7, 0.3], [0.1, 0.9]]),
            classes=("0", "1"),
            latency_ms=1.0,
            join_names=schema.join_names,
            join_kinds=schema.join_kinds,
            join_columns=parsed.joins,
        )
    )
    writers["feedback"].put(
        FeedbackEntry(
            request_ids=["r:0", "r:1", "r:2"], labels=[1, 0, 1], regression=False, ts_us=1_700_000_000_000_001
        )
    )
    for writer in writers.values():
        writer.close()
    rows = labeled_production_rows(tmp_path, spec)
    assert rows["flag"].tolist() == [True, False, True] and rows["maybe"].tolist()[1:] == [False, True]
    combined = pd.concat([frame[FEATURES], in_snapshot_types(frame, rows[FEATURES])], ignore_index=True)
    kinds = {n: infer_schema(combined)[n].kind for n in FEATURES}
    assert kinds == {n: infer_schema(frame)[n].kind for n in FEATURES}
    pa.Table.from_pandas(combined)  # storable as a dataset version
    np.testing.assert_array_equal(Encoder(spec).encode_frame(rows), parsed.X)


def test_an_all_numeric_model_takes_join_columns_in_every_request_shape() -> None:
    from driftloop.stores.models import FeatureSpec

    spec = ModelSpec(
        task="regression",
        target="y",
        features=(FeatureSpec("a", "numeric", nullable=False), FeatureSpec("b", "numeric", nullable=False)),
        id_column="key",
        timestamp_column="at",
    )
    schema = RequestSchema(spec)
    assert schema.parse({"a": 1, "b": 2}).joins == [[None], [None]]  # the fast path
    records = [{"a": 1, "b": 2, "key": "k1"}, {"a": 3, "b": 4, "at": "2024-01-01"}]
    by_records = schema.parse(records)
    columnar = schema.parse({"columns": ["key", "a", "b"], "data": [["k1", 1, 2], [None, 3, 4]]})
    np.testing.assert_array_equal(by_records.X, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(columnar.X, by_records.X)
    assert by_records.joins == [["k1", None], [None, 1704067200 * 10**6]]
    assert columnar.joins == [["k1", None], [None, None]]
