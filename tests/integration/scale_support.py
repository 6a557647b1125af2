"""A registered champion model for the scale tests: LightGBM on red wine, real MLflow on this run's backend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from driftloop.stores import Stores

FEATURES = [
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
]
NOT_NULLABLE = "alcohol"


@dataclass
class ScaleProject:
    config: Path
    stores: Stores
    version: str


def make_project(root: Path, red: pd.DataFrame) -> ScaleProject:
    """Config, stores, and one LightGBM version of red wine deployed as champion (alcohol not nullable).

    The task follows the target: binary when `red.quality` holds two values (e.g. 0/1), else multiclass.
    """
    import lightgbm as lgb
    import mlflow

    from driftloop.config import load_config
    from driftloop.stores import open_stores
    from driftloop.stores.models import Encoder, FeatureSpec, ModelBundle, ModelSpec, log_bundle
    from tests.conftest import write_project

    config = write_project(root)
    stores = open_stores(load_config(config))
    classes = sorted(red.quality.unique().tolist())
    spec = ModelSpec(
        task="binary" if len(classes) == 2 else "multiclass",
        target="quality",
        features=tuple(FeatureSpec(f, "numeric", nullable=f != NOT_NULLABLE) for f in FEATURES),
        classes=tuple(classes),
    )
    X = Encoder(spec).encode_frame(red)
    y = np.searchsorted(classes, red.quality)
    booster = lgb.LGBMClassifier(n_estimators=30, verbose=-1).fit(X, y).booster_
    bundle = ModelBundle(spec, booster, "lightgbm")
    ts = stores.tracking
    mlflow.set_tracking_uri(ts.tracking_uri)
    with mlflow.start_run(experiment_id=ts.experiment_id()) as run:
        info = log_bundle(bundle, input_example=red[FEATURES].head(3))
    version = ts.register(info.model_uri, run.info.run_id)
    dep = stores.metadata.get_deployment(stores.model_name)
    stores.metadata.update_deployment(dep, champion=version, reason="test")
    return ScaleProject(config=config, stores=stores, version=version)
