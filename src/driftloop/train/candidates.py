"""Model families the search chooses from: each with its search space, its good defaults, and how it is built.

Every estimator takes the encoded float matrix (categorical features as category index or NaN, see
`stores.models.Encoder`) and, for classification, class indices. Parameter names in the Optuna study carry
the family as a prefix (`lightgbm.num_leaves`), so one study can search all families at once. The defaults
are enqueued as the first trials: a short budget still tries each family at a known-good setting before TPE
explores around them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The order the families' defaults are tried in: cheap and strong first, so a tight budget still gets
#: LightGBM (the usual winner on tabular data, fast on large tables) and the linear baseline before the
#: forests, whose trials cost several times as much on a mid-size table.
FAMILY_ORDER = ("lightgbm", "linear", "extra_trees", "random_forest")
#: Trees per forest while searching, and in the final model. More trees never make a bagged forest worse,
#: they only cost time, so configurations are ranked with fewer trees and the final model gets more.
SEARCH_TREES = 150
FINAL_TREES = 500


@dataclass(frozen=True)
class Problem:
    """What a family needs to know about the data to build an estimator for it."""

    task: str
    n_features: int
    categorical: tuple[int, ...]
    """Column indices of categorical features in the encoded matrix."""
    seed: int
    nonnegative: bool = False
    """A regression target that is never negative (counts, amounts): predictions are never below zero."""
    counts: bool = False
    """A non-negative target of whole numbers (counts): LightGBM fits a Poisson objective and the linear family
    a Poisson GLM, whose log link cannot predict below zero. A non-negative target that is not counts (an
    amount, a measurement) keeps squared error, which fits it better (Friedman #1: R² 0.937 against 0.927
    with Poisson, benchmarks/automl), and its predictions are floored at zero instead (`floor`)."""

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    @property
    def objective(self) -> str:
        """The regression loss: `poisson` (a count target) or `squared_error`."""
        return "poisson" if self.nonnegative and self.counts and not self.is_classifier else "squared_error"

    @property
    def loss(self) -> str:
        """The objective as `train` reports it: `poisson`, `squared_error, floored at 0` or `squared_error`."""
        if self.objective == "squared_error" and self.floor is not None:
            return f"squared_error, floored at {self.floor:g}"
        return self.objective

    @property
    def floor(self) -> float | None:
        """The least prediction: 0 for a non-negative regression target, else none. Applied to every
        candidate's predictions, in CV as at serving (`ModelSpec.minimum_prediction`)."""
        return 0.0 if self.nonnegative and not self.is_classifier else None


Params = dict[str, Any]


@dataclass(frozen=True)
class Family:
    name: str
    space: Callable[[Any, Problem], Params]
    """Suggest this family's parameters on an Optuna trial (names without the family prefix)."""
    defaults: Callable[[Problem], list[Params]]
    """Known-good settings, tried first in this order."""
    build: Callable[[Params, Problem, int], Any]
    """An unfitted estimator for these parameters using `threads` threads."""
    final: Callable[[Params], Params] = dict
    """The parameters of the final model from those of the best trial."""


def _sqrt_share(p: Problem) -> float:
    return round(min(1.0, max(0.1, math.sqrt(p.n_features) / p.n_features)), 4)


# -- random forest / extra trees ------------------------------------------------------------------------------


def _forest_space(extra: bool) -> Callable[[Any, Problem], Params]:
    prefix = "extra_trees" if extra else "random_forest"

    def space(trial: Any, p: Problem) -> Params:
        params: Params = {
            "max_features": trial.suggest_float(f"{prefix}.max_features", 0.1, 1.0),
            "min_samples_leaf": trial.suggest_int(f"{prefix}.min_samples_leaf", 1, 16, log=True),
        }
        if p.is_classifier:
            params["criterion"] = trial.suggest_categorical(f"{prefix}.criterion", ["gini", "entropy"])
        if extra:
            params["bootstrap"] = trial.suggest_categorical(f"{prefix}.bootstrap", [False, True])
        return params

    return space


def _forest_defaults(extra: bool) -> Callable[[Problem], list[Params]]:
    def defaults(p: Problem) -> list[Params]:
        # scikit-learn's own defaults (sqrt of the features for classification, all for regression);
        # then the variant that most often wins on small tabular data.
        base: Params = {
            "max_features": _sqrt_share(p) if p.is_classifier else 1.0,
            "min_samples_leaf": 1,
        }
        if p.is_classifier:
            base["criterion"] = "gini"
        if extra:
            base["bootstrap"] = False
            variant = {**base, "bootstrap": True}
        else:
            variant = {**base, "criterion": "entropy"} if p.is_classifier else {**base, "max_features": 0.5}
        return [base, variant]

    return defaults


def _forest_build(extra: bool) -> Callable[[Params, Problem, int], Any]:
    def build(params: Params, p: Problem, threads: int) -> Any:
        from sklearn import ensemble

        if p.is_classifier:
            cls = ensemble.ExtraTreesClassifier if extra else ensemble.RandomForestClassifier
        else:
            cls = ensemble.ExtraTreesRegressor if extra else ensemble.RandomForestRegressor
        return cls(**{"n_estimators": SEARCH_TREES, **params}, n_jobs=threads, random_state=p.seed)

    return build


def _forest_final(params: Params) -> Params:
    return {**params, "n_estimators": FINAL_TREES}


# -- LightGBM -------------------------------------------------------------------------------------------------


def _lgbm_space(trial: Any, p: Problem) -> Params:
    return {
        "n_estimators": trial.suggest_int("lightgbm.n_estimators", 50, 600, log=True),
        "learning_rate": trial.suggest_float("lightgbm.learning_rate", 0.01, 0.3, log=True),
        "num_leaves": trial.suggest_int("lightgbm.num_leaves", 4, 256, log=True),
        "min_child_samples": trial.suggest_int("lightgbm.min_child_samples", 2, 100, log=True),
        "subsample": trial.suggest_float("lightgbm.subsample", 0.4, 1.0),
        "colsample_bytree": trial.suggest_float("lightgbm.colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("lightgbm.reg_lambda", 1e-3, 30.0, log=True),
    }


def _lgbm_defaults(p: Problem) -> list[Params]:
    # Then shallow boosting: many small trees, larger leaves. On small or smooth tables it beats the
    # 31-leaf default clearly (friedman1, 1,600 rows: R² 0.940 against 0.931 over five split seeds;
    # diabetes, 353 rows: 0.28 against 0.28, where the linear family wins), and it serves as fast.
    return [
        {
            "n_estimators": 300,
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_child_samples": 10,
            "subsample": 0.8,
            "colsample_bytree": 0.7,
            "reg_lambda": 1.0,
        },
        {
            "n_estimators": 600,
            "learning_rate": 0.03,
            "num_leaves": 8,
            "min_child_samples": 20,
            "subsample": 0.8,
            "colsample_bytree": 0.9,
            "reg_lambda": 1.0,
        },
    ]


def _lgbm_build(params: Params, p: Problem, threads: int) -> Any:
    import lightgbm

    cls = lightgbm.LGBMClassifier if p.is_classifier else lightgbm.LGBMRegressor
    objective: dict[str, Any] = {"objective": "poisson"} if p.objective == "poisson" else {}
    # deterministic + force_row_wise: the same data and seed give the same trees on any run.
    return cls(
        **params,
        **objective,
        subsample_freq=1,
        n_jobs=threads,
        random_state=p.seed,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
    )


# -- linear ---------------------------------------------------------------------------------------------------


def _linear_space(trial: Any, p: Problem) -> Params:
    if p.is_classifier:
        return {"C": trial.suggest_float("linear.C", 1e-3, 100.0, log=True)}
    return {"alpha": trial.suggest_float("linear.alpha", 1e-3, 100.0, log=True)}


def _linear_defaults(p: Problem) -> list[Params]:
    return [{"C": 1.0}] if p.is_classifier else [{"alpha": 1.0}]


def _linear_build(params: Params, p: Problem, threads: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, PoissonRegressor, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [i for i in range(p.n_features) if i not in p.categorical]
    parts = []
    if numeric:
        num = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        parts.append(("numeric", num, numeric))
    if p.categorical:
        # Category codes are labels, not quantities: one-hot them; a missing or unseen one is all zeros.
        cat = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value=-1.0)),
                ("onehot", OneHotEncoder(handle_unknown="ignore")),
            ]
        )
        parts.append(("categorical", cat, list(p.categorical)))
    if p.is_classifier:
        model: Any = LogisticRegression(**params, max_iter=2000, random_state=p.seed)
    elif p.objective == "poisson":
        # Its alpha penalises the mean deviance, not squared error: the same search range, scaled down.
        model = PoissonRegressor(alpha=params["alpha"] / 100, max_iter=1000)
    else:
        model = Ridge(**params)
    return Pipeline([("prepare", ColumnTransformer(parts)), ("model", model)])


FAMILIES: dict[str, Family] = {
    "random_forest": Family(
        "random_forest", _forest_space(False), _forest_defaults(False), _forest_build(False), _forest_final
    ),
    "extra_trees": Family(
        "extra_trees", _forest_space(True), _forest_defaults(True), _forest_build(True), _forest_final
    ),
    "lightgbm": Family("lightgbm", _lgbm_space, _lgbm_defaults, _lgbm_build),
    "linear": Family("linear", _linear_space, _linear_defaults, _linear_build),
}


def prefixed(family: str, params: Params) -> Params:
    """A trial's parameter dict as the study names them, for enqueueing."""
    return {"family": family, **{f"{family}.{k}": v for k, v in params.items()}}


def unprefixed(family: str, trial_params: Params) -> Params:
    head = f"{family}."
    return {k[len(head) :]: v for k, v in trial_params.items() if k.startswith(head)}


def fit(family: str, estimator: Any, X: np.ndarray, y: np.ndarray, p: Problem) -> Any:
    if family == "lightgbm":
        estimator.fit(X, y, categorical_feature=list(p.categorical) if p.categorical else "auto")
    else:
        estimator.fit(X, y)
    return estimator


def predict_scores(estimator: Any, X: np.ndarray, p: Problem, n_classes: int) -> np.ndarray:
    """(n, n_classes) probabilities (a class the estimator never saw gets 0), or (n,) values."""
    if not p.is_classifier:
        values = np.asarray(estimator.predict(X), dtype=np.float64)
        return values if p.floor is None else np.maximum(values, p.floor)
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    seen = np.asarray(estimator.classes_, dtype=np.int64)
    if len(seen) == n_classes:
        return proba
    out = np.zeros((len(X), n_classes))
    out[:, seen] = proba
    return out


def for_serving(family: str, estimator: Any) -> tuple[Any, str]:
    """(object to store, flavor): LightGBM as its native booster; scikit-learn with one thread per call;
    an ensemble (`stores.models.Ensemble`, its members already in serving form) as it is.

    A forest predicting one row with n_jobs > 1 spends milliseconds starting threads; serving runs many
    requests side by side instead.
    """
    if family == "ensemble":
        return estimator, "ensemble"
    if family == "lightgbm":
        return estimator.booster_, "lightgbm"
    if "n_jobs" in estimator.get_params():
        estimator.set_params(n_jobs=1)
    return estimator, "sklearn"
