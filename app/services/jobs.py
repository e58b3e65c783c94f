"""Class-set jobs: describe + embed in the background, progress in the store.

The job state lives in the store under the job id (the same record ``gloss_gen.queue`` writes for
queued describe jobs), so any replica sharing the store answers ``GET /v1/jobs/{id}``. Jobs run one
at a time per process: embedding competes with classification for the CPU or GPU.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from gloss_gen.classsets import ClassSet
from gloss_gen.config import Settings
from gloss_gen.descriptions import DescriptionRecord, utc_now
from gloss_gen.jobstate import count_failure, new_job_state
from gloss_gen.store import Store, StoreError

from .describing import describe
from .errors import JobNotFound, StoreUnavailable
from .registry import ClassifierRegistry

log = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL_S = 0.5


class JobRunner:
    def __init__(self, settings: Settings, store: Store, registry: ClassifierRegistry) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self._one_at_a_time = asyncio.Semaphore(1)
        self._tasks: dict[str, asyncio.Task] = {}
        # one writer thread keeps progress writes in order without blocking the event loop
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vgloss-job-state")

    async def submit(self, class_set: ClassSet, method: str) -> str:
        job_id = uuid.uuid4().hex
        if self.settings.jobs_on_queue:
            return await self._submit_to_queue(job_id, class_set, method)
        state = new_job_state(job_id, "class-set", class_set, method, model=self.registry.model.model_id)
        try:
            await asyncio.to_thread(self.store.put_class_set, class_set)
            await asyncio.to_thread(self.store.put_job, job_id, state)
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc
        task = asyncio.create_task(self._run(job_id, state, class_set, method), name=f"vgloss-job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))
        log.info("job %s: %s for class set %s (%d classes)", job_id, method, class_set.name, len(class_set))
        return job_id

    async def _submit_to_queue(self, job_id: str, class_set: ClassSet, method: str) -> str:
        """Hand the job to ``vgloss worker``s: it survives this replica, and its embed step makes the
        classifier active in the store, where every replica picks it up."""
        import redis

        from gloss_gen.queue import submit_describe_job

        try:
            await asyncio.to_thread(self.store.put_class_set, class_set)
            await submit_describe_job(class_set, method, settings=self.settings, job_id=job_id)
        except (StoreError, redis.RedisError, OSError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        log.info("job %s: %s for class set %s (%d classes) queued for the workers", job_id, method,
                 class_set.name, len(class_set))
        return job_id

    async def get(self, job_id: str) -> dict:
        try:
            state = await asyncio.to_thread(self.store.get_job, job_id)
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if state is None:
            raise JobNotFound(job_id)
        return state

    async def _run(self, job_id: str, state: dict, class_set: ClassSet, method: str) -> None:
        last_write = 0.0

        def on_record(record: DescriptionRecord, done: int, total: int) -> None:
            nonlocal last_write
            state["done"], state["total"] = done, total
            count_failure(state, record)
            now = time.monotonic()
            if now - last_write >= PROGRESS_WRITE_INTERVAL_S or done == total:
                last_write = now
                self._write_soon(job_id, state)

        try:
            async with self._one_at_a_time:
                self._update(state, state="running", started_at=utc_now())
                await self._write(job_id, state)
                description_set = await describe(class_set, method, self.settings, on_record=on_record)
                state["done"] = len(description_set.records)
                if description_set.failed and len(description_set.failed) == len(description_set.records):
                    raise RuntimeError("every class failed to be described; no classifier was built")
                classifier = await self.registry.build(description_set)
                self.registry.install(classifier)
                self._update(state, state="done", finished_at=utc_now(), classifier=classifier.key,
                             descriptions=description_set.id)
                log.info("job %s done: class set %s serves descriptions %s", job_id, class_set.name,
                         description_set.id)
        except asyncio.CancelledError:
            self._update(state, state="failed", error="the server shut down before the job finished")
            await self._write(job_id, state, quiet=True)
            raise
        except Exception as exc:
            log.exception("job %s failed", job_id)
            self._update(state, state="failed", error=f"{type(exc).__name__}: {exc}", finished_at=utc_now())
        await self._write(job_id, state, quiet=True)

    @staticmethod
    def _update(job: dict, **changes) -> None:
        job.update(changes, updated_at=utc_now())

    def _write_soon(self, job_id: str, state: dict) -> None:
        snapshot = dict(state, errors=list(state["errors"]), updated_at=utc_now())
        future = self._writer.submit(self.store.put_job, job_id, snapshot)
        future.add_done_callback(lambda f: f.exception() and log.warning("job %s: progress not saved: %s",
                                                                          job_id, f.exception()))

    async def _write(self, job_id: str, state: dict, quiet: bool = False) -> None:
        snapshot = dict(state, errors=list(state["errors"]))
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer, self.store.put_job, job_id, snapshot)
        except StoreError:
            if not quiet:
                raise
            log.warning("job %s: final state %s not saved (store unavailable)", job_id, state["state"])

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._writer.shutdown(wait=True)
