"""The deployment state machine: the only way the champion, challenger, strategy and traffic weight change.

    (nothing) --set_champion--> champion
    champion --set_challenger (gate passed)--> champion + challenger (weight 0, strategy single)
    + challenger --start_strategy--> ab (weight w) | canary (step 0, weight w) | shadow (0) | bluegreen (1)
    canary step i --advance_canary--> canary step i+1 (larger weight)
    + challenger --promote--> challenger becomes champion (weight 0, single)
    + challenger --rollback--> champion alone at once (weight 0, single), reason recorded

Every transition re-reads the state, checks that it is allowed (a `UserError` naming the problem if not),
writes it with `MetadataStore.update_deployment` (compare-and-swap on the revision; on a conflict it
re-reads and checks again), records an event, and mirrors the MLflow aliases. A caller that decided on a
state it read earlier passes it as `expected`: if champion or challenger changed meanwhile, its decision is
stale and a `ConflictError` is raised instead of applying it to a model it was not about. The controller
also passes its lease as `fence`: the write then commits only while it still holds the lease (a
`LeaseLostError` otherwise, never retried).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from driftloop.errors import ConflictError, UserError
from driftloop.stores import Stores
from driftloop.stores.metadata import Deployment, Lease, utcnow

log = logging.getLogger(__name__)

STRATEGIES = ("single", "ab", "canary", "shadow", "bluegreen")
MAX_ATTEMPTS = 5
#: What promote and rollback both leave behind: the champion alone, at full traffic.
NO_CHALLENGER: dict[str, Any] = {
    "challenger": None,
    "strategy": "single",
    "challenger_weight": 0.0,
    "rollout_step": None,
    "step_started_at": None,
}

Plan = Callable[[Deployment], dict[str, Any]]


def current(stores: Stores) -> Deployment:
    return stores.metadata.get_deployment(stores.model_name)


def _transition(
    stores: Stores,
    kind: str,
    plan: Plan,
    *,
    reason: str,
    actor: str | None,
    evidence: dict[str, Any] | None,
    expected: Deployment | None,
    version_of_event: Callable[[Deployment, Deployment], str | None],
    fence: Lease | None = None,
) -> Deployment:
    """Validate with `plan(state) -> changes` (raises UserError), compare-and-swap, event, aliases."""
    state = expected if expected is not None else current(stores)
    for _attempt in range(MAX_ATTEMPTS):
        changes = plan(state)
        changes["reason"] = reason
        if actor:
            changes["actor"] = actor
        previous = state

        def event(new: Deployment, previous: Deployment = previous) -> dict[str, Any]:
            return {
                "kind": kind,
                "message": reason,
                "model_version": version_of_event(previous, new),
                "evidence": {**(evidence or {}), "deployment": new.to_dict(), "previous": previous.to_dict()},
            }

        try:
            # The event is written in the same transaction as the change: a kill between them is impossible.
            new = stores.metadata.update_deployment(state, event=event, fence=fence, **changes)
            break
        except ConflictError:
            fresh = current(stores)
            if expected is not None and (fresh.champion, fresh.challenger) != (
                expected.champion,
                expected.challenger,
            ):
                raise ConflictError(
                    f"{kind}: the deployment changed since the decision (champion v{expected.champion}, "
                    f"challenger v{expected.challenger}; now v{fresh.champion} / v{fresh.challenger})"
                ) from None
            state = fresh
    else:
        raise ConflictError(f"{kind}: the deployment kept changing; gave up after {MAX_ATTEMPTS} attempts")
    mirror_aliases(stores, new)
    return new


def mirror_aliases(stores: Stores, dep: Deployment) -> None:
    """MLflow aliases follow the metadata store; a tracking outage must not undo a committed change."""
    try:
        stores.tracking.mirror_aliases(dep.champion, dep.challenger)
    except Exception:
        log.warning("could not mirror the MLflow aliases for %s; they catch up on the next change", dep)


def _registered(stores: Stores, version: str) -> str:
    return stores.tracking.get_version(str(version)).version  # NotFoundError names the version


# -- transitions ----------------------------------------------------------------------------------------------


def set_champion(
    stores: Stores,
    version: str,
    *,
    reason: str = "first model",
    actor: str | None = None,
    evidence: dict[str, Any] | None = None,
    fence: Lease | None = None,
) -> Deployment:
    """Make the first model the champion. Later champions come only from promoting a challenger."""
    version = _registered(stores, version)

    def plan(state: Deployment) -> dict[str, Any]:
        if state.champion is not None:
            raise UserError(
                f"v{state.champion} is already the champion; a new model must pass the gate as challenger "
                "and be promoted"
            )
        return {"champion": version, "challenger": None, "strategy": "single", "challenger_weight": 0.0}

    return _transition(
        stores, "champion_set", plan, reason=reason, actor=actor, evidence=evidence, expected=None,
        version_of_event=lambda old, new: new.champion, fence=fence,
    )  # fmt: skip


def set_challenger(
    stores: Stores,
    version: str,
    *,
    reason: str,
    actor: str | None = None,
    evidence: dict[str, Any] | None = None,
    expected: Deployment | None = None,
    fence: Lease | None = None,
) -> Deployment:
    """Name a gated model the challenger, with no traffic yet. Replaces an idle challenger, never a rollout.

    `expected`: the state the gate judged against. If the champion (or challenger) changed since, the gate's
    verdict is about another model: ConflictError, and the model is not named challenger.
    """
    version = _registered(stores, version)

    def plan(state: Deployment) -> dict[str, Any]:
        if state.champion is None:
            raise UserError("there is no champion yet: the first model becomes champion, not challenger")
        if version == state.champion:
            raise UserError(f"v{version} is the champion; it cannot also be the challenger")
        if state.challenger is not None and state.strategy != "single":
            raise UserError(
                f"a {state.strategy} rollout of v{state.challenger} is in progress; promote it or roll it "
                "back first"
            )
        return {"challenger": version, "strategy": "single", "challenger_weight": 0.0, "rollout_step": None}

    return _transition(
        stores, "challenger_set", plan, reason=reason, actor=actor, evidence=evidence, expected=expected,
        version_of_event=lambda old, new: new.challenger, fence=fence,
    )  # fmt: skip


def _strategy_changes(strategy: str, weight: float | None) -> dict[str, Any]:
    if strategy not in STRATEGIES:
        raise UserError(f"strategy: must be one of {', '.join(STRATEGIES)} (got {strategy!r})")
    if weight is not None and not 0.0 <= weight <= 1.0:
        raise UserError(f"weight: must be between 0 and 1 (got {weight})")
    if strategy == "ab":
        w = 0.5 if weight is None else weight
        if not 0.0 < w < 1.0:
            raise UserError(f"weight: an A/B split needs 0 < weight < 1 (got {w})")
        return {"challenger_weight": w, "rollout_step": None, "step_started_at": None}
    if strategy == "canary":
        if weight is None or not 0.0 < weight < 1.0:
            raise UserError(f"weight: a canary step needs 0 < weight < 1 (got {weight})")
        return {"challenger_weight": weight, "rollout_step": 0, "step_started_at": utcnow()}
    if strategy in ("shadow", "single"):
        # shadow: the challenger answers every request in the background and is logged, never served.
        return {"challenger_weight": 0.0, "rollout_step": None, "step_started_at": None}
    return {"challenger_weight": 1.0, "rollout_step": None, "step_started_at": None}  # bluegreen switch


def start_strategy(
    stores: Stores,
    strategy: str,
    *,
    version: str | None = None,
    weight: float | None = None,
    reason: str,
    actor: str | None = None,
    evidence: dict[str, Any] | None = None,
    expected: Deployment | None = None,
    fence: Lease | None = None,
) -> Deployment:
    """Route traffic to the challenger by `strategy` (ab, canary, shadow, bluegreen; single takes it away)."""
    changes = _strategy_changes(strategy, weight)

    def plan(state: Deployment) -> dict[str, Any]:
        if state.challenger is None:
            raise UserError(
                f"no challenger to start a {strategy} rollout with: train one that passes the gate"
            )
        if version is not None and str(version) != state.challenger:
            raise UserError(
                f"v{version} is not the challenger (the challenger is v{state.challenger}); only a model "
                "that passed the gate can get traffic"
            )
        return {"strategy": strategy, **changes}

    kind = "canary_started" if strategy == "canary" else "strategy_started"
    return _transition(
        stores, kind, plan, reason=reason, actor=actor, evidence={"strategy": strategy, **(evidence or {})},
        expected=expected, version_of_event=lambda old, new: new.challenger, fence=fence,
    )  # fmt: skip


def start_canary(
    stores: Stores,
    version: str,
    *,
    weight: float,
    reason: str,
    actor: str | None = None,
    evidence: dict[str, Any] | None = None,
    expected: Deployment | None = None,
    fence: Lease | None = None,
) -> Deployment:
    return start_strategy(
        stores, "canary", version=version, weight=weight, reason=reason, actor=actor, evidence=evidence,
        expected=expected, fence=fence,
    )  # fmt: skip


def advance_canary(
    stores: Stores,
    *,
    step: int,
    weight: float,
    reason: str,
    actor: str | None = None,
    evidence: dict[str, Any] | None = None,
    expected: Deployment | None = None,
    fence: Lease | None = None,
) -> Deployment:
    """Move a canary to `step` with a larger share of traffic (the last step, weight 1.0, is `promote`)."""

    def plan(state: Deployment) -> dict[str, Any]:
        if state.challenger is None or state.strategy != "canary":
            raise UserError("no canary in progress to advance")
        at = state.rollout_step or 0
        if step != at + 1:
            raise UserError(f"step: the canary is at step {at}; the next step is {at + 1} (got {step})")
        if not state.challenger_weight < weight <= 1.0:
            raise UserError(
                f"weight: a canary step must raise the weight above {state.challenger_weight:g} (got {weight})"
            )
        return {"rollout_step": step, "challenger_weight": weight, "step_started_at": utcnow()}

    return _transition(
        stores, "canary_advanced", plan, reason=reason, actor=actor,
        evidence={"step": step, "weight": weight, **(evidence or {})}, expected=expected,
        version_of_event=lambda old, new: new.challenger, fence=fence,
    )  # fmt: skip


def promote(
    stores: Stores,
    *,
    version: str | None = None,
    reason: str,
    actor: str | None = None,
    evidence: dict[str, Any] | None = None,
    expected: Deployment | None = None,
    fence: Lease | None = None,
) -> Deployment:
    """The challenger becomes the champion and takes all traffic; the old champion leaves the deployment."""

    def plan(state: Deployment) -> dict[str, Any]:
        if state.challenger is None:
            raise UserError("no challenger to promote: a model must pass the gate first")
        if version is not None and str(version) != state.challenger:
            raise UserError(f"v{version} is not the challenger (the challenger is v{state.challenger})")
        return {"champion": state.challenger, **NO_CHALLENGER}

    return _transition(
        stores, "promoted", plan, reason=reason, actor=actor, evidence=evidence, expected=expected,
        version_of_event=lambda old, new: new.champion, fence=fence,
    )  # fmt: skip


def rollback(
    stores: Stores,
    *,
    reason: str,
    actor: str | None = None,
    evidence: dict[str, Any] | None = None,
    expected: Deployment | None = None,
    fence: Lease | None = None,
) -> Deployment:
    """All traffic back to the champion at once; the challenger leaves the deployment. The reason is kept."""

    def plan(state: Deployment) -> dict[str, Any]:
        if state.challenger is None:
            raise UserError("nothing to roll back: only the champion is deployed")
        return dict(NO_CHALLENGER)

    return _transition(
        stores, "rolled_back", plan, reason=reason or "rollback", actor=actor,
        evidence=evidence, expected=expected, version_of_event=lambda old, new: old.challenger,
        fence=fence,
    )  # fmt: skip
