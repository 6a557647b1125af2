"""Admin changes to the deployment from the HTTP API, and the bearer-token check that guards them.

The rules of what may change live in the deployment state machine (`driftloop.registry.deployments`); this
module only translates an HTTP request into one of its calls, so the server, the CLI and the controller
obey the same rules. That module mirrors the MLflow aliases, so the first admin call of a worker imports
MLflow (seconds of CPU in a worker thread: a one-off latency bump for live traffic, not an outage).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from driftloop.stores.metadata import Deployment

if TYPE_CHECKING:
    from driftloop.stores import Stores


@dataclass(frozen=True)
class AuthResult:
    status: int
    message: str


def check_bearer(header: str | None, *tokens: str | None) -> AuthResult | None:
    """None when `Authorization: Bearer <token>` matches one of `tokens` (the current one and, during a
    rotation, the previous one); else 401 (absent) or 403 (wrong).

    Every token is compared, in constant time, whatever the first comparison says: how long the check takes
    tells nothing about which token, or how much of one, was right.
    """
    if not header:
        return AuthResult(401, "admin endpoints need an Authorization: Bearer <token> header")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return AuthResult(401, "the Authorization header must be 'Bearer <token>'")
    offered = given.strip().encode()
    matches = [hmac.compare_digest(offered, t.encode()) for t in tokens if t]
    if not any(matches):
        return AuthResult(403, "wrong admin token")
    return None


def change_strategy(
    stores: Stores,
    *,
    strategy: str,
    weight: float | None,
    challenger: str | None,
    reason: str,
    actor: str,
) -> Deployment:
    """Route traffic to the challenger by `strategy` and `weight` (ab, canary, shadow, bluegreen, single).

    `challenger`, when given, must be the current challenger: a request about another model is refused
    rather than applied to whichever model happens to be the challenger now.
    """
    from driftloop.registry import deployments

    return deployments.start_strategy(
        stores, strategy, version=challenger, weight=weight, reason=reason or "admin API", actor=actor
    )


def rollback(stores: Stores, *, reason: str, actor: str) -> Deployment:
    """All traffic back to the champion at once; the challenger leaves the deployment."""
    from driftloop.registry import deployments

    return deployments.rollback(stores, reason=reason or "rollback from the admin API", actor=actor)
