"""Batch scoring when the trees do not compile: the fault injected at the compiler's child process, the job
scores with the model as logged, says so once in the log, and predicts what the logged model predicts."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from driftloop.compiled import booster
from driftloop.scale import scoring
from driftloop.stores.models import FeatureSpec, ModelBundle, ModelSpec, load_bundle_dir, save_bundle_dir


def _lightgbm_folder(tmp_path: Path) -> Path:
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    spec = ModelSpec(
        task="binary",
        target="y",
        features=tuple(FeatureSpec(f"x{i}", "numeric") for i in range(3)),
        classes=(0, 1),
    )
    model = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y).booster_
    return save_bundle_dir(ModelBundle(spec, model, "lightgbm"), tmp_path / "model")


def test_a_compiler_that_crashes_leaves_the_logged_model_scoring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _lightgbm_folder(tmp_path)
    logged = load_bundle_dir(folder)
    # The compile child dies (an LLVM crash, a killed process): exit code 1, no object file.
    monkeypatch.setattr(booster, "run_child", lambda args: (1, "Segmentation fault"))
    with caplog.at_level(logging.WARNING, logger=scoring.__name__):
        assert scoring._compile(logged, folder) is None
    assert "compiling its trees failed" in caplog.text and "Segmentation fault" in caplog.text
    assert not list(folder.rglob("*.o")), "a failed compile left an object file behind"

    loc = scoring.ModelLocator("m", "1", str(folder), "sqlite:///unused.db")
    served = scoring.worker_bundle(loc, compiled=True)
    assert not isinstance(served.estimator, booster.CompiledBooster)
    X = np.random.default_rng(1).normal(size=(50, 3))
    np.testing.assert_array_equal(served.predict_matrix(X).proba, logged.predict_matrix(X).proba)
