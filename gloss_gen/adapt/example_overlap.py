"""Examples that are evaluation images, found by content: the file's bytes or its decoded pixels.

A few-shot score means nothing when the cache holds the very images it is scored on, and a
path check misses a copy, a symlink or a CSV that lists evaluation files. Every example and every
evaluation image gets the sha256 of its bytes (files) and, where an example of the same size
exists, the sha256 of its decoded RGB pixels (so a PNG re-encode of the same pixels matches too;
binary sets such as CIFAR's are pixels to begin with). Only evaluation images whose size, read
from the header, matches an example's are decoded, so the check costs one read of each file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from gloss_gen.evaluation.datasets import ImageFiles, LabelledImages, PixelArrays

SHOWN = 5


@dataclass
class Overlap:
    """Example rows whose content equals an evaluation image, with the first pairs' names."""

    rows: list[int]
    pairs: list[tuple[str, str]]  # (example, evaluation image), the first few

    def __bool__(self) -> bool:
        return bool(self.rows)

    def describe(self) -> str:
        shown = ", ".join(f"{ex} = {ev}" for ex, ev in self.pairs[:SHOWN])
        more = f" and {len(self.rows) - SHOWN} more" if len(self.rows) > SHOWN else ""
        return (f"{len(self.rows)} example images are evaluation images (same bytes or decoded pixels): "
                f"{shown}{more}")


def _pixels_digest(pixels: np.ndarray) -> str:
    digest = hashlib.sha256(f"{pixels.shape}".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def _file_bytes_digest(dataset: ImageFiles, index: int) -> str | None:
    try:
        return hashlib.sha256(dataset.paths[index].read_bytes()).hexdigest()
    except OSError:
        return None  # unreadable: the embedding step names it


def _size(dataset: LabelledImages, index: int) -> tuple[int, int] | None:
    if isinstance(dataset, PixelArrays):
        height, width = dataset.pixels(index).shape[:2]
        return width, height
    from PIL import Image

    try:
        with Image.open(dataset.paths[index]) as image:  # the header only
            return image.size
    except Exception:  # noqa: BLE001 - any undecodable file is simply not compared by pixels
        return None


def _decoded_digest(dataset: LabelledImages, index: int) -> str | None:
    if isinstance(dataset, PixelArrays):
        return _pixels_digest(dataset.pixels(index))
    from PIL import Image

    try:
        with Image.open(dataset.paths[index]) as image:
            return _pixels_digest(np.asarray(image.convert("RGB")))
    except Exception:  # noqa: BLE001 - as _size
        return None


def _byte_digests(dataset: LabelledImages) -> list[str | None]:
    if isinstance(dataset, ImageFiles):
        return [_file_bytes_digest(dataset, i) for i in range(len(dataset))]
    return [None] * len(dataset)


def find_overlap(examples: LabelledImages, evaluation: LabelledImages) -> Overlap:
    """The examples whose bytes or decoded pixels equal an evaluation image's."""
    example_bytes = _byte_digests(examples)
    example_sizes = [_size(examples, i) for i in range(len(examples))]
    example_pixels = [_decoded_digest(examples, i) for i in range(len(examples))]
    by_bytes: dict[str, list[int]] = {}
    by_pixels: dict[str, list[int]] = {}
    for row, (raw, decoded) in enumerate(zip(example_bytes, example_pixels)):
        if raw is not None:
            by_bytes.setdefault(raw, []).append(row)
        if decoded is not None:
            by_pixels.setdefault(decoded, []).append(row)
    sizes = {s for s in example_sizes if s is not None}
    matched: dict[int, str] = {}
    for index, raw in enumerate(_byte_digests(evaluation)):
        rows = by_bytes.get(raw, []) if raw is not None else []
        if not rows and _size(evaluation, index) in sizes:
            rows = by_pixels.get(_decoded_digest(evaluation, index) or "", [])
        for row in rows:
            matched.setdefault(row, evaluation.item_name(index))
    rows = sorted(matched)
    return Overlap(rows, [(examples.item_name(r), matched[r]) for r in rows[:SHOWN]])
