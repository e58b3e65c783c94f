"""Few-shot adapters over the API: uploaded examples and adapter jobs (kind ``adapter``).

Examples and adapters live in the store (see :mod:`gloss_gen.adapt.uploads` and
:mod:`gloss_gen.classify.adapter_records`), so every replica sharing it serves the same active adapter: the
replica that ran the job installs it at once, the others on their next registry refresh. Adapter
jobs go through the one job mechanism (:mod:`.jobs`): in this process as :class:`AdapterWork`
under a lease, or on the worker queue; ``GET /v1/jobs/{id}`` reads them back like any job.
A ``clipfit`` job writes a delta and reports the model id it yields; serving it is a restart
with ``VGLOSS_PRETRAINED=BASE+DELTA`` (see :mod:`gloss_gen.adapt.fitting`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from app.services.job_runner import ADAPTER_JOB_KIND, JobRunner
from app.services.registry import ClassifierRegistry
from app.services.service_errors import ClassSetNotFound, InvalidClassSet, NoExamples, StoreUnavailable
from gloss_gen.adapt import AdaptError
from gloss_gen.adapt.fitting import AdapterJobSpec, fit_clipfit_job, fit_tip_job
from gloss_gen.adapt.uploads import add_examples, example_counts
from gloss_gen.classify.adapter_records import get_active_adapter
from gloss_gen.core.config import Settings
from gloss_gen.core.errors import CorruptDataError
from gloss_gen.data.classsets import BUILTIN_CLASS_SETS, ClassSet, builtin_class_set
from gloss_gen.data.job_records import JobRecord
from gloss_gen.data.store import Store, StoreError
from gloss_gen.model.deltas import split_pretrained

log = logging.getLogger(__name__)


class AdapterService:
    def __init__(self, settings: Settings, store: Store, registry: ClassifierRegistry, jobs: JobRunner) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.jobs = jobs

    async def _blocking(self, fn, *args):
        try:
            return await asyncio.to_thread(fn, *args)
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def _class_set(self, name: str) -> ClassSet:
        class_set = self.store.get_class_set(name)
        if class_set is None and name in BUILTIN_CLASS_SETS:
            class_set = builtin_class_set(name)
        if class_set is None:
            raise ClassSetNotFound(name)
        return class_set

    async def add_examples(self, name: str, uploads: list[tuple[str | None, bytes, str]]) -> dict:
        def work():
            class_set = self._class_set(name)
            try:
                result = add_examples(self.store, class_set, uploads, self.registry.model.limits,
                                      self.settings.max_examples, self.settings.max_example_bytes)
            except AdaptError as exc:
                raise InvalidClassSet(exc.message) from None
            return {"class_set": name, "added": result.added, "duplicates": result.duplicates,
                    "rejected": result.rejected, "examples": result.counts}

        return await self._blocking(work)

    async def summary(self, name: str) -> dict:
        """``examples`` (class id -> count) and the ``adapter`` serving the class set, if any."""
        def work():
            class_set = self._class_set(name)
            loaded = self.registry.loaded(name)
            record = loaded.adapter if loaded is not None else None
            if record is None:
                try:
                    record = get_active_adapter(self.store, self.registry.model.model_id, name)
                except CorruptDataError as exc:  # reported, not fatal: the set serves zero-shot
                    return {"examples": example_counts(self.store, class_set),
                            "adapter": {"error": exc.code, "message": exc.message, "serving": "zero-shot"}}
            return {"examples": example_counts(self.store, class_set),
                    "adapter": record.summary() if record is not None else None}

        return await self._blocking(work)

    async def submit(self, name: str, method: str, shots: int, augment: int = 0, epochs: int | None = None,
                     lr: float | None = None) -> str:
        """Check the request and start an adapter job; the job id."""

        class_set = await self._blocking(self._class_set, name)
        # the cheap precondition first: no classifier is built (1000 classes for imagenet1k) for a set
        # that has nothing to adapt on
        counts = await self._blocking(example_counts, self.store, class_set)
        if not any(counts.values()):
            raise NoExamples(name)
        clip = self.registry.model.clip
        if method == "clipfit":
            base = split_pretrained(clip.pretrained)[0] or "none"
            fields = {"classifier": None, "pretrained": base}
        else:
            loaded = await self.registry.get_named(name)  # the classifier the adapter goes on
            fields = {"classifier": loaded.classifier.key, "pretrained": clip.pretrained}
        clipfit = {k: v for k, v in (("epochs", epochs), ("lr", lr)) if v is not None}
        try:
            spec = AdapterJobSpec(class_set, method, clip.model_name, shots=shots, augment=augment,
                                  **fields, **clipfit)
        except AdaptError as exc:
            raise InvalidClassSet(exc.message) from None
        return await self.jobs.submit(ADAPTER_JOB_KIND, class_set, method, spec.to_dict(),
                                      model=self.registry.model.model_id, shots=shots)


class AdapterWork:
    """An adapter job in this process (the job backend's ``adapter`` kind): fit on a worker
    thread; a cache adapter is served here at once."""

    def __init__(self, settings: Settings, store: Store, registry: ClassifierRegistry) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry

    async def __call__(self, job: JobRecord, spec: dict, progress: Callable[[], None]) -> dict:
        job_spec = AdapterJobSpec.from_dict(spec)
        if job_spec.method == "clipfit":
            result = await self._clipfit(job, job_spec, progress)
        else:
            result = await self._tip(job_spec)
        job.done = job.total
        return result

    async def _tip(self, spec: AdapterJobSpec) -> dict:
        loaded = self.registry.loaded(spec.class_set.name)
        classifier = loaded.classifier if loaded is not None else None
        if classifier is None or classifier.key != spec.classifier:
            classifier = await asyncio.to_thread(self.store.get_classifier, spec.classifier)
        if classifier is None:
            raise AdaptError(f"classifier {spec.classifier} of class set {spec.class_set.name} is gone")
        model = self.registry.model
        record, result = await asyncio.to_thread(fit_tip_job, spec, self.store, model.clip, classifier, model.limits)
        self.registry.install(classifier, record, loaded.pairs if loaded is not None else None)
        log.info("class set %s serves adapter %s", spec.class_set.name, record.key)
        return result

    async def _clipfit(self, job: JobRecord, spec: AdapterJobSpec, progress: Callable[[], None]) -> dict:
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def on_epoch(log_line) -> None:  # on the training thread: the record is the event loop's to change
            if stop.is_set():
                return

            def record() -> None:
                job.mark(epochs_done=log_line.epoch, loss=log_line.loss, val_accuracy=log_line.val_accuracy)
                progress()

            loop.call_soon_threadsafe(record)

        try:
            return await asyncio.to_thread(
                fit_clipfit_job, spec, self.store, self.registry.model.limits, self.settings.data_dir,
                device=str(self.registry.model.device), cache_dir=self.settings.cache_dir, on_epoch=on_epoch,
                stop=stop,
            )
        except asyncio.CancelledError:
            stop.set()  # the training thread ends at its next batch
            raise
