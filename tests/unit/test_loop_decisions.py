"""Triggers and canary decisions are pure functions of their inputs: test them exhaustively here."""

from datetime import UTC, datetime, timedelta

import pytest
from scipy import stats

from driftloop.config import RolloutConfig, TriggerConfig
from driftloop.loop.rollout import ArmStats, decide, mean_worse, proportion_worse
from driftloop.loop.triggers import Signals, evaluate_triggers

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


def test_proportion_test_matches_scipy_two_proportion_z() -> None:
    # 30/200 bad vs 20/400 bad: pooled z-test, one-sided.
    p = proportion_worse(30 / 200, 200, 20 / 400, 400)
    pooled = 50 / 600
    z = (30 / 200 - 20 / 400) / (pooled * (1 - pooled) * (1 / 200 + 1 / 400)) ** 0.5
    assert p == pytest.approx(stats.norm.sf(z))


def test_welch_matches_scipy() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.normal(1.2, 1, 80), rng.normal(1.0, 1.3, 120)
    expected = stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
    got = mean_worse(a.mean(), a.std(ddof=1), len(a), b.mean(), b.std(ddof=1), len(b))
    assert got == pytest.approx(expected, rel=1e-6)


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
