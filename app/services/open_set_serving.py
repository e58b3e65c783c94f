"""Open-set scoring for requests: NegLabel's negatives and calibrated thresholds, prepared in the
background so that no request waits for them.

A request with ``open_set=neglabel`` needs the negative labels of its classifier. They are read from
the store (:mod:`gloss_gen.classify.negative_embeddings`) or, when missing, built: WordNet is mined on
a worker thread, then the prompts are embedded on the shared text-encoder turns
(:class:`~app.services.text_work.TextWork`, a chunk at a time, as label builds are), the result is
written to the store and kept in memory. Until it is done every such request is answered 503
``negatives_building`` with a Retry-After from the build's rate; requests with ``open_set=off`` or
``mcm`` are served meanwhile.

Without a threshold in the request, a class set with labelled examples gets one calibrated at 95 %
in-set (:mod:`gloss_gen.adapt.open_set_calibration`): read from the store or computed in the
background (503 ``open_set_calibrating`` until then). The examples are checked again every
``refresh_s``; new ones recalibrate in the background while the old threshold keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass, field

import torch

from app.services.model import ModelHolder
from app.services.service_errors import NegativesBuilding, OpenSetCalibrating
from app.services.text_work import TextWork
from gloss_gen.adapt.open_set_calibration import (
    OpenSetCalibration,
    calibrate_open_set,
    examples_hash,
    stored_calibration,
)
from gloss_gen.classify.negative_embeddings import (
    NegativeLabels,
    build_negatives,
    get_negatives,
    negative_prompts,
    negatives_key,
    put_negatives,
)
from gloss_gen.classify.open_set import OpenSetScorer, check_open_set_method, resolve_threshold
from gloss_gen.core.config import Settings
from gloss_gen.core.errors import CorruptDataError, VglossError
from gloss_gen.data.classifier import Classifier
from gloss_gen.data.store import Store, StoreError
from gloss_gen.model.model_source import ModelSource

log = logging.getLogger(__name__)

MAX_NEGATIVE_SETS = 16
"""Classifiers whose negatives are kept in memory (about 18 MB each for ViT-B-32), least recently used out."""
MAX_CALIBRATIONS = 256
RETRY_AFTER_MAX_S = 60
RETRY_AFTER_UNKNOWN_S = 5


@dataclass
class _Negatives:
    key: str
    scorer: OpenSetScorer  # NegLabel's, without a threshold: its groups laid out once, on the scoring device


@dataclass
class _Calibrated:
    calibration: OpenSetCalibration | None
    examples: str | None  # hash of the examples it was made from; None: the class set has none
    checked_at: float


@dataclass
class _Build:
    name: str  # the class set, for messages
    task: asyncio.Task | None = None
    done: int = 0  # prompts embedded (negatives)
    total: int = 0
    started: float = field(default_factory=time.monotonic)

    def retry_after_s(self) -> int:
        elapsed = time.monotonic() - self.started
        if not self.total or self.done <= 0 or elapsed <= 0:
            return RETRY_AFTER_UNKNOWN_S
        remaining = (self.total - self.done) / (self.done / elapsed)
        return max(1, min(RETRY_AFTER_MAX_S, math.ceil(remaining)))


class OpenSetServing:
    def __init__(self, settings: Settings, store: Store, model: ModelHolder, text_work: TextWork,
                 refresh_s: float = 30.0) -> None:
        self.settings = settings
        self.store = store
        self.model = model
        self.refresh_s = refresh_s
        self._text_work = text_work
        self._negatives: OrderedDict[str, _Negatives] = OrderedDict()
        self._calibrations: OrderedDict[tuple[str, str], _Calibrated] = OrderedDict()
        self._builds: dict[tuple, _Build] = {}
        self._failures: dict[tuple, BaseException] = {}
        self._background: set[asyncio.Task] = set()

    async def scorer_for(self, loaded, method: str, threshold: float | None = None) -> OpenSetScorer:
        """The scorer of ``method`` for a loaded classifier, with its threshold: ``threshold`` when
        given, else the class set's calibration, else ``VGLOSS_OPEN_SET_THRESHOLD`` (for the server's
        own method), else the method's default. Raises 503 errors while something is being prepared."""
        method = check_open_set_method(method)
        classifier: Classifier = loaded.classifier
        negatives_key = None
        if method == "neglabel":
            entry = await self._negatives_for(classifier)
            scorer, negatives_key = entry.scorer, entry.key
        else:
            scorer = OpenSetScorer(method)
        calibration = None
        if threshold is None:
            calibration = await self._calibration_for(loaded, scorer, negatives_key)
            if calibration is not None:
                scorer = scorer.with_info(calibration=calibration.info())
        value, source = resolve_threshold(
            method, threshold, calibration.threshold if calibration is not None else None,
            self.settings.open_set_threshold if self.settings.open_set == method else None,
            where=f" for class set {classifier.class_set.name}",
        )
        return scorer.with_threshold(value, source)

    # ------------------------------------------------------------------ negatives

    async def _negatives_for(self, classifier: Classifier) -> _Negatives:
        entry = self._negatives.get(classifier.key)
        if entry is not None:
            self._negatives.move_to_end(classifier.key)
            return entry
        build_key = ("negatives", classifier.key)
        self._raise_failure(build_key)
        if build_key not in self._builds:
            key = negatives_key(classifier, self.settings.neglabel_max_candidates)
            try:
                record = await asyncio.to_thread(get_negatives, self.store, key)
            except (StoreError, CorruptDataError) as exc:
                log.warning("could not read the negative labels of %s (%s); building them", classifier.class_set.name, exc)
                record = None
            if record is not None:
                return self._keep_negatives(classifier.key, record)
            if classifier.key in self._negatives:  # a concurrent request read them meanwhile
                return self._negatives[classifier.key]
            if build_key not in self._builds:
                build = _Build(classifier.class_set.name)
                self._start(build_key, build, self._build_negatives(classifier, build))
        build = self._builds.get(build_key)
        if build is None:  # finished while this request looked
            return self._negatives.get(classifier.key) or await self._negatives_for(classifier)
        raise NegativesBuilding(build.name, build.done, build.total, build.retry_after_s())

    async def _build_negatives(self, classifier: Classifier, build: _Build) -> None:
        max_candidates = self.settings.neglabel_max_candidates
        candidates = await asyncio.to_thread(negative_prompts, classifier, max_candidates)
        build.total, build.started = len(candidates), time.monotonic()
        encoder = self.model.text_encoder

        def embed(*, batch_size: int, between_batches) -> NegativeLabels:
            def step(done: int, total: int) -> None:
                build.done = done
                between_batches(done, total)

            return build_negatives(encoder, classifier, max_candidates=max_candidates, candidates=candidates,
                                   batch_size=batch_size, between_batches=step)

        started = time.perf_counter()
        record = await self._text_work.run(embed)
        log.info("class set %s: %d negative labels chosen from %d candidates in %.1fs", classifier.class_set.name,
                 len(record), record.candidates, time.perf_counter() - started)
        try:
            await asyncio.to_thread(put_negatives, self.store, record)
        except StoreError as exc:
            log.warning("could not store the negative labels of %s (%s); keeping them in memory",
                        classifier.class_set.name, exc)
        self._keep_negatives(classifier.key, record)

    def _keep_negatives(self, classifier_key: str, record: NegativeLabels) -> _Negatives:
        negatives = torch.from_numpy(record.embeddings).to(self.model.device)
        scorer = OpenSetScorer("neglabel", negatives=negatives, info={"negatives": len(record), "negatives_key": record.key})
        entry = _Negatives(record.key, scorer)
        self._negatives[classifier_key] = entry
        while len(self._negatives) > MAX_NEGATIVE_SETS:
            self._negatives.popitem(last=False)
        return entry

    # ------------------------------------------------------------------ calibration

    async def _calibration_for(self, loaded, scorer: OpenSetScorer, negatives: str | None) -> OpenSetCalibration | None:
        classifier: Classifier = loaded.classifier
        key = (classifier.key, scorer.method)
        entry = self._calibrations.get(key)
        if entry is not None:
            self._calibrations.move_to_end(key)
            self._failures.pop(("calibration",) + key, None)  # a failed re-check: the entry keeps serving
            if time.monotonic() - entry.checked_at >= self.refresh_s and ("calibration",) + key not in self._builds:
                entry.checked_at = time.monotonic()
                self._start(("calibration",) + key, _Build(classifier.class_set.name),
                            self._calibrate(loaded, scorer, negatives, recheck=entry))
            return entry.calibration
        build_key = ("calibration",) + key
        self._raise_failure(build_key)
        if build_key not in self._builds:
            try:
                found, calibration = await asyncio.to_thread(self._stored, loaded, scorer, negatives)
            except (StoreError, CorruptDataError, ValueError) as exc:
                log.warning("could not read the open-set calibration of %s (%s)", classifier.class_set.name, exc)
                return None
            if found is None or calibration is not None:
                self._keep_calibration(key, calibration, found)
                return calibration
            if key in self._calibrations:
                return self._calibrations[key].calibration
            if build_key not in self._builds:
                self._start(build_key, _Build(classifier.class_set.name), self._calibrate(loaded, scorer, negatives))
        if build_key not in self._builds:
            return self._calibrations[key].calibration if key in self._calibrations else None
        raise OpenSetCalibrating(classifier.class_set.name, scorer.method, RETRY_AFTER_UNKNOWN_S)

    def _stored(self, loaded, scorer: OpenSetScorer, negatives: str | None):
        """(hash of the examples or None, the stored calibration or None), on a worker thread."""
        examples = examples_hash(self.store, loaded.classifier.class_set.name)
        if examples is None:
            return None, None
        _, calibration = stored_calibration(self.store, ModelSource.of(self.model.clip), loaded.head, scorer,
                                            self.model.limits, negatives_key=negatives)
        return examples, calibration

    async def _calibrate(self, loaded, scorer: OpenSetScorer, negatives: str | None,
                         recheck: _Calibrated | None = None) -> None:
        key = (loaded.classifier.key, scorer.method)
        examples, calibration = await asyncio.to_thread(self._stored, loaded, scorer, negatives)
        if recheck is not None and examples == recheck.examples:
            return
        if examples is not None and calibration is None:
            def work():
                models = ModelSource.of(self.model.clip)
                cal_key, _ = stored_calibration(self.store, models, loaded.head, scorer, self.model.limits,
                                                negatives_key=negatives)
                return calibrate_open_set(self.store, models, loaded.head, scorer, self.model.limits, cal_key)

            calibration = await asyncio.to_thread(work)
        self._keep_calibration(key, calibration, examples)

    def _keep_calibration(self, key: tuple[str, str], calibration: OpenSetCalibration | None,
                          examples: str | None) -> None:
        self._calibrations[key] = _Calibrated(calibration, examples, time.monotonic())
        while len(self._calibrations) > MAX_CALIBRATIONS:
            self._calibrations.popitem(last=False)

    # ------------------------------------------------------------------ background work

    def _start(self, key: tuple, build: _Build, work: Awaitable[None]) -> None:
        build.task = asyncio.create_task(work)
        self._builds[key] = build
        self._background.add(build.task)

        def finished(task: asyncio.Task) -> None:
            self._background.discard(task)
            self._builds.pop(key, None)
            if task.cancelled():
                return
            exc = task.exception()
            if exc is not None:
                self._failures[key] = exc
                if isinstance(exc, VglossError):
                    log.warning("open-set preparation %s of %s failed: %s", key[0], build.name, exc.message)
                else:
                    log.error("open-set preparation %s of %s failed", key[0], build.name, exc_info=exc)

        build.task.add_done_callback(finished)

    def _raise_failure(self, key: tuple) -> None:
        """The error a finished build of ``key`` failed with, raised once (the next request retries)."""
        exc = self._failures.pop(key, None)
        if exc is not None:
            raise exc

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
