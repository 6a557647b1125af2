"""Faulty models for the fault-injection suite: real scikit-learn estimators, saved in driftloop's model
format (skops, with the exact list of types to trust), registered in MLflow and deployed through the
registry's state machine, so the server and the controller load them the normal way.

The class must be importable where the model is loaded: the suite puts the repository on `PYTHONPATH` of
the processes it starts, as a user's own estimator package would be installed next to driftloop.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import RandomForestClassifier

from driftloop.registry import deployments
from driftloop.stores import Stores
from driftloop.stores.models import Encoder, ModelBundle, ModelSpec, log_bundle
from driftloop.stores.tracking import TrackingStore


class InjectedFault(RuntimeError):
    """What a FaultyClassifier raises: a model bug on some inputs."""


def row_bucket(row: np.ndarray, salt: int = 0) -> int:
    """A stable number in [0, 100) per input row: the same row always gets the same fate."""
    digest = hashlib.blake2b(salt.to_bytes(8, "big") + row.tobytes(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % 100


class FaultyClassifier(ClassifierMixin, BaseEstimator):
    """A classifier that raises on `fail_percent`% of input rows (by row_bucket) and sleeps
    `sleep_seconds` per predict call; otherwise it is `estimator`, fitted."""

    def __init__(
        self, estimator: Any = None, fail_percent: int = 0, sleep_seconds: float = 0.0, salt: int = 0
    ) -> None:
        self.estimator = estimator
        self.fail_percent = fail_percent
        self.sleep_seconds = sleep_seconds
        self.salt = salt

    def fit(self, X: np.ndarray, y: np.ndarray) -> FaultyClassifier:
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.sleep_seconds:
            time.sleep(self.sleep_seconds)
        X = np.ascontiguousarray(X, dtype=np.float64)
        failing = [i for i in range(len(X)) if row_bucket(X[i], self.salt) < self.fail_percent]
        if failing:
            raise InjectedFault(f"injected fault on row(s) {failing[:5]}")
        return self.estimator_.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def register_faulty(
    tracking: TrackingStore,
    spec: ModelSpec,
    frame: pd.DataFrame,
    *,
    fail_percent: int = 0,
    sleep_seconds: float = 0.0,
) -> tuple[str, FaultyClassifier]:
    """Fit a FaultyClassifier on `frame` with `spec`, log it in driftloop's format and register it."""
    index = {c: i for i, c in enumerate(spec.classes)}
    X = Encoder(spec).encode_frame(frame)
    y = frame[spec.target].map(index).to_numpy()
    assert set(y) == set(range(len(spec.classes))), "every class must be seen: probabilities in spec order"
    # The server warms every model on rows of zeros before it swaps it in; a model that cannot answer those
    # would never be served at all, which is another fault than the one injected here: pick a salt that
    # spares them.
    zeros = np.zeros(len(spec.features))
    salt = next(s for s in range(1000) if row_bucket(zeros, s) >= fail_percent)
    inner = RandomForestClassifier(n_estimators=30, min_samples_leaf=3, random_state=0)
    est = FaultyClassifier(inner, fail_percent=fail_percent, salt=salt).fit(X, y)
    est.sleep_seconds = sleep_seconds  # set after fitting, which never predicts anyway
    with mlflow.start_run(experiment_id=tracking.experiment_id(), run_name="faulty-model") as run:
        info = log_bundle(ModelBundle(spec, est, "sklearn"))
    return tracking.register(info.model_uri, run.info.run_id, tags={"note": "fault injection"}), est


def deploy_faulty_challenger(
    stores: Stores, frame: pd.DataFrame, *, weight: float, fail_percent: int = 0, sleep_seconds: float = 0.0
) -> str:
    """Register a FaultyClassifier with the champion's spec and start its canary at `weight`."""
    dep = stores.metadata.get_deployment(stores.model_name)
    assert dep.champion is not None, "deploy a champion first"
    spec = stores.tracking.load_bundle(dep.champion).spec
    version, _ = register_faulty(
        stores.tracking, spec, frame, fail_percent=fail_percent, sleep_seconds=sleep_seconds
    )
    deployments.set_challenger(stores, version, reason="test: faulty challenger")
    deployments.start_canary(stores, version, weight=weight, reason="test: faulty challenger")
    return version


__all__ = ["FaultyClassifier", "InjectedFault", "deploy_faulty_challenger", "register_faulty", "row_bucket"]
