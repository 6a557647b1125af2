"""Triggers and canary decisions are pure functions of their inputs: test them exhaustively here."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from driftloop.config import OutcomeRule, RolloutConfig, TriggerConfig
from driftloop.loop.rollout import ArmStats, decide, mean_worse, proportion_worse
from driftloop.loop.triggers import Signals, evaluate_triggers
from driftloop.monitor.experiment import ArmOutcome
from driftloop.sequential import always_valid_p

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def signals(**kw) -> Signals:
    base = {"now": NOW, "n_rows": 500, "no_data": False}
    return Signals(**(base | kw))


def test_dataset_drift_fires_and_respects_cooldown() -> None:
    trig = [TriggerConfig(kind="dataset_drift", cooldown_seconds=600)]
    s = signals(dataset_drift=True, drift_share=0.8, drifted_features=frozenset({"a"}))
    (fired,) = evaluate_triggers(trig, s, {})
    assert fired.fired and "80%" in fired.reason
    (cooling,) = evaluate_triggers(trig, s, {"dataset_drift": NOW - timedelta(seconds=60)})
    assert not cooling.fired and "cooling down" in cooling.reason
    (again,) = evaluate_triggers(trig, s, {"dataset_drift": NOW - timedelta(seconds=700)})
    assert again.fired


def test_no_data_never_fires() -> None:
    trig = [TriggerConfig(kind="dataset_drift"), TriggerConfig(kind="feature_drift", features=["a"])]
    results = evaluate_triggers(trig, signals(no_data=True, n_rows=0), {})
    assert not any(r.fired for r in results)


def test_feature_drift_only_for_named_features() -> None:
    trig = [TriggerConfig(kind="feature_drift", features=["alcohol"])]
    assert not evaluate_triggers(trig, signals(drifted_features=frozenset({"pH"})), {})[0].fired
    assert evaluate_triggers(trig, signals(drifted_features=frozenset({"pH", "alcohol"})), {})[0].fired


@pytest.mark.parametrize(
    ("metric", "live", "reference", "fires"),
    [
        ("accuracy", 0.60, 0.66, True),
        ("accuracy", 0.64, 0.66, False),
        ("rmse", 0.9, 0.8, True),
        ("rmse", 0.7, 0.8, False),
    ],
)
def test_metric_drop_knows_which_way_is_better(
    metric: str, live: float, reference: float, fires: bool
) -> None:
    trig = [TriggerConfig(kind="metric_drop", max_drop=0.05)]
    s = signals(metric=metric, live_metric=live, reference_metric=reference)
    assert evaluate_triggers(trig, s, {})[0].fired is fires


def test_schedule_and_new_labels() -> None:
    sched = [TriggerConfig(kind="schedule", every_seconds=3600)]
    assert evaluate_triggers(sched, signals(), {})[0].fired
    assert not evaluate_triggers(sched, signals(), {"schedule": NOW - timedelta(minutes=5)})[0].fired
    labels = [TriggerConfig(kind="new_labels", min_labels=100)]
    assert evaluate_triggers(labels, signals(n_labels=150), {})[0].fired
    assert not evaluate_triggers(labels, signals(n_labels=50), {})[0].fired


@pytest.mark.parametrize("z", [0.5, 1.0, 1.645, 2.0, 3.0, 4.0, 6.0])
@pytest.mark.parametrize("n", [30, 300, 3000])
def test_always_valid_p_is_never_below_the_fixed_sample_p(z: float, n: int) -> None:
    # The price of looking as often as we like: at any one look it is more conservative than a z-test.
    variance = 0.25 / n
    p = always_valid_p(z * variance**0.5, variance, 0.1)
    assert stats.norm.sf(z) <= p <= 1.0
    assert always_valid_p(-z * variance**0.5, variance, 0.1) == 1.0


def test_proportion_test_grows_with_the_evidence() -> None:
    # 15% bad vs 5% bad: inconclusive on 40 rows, conclusive on 400.
    assert proportion_worse(0.15, 40, 0.05, 80) > 0.05
    assert proportion_worse(0.15, 400, 0.05, 800) < 1e-4
    assert proportion_worse(0.05, 400, 0.15, 800) == 1.0


def _canary_with_equal_arms(rng: np.random.Generator, accuracy: float, looks_per_step: int) -> str:
    """One canary of two equally good models, judged at every one of many controller passes."""
    for step, weight in enumerate(CHEAP.steps):
        n = np.zeros(2, int)
        right = np.zeros(2, int)
        for look in range(1, looks_per_step + 1):
            new = 40
            k = rng.binomial(new, weight)
            n += (new - k, k)
            right += (rng.binomial(new - k, accuracy), rng.binomial(k, accuracy))
            champion, challenger = (ArmStats(n[i], 0, 2.0, n[i], right[i] / max(n[i], 1)) for i in (0, 1))
            d = decide(CHEAP, step, champion, challenger, look, regression=False)
            if d.action == "rollback":
                return "rollback"
            if d.action != "hold" and look >= looks_per_step:
                break
    return "promote"


CHEAP = RolloutConfig(steps=[0.1, 0.5, 1.0], min_requests=10**9, min_dwell_seconds=0, min_labels=30)


def test_equal_models_are_rolled_back_at_most_one_time_in_twenty_however_often_the_controller_looks() -> None:
    # min_requests is out of reach, so every step holds and is judged 40 times before it is let go: a
    # fixed-sample z-test at 5 % rolled back about a third of these canaries.
    rng = np.random.default_rng(7)
    outcomes = [_canary_with_equal_arms(rng, 0.63, looks_per_step=40) for _ in range(400)]
    assert outcomes.count("rollback") / len(outcomes) <= 1 - CHEAP.confidence


def test_mean_worse_is_valid_under_repeated_looks_and_finds_a_real_gap() -> None:
    rng = np.random.default_rng(3)
    false_alarms = 0
    for _ in range(300):
        a, b = rng.normal(1.0, 0.5, 400), rng.normal(1.0, 0.5, 400)
        false_alarms += any(
            mean_worse(a[:k].mean(), a[:k].std(ddof=1), k, b[:k].mean(), b[:k].std(ddof=1), k) < 0.05
            for k in range(20, 401, 20)
        )
    assert false_alarms / 300 <= 0.05
    worse = rng.normal(1.5, 0.5, 200)
    assert mean_worse(worse.mean(), worse.std(ddof=1), 200, a.mean(), a.std(ddof=1), 400) < 1e-4


CFG = RolloutConfig(steps=[0.05, 0.5, 1.0], min_requests=200, min_dwell_seconds=10, min_labels=50)


def test_hold_until_traffic_dwell_and_labels() -> None:
    d = decide(CFG, 0, ArmStats(requests=100), ArmStats(requests=5), 3, regression=False)
    assert d.action == "hold" and "requests" in d.reason and "dwell" in d.reason and "labels" in d.reason


def test_advance_then_promote_when_healthy() -> None:
    cp = ArmStats(requests=950, errors=0, p95_latency_ms=2.0, labeled=400, metric=0.55)
    ch = ArmStats(requests=60, errors=0, p95_latency_ms=2.2, labeled=60, metric=0.60)
    assert decide(CFG, 0, cp, ch, 30, regression=False).action == "advance"
    assert decide(CFG, 2, cp, ch, 30, regression=False).action == "promote"


def test_clearly_worse_labeled_metric_rolls_back_at_the_first_step() -> None:
    cp = ArmStats(requests=950, labeled=400, metric=0.60)
    ch = ArmStats(requests=60, labeled=60, metric=0.20)
    d = decide(CFG, 0, cp, ch, 1, regression=False)
    assert d.action == "rollback" and "accuracy" in d.reason


def test_noise_does_not_roll_back() -> None:
    cp = ArmStats(requests=950, labeled=400, metric=0.60)
    ch = ArmStats(requests=60, labeled=60, metric=0.55)  # a few points worse on 60 rows: noise
    assert decide(CFG, 0, cp, ch, 30, regression=False).action == "advance"


def test_error_rate_and_latency_roll_back() -> None:
    cp = ArmStats(requests=1000, errors=1, p95_latency_ms=2.0)
    bad_errors = ArmStats(requests=100, errors=20, p95_latency_ms=2.0)
    assert decide(CFG, 0, cp, bad_errors, 1, regression=False).action == "rollback"
    slow = ArmStats(requests=100, errors=0, p95_latency_ms=90.0)
    d = decide(CFG, 0, cp, slow, 1, regression=False)
    assert d.action == "rollback" and "latency" in d.reason
    fast_enough = ArmStats(requests=100, errors=0, p95_latency_ms=9.0)  # 4.5x, but under the floor
    assert decide(CFG, 0, cp, fast_enough, 1, regression=False).action != "rollback"


def test_regression_uses_the_error_means() -> None:
    cp = ArmStats(requests=900, labeled=300, metric=0.5, metric_sd=0.4)
    worse = ArmStats(requests=100, labeled=100, metric=1.5, metric_sd=0.5)
    assert decide(CFG, 0, cp, worse, 30, regression=True).action == "rollback"


def test_full_traffic_step_needs_only_the_challengers_labels() -> None:
    no_champion_traffic = ArmStats(requests=0, errors=0)
    ch = ArmStats(requests=300, errors=0, p95_latency_ms=2.0, labeled=120, metric=0.6)
    assert decide(CFG, 2, no_champion_traffic, ch, 30, regression=False).action == "promote"
    few = ArmStats(requests=300, labeled=10, metric=0.6)
    assert decide(CFG, 2, no_champion_traffic, few, 30, regression=False).action == "hold"


def test_errors_at_full_traffic_roll_back_although_the_champion_serves_nothing() -> None:
    no_champion_traffic = ArmStats(requests=0)
    failing = ArmStats(requests=300, errors=60, p95_latency_ms=2.0, labeled=120, metric=0.6)
    d = decide(CFG, 2, no_champion_traffic, failing, 30, regression=False)
    assert d.action == "rollback" and "error rate" in d.reason
    rare = ArmStats(requests=300, errors=1, p95_latency_ms=2.0, labeled=120, metric=0.6)
    assert decide(CFG, 2, no_champion_traffic, rare, 30, regression=False).action == "promote"


def _converting(rate: float, n: int, arm: str) -> ArmOutcome:
    """An arm whose requests converted (1) at `rate`, the rest 0."""
    return ArmOutcome("1" if arm == "champion" else "2", arm, n, n, rate, float(np.sqrt(rate * (1 - rate))))


HEALTHY = {"requests": 1000, "errors": 0, "p95_latency_ms": 2.0, "labeled": 400, "metric": 0.6}


def _arms(cp_rate: float, ch_rate: float, n: int) -> tuple[ArmStats, ArmStats]:
    return (
        ArmStats(**HEALTHY, outcome=_converting(cp_rate, n, "champion")),  # type: ignore[arg-type]
        ArmStats(**HEALTHY, outcome=_converting(ch_rate, n, "challenger")),  # type: ignore[arg-type]
    )


def test_full_traffic_waits_for_a_significant_win_on_the_outcome() -> None:
    cfg = CFG.model_copy(update={"outcome": OutcomeRule(name="conversion")})
    unclear = _arms(0.10, 0.11, 500)
    # The first step leads to another split step: the outcome gates only the move to full traffic.
    assert decide(cfg, 0, *unclear, 30, regression=False).action == "advance"
    held = decide(cfg, 1, *unclear, 30, regression=False)
    assert held.action == "hold" and "a significant win on conversion" in held.reason
    assert held.evidence["outcome"]["verdict"] == "no decision yet"
    assert held.evidence["outcome"]["lift"] == pytest.approx(0.01)
    won = decide(cfg, 1, *_arms(0.10, 0.30, 1000), 30, regression=False)
    assert won.action == "advance" and won.evidence["outcome"]["verdict"] == "challenger wins"
    # Without reports there is nothing to judge: the step waits for them.
    silent = decide(cfg, 1, ArmStats(**HEALTHY), ArmStats(**HEALTHY), 30, regression=False)  # type: ignore[arg-type]
    assert silent.action == "hold" and "conversion reported on both arms" in silent.reason
    # no_loss: an unclear outcome does not hold the canary; without a rule, the outcome is not read at all.
    no_loss = cfg.model_copy(update={"outcome": OutcomeRule(name="conversion", require="no_loss")})
    assert decide(no_loss, 1, *unclear, 30, regression=False).action == "advance"
    assert "outcome" not in decide(CFG, 1, *unclear, 30, regression=False).evidence


def test_a_significant_loss_on_the_outcome_rolls_back_on_any_split_step() -> None:
    for require in ("win", "no_loss"):
        cfg = CFG.model_copy(update={"outcome": OutcomeRule(name="conversion", require=require)})
        lost = decide(cfg, 0, *_arms(0.30, 0.10, 1000), 30, regression=False)
        assert lost.action == "rollback" and lost.reason.startswith(
            "conversion 0.1 vs champion 0.3 per request"
        )
    # At full traffic the champion serves nothing: no comparison, and the win was required before.
    cp = ArmStats(requests=0, outcome=None)
    ch = ArmStats(**HEALTHY, outcome=_converting(0.1, 1000, "challenger"))  # type: ignore[arg-type]
    assert decide(cfg, 2, cp, ch, 30, regression=False).action == "promote"


def _canaries_reaching_full_traffic(champion_rate: float, challenger_rate: float, runs: int = 400) -> float:
    """Share of simulated canaries whose last split step advances (a win on conversion) when judged every 50
    requests per arm up to 2,000."""
    cfg = CFG.model_copy(update={"outcome": OutcomeRule(name="conversion")})
    rng = np.random.default_rng(7)
    looks = np.arange(50, 2001, 50)
    wins = 0
    for _ in range(runs):
        a = np.cumsum(rng.random(2000) < champion_rate)[looks - 1] / looks
        b = np.cumsum(rng.random(2000) < challenger_rate)[looks - 1] / looks
        for n, ra, rb in zip(looks, a, b, strict=True):
            cp = ArmStats(**HEALTHY, outcome=ArmOutcome("1", "champion", n, n, ra, np.sqrt(ra * (1 - ra))))  # type: ignore[arg-type]
            ch = ArmStats(**HEALTHY, outcome=ArmOutcome("2", "challenger", n, n, rb, np.sqrt(rb * (1 - rb))))  # type: ignore[arg-type]
            if decide(cfg, 1, cp, ch, 30, regression=False).action == "advance":
                wins += 1
                break
    return wins / runs


def test_an_equally_converting_challenger_rarely_reaches_full_traffic_however_often_the_controller_looks() -> (
    None
):
    """A false win (full traffic on no lift) in at most 1 - confidence of the canaries (0 of 400 measured; a
    fixed-sample test at the same level, peeked at as often, gave 7.5 %)."""
    assert _canaries_reaching_full_traffic(0.10, 0.10) <= 1 - CFG.confidence


def test_a_real_lift_in_conversion_is_found_within_the_canary() -> None:
    """10 % -> 15 % conversion: found by 2,000 requests per arm in 89 % of 400 simulated canaries."""
    assert _canaries_reaching_full_traffic(0.10, 0.15) >= 0.8


def test_multivariate_trigger_fires_on_any_method_and_names_it() -> None:
    trig = [TriggerConfig(kind="multivariate_drift")]
    calm = signals(
        multivariate=(("domain_classifier", 0.52, 0.56, False), ("pca_reconstruction", 1.6, 1.8, False))
    )
    assert not evaluate_triggers(trig, calm, {})[0].fired
    moved = signals(
        multivariate=(("domain_classifier", 0.81, 0.56, True), ("pca_reconstruction", 1.7, 1.8, False))
    )
    (fired,) = evaluate_triggers(trig, moved, {})
    assert fired.fired and "domain_classifier 0.810 > 0.560" in fired.reason
    assert not evaluate_triggers(trig, signals(), {})[0].fired  # monitoring computed none
