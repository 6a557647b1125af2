"""`driftloop watch`: the controller that closes the loop.

Each pass: take the controller lease (one active controller; another waits), read the deployment state,
and either judge the running canary or run a monitoring pass and, if a trigger fires, retrain, gate and
start a canary. The controller holds no state of its own: the deployment row (compare-and-swap), the event
log and the lease are in the metadata store, so a SIGKILL at any moment followed by a restart resumes
where the stores say it is — no double promotion, no stuck canary.

The lease lasts `loop.lease_seconds`; a heartbeat thread renews it while a pass works (a retrain may take far
longer), and every event and deployment change of the pass is fenced by it: written only while this
acquisition of the lease (its epoch) is still held, checked in the writing transaction. A controller that
lost its lease (paused, partitioned from the store) stops instead of acting beside the one that took over.
While the metadata store is unreachable the controller backs off, logging one line per attempt.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from driftloop.config import Config
from driftloop.errors import LeaseLostError, first_line
from driftloop.loop import steps
from driftloop.loop.metrics import ControllerMetrics
from driftloop.stores import Stores, open_stores
from driftloop.stores.logmaint import maintain
from driftloop.stores.metadata import Lease, MetadataStore, default_actor, store_unreachable, utcnow

log = logging.getLogger(__name__)

#: The longest wait between attempts while the metadata store is unreachable.
MAX_BACKOFF_SECONDS = 60.0


@dataclass
class PassResult:
    """What one controller pass did, for logs and tests."""

    acted: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


class Heartbeat:
    """Renews a held lease every third of its length in a background thread, until stopped.

    `check()` raises LeaseLostError once a renewal found the lease gone (lapsed or taken over): the cheap
    re-check before each step. The authoritative one is in every fenced write's own transaction.
    """

    def __init__(self, metadata: MetadataStore, lease: Lease, seconds: float) -> None:
        self.metadata = metadata
        self.lease = lease
        self.seconds = seconds
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                renewed = self.metadata.renew_lease(self.lease, self.seconds)
            except Exception as exc:  # the store is down: the lease may lapse; fenced writes will tell
                log.warning("could not renew the controller lease: %s", first_line(exc))
                continue
            if renewed is None:
                self.lost = f"the lease {self.lease.name} (epoch {self.lease.epoch}) lapsed or was taken over"
                log.warning("%s; this controller stops acting", self.lost)
                return

    def check(self) -> None:
        if self.lost is not None:
            raise LeaseLostError(self.lost)


class Controller:
    def __init__(
        self,
        cfg: Config,
        stores: Stores,
        *,
        clock: Callable[[], datetime] = utcnow,
        holder: str | None = None,
        metrics: ControllerMetrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.stores = stores
        self.clock = clock
        self.metrics = metrics
        self.holder = holder or f"{default_actor()}:{uuid.uuid4().hex[:6]}"
        self.lease = f"controller:{cfg.project.name}"
        self._maintained_at: datetime | None = None

    @contextmanager
    def leased(self) -> Iterator[Heartbeat | None]:
        """The lease for one pass, renewed by a heartbeat while the pass runs; None if another holds it."""
        seconds = self.cfg.loop.lease_seconds
        lease = self.stores.metadata.acquire_lease(self.lease, self.holder, seconds)
        if lease is None:
            yield None
            return
        with Heartbeat(self.stores.metadata, lease, seconds) as beat:
            yield beat

    def run_once(self) -> PassResult:
        with self.leased() as beat:
            if beat is None:
                return PassResult(False, "another controller holds the lease; waiting", {"standby": True})
            return self._pass(beat)

    def _pass(self, beat: Heartbeat) -> PassResult:
        fence = beat.lease
        now = self.clock()
        self._maintain_log(now)
        dep = self.stores.metadata.get_deployment(self.cfg.project.name)
        if dep.champion is None:
            return PassResult(False, "no champion yet: run `driftloop train`")
        recovered = steps.recover_step(self.stores, self.cfg, fence=fence)
        if recovered:
            return PassResult(True, "recovered: " + "; ".join(recovered))
        if dep.challenger is not None and dep.strategy == "canary":
            beat.check()
            decision = steps.rollout_step(self.stores, self.cfg, now=now, fence=fence)
            return PassResult(decision.action != "hold", f"canary: {decision.action}: {decision.reason}")
        outcome = steps.monitor_step(self.stores, self.cfg, now=now)
        beat.check()
        fired = steps.trigger_step(self.stores, self.cfg, outcome.signals, fence=fence)
        if not fired:
            return PassResult(False, outcome.summary)
        retrain = steps.retrain_step(self.stores, self.cfg, reasons=[t.reason for t in fired], fence=fence)
        if retrain.version is None or not retrain.gate_passed:
            return PassResult(True, f"retrained: {retrain.summary}")
        beat.check()
        started = steps.start_canary(self.stores, self.cfg, retrain.version, fence=fence)
        return PassResult(True, f"retrained v{retrain.version}; {started}")

    def _maintain_log(self, now: datetime) -> None:
        """Compaction and retention of the prediction log, every `log.maintenance_interval_seconds`.

        Under the lease, so one controller does it; a failure is logged and retried next interval: the log
        stays correct (only bigger) without it, and the pass's own work matters more."""
        interval = timedelta(seconds=self.cfg.log.maintenance_interval_seconds)
        if not self.cfg.log.compact or (self._maintained_at and now - self._maintained_at < interval):
            return
        self._maintained_at = now
        try:
            done = maintain(self.stores.log_dir, self.cfg)
        except Exception:
            log.exception("prediction log maintenance failed; the next interval tries again")
            return
        if done.partitions_compacted or done.partitions_expired or done.partitions_pruned:
            log.info("prediction log maintenance: %s", done.to_dict())

    def watch(
        self, interval: float, stop: threading.Event | None = None, max_passes: int | None = None
    ) -> None:
        """Run passes every `interval` seconds until `stop` is set (SIGTERM/SIGINT in the CLI).

        While the metadata store is unreachable, the wait doubles after each failed pass (up to
        MAX_BACKOFF_SECONDS) and each attempt logs one warning line, no traceback.
        """
        stop = stop or threading.Event()
        passes = 0
        failures = 0
        try:
            while not stop.is_set():
                started = time.monotonic()
                wait = interval
                outcome, held = "error", False
                try:
                    result = self.run_once()
                    log.info("%s", result.summary)
                    failures = 0
                    held = not result.details.get("standby", False)
                    outcome = "acted" if result.acted else "idle" if held else "standby"
                except LeaseLostError as exc:
                    outcome = "lease_lost"
                    log.warning("lost the controller lease during the pass (%s); not acting on it", exc)
                except Exception as exc:
                    if not store_unreachable(exc):
                        log.exception("controller pass failed")  # a bug: keep its traceback
                    else:
                        outcome = "store_unreachable"
                        failures += 1
                        wait = min(max(interval, MAX_BACKOFF_SECONDS), interval * 2**failures)
                        log.warning(
                            "metadata store unreachable (%s); backing off, next try in %.0fs",
                            first_line(exc),
                            wait,
                        )
                if self.metrics is not None:
                    self.metrics.interval.set(interval)
                    self.metrics.pass_ended(outcome, lease_held=held)
                passes += 1
                if max_passes is not None and passes >= max_passes:
                    return
                stop.wait(max(0.0, wait - (time.monotonic() - started)))
        finally:
            try:
                self.stores.metadata.release_lease(self.lease, self.holder)
            except Exception as exc:  # it lapses on its own after loop.lease_seconds
                log.warning("could not release the controller lease: %s", first_line(exc))


def open_stores_patiently(cfg: Config, stop: threading.Event) -> Stores | None:
    """The stores, retried with backoff while the metadata store is unreachable; None if `stop` came first."""
    wait = 1.0
    while True:
        try:
            return open_stores(cfg)
        except Exception as exc:
            if not store_unreachable(exc):
                raise
            log.warning(
                "metadata store unreachable (%s); backing off, next try in %.0fs", first_line(exc), wait
            )
        if stop.wait(wait):
            return None
        wait = min(2 * wait, MAX_BACKOFF_SECONDS)
