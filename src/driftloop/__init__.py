"""driftloop: keep a tabular model healthy in production, with every step traceable.

The public API is small and loads lazily (importing `driftloop` imports nothing heavy):

    cfg = driftloop.load_config("driftloop.yaml")
    stores = driftloop.open_stores(cfg)
    result = driftloop.train(cfg, stores=stores)
    check = driftloop.run_check(stores, cfg)
    driftloop.Controller(cfg, stores).run_once()
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "driftloop.config",
    "load_config": "driftloop.config",
    "open_stores": "driftloop.stores",
    "Stores": "driftloop.stores",
    "train": "driftloop.train.search",
    "TrainResult": "driftloop.train.search",
    "run_check": "driftloop.monitor.check",
    "DriftDetector": "driftloop.monitor.drift",
    "Controller": "driftloop.loop.controller",
    "ModelBundle": "driftloop.stores.models",
    "UserError": "driftloop.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'driftloop' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
