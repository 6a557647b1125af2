"""What a candidate costs to serve, timed on the path the server takes, and the `training.max_predict_ms` rule.

A candidate is written in driftloop's model format and loaded back the way a server worker loads it
(`stores.models.save_bundle_dir`, `load_bundle_dir`: LightGBM as its native booster, scikit-learn through
skops with one thread, an ensemble member by member), put in the form the worker serves once its trees are
converted (`compiled.served_form`: a scikit-learn forest on treelite's GTIL, which answers one row of 500
wine trees in ~0.3 ms where scikit-learn takes ~24 ms), then timed on `ModelBundle.predict_matrix` with a
numpy float matrix, which is all a request costs after its JSON is decoded: the fastest of several one-row
calls and of several 100-row calls. The fastest, not the median: it is what the model costs when it has a
core, while waiting for one (other processes, other requests) comes on top for every candidate alike and
would make the choice depend on the machine's load. A LightGBM model is timed on the booster a worker
serves until its lleaves compile is ready, so its figure is an upper bound of the steady state. A forest is
served by scikit-learn for the first seconds of a new version, until the worker's conversion is ready.

A trial is timed on its last CV fold's model. Forests are searched with fewer trees than they are refitted
with, and their predict time grows with the tree count, so their figure is scaled to the refit's trees; an
ensemble costs the sum of its members' figures (each forest member scaled to its share of trees).

`training.max_predict_ms` bounds the one-row figure: a trial over it stays on the leaderboard as `too_slow`
but is neither chosen nor an ensemble member, and an ensemble over it is not chosen. When no trial fits,
training stops with a `UserError` that names the key and the fastest candidate; nothing is registered.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftloop.compiled import served_form
from driftloop.errors import UserError
from driftloop.stores.models import FeatureSpec, ModelBundle, ModelSpec, load_bundle_dir, save_bundle_dir
from driftloop.train import candidates
from driftloop.train.candidates import Params, Problem

__all__ = [
    "TOO_SLOW",
    "PredictCost",
    "ensemble_cost",
    "measure",
    "no_candidate_fits",
    "over_limit",
    "serving_bundle",
    "tell_constraint",
    "trial_cost",
]

#: The state of a complete trial whose one-row predict time is over `training.max_predict_ms`.
TOO_SLOW = "too_slow"
BATCH_ROWS = 100
#: Time spent timing one candidate (per row count); at least 3 one-row calls and 1 batch call run.
_TIMING_SECONDS = 0.15
_MAX_CALLS = 25


@dataclass(frozen=True)
class PredictCost:
    """Milliseconds of one predict call with one row and with 100 rows (the fastest of several calls)."""

    one_row_ms: float
    batch_ms: float

    def scaled(self, factor: float) -> PredictCost:
        return PredictCost(self.one_row_ms * factor, self.batch_ms * factor)

    def __add__(self, other: PredictCost) -> PredictCost:
        return PredictCost(self.one_row_ms + other.one_row_ms, self.batch_ms + other.batch_ms)

    def to_dict(self) -> dict[str, float]:
        """The names MLflow metrics, the leaderboard and `train`'s result use."""
        return {"predict_ms_1row": self.one_row_ms, f"predict_ms_{BATCH_ROWS}rows": self.batch_ms}


def measure(bundle: ModelBundle, X: np.ndarray) -> PredictCost:
    """Time `bundle.predict_matrix` on rows of X: one row per call, then 100 rows per call (X repeated)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    batch = np.ascontiguousarray(np.resize(X, (BATCH_ROWS, X.shape[1])))
    bundle.predict_matrix(batch[:8])  # the first call allocates and imports; a request never pays it
    singles = [batch[i : i + 1] for i in range(min(len(batch), _MAX_CALLS))]
    return PredictCost(_fastest_ms(bundle, singles, minimum=3), _fastest_ms(bundle, [batch] * 5, minimum=2))


def _fastest_ms(bundle: ModelBundle, inputs: list[np.ndarray], *, minimum: int) -> float:
    times: list[float] = []
    deadline = time.perf_counter() + _TIMING_SECONDS
    for X in inputs:
        started = time.perf_counter()
        bundle.predict_matrix(X)
        times.append(1000.0 * (time.perf_counter() - started))
        if len(times) >= minimum and time.perf_counter() > deadline:
            break
    return min(times)


def serving_bundle(family: str, estimator: Any, problem: Problem, n_classes: int) -> ModelBundle:
    """The fitted estimator in its serving form: written in the model format, loaded as the server does, with
    its forests converted as the worker converts them."""
    native, flavor = candidates.for_serving(family, estimator)
    spec = ModelSpec(
        task=problem.task,  # type: ignore[arg-type]
        target="target",
        features=tuple(
            FeatureSpec(f"x{i}", "categorical" if i in problem.categorical else "numeric")
            for i in range(problem.n_features)
        ),
        classes=tuple(range(n_classes)) if problem.is_classifier else (),
        family=family,
    )
    with tempfile.TemporaryDirectory(prefix="driftloop-cost-") as tmp:
        loaded = load_bundle_dir(save_bundle_dir(ModelBundle(spec, native, flavor), tmp))  # type: ignore[arg-type]
    return served_form(loaded)


def trial_cost(
    family: str, params: Params, estimator: Any, problem: Problem, n_classes: int, X: np.ndarray
) -> PredictCost:
    """A trial's cost as the model it would be refitted to: measured, then scaled to the refit's trees."""
    fitted_trees = getattr(estimator, "n_estimators", None)
    final_trees = candidates.FAMILIES[family].final(params).get("n_estimators")
    measured = measure(serving_bundle(family, estimator, problem, n_classes), X)
    if family == "lightgbm" or not fitted_trees or not final_trees:
        return measured
    return measured.scaled(final_trees / fitted_trees)


def ensemble_cost(members: Iterable[tuple[PredictCost, float]]) -> PredictCost:
    """The sum of the members' costs, each times its factor (a forest member's share of its refit trees)."""
    total = PredictCost(0.0, 0.0)
    for cost, factor in members:
        total = total + cost.scaled(factor)
    return total


def over_limit(cost: PredictCost | None, max_predict_ms: float | None) -> bool:
    return max_predict_ms is not None and cost is not None and cost.one_row_ms > max_predict_ms


def tell_constraint(trial: Any, cost: PredictCost, max_predict_ms: float | None) -> None:
    """Record on the Optuna trial how far it is over the limit (positive: infeasible, for TPE)."""
    if max_predict_ms is not None:
        trial.set_constraint("predict_ms_over_limit", cost.one_row_ms - max_predict_ms)


def no_candidate_fits(costs: list[tuple[str, int, PredictCost]], max_predict_ms: float) -> UserError:
    """The error when every complete trial is over the limit: (family, trial number, cost) of each."""
    family, number, cost = min(costs, key=lambda c: c[2].one_row_ms)
    return UserError(
        f"training.max_predict_ms={max_predict_ms:g}: no candidate predicts one row in time; the fastest, "
        f"trial {number} ({family}), takes {cost.one_row_ms:.3f} ms. Raise training.max_predict_ms (null: "
        "no limit) or list faster families in training.families (lightgbm, linear)"
    )
