"""Image decoding in a bounded thread pool (PIL releases the GIL while it decodes and resizes)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import torch

from gloss_gen.imaging import ImageError, ImageLimits, Preprocessor, load_tensor

log = logging.getLogger(__name__)


def _decode_one(data: bytes, limits: ImageLimits, preprocessor: Preprocessor) -> torch.Tensor | ImageError:
    try:
        return load_tensor(data, limits, preprocessor)
    except ImageError as exc:
        return exc
    except Exception:  # a decoder bug must never become a 5xx for what is still a bad upload
        log.warning("unexpected error while decoding an upload", exc_info=True)
        return ImageError("invalid_image", "The file could not be decoded as an image.")


class ImageDecoder:
    def __init__(self, threads: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vgloss-decode")

    async def decode(
        self, blobs: list[bytes], limits: ImageLimits, preprocessor: Preprocessor
    ) -> list[torch.Tensor | ImageError]:
        """Each blob as a (3, H, W) tensor, or the :class:`ImageError` that rejected it."""
        loop = asyncio.get_running_loop()
        return list(
            await asyncio.gather(
                *(loop.run_in_executor(self._executor, _decode_one, blob, limits, preprocessor) for blob in blobs)
            )
        )

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
