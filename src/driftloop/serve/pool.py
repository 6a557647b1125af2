"""The models a worker serves, and the background thread that follows the deployment state (hot swap).

Every `poll_seconds` the watcher reads the deployment row. When its revision changes it loads the versions
it needs (re-using those already loaded), warms them with a few predictions, and only then replaces the
whole `ServingState` with one reference assignment: a request reads `pool.state` once and uses that snapshot
to the end, so no request ever sees half a swap or waits for a load. If the store cannot be read, or a new
version cannot be loaded, the worker keeps serving what it has and says so in `status()` and the metrics.

Model folders come from `TrackingStore.model_dir`, which returns the local cache without importing MLflow
when the version was downloaded before (the serve command pre-fetches them once for all workers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from driftloop.serve.validation import RequestSchema
from driftloop.stores.metadata import Deployment
from driftloop.stores.models import SPEC_KEY, ModelBundle, ModelSpec, load_bundle_dir
from driftloop.stores.predlog import label_string

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """One model version ready to answer: the bundle, its request schema and its label strings."""

    version: str
    bundle: ModelBundle
    schema: RequestSchema
    classes: tuple[Any, ...]
    class_keys: tuple[str, ...]
    loaded_at: float
    folder: Path | None = None
    compiled: bool = False

    @property
    def spec(self) -> Any:
        return self.bundle.spec

    @property
    def regression(self) -> bool:
        return not self.bundle.spec.is_classifier


@dataclass(frozen=True)
class ServingState:
    """What a worker serves: replaced as a whole on every swap, never modified."""

    deployment: Deployment
    champion: LoadedModel
    challenger: LoadedModel | None

    def models(self) -> list[LoadedModel]:
        return [m for m in (self.champion, self.challenger) if m is not None]

    def arm_of(self, version: str) -> str | None:
        """`champion` or `challenger` when that version is served now (a pinned request), else None."""
        if self.champion.version == version:
            return "champion"
        if self.challenger is not None and self.challenger.version == version:
            return "challenger"
        return None


@dataclass
class StoreStatus:
    reachable: bool = False
    last_ok: float | None = None
    error: str | None = None
    last_swap_error: str | None = None
    failed_revision: int | None = None
    checks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def load_model(
    version: str,
    folder: Path,
    *,
    unknown_fields: str,
    max_rows: int,
    use_compiled: bool = False,
    join_columns: tuple[str | None, str | None] = (None, None),
) -> LoadedModel:
    """Load and warm one version: the first predict allocates, so a request must not pay for it."""
    folder = Path(folder)
    bundle, compiled_ok = None, False
    if use_compiled:
        bundle = _cached_compiled_bundle(folder)
        compiled_ok = bundle is not None
    if bundle is None:
        bundle = load_bundle_dir(folder)
    spec = bundle.spec
    warm = np.zeros((64, len(spec.features)), dtype=np.float64)
    for rows in (1, 8, 64):
        bundle.predict_matrix(warm[:rows])
    classes = tuple(spec.classes)
    return LoadedModel(
        version=str(version),
        bundle=bundle,
        schema=RequestSchema(
            spec, unknown_fields=unknown_fields, max_rows=max_rows, join_columns=join_columns
        ),
        classes=classes,
        class_keys=tuple(label_string(c) for c in classes),
        loaded_at=time.time(),
        folder=folder,
        compiled=compiled_ok,
    )


def _lightgbm_file(folder: Path) -> tuple[dict[str, Any], Path | None]:
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    flavor = (mlmodel.get("flavors") or {}).get("lightgbm")
    return mlmodel, (folder / flavor.get("data", "model.lgb")) if flavor else None


def _cached_compiled_bundle(folder: Path) -> ModelBundle | None:
    from driftloop.compiled import booster as compiled

    mlmodel, model_file = _lightgbm_file(folder)
    spec_dict = (mlmodel.get("metadata") or {}).get(SPEC_KEY)
    if model_file is None or spec_dict is None:
        return None
    booster = compiled.load_cached(model_file)
    if booster is None:
        return None
    return ModelBundle(spec=ModelSpec.from_dict(spec_dict), estimator=booster, flavor="lightgbm")


def compile_loaded(model: LoadedModel) -> LoadedModel | None:
    """The same model with compiled trees (LightGBM by lleaves, scikit-learn forests by treelite, an
    ensemble member by member; each checked against the original), or None when nothing in it compiles."""
    from driftloop.compiled import compile_bundle

    if model.folder is None:
        return None
    bundle = compile_bundle(model.bundle, model.folder)
    if bundle is None:
        return None
    bundle.predict_matrix(np.zeros((8, len(bundle.spec.features))))
    return replace(model, bundle=bundle, compiled=True)


class ModelPool:
    """Holds the serving state and runs the watcher thread that keeps it in step with the deployment row."""

    def __init__(
        self,
        model_name: str,
        read_deployment: Callable[[], Deployment],
        resolve_dir: Callable[[str], Path],
        *,
        poll_seconds: float = 2.0,
        unknown_fields: str = "reject",
        max_rows: int = 10_000,
        join_columns: tuple[str | None, str | None] = (None, None),
        metrics: Any = None,
        compile_models: bool = True,
    ) -> None:
        self.model_name = model_name
        self.join_columns = join_columns
        self._read_deployment = read_deployment
        self._resolve_dir = resolve_dir
        self.poll_seconds = poll_seconds
        self.unknown_fields = unknown_fields
        self.max_rows = max_rows
        self.metrics = metrics
        self.state: ServingState | None = None
        self.store = StoreStatus()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh_lock = threading.Lock()
        self.compile_models = compile_models
        self._compile_wake = threading.Event()
        self._compile_thread: threading.Thread | None = None
        self._compile_tried: set[str] = set()

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> ModelPool:
        self._thread = threading.Thread(target=self._run, name="driftloop-deployment-watcher", daemon=True)
        self._thread.start()
        if self.compile_models:
            self._compile_thread = threading.Thread(
                target=self._compile_run, name="driftloop-compiler", daemon=True
            )
            self._compile_thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._compile_wake.set()
        if self._compile_thread is not None:
            from driftloop.compiled import booster as compiled

            compiled.cancel_running()
        for thread in (self._thread, self._compile_thread):
            if thread is not None:
                thread.join(timeout)
        self._thread = self._compile_thread = None

    def wait_ready(self, timeout: float) -> bool:
        """Block until a model is served or `timeout` passes; True if ready."""
        deadline = time.monotonic() + timeout
        while self.state is None and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.02)
        return self.state is not None

    def poke(self) -> None:
        """Check the deployment now instead of at the next poll (after an admin change)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # the watcher must outlive any bug in one pass
                log.exception("deployment watcher: refresh failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _compile_run(self) -> None:
        """Swap each served model for its compiled twin, one at a time, as they appear."""
        while not self._stop.is_set():
            self._compile_wake.wait(self.poll_seconds)
            self._compile_wake.clear()
            state = self.state
            for model in state.models() if state else []:
                if model.compiled or model.version in self._compile_tried or self._stop.is_set():
                    continue
                self._compile_tried.add(model.version)
                try:
                    fast = compile_loaded(model)
                except Exception as exc:
                    # Tried once per version and worker, so this is logged once; the original keeps serving.
                    log.warning("model %s stays uncompiled: %s", model.version, exc)
                    continue
                if fast is not None:
                    self._install_compiled(model, fast)

    def _install_compiled(self, old: LoadedModel, new: LoadedModel) -> None:
        with self._refresh_lock:
            state = self.state
            if state is None:
                return
            if state.champion is old:
                state = replace(state, champion=new)
            if state.challenger is old:
                state = replace(state, challenger=new)
            if state is not self.state:
                self.state = state
                log.info("model %s now predicts with compiled trees", new.version)

    # -- one pass -------------------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Read the deployment and swap if it changed; True when a new state was installed."""
        with self._refresh_lock:
            return self._refresh()

    def _refresh(self) -> bool:
        self.store.checks += 1
        try:
            dep = self._read_deployment()
        except Exception as exc:
            if self.store.reachable or self.store.error is None:
                log.warning("metadata store unreachable, serving the last good deployment: %s", exc)
            self.store.reachable = False
            self.store.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            self._gauge("store_unreachable", 1)
            return False
        self.store.reachable, self.store.error, self.store.last_ok = True, None, time.time()
        self._gauge("store_unreachable", 0)
        current = self.state
        if current is not None and current.deployment.revision == dep.revision:
            return False
        if dep.champion is None:
            self.store.last_swap_error = "no champion in the deployment: nothing has been promoted yet"
            return False
        if self.store.failed_revision == dep.revision:
            return False  # already failed; the next change of the row will be tried
        loaded = {m.version: m for m in current.models()} if current else {}
        try:
            champion = self._get(dep.champion, loaded)
        except Exception as exc:
            self._swap_failed(dep, dep.champion, exc)
            return False
        challenger = None
        if dep.challenger and dep.strategy != "single":
            try:
                challenger = self._get(dep.challenger, loaded)
            except Exception as exc:
                if current is not None:
                    self._swap_failed(dep, dep.challenger, exc)
                    return False
                # Nothing served yet: answer with the champion alone rather than not at all.
                self._swap_failed(dep, dep.challenger, exc)
        self.state = ServingState(deployment=dep, champion=champion, challenger=challenger)
        self._compile_wake.set()
        if challenger is not None or not dep.challenger or dep.strategy == "single":
            self.store.failed_revision = None
            self.store.last_swap_error = None
        self._gauge("model_ready", 1)
        self._gauge("challenger_weight", dep.challenger_weight if challenger is not None else 0.0)
        log.info(
            "serving %s revision %d: champion %s, challenger %s (%s, weight %.3f)",
            self.model_name,
            dep.revision,
            champion.version,
            challenger.version if challenger else None,
            dep.strategy,
            dep.challenger_weight,
        )
        return True

    def _get(self, version: str, loaded: dict[str, LoadedModel]) -> LoadedModel:
        if version in loaded:
            return loaded[version]
        try:
            model = load_model(
                version,
                self._resolve_dir(version),
                unknown_fields=self.unknown_fields,
                max_rows=self.max_rows,
                join_columns=self.join_columns,
                # A binary this machine compiled (and verified) before loads without importing LightGBM,
                # which alone takes about 2 s of a worker's start.
                use_compiled=self.compile_models,
            )
        except Exception:
            self._count_load(version, "error")
            raise
        self._count_load(version, "ok")
        return model

    def _swap_failed(self, dep: Deployment, version: str, exc: Exception) -> None:
        message = f"revision {dep.revision}: cannot load version {version}: {type(exc).__name__}: {exc}"
        log.error("deployment not applied, %s", message)
        self.store.last_swap_error = message[:500]
        self.store.failed_revision = dep.revision
        if self.metrics is not None:
            self.metrics.swap_failures.inc()

    def _count_load(self, version: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.count_load(version, result)

    def _gauge(self, name: str, value: float) -> None:
        if self.metrics is not None:
            getattr(self.metrics, name).set(value)

    # -- reporting ------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        state = self.state
        out: dict[str, Any] = {
            "ready": state is not None,
            # degraded: serving the last deployment it read while the store is unreachable (still a 200, so a
            # load balancer keeps routing to it; the deployment cannot change until the store is back).
            "status": "not_ready" if state is None else "ok" if self.store.reachable else "degraded",
            "model_name": self.model_name,
            "store": {
                "reachable": self.store.reachable,
                "error": self.store.error,
                "last_ok_age_seconds": round(time.time() - self.store.last_ok, 3)
                if self.store.last_ok
                else None,
            },
            "last_swap_error": self.store.last_swap_error,
        }
        if state is not None:
            out["deployment"] = describe(state)
        return out


def describe(state: ServingState) -> dict[str, Any]:
    dep = state.deployment
    return {
        "model_name": dep.model_name,
        "revision": dep.revision,
        "strategy": dep.strategy,
        "challenger_weight": dep.challenger_weight if state.challenger is not None else 0.0,
        "champion": state.champion.version,
        "challenger": state.challenger.version if state.challenger else None,
        "configured_challenger": dep.challenger,
        "compiled": {m.version: m.compiled for m in state.models()},
        "updated_at": dep.updated_at.isoformat() if dep.updated_at else None,
        "reason": dep.reason,
        "actor": dep.actor,
    }
