"""Retraining triggers: dataset drift, drift of named features, multivariate drift, a metric drop (on labels,
or estimated without them), a schedule, new labels.

Each trigger is configured from `loop.triggers`, then `evaluate(signals, last_fired)` says whether it fires
and why. Cool-downs are computed from when the trigger last fired (read from the event log by the caller),
so the controller keeps no state of its own and a restart changes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from driftloop.config import LOWER_IS_BETTER, TriggerConfig
from driftloop.monitor.estimated import estimated_drop
from driftloop.monitor.estimation import MetricEstimate


@dataclass(frozen=True)
class Signals:
    """What one monitoring pass saw, reduced to what triggers look at."""

    now: datetime
    n_rows: int
    no_data: bool
    dataset_drift: bool | None = None
    drift_share: float | None = None
    drifted_features: frozenset[str] = frozenset()
    multivariate: tuple[tuple[str, float, float, bool], ...] = ()
    """Per multivariate method (monitoring.multivariate): (method, statistic, threshold, drift)."""
    metric: str = ""
    live_metric: float | None = None
    """The champion's metric on labeled production rows in the window."""
    reference_metric: float | None = None
    """The champion's gate metric on the held-out rows when it was trained."""
    n_labels: int = 0
    """Labeled production rows since the champion took over."""
    estimated_metric: MetricEstimate | None = None
    """The champion's gate metric estimated without labels over the window (`monitoring.estimation`)."""


@dataclass(frozen=True)
class TriggerResult:
    name: str
    fired: bool
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trigger_name(cfg: TriggerConfig) -> str:
    suffix = f":{','.join(cfg.features)}" if cfg.features else ""
    return f"{cfg.kind}{suffix}"


class Trigger:
    """One configured trigger. `evaluate` is pure: the same signals and history give the same answer."""

    def __init__(self, cfg: TriggerConfig) -> None:
        self.cfg = cfg
        self.name = trigger_name(cfg)

    def evaluate(self, signals: Signals, last_fired: datetime | None) -> TriggerResult:
        if last_fired is not None and self.cfg.kind != "schedule":
            quiet = (signals.now - last_fired).total_seconds()
            if quiet < self.cfg.cooldown_seconds:
                return TriggerResult(
                    self.name, False, f"cooling down ({quiet:.0f}s of {self.cfg.cooldown_seconds:.0f}s)"
                )
        check = getattr(self, f"_{self.cfg.kind}")
        fired, reason, evidence = check(signals, last_fired)
        return TriggerResult(self.name, fired, reason, evidence)

    def _dataset_drift(self, s: Signals, _last: datetime | None) -> tuple[bool, str, dict[str, Any]]:
        if s.no_data or s.dataset_drift is None:
            return False, "no data in the window", {}
        evidence = {"drift_share": s.drift_share, "drifted": sorted(s.drifted_features)}
        if s.dataset_drift:
            return True, f"dataset drift: {s.drift_share:.0%} of features drifted", evidence
        return False, f"no dataset drift ({(s.drift_share or 0):.0%} of features drifted)", evidence

    def _feature_drift(self, s: Signals, _last: datetime | None) -> tuple[bool, str, dict[str, Any]]:
        if s.no_data:
            return False, "no data in the window", {}
        hit = sorted(set(self.cfg.features) & s.drifted_features)
        if hit:
            return True, f"drift in {', '.join(hit)}", {"features": hit}
        return False, f"no drift in {', '.join(self.cfg.features) or '(no features named)'}", {}

    def _multivariate_drift(self, s: Signals, _last: datetime | None) -> tuple[bool, str, dict[str, Any]]:
        if s.no_data or not s.multivariate:
            return False, "no multivariate result in the window", {}
        evidence = {m: {"statistic": v, "threshold": t, "drift": d} for m, v, t, d in s.multivariate}
        hit = [f"{m} {v:.3f} > {t:.3f}" for m, v, t, d in s.multivariate if d]
        if hit:
            return True, "multivariate drift: " + "; ".join(hit), evidence
        return False, "no multivariate drift", evidence

    def _metric_drop(self, s: Signals, _last: datetime | None) -> tuple[bool, str, dict[str, Any]]:
        if s.live_metric is None or s.reference_metric is None:
            return False, "no labeled production rows yet", {}
        drop = s.live_metric - s.reference_metric
        if s.metric in LOWER_IS_BETTER:
            drop = -drop
        evidence = {"metric": s.metric, "live": s.live_metric, "reference": s.reference_metric, "drop": -drop}
        if -drop >= self.cfg.max_drop:
            return (
                True,
                f"{s.metric} fell from {s.reference_metric:.3f} to {s.live_metric:.3f} on labeled production rows",
                evidence,
            )
        return (
            False,
            f"{s.metric} {s.live_metric:.3f} vs {s.reference_metric:.3f}: within {self.cfg.max_drop}",
            evidence,
        )

    def _estimated_performance(self, s: Signals, _last: datetime | None) -> tuple[bool, str, dict[str, Any]]:
        if s.no_data:
            return False, "no data in the window", {}
        return estimated_drop(s.metric, s.estimated_metric, s.reference_metric, self.cfg.max_drop)

    def _schedule(self, s: Signals, last: datetime | None) -> tuple[bool, str, dict[str, Any]]:
        every = self.cfg.every_seconds
        if every is None:
            return False, "no schedule set (every_seconds)", {}
        if last is None or (s.now - last).total_seconds() >= every:
            return True, f"scheduled retrain (every {every:.0f}s)", {}
        return False, "not due yet", {}

    def _new_labels(self, s: Signals, _last: datetime | None) -> tuple[bool, str, dict[str, Any]]:
        if s.n_labels >= self.cfg.min_labels:
            return True, f"{s.n_labels} new labeled rows (>= {self.cfg.min_labels})", {"n_labels": s.n_labels}
        return False, f"{s.n_labels} new labeled rows (< {self.cfg.min_labels})", {"n_labels": s.n_labels}


def evaluate_triggers(
    triggers: list[TriggerConfig], signals: Signals, last_fired: dict[str, datetime]
) -> list[TriggerResult]:
    """Every trigger's verdict; the caller retrains if any fired."""
    out = []
    for cfg in triggers:
        trigger = Trigger(cfg)
        out.append(trigger.evaluate(signals, last_fired.get(trigger.name)))
    return out
