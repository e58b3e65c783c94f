"""Example images uploaded through the API, kept as bytes in the store so any replica (and any
later model) can rebuild an adapter from them.

Layout: ``{ns}:example-image:{sha256}`` holds the encoded image as uploaded; the class set's index
``{ns}:examples:{class_set}`` (JSON) lists ``{sha256, filename, class_id, bytes}`` entries. Image
bytes are written first and the index last, in one ``set``, so a failed upload leaves the index as
it was. Labels are matched as eval matches them; an unknown label refuses the whole upload.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gloss_gen.adapt import AdaptError
from gloss_gen.adapt.examples import ExampleSource
from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.store import StoreError
from gloss_gen.evaluation.datasets import DatasetError, LabelledImages, resolve_labels
from gloss_gen.imaging import ImageError, decode_image, load_tensor

IMAGE_KIND = "example-image"
INDEX_KIND = "examples"
READ_RETRY_S = 60.0
"""How long a fit waits for the store to come back when an example image cannot be read (a Redis
outage mid-fit must not end a ClipFit run); then the store's error is raised."""


@dataclass
class UploadResult:
    added: int
    duplicates: int
    rejected: list[dict] = field(default_factory=list)  # {filename, code, message}
    counts: dict[str, int] = field(default_factory=dict)  # class id -> examples now stored


def example_index(store, class_set_name: str) -> list[dict]:
    raw = store.get_bytes(INDEX_KIND, class_set_name)
    return json.loads(raw).get("items", []) if raw is not None else []


def example_counts(store, class_set: ClassSet) -> dict[str, int]:
    counts = Counter(item["class_id"] for item in example_index(store, class_set.name))
    return {cid: counts.get(cid, 0) for cid in class_set.ids}


def add_examples(
    store,
    class_set: ClassSet,
    uploads: Sequence[tuple[str | None, bytes, str]],
    limits,
    max_count: int,
    max_bytes: int,
) -> UploadResult:
    """Store ``(filename, bytes, label)`` uploads as examples of ``class_set``.

    Raises :class:`AdaptError` (and writes nothing) for an unknown label or a total over the
    limits; images that cannot be decoded are rejected one by one and named in the result.
    """

    if not uploads:
        raise AdaptError("no images in the upload")
    try:
        indices = resolve_labels([label for _, _, label in uploads], class_set)
    except DatasetError as exc:
        raise AdaptError(str(exc)) from None
    items = example_index(store, class_set.name)
    known = {item["sha256"] for item in items}
    fresh, rejected, duplicates = [], [], 0
    for (filename, data, _), index in zip(uploads, indices):
        try:
            decode_image(data, limits)
        except ImageError as exc:
            rejected.append({"filename": filename, "code": exc.code, "message": exc.message})
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in known:
            duplicates += 1
            continue
        known.add(digest)
        fresh.append((digest, filename, class_set.ids[int(index)], data))
    _check_limits(class_set.name, items, fresh, max_count, max_bytes)  # refuse early, before any write
    for digest, _, _, data in fresh:
        store.put_bytes(IMAGE_KIND, digest, data)  # by content: a concurrent upload of the same image agrees
    added: list[tuple] = []

    def append(raw: bytes | None) -> bytes | None:
        # the index as it is now, with what concurrent uploads added since it was read above
        current = json.loads(raw).get("items", []) if raw is not None else []
        stored = {item["sha256"] for item in current}
        added[:] = [entry for entry in fresh if entry[0] not in stored]
        if not added:
            return None
        _check_limits(class_set.name, current, added, max_count, max_bytes)
        items = current + [{"sha256": d, "filename": f, "class_id": c, "bytes": len(data)}
                           for d, f, c, data in added]
        return json.dumps({"class_set": class_set.name, "items": items}, ensure_ascii=False).encode()

    if fresh:
        store.update_bytes(INDEX_KIND, class_set.name, append)
    duplicates += len(fresh) - len(added)
    fresh = added
    return UploadResult(len(fresh), duplicates, rejected, example_counts(store, class_set))


def _check_limits(name: str, items: list[dict], fresh: list[tuple], max_count: int, max_bytes: int) -> None:
    count = len(items) + len(fresh)
    total = sum(item["bytes"] for item in items) + sum(len(d) for *_, d in fresh)
    if count > max_count:
        raise AdaptError(f"class set {name} would hold {count} examples, over the limit of {max_count}")
    if total > max_bytes:
        raise AdaptError(f"class set {name} would hold {total} bytes of examples, over the limit of {max_bytes}")


class StoredImages(LabelledImages):
    """Example images read from the store by their sha256, labelled with class ids."""

    layout = "store"

    def __init__(self, store, class_set_name: str, items: list[dict]):
        self.store = store
        self.source = f"store:{INDEX_KIND}:{class_set_name}"
        self.items = items
        self.labels = [item["class_id"] for item in items]

    def item_name(self, index: int) -> str:
        item = self.items[index]
        return f"{item['class_id']}/{item.get('filename') or item['sha256'][:12]}"

    def fingerprint(self) -> str:
        digest = hashlib.sha256(b"vgloss-stored-examples-v1\0")
        for item in self.items:
            digest.update(f"{item['sha256']}\0{item['class_id']}\n".encode())
        return digest.hexdigest()

    def _read(self, sha256: str) -> bytes | None:
        """The image's bytes, retried with back-off through a store outage of up to
        :data:`READ_RETRY_S`."""
        deadline, delay = time.monotonic() + READ_RETRY_S, 0.1
        while True:
            try:
                return self.store.get_bytes(IMAGE_KIND, sha256)
            except StoreError:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def load_tensor(self, index, preprocessor, limits):

        data = self._read(self.items[index]["sha256"])
        if data is None:
            raise OSError(f"example image {self.items[index]['sha256'][:12]} is missing from the store")
        return load_tensor(data, limits, preprocessor)

    def subset(self, indices) -> StoredImages:
        picked = StoredImages.__new__(StoredImages)
        picked.store, picked.source = self.store, self.source
        picked.items = [self.items[i] for i in indices]
        picked.labels = [item["class_id"] for item in picked.items]
        return picked


def stored_examples(store, class_set: ClassSet) -> ExampleSource:
    items = example_index(store, class_set.name)
    if not items:
        raise AdaptError(f"class set {class_set.name} has no examples; POST some to /v1/class-sets/"
                         f"{class_set.name}/examples first")
    dataset = StoredImages(store, class_set.name, items)
    index = class_set.index_of()
    labels = np.array([index.get(cid, -1) for cid in dataset.labels], dtype=np.int64)
    if (labels < 0).any():
        dataset = dataset.subset(np.flatnonzero(labels >= 0).tolist())
        labels = labels[labels >= 0]
    return ExampleSource(dataset, labels, class_set)
