"""The micro-batcher: concurrent requests share one predict call; big batches predict off the event loop."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from driftloop.serve.batching import MicroBatcher
from driftloop.stores.models import Prediction


class RecordingModel:
    """A stand-in for LoadedModel: predicts row sums as labels and records each call's thread and size."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail = fail
        self.bundle = SimpleNamespace(predict_matrix=self.predict_matrix)

    def predict_matrix(self, X: np.ndarray) -> Prediction:
        self.calls.append((threading.current_thread().name, len(X)))
        if self.fail:
            raise ValueError("model bug")
        proba = np.column_stack([X[:, 0], 1.0 - X[:, 0]])
        return Prediction(labels=X.sum(axis=1), proba=proba)


async def _submit_all(batcher: MicroBatcher, model: RecordingModel, sizes: list[int]) -> list[Prediction]:
    matrices = [np.full((n, 2), float(i)) for i, n in enumerate(sizes)]
    try:
        return await asyncio.gather(*[batcher.submit(model, X) for X in matrices])
    finally:
        batcher.close()


@pytest.mark.parametrize("sizes", [[1, 2, 3], [40, 1, 25]])
def test_concurrent_requests_share_one_call_and_get_their_own_rows(sizes: list[int]) -> None:
    model = RecordingModel()
    preds = asyncio.run(_submit_all(MicroBatcher(offload_rows=32), model, sizes))
    assert [n for _, n in model.calls] == [sum(sizes)]
    for i, (n, pred) in enumerate(zip(sizes, preds, strict=True)):
        assert pred.labels.tolist() == [2.0 * i] * n
        assert pred.proba is not None and pred.proba.shape == (n, 2)


def test_small_batches_stay_on_the_loop_and_big_ones_go_to_the_predict_thread() -> None:
    model = RecordingModel()
    batcher = MicroBatcher(offload_rows=32)

    async def scenario() -> None:
        await batcher.submit(model, np.zeros((4, 2)))
        await batcher.submit(model, np.zeros((64, 2)))
        batcher.close()

    asyncio.run(scenario())
    loop_thread = threading.current_thread().name
    assert model.calls[0] == (loop_thread, 4)
    assert model.calls[1][0].startswith("driftloop-predict") and model.calls[1][1] == 64


@pytest.mark.parametrize("rows", [3, 50])
def test_a_failing_model_fails_its_requests_and_not_the_batcher(rows: int) -> None:
    batcher = MicroBatcher(offload_rows=32)

    async def scenario() -> None:
        with pytest.raises(ValueError, match="model bug"):
            await batcher.submit(RecordingModel(fail=True), np.zeros((rows, 2)))
        pred = await batcher.submit(RecordingModel(), np.ones((rows, 2)))
        assert pred.labels.tolist() == [2.0] * rows
        batcher.close()

    asyncio.run(scenario())


class PoisonableModel(RecordingModel):
    """Raises on any batch that holds a row whose first value is negative, like a scaler overflowing."""

    def predict_matrix(self, X: np.ndarray) -> Prediction:
        self.calls.append((threading.current_thread().name, len(X)))
        if (X[:, 0] < 0).any():
            raise ValueError("Input X contains infinity")
        return Prediction(labels=X.sum(axis=1), proba=None)


@pytest.mark.parametrize("rows", [1, 20])  # 3 x 20 rows go to the predict thread
def test_one_bad_request_fails_alone_and_its_batch_mates_get_answers(rows: int) -> None:
    model = PoisonableModel()
    batcher = MicroBatcher(offload_rows=32)
    matrices = [np.full((rows, 2), 1.0), np.full((rows, 2), -1.0), np.full((rows, 2), 2.0)]

    async def scenario() -> list[object]:
        try:
            return await asyncio.gather(*[batcher.submit(model, X) for X in matrices], return_exceptions=True)
        finally:
            batcher.close()

    good, bad, other = asyncio.run(scenario())
    assert isinstance(bad, ValueError)
    assert isinstance(good, Prediction) and good.labels.tolist() == [2.0] * rows
    assert isinstance(other, Prediction) and other.labels.tolist() == [4.0] * rows
    # One shared call that failed, then one call per request.
    assert [n for _, n in model.calls] == [3 * rows, rows, rows, rows]


class BusyModel(RecordingModel):
    """Burns about `ms_per_row` of CPU on the calling thread per row: a model whose cost is known."""

    def __init__(self, ms_per_row: float) -> None:
        super().__init__()
        self.ms_per_row = ms_per_row

    def predict_matrix(self, X: np.ndarray) -> Prediction:
        import time

        stop = time.thread_time() + self.ms_per_row * len(X) / 1000.0
        while time.thread_time() < stop:
            pass
        return super().predict_matrix(X)


@pytest.mark.parametrize("offload", [None, 1])
def test_each_request_is_charged_its_rows_share_of_the_batch_cpu(offload: int | None) -> None:
    model = BusyModel(ms_per_row=4.0)
    preds = asyncio.run(_submit_all(MicroBatcher(offload_rows=offload), model, [1, 3]))
    assert [n for _, n in model.calls] == [4]  # one call, on the loop or on the predict thread
    one, three = (p.cpu_seconds for p in preds)
    assert one is not None and three is not None
    assert three == pytest.approx(3 * one)
    # The batch burnt at least 16 ms on the thread that ran it; a busy loop overshoots by little.
    assert 0.016 <= one + three < 0.1
