"""Fixtures of the fault-injection suite: the session's wine models, plus a model that breaks the way real
ones do on hostile values (a scaled linear model and float32 trees, with a categorical feature)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.integration.serve_support import FEATURES, WineModels, wine_models

__all__ = ["MIXED_FEATURES", "mixed_version", "wine_models"]

#: The wine features and the wine's colour, a categorical feature: the spec of the `mixed_version` model.
MIXED_FEATURES = [*FEATURES, "colour"]


@pytest.fixture(scope="session")
def mixed_version(wine_models: WineModels, red: pd.DataFrame, white: pd.DataFrame) -> str:
    """An ensemble of the search's own linear and extra-trees builds, registered as a version of "wine".

    Its members fail where the issue saw them fail: the linear pipeline's scaler on 1e308, the float32
    trees on 1e50. Without the checks at the door, one such row failed a whole micro-batch.
    """
    from driftloop.stores.models import Encoder, Ensemble, EnsembleMember, FeatureSpec, ModelBundle, ModelSpec
    from driftloop.train.candidates import FAMILIES, Problem

    frame = pd.concat([red.assign(colour="red"), white.assign(colour="white")], ignore_index=True)
    classes = sorted(int(c) for c in frame.quality.unique())
    spec = ModelSpec(
        task="multiclass",
        target="quality",
        features=(
            *(FeatureSpec(f, "numeric", nullable=False) for f in FEATURES),
            FeatureSpec("colour", "categorical", categories=("red", "white"), nullable=True),
        ),
        classes=tuple(classes),
    )
    X = Encoder(spec).encode_frame(frame)
    y = np.searchsorted(classes, frame.quality)
    problem = Problem("multiclass", len(MIXED_FEATURES), (len(FEATURES),), seed=0)
    members = []
    for family, extra in (("linear", {}), ("extra_trees", {"n_estimators": 10})):
        fam = FAMILIES[family]
        estimator = fam.build(fam.defaults(problem)[0] | extra, problem, 1).fit(X, y)
        members.append(EnsembleMember(estimator, "sklearn", 1.0, family=family))
    bundle = ModelBundle(spec, Ensemble(members, "multiclass", len(classes)), "ensemble")
    return wine_models.register(bundle, frame[MIXED_FEATURES].head(3))
