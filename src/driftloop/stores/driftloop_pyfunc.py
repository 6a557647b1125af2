"""MLflow's `python_function` loader of a driftloop model, shipped inside the model as `code/driftloop_pyfunc.py`.

`mlflow.pyfunc.load_model` (and so `mlflow models serve`) imports this file from the model's own `code/`
folder, so it runs with the model's requirements alone (numpy and pandas, PyYAML through MLflow, LightGBM
and/or skops) and never imports driftloop. It reads the spec from the MLmodel metadata, encodes a raw
feature DataFrame as driftloop's server does (numbers as floats; a categorical value as the index of its
category in the spec, NaN when missing or unseen), calls the native estimators (an ensemble member by
member) and labels the answer: for a classifier a DataFrame with `prediction` (the class) and one
`proba_<class>` column per class, for regression the predicted values.

driftloop's own code takes `native_output` and `read_ensemble` from here (one definition). The category
rule is a copy of `driftloop.kinds` (this file cannot import it); the tests check that a model loaded
through this file and driftloop's server answer the same on the same rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PortableModel", "load_model", "native_output", "proba_column", "read_ensemble", "read_model"]

SPEC_KEY = "driftloop"
ENSEMBLE_FILE = "ensemble.json"
PREDICTION_COLUMN = "prediction"
LOADERS = ("driftloop_pyfunc", "driftloop.stores.models")
"""The `python_function` loader modules of driftloop's models: this one, and the one models logged before it
named (in driftloop, which still loads them)."""


def native_output(flavor: str, estimator: Any, X: np.ndarray, task: str) -> np.ndarray:
    """One native model's output on the encoded matrix: (n, k) class probabilities, or (n,) values."""
    if flavor == "lightgbm":
        # One thread, like the compiled model: a request is too small to share, and OpenMP threads waiting
        # on a busy machine's cores made a 100-row predict 100x slower than one thread does.
        raw = estimator.predict(X, num_threads=1)
        if task == "regression":
            return np.asarray(raw, dtype=np.float64)
        return np.column_stack([1.0 - raw, raw]) if task == "binary" else np.asarray(raw)
    if task == "regression":
        return np.asarray(estimator.predict(X), dtype=np.float64)
    return np.asarray(estimator.predict_proba(X))


def load_native(flavor: str, path: Path, trusted: list[str] | None = None) -> Any:
    """A LightGBM booster file or a skops file (trusting exactly `trusted`), by flavor."""
    if flavor == "lightgbm":
        import lightgbm

        return lightgbm.Booster(model_file=str(path))
    if flavor == "sklearn":
        import skops.io

        return skops.io.load(path, trusted=trusted or [])
    raise ValueError(f"{path}: unsupported model flavor {flavor!r}")


def read_ensemble(folder: Path | str) -> tuple[dict[str, Any], list[tuple[dict[str, Any], Any]]]:
    """An ensemble folder's manifest and its members as (record, native estimator), in manifest order."""
    folder = Path(folder)
    manifest = json.loads((folder / ENSEMBLE_FILE).read_text())
    members = [
        (r, load_native(r["flavor"], folder / r["file"], r.get("skops_trusted_types")))
        for r in manifest["members"]
    ]
    return manifest, members


def proba_column(label: Any) -> str:
    """The probability column of a class: `proba_<label>` (an integral float label is its integer)."""
    label = _plain(label)
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    return f"proba_{label}"


class PortableModel:
    """What `mlflow.pyfunc.load_model` gives: raw feature rows in, labelled predictions out."""

    def __init__(self, spec: dict[str, Any], members: list[tuple[str, Any, float | None]]) -> None:
        """`members`: (flavor, native estimator, weight); one member of weight None for a single model."""
        self.spec = spec
        self.task = spec["task"]
        self.members = members
        self.features = spec["features"]
        self.classes = list(spec.get("classes") or [])
        self._codes = [
            {c: float(i) for i, c in enumerate(f.get("categories") or [])}
            if f["kind"] == "categorical"
            else None
            for f in self.features
        ]
        self._bools = [
            f["kind"] == "categorical"
            and bool(f.get("categories"))
            and set(f["categories"]) <= {"False", "True"}
            for f in self.features
        ]

    def encode(self, frame: Any) -> np.ndarray:
        """A DataFrame (or anything pandas makes one of) -> (n, p) float64 in spec order."""
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame(frame)
        missing = [f["name"] for f in self.features if f["name"] not in frame.columns]
        if missing:
            raise ValueError(f"missing feature column(s): {', '.join(missing)}")
        X = np.empty((len(frame), len(self.features)), dtype=np.float64)
        for j, (f, codes) in enumerate(zip(self.features, self._codes, strict=True)):
            col = frame[f["name"]]
            if codes is None:
                X[:, j] = pd.to_numeric(col, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                key = _bool_key if self._bools[j] else _category_key
                X[:, j] = [_code(codes, key, v) for v in col.tolist()]
        return X

    def output(self, X: np.ndarray) -> np.ndarray:
        """The weighted average of the members' outputs ((n, k) probabilities or (n,) values)."""
        # The same operations in the same order as driftloop's Ensemble, so the floats are the same too.
        total = float(sum(w or 0.0 for _, _, w in self.members))
        out: np.ndarray | None = None
        for flavor, estimator, weight in self.members:
            part = native_output(flavor, estimator, X, self.task)
            part = part if weight is None else np.float64(weight / total) * part
            out = part if out is None else out + part
        assert out is not None
        return out

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        return self.labelled(self.output(self.encode(model_input)))

    def labelled(self, out: np.ndarray) -> Any:
        """The answer: (n,) values for regression; for a classifier a DataFrame of the class and its
        probabilities (`out` is (n, k) in spec class order)."""
        import pandas as pd

        if self.task == "regression":
            floor = self.spec.get("minimum_prediction")
            return out if floor is None else np.maximum(out, floor)
        labels = [self.classes[i] for i in np.argmax(out, axis=1).tolist()]
        columns: dict[str, Any] = {PREDICTION_COLUMN: labels}
        columns.update({proba_column(c): out[:, k] for k, c in enumerate(self.classes)})
        return pd.DataFrame(columns)


def read_model(root: Path | str) -> tuple[dict[str, Any], str, Any]:
    """An MLflow model folder written by driftloop -> (spec as a dict, flavor, what the flavor holds): the
    native estimator (`lightgbm`, `sklearn`), or an ensemble's (manifest, members) as `read_ensemble` gives.
    ValueError if it is not one. driftloop's own loader reads model folders through this too."""
    import yaml

    root = Path(root)
    mlmodel = yaml.safe_load((root / "MLmodel").read_text())
    spec = (mlmodel.get("metadata") or {}).get(SPEC_KEY)
    if spec is None:
        raise ValueError(f"{root} is not a driftloop model: its MLmodel has no '{SPEC_KEY}' metadata")
    flavors = mlmodel.get("flavors", {})
    if "lightgbm" in flavors:
        return spec, "lightgbm", load_native("lightgbm", root / flavors["lightgbm"].get("data", "model.lgb"))
    if "sklearn" in flavors:
        conf = flavors["sklearn"]
        path = root / conf.get("pickled_model", "model.skops")
        return spec, "sklearn", load_native("sklearn", path, conf.get("skops_trusted_types"))
    pyfunc = flavors.get("python_function") or {}
    if pyfunc.get("loader_module") in LOADERS and pyfunc.get("data"):
        return spec, "ensemble", read_ensemble(root / pyfunc["data"])
    raise ValueError(f"{root}: unsupported model flavor(s) {sorted(flavors)}")


def load_model(root: Path | str) -> PortableModel:
    """The model in an MLflow model folder written by driftloop (any of its flavors)."""
    spec, flavor, native = read_model(root)
    if flavor != "ensemble":
        return PortableModel(spec, [(flavor, native, None)])
    return PortableModel(spec, [(r["flavor"], est, float(r["weight"])) for r, est in native[1]])


def _load_pyfunc(data_path: str) -> PortableModel:
    """MLflow's `loader_module` hook. `data_path` is the `python_function` flavor's `data` joined to the model
    folder (the native `model.lgb` file, an ensemble's `data/ensemble` folder) or, for a flavor that names its
    file under another key (sklearn's `model_path: model.skops`), the model folder itself: the model folder is
    the nearest one holding an MLmodel file."""
    data = Path(data_path).resolve()
    for folder in (data, *data.parents):
        if (folder / "MLmodel").is_file():
            return load_model(folder)
    raise ValueError(f"no MLmodel file in {data_path} or above it")


# -- the category rule of driftloop.kinds (a copy: this file must not import driftloop) ---------------------


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if item is not None and type(value).__module__ == "numpy" else value


def _category_key(value: Any) -> str | None:
    value = _plain(value)
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    if type(value) is float and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def _bool_key(value: Any) -> str | None:
    value = _plain(value)
    if type(value) is bool:
        return str(value)
    if type(value) in (int, float) and value in (0, 1):
        return str(bool(value))
    if type(value) is str:
        token = value.strip().lower()
        if token in ("true", "1"):
            return "True"
        if token in ("false", "0"):
            return "False"
    return None


def _code(codes: dict[str, float], key: Any, value: Any) -> float:
    """A value's category code; NaN when missing or unseen (a value the rule has no answer for is looked
    up as `str(value)`, as driftloop's Encoder does)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    k = key(value)
    return codes.get(str(value) if k is None else k, math.nan)
