"""scikit-learn forests served through treelite: the same answers as scikit-learn, in the pool, and the original
model whenever the converted one cannot be trusted."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pytest
import treelite.sklearn
from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from driftloop.compiled import forest, served_form
from driftloop.serve.pool import ModelPool, compile_loaded, load_model
from driftloop.stores.metadata import Deployment
from driftloop.stores.models import (
    Ensemble,
    EnsembleMember,
    FeatureSpec,
    ModelBundle,
    ModelSpec,
    save_bundle_dir,
)


@pytest.fixture(scope="module")
def wine(red: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    df = red.head(600)
    X = df.drop(columns="quality").to_numpy(np.float64)
    classes, y = np.unique(df["quality"].to_numpy(), return_inverse=True)
    return X, y, classes


def spec(task: str, classes: np.ndarray | tuple = ()) -> ModelSpec:
    return ModelSpec(
        task=task,  # type: ignore[arg-type]
        target="quality",
        features=tuple(FeatureSpec(f"x{j}", "numeric") for j in range(11)),
        classes=tuple(int(c) for c in classes),
    )


def rows_with_gaps(X: np.ndarray) -> np.ndarray:
    """Training rows (values exactly on split thresholds' neighbours) and random rows, some values missing."""
    rng = np.random.default_rng(3)
    out = np.vstack([X[:150], rng.normal(X.mean(0), X.std(0), size=(150, X.shape[1]))])
    out[::4, ::3] = np.nan
    return out


def loaded(bundle: ModelBundle, folder: Path):  # noqa: ANN201
    return load_model("1", save_bundle_dir(bundle, folder), unknown_fields="reject", max_rows=10_000)


def test_multiclass_forest_answers_like_scikit_learn(wine, tmp_path: Path) -> None:
    X, y, classes = wine
    rf = RandomForestClassifier(40, n_jobs=1, random_state=0).fit(X, y)
    native = loaded(ModelBundle(spec("multiclass", classes), rf, "sklearn"), tmp_path / "m")
    fast = compile_loaded(native)
    assert fast is not None and fast.compiled and not native.compiled
    assert isinstance(fast.bundle.estimator, forest.CompiledForest)
    rows = rows_with_gaps(X)
    for n in (1, 7, 100, len(rows)):  # small batches through GTIL, the largest through scikit-learn
        want, got = native.bundle.predict_matrix(rows[:n]), fast.bundle.predict_matrix(rows[:n])
        np.testing.assert_allclose(got.proba, want.proba, rtol=0, atol=1e-6)
        assert got.labels.tolist() == want.labels.tolist()
    assert forest.cache_path(tmp_path / "m" / "model.skops").exists()


def test_regression_forest_answers_like_scikit_learn(wine, tmp_path: Path) -> None:
    X, y, _ = wine
    et = ExtraTreesRegressor(40, n_jobs=1, random_state=0).fit(X, y.astype(float))
    native = loaded(ModelBundle(spec("regression"), et, "sklearn"), tmp_path / "m")
    fast = compile_loaded(native)
    assert fast is not None and fast.compiled
    rows = rows_with_gaps(X)[:100]
    np.testing.assert_allclose(
        fast.bundle.predict_matrix(rows).labels, native.bundle.predict_matrix(rows).labels, rtol=0, atol=1e-6
    )


def test_ensemble_members_are_compiled_each(wine, tmp_path: Path) -> None:
    X, y, classes = wine
    members = [
        EnsembleMember(RandomForestClassifier(30, n_jobs=1, random_state=0).fit(X, y), "sklearn", 0.5),
        EnsembleMember(
            lightgbm.train(
                {"objective": "multiclass", "num_class": len(classes), "verbose": -1},
                lightgbm.Dataset(X, y),
                num_boost_round=10,
            ),
            "lightgbm",
            0.3,
        ),
        EnsembleMember(LogisticRegression(max_iter=200).fit(X, y), "sklearn", 0.2),
    ]
    bundle = ModelBundle(
        spec("multiclass", classes), Ensemble(members, "multiclass", len(classes)), "ensemble"
    )
    native = loaded(bundle, tmp_path / "m")
    fast = compile_loaded(native)
    assert fast is not None and fast.compiled
    kinds = [type(m.estimator).__name__ for m in fast.bundle.estimator.members]
    assert kinds == ["CompiledForest", "CompiledBooster", "LogisticRegression"]
    rows = np.nan_to_num(rows_with_gaps(X)[:50])  # the linear member takes no missing values
    want, got = native.bundle.predict_matrix(rows), fast.bundle.predict_matrix(rows)
    np.testing.assert_allclose(got.proba, want.proba, rtol=0, atol=1e-6)


def test_the_pool_serves_the_compiled_forest(wine, tmp_path: Path) -> None:
    X, y, classes = wine
    rf = RandomForestClassifier(30, n_jobs=1, random_state=0).fit(X, y)
    folder = save_bundle_dir(ModelBundle(spec("multiclass", classes), rf, "sklearn"), tmp_path / "m")
    pool = ModelPool(
        "wine", lambda: Deployment("wine", revision=1, champion="1"), lambda _: folder, poll_seconds=0.05
    ).start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (pool.state and pool.state.champion.compiled):
            time.sleep(0.05)
        state = pool.state
        assert state is not None and state.champion.compiled
        assert isinstance(state.champion.bundle.estimator, forest.CompiledForest)
        assert pool.status()["deployment"]["compiled"] == {"1": True}
        np.testing.assert_allclose(
            state.champion.bundle.predict_matrix(X[:5]).proba, rf.predict_proba(X[:5]), rtol=0, atol=1e-6
        )
    finally:
        pool.stop()


def test_a_corrupt_cache_is_converted_again(wine, tmp_path: Path) -> None:
    X, y, classes = wine
    rf = RandomForestClassifier(20, n_jobs=1, random_state=0).fit(X, y)
    native = loaded(ModelBundle(spec("multiclass", classes), rf, "sklearn"), tmp_path / "m")
    cache = forest.cache_path(tmp_path / "m" / "model.skops")
    cache.write_bytes(b"not a treelite model")
    fast = compile_loaded(native)
    assert fast is not None and fast.compiled
    assert cache.read_bytes() != b"not a treelite model"
    np.testing.assert_allclose(
        fast.bundle.predict_matrix(X[:9]).proba, rf.predict_proba(X[:9]), rtol=0, atol=1e-6
    )


def test_a_cache_of_another_forest_is_not_trusted(wine, tmp_path: Path) -> None:
    """A readable cache that answers differently (another model's) is replaced, never served."""
    X, y, classes = wine
    rf = RandomForestClassifier(20, n_jobs=1, random_state=0).fit(X, y)
    other = RandomForestClassifier(20, n_jobs=1, random_state=1).fit(X, y)
    native = loaded(ModelBundle(spec("multiclass", classes), rf, "sklearn"), tmp_path / "m")
    cache = forest.cache_path(tmp_path / "m" / "model.skops")
    treelite.sklearn.import_model(other).serialize(str(cache))
    fast = compile_loaded(native)
    assert fast is not None
    np.testing.assert_allclose(
        fast.bundle.predict_matrix(X[:50]).proba, rf.predict_proba(X[:50]), rtol=0, atol=1e-6
    )


def test_when_conversion_keeps_failing_the_pool_serves_scikit_learn(
    wine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    X, y, classes = wine
    rf = RandomForestClassifier(20, n_jobs=1, random_state=0).fit(X, y)
    folder = save_bundle_dir(ModelBundle(spec("multiclass", classes), rf, "sklearn"), tmp_path / "m")
    calls = []

    def corrupt_converter(model_file: Path, out: Path, trusted: list[str]) -> tuple[int, str]:
        calls.append(out)
        out.write_bytes(b"garbage")  # the child 'succeeds' but writes a broken cache
        return 0, ""

    monkeypatch.setattr(forest, "_run_converter", corrupt_converter)
    caplog.set_level(logging.WARNING)
    pool = ModelPool(
        "wine", lambda: Deployment("wine", revision=1, champion="1"), lambda _: folder, poll_seconds=0.05
    ).start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "stays uncompiled" not in caplog.text:
            time.sleep(0.05)
        time.sleep(0.3)  # more polls: the version is not tried again
    finally:
        pool.stop()
    assert len(calls) == 2  # the first cache, then once more
    assert caplog.text.count("stays uncompiled") == 1
    state = pool.state
    assert state is not None and not state.champion.compiled
    assert type(state.champion.bundle.estimator) is RandomForestClassifier
    np.testing.assert_allclose(state.champion.bundle.predict_matrix(X[:5]).proba, rf.predict_proba(X[:5]))


def test_served_form_times_forests_on_gtil_member_by_member_and_leaves_the_rest(wine) -> None:
    """What `train.cost` and the gate time: the form a worker serves once its conversions are done."""
    X, y, classes = wine
    rf = RandomForestClassifier(30, n_jobs=1, random_state=0).fit(X, y)
    booster = lightgbm.train(
        {"objective": "multiclass", "num_class": len(classes), "verbose": -1},
        lightgbm.Dataset(X, y),
        num_boost_round=5,
    )
    linear = LogisticRegression(max_iter=200).fit(X, y)
    members = [EnsembleMember(rf, "sklearn", 0.5), EnsembleMember(booster, "lightgbm", 0.3)]
    members.append(EnsembleMember(linear, "sklearn", 0.2))
    ensemble = ModelBundle(spec("multiclass", classes), Ensemble(members, "multiclass", 3), "ensemble")
    served = served_form(ensemble)
    kinds = [type(m.estimator).__name__ for m in served.estimator.members]
    assert kinds == [
        "CompiledForest",
        "Booster",
        "LogisticRegression",
    ]  # LightGBM: its booster, an upper bound
    assert [m.weight for m in served.estimator.members] == [0.5, 0.3, 0.2]
    rows = np.nan_to_num(rows_with_gaps(X)[:60])
    np.testing.assert_allclose(
        served.predict_matrix(rows).proba, ensemble.predict_matrix(rows).proba, rtol=0, atol=1e-6
    )
    alone = served_form(ModelBundle(spec("multiclass", classes), rf, "sklearn"))
    assert isinstance(alone.estimator, forest.CompiledForest) and alone.spec == ensemble.spec
    assert served_form(ModelBundle(spec("multiclass", classes), linear, "sklearn")).estimator is linear


def test_served_form_keeps_the_forest_when_its_conversion_fails(
    wine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker keeps serving scikit-learn then, so that is what must be timed."""
    X, y, classes = wine
    rf = RandomForestClassifier(10, n_jobs=1, random_state=0).fit(X, y)

    def disagreeing(model: object, estimator: object) -> forest.CompiledForest:
        raise ValueError("treelite disagrees with scikit-learn (max diff 0.5)")

    monkeypatch.setattr(forest, "CompiledForest", disagreeing)
    caplog.set_level(logging.WARNING)
    assert served_form(ModelBundle(spec("multiclass", classes), rf, "sklearn")).estimator is rf
    assert "timing the scikit-learn forest" in caplog.text and "disagrees" in caplog.text
