"""Dynamic batching: one bounded queue of images, one inference worker.

Requests put their decoded images on the queue and await a future. A single asyncio task takes up
to ``max_batch`` images, or whatever has arrived ``wait_s`` after the oldest waiting image, stacks
them, encodes them with one model call on a dedicated thread, and scores each image with the
scoring head of the request it came from (one ``score`` per distinct head and open-set scorer in the
batch). While
the model runs, the next batch gathers on the event loop.

Capacity is reserved per request before decoding (:meth:`InferenceBatcher.reserve`), so that the
decoded tensors in memory and the work waiting for the model are both bounded by ``max_queue``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from typing_extensions import Self

from app.prometheus_metrics import Metrics
from app.services.service_errors import QueueFull, ShuttingDown
from gloss_gen.classify.open_set import OpenSetScorer
from gloss_gen.classify.scoring import ImageScores, ScoringHead

log = logging.getLogger(__name__)


@dataclass
class _Request:
    head: ScoringHead
    top_k: int
    explain: bool
    future: asyncio.Future
    results: list[ImageScores | None]
    remaining: int
    open_set: OpenSetScorer | None = None
    rerank_k: int = 0


@dataclass
class _QueuedImage:
    request: _Request
    position: int
    pixels: torch.Tensor
    enqueued_at: float


@dataclass
class BatchStats:
    batches: int = 0
    images: int = 0
    largest: int = 0

    @property
    def mean_batch_size(self) -> float:
        return self.images / self.batches if self.batches else 0.0


class Reservation:
    """Room for ``count`` images in the batcher; release it when the request is finished."""

    def __init__(self, batcher: InferenceBatcher, count: int) -> None:
        self._batcher = batcher
        self.count = count
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._batcher._release(self.count)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class InferenceBatcher:
    def __init__(
        self,
        encode_images: Callable[[torch.Tensor], torch.Tensor],
        *,
        max_batch: int,
        wait_s: float,
        max_queue: int,
        metrics: Metrics,
        executor: ThreadPoolExecutor,
    ) -> None:
        self._encode_images = encode_images
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.max_queue = max_queue
        self._metrics = metrics
        self._executor = executor
        self._queue: deque[_QueuedImage] = deque()
        self._pending = 0
        self._arrived = asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task | None = None
        self._images_per_second = 0.0
        self.stats = BatchStats()

    @property
    def pending(self) -> int:
        """Images admitted and not yet answered (decoding, queued or in the model)."""
        return self._pending

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="vgloss-inference-worker")

    def reserve(self, count: int) -> Reservation:
        """Admit a request of ``count`` images, or raise :class:`QueueFull`.

        A request larger than the whole queue is still admitted when nothing else is pending, so
        that it can never be refused forever.
        """
        if self._closing:
            raise ShuttingDown()
        if self._pending and self._pending + count > self.max_queue:
            raise QueueFull(self._pending, self.max_queue, self._retry_after_s())
        self._pending += count
        return Reservation(self, count)

    def _release(self, count: int) -> None:
        self._pending -= count
        if self._closing:
            self._arrived.set()  # the worker may be waiting for the last requests to finish

    def _retry_after_s(self) -> int:
        if self._images_per_second <= 0:
            return 1
        return max(1, min(60, math.ceil(self._pending / self._images_per_second)))

    async def classify(
        self, images: list[torch.Tensor], head: ScoringHead, top_k: int, explain: bool,
        open_set: OpenSetScorer | None = None, rerank_k: int = 0,
    ) -> list[ImageScores]:
        """Top-k predictions for each image, in order, scored against ``head`` (and with ``open_set``,
        each image's open-set verdict; with ``rerank_k``, the head's FuDD re-rank of that many)."""
        if self._worker is None:
            raise ShuttingDown()
        if not images:
            return []
        loop = asyncio.get_running_loop()
        request = _Request(
            head=head,
            top_k=top_k,
            explain=explain,
            future=loop.create_future(),
            results=[None] * len(images),
            remaining=len(images),
            open_set=open_set,
            rerank_k=rerank_k,
        )
        now = loop.time()
        for position, pixels in enumerate(images):
            self._queue.append(_QueuedImage(request, position, pixels, now))
        self._metrics.queue_depth.set(len(self._queue))
        self._arrived.set()
        return await request.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing and self._pending == 0:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            deadline = self._queue[0].enqueued_at + self.wait_s
            while len(self._queue) < self.max_batch and not self._closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take_batch()
            if batch:
                await self._process(batch)

    def _take_batch(self) -> list[_QueuedImage]:
        batch: list[_QueuedImage] = []
        while self._queue and len(batch) < self.max_batch:
            item = self._queue.popleft()
            if not item.request.future.done():  # the client went away: skip its images
                batch.append(item)
        self._metrics.queue_depth.set(len(self._queue))
        return batch

    async def _process(self, batch: list[_QueuedImage]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self._executor, self._encode_and_score, batch)
        except Exception as exc:
            log.exception("inference failed for a batch of %d images", len(batch))
            for item in batch:
                if not item.request.future.done():
                    item.request.future.set_exception(exc)
            return
        elapsed = time.perf_counter() - started
        self._record(len(batch), elapsed)
        for item, scored in zip(batch, outputs):
            request = item.request
            if request.future.done():
                continue
            request.results[item.position] = scored
            request.remaining -= 1
            if request.remaining == 0:
                request.future.set_result(request.results)

    def _record(self, size: int, elapsed: float) -> None:
        self.stats.batches += 1
        self.stats.images += size
        self.stats.largest = max(self.stats.largest, size)
        self._metrics.batch_size.observe(size)
        self._metrics.batch_seconds.observe(elapsed)
        rate = size / elapsed if elapsed > 0 else 0.0
        self._images_per_second = rate if self._images_per_second == 0 else 0.8 * self._images_per_second + 0.2 * rate

    def _encode_and_score(self, batch: list[_QueuedImage]) -> list[ImageScores]:
        """Runs on the inference thread: one model call, then one scoring call per (head, open-set scorer, re-rank depth)."""
        with torch.inference_mode():
            embeddings = self._encode_images(torch.stack([item.pixels for item in batch]))
            by_head: dict[tuple[int, int, int], list[int]] = {}
            for index, item in enumerate(batch):
                request = item.request
                by_head.setdefault((id(request.head), id(request.open_set), request.rerank_k), []).append(index)
            outputs: list[ImageScores] = [ImageScores([]) for _ in batch]
            for indices in by_head.values():
                requests = [batch[i].request for i in indices]
                top_k = max(r.top_k for r in requests)
                explain = any(r.explain for r in requests)
                rows = embeddings[torch.tensor(indices)] if len(indices) != len(batch) else embeddings
                scored = requests[0].head.score(rows, top_k=top_k, explain=explain, open_set=requests[0].open_set,
                                                rerank_k=requests[0].rerank_k)
                for index, request, image in zip(indices, requests, scored):
                    outputs[index] = ImageScores(image.predictions[: request.top_k], image.open_set)
            return outputs

    async def close(self, timeout_s: float = 60.0) -> None:
        """Stop taking requests, finish what is queued, then stop the worker."""
        self._closing = True
        self._arrived.set()
        if self._worker is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._worker), timeout_s)
        except TimeoutError:
            log.warning("inference queue not drained after %.0fs; cancelling", timeout_s)
            self._worker.cancel()
        self._worker = None
        for item in self._queue:
            if not item.request.future.done():
                item.request.future.set_exception(ShuttingDown())
        self._queue.clear()
