"""Which arm answers a request: a pure function of the routing key and the deployment's strategy and weight.

The key (the client's `routing_key`, else the request id) is hashed with BLAKE2b to a point `u` in [0, 1);
the request goes to the challenger when `u < challenger_weight`. No state, no randomness: every worker and
every replica assigns a key the same way, and raising the weight only moves keys from champion to
challenger, never back, so a canary's users stay on the challenger as it grows.

Strategies:
    single     everything to the champion.
    ab, canary challenger for the keys below the weight (ab: a fixed weight; canary: the controller moves it).
    shadow     the champion answers everything; the challenger scores the same rows off the hot path and its
               output is only logged (arm `shadow`).
    bluegreen  everything to one side, never a split: the challenger (green) once the weight is >= 0.5, the
               champion (blue) before. Both stay loaded and warm, so the switch is atomic.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b

CHAMPION = "champion"
CHALLENGER = "challenger"
SHADOW = "shadow"
STRATEGIES = ("single", "ab", "canary", "shadow", "bluegreen")
_SCALE = float(1 << 64)


def bucket(key: str) -> float:
    """The key's stable point in [0, 1)."""
    return int.from_bytes(blake2b(key.encode(), digest_size=8).digest(), "big") / _SCALE


@dataclass(frozen=True)
class Route:
    arm: str
    shadow: bool
    """True when the challenger should also score the request, for the log only."""


_TO_CHAMPION = Route(CHAMPION, False)
_TO_CHALLENGER = Route(CHALLENGER, False)
_WITH_SHADOW = Route(CHAMPION, True)


def route(key: str, strategy: str, challenger_weight: float, has_challenger: bool) -> Route:
    """The arm for one request. Without a loaded challenger every strategy falls back to the champion."""
    if not has_challenger or strategy == "single":
        return _TO_CHAMPION
    if strategy == "shadow":
        return _WITH_SHADOW
    if strategy == "bluegreen":
        return _TO_CHALLENGER if challenger_weight >= 0.5 else _TO_CHAMPION
    if challenger_weight <= 0.0:
        return _TO_CHAMPION
    if challenger_weight >= 1.0:
        return _TO_CHALLENGER
    return _TO_CHALLENGER if bucket(key) < challenger_weight else _TO_CHAMPION
