"""The loop's steps as plain functions over the stores: monitor, decide on triggers, retrain (with the gate),
start a canary, judge a canary step.

`driftloop watch` (controller.py) and the Airflow DAG call exactly these, so they cannot disagree. Each
step reads what it needs from the stores and writes its decision back as an event with its evidence;
none keeps state in memory, so any step can be retried or run twice without harm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from driftloop.config import Config
from driftloop.loop.online import arm_stats, scrape_requests
from driftloop.loop.rollout import Decision, decide
from driftloop.loop.triggers import Signals, TriggerResult, evaluate_triggers, trigger_name
from driftloop.stores import Stores
from driftloop.stores.metadata import utcnow

log = logging.getLogger(__name__)

TRIGGER_FIRED = "trigger_fired"
RETRAIN_SKIPPED = "retrain_skipped"


def default_metrics_urls(cfg: Config) -> list[str]:
    if cfg.loop.metrics_urls:
        return list(cfg.loop.metrics_urls)
    host = "127.0.0.1" if cfg.serving.host in ("0.0.0.0", "::") else cfg.serving.host
    return [f"http://{host}:{cfg.serving.port}/metrics"]


# -- monitor --------------------------------------------------------------------------------------------------


@dataclass
class MonitorOutcome:
    signals: Signals
    summary: str
    result: dict[str, Any] = field(default_factory=dict)


def monitor_step(stores: Stores, cfg: Config, *, now: datetime | None = None) -> MonitorOutcome:
    """One monitoring pass over the configured window (stored, logged to MLflow, alerts sent)."""
    from driftloop.loop.alerts import evaluate_alerts
    from driftloop.monitor.check import run_check

    now = now or utcnow()
    check = run_check(stores, cfg, now=now)
    try:
        evaluate_alerts(stores, cfg, check, now=now)
    except Exception:  # alerting is a side channel: a failure is logged, never a reason to stop the loop
        log.exception("alert evaluation failed")
    signals = signals_from_check(check, cfg, now)
    if signals.no_data:
        summary = f"monitoring: no data ({signals.n_rows} rows in the window)"
    else:
        summary = (
            f"monitoring: {signals.n_rows} rows, drift share {signals.drift_share:.0%}, "
            f"dataset drift {'yes' if signals.dataset_drift else 'no'}"
        )
    return MonitorOutcome(signals=signals, summary=summary, result=check.to_dict(distributions=False))


def signals_from_check(check: Any, cfg: Config, now: datetime) -> Signals:
    drift = check.drift
    return Signals(
        now=now,
        n_rows=check.n_rows,
        no_data=check.no_data,
        dataset_drift=None if drift is None else drift.dataset_drift,
        drift_share=None if drift is None else drift.share,
        drifted_features=frozenset()
        if drift is None
        else frozenset(c.column for c in drift.tested if c.drift),
        metric=check.metric_name or "",
        live_metric=check.champion_metric,
        reference_metric=check.reference_metric,
        n_labels=check.n_labeled,
    )


# -- triggers -------------------------------------------------------------------------------------------------


def last_fired(stores: Stores) -> dict[str, datetime]:
    """When each trigger last fired, from the event log (so cool-downs survive restarts).

    A firing whose retrain was skipped (too few labeled rows yet) does not start a cool-down: the trigger
    may fire again on the next pass, once the labels are there.
    """
    out: dict[str, datetime] = {}
    pending: dict[str, datetime] = {}
    for ev in stores.metadata.list_events(stores.model_name, kinds=[TRIGGER_FIRED, RETRAIN_SKIPPED]):
        if ev.kind == RETRAIN_SKIPPED:
            pending.clear()
            continue
        out.update(pending)
        pending = {ev.evidence.get("trigger", ""): ev.ts}
    return out | pending


def trigger_step(stores: Stores, cfg: Config, signals: Signals) -> list[TriggerResult]:
    """The triggers that fire now; each is recorded as an event with its evidence."""
    results = evaluate_triggers(cfg.loop.triggers, signals, last_fired(stores))
    fired = [r for r in results if r.fired]
    dep = stores.metadata.get_deployment(stores.model_name)
    for r in fired:
        stores.metadata.add_event(
            stores.model_name,
            TRIGGER_FIRED,
            r.reason,
            model_version=dep.champion,
            evidence={"trigger": r.name, **r.evidence, "n_rows": signals.n_rows},
        )
    return fired


# -- retrain + gate -------------------------------------------------------------------------------------------


@dataclass
class RetrainOutcome:
    version: str | None
    gate_passed: bool
    summary: str
    data_version: str | None = None


def retrain_step(stores: Stores, cfg: Config, *, reasons: list[str]) -> RetrainOutcome:
    """Assemble data by the retraining policy, train with the normal budget, gate against the champion.

    A crash anywhere leaves the champion untouched: it is recorded as `retrain_failed` and alerted.
    """
    from driftloop.loop.retrain import assemble, production_rows
    from driftloop.train.search import train

    dep = stores.metadata.get_deployment(stores.model_name)
    champion = stores.tracking.get_version(dep.champion)  # type: ignore[arg-type]
    base_version = champion.tags.get("data_version", "")
    stores.metadata.add_event(
        stores.model_name,
        "retrain_started",
        "; ".join(reasons),
        model_version=dep.champion,
        data_version=base_version,
    )
    try:
        spec = stores.tracking.load_bundle(champion.version).spec
        production = production_rows(stores, cfg, spec)
        if len(production) < cfg.loop.retrain.min_labeled_rows:
            msg = (
                f"only {len(production)} labeled production rows "
                f"(< loop.retrain.min_labeled_rows={cfg.loop.retrain.min_labeled_rows}); not retraining yet"
            )
            stores.metadata.add_event(stores.model_name, RETRAIN_SKIPPED, msg, model_version=dep.champion)
            return RetrainOutcome(None, False, msg)
        training_set = assemble(stores, cfg, spec, base_version, production=production)
        result = train(
            cfg,
            data_version=training_set.record.version,
            stores=stores,
            recent=training_set.recent,
            progress=False,
        )
    except Exception as exc:
        log.exception("retraining failed")
        stores.metadata.add_event(
            stores.model_name,
            "retrain_failed",
            f"{type(exc).__name__}: {exc}; the champion v{dep.champion} keeps serving",
            model_version=dep.champion,
        )
        _alert_retrain_failed(stores, cfg, exc)
        return RetrainOutcome(None, False, f"retraining failed: {exc}")
    stores.metadata.add_event(
        stores.model_name,
        "retrain_finished",
        f"v{result.version} trained on {training_set.record.version} "
        f"({training_set.n_base} base + {training_set.n_production} production rows)",
        model_version=result.version,
        run_id=result.run_id,
        data_version=training_set.record.version,
    )
    return RetrainOutcome(
        version=result.version,
        gate_passed=result.challenger,
        summary=f"v{result.version}: gate {'passed' if result.challenger else 'failed'}",
        data_version=training_set.record.version,
    )


def _alert_retrain_failed(stores: Stores, cfg: Config, exc: Exception) -> None:
    from driftloop.loop.alerts import raise_alert

    try:
        raise_alert(
            stores, cfg, rule="retrain-failed", severity="critical", message=f"retraining failed: {exc}"
        )
    except Exception:  # an alert channel failing must not hide the original failure
        log.exception("could not send the retrain-failed alert")


# -- canary ---------------------------------------------------------------------------------------------------


def start_canary(stores: Stores, cfg: Config, version: str) -> str:
    """Route the first canary step's share of traffic to the gated challenger."""
    from driftloop.registry import deployments

    weight = cfg.loop.rollout.steps[0]
    deployments.start_canary(stores, version, weight=weight, reason=f"gate passed: canary at {weight:.0%}")
    return f"canary started at {weight:.0%}"


def rollout_step(
    stores: Stores, cfg: Config, *, now: datetime | None = None, metrics_urls: list[str] | None = None
) -> Decision:
    """Judge the current canary step and apply the decision (advance, promote, roll back or hold)."""
    from driftloop.registry import deployments

    now = now or utcnow()
    dep = stores.metadata.get_deployment(stores.model_name)
    if dep.challenger is None or dep.strategy != "canary" or dep.champion is None:
        return Decision("hold", "no canary in progress")
    step = dep.rollout_step or 0
    since = dep.step_started_at or dep.updated_at or now
    spec = stores.tracking.load_bundle(dep.challenger).spec
    errors = scrape_requests(metrics_urls if metrics_urls is not None else default_metrics_urls(cfg))
    champion, challenger = arm_stats(
        stores.log_dir,
        since=since,
        champion=dep.champion,
        challenger=dep.challenger,
        regression=spec.task == "regression",
        errors=errors,
    )
    decision = decide(
        cfg.loop.rollout,
        step,
        champion,
        challenger,
        (now - since).total_seconds(),
        regression=spec.task == "regression",
    )
    evidence = decision.evidence
    if decision.action == "rollback":
        deployments.rollback(stores, reason=decision.reason, evidence=evidence, expected=dep)
    elif decision.action == "promote":
        deployments.promote(stores, reason=decision.reason, evidence=evidence, expected=dep)
    elif decision.action == "advance":
        weight = cfg.loop.rollout.steps[step + 1]
        deployments.advance_canary(
            stores, step=step + 1, weight=weight, reason=decision.reason, evidence=evidence, expected=dep
        )
    return decision


__all__ = [
    "MonitorOutcome",
    "RetrainOutcome",
    "default_metrics_urls",
    "monitor_step",
    "retrain_step",
    "rollout_step",
    "start_canary",
    "trigger_name",
    "trigger_step",
]
