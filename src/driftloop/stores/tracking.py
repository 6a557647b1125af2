"""The tracking store: MLflow runs, registered model versions, aliases, and model/reference downloads.

MLflow is imported lazily: a server that only needs a cached model folder never pays for it.
Aliases `champion` and `challenger` mirror the deployment state in the metadata store (the source of truth).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.errors import NotFoundError
from driftloop.stores.metadata import normalize_url
from driftloop.stores.models import ModelBundle, load_bundle_dir

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from driftloop.config import Config

REFERENCE_ARTIFACT = "reference/reference.parquet"
#: The kept holdout's rows (features + target, sampled to `training.reference_rows`): labelled rows the model
#: never trained on, which label-free performance estimation calibrates on (monitor/estimated.py).
HOLDOUT_ARTIFACT = "reference/holdout.parquet"
GATE_REPORT_ARTIFACT = "gate/gate_report.json"
#: A version's cost, as tags `train` writes (`train.search.training_cost_tags`) and `models show` reads.
COST_TAGS = (
    "train_wall_seconds",
    "train_cpu_seconds",
    "train_trials",
    "predict_ms_1row",
    "predict_ms_100rows",
)


def version_cost(tags: dict[str, str]) -> dict[str, float] | None:
    """What a version cost to train and costs to serve, from its tags (None for a version older than them)."""
    if not all(k in tags for k in COST_TAGS):
        return None
    return {k: float(tags[k]) for k in COST_TAGS}


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    run_id: str
    source: str
    tags: dict[str, str]
    aliases: list[str]
    created_at_ms: int


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"


class TrackingStore:
    """Thin, typed glue over MlflowClient for one project (one experiment, one registered model name)."""

    def __init__(self, tracking_uri: str, artifact_location: str, model_name: str, cache_dir: Path) -> None:
        self.tracking_uri = normalize_url(tracking_uri)
        self.artifact_location = artifact_location
        self.model_name = model_name
        self.experiment_name = model_name
        self.cache_dir = cache_dir
        self._client: MlflowClient | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> TrackingStore:
        return cls(
            tracking_uri=cfg.stores.resolved_tracking_uri(),
            artifact_location=cfg.stores.resolved_artifact_location(),
            model_name=cfg.project.name,
            cache_dir=cfg.stores.root / "cache" / "models",
        )

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            # MLflow's download progress bars would interleave with driftloop's own output.
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            # driftloop names each model's requirements itself; MLflow's guess at pip's version is noise.
            logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
            import mlflow
            from mlflow import MlflowClient

            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def experiment_id(self) -> str:
        """The project's experiment, created on first use with the configured artifact location."""
        client = self.client
        exp = client.get_experiment_by_name(self.experiment_name)
        if exp is not None:
            return exp.experiment_id
        try:
            # The kind makes the MLflow UI open the experiment in its model-training view (runs, metrics,
            # models), not the GenAI one (traces, evaluations) it would otherwise infer or ask about.
            return client.create_experiment(
                self.experiment_name,
                artifact_location=self.artifact_location,
                tags={EXPERIMENT_KIND_TAG: "custom_model_development"},
            )
        except Exception:  # a concurrent creator won the race
            exp = client.get_experiment_by_name(self.experiment_name)
            if exp is None:
                raise
            return exp.experiment_id

    # -- registry -----------------------------------------------------------------------------------------

    def register(self, model_uri: str, run_id: str, tags: dict[str, str] | None = None) -> str:
        """Register a logged model as a new version of the project's model; returns the version string."""
        from mlflow.exceptions import MlflowException

        client = self.client
        try:
            client.create_registered_model(self.model_name)
        except MlflowException:
            pass  # exists already
        mv = client.create_model_version(self.model_name, source=model_uri, run_id=run_id, tags=tags or {})
        return str(mv.version)

    def get_version(self, version: str) -> ModelVersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(self.model_name, str(version))
        except MlflowException:
            raise NotFoundError(f"model {self.model_name} has no version {version!r}") from None
        return _info(mv)

    def list_versions(self) -> list[ModelVersionInfo]:
        versions = self.client.search_model_versions(f"name = '{self.model_name}'")
        return sorted((_info(v) for v in versions), key=lambda v: int(v.version))

    def describe(self, version: str, text: str) -> None:
        """The version's description (shown on its page in the MLflow UI)."""
        self.client.update_model_version(self.model_name, str(version), description=text)

    def set_tag(self, version: str, key: str, value: str) -> None:
        self.client.set_model_version_tag(self.model_name, str(version), key, value)

    def mirror_aliases(self, champion: str | None, challenger: str | None) -> None:
        """Make the MLflow aliases match the deployment state (which is the source of truth)."""
        from mlflow.exceptions import MlflowException

        for alias, version in (("champion", champion), ("challenger", challenger)):
            if version is None:
                try:
                    self.client.delete_registered_model_alias(self.model_name, alias)
                except MlflowException:
                    pass
            else:
                self.client.set_registered_model_alias(self.model_name, alias, str(version))

    # -- downloads ----------------------------------------------------------------------------------------

    def model_dir(self, version: str) -> Path:
        """A local folder with the model version's files, downloaded once and cached (versions never change)."""
        target = self.cache_dir / self.model_name / str(version)
        if (target / "MLmodel").is_file():
            return target
        import mlflow

        self.client  # noqa: B018 - sets the tracking/registry URIs for mlflow.artifacts
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
        try:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{self.model_name}/{version}", dst_path=str(tmp)
            )
            try:
                tmp.rename(target)
            except OSError:  # another process cached it first
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def load_bundle(self, version: str) -> ModelBundle:
        return load_bundle_dir(self.model_dir(version))

    def run_artifact(self, run_id: str, artifact_path: str) -> Path:
        """Download one artifact of a run into the cache (run artifacts never change) and return its path."""
        target = self.cache_dir.parent / "runs" / run_id / artifact_path
        if target.exists():
            return target
        import mlflow

        self.client  # noqa: B018
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact_path, dst_path=tmp
            )
            shutil.move(local, target)
        return target

    def reference_path(self, version: str) -> Path:
        """The drift reference sample of a model version (training features + target, Parquet)."""
        return self.run_artifact(self.get_version(version).run_id, REFERENCE_ARTIFACT)

    def holdout_path(self, version: str) -> Path | None:
        """The kept holdout sample of a model version (Parquet); None for a version trained before it was kept."""
        run_id = self.get_version(version).run_id
        folder = HOLDOUT_ARTIFACT.rsplit("/", 1)[0]
        if HOLDOUT_ARTIFACT not in {f.path for f in self.client.list_artifacts(run_id, folder)}:
            return None
        return self.run_artifact(run_id, HOLDOUT_ARTIFACT)


def _info(mv: Any) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id,
        source=mv.source,
        tags=dict(mv.tags or {}),
        aliases=list(getattr(mv, "aliases", []) or []),
        created_at_ms=int(mv.creation_timestamp or 0),
    )
