"""The loop's steps as plain functions over the stores: monitor, decide on triggers, retrain (with the gate),
start a canary, judge a canary step.

`driftloop watch` (controller.py) and the Airflow DAG call exactly these, so they cannot disagree. Each
step reads what it needs from the stores and writes its decision back as an event with its evidence;
none keeps state in memory, so any step can be retried or run twice without harm.

Every step takes the caller's controller lease as `fence`: each event and deployment change it writes then
commits only while that lease is still held (`LeaseLostError` otherwise), so a controller that lost its
lease in the middle of a step stops acting instead of deciding beside the one that took over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from driftloop.config import Config
from driftloop.errors import LeaseLostError
from driftloop.loop.online import arm_stats
from driftloop.loop.rollout import Decision, decide
from driftloop.loop.triggers import Signals, TriggerResult, evaluate_triggers, trigger_name
from driftloop.stores import Stores
from driftloop.stores.metadata import Lease, store_unreachable, utcnow

log = logging.getLogger(__name__)

TRIGGER_FIRED = "trigger_fired"
RETRAIN_STARTED = "retrain_started"
RETRAIN_SKIPPED = "retrain_skipped"
RETRAIN_FAILED = "retrain_failed"
RETRAIN_FINISHED = "retrain_finished"
RETRAIN_OUTCOMES = (RETRAIN_FINISHED, RETRAIN_FAILED, RETRAIN_SKIPPED)


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
    except Exception as exc:
        # Alerting is a side channel: a failure is logged, never a reason to stop the loop.
        if not store_unreachable(exc):
            log.exception("alert evaluation failed")
        else:  # the store went away mid-pass: the next step fails the same way and the controller backs off
            log.warning("alert evaluation skipped: metadata store unreachable")
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
        multivariate=tuple((m.method, m.statistic, m.threshold, m.drift) for m in check.multivariate),
        metric=check.metric_name or "",
        live_metric=check.champion_metric,
        reference_metric=check.reference_metric,
        n_labels=check.n_labeled,
        estimated_metric=check.champion_estimate,
    )


# -- recovery -------------------------------------------------------------------------------------------------


def recover_step(stores: Stores, cfg: Config, *, fence: Lease | None = None) -> list[str]:
    """Finish what a controller that died (or lost its lease) mid-pass left behind; what was done, for logs.

    Run by the lease holder first thing in a pass, so no other controller's retrain can still be running:

    - a `retrain_started` with no outcome was interrupted: it gets a `retrain_failed` event marked
      `interrupted` (so every start has an outcome), and its trigger no cool-down, so it is retried;
    - an idle challenger that the last retrain named (set during it, or named by its `retrain_finished`)
      and that never had a canary gets its canary started, as the stopped controller was about to do.
    """
    from driftloop.registry import deployments

    kinds = [RETRAIN_STARTED, *RETRAIN_OUTCOMES, "challenger_set", "canary_started"]
    events = stores.metadata.list_events(stores.model_name, kinds=kinds)
    done: list[str] = []
    started = [i for i, e in enumerate(events) if e.kind == RETRAIN_STARTED]
    if not started:
        return done
    last = started[-1]
    after = events[last + 1 :]
    outcome = next((i for i, e in enumerate(after) if e.kind in RETRAIN_OUTCOMES), None)
    if outcome is None:
        msg = "interrupted: the controller running it stopped (killed, or lost its lease); retrying"
        stores.metadata.add_event(
            stores.model_name,
            RETRAIN_FAILED,
            msg,
            model_version=events[last].model_version,
            evidence={"interrupted": True, "retrain_started": events[last].id},
            fence=fence,
        )
        done.append(f"retrain of {events[last].ts.isoformat()} {msg}")
    dep = stores.metadata.get_deployment(stores.model_name)
    if dep.challenger is None or dep.strategy != "single":
        return done
    # Named by that retrain: during it (before its outcome), or its outcome names it. Not a model trained
    # by hand later, which waits for a person to start its rollout.
    during = after if outcome is None else after[: outcome + 1]
    named = any(
        e.kind in ("challenger_set", RETRAIN_FINISHED) and e.model_version == dep.challenger for e in during
    )
    canaried = any(e.kind == "canary_started" and e.model_version == dep.challenger for e in events)
    if named and not canaried:
        weight = cfg.loop.rollout.steps[0]
        deployments.start_canary(
            stores,
            dep.challenger,
            weight=weight,
            reason=f"resumed: the retrained challenger had no canary yet; canary at {weight:.0%}",
            expected=dep,
            fence=fence,
        )
        done.append(f"started the canary of v{dep.challenger}, which a stopped controller had retrained")
    return done


# -- triggers -------------------------------------------------------------------------------------------------


def last_fired(stores: Stores) -> dict[str, datetime]:
    """When each trigger last fired, from the event log (so cool-downs survive restarts).

    A firing whose retrain was skipped (too few labeled rows yet) or interrupted (its controller was killed
    or lost its lease, see `recover_step`) does not start a cool-down: the trigger may fire again on the next
    pass, once the labels are there, or for the retrain to be done after all.
    """
    out: dict[str, datetime] = {}
    pending: dict[str, datetime] = {}
    kinds = [TRIGGER_FIRED, RETRAIN_SKIPPED, RETRAIN_FAILED]
    for ev in stores.metadata.list_events(stores.model_name, kinds=kinds):
        if ev.kind == RETRAIN_SKIPPED or (ev.kind == RETRAIN_FAILED and ev.evidence.get("interrupted")):
            pending.clear()
            continue
        if ev.kind == RETRAIN_FAILED:
            continue
        out.update(pending)
        pending = {ev.evidence.get("trigger", ""): ev.ts}
    return out | pending


def trigger_step(
    stores: Stores, cfg: Config, signals: Signals, *, fence: Lease | None = None
) -> list[TriggerResult]:
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
            fence=fence,
        )
    return fired


# -- retrain + gate -------------------------------------------------------------------------------------------


@dataclass
class RetrainOutcome:
    version: str | None
    gate_passed: bool
    summary: str
    data_version: str | None = None


def retrain_step(
    stores: Stores, cfg: Config, *, reasons: list[str], fence: Lease | None = None
) -> RetrainOutcome:
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
        RETRAIN_STARTED,
        "; ".join(reasons),
        model_version=dep.champion,
        data_version=base_version,
        fence=fence,
    )
    try:
        spec = stores.tracking.load_bundle(champion.version).spec
        production = production_rows(stores, cfg, spec, base_version=base_version)
        if len(production) < cfg.loop.retrain.min_labeled_rows:
            msg = (
                f"only {len(production)} labeled production rows "
                f"(< loop.retrain.min_labeled_rows={cfg.loop.retrain.min_labeled_rows}); not retraining yet"
            )
            stores.metadata.add_event(
                stores.model_name, RETRAIN_SKIPPED, msg, model_version=dep.champion, fence=fence
            )
            return RetrainOutcome(None, False, msg)
        training_set = assemble(stores, cfg, spec, base_version, production=production)
        result = train(
            cfg,
            data_version=training_set.record.version,
            stores=stores,
            recent=training_set.recent,
            progress=False,
            time_order_from=training_set.first_production_row,
            fence=fence,
            drift_reference=training_set.reference,
        )
    except LeaseLostError:
        raise  # not a failure of the retrain: another controller owns the loop now and decides
    except Exception as exc:
        log.exception("retraining failed")
        stores.metadata.add_event(
            stores.model_name,
            RETRAIN_FAILED,
            f"{type(exc).__name__}: {exc}; the champion v{dep.champion} keeps serving",
            model_version=dep.champion,
            fence=fence,
        )
        _alert_retrain_failed(stores, cfg, exc)
        return RetrainOutcome(None, False, f"retraining failed: {exc}")
    stores.metadata.add_event(
        stores.model_name,
        RETRAIN_FINISHED,
        f"v{result.version} trained on {training_set.record.version} "
        f"({training_set.n_base} base + {training_set.n_production} production rows)",
        model_version=result.version,
        run_id=result.run_id,
        data_version=training_set.record.version,
        fence=fence,
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


def start_canary(stores: Stores, cfg: Config, version: str, *, fence: Lease | None = None) -> str:
    """Route the first canary step's share of traffic to the gated challenger."""
    from driftloop.registry import deployments

    weight = cfg.loop.rollout.steps[0]
    deployments.start_canary(
        stores, version, weight=weight, reason=f"gate passed: canary at {weight:.0%}", fence=fence
    )
    return f"canary started at {weight:.0%}"


def rollout_step(
    stores: Stores, cfg: Config, *, now: datetime | None = None, fence: Lease | None = None
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
    champion, challenger = arm_stats(
        stores.log_dir,
        since=since,
        champion=dep.champion,
        challenger=dep.challenger,
        regression=spec.task == "regression",
        outcome=None if cfg.loop.rollout.outcome is None else (stores.model_name, cfg.loop.rollout.outcome),
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
        deployments.rollback(stores, reason=decision.reason, evidence=evidence, expected=dep, fence=fence)
    elif decision.action == "promote":
        deployments.promote(stores, reason=decision.reason, evidence=evidence, expected=dep, fence=fence)
    elif decision.action == "advance":
        weight = cfg.loop.rollout.steps[step + 1]
        deployments.advance_canary(
            stores,
            step=step + 1,
            weight=weight,
            reason=decision.reason,
            evidence=evidence,
            expected=dep,
            fence=fence,
        )
    return decision


__all__ = [
    "MonitorOutcome",
    "RetrainOutcome",
    "monitor_step",
    "recover_step",
    "retrain_step",
    "rollout_step",
    "start_canary",
    "trigger_name",
    "trigger_step",
]
