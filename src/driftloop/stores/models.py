"""The model format every stage shares: a fitted estimator plus the spec that turns raw records into its input.

Estimators are fitted on a float matrix in spec order: numeric features as float, categorical features as
the index of the value in the spec's category list (NaN when missing or unseen). Classification targets are
the index of the class in `spec.classes`. So the serving hot path is: records -> numpy (no pandas) -> the
estimator's native predict.

On disk a bundle is an MLflow model in its flavor's native, pickle-free format (LightGBM booster text,
scikit-learn through skops with an explicit trusted-type list); the spec rides in the MLmodel `metadata`.
An ensemble (flavor `ensemble`) is a weighted average of such models: each member in its own native file
plus `ensemble.json` (members, flavors, weights, skops trusted types) in the model's `data/ensemble/`
folder, logged as an MLflow `python_function` model whose loader is this module (no pickle either).
`load_bundle_dir` reads any of them without importing MLflow, which keeps server start-up fast.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from driftloop.errors import DataError

SPEC_KEY = "driftloop"
ENSEMBLE_DIR = "ensemble"
"""The folder (inside the MLflow model's `data/`) holding an ensemble's members and `ensemble.json`."""
ENSEMBLE_FILE = "ensemble.json"
Flavor = Literal["lightgbm", "sklearn", "ensemble"]


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: Literal["numeric", "categorical"]
    categories: tuple[str, ...] = ()
    """Categorical values seen in training, as strings, in code order."""
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = True

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        return cls(
            name=d["name"],
            kind=d["kind"],
            categories=tuple(d.get("categories") or ()),
            minimum=d.get("minimum"),
            maximum=d.get("maximum"),
            nullable=bool(d.get("nullable", True)),
        )


@dataclass(frozen=True)
class ModelSpec:
    """What a model needs to know about its input and output, stored with it."""

    task: Literal["binary", "multiclass", "regression"]
    target: str
    features: tuple[FeatureSpec, ...]
    classes: tuple[Any, ...] = ()
    """Original class labels in index order (empty for regression)."""
    family: str = ""
    metric: str = ""
    data_version: str = ""

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = [asdict(f) | {"categories": list(f.categories)} for f in self.features]
        d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        return cls(
            task=d["task"],
            target=d["target"],
            features=tuple(FeatureSpec.from_dict(f) for f in d["features"]),
            classes=tuple(d.get("classes") or ()),
            family=d.get("family", ""),
            metric=d.get("metric", ""),
            data_version=d.get("data_version", ""),
        )


class Encoder:
    """Turns raw values into the estimator's float matrix. Built once per spec; cheap to call per request."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.names = spec.feature_names
        self.index = {n: i for i, n in enumerate(self.names)}
        self._codes: list[dict[str, float] | None] = [
            {c: float(i) for i, c in enumerate(f.categories)} if f.kind == "categorical" else None
            for f in spec.features
        ]

    def encode_frame(self, frame: Any) -> np.ndarray:
        """A pandas DataFrame (or dict of columns) -> (n, p) float64 in spec order. Missing columns raise."""
        missing = [n for n in self.names if n not in frame]
        if missing:
            raise DataError(f"missing feature column(s): {', '.join(missing)}")
        first = frame[self.names[0]]
        out = np.empty((len(first), len(self.names)), dtype=np.float64)
        for j, (name, codes) in enumerate(zip(self.names, self._codes, strict=True)):
            col = frame[name]
            if codes is None:
                out[:, j] = _as_float_column(col, name)
            else:
                out[:, j] = [_code(codes, v) for v in _values(col)]
        return out

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """JSON records -> (n, p) float64. Callers validate types first; this only converts."""
        out = np.empty((len(records), len(self.names)), dtype=np.float64)
        for j, (name, codes) in enumerate(zip(self.names, self._codes, strict=True)):
            if codes is None:
                for i, rec in enumerate(records):
                    v = rec.get(name)
                    out[i, j] = math.nan if v is None else float(v)
            else:
                for i, rec in enumerate(records):
                    out[i, j] = _code(codes, rec.get(name))
        return out


def _values(col: Any) -> Iterable[Any]:
    return col.tolist() if hasattr(col, "tolist") else list(col)


def _code(codes: dict[str, float], value: Any) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return codes.get(str(value), math.nan)


def _as_float_column(col: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(col, dtype=np.float64)
    except (TypeError, ValueError):
        bad = next((v for v in _values(col) if not _is_number_like(v)), None)
        raise DataError(f"column {name!r}: expected numbers, found {bad!r}") from None
    return arr


def _is_number_like(v: Any) -> bool:
    if v is None:
        return True
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


@dataclass
class Prediction:
    """Model output for n rows: labels (original class labels or values) and class probabilities."""

    labels: np.ndarray
    proba: np.ndarray | None = None
    """(n, k) in `spec.classes` order; None for regression."""


def native_output(flavor: str, estimator: Any, X: np.ndarray, task: str) -> np.ndarray:
    """One native model's output on the encoded matrix: (n, k) class probabilities, or (n,) values."""
    if flavor == "lightgbm":
        raw = estimator.predict(X)
        if task == "regression":
            return np.asarray(raw, dtype=np.float64)
        return np.column_stack([1.0 - raw, raw]) if task == "binary" else np.asarray(raw)
    if task == "regression":
        return np.asarray(estimator.predict(X), dtype=np.float64)
    return np.asarray(estimator.predict_proba(X))


@dataclass(frozen=True)
class EnsembleMember:
    """One model of an ensemble: a native estimator (LightGBM Booster or scikit-learn) and its weight."""

    estimator: Any
    flavor: Literal["lightgbm", "sklearn"]
    weight: float
    family: str = ""
    trial: int | None = None
    """The search trial it came from (for the record)."""


class Ensemble:
    """A weighted average of the members' probabilities (or values): what ensemble selection chose.

    It answers like a fitted scikit-learn estimator (`predict_proba`, `predict`, `classes_` = class
    indices), so the trainer scores it like any candidate.
    """

    def __init__(self, members: Sequence[EnsembleMember], task: str, n_classes: int) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        total = float(sum(m.weight for m in members))
        if not total > 0:
            raise ValueError("ensemble weights must sum to a positive number")
        self.members = list(members)
        self.task = task
        self.n_classes = n_classes
        self.weights = np.asarray([m.weight / total for m in members], dtype=np.float64)
        self.classes_ = np.arange(n_classes)

    def _average(self, X: np.ndarray) -> np.ndarray:
        out: np.ndarray | None = None
        for member, weight in zip(self.members, self.weights, strict=True):
            part = weight * native_output(member.flavor, member.estimator, X, self.task)
            out = part if out is None else out + part
        assert out is not None
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._average(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = self._average(X)
        return out if self.task == "regression" else out.argmax(axis=1)

    def describe(self) -> list[dict[str, Any]]:
        """Members as plain records (family, trial, weight), e.g. for a leaderboard."""
        return [
            {"family": m.family, "trial": m.trial, "weight": round(float(w), 6)}
            for m, w in zip(self.members, self.weights, strict=True)
        ]


@dataclass
class ModelBundle:
    """A fitted estimator with its spec. `flavor` is 'lightgbm' (native Booster), 'sklearn' or 'ensemble'."""

    spec: ModelSpec
    estimator: Any
    flavor: Flavor
    encoder: Encoder = field(init=False)

    def __post_init__(self) -> None:
        self.encoder = Encoder(self.spec)
        self._classes = np.asarray(self.spec.classes, dtype=object) if self.spec.classes else None

    def predict_matrix(self, X: np.ndarray) -> Prediction:
        """Predict on an already-encoded float matrix (the hot path)."""
        if self.flavor == "ensemble":
            out = self.estimator.predict_proba(X)
        else:
            out = native_output(self.flavor, self.estimator, X, self.spec.task)
        if self.spec.task == "regression":
            return Prediction(labels=out)
        assert self._classes is not None
        return Prediction(labels=self._classes[np.argmax(out, axis=1)], proba=out)

    def predict_frame(self, frame: Any) -> Prediction:
        return self.predict_matrix(self.encoder.encode_frame(frame))

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> Prediction:
        return self.predict_matrix(self.encoder.encode_records(records))


def sklearn_trusted_types(estimator: Any) -> list[str]:
    """The types skops must be told to trust to load this estimator: exactly those it contains."""
    import tempfile

    import skops.io

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.skops"
        skops.io.dump(estimator, path)
        return sorted(skops.io.get_untrusted_types(file=path))


def log_bundle(bundle: ModelBundle, *, name: str = "model", input_example: Any = None) -> Any:
    """Log the bundle to the active MLflow run in its native flavor; returns MLflow's ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature

    metadata = {SPEC_KEY: bundle.spec.to_dict()}
    signature = None
    if input_example is not None:
        out = bundle.predict_frame(input_example)
        signature = infer_signature(input_example, out.proba if out.proba is not None else out.labels)
    # Naming the requirements ourselves skips MLflow's inference, which re-imports the model in a
    # subprocess and costs ~10 s per model.
    requirements = _requirements(bundle)
    if bundle.flavor == "ensemble":
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / ENSEMBLE_DIR
            save_ensemble(bundle.estimator, folder)
            # A python_function model whose loader is this module: MLflow copies the folder to
            # data/ensemble and never pickles anything. Without the switch MLflow would also copy the
            # uv project found in the working directory (whatever it is) into the model.
            with _environ("MLFLOW_UV_AUTO_DETECT", "false"):
                return mlflow.pyfunc.log_model(
                    name=name,
                    loader_module=__name__,
                    data_path=str(folder),
                    signature=signature,
                    input_example=input_example,
                    metadata=metadata,
                    pip_requirements=requirements,
                )
    if bundle.flavor == "lightgbm":
        return mlflow.lightgbm.log_model(
            bundle.estimator,
            name=name,
            signature=signature,
            input_example=input_example,
            metadata=metadata,
            pip_requirements=requirements,
        )
    return mlflow.sklearn.log_model(
        bundle.estimator,
        name=name,
        signature=signature,
        input_example=input_example,
        metadata=metadata,
        pip_requirements=requirements,
        serialization_format="skops",
        skops_trusted_types=sklearn_trusted_types(bundle.estimator),
    )


@contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _requirements(bundle: ModelBundle) -> list[str]:
    from importlib.metadata import version

    if bundle.flavor == "ensemble":
        flavors = {m.flavor for m in bundle.estimator.members}
    else:
        flavors = {bundle.flavor}
    pkgs = ["mlflow", "numpy", "scikit-learn"]
    pkgs += ["lightgbm"] if "lightgbm" in flavors else []
    pkgs += ["skops"] if "sklearn" in flavors else []
    return [f"{p}=={version(p)}" for p in pkgs]


def save_ensemble(ensemble: Ensemble, folder: Path) -> None:
    """Write each member in its native format (`member-<i>.lgb` / `.skops`) and `ensemble.json`."""
    import skops.io

    folder.mkdir(parents=True)
    members = []
    for i, (member, weight) in enumerate(zip(ensemble.members, ensemble.weights, strict=True)):
        record: dict[str, Any] = {
            "flavor": member.flavor,
            "weight": float(weight),
            "family": member.family,
            "trial": member.trial,
        }
        if member.flavor == "lightgbm":
            record["file"] = f"member-{i}.lgb"
            member.estimator.save_model(str(folder / record["file"]))
        else:
            record["file"] = f"member-{i}.skops"
            record["skops_trusted_types"] = sklearn_trusted_types(member.estimator)
            skops.io.dump(member.estimator, folder / record["file"])
        members.append(record)
    manifest = {"format": 1, "task": ensemble.task, "n_classes": ensemble.n_classes, "members": members}
    (folder / ENSEMBLE_FILE).write_text(json.dumps(manifest, indent=1))


def load_ensemble(folder: Path | str) -> Ensemble:
    """The ensemble `save_ensemble` wrote; each scikit-learn member trusts exactly its recorded types."""
    folder = Path(folder)
    manifest = json.loads((folder / ENSEMBLE_FILE).read_text())
    members = []
    for record in manifest["members"]:
        path = folder / record["file"]
        if record["flavor"] == "lightgbm":
            import lightgbm

            estimator: Any = lightgbm.Booster(model_file=str(path))
        elif record["flavor"] == "sklearn":
            import skops.io

            estimator = skops.io.load(path, trusted=record.get("skops_trusted_types") or [])
        else:
            raise DataError(f"{folder}: unsupported ensemble member flavor {record['flavor']!r}")
        members.append(
            EnsembleMember(
                estimator=estimator,
                flavor=record["flavor"],
                weight=float(record["weight"]),
                family=record.get("family", ""),
                trial=record.get("trial"),
            )
        )
    return Ensemble(members, manifest["task"], int(manifest["n_classes"]))


class _PyfuncEnsemble:
    """What `mlflow.pyfunc.load_model` gives for an ensemble: raw feature rows in, probabilities out."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle

    def predict(self, data: Any, params: Any = None) -> np.ndarray:
        out = self.bundle.predict_frame(data)
        return out.proba if out.proba is not None else out.labels


def _load_pyfunc(data_path: str) -> _PyfuncEnsemble:
    """MLflow's `python_function` loader hook (`loader_module`) for ensemble models."""
    data = Path(data_path)
    return _PyfuncEnsemble(load_bundle_dir(data.parents[1] if data.parent.name == "data" else data.parent))


def load_bundle_dir(path: Path | str) -> ModelBundle:
    """Load a bundle from a local MLflow model folder, without importing MLflow."""
    root = Path(path)
    mlmodel = yaml.safe_load((root / "MLmodel").read_text())
    spec_dict = (mlmodel.get("metadata") or {}).get(SPEC_KEY)
    if spec_dict is None:
        raise DataError(f"{root} is not a driftloop model: its MLmodel has no '{SPEC_KEY}' metadata")
    spec = ModelSpec.from_dict(spec_dict)
    flavors = mlmodel.get("flavors", {})
    if "lightgbm" in flavors:
        import lightgbm

        conf = flavors["lightgbm"]
        booster = lightgbm.Booster(model_file=str(root / conf.get("data", "model.lgb")))
        return ModelBundle(spec=spec, estimator=booster, flavor="lightgbm")
    if "sklearn" in flavors:
        import skops.io

        conf = flavors["sklearn"]
        estimator = skops.io.load(
            root / conf.get("pickled_model", "model.skops"), trusted=conf.get("skops_trusted_types") or []
        )
        return ModelBundle(spec=spec, estimator=estimator, flavor="sklearn")
    pyfunc = flavors.get("python_function") or {}
    if pyfunc.get("loader_module") == __name__ and pyfunc.get("data"):
        return ModelBundle(spec=spec, estimator=load_ensemble(root / pyfunc["data"]), flavor="ensemble")
    raise DataError(f"{root}: unsupported model flavor(s) {sorted(flavors)}")
