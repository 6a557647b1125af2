"""The model format every stage shares: a fitted estimator plus the spec that turns raw records into its input.

Estimators are fitted on a float matrix in spec order: numeric features as float, categorical features as
the index of the value in the spec's category list (NaN when missing or unseen). Classification targets are
the index of the class in `spec.classes`. So the serving hot path is: records -> numpy (no pandas) -> the
estimator's native predict.

On disk a bundle is an MLflow model in its flavor's native, pickle-free format (LightGBM booster text,
scikit-learn through skops with an explicit trusted-type list); the spec rides in the MLmodel `metadata`.
`load_bundle_dir` reads one without importing MLflow, which keeps server start-up fast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from driftloop.errors import DataError

SPEC_KEY = "driftloop"


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


@dataclass
class ModelBundle:
    """A fitted estimator with its spec. `flavor` is 'lightgbm' (native Booster) or 'sklearn'."""

    spec: ModelSpec
    estimator: Any
    flavor: Literal["lightgbm", "sklearn"]
    encoder: Encoder = field(init=False)

    def __post_init__(self) -> None:
        self.encoder = Encoder(self.spec)
        self._classes = np.asarray(self.spec.classes, dtype=object) if self.spec.classes else None

    def predict_matrix(self, X: np.ndarray) -> Prediction:
        """Predict on an already-encoded float matrix (the hot path)."""
        if self.flavor == "lightgbm":
            raw = self.estimator.predict(X)
            if self.spec.task == "regression":
                return Prediction(labels=np.asarray(raw, dtype=np.float64))
            proba = np.column_stack([1.0 - raw, raw]) if self.spec.task == "binary" else np.asarray(raw)
        elif self.spec.task == "regression":
            return Prediction(labels=np.asarray(self.estimator.predict(X), dtype=np.float64))
        else:
            proba = np.asarray(self.estimator.predict_proba(X))
        assert self._classes is not None
        return Prediction(labels=self._classes[np.argmax(proba, axis=1)], proba=proba)

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
    requirements = _requirements(bundle.flavor)
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


def _requirements(flavor: str) -> list[str]:
    from importlib.metadata import version

    pkgs = ["mlflow", "numpy", "scikit-learn"] + (["lightgbm"] if flavor == "lightgbm" else ["skops"])
    return [f"{p}=={version(p)}" for p in pkgs]


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
    raise DataError(f"{root}: unsupported model flavor(s) {sorted(flavors)}")
