"""Prometheus metrics of the controller (`driftloop watch --metrics-port`): is it alive, does it work.

A controller that is down is seen by Prometheus itself (`up == 0` on the watch target). One that runs but
never finishes a pass (stuck in a store call, a hung retrain) is not: the heartbeat gauge says when the last
pass ended, whatever its result, and the pass counter says how they ended. `lease_held` tells the active
controller from a standby one. The monitoring gauges (monitor/publish.py) carry the time of the last
monitoring pass; `seed_monitoring` sets it from the metadata store when watch starts, so a restarted
controller reports how old monitoring really is rather than nothing.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

__all__ = ["PASS_RESULTS", "ControllerMetrics", "controller_metrics", "seed_monitoring"]

PASS_RESULTS = ("acted", "idle", "standby", "lease_lost", "store_unreachable", "error")
"""How a pass ended: the `result` label of driftloop_controller_passes_total (a fixed set)."""


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry, model_name: str) -> None:
        r = registry
        self.model_name = model_name
        self.heartbeat = Gauge(
            "driftloop_controller_heartbeat_timestamp_seconds",
            "Unix time the controller's last pass ended (any result)",
            ["model_name"],
            registry=r,
        ).labels(model_name)
        self.interval = Gauge(
            "driftloop_controller_interval_seconds",
            "Seconds between the controller's passes (loop.interval_seconds)",
            ["model_name"],
            registry=r,
        ).labels(model_name)
        self.lease_held = Gauge(
            "driftloop_controller_lease_held",
            "1 while this controller holds the lease (the active one), 0 on standby",
            ["model_name"],
            registry=r,
        ).labels(model_name)
        self.passes = Counter(
            "driftloop_controller_passes", "Controller passes by result", ["model_name", "result"], registry=r
        )
        for result in PASS_RESULTS:  # every series exists from the start: a rate over it is never empty
            self.passes.labels(model_name, result)

    def pass_ended(self, result: str, *, lease_held: bool, now: float | None = None) -> None:
        self.passes.labels(self.model_name, result).inc()
        self.lease_held.set(1 if lease_held else 0)
        self.heartbeat.set(time.time() if now is None else now)


_BY_REGISTRY: dict[tuple[int, str], ControllerMetrics] = {}


def controller_metrics(model_name: str, registry: CollectorRegistry = REGISTRY) -> ControllerMetrics:
    """One set per registry and model (a second Controller in the same process shares them)."""
    key = (id(registry), model_name)
    if key not in _BY_REGISTRY:
        _BY_REGISTRY[key] = ControllerMetrics(registry, model_name)
    return _BY_REGISTRY[key]


def seed_monitoring(metadata: Any, model_name: str, registry: CollectorRegistry = REGISTRY) -> float | None:
    """Set the last-monitoring-pass gauges from the newest stored result; its Unix time, or None if none."""
    from driftloop.monitor.publish import monitoring_freshness

    rows = metadata.list_monitoring_results(model_name, limit=1)
    if not rows:
        return None
    row = rows[-1]
    start, end = row.get("window_start"), row.get("window_end")
    window = (end - start).total_seconds() if start is not None and end is not None else None
    ts = float(row["ts"].timestamp())
    monitoring_freshness(ts, window, registry)
    return ts
