"""A monitoring pass over prediction-log Parquet files written here in the contract's layout (DuckDB reads
them): drift found and not found, a no-data window, a missing feature, labels for unknown request ids, and
performance that matches scikit-learn on the same joined rows."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import accuracy_score, f1_score

from driftloop.config import MonitoringConfig
from driftloop.monitor.check import ReferenceState, evaluate_window
from driftloop.monitor.logwindow import read_labeled, read_window
from driftloop.stores.models import FeatureSpec
from driftloop.stores.predlog import feature_struct_type, feedback_schema, prediction_schema

pytestmark = pytest.mark.no_database  # no store database involved: the postgres pass leaves it out

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CLASSES = ["5", "6", "7"]


def write_predictions(
    log_dir: Path, frame: pd.DataFrame, features: list[FeatureSpec], *, ts: datetime, version: str = "1",
    arm: str = "champion", model: str = "wine", seed: int = 0, cpu_ms: float | None = None,
) -> list[str]:  # fmt: skip
    """Rows of `frame` as served predictions (random but reproducible class probabilities). Without `cpu_ms`
    the file is as written before `predict_cpu_ms` existed; with it, every row carries that much."""
    rng = np.random.default_rng(seed)
    n = len(frame)
    ids = [str(uuid.UUID(int=int(rng.integers(0, 2**62)) + i)) for i in range(n)]
    ftype = feature_struct_type([f.name for f in features], [f.kind for f in features])
    arrays = [pa.array(frame[f.name].to_numpy(dtype=float), type=pa.float64()) for f in features]
    proba = rng.dirichlet([1, 1, 1], n)
    table = pa.Table.from_arrays(
        [
            pa.array(ids),
            pa.array([ts + timedelta(seconds=i % 60) for i in range(n)], type=pa.timestamp("us", tz="UTC")),
            pa.array([model] * n),
            pa.array([version] * n),
            pa.array([arm] * n),
            pa.array(["online"] * n),
            pa.StructArray.from_arrays(arrays, fields=list(ftype)),
            pa.array([CLASSES[i] for i in proba.argmax(axis=1)]),
            pa.array([json.dumps(dict(zip(CLASSES, p.tolist(), strict=True))) for p in proba]),
            pa.array(np.full(n, 2.5)),
            *([] if cpu_ms is None else [pa.array(np.full(n, cpu_ms))]),
        ],
        schema=prediction_schema(ftype, regression=False)
        if cpu_ms is not None
        else _without(prediction_schema(ftype, regression=False), "predict_cpu_ms"),
    )
    # The legacy layout (day folders, no hours): readers still read logs written before hourly partitions.
    folder = log_dir / "predictions" / f"date={ts.date().isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"pred-test-{uuid.uuid4().hex[:8]}.parquet")
    return ids


def _without(schema: pa.Schema, name: str) -> pa.Schema:
    """A schema of files written before `name` existed (readers line files up by column name)."""
    return schema.remove(schema.get_field_index(name))


def write_feedback(log_dir: Path, ids: list[str], labels: list[str], ts: datetime) -> None:
    table = pa.Table.from_arrays(
        [pa.array(ids), pa.array([ts] * len(ids), type=pa.timestamp("us", tz="UTC")), pa.array(labels)],
        schema=feedback_schema(regression=False),
    )
    folder = log_dir / "feedback" / f"date={ts.date().isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"fb-test-{uuid.uuid4().hex[:8]}.parquet")


@pytest.fixture()
def features(red: pd.DataFrame) -> list[FeatureSpec]:
    return [FeatureSpec(c, "numeric") for c in red.columns if c != "quality"]


@pytest.fixture()
def state(red: pd.DataFrame, features: list[FeatureSpec]) -> ReferenceState:
    reference = red.sample(1200, random_state=1)
    return ReferenceState.build(
        reference, features, task="multiclass", monitoring=MonitoringConfig(), target="quality",
        classes=[5, 6, 7], reference_predictions=reference["quality"].clip(5, 7).astype(str),
        model_name="wine", model_version="1", metric_name="accuracy", reference_metric=0.6,
    )  # fmt: skip


def run(
    log_dir: Path, state: ReferenceState, start: datetime, end: datetime, mon: MonitoringConfig | None = None
):  # noqa: ANN201
    window = read_window(log_dir, "wine", start=start, end=end)
    labeled, unknown = read_labeled(log_dir, "wine", start=start, end=end)
    return evaluate_window(
        state, window, labeled, monitoring=mon or MonitoringConfig(), unknown_labels=unknown
    )


def test_white_wine_window_drifts_red_window_does_not(
    tmp_path: Path, red: pd.DataFrame, white: pd.DataFrame, features: list[FeatureSpec], state: ReferenceState
) -> None:
    write_predictions(tmp_path, red.drop(red.sample(1200, random_state=1).index), features, ts=NOW)
    calm = run(tmp_path, state, NOW - timedelta(minutes=5), NOW + timedelta(minutes=5))
    assert calm.status == "ok" and calm.n_rows == 399
    assert calm.drift is not None and calm.drift.dataset_drift is False
    assert calm.quality is not None and calm.quality.passed, calm.quality.problems

    later = NOW + timedelta(hours=2)
    write_predictions(tmp_path, white.head(800), features, ts=later, seed=1)
    drifted = run(tmp_path, state, later - timedelta(minutes=5), later + timedelta(minutes=5))
    assert drifted.n_rows == 800 and drifted.drift is not None and drifted.drift.dataset_drift is True
    assert drifted.drift.column("total sulfur dioxide").drift is True
    assert drifted.quality is not None and not drifted.quality.passed  # white wine leaves red's ranges
    assert drifted.prediction_drift is not None and drifted.prediction_drift.method == "jensenshannon"


def test_empty_window_is_no_data_not_an_error(tmp_path: Path, red: pd.DataFrame, features, state) -> None:  # noqa: ANN001
    write_predictions(tmp_path, red.head(10), features, ts=NOW)
    result = run(tmp_path, state, NOW + timedelta(days=1), NOW + timedelta(days=2))
    assert result.status == "no_data" and result.no_data and result.n_rows == 0 and result.drift is None
    few = run(tmp_path, state, NOW - timedelta(minutes=1), NOW + timedelta(minutes=2))
    assert few.status == "no_data" and few.n_rows == 10 and few.drift is None  # below monitoring.min_rows
    assert run(tmp_path / "nothing", state, NOW, NOW + timedelta(hours=1)).status == "no_data"


def test_missing_feature_is_a_quality_failure(tmp_path: Path, red: pd.DataFrame, features, state) -> None:  # noqa: ANN001
    write_predictions(tmp_path, red.head(200), [f for f in features if f.name != "alcohol"], ts=NOW)
    result = run(tmp_path, state, NOW - timedelta(minutes=1), NOW + timedelta(minutes=5))
    assert result.quality is not None and not result.quality.passed
    assert "alcohol: column missing from the prediction log" in result.quality.problems
    assert (
        result.drift is not None
        and result.drift.column("alcohol").error == "column missing from the current data"
    )
    assert len(result.drift.tested) == len(features) - 1


def test_performance_from_feedback_and_unknown_labels(
    tmp_path: Path, red: pd.DataFrame, features: list[FeatureSpec], state: ReferenceState
) -> None:
    rows = red.head(300)
    ids = write_predictions(tmp_path, rows, features, ts=NOW)
    challenger_ids = write_predictions(
        tmp_path, red.iloc[300:400], features, ts=NOW, version="2", arm="challenger", seed=5
    )
    labels = rows["quality"].clip(5, 7).astype(str).tolist()
    write_feedback(tmp_path, ids[:250], ["5"] * 250, NOW + timedelta(minutes=1))  # superseded below
    write_feedback(tmp_path, ids[:250], labels[:250], NOW + timedelta(minutes=2))  # the latest label wins
    write_feedback(tmp_path, challenger_ids[:50], ["6"] * 50, NOW + timedelta(minutes=2))
    write_feedback(
        tmp_path, ["no-such-request-1", "no-such-request-2"], ["5", "6"], NOW + timedelta(minutes=3)
    )
    result = run(tmp_path, state, NOW - timedelta(minutes=1), NOW + timedelta(minutes=10))
    perf = result.performance
    assert perf is not None and perf.unknown_labels == 2
    champ = perf.group("1", "champion")
    assert champ is not None and champ.n_labeled == 250 and result.n_labeled == 250
    logged = pd.concat(pq.read_table(f).to_pandas() for f in (tmp_path / "predictions").rglob("*.parquet"))
    logged = logged.set_index("request_id").loc[ids[:250], "prediction"].tolist()
    assert champ.metrics["accuracy"].value == pytest.approx(accuracy_score(labels[:250], logged))
    expected_f1 = f1_score(labels[:250], logged, labels=CLASSES, average="macro", zero_division=0)
    assert champ.metrics["f1_macro"].value == pytest.approx(expected_f1)
    assert result.champion_metric == champ.metrics["accuracy"].value and result.reference_metric == 0.6
    challenger = perf.group("2", "challenger")
    assert challenger is not None and challenger.n_labeled == 50
    assert result.target_drift is not None and result.target_drift.method == "jensenshannon"


def test_last_n_rows_window(tmp_path: Path, red: pd.DataFrame, features: list[FeatureSpec]) -> None:
    write_predictions(tmp_path, red.head(300), features, ts=NOW)
    newest = write_predictions(tmp_path, red.iloc[300:350], features, ts=NOW + timedelta(hours=1), seed=3)
    window = read_window(tmp_path, "wine", last=50)
    assert len(window.rows) == 50 and set(window.rows["request_id"]) == set(newest)
    assert window.start is not None and window.start >= NOW + timedelta(hours=1)
    assert "alcohol" in window.feature_columns and "prediction" not in window.feature_columns
    assert len(read_window(tmp_path, "other-model", last=50).rows) == 0


def test_feedback_matching_no_prediction_is_counted_shown_and_exported(
    tmp_path: Path, red: pd.DataFrame, features: list[FeatureSpec], state: ReferenceState,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from prometheus_client import CollectorRegistry

    from driftloop.monitor.publish import export_gauges

    write_feedback(tmp_path, ["typo-1", "typo-2", "typo-3"], ["5", "6", "7"], NOW)
    # No prediction logged at all yet: every label is unmatched (this once read as 0).
    assert read_labeled(tmp_path, "wine", start=None, end=None)[1] == 3
    write_predictions(tmp_path, red.head(40), features, ts=NOW)
    result = run(tmp_path, state, NOW - timedelta(minutes=1), NOW + timedelta(minutes=10))
    assert result.performance is not None and result.performance.unknown_labels == 3
    registry = CollectorRegistry()
    export_gauges(result, registry)
    assert registry.get_sample_value("driftloop_feedback_unmatched") == 3
    from driftloop.cli.monitor import print_performance  # `driftloop monitor` prints the performance so

    print_performance(result.to_dict()["performance"])
    assert "unmatched feedback: 3 label(s)" in capsys.readouterr().out


def test_multivariate_pass_catches_broken_dependence_that_column_tests_miss(
    tmp_path: Path, red: pd.DataFrame, features: list[FeatureSpec]
) -> None:
    # Fixed acidity moves with density, citric acid and pH in red wine; shuffling it within the window keeps
    # its distribution (and every other column's) and breaks all of that.
    mon = MonitoringConfig(multivariate=True)
    reference = red.sample(1200, random_state=1)
    state = ReferenceState.build(
        reference, features, task="multiclass", monitoring=mon, target="quality", classes=[5, 6, 7],
        model_name="wine", model_version="1",
    )  # fmt: skip
    window = red.drop(reference.index).sample(399, random_state=2)
    shuffled = window.assign(
        **{"fixed acidity": np.random.default_rng(3).permutation(window["fixed acidity"].to_numpy())}
    )
    write_predictions(tmp_path, window, features, ts=NOW)
    later = NOW + timedelta(hours=2)
    write_predictions(tmp_path, shuffled, features, ts=later, seed=1)

    calm = run(tmp_path, state, NOW - timedelta(minutes=5), NOW + timedelta(minutes=5), mon)
    broken = run(tmp_path, state, later - timedelta(minutes=5), later + timedelta(minutes=5), mon)
    assert calm.drift is not None and broken.drift is not None
    # Every column holds the same values in both windows: the column tests give the same verdicts.
    assert [c.statistic for c in broken.drift.columns] == [c.statistic for c in calm.drift.columns]
    assert [m.drift for m in calm.multivariate] == [False, False]
    classifier = broken.multivariate[0]
    assert classifier.method == "domain_classifier" and classifier.drift
    assert classifier.drivers[0]["feature"] == "fixed acidity"
    assert broken.to_dict()["multivariate"][0]["drift"] is True
    # Off by default: a pass costs no classifier unless asked.
    assert run(tmp_path, state_without(red, features), later, later + timedelta(minutes=5)).multivariate == []


def state_without(red: pd.DataFrame, features: list[FeatureSpec]) -> ReferenceState:
    return ReferenceState.build(
        red.sample(500, random_state=4), features, task="multiclass", monitoring=MonitoringConfig(),
        model_name="wine", model_version="1",
    )  # fmt: skip
