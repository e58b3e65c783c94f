"""Example sets: labelled images for the classes of a class set, chosen per class, embedded once.

Examples are read by the readers ``vgloss eval`` uses (:func:`open_dataset`) and their labels
matched to class ids exactly as eval matches them (:func:`resolve_labels`): an unknown label stops
everything with the label and its image count. Embeddings go through eval's cache
(:func:`embed_images`, kind ``image-embeddings``), so re-running an adaptation re-encodes nothing.
Augmented views (random resized crops and flips, as the official Tip-Adapter builds its cache) are
kept as raw, unnormalised image features and cached under kind ``example-views``, keyed by format,
model, images, view count and seed: the official ``build_cache_model`` averages the raw features
over its augment epochs and normalises the mean. Tip-Adapter-F's training views
(``train_views``) are drawn apart from the cache's, one fresh crop/flip per example per epoch, as
the official ``train_loader_F`` re-augments every epoch.

Shot selection is a fixed per-class permutation, so the 4-shot set is a subset of the 8-shot set.
A class with fewer readable examples than asked uses what it has; one with none keeps its
zero-shot score. Each of these becomes a note the caller shows the user.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from gloss_gen.adapt import AdaptError
from gloss_gen.classify.image_embeddings import embed_images, encode_dataset
from gloss_gen.core.errors import EvalError
from gloss_gen.data.classsets import ClassSet
from gloss_gen.evaluation.datasets import DatasetError, LabelledImages, open_dataset, resolve_labels
from gloss_gen.imaging import Preprocessor

VIEWS_KIND = "example-views"
VIEWS_FORMAT = 2  # 2: raw view features (1 held normalised ones; its cache entries are not read)
AUGMENT_SCALE = (0.5, 1.0)  # RandomResizedCrop scale of the official Tip-Adapter cache
PAPER_AUGMENT = 10  # Tip-Adapter configs/*.yaml augment_epoch: views averaged into each cache key
TRAIN_VIEW_STREAM = 1  # seeds Tip-F's per-epoch views apart from the cache's


@dataclass
class ExampleSource:
    """Labelled images whose labels are all classes of ``class_set``."""

    dataset: LabelledImages
    labels: np.ndarray  # (N,) class index per image
    class_set: ClassSet

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.class_set))


def open_examples(path: str | Path, class_set: ClassSet, layout: str = "auto") -> ExampleSource:
    """Read an example folder / labels CSV and match every label to a class (or raise AdaptError)."""
    try:
        dataset = open_dataset(path, layout)
        labels = resolve_labels(dataset.labels, class_set)
    except DatasetError as exc:
        raise AdaptError(f"examples: {exc}") from None
    return ExampleSource(dataset, labels, class_set)


@dataclass
class Examples:
    """Embedded examples: unit ``vectors`` (N, D), ``labels`` (N,), optional raw (unnormalised)
    augmented ``views`` (A, N, D) for the cache keys and ``train_views`` (E, N, D), one fresh view
    per Tip-F epoch."""

    class_set: ClassSet
    model_id: str
    vectors: np.ndarray
    labels: np.ndarray
    names: list[str]
    fingerprint: str  # of the selected images and their labels
    views: np.ndarray | None = None
    augment: int = 0
    notes: list[str] = field(default_factory=list)
    train_views: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.class_set))

    @property
    def hash(self) -> str:
        """Content hash of the example set (images, labels, class set, model, augmentation)."""
        parts = [self.fingerprint, self.class_set.ids, self.model_id, self.augment]
        if self.augment:  # how views become keys changed with VIEWS_FORMAT 2: never the same adapter key
            parts.append(VIEWS_FORMAT)
        if self.train_views is not None:
            parts.append(["train-views", len(self.train_views)])
        payload = json.dumps(parts)
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    @property
    def keys(self) -> np.ndarray:
        """Cache keys: the plain embeddings, or as the official ``build_cache_model``: the mean of
        the raw view features over the views, then normalised."""
        if self.views is None:
            return self.vectors
        return _unit_rows(self.views.mean(axis=0))

    def view_features(self) -> list[np.ndarray]:
        """The unit features of each view (the plain embeddings when there are no views): what
        Tip-Adapter-F trains on, normalised per image as the official training loop does."""
        if self.views is None:
            return [self.vectors]
        return [_unit_rows(view) for view in self.views]

    def training_features(self) -> list[np.ndarray]:
        """What Tip-Adapter-F trains on, epoch ``e`` on entry ``e`` (cycled when shorter): the fresh
        per-epoch views when drawn, else the cache's views (vgloss before issue 23)."""
        if self.train_views is None:
            return self.view_features()
        return [_unit_rows(view) for view in self.train_views]

    def subset(self, rows: np.ndarray, notes: list[str] | None = None) -> Examples:
        rows = np.asarray(rows, dtype=np.int64)
        digest = hashlib.sha256(self.fingerprint.encode())
        digest.update(rows.astype("<i8").tobytes())
        return replace(
            self,
            vectors=self.vectors[rows],
            labels=self.labels[rows],
            names=[self.names[i] for i in rows],
            views=None if self.views is None else self.views[:, rows],
            train_views=None if self.train_views is None else self.train_views[:, rows],
            fingerprint=digest.hexdigest(),
            notes=list(self.notes) + list(notes or []),
        )

    def take(self, shots: int, seed: int = 0) -> Examples:
        """At most ``shots`` examples per class, with notes on short and empty classes."""
        if shots < 1:
            raise AdaptError(f"--shots must be at least 1, not {shots}")
        order = shot_order(self.labels, len(self.class_set), seed)
        rows = np.sort(np.concatenate([per_class[:shots] for per_class in order]))
        counts = np.array([len(per_class) for per_class in order])
        notes = shortage_notes(self.class_set, counts, shots)  # says again which classes are empty
        chosen = self.subset(rows)
        chosen.notes = [n for n in self.notes if _EMPTY_TAIL + ":" not in n] + notes
        return chosen


def _unit_rows(array: np.ndarray) -> np.ndarray:
    return array / np.maximum(np.linalg.norm(array, axis=-1, keepdims=True), 1e-12)


def shot_order(labels: np.ndarray, num_classes: int, seed: int = 0) -> list[np.ndarray]:
    """Per class, its example rows in a fixed random order (the first k are the k-shot set)."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]


_EMPTY_TAIL = "classes have no examples and keep their zero-shot score"


def shortage_notes(class_set: ClassSet, counts: np.ndarray, shots: int) -> list[str]:
    notes = []
    empty = [class_set.ids[c] for c in np.flatnonzero(counts == 0)]
    short = [(class_set.ids[c], int(counts[c])) for c in np.flatnonzero((counts > 0) & (counts < shots))]
    if short:
        shown = ", ".join(f"{cid} ({n})" for cid, n in short[:10]) + (" ..." if len(short) > 10 else "")
        notes.append(f"{len(short)} classes have fewer than {shots} examples and use what they have: {shown}")
    if empty:
        shown = ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else "")
        notes.append(f"{len(empty)} {_EMPTY_TAIL}: {shown}")
    return notes


def embed_examples(
    source: ExampleSource,
    models,
    store,
    limits,
    *,
    augment: int = 0,
    train_views: int = 0,
    seed: int = 0,
    batch_size: int = 64,
    workers: int = 2,
    progress: bool = False,
) -> Examples:
    """Embed every readable example (from the store when cached); unreadable ones are named in notes.

    ``models`` is an :class:`gloss_gen.evaluation.runner.ModelSource`. With ``augment`` > 0 also
    ``augment`` random crop / flip views of each readable example; with ``train_views`` > 0 that
    many more, drawn apart, for Tip-Adapter-F's epochs.
    """

    if augment < 0 or train_views < 0:
        raise AdaptError(f"--augment must be 0 or more, not {min(augment, train_views)}")
    try:
        embedded = embed_images(
            source.dataset, models, store, limits, batch_size=batch_size, workers=workers, progress=progress
        )
    except EvalError as exc:
        raise AdaptError(f"examples: {exc}") from None
    notes = []
    if embedded.unreadable:
        shown = ", ".join(
            f"{source.dataset.item_name(i)} ({reason})" for i, reason in sorted(embedded.unreadable.items())[:5]
        )
        notes.append(f"{len(embedded.unreadable)} example images could not be read and are skipped: {shown}")
    readable = np.array([i not in embedded.unreadable for i in range(len(source.dataset))])
    rows = np.flatnonzero(readable)
    dataset = source.dataset.subset(rows.tolist())
    labels = source.labels[rows]
    views = None
    if augment:
        views = _augmented_views(dataset, models, store, limits, augment, seed, batch_size, progress)
    fresh = None
    if train_views:
        fresh = _augmented_views(dataset, models, store, limits, train_views, seed, batch_size, progress,
                                 stream=TRAIN_VIEW_STREAM)
    fingerprint = hashlib.sha256(
        (dataset.fingerprint() + json.dumps(labels.tolist())).encode()
    ).hexdigest()
    examples = Examples(
        class_set=source.class_set,
        model_id=models.id,
        vectors=embedded.vectors[rows],
        labels=labels,
        names=[dataset.item_name(i) for i in range(len(dataset))],
        fingerprint=fingerprint,
        views=views,
        augment=augment,
        notes=notes,
        train_views=fresh,
    )
    counts = examples.counts()
    empty = shortage_notes(source.class_set, counts, 1)
    examples.notes.extend(empty)
    return examples


def train_preprocessor(model, scale: tuple[float, float] = AUGMENT_SCALE):
    """RandomResizedCrop(``scale``, bicubic) + horizontal flip + the model's normalisation.

    The official training transform at the model's input size: Tip-Adapter's main.py crops at
    scale 0.5-1 (the default here), ClipFit's Dassl loader at 0.08-1.
    """
    import torchvision.transforms as T

    cfg = model.preprocess_cfg
    size = cfg.get("size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    transform = T.Compose(
        [
            T.RandomResizedCrop(size, scale=tuple(scale), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(p=0.5),
            T.ToTensor(),
            T.Normalize(mean=cfg.get("mean"), std=cfg.get("std")),
        ]
    )
    return Preprocessor.from_transform(transform)


def _augmented_views(dataset, models, store, limits, augment, seed, batch_size, progress, stream=0) -> np.ndarray:

    parts = [VIEWS_FORMAT, models.id, dataset.fingerprint(), augment, seed, bool(limits.jpeg_draft)]
    payload = json.dumps(parts + ([stream] if stream else []))
    key = hashlib.sha256(payload.encode()).hexdigest()[:32]
    cached = store.get_array(VIEWS_KIND, key) if store is not None else None
    if cached is not None and cached[0].shape[:2] == (augment, len(dataset)):
        return cached[0].astype(np.float32, copy=False)
    model = models.get()
    preprocessor = train_preprocessor(model)
    views = []
    with torch.random.fork_rng(devices=[]):
        for view in range(augment):
            torch.manual_seed(seed * 1000 + view + stream * 1_000_003)
            # workers=0: the crops draw from torch's global generator, so decode in order.
            vectors, _ = encode_dataset(
                dataset, model, limits, batch_size=batch_size, workers=0, progress=progress,
                preprocessor=preprocessor, normalize=False,
            )
            views.append(vectors)
    stacked = np.stack(views).astype(np.float32)
    if store is not None:
        store.put_array(VIEWS_KIND, key, stacked, {"model_id": models.id, "augment": augment, "seed": seed})
    return stacked


def holdout_folds(labels: np.ndarray, num_classes: int, folds: int, seed: int = 0) -> np.ndarray:
    """Fold number (0..folds-1) of every example, stratified by class (round-robin per class)."""
    assignment = np.zeros(len(labels), dtype=np.int64)
    for rows in shot_order(labels, num_classes, seed + 1):
        assignment[rows] = np.arange(len(rows)) % folds
    return assignment
