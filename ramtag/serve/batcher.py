"""Concurrent requests gathered into model batches: one batch at a time through the model.

Each image a request brings is decoded on a thread pool (off the event loop), then handed to the
``Batcher`` as a pixel tensor with a future. The batcher's task takes the first waiting image, then
keeps taking more until it has ``batch_size`` of them or ``max_wait`` has passed since the first,
and runs that batch through the model on its own single thread: the model never sees two batches at
once, and the event loop stays free to accept and decode while it runs.

Admission is bounded: ``admit`` refuses a request whose images would take more than ``capacity``
places (waiting to be decoded, decoded and waiting for the model, or in the batch in hand), so a
burst gets a quick 503 instead of a queue that grows without bound.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .metrics import Metrics


class Full(Exception):
    """No room for the images of this request now: answer 503 with Retry-After."""


@dataclass
class _Waiting:
    pixels: object  # torch.Tensor (3, S, S)
    future: asyncio.Future


class Batcher:
    """Gathers pixel tensors into batches of at most ``batch_size`` for ``score`` (``(B, 3, S, S)``
    tensor -> ``(B, T)`` scores), waiting at most ``max_wait`` seconds for a batch to fill."""

    def __init__(
        self, score: Callable[[object], np.ndarray], *, batch_size: int, max_wait: float, capacity: int,
        metrics: Metrics,
    ) -> None:
        self.score = score
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.capacity = capacity
        self.metrics = metrics
        self.held = 0  # images admitted and not answered yet
        self.failed: str | None = None  # why the batching task stopped, if it did
        self._lock = threading.Lock()
        self._queue: asyncio.Queue[_Waiting] | None = None
        self._task: asyncio.Task | None = None
        self._model = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ramtag-model")

    # -- admission -------------------------------------------------------------------------------

    def admit(self, count: int) -> None:
        """Take ``count`` places, or raise ``Full``; ``release`` gives them back."""
        with self._lock:
            if self.held and self.held + count > self.capacity:
                raise Full
            self.held += count
            self.metrics.queue_depth = self.held

    def release(self, count: int) -> None:
        with self._lock:
            self.held -= count
            self.metrics.queue_depth = self.held

    # -- batching --------------------------------------------------------------------------------

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ramtag-batcher")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failed = f"the batching task stopped ({type(task.exception()).__name__}: {task.exception()})"

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._model.shutdown(wait=True)

    async def scores(self, pixels: object) -> np.ndarray:
        """The scores of one preprocessed image, from whichever batch it joins."""
        assert self._queue is not None, "start() the batcher first"
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Waiting(pixels, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.batch_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            batch = [item for item in batch if not item.future.done()]  # a request that gave up
            if not batch:
                continue
            self.metrics.batch(len(batch))
            try:
                scores = await loop.run_in_executor(self._model, self._score, [item.pixels for item in batch])
            except Exception as error:  # noqa: BLE001 - every waiting request must get an answer
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            if len(scores) != len(batch):
                scores = [None] * len(batch)  # never leave a request waiting for a row that is not there
            for item, row in zip(batch, scores):
                if item.future.done():
                    continue
                if row is None:
                    item.future.set_exception(RuntimeError("the model gave no scores for this image"))
                else:
                    item.future.set_result(row)

    def _score(self, pixels: list[object]) -> np.ndarray:
        import torch

        return self.score(torch.stack(pixels))  # type: ignore[arg-type]
