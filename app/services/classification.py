"""Classification: pick the classifier, decode the uploads, batch them through the model."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from app.prometheus_metrics import Metrics
from app.services.batcher import InferenceBatcher
from app.services.decoding import ImageDecoder
from app.services.model import ModelHolder
from app.services.readiness import Readiness
from app.services.registry import ClassifierRegistry, LoadedClassifier
from app.services.service_errors import NoPairDescriptions, NoUsableImages
from gloss_gen.classify.results import ClassifyResult, ImageResult
from gloss_gen.core.config import Settings
from gloss_gen.imaging import ImageError


@dataclass
class ImageUpload:
    """One image of a request: its bytes, or the error that rejected it while the request was read."""

    filename: str | None
    data: bytes | None = None
    error: ImageError | None = None


@dataclass
class ClassifyQuery:
    images: list[ImageUpload]
    class_set: str | None = None
    labels: list[str] | None = None
    top_k: int = 5
    explain: bool = False
    open_set: str = "off"  # off, mcm or neglabel: the request's, or the server's default
    open_set_threshold: float | None = None
    rerank: str | None = None  # fudd or none; None: the server's default where the class set has pairs
    rerank_k: int | None = None  # None: the server's VGLOSS_RERANK_K


class ClassifyService:
    def __init__(
        self,
        settings: Settings,
        readiness: Readiness,
        model: ModelHolder,
        registry: ClassifierRegistry,
        decoder: ImageDecoder,
        batcher: InferenceBatcher,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.readiness = readiness
        self.model = model
        self.registry = registry
        self.decoder = decoder
        self.batcher = batcher
        self.metrics = metrics

    async def classify(self, query: ClassifyQuery) -> ClassifyResult:
        """Every image's predictions or error: the body of ``POST /v1/classify`` (see DESIGN.md)."""
        self.readiness.require()
        loaded = await self._classifier_for(query)
        scorer = None
        if query.open_set != "off":  # before any decoding: a 503 while negatives build costs nothing
            scorer = await self.registry.open_sets.scorer_for(loaded, query.open_set, query.open_set_threshold)
        rerank_k, rerank = self._rerank_for(query, loaded)
        uploads = query.images
        readable = [i for i, upload in enumerate(uploads) if upload.error is None]
        outcomes: list[torch.Tensor | ImageError | None] = [u.error for u in uploads]
        with self.batcher.reserve(len(readable)):
            if readable:
                decoded = await self.decoder.decode(
                    [uploads[i].data or b"" for i in readable], self.model.limits, self.model.preprocessor
                )
                for i, outcome in zip(readable, decoded):
                    outcomes[i] = outcome
            good = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, torch.Tensor)]
            for outcome in outcomes:
                if isinstance(outcome, ImageError):
                    self.metrics.image_errors.labels(code=outcome.code).inc()
            if not good:
                first = next(o for o in outcomes if isinstance(o, ImageError))
                raise NoUsableImages(first, len(uploads))
            scored = await self.batcher.classify(
                [outcomes[i] for i in good], loaded.head, query.top_k, query.explain, scorer, rerank_k
            )
        self.metrics.images_classified.inc(len(good))
        by_index = dict(zip(good, scored))
        results = [
            ImageResult(index, upload.filename, predictions=by_index[index].predictions,
                        open_set=by_index[index].open_set)
            if index in by_index
            else ImageResult(index, upload.filename, error=outcomes[index])
            for index, upload in enumerate(uploads)
        ]
        return ClassifyResult.for_classifier(
            loaded.classifier, results, query.explain, loaded.adapter.key if loaded.adapter is not None else None,
            scorer.info() if scorer is not None else None, rerank,
        )

    def _rerank_for(self, query: ClassifyQuery, loaded) -> tuple[int, dict | None]:
        """The re-rank depth and its description in the response (0 and None: first pass only)."""
        method = query.rerank or self.settings.rerank
        if method == "none":
            return 0, None
        if loaded.pairs is None:
            if query.rerank == "fudd":  # asked for by name: say why it cannot be had
                raise NoPairDescriptions(loaded.name)
            return 0, None
        k = min(query.rerank_k or self.settings.rerank_k, loaded.classifier.num_classes)
        if k < 2:
            return 0, None
        return k, {"method": "fudd", "k": k, "pairs": loaded.pairs.key}

    async def _classifier_for(self, query: ClassifyQuery) -> LoadedClassifier:
        if query.labels is not None:
            return await self.registry.get_for_labels(query.labels)
        return await self.registry.get_named(query.class_set or self.settings.default_class_set)
