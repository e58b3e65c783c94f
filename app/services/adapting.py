"""Few-shot adapters over the API: uploaded examples and background Tip-Adapter jobs.

Examples and adapters live in the store (see :mod:`gloss_gen.adapt.uploads` and
:mod:`gloss_gen.adapt.record`), so every replica sharing it serves the same active adapter: the
replica that ran the job installs it at once, the others on their next registry refresh. The job
record is the shared one (:class:`gloss_gen.jobs.JobRecord`), read back by ``GET /v1/jobs/{id}``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from gloss_gen.adapt import AdaptError
from gloss_gen.adapt.adapter import build_adapter
from gloss_gen.adapt.examples import embed_examples
from gloss_gen.adapt.record import get_active_adapter, put_adapter
from gloss_gen.adapt.tip import TipConfig
from gloss_gen.adapt.uploads import add_examples, example_counts, stored_examples
from gloss_gen.classsets import BUILTIN_CLASS_SETS, ClassSet, builtin_class_set
from gloss_gen.config import Settings
from gloss_gen.descriptions import utc_now
from gloss_gen.evaluation.runner import ModelSource
from gloss_gen.jobs import JobRecord
from gloss_gen.store import Store, StoreError

from .errors import ClassSetNotFound, InvalidClassSet, NoExamples, StoreUnavailable
from .registry import ClassifierRegistry

log = logging.getLogger(__name__)


class AdapterService:
    def __init__(self, settings: Settings, store: Store, registry: ClassifierRegistry) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self._one_at_a_time = asyncio.Semaphore(1)
        self._tasks: dict[str, asyncio.Task] = {}

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
                record = get_active_adapter(self.store, self.registry.model.model_id, name)
            return {"examples": example_counts(self.store, class_set),
                    "adapter": record.summary() if record is not None else None}

        return await self._blocking(work)

    async def submit(self, name: str, method: str, shots: int, augment: int = 0) -> str:
        try:
            config = TipConfig(method=method)
        except AdaptError as exc:
            raise InvalidClassSet(exc.message) from None
        if shots < 1 or augment < 0:
            raise InvalidClassSet("shots must be at least 1 and augment 0 or more.")
        class_set = await self._blocking(self._class_set, name)
        loaded = await self.registry.get_named(name)  # the classifier the adapter goes on
        counts = await self._blocking(example_counts, self.store, class_set)
        if not any(counts.values()):
            raise NoExamples(name)
        job_id = uuid.uuid4().hex
        job = JobRecord.new(job_id, "adapter", class_set, method, model=self.registry.model.model_id, shots=shots)
        await self._blocking(self.store.put_job, job)
        task = asyncio.create_task(self._run(job, loaded.classifier, config, shots, augment))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))
        return job_id

    def _fit(self, classifier, config: TipConfig, shots: int, augment: int):
        model = self.registry.model
        source = stored_examples(self.store, classifier.class_set)
        examples = embed_examples(source, ModelSource.of(model.clip), self.store, model.limits,
                                  augment=augment, workers=1).take(shots)
        record = build_adapter(classifier, examples, config)
        put_adapter(self.store, record, activate=True)
        return record

    async def _run(self, job: JobRecord, classifier, config: TipConfig, shots: int, augment: int):
        try:
            async with self._one_at_a_time:
                job.mark("running", started_at=utc_now())
                job.updated_at = utc_now()
                await self._blocking(self.store.put_job, job)
                record = await asyncio.to_thread(self._fit, classifier, config, shots, augment)
                self.registry.install(classifier, record)
                job.done = job.total
                job.mark("done", adapter=record.key, notes=record.notes, validation=record.validation,
                         finished_at=utc_now())
                log.info("job %s done: class set %s serves adapter %s", job.id, classifier.class_set.name,
                         record.key)
        except asyncio.CancelledError:
            job.mark("failed", error="the server shut down before the job finished")
            raise
        except Exception as exc:
            log.exception("adapter job %s failed", job.id)
            job.mark("failed", error=getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}",
                     finished_at=utc_now())
        finally:
            job.updated_at = utc_now()
            try:
                await asyncio.to_thread(self.store.put_job, job)
            except StoreError:
                log.warning("adapter job %s: final state not saved", job.id)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
