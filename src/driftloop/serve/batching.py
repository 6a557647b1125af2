"""Micro-batching: concurrent requests for the same model share one native predict call.

A request hands its encoded rows to `submit` and awaits a future. The first submit of an event-loop turn
schedules one flush with `call_soon`, which runs after every request already parsed in this turn has
submitted too; the flush stacks their rows, predicts once per model and splits the answer. Nothing waits on
a timer, so a lone request pays no extra latency, and under load the per-call cost of the model (tens of
microseconds for LightGBM) is paid once per turn instead of once per request.

A large batch (`offload_rows` rows or more) is predicted on a predict thread instead of the event loop: the
native predictors (compiled trees, LightGBM) release the GIL, so while one batch is in the trees the loop
goes on reading, validating and answering the next requests, and one worker uses a second core. A small
batch stays on the loop, where it costs less than the hand-off to a thread would.

Each batch's predict call is timed in CPU seconds on the thread that ran it (`time.thread_time`, so other
threads' work is not charged; served models predict on that one thread: compiled trees, LightGBM with
num_threads=1, forests with n_jobs=1) and shared out by rows: the cost per model version and arm that the
prediction log and Prometheus carry.

A batch whose predict call raises is predicted again request by request, so one request's rows that the
model cannot take (a value a scaler overflows on, say) fail that request alone, never the others it happened
to share a batch with.

Shadow scoring uses a second batcher with a small delay, so it coalesces more and yields to live traffic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from driftloop.stores.models import Prediction

#: Rows from which a batch goes to the predict thread: about 200 µs of compiled-tree work on the wine
#: model, several times the cost of the hand-off.
OFFLOAD_ROWS = 32

Pending = list[tuple[np.ndarray, asyncio.Future[Prediction]]]


class MicroBatcher:
    def __init__(self, delay_seconds: float = 0.0, offload_rows: int | None = OFFLOAD_ROWS) -> None:
        self.delay = delay_seconds
        self.offload_rows = offload_rows
        self._pending: dict[int, tuple[Any, Pending]] = {}
        self._scheduled = False
        self._executor: ThreadPoolExecutor | None = None
        self.calls = 0
        self.rows = 0

    def submit(self, model: Any, X: np.ndarray) -> asyncio.Future[Prediction]:
        """Queue rows for `model` (a LoadedModel); the future resolves to their Prediction."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Prediction] = loop.create_future()
        slot = self._pending.get(id(model))
        if slot is None:
            self._pending[id(model)] = (model, [(X, fut)])
        else:
            slot[1].append((X, fut))
        if not self._scheduled:
            self._scheduled = True
            if self.delay > 0:
                loop.call_later(self.delay, self._flush)
            else:
                loop.call_soon(self._flush)
        return fut

    def close(self) -> None:
        """Stop the predict thread once the batches handed to it are done."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        self._scheduled = False
        for model, items in pending.values():
            live = [(x, f) for x, f in items if not f.done()]
            if not live:
                continue
            parts = [x for x, _ in live]
            n = sum(len(x) for x in parts)
            self.calls += 1
            self.rows += n
            predict: Callable[[np.ndarray], Prediction] = model.bundle.predict_matrix
            if self.offload_rows is not None and n >= self.offload_rows:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="driftloop-predict")
                job = asyncio.get_running_loop().run_in_executor(
                    self._executor, predict_parts, predict, parts
                )
                job.add_done_callback(functools.partial(_deliver, live))
                continue
            _settle(live, predict_parts(predict, parts))


Outcome = Prediction | BaseException


def predict_parts(predict: Callable[[np.ndarray], Prediction], parts: list[np.ndarray]) -> list[Outcome]:
    """One predict call for all parts; if it raises, one call per part, so a failure stays with its part."""
    X = parts[0] if len(parts) == 1 else np.concatenate(parts)
    try:
        return _split(parts, _timed(predict, X))
    except Exception as exc:  # a model failure fails requests, never the loop
        if len(parts) == 1:
            return [exc]
    outcomes: list[Outcome] = []
    for x in parts:
        try:
            outcomes.append(_timed(predict, x))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def _timed(predict: Callable[[np.ndarray], Prediction], X: np.ndarray) -> Prediction:
    cpu = time.thread_time()
    pred = predict(X)
    return dataclasses.replace(pred, cpu_seconds=time.thread_time() - cpu)


def _deliver(live: Pending, job: asyncio.Future[list[Outcome]]) -> None:
    if job.cancelled():
        _settle(live, [asyncio.CancelledError()] * len(live))
    elif (exc := job.exception()) is not None:
        _settle(live, [exc] * len(live))
    else:
        _settle(live, job.result())


def _settle(live: Pending, outcomes: list[Outcome]) -> None:
    for (_, fut), outcome in zip(live, outcomes, strict=True):
        if fut.done():
            continue
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)


def _split(parts: list[np.ndarray], pred: Prediction) -> list[Outcome]:
    """Each part's own rows of the batch's prediction."""
    if len(parts) == 1:
        return [pred]
    out: list[Outcome] = []
    start = 0
    total = max(sum(len(x) for x in parts), 1)
    for x in parts:
        end = start + len(x)
        proba = pred.proba[start:end] if pred.proba is not None else None
        cpu = None if pred.cpu_seconds is None else pred.cpu_seconds * len(x) / total
        out.append(Prediction(labels=pred.labels[start:end], proba=proba, cpu_seconds=cpu))
        start = end
    return out
