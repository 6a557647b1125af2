"""Canary decisions: compare challenger and champion online and promote, hold, advance or roll back.

`decide(cfg, step, stats, dwell_seconds)` is pure. The tests respect sample size and repeated looks: a
difference counts only when an always-valid one-sided test (a mixture SPRT) says the challenger is worse, at
1 - `rollout.confidence` shared by the steps, and an advance needs enough
requests, dwell time and (when labels flow) labeled rows on the challenger. Rollback wins over everything:
one clear failure is enough.

With `rollout.outcome`, a business outcome clients report (conversion, revenue) is judged too, on the steps
where both arms serve, by the same sequential comparison `driftloop experiment` prints
(`monitor.experiment.compare`) at the step's level: a significant loss rolls back, and with `require: win`
the last split step holds until the challenger is significantly ahead, so it never gets full traffic on
accuracy alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from driftloop.config import RolloutConfig
from driftloop.monitor.experiment import ArmOutcome, Comparison, compare
from driftloop.sequential import EFFECT_SD, always_valid_p

Action = Literal["hold", "advance", "promote", "rollback"]

#: Fewer challenger requests than this give no meaningful p95: the latency check waits.
MIN_LATENCY_SAMPLES = 20


@dataclass(frozen=True)
class ArmStats:
    """One arm's traffic in the current canary step."""

    requests: int = 0
    """Rows this arm's model version answered or failed, from the prediction log (the error rate's base)."""
    errors: int = 0
    """Rows of this arm's requests that failed with a server error (5xx), from the same log."""
    p95_latency_ms: float | None = None
    """Over the answered rows."""
    labeled: int = 0
    metric: float | None = None
    """Accuracy (classification) or mean absolute error (regression) on labeled rows."""
    metric_sd: float | None = None
    """Standard deviation of the per-row metric (for the regression test)."""
    outcome: ArmOutcome | None = None
    """The business outcome of `rollout.outcome` over this arm's requests in the step, when configured."""


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def proportion_worse(p_bad_ch: float, n_ch: int, p_bad_cp: float, n_cp: int, margin: float = 0.0) -> float:
    """Always-valid p-value that the challenger's bad-outcome rate exceeds the champion's by more than `margin`."""
    if n_ch == 0 or n_cp == 0:
        return 1.0
    pooled = (p_bad_ch * n_ch + p_bad_cp * n_cp) / (n_ch + n_cp)
    spread = pooled * (1 - pooled)
    variance = spread * (1 / n_ch + 1 / n_cp)
    return always_valid_p(p_bad_ch - p_bad_cp - margin, variance, EFFECT_SD * math.sqrt(spread))


def errors_above(errors: int, n: int, rate: float) -> float:
    """Always-valid p-value that `errors` failures in `n` come from a failure rate above `rate` (variance under
    the null; with `rate` 0 any failure is conclusive)."""
    if errors == 0 or n == 0:
        return 1.0
    spread = rate * (1 - rate)
    return always_valid_p(errors / n - rate, spread / n, EFFECT_SD * math.sqrt(spread))


def mean_worse(m_ch: float, sd_ch: float, n_ch: int, m_cp: float, sd_cp: float, n_cp: int) -> float:
    """Always-valid p-value that the challenger's mean error is larger than the champion's (unequal variances)."""
    if n_ch < 2 or n_cp < 2:
        return 1.0
    variance = sd_ch**2 / n_ch + sd_cp**2 / n_cp
    if variance == 0:
        return 0.0 if m_ch > m_cp else 1.0
    row_sd = math.sqrt((sd_ch**2 + sd_cp**2) / 2)
    return always_valid_p(m_ch - m_cp, variance, EFFECT_SD * row_sd)


def decide(
    cfg: RolloutConfig,
    step: int,
    champion: ArmStats,
    challenger: ArmStats,
    dwell_seconds: float,
    *,
    regression: bool,
) -> Decision:
    """The decision for canary step `step` (index into cfg.steps).

    Each step spends an equal share of 1 - confidence, and its tests are always valid, so an equally good
    challenger is rolled back with probability at most 1 - confidence over the whole canary, however many
    passes the controller makes."""
    alpha = (1 - cfg.confidence) / len(cfg.steps)
    evidence: dict[str, Any] = {
        "step": step,
        "weight": cfg.steps[step],
        "dwell_seconds": round(dwell_seconds, 1),
        "champion": asdict(champion),
        "challenger": asdict(challenger),
    }
    # 1. Errors: a significant rise beyond the allowed margin rolls back. Both counts and their bases come
    # from the same log over the same interval, so the rates are comparable.
    if challenger.requests:
        err_ch = challenger.errors / challenger.requests
        err_cp = champion.errors / max(champion.requests, 1)
        if champion.requests:
            p = proportion_worse(
                err_ch, challenger.requests, err_cp, champion.requests, cfg.max_error_rate_increase
            )
        else:
            # At full traffic the champion answers nothing in this step: the challenger's error rate is held
            # to the allowed increase itself, else it could fail its way to promotion.
            p = errors_above(challenger.errors, challenger.requests, cfg.max_error_rate_increase)
        evidence["error_rate"] = {"challenger": err_ch, "champion": err_cp, "p_value": p}
        if p < alpha:
            return Decision(
                "rollback", f"error rate {err_ch:.2%} vs champion {err_cp:.2%} (p={p:.3g})", evidence
            )
    # 2. Latency: p95 far above the champion's, once the challenger has had its share of requests.
    # Both arms need enough requests for a p95, and a p95 under the floor is fast enough whatever the ratio.
    if (
        challenger.requests - challenger.errors >= MIN_LATENCY_SAMPLES
        and champion.requests - champion.errors >= MIN_LATENCY_SAMPLES
        and challenger.p95_latency_ms is not None
        and champion.p95_latency_ms
        and challenger.p95_latency_ms > cfg.p95_latency_floor_ms
    ):
        ratio = challenger.p95_latency_ms / champion.p95_latency_ms
        evidence["p95_ratio"] = ratio
        if ratio > cfg.max_p95_latency_ratio:
            return Decision(
                "rollback",
                f"p95 latency {challenger.p95_latency_ms:.1f} ms is {ratio:.1f}x the champion's",
                evidence,
            )
    # 3. The labeled metric: significantly worse rolls back.
    # At full traffic the champion serves nothing in this step: the challenger's labels alone must arrive,
    # and it is compared with the champion only where both have enough labeled rows.
    full = cfg.steps[step] >= 1.0
    comparable = challenger.labeled >= cfg.min_labels and champion.labeled >= cfg.min_labels
    labels_ready = challenger.labeled >= cfg.min_labels and (full or comparable)
    if comparable and challenger.metric is not None and champion.metric is not None:
        if regression:
            p = mean_worse(
                challenger.metric,
                challenger.metric_sd or 0.0,
                challenger.labeled,
                champion.metric,
                champion.metric_sd or 0.0,
                champion.labeled,
            )
            what = f"MAE {challenger.metric:.3f} vs champion {champion.metric:.3f}"
        else:
            p = proportion_worse(
                1 - challenger.metric, challenger.labeled, 1 - champion.metric, champion.labeled
            )
            what = f"accuracy {challenger.metric:.3f} vs champion {champion.metric:.3f}"
        evidence["labeled_p_value"] = p
        if p < alpha:
            return Decision("rollback", f"{what} on labeled traffic (p={p:.3g})", evidence)
    # 4. A business outcome: a significant loss rolls back; with require: win, the step before full traffic
    # waits for a significant win. At full traffic the champion serves nothing to compare with.
    outcome = _outcome(cfg, champion, challenger, alpha) if not full else None
    if outcome is not None:
        evidence["outcome"] = {
            "name": outcome.outcome,
            "champion_mean": outcome.champion.mean,
            "challenger_mean": outcome.challenger.mean,
            "lift": outcome.lift,
            "p_better": outcome.p_better,
            "p_worse": outcome.p_worse,
            "verdict": outcome.verdict,
        }
        if outcome.verdict == "champion wins":
            return Decision(
                "rollback",
                f"{outcome.outcome} {outcome.challenger.mean:.4g} vs champion {outcome.champion.mean:.4g} per "
                f"request (p={outcome.p_worse:.3g})",
                evidence,
            )
    # 5. Otherwise advance once the step has had enough traffic, time and labels.
    waiting = []
    total = champion.requests + challenger.requests
    if total < cfg.min_requests or challenger.requests == 0:
        waiting.append(f"{total}/{cfg.min_requests} requests ({challenger.requests} on the challenger)")
    if dwell_seconds < cfg.min_dwell_seconds:
        waiting.append(f"{dwell_seconds:.0f}/{cfg.min_dwell_seconds:.0f}s dwell")
    if cfg.require_labels and not labels_ready:
        waiting.append(
            f"labels ({challenger.labeled} challenger, {champion.labeled} champion; {cfg.min_labels} each)"
        )
    rule = cfg.outcome
    if rule is not None and rule.require == "win" and not full and cfg.steps[step + 1] >= 1.0:
        if outcome is None:
            waiting.append(f"{rule.name} reported on both arms")
        elif outcome.verdict != "challenger wins":
            waiting.append(
                f"a significant win on {rule.name} (lift {outcome.lift:+.4g} per request, "
                f"p={outcome.p_better:.3g} > {alpha / 2:.3g})"
            )
    if waiting:
        return Decision("hold", "waiting for " + ", ".join(waiting), evidence)
    if step == len(cfg.steps) - 1:
        return Decision("promote", "the challenger held up at full traffic", evidence)
    return Decision("advance", f"step {step + 1} healthy: moving to {cfg.steps[step + 1]:.0%}", evidence)


def _outcome(cfg: RolloutConfig, champion: ArmStats, challenger: ArmStats, alpha: float) -> Comparison | None:
    """The step's sequential comparison of the outcome, each direction at half the step's level (`compare`
    splits 1 - confidence in two); None when the outcome is not configured or an arm has no requests."""
    if cfg.outcome is None or champion.outcome is None or challenger.outcome is None:
        return None
    return compare(cfg.outcome.name, champion.outcome, challenger.outcome, confidence=1 - alpha, min_lift=0.0)
