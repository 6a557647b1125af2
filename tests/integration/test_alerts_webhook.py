"""Alerts end to end on a real metadata store and a real HTTP webhook on 127.0.0.1: de-duplication, cool-down,
escalation after a retrain, resolution, no-data quiet, and a failing webhook that never breaks monitoring."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from driftloop.config import AlertRule, config_from_dict
from driftloop.loop.alerts import (
    WebhookChannel,
    alerts_from_check,
    channels_for,
    evaluate_alerts,
    raise_alert,
)
from driftloop.monitor.check import CheckResult
from driftloop.monitor.drift import ColumnDrift, DriftResult
from driftloop.stores import Stores, open_stores
from tests.conftest import database_url

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Hook:
    """A webhook receiver: records JSON bodies, answers `fail_first` requests with HTTP 500 first."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict] = []
        self.requests = 0
        self.fail_first = fail_first
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests += 1
                if hook.requests <= hook.fail_first:
                    self.send_response(500)
                else:
                    hook.bodies.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def make_stores(tmp_path: Path, url: str | None, **alerts: object) -> Stores:
    cfg = config_from_dict(
        {
            "data": {"target": "quality"},
            "project": {"name": "wine"},
            "stores": {
                "root": str(tmp_path / ".driftloop"),
                "database_url": database_url(tmp_path / ".driftloop"),
            },
            "alerts": {"webhook_url": url, "cooldown_seconds": 600, "webhook_retries": 2, **alerts},
        },
        environ={},
    )
    return open_stores(cfg)


def check(
    version: str = "1", *, drifted: bool = True, rows: int = 500, live: float | None = None
) -> CheckResult:
    cols = [
        ColumnDrift("alcohol", "numeric", "wasserstein", 0.4 if drifted else 0.01, 0.1, drifted),
        ColumnDrift("pH", "numeric", "wasserstein", 0.3 if drifted else 0.02, 0.1, drifted),
    ]
    result = CheckResult(
        "wine", version, "ok" if rows >= 30 else "no_data", T0, T0, rows,
        metric_name="accuracy", champion_metric=live, reference_metric=0.62,
    )  # fmt: skip
    if rows >= 30:
        result.drift = DriftResult(cols, drift_share=0.5, n_reference=1000, n_current=rows)
    return result


def fast(stores: Stores) -> list:
    # The configured channels with the webhook's backoff shortened, so the test does not sleep for seconds.
    channels = channels_for(stores.cfg.alerts)
    for ch in channels:
        if isinstance(ch, WebhookChannel):
            ch.backoff = 0.01
    return channels


def test_dedup_cooldown_escalation_and_resolution(tmp_path: Path, hook: Hook) -> None:
    stores = make_stores(tmp_path, hook.url)
    cfg, ch = stores.cfg, fast(stores)
    first = evaluate_alerts(stores, cfg, check(), now=T0, channels=ch)
    assert [(o.alert.rule, o.action) for o in first] == [("dataset-drift", "sent")]
    assert len(hook.bodies) == 1
    body = hook.bodies[0]
    assert body["text"].startswith("[WARNING] driftloop wine: dataset drift: 2 of 2 features drifted")
    assert body["driftloop"]["rule"] == "dataset-drift" and body["driftloop"]["model_version"] == "1"

    for minutes in (5, 9):  # within the 10-minute cool-down: recorded, not re-sent
        again = evaluate_alerts(stores, cfg, check(), now=T0 + timedelta(minutes=minutes), channels=ch)
        assert [o.action for o in again] == ["suppressed"]
    assert len(hook.bodies) == 1
    row = stores.metadata.list_alerts(state="firing")[0]
    assert row["count"] == 3 and row["last_sent"] == T0

    later = evaluate_alerts(stores, cfg, check(), now=T0 + timedelta(minutes=11), channels=ch)
    assert [o.action for o in later] == ["reminded"] and len(hook.bodies) == 2
    assert "STILL FIRING" in hook.bodies[-1]["text"]

    # A retrain promoted v2 and the drift is still there: one level up, sent at once despite the cool-down.
    escalated = evaluate_alerts(stores, cfg, check("2"), now=T0 + timedelta(minutes=12), channels=ch)
    assert [(o.action, o.severity) for o in escalated] == [("escalated", "critical")]
    assert hook.bodies[-1]["driftloop"]["severity"] == "critical" and "ESCALATED" in hook.bodies[-1]["text"]

    quiet = evaluate_alerts(
        stores, cfg, check("2", drifted=False), now=T0 + timedelta(minutes=13), channels=ch
    )
    assert [o.action for o in quiet] == ["resolved"]
    assert stores.metadata.list_alerts(state="firing") == []
    assert hook.bodies[-1]["driftloop"]["action"] == "resolved"


def test_no_data_window_raises_and_resolves_nothing(tmp_path: Path, hook: Hook) -> None:
    stores = make_stores(tmp_path, hook.url)
    ch = fast(stores)
    evaluate_alerts(stores, stores.cfg, check(), now=T0, channels=ch)
    for i in range(20):  # an idle service: many empty windows in a row
        assert (
            evaluate_alerts(stores, stores.cfg, check(rows=0), now=T0 + timedelta(minutes=i), channels=ch)
            == []
        )
    assert len(hook.bodies) == 1 and len(stores.metadata.list_alerts(state="firing")) == 1


def test_failing_webhook_is_retried_with_backoff_and_never_raises(tmp_path: Path) -> None:
    failing = Hook(fail_first=100)
    try:
        stores = make_stores(tmp_path, failing.url)
        outcomes = evaluate_alerts(stores, stores.cfg, check(), now=T0, channels=fast(stores))
        assert failing.requests == 3  # 1 + webhook_retries
        assert [(o.action, o.delivered) for o in outcomes] == [("sent", False)]
        # Not delivered: the next pass tries again instead of waiting out the cool-down.
        again = evaluate_alerts(
            stores, stores.cfg, check(), now=T0 + timedelta(minutes=1), channels=fast(stores)
        )
        assert [o.action for o in again] == ["reminded"] and failing.requests == 6
    finally:
        failing.close()
    recovering = Hook(fail_first=1)
    try:
        slept: list[float] = []
        channel = WebhookChannel(recovering.url, retries=3, backoff=0.5, sleep=slept.append)
        assert channel.send({"text": "x", "driftloop": {"severity": "info"}}) is True
        assert recovering.requests == 2 and slept == [0.5]
    finally:
        recovering.close()
    # Nothing listens on this port any more: connection refused, logged, no exception.
    dead = WebhookChannel(recovering.url, retries=1, sleep=lambda s: None, timeout=1.0)
    assert dead.send({"text": "x", "driftloop": {"severity": "info"}}) is False


def test_rules_metric_drop_feature_drift_and_raise_alert(tmp_path: Path, hook: Hook) -> None:
    rules = [
        AlertRule(name="perf", kind="metric_drop", max_drop=0.05, severity="critical"),
        AlertRule(name="alcohol", kind="feature_drift", features=["alcohol"]),
        AlertRule(name="sugar", kind="feature_drift", features=["residual sugar"]),
    ]
    found = alerts_from_check(check(live=0.50), rules)
    assert [a.rule for a in found] == ["perf", "alcohol"]
    assert "accuracy dropped to 0.5000" in found[0].message
    assert alerts_from_check(check(live=0.60), rules[:1]) == []  # a 0.02 drop is within max_drop
    stores = make_stores(tmp_path, hook.url)
    out = raise_alert(
        stores,
        stores.cfg,
        rule="retrain-failed",
        severity="critical",
        message="boom",
        now=T0,
        channels=fast(stores),
    )
    assert out.action == "sent" and hook.bodies[-1]["text"] == "[CRITICAL] driftloop wine: boom"
    dup = raise_alert(
        stores,
        stores.cfg,
        rule="retrain-failed",
        severity="critical",
        message="boom",
        now=T0,
        channels=fast(stores),
    )
    assert dup.action == "suppressed" and len(hook.bodies) == 1
