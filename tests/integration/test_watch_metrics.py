"""`driftloop watch --metrics-port` as a real process: the scrape path the controller-down and stale-monitoring
alerts read (heartbeat, passes by result, the lease, the age of the last monitoring pass from the store)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from driftloop.config import load_config
from driftloop.demo import _free_port, _spawn, _stop
from driftloop.stores import open_stores
from driftloop.stores.metadata import utcnow
from tests.conftest import RED, write_project


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith(("driftloop_controller_", "driftloop_monitoring_", "process_"))
    }


def wait_for_passes(port: int, proc: object, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "watch exited"  # type: ignore[attr-defined]
        try:
            seen = scrape(port)
        except httpx.HTTPError:
            seen = {}
        if any(k[0] == "driftloop_controller_passes_total" and v >= 2 for k, v in seen.items()):
            return seen
        time.sleep(0.2)
    raise TimeoutError("no controller passes exported")


def test_watch_exports_heartbeat_passes_lease_and_monitoring_age(tmp_path: Path) -> None:
    path = write_project(tmp_path, RED, loop={"interval_seconds": 0.5, "lease_seconds": 30})
    cfg = load_config(path)
    stores = open_stores(cfg)
    end = utcnow() - timedelta(hours=5)
    try:  # a monitoring pass five hours ago over a one-hour window; no champion, so no pass monitors now
        stores.metadata.add_monitoring_result(
            cfg.project.name,
            {},
            model_version="1",
            window_start=end - timedelta(hours=1),
            window_end=end,
            n_rows=500,
            dataset_drift=False,
            drift_share=0.0,
            ts=end,
        )
    finally:
        stores.close()
    started = time.time()
    ports = [_free_port(), _free_port()]
    procs = [
        _spawn(
            ["--config", str(path), "watch", "--metrics-port", str(p)], tmp_path / f"watch-{i}.log", tmp_path
        )
        for i, p in enumerate(ports)
    ]
    try:
        views = [wait_for_passes(p, proc) for p, proc in zip(ports, procs, strict=True)]
    finally:
        for proc in procs:
            _stop(proc)
    name = (("model_name", cfg.project.name),)
    # One controller is active (idle: no champion yet), the other waits on standby.
    held = sorted(v[("driftloop_controller_lease_held", name)] for v in views)
    assert held == [0.0, 1.0]
    active, standby = sorted(views, key=lambda v: -v[("driftloop_controller_lease_held", name)])
    assert active[("driftloop_controller_passes_total", (*name, ("result", "idle")))] >= 2
    assert active[("driftloop_controller_passes_total", (*name, ("result", "standby")))] == 0
    assert standby[("driftloop_controller_passes_total", (*name, ("result", "standby")))] >= 2
    for view in views:
        assert view[("driftloop_controller_heartbeat_timestamp_seconds", name)] >= started
        assert view[("driftloop_controller_interval_seconds", name)] == 0.5
        # Seeded from the store at start-up: the stale-monitoring alert sees five hours, not nothing.
        assert view[("driftloop_monitoring_last_pass_timestamp_seconds", ())] == end.timestamp()
        assert view[("driftloop_monitoring_window_seconds", ())] == 3600
        assert view[("process_resident_memory_bytes", ())] > 0  # one process: the default collector's
