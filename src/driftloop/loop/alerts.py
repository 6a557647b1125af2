"""Alerts: rules from `alerts.rules` turned into notifications on the log and a Slack-compatible webhook.

    outcomes = evaluate_alerts(stores, cfg, check)      # after each monitoring pass
    raise_alert(stores, cfg, rule=..., severity=..., message=...)   # from anywhere in the loop

State lives in the metadata store's `alerts` table, keyed by a fingerprint (model, rule, what fired), so
any process can pick up where another left off:
- de-duplication: a rule that keeps firing updates its row (count, last seen) instead of notifying again;
- cool-down: a still-firing alert is re-sent at most every `alerts.cooldown_seconds`;
- escalation: an alert still firing after a retrain (the champion changed since it was raised) goes up
  one severity level and is sent at once;
- resolution: a rule that no longer fires on a pass with data closes its alert.
A "no data" pass neither raises nor resolves anything: an empty window is not news. A failing webhook is
retried with exponential backoff and then logged; it never breaks monitoring.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from driftloop.config import LOWER_IS_BETTER, AlertRule
from driftloop.monitor.estimated import estimated_drop
from driftloop.stores.metadata import utcnow

if TYPE_CHECKING:
    from driftloop.config import AlertsConfig, Config
    from driftloop.stores import Stores

log = logging.getLogger("driftloop.alerts")
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Alert:
    rule: str
    severity: str
    message: str
    key: str = ""
    """What fired within the rule (e.g. the drifted features), part of the fingerprint."""
    model_version: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self, model_name: str) -> str:
        return f"{model_name}:{self.rule}:{self.key}"[:200]


@dataclass(frozen=True)
class Outcome:
    alert: Alert
    action: str
    """`sent` (new), `reminded` (cool-down passed), `escalated`, `suppressed` (duplicate) or `resolved`."""
    severity: str
    delivered: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.alert.rule,
            "action": self.action,
            "severity": self.severity,
            "message": self.alert.message,
            "delivered": self.delivered,
        }


# -- rules -------------------------------------------------------------------------------------------------


def alerts_from_check(check: Any, rules: Sequence[AlertRule]) -> list[Alert]:
    """What each configured rule says about one monitoring pass (a pure function of the pass)."""
    if check.no_data:
        return []
    out = []
    for rule in rules:
        alert = _apply(rule, check)
        if alert is not None:
            out.append(alert)
    return out


def _apply(rule: AlertRule, check: Any) -> Alert | None:
    version = check.model_version
    drift = check.drift
    if rule.kind == "dataset_drift" and drift is not None and drift.dataset_drift:
        drifted = sorted(c.column for c in drift.tested if c.drift)
        return Alert(
            rule.name,
            rule.severity,
            f"dataset drift: {len(drifted)} of {len(drift.tested)} features drifted ({drift.share:.0%}): "
            + ", ".join(drifted[:10]),
            model_version=version,
            evidence={"drift_share": drift.share, "drifted": drifted},
        )
    if rule.kind == "feature_drift" and drift is not None:
        watched = set(rule.features) if rule.features else {c.column for c in drift.tested}
        drifted = sorted(c.column for c in drift.tested if c.drift and c.column in watched)
        if drifted:
            stats = {c.column: (c.method, c.statistic) for c in drift.tested if c.column in drifted}
            return Alert(
                rule.name,
                rule.severity,
                "feature drift: " + ", ".join(f"{name} ({m} {s:.3g})" for name, (m, s) in stats.items()),
                key=",".join(drifted),
                model_version=version,
                evidence={"drifted": drifted},
            )
    if (
        rule.kind == "metric_drop"
        and check.champion_metric is not None
        and check.reference_metric is not None
    ):
        metric = check.metric_name or ""
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        drop = sign * (check.reference_metric - check.champion_metric)
        if drop > rule.max_drop:
            return Alert(
                rule.name,
                rule.severity,
                f"{metric} dropped to {check.champion_metric:.4f} on labeled production rows "
                f"(gate: {check.reference_metric:.4f}, {check.n_labeled} labels)",
                model_version=version,
                evidence={
                    "metric": metric,
                    "live": check.champion_metric,
                    "reference": check.reference_metric,
                },
            )
    if rule.kind == "estimated_performance":
        metric = check.metric_name or ""
        fired, reason, evidence = estimated_drop(
            metric, check.champion_estimate, check.reference_metric, rule.max_drop
        )
        if fired:
            return Alert(rule.name, rule.severity, reason, model_version=version, evidence=evidence)
    if rule.kind == "data_quality" and check.quality is not None and not check.quality.passed:
        problems = check.quality.problems
        return Alert(
            rule.name,
            rule.severity,
            f"data quality: {len(problems)} problem(s): " + "; ".join(problems[:5]),
            model_version=version,
            evidence={"problems": problems},
        )
    return None


# -- channels ----------------------------------------------------------------------------------------------


class Channel(Protocol):
    def send(self, payload: dict[str, Any]) -> bool: ...


class LogChannel:
    """Every alert goes to the `driftloop.alerts` logger (warning, or error when critical)."""

    def send(self, payload: dict[str, Any]) -> bool:
        level = logging.ERROR if payload["driftloop"]["severity"] == "critical" else logging.WARNING
        log.log(level, payload["text"])
        return True


class WebhookChannel:
    """POST a Slack-compatible JSON body (`text`, plus a `driftloop` object with the details)."""

    def __init__(
        self,
        url: str,
        *,
        retries: int = 3,
        timeout: float = 5.0,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url, self.retries, self.timeout, self.backoff, self.sleep = url, retries, timeout, backoff, sleep

    def send(self, payload: dict[str, Any]) -> bool:
        for attempt in range(self.retries + 1):
            try:
                response = httpx.post(self.url, json=payload, timeout=self.timeout)
                if response.status_code < 300:
                    return True
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                self.sleep(self.backoff * 2**attempt)
        log.warning("webhook %s failed after %d attempts (%s)", self.url, self.retries + 1, reason)
        return False


def channels_for(cfg: AlertsConfig) -> list[Channel]:
    out: list[Channel] = [LogChannel()]
    if cfg.webhook_url:
        out.append(
            WebhookChannel(cfg.webhook_url, retries=cfg.webhook_retries, timeout=cfg.webhook_timeout_seconds)
        )
    return out


def payload(alert: Alert, *, model_name: str, severity: str, action: str, count: int) -> dict[str, Any]:
    prefix = {"escalated": "ESCALATED ", "reminded": "STILL FIRING ", "resolved": "RESOLVED "}.get(action, "")
    return {
        "text": f"[{severity.upper()}] {prefix}driftloop {model_name}: {alert.message}",
        "driftloop": {
            "model": model_name,
            "model_version": alert.model_version,
            "rule": alert.rule,
            "severity": severity,
            "action": action,
            "count": count,
            "evidence": alert.evidence,
        },
    }


# -- state machine over the alerts table -------------------------------------------------------------------


def _escalate(severity: str) -> str:
    return SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)]


def process(
    stores: Stores,
    alerts: Sequence[Alert],
    *,
    cooldown_seconds: float,
    channels: Sequence[Channel],
    evaluated_rules: Sequence[str] = (),
    now: datetime | None = None,
) -> list[Outcome]:
    """Apply de-duplication, cool-down, escalation and resolution; notify the channels when due."""
    now = now or utcnow()
    model = stores.model_name
    store = stores.metadata
    outcomes = []
    firing = set()
    for alert in alerts:
        fp = alert.fingerprint(model)
        firing.add(fp)
        row = store.get_open_alert(fp)
        if row is None:
            body = payload(alert, model_name=model, severity=alert.severity, action="sent", count=1)
            delivered = _deliver(channels, body)
            store.add_alert(
                fingerprint=fp, rule=alert.rule, severity=alert.severity, message=alert.message, ts=now,
                model_version=alert.model_version, evidence=alert.evidence, sent=delivered,
            )  # fmt: skip
            outcomes.append(Outcome(alert, "sent", alert.severity, delivered))
            continue
        count = row["count"] + 1
        changes: dict[str, Any] = {"count": count, "last_seen": now, "message": alert.message}
        severity = row["severity"]
        retrained = alert.model_version is not None and row["model_version"] not in (
            None,
            alert.model_version,
        )
        last_sent = row["last_sent"]
        if retrained:
            action, severity = "escalated", _escalate(severity)
            changes |= {"severity": severity, "model_version": alert.model_version}
        elif last_sent is None or (now - last_sent).total_seconds() >= cooldown_seconds:
            action = "reminded"
        else:
            action = "suppressed"
        delivered = True
        if action != "suppressed":
            delivered = _deliver(
                channels, payload(alert, model_name=model, severity=severity, action=action, count=count)
            )
            if delivered:
                changes["last_sent"] = now
        store.update_alert(row["id"], **changes)
        outcomes.append(Outcome(alert, action, severity, delivered))
    for rule in evaluated_rules:
        for row in store.list_alerts(state="firing"):
            if (
                row["rule"] == rule
                and row["fingerprint"].startswith(f"{model}:")
                and row["fingerprint"] not in firing
            ):
                store.update_alert(row["id"], state="resolved", last_seen=now)
                resolved = Alert(
                    rule, row["severity"], f"resolved: {row['message']}", model_version=row["model_version"]
                )
                _deliver(
                    channels,
                    payload(
                        resolved, model_name=model, severity="info", action="resolved", count=row["count"]
                    ),
                )
                outcomes.append(Outcome(resolved, "resolved", row["severity"]))
    return outcomes


def _deliver(channels: Sequence[Channel], body: dict[str, Any]) -> bool:
    ok = True
    for channel in channels:
        try:
            ok = channel.send(body) and ok
        except Exception:  # a broken channel must never break monitoring
            log.exception("alert channel %s failed", type(channel).__name__)
            ok = False
    return ok


def evaluate_alerts(
    stores: Stores,
    cfg: Config,
    check: Any,
    *,
    now: datetime | None = None,
    channels: Sequence[Channel] | None = None,
) -> list[Outcome]:
    """Run the configured rules on one monitoring pass and notify; a no-data pass changes nothing."""
    if check.no_data:
        return []
    rules = cfg.alerts.rules
    found = alerts_from_check(check, rules)
    return process(
        stores,
        found,
        cooldown_seconds=cfg.alerts.cooldown_seconds,
        channels=channels_for(cfg.alerts) if channels is None else channels,
        evaluated_rules=[r.name for r in rules],
        now=now,
    )


def raise_alert(
    stores: Stores,
    cfg: Config,
    *,
    rule: str,
    severity: str,
    message: str,
    model_version: str | None = None,
    evidence: dict[str, Any] | None = None,
    now: datetime | None = None,
    channels: Sequence[Channel] | None = None,
) -> Outcome:
    """An alert from outside the rules (e.g. a failed retrain), with the same de-duplication and cool-down."""
    alert = Alert(rule, severity, message, model_version=model_version, evidence=evidence or {})
    return process(
        stores,
        [alert],
        cooldown_seconds=cfg.alerts.cooldown_seconds,
        channels=channels_for(cfg.alerts) if channels is None else channels,
        now=now,
    )[0]
