"""Routing is a pure function of key, strategy and weight: stable, monotonic in the weight, honest to it."""

from __future__ import annotations

import math

import pytest

from driftloop.serve.router import CHALLENGER, CHAMPION, bucket, route


def test_bucket_is_stable_across_processes_and_runs() -> None:
    # Fixed values: a change here would re-shuffle every sticky user of every deployment.
    assert bucket("user-1") == pytest.approx(
        int.from_bytes(__import__("hashlib").blake2b(b"user-1", digest_size=8).digest(), "big") / 2**64
    )
    assert bucket("user-1") == bucket("user-1")
    assert bucket("user-1") != bucket("user-2")
    assert all(0.0 <= bucket(f"k{i}") < 1.0 for i in range(1000))


@pytest.mark.parametrize("weight", [0.05, 0.1, 0.5, 0.9])
def test_ab_share_matches_weight_within_tolerance(weight: float) -> None:
    n = 20_000
    hits = sum(route(f"req-{i}", "ab", weight, True).arm == CHALLENGER for i in range(n))
    sd = math.sqrt(n * weight * (1 - weight))
    assert abs(hits - n * weight) < 4.5 * sd


def test_raising_the_weight_only_moves_keys_to_the_challenger() -> None:
    keys = [f"user-{i}" for i in range(5000)]
    low = {k for k in keys if route(k, "canary", 0.1, True).arm == CHALLENGER}
    high = {k for k in keys if route(k, "canary", 0.3, True).arm == CHALLENGER}
    assert low < high


def test_strategies() -> None:
    assert route("k", "single", 0.9, True).arm == CHAMPION
    assert route("k", "ab", 0.9, False).arm == CHAMPION  # no challenger loaded: champion answers
    shadow = route("k", "shadow", 0.0, True)
    assert shadow.arm == CHAMPION and shadow.shadow
    assert route("k", "bluegreen", 0.2, True).arm == CHAMPION
    assert route("k", "bluegreen", 1.0, True).arm == CHALLENGER
    assert route("k", "ab", 0.0, True).arm == CHAMPION
    assert route("k", "canary", 1.0, True).arm == CHALLENGER
    assert not route("k", "ab", 0.5, True).shadow
