"""Process CPU and memory in prometheus_client's multiprocess mode (which has no process metrics of its own):
real worker processes write to a real multiprocess folder, and the merged view has no `pid` label, sums the
live workers' memory, forgets a dead worker's memory and keeps its CPU seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

WORKER = """
import json, os, sys, time
from driftloop.serve.metrics import Metrics

metrics = Metrics(model_name="wine")
metrics.process.start(period=3600)  # samples only when told: the figures below are the ones written
t = time.process_time()
while time.process_time() - t < 0.2:  # some CPU time to count
    sum(range(1000))
metrics.process.sample()
with open("/proc/self/statm") as f:
    rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
cpu = os.times()
# The CPU time counted so far, and what the OS says now (a clock tick may have passed since the sample).
print(json.dumps({"counted": metrics.process._cpu_seen, "cpu": cpu.user + cpu.system, "rss": rss}), flush=True)
if sys.argv[1] == "exit":
    metrics.process.stop()
    Metrics.mark_process_dead()
else:
    sys.stdin.readline()  # alive until the test has read the merged view
"""


def merged(folder: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    text = generate_latest(registry).decode()
    assert "pid=" not in text
    return {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith(("driftloop_process_", "driftloop_workers"))
    }


def test_process_metrics_merge_over_workers_without_pid(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def worker(mode: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", WORKER, mode],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    gone = worker("exit")
    gone_figures = json.loads(gone.stdout.readline())  # type: ignore[union-attr]
    assert gone.wait(60) == 0
    alive = [worker("stay"), worker("stay")]
    try:
        figures = [json.loads(p.stdout.readline()) for p in alive]  # type: ignore[union-attr]
        view = merged(tmp_path)
    finally:
        for p in alive:
            p.communicate("\n", timeout=60)
    assert view["driftloop_workers"] == 2  # the exited worker is not live
    assert view["driftloop_process_resident_memory_bytes"] == pytest.approx(
        sum(f["rss"] for f in figures), rel=0.05
    )
    assert view["driftloop_process_virtual_memory_bytes"] > view["driftloop_process_resident_memory_bytes"]
    assert view["driftloop_process_open_fds"] >= 2 * 3
    # CPU seconds are a counter: the exited worker's stay in the total (a rate over restarts stays right).
    total = gone_figures["counted"] + sum(f["counted"] for f in figures)
    assert view["driftloop_process_cpu_seconds_total"] == pytest.approx(total, abs=1e-9)
    assert all(0.2 <= f["counted"] <= f["cpu"] for f in [gone_figures, *figures])
