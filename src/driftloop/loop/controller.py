"""`driftloop watch`: the controller that closes the loop.

Each pass: take the controller lease (one active controller; another waits), read the deployment state,
and either judge the running canary or run a monitoring pass and, if a trigger fires, retrain, gate and
start a canary. The controller holds no state of its own: the deployment row (compare-and-swap), the event
log and the lease are in the metadata store, so a SIGKILL at any moment followed by a restart resumes
where the stores say it is — no double promotion, no stuck canary.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from driftloop.config import Config
from driftloop.loop import steps
from driftloop.stores import Stores
from driftloop.stores.metadata import default_actor, utcnow

log = logging.getLogger(__name__)


@dataclass
class PassResult:
    """What one controller pass did, for logs and tests."""

    acted: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


class Controller:
    def __init__(
        self,
        cfg: Config,
        stores: Stores,
        *,
        metrics_urls: list[str] | None = None,
        clock: Callable[[], datetime] = utcnow,
        holder: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.stores = stores
        self.metrics_urls = metrics_urls if metrics_urls is not None else steps.default_metrics_urls(cfg)
        self.clock = clock
        self.holder = holder or f"{default_actor()}:{uuid.uuid4().hex[:6]}"
        self.lease = f"controller:{cfg.project.name}"

    def run_once(self) -> PassResult:
        if not self.stores.metadata.acquire_lease(self.lease, self.holder, self.cfg.loop.lease_seconds):
            return PassResult(False, "another controller holds the lease; waiting")
        now = self.clock()
        dep = self.stores.metadata.get_deployment(self.cfg.project.name)
        if dep.champion is None:
            return PassResult(False, "no champion yet: run `driftloop train`")
        if dep.challenger is not None and dep.strategy == "canary":
            decision = steps.rollout_step(self.stores, self.cfg, now=now, metrics_urls=self.metrics_urls)
            return PassResult(decision.action != "hold", f"canary: {decision.action}: {decision.reason}")
        outcome = steps.monitor_step(self.stores, self.cfg, now=now)
        fired = steps.trigger_step(self.stores, self.cfg, outcome.signals)
        if not fired:
            return PassResult(False, outcome.summary)
        retrain = steps.retrain_step(self.stores, self.cfg, reasons=[t.reason for t in fired])
        if retrain.version is None or not retrain.gate_passed:
            return PassResult(True, f"retrained: {retrain.summary}")
        decision = steps.start_canary(self.stores, self.cfg, retrain.version)
        return PassResult(True, f"retrained v{retrain.version}; {decision}")

    def watch(
        self, interval: float, stop: threading.Event | None = None, max_passes: int | None = None
    ) -> None:
        """Run passes every `interval` seconds until `stop` is set (SIGTERM/SIGINT in the CLI)."""
        stop = stop or threading.Event()
        passes = 0
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    result = self.run_once()
                    log.info("%s", result.summary)
                except Exception:  # a bad pass must not end the loop; the next one tries again
                    log.exception("controller pass failed")
                passes += 1
                if max_passes is not None and passes >= max_passes:
                    return
                stop.wait(max(0.0, interval - (time.monotonic() - started)))
        finally:
            self.stores.metadata.release_lease(self.lease, self.holder)
