"""The evaluation run: embed every image once, score it with each method's classifier.

Images go through the server's path: :func:`gloss_gen.imaging.load_tensor` (decode with the
server's limits, then open_clip's validation transform via :class:`gloss_gen.imaging.Preprocessor`) and
:meth:`ClipModel.encode_images`; classes are scored by :class:`gloss_gen.scoring.ScoringHead`.

Two caches in the store make re-runs cheap:

- image embeddings, kind ``image-embeddings``, keyed by (model id, JPEG draft on/off, data set
  fingerprint): adding a method, or changing the scoring, re-encodes no image;
- classifiers, keyed by :attr:`Classifier.key` (model, descriptions, prompt style, templates),
  stored *without* making them the active classifier the server serves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from ..classifier import Classifier, classifier_key
from ..classsets import ClassSet
from ..descriptions import (
    DescriptionError,
    DescriptionSet,
    load_description_set,
    utc_now,
)
from ..errors import InputError
from ..methods import METHODS, OFFLINE_METHODS, describe_offline
from ..models import MODEL_CACHE, ClipModel, ModelCache, ModelSpec
from ..pipeline import build_and_store
from ..scoring import SCORING_MODES, ScoringHead
from ..store import Store
from .datasets import (
    DatasetError,
    LabelledImages,
    limited_indices,
    open_dataset,
    resolve_labels,
)
from .metrics import Scores, score_predictions

log = logging.getLogger(__name__)
T = TypeVar("T")

EMBEDDINGS_KIND = "image-embeddings"
EMBEDDINGS_FORMAT = 1
DEFAULT_SCORING = "prototype"
DEFAULT_BATCH_SIZE = 64
TOP_K = 5
# Methods eval reads from a file: the describe job's output (vgloss) or a published file (import).
FILE_METHODS = tuple(name for name, m in METHODS.items() if m.needs_llm or m.needs_file)


class EvalError(InputError):
    """Bad evaluation input (methods, data, labels); the message says which and why."""


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class MethodSpec:
    """One entry of ``--methods``: ``classname``, ``wordnet``, ``vgloss:FILE`` or ``import:FILE``."""

    kind: str
    label: str
    path: Path | None = None


def parse_methods(text: str) -> list[MethodSpec]:
    """Parse a comma-separated ``--methods`` value; labels are ``kind`` or ``kind:file-name``."""
    entries = [part.strip() for part in text.split(",") if part.strip()]
    if not entries:
        raise EvalError("--methods lists no method")
    parsed: list[tuple[str, str, Path | None]] = []
    for entry in entries:
        kind, sep, rest = entry.partition(":")
        if kind in OFFLINE_METHODS and not sep:
            parsed.append((kind, kind, None))
        elif kind in FILE_METHODS and rest.strip():
            parsed.append((kind, entry, Path(rest.strip())))
        elif kind in FILE_METHODS:
            what = "a vgloss describe .jsonl output" if kind == "vgloss" else "a CuPL or DCLIP .json file"
            raise EvalError(f"method {kind!r} needs a file: {kind}:FILE ({what})")
        else:
            raise EvalError(
                f"unknown method {entry!r}; use classname, wordnet, vgloss:FILE or import:FILE"
            )
    if len({entry for _, entry, _ in parsed}) != len(parsed):
        raise EvalError("--methods lists the same method twice")
    short = [f"{kind}:{path.name}" if path else kind for kind, _, path in parsed]
    # Label by file name unless two files share one; then the path as given tells them apart.
    return [
        MethodSpec(kind, short[i] if short.count(short[i]) == 1 else entry, path)
        for i, (kind, entry, path) in enumerate(parsed)
    ]


@dataclass
class PreparedMethod:
    spec: MethodSpec
    descriptions: DescriptionSet
    notes: list[str] = field(default_factory=list)


def prepare_method(spec: MethodSpec, class_set: ClassSet) -> PreparedMethod:
    """The method's description set for ``class_set``, with notes worth showing the user."""
    if spec.kind in OFFLINE_METHODS:
        descriptions, _ = describe_offline(class_set, spec.kind)
        missing = [r.class_id for r in descriptions.records if not r.descriptions]
        notes = []
        if missing and spec.kind == "wordnet":
            notes.append(f"{len(missing)} classes have no WordNet synset and use class-name prompts")
        return PreparedMethod(spec, descriptions, notes)
    assert spec.path is not None
    if not spec.path.is_file():
        raise EvalError(f"{spec.label}: {spec.path} does not exist")
    if METHODS[spec.kind].needs_llm:
        descriptions = load_description_set(spec.path, class_set)
        without = [r.class_id for r in descriptions.records if not (r.ok and r.descriptions)]
        if len(without) == len(class_set):
            raise EvalError(f"{spec.label}: {spec.path} has no descriptions for any class of {class_set.name}")
        notes = []
        if without:
            notes.append(
                f"{len(without)} classes have no descriptions in {spec.path.name} and use class-name "
                f"prompts: {', '.join(without[:10])}" + (" ..." if len(without) > 10 else "")
            )
        return PreparedMethod(spec, descriptions, notes)
    descriptions, report = describe_offline(class_set, spec.kind, import_file=spec.path)
    assert report is not None
    if report.matched == 0:
        raise EvalError(f"{spec.label}: no key of {spec.path} matches a class of {class_set.name}")
    return PreparedMethod(spec, descriptions, report.lines())


# --------------------------------------------------------------------------- model


class ModelSource:
    """A handle on the CLIP model that loads it (through the process's model cache) only when
    something actually needs it: a run whose embeddings and classifiers are all in the store
    never loads the model."""

    def __init__(self, spec: ModelSpec, model: ClipModel | None = None, cache: ModelCache = MODEL_CACHE):
        self.spec = spec
        self._model = model
        self._cache = cache

    @classmethod
    def of(cls, model: ClipModel) -> ModelSource:
        return cls(ModelSpec(model.model_name, model.pretrained, str(model.device), model.precision), model=model)

    @classmethod
    def from_settings(cls, settings=None) -> ModelSource:
        return cls(ModelSpec.from_settings(settings))

    @property
    def id(self) -> str:
        return self._model.id if self._model is not None else self.spec.id

    @property
    def device(self) -> str:
        return self.spec.device

    @property
    def cache_tag(self) -> str:
        """The embeddings-cache identity: the model id, plus the CPU inference path asked for when it
        is not eager torch fp32 (cached embeddings never come from another numeric path)."""
        path = f"{self.spec.backend}/{self.spec.precision}"
        return self.id if self.device != "cpu" or path == "torch/fp32" else f"{self.id}@{path}"

    def get(self) -> ClipModel:
        if self._model is None:
            self._model = self._cache.get(self.spec)
        return self._model


# --------------------------------------------------------------------------- image embeddings


@dataclass
class ImageEmbeddings:
    vectors: np.ndarray  # (N, D) float32 unit rows; zero rows for unreadable images
    unreadable: dict[int, str]  # image index -> reason
    encoded: int  # images run through the model by this call; 0 when read from the cache
    cache_key: str


def embeddings_cache_key(model: str, dataset: LabelledImages, jpeg_draft: bool) -> str:
    payload = json.dumps([EMBEDDINGS_FORMAT, model, bool(jpeg_draft), dataset.fingerprint()])
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _load_ahead(
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
    dataset: LabelledImages,
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

    from ..imaging import ImageError, Preprocessor

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

        for index, outcome in _load_ahead(load, count, workers, window=2 * batch_size):
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
    dataset: LabelledImages,
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


# --------------------------------------------------------------------------- classifiers and scoring


def classifier_for(
    prepared: PreparedMethod,
    models: ModelSource,
    store: Store | None,
    template_set: str | None = None,
    progress: bool = False,
) -> tuple[Classifier, bool]:
    """(classifier, whether it came from the store). A new one is stored but not activated.
    ``template_set`` defaults to the class set's own."""
    descriptions = prepared.descriptions
    template_set = template_set or descriptions.class_set.templates
    if store is not None:
        cached = store.get_classifier(classifier_key(models.id, descriptions.id, descriptions.prompt_style, template_set))
        if cached is not None:
            return cached, True
    built = build_and_store(models.get(), descriptions, store, template_set=template_set, activate=False,
                            progress=progress)
    if store is None:
        return built, False
    # Score with the stored form so a later cached run agrees exactly.
    return store.get_classifier(built.key) or built, False


def rank_classes(
    head: ScoringHead, vectors: np.ndarray, mode: str, k: int, chunk_size: int = 4096
) -> np.ndarray:
    """(N, k) class indices per image, most similar first."""
    if mode not in SCORING_MODES:
        raise EvalError(f"unknown scoring {mode!r}; choose from {', '.join(SCORING_MODES)}")
    k = min(k, head.num_classes)
    ranked = np.empty((len(vectors), k), dtype=np.int64)
    for start in range(0, len(vectors), chunk_size):
        block = torch.from_numpy(np.ascontiguousarray(vectors[start : start + chunk_size]))
        logits = head.logits(block, mode)  # monotone in the cosine unless an adapter is attached
        ranked[start : start + len(block)] = logits.topk(k, dim=-1).indices.cpu().numpy()
    return ranked


# --------------------------------------------------------------------------- the run


@dataclass
class EvalConfig:
    data: Path
    class_set: ClassSet
    methods: list[MethodSpec]
    layout: str = "auto"
    scoring: str = DEFAULT_SCORING
    batch_size: int = DEFAULT_BATCH_SIZE
    limit: int | None = None
    workers: int = 2
    jpeg_draft: bool = False  # exact decoding: accuracy is measured on open_clip's own pixels
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    template_set: str | None = None  # None: the class set's own template set
    max_confusions: int = 20
    scoring_device: str = "cpu"
    progress: bool = False


@dataclass
class MethodResult:
    spec: MethodSpec
    method: str
    descriptions_id: str
    classifier_key: str
    prompt_style: str
    classifier_cached: bool
    scores: Scores
    notes: list[str] = field(default_factory=list)


@dataclass
class EvalResult:
    data: Path
    layout: str
    class_set: ClassSet
    model_id: str
    scoring: str
    template_set: str
    jpeg_draft: bool
    limit: int | None
    num_images: int  # images scored (readable ones)
    unreadable: dict[str, str]  # image name -> reason
    images_encoded: int  # images run through the model in this run (0: all from the cache)
    methods: list[MethodResult]
    created_at: str = field(default_factory=utc_now)


def open_evaluation_images(config: EvalConfig) -> tuple[LabelledImages, np.ndarray]:
    """The evaluation images (``config.limit`` of them, a fixed sample) and their class indices."""
    try:
        dataset = open_dataset(config.data, config.layout)
        if config.limit is not None:
            dataset = dataset.subset(limited_indices(len(dataset), config.limit).tolist())
        return dataset, resolve_labels(dataset.labels, config.class_set)
    except DatasetError as exc:
        raise EvalError(str(exc)) from None


def evaluate(
    config: EvalConfig,
    models: ModelSource,
    store: Store | None,
    notify: Callable[[str], None] = lambda message: log.info("%s", message),
) -> EvalResult:
    """Run every method of ``config`` on its data; every input is checked before any image is read."""
    from ..imaging import ImageLimits

    if config.scoring not in SCORING_MODES:
        raise EvalError(f"unknown scoring {config.scoring!r}; choose from {', '.join(SCORING_MODES)}")
    if config.batch_size < 1:
        raise EvalError(f"--batch-size must be at least 1, not {config.batch_size}")
    dataset, truth = open_evaluation_images(config)
    prepared = []
    for spec in config.methods:
        try:
            method = prepare_method(spec, config.class_set)
        except DescriptionError as exc:
            raise EvalError(f"{spec.label}: {exc}") from None
        for note in method.notes:
            notify(f"{spec.label}: {note}")
        prepared.append(method)

    limits = ImageLimits.from_settings(config)
    embeddings = embed_images(
        dataset,
        models,
        store,
        limits,
        batch_size=config.batch_size,
        workers=config.workers,
        progress=config.progress,
    )
    if embeddings.encoded == 0:
        notify(f"image embeddings of {len(dataset)} images read from the cache")
    readable = np.array([i not in embeddings.unreadable for i in range(len(dataset))], dtype=bool)
    if embeddings.unreadable:
        shown = ", ".join(dataset.item_name(i) for i in sorted(embeddings.unreadable)[:5])
        notify(f"{len(embeddings.unreadable)} images could not be read and are left out: {shown}")
    vectors, readable_truth = embeddings.vectors[readable], truth[readable]

    template_set = config.template_set or config.class_set.templates
    results = []
    for method in prepared:
        classifier, cached = classifier_for(method, models, store, template_set, config.progress)
        head = ScoringHead(classifier, config.scoring_device)
        ranked = rank_classes(head, vectors, config.scoring, TOP_K)
        scores = score_predictions(ranked, readable_truth, config.class_set, config.max_confusions)
        results.append(
            MethodResult(
                spec=method.spec,
                method=method.descriptions.method,
                descriptions_id=method.descriptions.id,
                classifier_key=classifier.key,
                prompt_style=classifier.prompt_style,
                classifier_cached=cached,
                scores=scores,
                notes=method.notes,
            )
        )
    return EvalResult(
        data=config.data,
        layout=dataset.layout,
        class_set=config.class_set,
        model_id=models.id,
        scoring=config.scoring,
        template_set=template_set,
        jpeg_draft=config.jpeg_draft,
        limit=config.limit,
        num_images=int(readable.sum()),
        unreadable={dataset.item_name(i): reason for i, reason in sorted(embeddings.unreadable.items())},
        images_encoded=embeddings.encoded,
        methods=results,
    )


def default_workers(configured: int = 0) -> int:
    """Decode threads: the configured number, else one per CPU core (PIL releases the GIL)."""
    return configured if configured > 0 else max(1, os.cpu_count() or 1)
