"""The evaluation run: embed every image once, score it with each method's classifier.

Images go through the server's path: :func:`gloss_gen.imaging.load_tensor` (decode with the
server's limits, then open_clip's validation transform via :class:`gloss_gen.imaging.Preprocessor`) and
:meth:`ClipModel.encode_images`; classes are scored by :class:`gloss_gen.classify.scoring.ScoringHead`.

Two caches in the store make re-runs cheap:

- image embeddings, kind ``image-embeddings``, keyed by (model id, JPEG draft on/off, data set
  fingerprint): adding a method, or changing the scoring, re-encodes no image;
- classifiers, keyed by :attr:`Classifier.key` (model, descriptions, prompt style, templates),
  stored *without* making them the active classifier the server serves.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from gloss_gen.classify.image_embeddings import (  # noqa: F401 (re-exported for eval's callers)
    DEFAULT_BATCH_SIZE,
    EMBEDDINGS_FORMAT,
    EMBEDDINGS_KIND,
    ImageEmbeddings,
    embed_images,
    embeddings_cache_key,
    encode_dataset,
)
from gloss_gen.classify.pipeline import build_and_store
from gloss_gen.classify.scoring import SCORING_MODES, ScoringHead
from gloss_gen.core.errors import EvalError
from gloss_gen.data.classifier import Classifier, classifier_key
from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.descriptions import (
    DescriptionError,
    DescriptionSet,
    load_description_set,
    utc_now,
)
from gloss_gen.data.methods import METHODS, OFFLINE_METHODS, describe_offline
from gloss_gen.data.pair_descriptions import PairDescriptionSet
from gloss_gen.data.store import Store
from gloss_gen.evaluation.datasets import (
    DatasetError,
    LabelledImages,
    limited_indices,
    open_dataset,
    resolve_labels,
)
from gloss_gen.evaluation.metrics import Scores, score_predictions
from gloss_gen.evaluation.open_set_eval import OpenSetOutcome, item_path, open_ood_images, score_open_set
from gloss_gen.evaluation.second_look import (
    DEFAULT_RERANK_K,
    FIRST_PASS_METHOD,
    PAIR_METHODS,
    load_pairs,
    pair_embeddings_for,
    rank_with_rerank,
)
from gloss_gen.imaging import ImageLimits
from gloss_gen.model.model_source import ModelSource

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_SCORING = "prototype"
TOP_K = 5
# Methods eval reads from a file: the describe job's output (vgloss) or a published file (import).
FILE_METHODS = tuple(
    name for name, m in METHODS.items() if (m.needs_llm or m.needs_file) and name not in PAIR_METHODS
) + PAIR_METHODS


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
            what = {"vgloss": "a vgloss describe .jsonl output",
                    "fudd": "a pair file from vgloss describe --method fudd"}.get(kind, "a CuPL or DCLIP .json file")
            raise EvalError(f"method {kind!r} needs a file: {kind}:FILE ({what})")
        else:
            raise EvalError(
                f"unknown method {entry!r}; use {', '.join(OFFLINE_METHODS)}, vgloss:FILE, fudd:FILE or import:FILE"
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
    pairs: PairDescriptionSet | None = None  # fudd: the pair descriptions that re-rank the first pass


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
    if spec.kind in PAIR_METHODS:
        pairs, notes = load_pairs(spec.label, spec.path, class_set)
        return PreparedMethod(spec, describe_offline(class_set, FIRST_PASS_METHOD)[0], notes, pairs)
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
    ood: Path | None = None  # out-of-set images: measure open-set detection (--ood)
    ood_layout: str = "auto"
    open_set: tuple[str, ...] = ()  # open-set methods to measure with --ood
    neglabel_max_candidates: int = 0
    rerank_k: int = DEFAULT_RERANK_K  # fudd: classes of the first pass re-ranked


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
    open_set: list[OpenSetOutcome] = field(default_factory=list)


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
    ood: dict | None = None  # {path, num_images, unreadable} of the --ood images


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

    if config.scoring not in SCORING_MODES:
        raise EvalError(f"unknown scoring {config.scoring!r}; choose from {', '.join(SCORING_MODES)}")
    if config.batch_size < 1:
        raise EvalError(f"--batch-size must be at least 1, not {config.batch_size}")
    dataset, truth = open_evaluation_images(config)
    ood = None
    if config.ood is not None:
        if not config.open_set:
            raise EvalError("--ood needs at least one open-set method (--open-set mcm,neglabel)")
        ood = open_ood_images(config.ood, config.ood_layout)
    elif config.open_set:
        raise EvalError("--open-set measures detection of out-of-set images: give them with --ood OOD_DIR")
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
    ood_vectors, ood_names, ood_summary = _embed_ood(ood, models, store, limits, config, notify)
    in_names = [item_path(dataset, i) for i in np.flatnonzero(readable)]

    template_set = config.template_set or config.class_set.templates
    results = []
    for method in prepared:
        classifier, cached = classifier_for(method, models, store, template_set, config.progress)
        head = ScoringHead(classifier, config.scoring_device)
        if method.pairs is None:
            ranked = rank_classes(head, vectors, config.scoring, TOP_K)
        else:
            head.attach_pairs(pair_embeddings_for(method.pairs, models, store, config.progress))
            ranked = rank_with_rerank(head, vectors, config.scoring, TOP_K, config.rerank_k)
        scores = score_predictions(ranked, readable_truth, config.class_set, config.max_confusions)
        open_set = []
        if ood is not None:
            open_set = score_open_set(
                classifier, method.spec.label, config.open_set, vectors, in_names, ood_vectors, ood_names,
                store=store, model_source=models, mode=config.scoring, device=config.scoring_device,
                max_candidates=config.neglabel_max_candidates, progress=config.progress,
            )
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
                open_set=open_set,
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
        ood=ood_summary,
    )


def _embed_ood(ood: LabelledImages | None, models: ModelSource, store: Store | None, limits, config: EvalConfig,
               notify: Callable[[str], None]):
    """(vectors, paths, summary) of the readable out-of-set images; all empty without ``--ood``."""
    if ood is None:
        return np.zeros((0, 0), dtype=np.float32), [], None
    embedded = embed_images(ood, models, store, limits, batch_size=config.batch_size, workers=config.workers,
                            progress=config.progress)
    readable = [i for i in range(len(ood)) if i not in embedded.unreadable]
    if embedded.unreadable:
        shown = ", ".join(ood.item_name(i) for i in sorted(embedded.unreadable)[:5])
        notify(f"{len(embedded.unreadable)} out-of-set images could not be read and are left out: {shown}")
    summary = {"path": str(config.ood), "layout": ood.layout, "num_images": len(readable),
               "unreadable": {ood.item_name(i): reason for i, reason in sorted(embedded.unreadable.items())}}
    return embedded.vectors[readable], [item_path(ood, i) for i in readable], summary


def default_workers(configured: int = 0) -> int:
    """Decode threads: the configured number, else one per CPU core (PIL releases the GIL)."""
    return configured if configured > 0 else max(1, os.cpu_count() or 1)
