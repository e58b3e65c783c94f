"""Image embeddings of a whole labelled collection: decoded in a thread pool beside the model,
encoded in batches, cached in the store.

``vgloss eval``, the few-shot examples and anything else that embeds a folder of images share
this one path: :func:`gloss_gen.imaging.load_tensor` (the server's decoder, limits and
preprocessing) and :meth:`ClipModel.encode_images`. The cache key is (model, JPEG draft on/off,
the collection's fingerprint), so re-runs encode no image twice.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import torch

from gloss_gen.core.errors import EvalError
from gloss_gen.data.descriptions import utc_now
from gloss_gen.data.store import Store
from gloss_gen.imaging import ImageError, Preprocessor
from gloss_gen.model.clip_models import ClipModel
from gloss_gen.model.model_source import ModelSource

T = TypeVar("T")

EMBEDDINGS_KIND = "image-embeddings"
EMBEDDINGS_FORMAT = 1
DEFAULT_BATCH_SIZE = 64


class ImageCollection(Protocol):
    """What embedding needs of a labelled collection (:class:`gloss_gen.evaluation.datasets.LabelledImages`)."""

    layout: str
    source: Path

    def __len__(self) -> int: ...

    def fingerprint(self) -> str: ...

    def load_tensor(self, index: int, preprocessor: Preprocessor, limits) -> torch.Tensor: ...


@dataclass
class ImageEmbeddings:
    vectors: np.ndarray  # (N, D) float32 unit rows; zero rows for unreadable images
    unreadable: dict[int, str]  # image index -> reason
    encoded: int  # images run through the model by this call; 0 when read from the cache
    cache_key: str


def embeddings_cache_key(model: str, dataset: ImageCollection, jpeg_draft: bool) -> str:
    payload = json.dumps([EMBEDDINGS_FORMAT, model, bool(jpeg_draft), dataset.fingerprint()])
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def load_ahead(
    load: Callable[[int], T], count: int, workers: int, window: int
) -> Iterator[tuple[int, T]]:
    """``(index, load(index))`` in index order, with up to ``window`` loads running ahead."""
    if workers <= 0:
        for index in range(count):
            yield index, load(index)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vgloss-eval-decode")
    pending: deque[tuple[int, Future[T]]] = deque()
    next_index = 0
    try:
        while next_index < count or pending:
            while next_index < count and len(pending) < window:
                pending.append((next_index, pool.submit(load, next_index)))
                next_index += 1
            index, future = pending.popleft()
            yield index, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def encode_dataset(
    dataset: ImageCollection,
    model: ClipModel,
    limits,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 2,
    progress: bool = False,
    preprocessor=None,
    normalize: bool = True,
) -> tuple[np.ndarray, dict[int, str]]:
    """Embed every image of ``dataset``: decoding in ``workers`` threads, encoding in batches.

    ``preprocessor`` replaces the model's validation transform and ``normalize=False`` keeps the
    raw image features (few-shot augmentation uses both).
    """
    from tqdm.auto import tqdm

    preprocessor = preprocessor or Preprocessor.from_open_clip(model.model)
    height, width = preprocessor.image_size
    count = len(dataset)
    batch = torch.empty((batch_size, 3, height, width), dtype=torch.float32)
    rows: list[int] = []
    unreadable: dict[int, str] = {}
    vectors: np.ndarray | None = None

    def load(index: int) -> torch.Tensor | str:
        """The image's tensor, or why it cannot be read (other errors are bugs and propagate)."""
        try:
            return dataset.load_tensor(index, preprocessor, limits)
        except ImageError as exc:
            return f"{exc.code}: {exc.message}"
        except OSError as exc:
            return f"unreadable: {exc}"

    with tqdm(total=count, desc="encoding images", unit="img", disable=not progress) as bar:

        def encode_rows() -> None:
            nonlocal vectors
            embeddings = model.encode_images(batch[: len(rows)], normalize=normalize).numpy()
            if vectors is None:
                vectors = np.zeros((count, embeddings.shape[1]), dtype=np.float32)
            vectors[rows] = embeddings
            bar.update(len(rows))
            rows.clear()

        for index, outcome in load_ahead(load, count, workers, window=2 * batch_size):
            if isinstance(outcome, str):
                unreadable[index] = outcome
                bar.update(1)
                continue
            batch[len(rows)].copy_(outcome)
            rows.append(index)
            if len(rows) == batch_size:
                encode_rows()
        if rows:
            encode_rows()
    if vectors is None:
        raise EvalError(f"none of the {count} images could be read")
    return vectors, unreadable


def embed_images(
    dataset: ImageCollection,
    models: ModelSource,
    store: Store | None,
    limits,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 2,
    progress: bool = False,
) -> ImageEmbeddings:
    """Image embeddings from the store, or encoded now and written to it."""
    key = embeddings_cache_key(models.cache_tag, dataset, limits.jpeg_draft)
    cached = store.get_array(EMBEDDINGS_KIND, key) if store is not None else None
    if cached is not None:
        vectors, meta = cached
        if vectors.ndim == 2 and vectors.shape[0] == len(dataset):
            unreadable = {int(i): reason for i, reason in meta.get("unreadable", {}).items()}
            return ImageEmbeddings(vectors.astype(np.float32, copy=False), unreadable, 0, key)
    vectors, unreadable = encode_dataset(
        dataset, models.get(), limits, batch_size=batch_size, workers=workers, progress=progress
    )
    if store is not None:
        meta = {
            "model_id": models.id,
            "layout": dataset.layout,
            "source": str(dataset.source),
            "num_images": len(dataset),
            "jpeg_draft": bool(limits.jpeg_draft),
            "unreadable": {str(i): reason for i, reason in unreadable.items()},
            "created_at": utc_now(),
        }
        store.put_array(EMBEDDINGS_KIND, key, vectors, meta)
    return ImageEmbeddings(vectors, unreadable, len(dataset) - len(unreadable), key)
