"""LightGBM models compiled to native code with lleaves: the same predictions, about 3x less CPU per row
(the wine benchmark model, 600 trees: 6.6 µs a row against 18.6 µs for LightGBM's booster).

A LightGBM booster walks its trees through a generic interpreter; lleaves turns each tree into branches of
machine code with LLVM. Compiling takes seconds, so a worker first serves the model with the native booster
(ready at once) and swaps in the compiled one when it is there. The compile runs in a child process (no
GIL contention with live traffic, and a crash in LLVM cannot take the server down), once per model version
and machine: the object file is cached in the model folder, under a file lock that other workers wait on.
The child checks the binary against LightGBM on random rows (with missing values) before it is cached, so
a cached binary is a verified one, and a restarted worker loads it without importing LightGBM at all.

scikit-learn forests follow the same design through treelite (`driftloop.compiled.forest`, sharing
`run_child`), and `driftloop.compiled.compile_bundle` picks the compiler for a model or each ensemble member.

Run as `python -m driftloop.compiled.booster MODEL_FILE CACHE_FILE` to compile one model.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CompiledBooster",
    "available",
    "build_cached",
    "cache_path",
    "cancel_running",
    "compile_model_file",
    "importable",
    "load_cached",
    "run_child",
]

log = logging.getLogger(__name__)
COMPILE_TIMEOUT_SECONDS = 600


class CompiledBooster:
    """The part of `lightgbm.Booster` that `ModelBundle.predict_matrix` uses: `predict(X)`."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def predict(self, X: np.ndarray, num_threads: int = 1) -> np.ndarray:
        return self._model.predict(np.ascontiguousarray(X, dtype=np.float64), n_jobs=num_threads)


def importable(module: str) -> bool:
    """Whether an optional compiler's package imports here (a missing or broken one means: serve natively)."""
    try:
        __import__(module)
    except Exception:
        return False
    return True


def available() -> bool:
    return importable("lleaves")


def cache_path(model_file: Path) -> Path:
    """Object file for this model, lleaves/LLVM version and CPU (a binary is only valid for all three)."""
    from importlib.metadata import version

    import llvmlite.binding as llvm

    cpu = llvm.get_host_cpu_name() or "generic"
    tag = f"lleaves{version('lleaves')}-llvmlite{version('llvmlite')}-{cpu}"
    return model_file.parent / f".{model_file.stem}.{tag}.o"


def compile_model_file(model_file: Path) -> CompiledBooster:
    """Compile (or load the cached compile of) a LightGBM model file. Blocks; run it off the event loop."""
    import lleaves

    target = cache_path(model_file)
    build_cached(target, lambda tmp: run_child([__name__, str(model_file), str(tmp)]), "lleaves compile")
    model = lleaves.Model(model_file=str(model_file))
    model.compile(cache=str(target))
    return CompiledBooster(model)


def build_cached(target: Path, build: Callable[[Path], tuple[int, str]], what: str) -> None:
    """Make `target` once per machine: `build(tmp)` (a child process: exit code, stderr) writes a temp file,
    renamed into place.

    Under a file lock, so workers starting together build it once and the others wait and reuse it; a failed
    or killed child leaves no file, so the next attempt starts clean.
    """
    if target.exists():
        return
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be building the same file right now
        if target.exists():
            return
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        try:
            returncode, stderr = build(tmp)
            if returncode != 0 or not tmp.exists():
                raise RuntimeError(f"{what} failed ({returncode}): {stderr[-500:]}")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


_running: set[subprocess.Popen] = set()


def run_child(args: list[str]) -> tuple[int, str]:
    """Run `python -m ARGS` (a compile) and wait: (exit code, stderr); killed after the timeout or on stop."""
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _running.add(proc)
    try:
        _, stderr = proc.communicate(timeout=COMPILE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
    finally:
        _running.discard(proc)
    return proc.returncode, stderr or ""


def cancel_running() -> None:
    """Stop compiles in progress (the worker is shutting down; the next start compiles again)."""
    for proc in list(_running):
        proc.kill()


def load_cached(model_file: Path) -> CompiledBooster | None:
    """The compiled model if this machine compiled it before (no LightGBM import: faster start-up)."""
    if not available():
        return None
    target = cache_path(model_file)
    if not target.exists():
        return None
    import lleaves

    model = lleaves.Model(model_file=str(model_file))
    model.compile(cache=str(target))
    return CompiledBooster(model)


def _compile_to(model_file: str, cache: str) -> None:
    """Compile, then prove the binary predicts what LightGBM predicts before anyone may use it."""
    import lightgbm
    import lleaves

    model = lleaves.Model(model_file=model_file)
    model.compile(cache=cache)
    booster = lightgbm.Booster(model_file=model_file)
    rng = np.random.default_rng(0)
    X = rng.normal(0.0, 10.0, size=(512, booster.num_feature()))
    X[::7, ::2] = np.nan
    want = np.asarray(booster.predict(X, num_threads=1))
    got = np.asarray(model.predict(X, n_jobs=1))
    if want.shape != got.shape or not np.allclose(want, got, rtol=1e-9, atol=1e-9):
        Path(cache).unlink(missing_ok=True)
        raise SystemExit(
            f"compiled {model_file} disagrees with LightGBM (max diff {np.abs(want - got).max()})"
        )


if __name__ == "__main__":
    os.nice(10)  # live traffic on the same cores comes first
    _compile_to(sys.argv[1], sys.argv[2])
