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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from driftloop.serve.validation import RequestSchema
from driftloop.stores.metadata import Deployment
from driftloop.stores.models import ModelBundle, load_bundle_dir
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


@dataclass
class StoreStatus:
    reachable: bool = False
    last_ok: float | None = None
    error: str | None = None
    last_swap_error: str | None = None
    failed_revision: int | None = None
    checks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def load_model(version: str, folder: Path, *, unknown_fields: str, max_rows: int) -> LoadedModel:
    """Load and warm one version: the first native predict allocates, so a request must not pay for it."""
    bundle = load_bundle_dir(folder)
    spec = bundle.spec
    warm = np.zeros((64, len(spec.features)), dtype=np.float64)
    for rows in (1, 8, 64):
        bundle.predict_matrix(warm[:rows])
    classes = tuple(spec.classes)
    return LoadedModel(
        version=str(version),
        bundle=bundle,
        schema=RequestSchema(spec, unknown_fields=unknown_fields, max_rows=max_rows),
        classes=classes,
        class_keys=tuple(label_string(c) for c in classes),
        loaded_at=time.time(),
    )


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
        metrics: Any = None,
    ) -> None:
        self.model_name = model_name
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

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> ModelPool:
        self._thread = threading.Thread(target=self._run, name="driftloop-deployment-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

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
            self.metrics.model_loads.labels(version, result).inc()

    def _gauge(self, name: str, value: float) -> None:
        if self.metrics is not None:
            getattr(self.metrics, name).set(value)

    # -- reporting ------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        state = self.state
        out: dict[str, Any] = {
            "ready": state is not None,
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
        "updated_at": dep.updated_at.isoformat() if dep.updated_at else None,
        "reason": dep.reason,
        "actor": dep.actor,
    }
