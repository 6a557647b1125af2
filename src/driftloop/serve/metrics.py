"""Prometheus metrics of the prediction service (names in docs/contracts.md), correct with several workers.

`driftloop serve` points PROMETHEUS_MULTIPROC_DIR at a fresh folder before any worker starts, so every
worker writes its samples to memory-mapped files there and `/metrics`, whichever worker answers, merges
them all. Without that variable (a server embedded in a test or a notebook) the metrics live in this
instance's own registry. Label children are cached: `.labels()` takes a lock and a dict lookup per call.

The per-model series carry `model_name` (the project's name: one value per server, so the label adds no
cardinality; it tells models apart where one Prometheus scrapes the servers of several projects).

prometheus_client's multiprocess mode has no process metrics (its ProcessCollector reads only its own
process), so each worker samples its own CPU time and memory into `driftloop_process_*` series that merge
without a `pid` label: CPU seconds as a counter (summed over all workers that ever ran, as a rate wants),
resident and virtual memory and open file descriptors as `livesum` gauges (the live workers' total), and
`driftloop_workers` counts the live workers.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Regression predictions are counted in these value buckets (symmetric, decades): bounded label values.
VALUE_EDGES = tuple(sorted({s * 10.0**e for s in (-1, 1) for e in range(-1, 7)} | {0.0}))


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def _values_in_files() -> bool:
    """True when prometheus_client was imported with the multiprocess folder set (it decides at import)."""
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


def value_bucket(value: float) -> str:
    if not math.isfinite(value):
        return "nan"
    for edge in VALUE_EDGES:
        if value <= edge:
            return f"le_{edge:g}"
    return "gt_1e+06"


class Metrics:
    """The service's metric objects, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None, *, model_name: str = "") -> None:
        # The *_created samples double the exposition and no dashboard uses them.
        disable_created_metrics()
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.model_name = model_name
        r = self.registry
        self.requests = Counter(
            "driftloop_requests",
            "Prediction requests",
            ["model_name", "model_version", "arm", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "driftloop_request_latency_seconds",
            "Server-side prediction latency",
            ["model_name", "arm"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "driftloop_predictions",
            "Predicted rows",
            ["model_name", "model_version", "arm", "outcome"],
            registry=r,
        )
        self.predict_cpu = Counter(
            "driftloop_predict_cpu_seconds",
            "CPU seconds the model spent predicting (per micro-batch, on the thread that ran it, shared by rows); "
            "per 1,000 predictions: 1e6 * rate(this) / rate(driftloop_predictions_total)",
            ["model_name", "model_version", "arm"],
            registry=r,
        )
        self.model_loads = Counter(
            "driftloop_model_loads", "Model loads", ["model_name", "model_version", "result"], registry=r
        )
        self.swap_failures = Counter(
            "driftloop_swap_failures", "Deployments that could not be applied", registry=r
        )
        self.store_unreachable = Gauge(
            "driftloop_store_unreachable",
            "1 while the metadata store cannot be read",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.log_queue_rows = Gauge(
            "driftloop_log_queue_rows",
            "Rows buffered by the log writers",
            ["log"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.log_dropped = Counter(
            "driftloop_log_dropped_rows", "Log rows dropped (queue full)", ["log"], registry=r
        )
        self.log_quarantined = Counter(
            "driftloop_log_quarantined_rows",
            "Log rows the writer could not write, kept in <log_dir>/quarantine/",
            ["log"],
            registry=r,
        )
        self.challenger_weight = Gauge(
            "driftloop_challenger_weight",
            "Challenger weight served now",
            ["model_name"],
            registry=r,
            multiprocess_mode="livemax",
        ).labels(model_name)
        self.model_ready = Gauge(
            "driftloop_model_ready",
            "1 when a model is loaded (min over workers)",
            ["model_name"],
            registry=r,
            multiprocess_mode="livemin",
        ).labels(model_name)
        self.process = ProcessMetrics(r)
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self.model_name, *labels)
        return child

    def count_load(self, model_version: str, result: str) -> None:
        self._child(self.model_loads, model_version, result).inc()

    def observe_request(self, model_version: str, arm: str, status: int, seconds: float | None) -> None:
        self._child(self.requests, model_version, arm, str(status)).inc()
        if seconds is not None:
            self._child(self.latency, arm).observe(seconds)

    def count_outcomes(self, model_version: str, arm: str, counts: dict[str, int]) -> None:
        for outcome, n in counts.items():
            self._child(self.predictions, model_version, arm, outcome).inc(n)

    def count_cpu(self, model_version: str, arm: str, seconds: float | None) -> None:
        if seconds is not None:
            self._child(self.predict_cpu, model_version, arm).inc(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text: merged over all workers in multiprocess mode."""
        self.process.sample()  # this worker's figures fresh; the others' are at most one period old
        folder = multiprocess_dir()
        if folder and _values_in_files():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=folder)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    @staticmethod
    def mark_process_dead(pid: int | None = None) -> None:
        """Drop this worker's live gauges from the merged view when it exits."""
        folder = multiprocess_dir()
        if folder:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid or os.getpid(), folder)


class ProcessMetrics:
    """This process's CPU time, memory and open files as series that merge over workers without a `pid`.

    `sample()` runs every `period` seconds on a daemon thread (`start`) and before each exposition. Linux
    `/proc` gives memory and descriptors; elsewhere only CPU time is sampled.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.cpu = Counter(
            "driftloop_process_cpu_seconds", "CPU time (user + system) of the server's workers", registry=r
        )
        self.rss = Gauge(
            "driftloop_process_resident_memory_bytes",
            "Resident memory of the live workers, summed",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.vms = Gauge(
            "driftloop_process_virtual_memory_bytes",
            "Virtual memory of the live workers, summed",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.fds = Gauge(
            "driftloop_process_open_fds",
            "Open file descriptors of the live workers, summed",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.workers = Gauge(
            "driftloop_workers", "Live worker processes", registry=r, multiprocess_mode="livesum"
        )
        self._cpu_seen = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def sample(self) -> None:
        times = os.times()
        with self._lock:  # the sampler thread and a scrape may both sample: count each CPU second once
            cpu = times.user + times.system
            if cpu > self._cpu_seen:
                self.cpu.inc(cpu - self._cpu_seen)
                self._cpu_seen = cpu
        try:
            with open("/proc/self/statm", "rb") as f:
                size, resident = f.read().split()[:2]
            self.vms.set(int(size) * self._page)
            self.rss.set(int(resident) * self._page)
            self.fds.set(len(os.listdir("/proc/self/fd")))
        except OSError:  # not Linux: CPU time only
            pass

    def start(self, period: float = 5.0) -> None:
        self.workers.set(1)
        self.sample()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, args=(period,), name="driftloop-process-metrics", daemon=True
            )
            self._thread.start()

    def _run(self, period: float) -> None:
        while not self._stop.wait(period):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
