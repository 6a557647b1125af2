"""Admin changes to the deployment from the HTTP API, and the bearer-token check that guards them.

The rules of what may change live in the deployment state machine (`driftloop.registry.deployments`); this
module only translates an HTTP request into one of its calls. Until that module exists it falls back to
the compare-and-swap of `MetadataStore.update_deployment` with the same minimal checks.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from driftloop.errors import UserError
from driftloop.serve.router import STRATEGIES
from driftloop.stores.metadata import Deployment, MetadataStore


@dataclass(frozen=True)
class AuthResult:
    status: int
    message: str


def check_bearer(header: str | None, token: str) -> AuthResult | None:
    """None when `Authorization: Bearer <token>` matches (constant-time); else 401 (absent) or 403 (wrong)."""
    if not header:
        return AuthResult(401, "admin endpoints need an Authorization: Bearer <token> header")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return AuthResult(401, "the Authorization header must be 'Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return AuthResult(403, "wrong admin token")
    return None


def set_deployment(
    store: MetadataStore,
    model_name: str,
    *,
    strategy: str | None,
    challenger: str | None,
    challenger_weight: float | None,
    clear_challenger: bool,
    reason: str,
    actor: str,
) -> Deployment:
    """Change strategy, challenger and weight of the current deployment (one compare-and-swap)."""
    current = store.get_deployment(model_name)
    changes: dict[str, Any] = {}
    if strategy is not None:
        if strategy not in STRATEGIES:
            raise UserError(f"strategy: must be one of {', '.join(STRATEGIES)}")
        changes["strategy"] = strategy
    if clear_challenger:
        changes["challenger"] = None
    elif challenger is not None:
        changes["challenger"] = str(challenger)
    if challenger_weight is not None:
        if not 0.0 <= challenger_weight <= 1.0:
            raise UserError("challenger_weight: must be between 0 and 1")
        changes["challenger_weight"] = float(challenger_weight)
    if not changes:
        raise UserError("nothing to change: give strategy, challenger and/or challenger_weight")
    return _apply(store, current, changes, reason=reason, actor=actor)


def rollback(store: MetadataStore, model_name: str, *, reason: str, actor: str) -> Deployment:
    """Send all traffic back to the champion: the challenger leaves the deployment."""
    current = store.get_deployment(model_name)
    if current.challenger is None and current.strategy == "single":
        raise UserError("nothing to roll back: only the champion is deployed")
    return _apply(
        store,
        current,
        {"challenger": None, "strategy": "single", "challenger_weight": 0.0},
        reason=reason or "rollback",
        actor=actor,
    )


def _apply(
    store: MetadataStore, current: Deployment, changes: dict[str, Any], *, reason: str, actor: str
) -> Deployment:
    if current.champion is None:
        raise UserError(f"model {current.model_name} has no champion yet: promote a version first")
    target = {**{k: getattr(current, k) for k in ("strategy", "challenger", "challenger_weight")}, **changes}
    if target["strategy"] != "single" and not target["challenger"]:
        raise UserError(f"strategy {target['strategy']!r} needs a challenger version")
    if target["challenger"] and target["challenger"] == current.champion:
        raise UserError("challenger: must differ from the champion")
    return store.update_deployment(current, reason=reason or "admin change", actor=actor, **changes)
