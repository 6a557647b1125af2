"""A/B on business outcomes: peeking at the sequential test every step does not inflate false winners, and
the sample-size guidance delivers the power it states."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.monitor.experiment import ArmOutcome, compare, requests_needed

STEP = 250  # requests per arm between two looks


def peeked_experiments(rng: np.random.Generator, runs: int, base: float, lift: float, n: int) -> list[str]:
    """`runs` conversion experiments, looked at after every STEP requests per arm up to n: the verdict at
    the first look that declares a winner, else the last look's."""
    looks = np.arange(STEP, n + 1, STEP)
    verdicts = []
    for _ in range(runs):
        cp = np.cumsum(rng.random(n) < base)[looks - 1]
        ch = np.cumsum(rng.random(n) < base + lift)[looks - 1]
        verdict = "no decision yet"
        for k, m in enumerate(looks):
            arms = []
            for name, wins in (("champion", cp[k]), ("challenger", ch[k])):
                p = wins / m
                arms.append(
                    ArmOutcome(
                        "1" if name == "champion" else "2",
                        name,
                        int(m),
                        int(m),
                        p,
                        (p * (1 - p) * m / (m - 1)) ** 0.5,
                    )
                )
            verdict = compare("conversion", arms[0], arms[1], min_lift=0.02).verdict
            if verdict != "no decision yet":
                break
        verdicts.append(verdict)
    return verdicts


def test_no_true_difference_declares_a_winner_in_at_most_5_percent_of_peeked_runs() -> None:
    verdicts = peeked_experiments(np.random.default_rng(1), 1000, 0.10, 0.0, 10_000)
    wrong = sum(v != "no decision yet" for v in verdicts) / len(verdicts)
    assert wrong <= 0.05, wrong


def test_a_two_point_lift_is_found_with_the_power_the_guidance_states() -> None:
    sd = (0.11 * 0.89) ** 0.5
    n = requests_needed(sd, 0.02)
    assert 5_000 < n < 20_000  # 10 % -> 12 %: thousands of requests per arm, as any calculator says
    verdicts = peeked_experiments(np.random.default_rng(2), 1000, 0.10, 0.02, (n // STEP + 1) * STEP)
    found = sum(v == "challenger wins" for v in verdicts) / len(verdicts)
    assert found >= 0.8 - 3 * (0.8 * 0.2 / 1000) ** 0.5, found
    assert "champion wins" not in verdicts


def test_guidance_says_how_many_more_requests_and_the_verdict_reads_both_ways() -> None:
    cp = ArmOutcome("1", "champion", 4000, 4000, 0.10, 0.3)
    ch = ArmOutcome("2", "challenger", 3000, 3000, 0.10, 0.3)
    tie = compare("conversion", cp, ch, min_lift=0.02)
    assert tie.verdict == "no decision yet" and tie.more_per_arm == tie.needed_per_arm - 3000  # type: ignore[operator]
    worse = ArmOutcome("2", "challenger", 20000, 20000, 0.08, 0.27)
    assert (
        compare(
            "conversion", ArmOutcome("1", "champion", 20000, 20000, 0.10, 0.3), worse, min_lift=0.02
        ).verdict
        == "champion wins"
    )
    with pytest.raises(ValueError):
        requests_needed(1.0, 0.0)
