"""scikit-learn forests served by treelite's GTIL: the same probabilities, without sklearn's cost per tree.

A fitted random forest or extra-trees model predicts through `predict_proba`, which walks each tree in its
own Python-level call (joblib dispatch, input checks, an output array per tree): with 300 trees on wine one
row costs ~80 ms on this project's loaded 2-core machine. treelite converts the forest into its own model
and GTIL, treelite's C++ interpreter, walks every tree in one call that releases the GIL: 0.3 ms a row
(benchmarks/serving/RESULTS.md). GTIL needs no compiler; tl2cgen, which turns the trees into C, spent over
25 minutes of gcc on one 300-tree forest here, too long and too fragile for a server that compiles on its
own. Walking a deep forest row by row is memory-bound, so above `BATCH_ROWS` rows scikit-learn's per-tree
vectorised walk is faster: a `CompiledForest` hands those batches to the original estimator. tl2cgen walks
row by row too, so it does not help batch scoring either (tl2cgen 1.0.0 on the four forests of the default
red wine ensemble, 150-393 trees each, 250,000 rows, one thread): at -O1 a forest compiles in 40-150 s, yet
predicts 0.25-0.74x as many rows per CPU second as scikit-learn's `predict_proba` (-O3 is no faster);
GTIL makes about 0.1x. The best hand-written batch walk we found, eight branch-free walks of one tree in
flight, makes about 1.4x (benchmarks/forest_kernel); for a kernel gcc must build on every machine, that was
not worth shipping.

As with LightGBM (`driftloop.compiled.booster`), the conversion runs in a child process (no GIL contention
with live traffic; a crash in treelite cannot take the server down), once per model version and machine,
under a file lock; the child checks the treelite model against scikit-learn on random rows (with missing
values when the forest accepts them, since the encoder sends NaN for a missing or unseen value) before it
writes the cache. A worker loading the cache checks it again on a few rows against the estimator it
serves, and converts again once if the cache is unreadable or disagrees.

Inputs are cast to float32 before the walk, as scikit-learn does: its thresholds sit between float32
values, and a float64 input equal to a training value can fall on the other side of one.

Run as `python -m driftloop.compiled.forest MODEL_FILE CACHE_FILE [TRUSTED_TYPE ...]` to convert one model.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BATCH_ROWS",
    "CompiledForest",
    "available",
    "cache_path",
    "compile_forest_file",
    "convert",
    "is_forest",
]

log = logging.getLogger(__name__)
CONVERT_TIMEOUT_SECONDS = 600
#: Batches larger than this go to scikit-learn: measured crossover ~100-200 rows for 300 wine trees.
BATCH_ROWS = 128
#: Largest allowed difference between GTIL's and scikit-learn's probabilities (or values).
TOLERANCE = 1e-6
_FOREST_TYPES = frozenset(
    {"RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor"}
)


def is_forest(estimator: Any) -> bool:
    """A single-output scikit-learn random forest or extra-trees model (what treelite converts exactly)."""
    return type(estimator).__name__ in _FOREST_TYPES and getattr(estimator, "n_outputs_", 1) == 1


class CompiledForest:
    """Answers like the forest it came from (`predict_proba`, `predict`, `classes_`), through GTIL."""

    def __init__(self, model: Any, estimator: Any) -> None:
        self._model = model
        self._estimator = estimator
        self._classifier = hasattr(estimator, "classes_")
        if self._classifier:
            self.classes_ = estimator.classes_

    def _walk(self, X: np.ndarray) -> np.ndarray:
        from treelite import gtil

        out = gtil.predict(self._model, np.ascontiguousarray(X, dtype=np.float32), nthread=1)
        return out.reshape(len(X), -1) if self._classifier else out.reshape(len(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if len(X) > BATCH_ROWS:
            return self._estimator.predict_proba(X)
        return self._walk(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        if len(X) > BATCH_ROWS:
            return self._estimator.predict(X)
        out = self._walk(X)
        return self.classes_[np.argmax(out, axis=1)] if self._classifier else out


def available() -> bool:
    from driftloop.compiled.booster import importable

    return importable("treelite")


def cache_path(model_file: Path) -> Path:
    """treelite's serialized model for this model file and treelite version (its format is versioned)."""
    from importlib.metadata import version

    return model_file.parent / f".{model_file.stem}.treelite{version('treelite')}.tl"


def compile_forest_file(model_file: Path, trusted: Sequence[str], estimator: Any) -> CompiledForest:
    """GTIL model for the forest `estimator` loaded from `model_file` (skops, `trusted` types): converted in a
    child process or read from the cache, and checked against `estimator`. Blocks; run it off the event loop."""
    from treelite import Model

    target = cache_path(model_file)
    for attempt in (1, 2):
        _convert(model_file, trusted, target)
        try:
            forest = CompiledForest(Model.deserialize(str(target)), estimator)
            _check(forest, estimator, _rows(estimator, 64, seed=1))
            return forest
        except Exception as exc:
            if attempt == 2:
                raise
            log.warning("cached forest %s is unusable, converting again: %s", target.name, exc)
            target.unlink(missing_ok=True)
    raise AssertionError("unreachable")


def convert(estimator: Any) -> CompiledForest:
    """The forest on GTIL, converted in this process with no cache and checked like a cached one: what a
    worker serves once its own conversion is ready, for timing a model before it is served (`train.cost`,
    the gate). Well under a second for 500 wine trees; raises if treelite disagrees with scikit-learn."""
    import treelite.sklearn

    forest = CompiledForest(treelite.sklearn.import_model(estimator), estimator)
    _check(forest, estimator, _rows(estimator, 64, seed=1))
    return forest


def _convert(model_file: Path, trusted: Sequence[str], target: Path) -> None:
    from driftloop.compiled.booster import build_cached

    build_cached(target, lambda tmp: _run_converter(model_file, tmp, trusted), "treelite conversion")


def _run_converter(model_file: Path, out: Path, trusted: Sequence[str]) -> tuple[int, str]:
    from driftloop.compiled.booster import run_child

    return run_child([__name__, str(model_file), str(out), *trusted])


def _rows(estimator: Any, n: int, seed: int) -> np.ndarray:
    """Random rows on and around the forest's split thresholds (where float rounding would show), a third
    with NaN in every other column when the forest accepts missing values."""
    rng = np.random.default_rng(seed)
    trees = [t.tree_ for t in estimator.estimators_[:10]]
    X = np.empty((n, int(estimator.n_features_in_)))
    for j in range(X.shape[1]):
        th = np.concatenate([t.threshold[t.feature == j] for t in trees])
        if th.size == 0:
            X[:, j] = rng.normal(size=n)
            continue
        jitter = rng.normal(0.0, float(th.std()) or 1.0, size=n) * (rng.random(n) < 0.5)
        X[:, j] = rng.choice(th, size=n) + jitter
    if _accepts_nan(estimator):
        X[::3, ::2] = np.nan
    return X


def _accepts_nan(estimator: Any) -> bool:
    try:
        estimator.predict(np.full((1, int(estimator.n_features_in_)), np.nan))
    except ValueError:
        return False
    return True


def _check(forest: CompiledForest, estimator: Any, X: np.ndarray) -> None:
    """Raise unless GTIL gives scikit-learn's probabilities (or values) on X, within `TOLERANCE`."""
    want = estimator.predict_proba(X) if forest._classifier else estimator.predict(X)
    got = forest._walk(X)
    if want.shape != got.shape or not np.allclose(want, got, rtol=0.0, atol=TOLERANCE):
        diff = np.abs(want - got).max() if want.shape == got.shape else f"shape {got.shape} != {want.shape}"
        raise ValueError(f"treelite disagrees with scikit-learn (max diff {diff})")


def _convert_to(model_file: str, cache: str, trusted: Sequence[str]) -> None:
    """Convert, then prove the treelite model predicts what scikit-learn predicts before anyone may use it."""
    import skops.io
    import treelite.sklearn

    estimator = skops.io.load(model_file, trusted=list(trusted))
    if not is_forest(estimator):
        raise SystemExit(f"{model_file}: {type(estimator).__name__} is not a forest treelite converts")
    model = treelite.sklearn.import_model(estimator)
    _check(CompiledForest(model, estimator), estimator, _rows(estimator, 512, seed=0))
    model.serialize(cache)


if __name__ == "__main__":
    os.nice(10)  # live traffic on the same cores comes first
    _convert_to(sys.argv[1], sys.argv[2], sys.argv[3:])
