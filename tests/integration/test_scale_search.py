"""Model search across a 2-worker LocalCluster: the trainer's budget, defaults and quality, logged from workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from driftloop.scale.cluster import dask_client
from driftloop.scale.search import distributed_search
from driftloop.train.candidates import Problem
from driftloop.train.tuning import run_search
from tests.conftest import tracking_uri
from tests.integration.scale_support import FEATURES

BUDGET = dict(families=["lightgbm", "linear"], n_folds=3, trials=6, seconds=None)
N_DEFAULTS = 2  # one known-good setting per family, enqueued first


@pytest.fixture(scope="module")
def client() -> Iterator:
    with dask_client(None, n_workers=2, threads_per_worker=1, processes=False) as c:
        yield c


def test_distributed_search_matches_the_local_search(client, red: pd.DataFrame, tmp_path: Path) -> None:
    X = red[FEATURES].to_numpy(dtype=np.float64)
    classes = np.sort(red["quality"].unique())
    y = np.searchsorted(classes, red["quality"])
    problem = Problem(task="multiclass", n_features=X.shape[1], categorical=(), seed=42)

    local = run_search(X, y, problem, len(classes), "accuracy", n_jobs=1, **BUDGET)
    mlflow.set_tracking_uri(tracking_uri(tmp_path))
    experiment = mlflow.create_experiment("search", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment) as parent:
        spread = distributed_search(client, X, y, problem, len(classes), "accuracy", n_jobs=1, **BUDGET)

    assert len(spread.trials) == len(local.trials) == BUDGET["trials"]  # the same budget, exactly
    assert {t.number for t in spread.trials} == set(range(BUDGET["trials"]))
    # The enqueued defaults are the same trials with the same fold scores, wherever they ran.
    for t in local.trials[:N_DEFAULTS]:
        assert (spread.trials[t.number].family, spread.trials[t.number].params) == (t.family, t.params)
        assert spread.trials[t.number].cv.fold_scores == t.cv.fold_scores
    # Same best-model quality: the best CV accuracy is at least as good as the best default, and close
    # to the local search's (TPE proposes different points when trials run side by side).
    best_default = max(t.cv.mean for t in local.trials[:N_DEFAULTS])
    assert spread.best.cv.mean >= best_default
    assert abs(spread.best.cv.mean - local.best.cv.mean) < 0.02
    assert spread.estimator.predict(X[:5]).shape[0] == 5  # refitted on the client

    logged = mlflow.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'", output_format="list"
    )
    assert len(logged) == BUDGET["trials"]
    assert {r.data.tags["family"] for r in logged} == {"lightgbm", "linear"}
    best_run = [
        r for r in logged if r.info.run_name == f"trial-{spread.best.number:03d}-{spread.best.family}"
    ]
    assert best_run[0].data.metrics["cv_accuracy_mean"] == pytest.approx(spread.best.cv.mean)
