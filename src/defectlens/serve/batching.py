"""Micro-batching: requests arriving within a few milliseconds share one model call.

A bounded queue feeds one worker thread; the worker takes the first waiting image, then whatever else
arrives within `max_wait_ms`, up to `max_batch`, and runs the model once. A full queue refuses new work
at once (the service answers 503 with Retry-After) instead of piling up latency.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from defectlens.errors import ConfigError, DefectlensError
from defectlens.post.prediction import Prediction

logger = logging.getLogger(__name__)


class ServiceBusy(DefectlensError):
    """The request queue is full: try again shortly."""


@dataclass
class _Job:
    image: np.ndarray
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class MicroBatcher:
    """Runs `predict` on batches of images gathered from concurrent requests.

    Args:
        predict: scores a list of RGB uint8 images, returning one `Prediction` over all of them.
        max_batch: most images per model call (1 turns micro-batching off).
        max_wait_ms: how long the first image of a batch waits for company.
        max_queue: most images waiting; beyond it `score` raises `ServiceBusy`.
    """

    def __init__(
        self,
        predict: Callable[[list[np.ndarray]], Prediction],
        max_batch: int = 8,
        max_wait_ms: float = 5.0,
        max_queue: int = 64,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ConfigError(
                f"max_batch and max_queue must be >= 1 and max_wait_ms >= 0, got {max_batch}, {max_queue}, "
                f"{max_wait_ms}"
            )
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self._queue: queue.Queue[_Job] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="defectlens-batcher", daemon=True)
        self.batches_run = 0

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        self._worker.join(timeout=10)

    async def score(self, images: Sequence[np.ndarray]) -> list[tuple[Prediction, int]]:
        """Queue the images and wait for them: (prediction of their batch, index in it) per image.

        Raises:
            ServiceBusy: the queue cannot take all of them now.
        """
        if self._queue.qsize() + len(images) > self.max_queue:
            raise ServiceBusy(f"{self._queue.qsize()} images are waiting (limit {self.max_queue})")
        loop = asyncio.get_running_loop()
        jobs = [_Job(image, loop.create_future(), loop) for image in images]
        try:
            for job in jobs:
                self._queue.put_nowait(job)
        except queue.Full as error:  # another request took the room between the check and the put
            for job in jobs:
                job.future.cancel()
            raise ServiceBusy(f"the queue is full (limit {self.max_queue})") from error
        return list(await asyncio.gather(*(job.future for job in jobs)))

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.perf_counter() + self.max_wait
            while len(batch) < self.max_batch:
                remaining = deadline - time.perf_counter()
                try:
                    batch.append(
                        self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
            batch = [job for job in batch if not job.future.cancelled()]
            if batch:
                self._run(batch)

    def _run(self, batch: list[_Job]) -> None:
        try:
            prediction = self.predict([job.image for job in batch])
            self.batches_run += 1
        except Exception as error:  # hand any model failure to the waiting requests, keep serving
            logger.exception("model call failed on a batch of %d", len(batch))
            for job in batch:
                job.loop.call_soon_threadsafe(_fail, job.future, error)
            return
        for index, job in enumerate(batch):
            job.loop.call_soon_threadsafe(_resolve, job.future, (prediction, index))


def _resolve(future: asyncio.Future, value: object) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
