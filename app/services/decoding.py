"""Image decoding in a bounded thread pool (PIL releases the GIL while it decodes and resizes).

The pool is shared fairly: one request decodes at most ``per_request`` images at once, and a
request's next image queues behind the images other requests are already waiting to decode, so a
request full of slow images delays another by at most a few decodes, not by all of its own.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import torch

from app.error_envelope import detached
from gloss_gen.imaging import ImageError, ImageLimits, Preprocessor, load_tensor

log = logging.getLogger(__name__)


def _decode_one(data: bytes, limits: ImageLimits, preprocessor: Preprocessor) -> torch.Tensor | ImageError:
    try:
        return load_tensor(data, limits, preprocessor)
    except ImageError as exc:
        return detached(exc)  # not the frames that decoded it (and their pixels)
    except Exception:  # a decoder bug must never become a 5xx for what is still a bad upload
        log.warning("unexpected error while decoding an upload", exc_info=True)
        return ImageError("invalid_image", "The file could not be decoded as an image.")


def default_share(threads: int) -> int:
    """Decode threads one request may use at once: half the pool, at least one."""
    return max(1, threads // 2)


class ImageDecoder:
    def __init__(self, threads: int, per_request: int | None = None) -> None:
        self.threads = threads
        self.per_request = min(threads, per_request or default_share(threads))
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vgloss-decode")
        self._free_threads: asyncio.Semaphore | None = None  # made on first use, in the server's loop

    async def decode(
        self, blobs: list[bytes], limits: ImageLimits, preprocessor: Preprocessor
    ) -> list[torch.Tensor | ImageError]:
        """Each blob as a (3, H, W) tensor, or the :class:`ImageError` that rejected it."""
        loop = asyncio.get_running_loop()
        if self._free_threads is None:
            self._free_threads = asyncio.Semaphore(self.threads)
        free_threads = self._free_threads
        this_request = asyncio.Semaphore(self.per_request)

        async def decode_one(blob: bytes) -> torch.Tensor | ImageError:
            # FIFO semaphores: waiting for a thread only after this request has a slot of its own
            # keeps each request's waiters in the shared queue to `per_request`
            async with this_request, free_threads:
                return await loop.run_in_executor(self._executor, _decode_one, blob, limits, preprocessor)

        return list(await asyncio.gather(*(decode_one(blob) for blob in blobs)))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
