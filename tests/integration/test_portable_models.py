"""A model driftloop logs loads and predicts with `mlflow.pyfunc.load_model` in a fresh environment that holds
only the model's own requirements (built with uv, no driftloop), and answers what driftloop answers: the
class and per-class probabilities, for a LightGBM model, a scikit-learn model and an ensemble with a
categorical feature.

Its models are logged to a throwaway SQLite MLflow of its own, whatever the run's backend: it runs once,
in the SQLite pass.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest

from driftloop.stores.models import (
    Encoder,
    Ensemble,
    EnsembleMember,
    FeatureSpec,
    ModelBundle,
    ModelSpec,
    load_bundle_dir,
    log_bundle,
)
from driftloop.train.candidates import FAMILIES, Problem
from tests.integration.serve_support import FEATURES

pytestmark = pytest.mark.no_database
COLUMNS = [*FEATURES, "colour"]

SCRIPT = """
import importlib.util, json, sys
import mlflow, pandas as pd
assert importlib.util.find_spec("driftloop") is None, "driftloop is installed in the fresh environment"
rows = json.loads(open(sys.argv[2]).read())
out = {}
for name, folder in json.loads(sys.argv[1]).items():
    model = mlflow.pyfunc.load_model(folder)
    answer = model.predict(pd.DataFrame(rows["data"], columns=rows["columns"]))
    out[name] = answer.to_dict(orient="split")
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def models(
    tmp_path_factory: pytest.TempPathFactory, red: pd.DataFrame, white: pd.DataFrame
) -> Iterator[tuple[dict[str, Path], pd.DataFrame]]:
    """A LightGBM model on the numeric features, and an ensemble (LightGBM + logistic regression) and a
    logistic regression alone with the categorical `colour`, logged by driftloop and downloaded as model
    folders."""
    root = tmp_path_factory.mktemp("portable")
    both = pd.concat([red.assign(colour="red"), white.assign(colour="white")], ignore_index=True)
    frame = both.sample(1500, random_state=0).reset_index(drop=True)  # small: fast to fit and to log
    classes = tuple(sorted(int(c) for c in frame.quality.unique()))
    y = np.searchsorted(classes, frame.quality)
    numeric = tuple(FeatureSpec(f, "numeric", nullable=False) for f in FEATURES)
    colour = FeatureSpec("colour", "categorical", categories=("red", "white"))
    single = ModelSpec("multiclass", "quality", numeric, classes)
    mixed = ModelSpec("multiclass", "quality", (*numeric, colour), classes)
    X1, X2 = Encoder(single).encode_frame(frame), Encoder(mixed).encode_frame(frame)
    linear = FAMILIES["linear"]  # the search's own build: a pipeline that imputes the unseen category
    problem = Problem("multiclass", len(COLUMNS), (len(FEATURES),), seed=0)
    booster = lgb.LGBMClassifier(n_estimators=20, verbose=-1, random_state=0).fit(X1, y).booster_
    members = [
        EnsembleMember(lgb.LGBMClassifier(n_estimators=15, verbose=-1).fit(X2, y).booster_, "lightgbm", 2.0),
        EnsembleMember(linear.build(linear.defaults(problem)[0], problem, 1).fit(X2, y), "sklearn", 1.0),
    ]
    bundles = {
        "lightgbm": ModelBundle(single, booster, "lightgbm"),
        "ensemble": ModelBundle(mixed, Ensemble(members, "multiclass", len(classes)), "ensemble"),
        # A single scikit-learn model (what `train` picks when the linear family wins): its pyfunc flavor
        # names its file under model_path, not data, so MLflow hands the loader the model folder itself.
        "linear": ModelBundle(
            mixed, linear.build(linear.defaults(problem)[0], problem, 2).fit(X2, y), "sklearn"
        ),
    }
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("portable", artifact_location=(root / "artifacts").as_uri())
        folders = {}
        for name, bundle in bundles.items():
            with mlflow.start_run(experiment_id=experiment):
                info = log_bundle(bundle, input_example=frame[COLUMNS].head(3))
            folders[name] = Path(
                mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(root / name))
            )
    finally:
        mlflow.set_tracking_uri(previous)
    yield folders, frame


def test_a_model_predicts_in_a_fresh_environment_with_only_its_requirements(
    models: tuple[dict[str, Path], pd.DataFrame], tmp_path: Path
) -> None:
    folders, frame = models
    for folder in folders.values():  # nothing pickled, the loader shipped with the model
        files = {p.name for p in folder.rglob("*") if p.is_file()}
        assert "driftloop_pyfunc.py" in files, files
        assert not any(f.endswith((".pkl", ".pickle", ".cloudpickle")) for f in files), files
    wanted = (folders["ensemble"] / "requirements.txt").read_text().split()
    # The ensemble needs all that the LightGBM model needs, and skops: one environment serves both.
    for single in ("lightgbm", "linear"):
        assert set((folders[single] / "requirements.txt").read_text().split()) <= set(wanted)
    venv = tmp_path / "venv"
    uv = shutil.which("uv")
    assert uv is not None
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [
        uv,
        "pip",
        "install",
        "-q",
        "--python",
        str(python),
        "-r",
        str(folders["ensemble"] / "requirements.txt"),
    ]
    subprocess.run(install, check=True)
    # Rows with a category the models never saw and one missing. (Integers for double columns are taken
    # from JSON, see test_serve_invocations; a DataFrame's int64 column MLflow itself refuses for a double.)
    rows = frame[COLUMNS].sample(40, random_state=1).reset_index(drop=True)
    rows.loc[0, "colour"] = "rosé"
    rows.loc[1, "colour"] = None
    payload = tmp_path / "rows.json"
    payload.write_text(json.dumps(rows.to_dict(orient="split")))
    done = subprocess.run(
        [str(python), "-c", SCRIPT, json.dumps({k: str(v) for k, v in folders.items()}), str(payload)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the project's folder: nothing of driftloop on the path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    for name, folder in folders.items():
        bundle = load_bundle_dir(folder)
        ours = bundle.predict_frame(rows)
        theirs = answers[name]
        assert theirs["columns"] == ["prediction", *(f"proba_{c}" for c in bundle.spec.classes)], name
        got = np.array([r[1:] for r in theirs["data"]], dtype=np.float64)
        assert [r[0] for r in theirs["data"]] == ours.labels.tolist(), name
        assert ours.proba is not None and np.array_equal(got, ours.proba), name
