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
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from driftloop.errors import DataError
from driftloop.kinds import bool_key, category_key, is_bool_categories
from driftloop.stores import driftloop_pyfunc
from driftloop.stores.driftloop_pyfunc import native_output

SPEC_KEY = "driftloop"
ENSEMBLE_DIR = "ensemble"
"""The folder (inside the MLflow model's `data/`) holding an ensemble's members and `ensemble.json`."""
ENSEMBLE_FILE = driftloop_pyfunc.ENSEMBLE_FILE
PYFUNC_LOADER = "driftloop_pyfunc"
"""The `python_function` loader module of every model, shipped in the model's `code/` folder."""
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

    @property
    def is_bool(self) -> bool:
        """A categorical feature trained on booleans only (categories "False"/"True"): values follow the
        bool rule (true/false, "true"/"FALSE", 1/0, "1"/"0"), not the category rule."""
        return self.kind == "categorical" and is_bool_categories(self.categories)

    @property
    def key(self) -> Callable[[Any], str]:
        """This feature's rule: a raw categorical value -> its category string (ValueError if none). A
        property, so a hot loop takes the function once instead of testing the categories per value."""
        return bool_key if self.is_bool else category_key

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
    id_column: str | None = None
    """`data.id_column` at training: accepted in requests (never a feature) and logged for joins."""
    timestamp_column: str | None = None
    """`data.timestamp_column` at training: accepted in requests (an ISO 8601 time) and logged for joins."""
    minimum_prediction: float | None = None
    """Regression: the least value predicted (0 for a target never negative in training); lower outputs are
    raised to it, here and in the portable loader."""

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
            id_column=d.get("id_column"),
            timestamp_column=d.get("timestamp_column"),
            minimum_prediction=d.get("minimum_prediction"),
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
        self._keys = [f.key for f in spec.features]

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
                key = self._keys[j]
                out[:, j] = [_code(codes, key, v) for v in _values(col)]
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
                key = self._keys[j]
                for i, rec in enumerate(records):
                    out[i, j] = _code(codes, key, rec.get(name))
        return out


def _values(col: Any) -> Iterable[Any]:
    return col.tolist() if hasattr(col, "tolist") else list(col)


def _code(codes: dict[str, float], key: Any, value: Any) -> float:
    """A value's category code by its feature's rule; NaN when missing or unseen. A value the rule has no
    answer for (the serving door refuses it) is looked up as `str(value)`, as the schema recorded it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    try:
        return codes.get(key(value), math.nan)
    except ValueError:
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
    cpu_seconds: float | None = None
    """CPU time the predict call spent on these rows, where the caller measured it (the server's micro-batcher
    times each batch on the thread that ran it and shares it out by rows): the model's serving cost."""


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
            floor = self.spec.minimum_prediction
            return Prediction(labels=out if floor is None else np.maximum(out, floor))
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

    # A forest's trees are all of one type: listing them from a one-tree copy takes milliseconds instead
    # of a second dump of every tree (about 7 s for 500 trees on wine, time the training budget never had).
    trees = getattr(estimator, "estimators_", None)
    if isinstance(trees, list) and len(trees) > 1:
        import copy

        estimator = copy.copy(estimator)
        estimator.estimators_ = trees[:1]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.skops"
        skops.io.dump(estimator, path)
        return sorted(skops.io.get_untrusted_types(file=path))


def log_bundle(bundle: ModelBundle, *, name: str = "model", input_example: Any = None) -> Any:
    """Log the bundle to the active MLflow run; returns MLflow's ModelInfo.

    A single model keeps its native flavor (`lightgbm`: the booster's text file; `sklearn`: skops), which
    `load_bundle_dir` reads; an ensemble is a `python_function` model with its members' native files. In
    every case the `python_function` flavor's loader is `driftloop_pyfunc`, shipped in the model's `code/`
    (`code_paths`): `mlflow.pyfunc.load_model` and `mlflow models serve` then work where driftloop is not
    installed, on raw feature rows, answering labelled predictions. Nothing is pickled.
    """
    from mlflow.models import Model

    metadata = {SPEC_KEY: bundle.spec.to_dict()}
    signature = None if input_example is None else portable_signature(bundle, input_example)
    example = None if input_example is None else _typed_example(bundle.spec, input_example)
    # Without the switch MLflow copies the uv project found in the working directory (whatever it is) into
    # the model and lets it decide the model's environment.
    with _environ("MLFLOW_UV_AUTO_DETECT", "false"):
        return Model.log(
            artifact_path=None,
            name=name,
            flavor=_PortableFlavor(bundle),
            metadata=metadata,
            signature=signature,
            input_example=example,
            # Naming the requirements ourselves skips MLflow's inference, which re-imports the model in a
            # subprocess and costs ~10 s per model.
            pip_requirements=_requirements(bundle),
            code_paths=[driftloop_pyfunc.__file__],
        )


class _PortableFlavor:
    """What `mlflow.models.Model.log` calls to write the model folder: the native flavor's `save_model`
    (or pyfunc's, for an ensemble), then the `python_function` loader pointed at the shipped module."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle

    def save_model(self, path: str, mlflow_model: Any, **kwargs: Any) -> None:
        import mlflow

        kwargs.pop("validate_serving_input", None)
        bundle = self.bundle
        if bundle.flavor == "ensemble":
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / ENSEMBLE_DIR
                save_ensemble(bundle.estimator, folder)
                mlflow.pyfunc.save_model(
                    path,
                    loader_module=PYFUNC_LOADER,
                    data_path=str(folder),
                    mlflow_model=mlflow_model,
                    **kwargs,
                )
            return
        if bundle.flavor == "lightgbm":
            mlflow.lightgbm.save_model(bundle.estimator, path, mlflow_model=mlflow_model, **kwargs)
        else:
            mlflow.sklearn.save_model(
                bundle.estimator,
                path,
                mlflow_model=mlflow_model,
                serialization_format="skops",
                skops_trusted_types=sklearn_trusted_types(bundle.estimator),
                **kwargs,
            )
        mlflow_model.flavors["python_function"]["loader_module"] = PYFUNC_LOADER
        mlflow_model.save(str(Path(path) / "MLmodel"))


def portable_signature(bundle: ModelBundle, input_example: Any) -> Any:
    """The pyfunc signature: doubles for numeric features (integer JSON is accepted for them), booleans for
    bool features, strings for categorical ones; the output inferred from the portable model's answer."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    def column(f: FeatureSpec) -> Any:
        kind = "double" if f.kind == "numeric" else "boolean" if f.is_bool else "string"
        return ColSpec(kind, f.name)

    example = _typed_example(bundle.spec, input_example)
    pred = bundle.predict_frame(example)
    out = driftloop_pyfunc.PortableModel(bundle.spec.to_dict(), []).labelled(
        pred.proba if pred.proba is not None else pred.labels
    )
    inputs = Schema([column(f) for f in bundle.spec.features])
    with warnings.catch_warnings():
        # MLflow's hint that an integer column cannot hold missing values: integer class labels never do.
        warnings.simplefilter("ignore", UserWarning)
        outputs = infer_signature(example, out).outputs
    return ModelSignature(inputs, outputs)


def _typed_example(spec: ModelSpec, frame: Any) -> Any:
    """The input example as the signature types it: numbers as floats, bools as bools, categories as text."""
    import pandas as pd

    out = {}
    for f in spec.features:
        col = frame[f.name]
        if f.kind == "numeric":
            out[f.name] = pd.to_numeric(col).astype("float64")
        else:
            key = f.key
            out[f.name] = [None if pd.isna(v) else key(v) == "True" if f.is_bool else key(v) for v in col]
    return pd.DataFrame(out)


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
    pkgs = ["mlflow", "numpy", "pandas", "scikit-learn"]
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
    try:
        return _ensemble(*driftloop_pyfunc.read_ensemble(folder))
    except ValueError as exc:  # a member of a flavor this version does not know
        raise DataError(str(exc)) from None


def _ensemble(manifest: dict[str, Any], members: list[tuple[dict[str, Any], Any]]) -> Ensemble:
    return Ensemble(
        [
            EnsembleMember(
                estimator=estimator,
                flavor=record["flavor"],
                weight=float(record["weight"]),
                family=record.get("family", ""),
                trial=record.get("trial"),
            )
            for record, estimator in members
        ],
        manifest["task"],
        int(manifest["n_classes"]),
    )


#: Models logged before the loader shipped with the model named this module as theirs: MLflow still finds it.
_load_pyfunc = driftloop_pyfunc._load_pyfunc


def save_bundle_dir(bundle: ModelBundle, root: Path | str) -> Path:
    """Write the bundle as a model folder `load_bundle_dir` reads exactly as it reads a logged one.

    The same files and MLmodel keys MLflow writes for each flavor (native booster text, skops with its
    trusted types, an ensemble's folder), without MLflow: the trainer uses it to time a candidate on the
    path the server loads, at a fraction of a logged model's cost.
    """
    import skops.io

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    flavors: dict[str, Any]
    if bundle.flavor == "ensemble":
        save_ensemble(bundle.estimator, root / "data" / ENSEMBLE_DIR)
        flavors = {"python_function": {"loader_module": PYFUNC_LOADER, "data": f"data/{ENSEMBLE_DIR}"}}
    elif bundle.flavor == "lightgbm":
        bundle.estimator.save_model(str(root / "model.lgb"))
        flavors = {"lightgbm": {"data": "model.lgb"}}
    else:
        skops.io.dump(bundle.estimator, root / "model.skops")
        trusted = sorted(skops.io.get_untrusted_types(file=root / "model.skops"))
        flavors = {"sklearn": {"pickled_model": "model.skops", "skops_trusted_types": trusted}}
    mlmodel = {"flavors": flavors, "metadata": {SPEC_KEY: bundle.spec.to_dict()}}
    (root / "MLmodel").write_text(yaml.safe_dump(mlmodel, sort_keys=False))
    return root


def load_bundle_dir(path: Path | str) -> ModelBundle:
    """Load a bundle from a local MLflow model folder, without importing MLflow."""
    try:
        spec_dict, flavor, native = driftloop_pyfunc.read_model(path)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    spec = ModelSpec.from_dict(spec_dict)
    if flavor == "ensemble":
        return ModelBundle(spec=spec, estimator=_ensemble(*native), flavor="ensemble")
    return ModelBundle(spec=spec, estimator=native, flavor=flavor)  # type: ignore[arg-type]  # lightgbm, sklearn
