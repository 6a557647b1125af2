"""Compiled trees: a loaded bundle in, the same bundle with compiled trees out (or None).

The server swaps compiled trees in once they are ready (`serve.pool`), and batch scoring predicts with them
(`scale.scoring`); both need the same compilers, so they live here, below both, beside the model format.

LightGBM boosters go to lleaves (`compiled.booster`), scikit-learn random forests and extra trees to treelite
(`compiled.forest`), an ensemble member by member (members neither compiles, such as a linear model, stay as
they are). Each compiled model was checked against the original before it is returned; any failure raises,
and the caller keeps serving the original.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from driftloop.stores.models import ENSEMBLE_FILE, Ensemble, ModelBundle

__all__ = ["compile_bundle", "served_form"]

log = logging.getLogger(__name__)


def compile_bundle(bundle: ModelBundle, folder: Path) -> ModelBundle | None:
    """`bundle` (loaded from the model folder `folder`) with compiled trees; None if nothing compiles."""
    flavors = (yaml.safe_load((folder / "MLmodel").read_text()).get("flavors")) or {}
    estimator: Any = None
    if bundle.flavor == "lightgbm" and "lightgbm" in flavors:
        estimator = _booster(folder / flavors["lightgbm"].get("data", "model.lgb"))
    elif bundle.flavor == "sklearn" and "sklearn" in flavors:
        conf = flavors["sklearn"]
        estimator = _forest(
            folder / conf.get("pickled_model", "model.skops"),
            conf.get("skops_trusted_types") or [],
            bundle.estimator,
        )
    elif bundle.flavor == "ensemble" and (flavors.get("python_function") or {}).get("data"):
        estimator = _ensemble(bundle.estimator, folder / flavors["python_function"]["data"])
    if estimator is None:
        return None
    return ModelBundle(spec=bundle.spec, estimator=estimator, flavor=bundle.flavor)


def served_form(bundle: ModelBundle) -> ModelBundle:
    """`bundle` as a server worker answers once its conversions are done, to time it before it serves.

    scikit-learn forests, alone or as ensemble members, go to GTIL here in this process (no cache, no child:
    a conversion takes well under a second). LightGBM stays on its booster: lleaves needs seconds to minutes
    of LLVM, and the booster costs about three times what its compiled trees cost, so its figure is an upper
    bound. Without treelite, or when a conversion fails its check, a forest stays as it is, as it would in
    the worker, which then keeps serving the original."""
    if bundle.flavor == "sklearn":
        fast = _forest_in_process(bundle.estimator)
        return bundle if fast is None else replace(bundle, estimator=fast)
    if bundle.flavor == "ensemble":
        ensemble: Ensemble = bundle.estimator
        members = [
            m if m.flavor != "sklearn" or (fast := _forest_in_process(m.estimator)) is None
            else replace(m, estimator=fast)
            for m in ensemble.members
        ]  # fmt: skip
        return replace(bundle, estimator=Ensemble(members, ensemble.task, ensemble.n_classes))
    return bundle


def _forest_in_process(estimator: Any) -> Any:
    from driftloop.compiled import forest

    if not forest.is_forest(estimator) or not forest.available():
        return None
    try:
        return forest.convert(estimator)
    except Exception as exc:  # the worker would keep the original: time that
        log.warning("treelite conversion failed, timing the scikit-learn forest: %s", exc)
        return None


def _booster(model_file: Path) -> Any:
    from driftloop.compiled import booster

    return booster.compile_model_file(model_file) if booster.available() else None


def _forest(model_file: Path, trusted: list[str], estimator: Any) -> Any:
    from driftloop.compiled import forest

    if not forest.is_forest(estimator) or not forest.available():
        return None
    return forest.compile_forest_file(model_file, trusted, estimator)


def _ensemble(ensemble: Ensemble, folder: Path) -> Ensemble | None:
    records = json.loads((folder / ENSEMBLE_FILE).read_text())["members"]
    members, compiled_any = [], False
    for member, record in zip(ensemble.members, records, strict=True):
        path = folder / record["file"]
        if member.flavor == "lightgbm":
            fast = _booster(path)
        else:
            fast = _forest(path, record.get("skops_trusted_types") or [], member.estimator)
        members.append(member if fast is None else replace(member, estimator=fast))
        compiled_any = compiled_any or fast is not None
    return Ensemble(members, ensemble.task, ensemble.n_classes) if compiled_any else None
