"""The API's background jobs, of two kinds, progress in the store: class-set jobs (describe +
embed, kind ``class-set``) and adapter jobs (fit a few-shot adapter, kind ``adapter``).

The job record lives in the store under the job id (:class:`gloss_gen.data.job_records.JobRecord`, written
only through ``Store.update_job``), so any replica sharing the store answers ``GET /v1/jobs/{id}``.
Where a job runs is a :class:`JobBackend`, chosen once in ``ServerRuntime``: in this process
(:class:`InProcessJobs`, which runs each kind's :data:`Work`) or on the worker queue
(:class:`QueuedJobs`).

A job running in a server process holds a lease in its record (``owner``, ``lease_expires_at``)
that the process renews every :attr:`InProcessJobs.renew_every_s` while the job runs. A process
killed mid-job stops renewing it: the next reader of the record, or the next server to start on
the store, marks the job failed with the reason. A store outage is not a dead owner: a renewal
that fails is retried at once and again every :data:`RENEW_RETRY_MAX_S`, the job keeps its work in
memory, and a store write the job needs (its classifier) is retried while its stored lease holds,
so an outage shorter than the lease (``3 x VGLOSS_QUEUE_LEASE_S``) does not fail a running job;
the stored expiry includes that slack. A final state that cannot be written (the store is down
when the job ends) is retried in the background until the store is back. A job a reader has
already marked failed (its lease really ran out) stays failed: its owner does not rewrite it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from app.services.description_builds import describe
from app.services.registry import ClassifierRegistry
from app.services.service_errors import JobNotFound, StoreUnavailable, TooManyJobs
from gloss_gen.classify.pipeline import store_classifier
from gloss_gen.core.config import Settings
from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.descriptions import DescriptionRecord, utc_now
from gloss_gen.data.job_records import JobRecord
from gloss_gen.data.store import Store, StoreError
from gloss_gen.queue import submit_adapter_job, submit_describe_job

log = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL_S = 0.5
JOB_KIND = "class-set"
ADAPTER_JOB_KIND = "adapter"
LEASED_KINDS = (JOB_KIND, ADAPTER_JOB_KIND)
"""Kinds a server process runs under a lease (queued ``describe`` jobs are the workers' to track)."""
ON_QUEUE = "queue"
"""``runner`` of an adapter job handed to the workers: arq's lease covers it, not the record's."""
FINAL_WRITE_RETRY_MAX_S = 5.0
RENEW_EVERY_MAX_S = 1.0
"""A running job's lease is renewed this often at most (every third of the lease if that is shorter)."""
RENEW_RETRY_MAX_S = 0.25
"""A renewal the store refused is retried this often (with back-off from 50 ms) until it succeeds."""
FINAL_WRITE_RETRY_FOR_S = 3600.0
ORPHANED = "the server running this job stopped before it finished; submit it again"


def lease_expired(job: JobRecord, now: float | None = None) -> bool:
    """An unfinished in-process job whose server stopped renewing its lease."""
    if job.kind not in LEASED_KINDS or job.finished or job.extra.get("runner") == ON_QUEUE:
        return False
    expires = job.extra.get("lease_expires_at")
    return not isinstance(expires, (int, float)) or expires < (time.time() if now is None else now)


def _fail_orphaned(job: JobRecord) -> None:
    if lease_expired(job):  # checked again inside the compare-and-set: the owner may have renewed
        job.mark("failed", error=ORPHANED, finished_at=utc_now())


def reconcile_orphaned_jobs(store: Store) -> int:
    """Blocking: mark every in-process job whose lease expired as failed; how many were."""
    count = 0
    for job_id in store.job_ids():
        job = store.get_job(job_id)
        if job is not None and lease_expired(job):
            updated = store.update_job(job_id, _fail_orphaned)
            if updated is not None and updated.state == "failed":
                count += 1
                log.warning("job %s: %s", job_id, ORPHANED)
    return count
MAX_ACTIVE_JOBS = 16
"""Jobs (of every kind) one process holds queued or running; more are refused (429 too_many_jobs)."""


class JobProgress(Protocol):
    """What a job's work gets from its runner: calling it has ``job.done``/``job.total`` written
    soon; :meth:`store_call` runs a blocking store call, retried through an outage while the job's
    lease holds."""

    def __call__(self) -> None: ...

    async def store_call(self, fn: Callable, *args): ...


Work = Callable[[JobRecord, dict, JobProgress], Awaitable[dict]]
"""One kind's job run in this process: ``work(job, spec, progress)`` does it, moving ``job.done``
and ``job.total`` (``progress()`` has them written soon), and returns the fields of its ``done``
record; raising fails the job with the message."""


class JobBackend(Protocol):
    """Runs jobs; the job's record in the store says how far each one got."""

    async def start(self, job: JobRecord, spec: dict) -> None:
        """Record ``job`` as queued and set it going with its kind's ``spec`` (JSON); raises
        ``StoreError`` if the store fails."""

    async def close(self) -> None:
        """Stop what runs in this process."""


class JobRunner:
    """The API's jobs: submit one to the backend, read any job's record from the store."""

    def __init__(self, store: Store, backend: JobBackend) -> None:
        self.store = store
        self.backend = backend

    async def submit(self, kind: str, class_set: ClassSet, method: str, spec: dict | None = None,
                     **fields) -> str:
        """Start a ``kind`` job over ``class_set``; ``fields`` go into its record. The job id."""
        job = JobRecord.new(uuid.uuid4().hex, kind, class_set, method, **fields)
        spec = {"class_set": class_set.to_dict(), "method": method, **(spec or {})}
        try:
            await self.backend.start(job, spec)
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return job.id

    async def get(self, job_id: str) -> JobRecord:
        try:
            job = await asyncio.to_thread(self.store.get_job, job_id)
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if job is None:
            raise JobNotFound(job_id)
        if lease_expired(job):
            try:
                job = await asyncio.to_thread(self.store.update_job, job_id, _fail_orphaned) or job
            except StoreError as exc:
                raise StoreUnavailable(str(exc)) from exc
        return job

    async def reconcile(self) -> None:
        """At start-up: jobs left running by a server that died are marked failed, not left running."""
        try:
            count = await asyncio.to_thread(reconcile_orphaned_jobs, self.store)
        except StoreError as exc:
            log.warning("could not check for jobs left by a stopped server: %s", exc)
            return
        if count:
            log.warning("marked %d job(s) left running by a stopped server as failed", count)

    async def close(self) -> None:
        await self.backend.close()


class ClassSetWork:
    """A class-set job in this process: describe, embed, store as active and serve at once."""

    def __init__(self, settings: Settings, registry: ClassifierRegistry) -> None:
        self.settings = settings
        self.registry = registry

    async def __call__(self, job: JobRecord, spec: dict, progress: JobProgress) -> dict:
        class_set, method = ClassSet.from_dict(spec["class_set"]), spec["method"]
        last_write = 0.0

        def on_record(record: DescriptionRecord, done: int, total: int) -> None:
            nonlocal last_write
            job.done, job.total = done, total
            job.count_failure(record)
            now = time.monotonic()
            if now - last_write >= PROGRESS_WRITE_INTERVAL_S or done == total:
                last_write = now
                progress()

        description_set = await describe(class_set, method, self.settings, on_record=on_record)
        job.done = len(description_set.records)
        if description_set.failed and len(description_set.failed) == len(description_set.records):
            raise RuntimeError("every class failed to be described; no classifier was built")
        # embedded without the store, then written while the lease holds: a store outage during
        # the job does not lose the embedding
        classifier = await self.registry.build(description_set, write=False)
        await progress.store_call(store_classifier, self.registry.store, description_set, classifier)
        current = self.registry.loaded(class_set.name)
        self.registry.install(classifier, pairs=current.pairs if current is not None else None)
        log.info("job %s done: class set %s serves descriptions %s", job.id, class_set.name, description_set.id)
        return {"classifier": classifier.key, "descriptions": description_set.id}


class QueuedJobs:
    """Jobs handed to ``vgloss worker``s: they survive this replica. A class-set job becomes the
    queue's describe job (its own record, kind ``describe``); an adapter job keeps its record and
    runs as one ``adapter_job`` task. Either way the worker makes the result active in the store,
    where every replica picks it up."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    async def start(self, job: JobRecord, spec: dict) -> None:
        import redis

        try:
            if job.kind == JOB_KIND:
                class_set = ClassSet.from_dict(spec["class_set"])
                await submit_describe_job(class_set, job.method, settings=self.settings, store=self.store,
                                          job_id=job.id)
            else:
                job.mark(runner=ON_QUEUE)
                await submit_adapter_job(job, spec, settings=self.settings, store=self.store)
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        log.info("job %s: %s %s for class set %s queued for the workers", job.id, job.kind, job.method,
                 job.class_set)

    async def close(self) -> None:
        pass


class InProcessJobs:
    """Jobs as tasks in this process, one at a time: embedding and fitting compete with
    classification for the CPU or GPU. ``work`` runs each kind; what it builds is served at once."""

    def __init__(self, settings: Settings, store: Store, work: dict[str, Work]) -> None:
        self.settings = settings
        self.store = store
        self.work = work
        self._one_at_a_time = asyncio.Semaphore(1)
        self._tasks: dict[str, asyncio.Task] = {}
        self._final_writes: set[asyncio.Task] = set()
        self.owner = uuid.uuid4().hex
        self.lease_s = max(3.0 * settings.queue_lease_s, 1.0)
        self.renew_every_s = min(self.lease_s / 3, RENEW_EVERY_MAX_S)
        self._held_until: dict[str, float] = {}  # job id -> the lease expiry last written
        self._submitting = 0
        # one writer thread keeps progress writes in order without blocking the event loop
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vgloss-job-state")

    async def start(self, job: JobRecord, spec: dict) -> None:
        work = self.work[job.kind]
        if len(self._tasks) + self._submitting >= MAX_ACTIVE_JOBS:
            raise TooManyJobs(MAX_ACTIVE_JOBS)
        self._renew(job)
        self._submitting += 1
        try:
            await asyncio.to_thread(self.store.put_job, job)
        finally:
            self._submitting -= 1
        self._held_until[job.id] = job.extra["lease_expires_at"]
        task = asyncio.create_task(self._run(job, spec, work), name=f"vgloss-job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))
        log.info("job %s: %s %s for class set %s (%d classes)", job.id, job.kind, job.method, job.class_set,
                 job.total)

    async def _run(self, job: JobRecord, spec: dict, work: Work) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(job), name=f"vgloss-job-lease-{job.id}")
        try:
            async with self._one_at_a_time:
                job.mark("running", started_at=utc_now())
                await self._write(job)
                result = await work(job, spec, _Progress(self, job))
                job.mark("done", finished_at=utc_now(), **result)
        except asyncio.CancelledError:
            heartbeat.cancel()
            job.mark("failed", error="the server shut down before the job finished")
            await self._write(job, quiet=True)
            raise
        except Exception as exc:
            log.exception("job %s failed", job.id)
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            job.mark("failed", error=message, finished_at=utc_now())
        heartbeat.cancel()
        await self._write_final(job)
        self._held_until.pop(job.id, None)

    def _renew(self, job: JobRecord) -> None:
        # the slack covers the wait for the next renewal and its retry, so an outage shorter than
        # the lease ends before the stored expiry
        slack = self.renew_every_s + RENEW_RETRY_MAX_S
        job.mark(owner=self.owner, lease_expires_at=time.time() + self.lease_s + slack)

    async def _heartbeat(self, job: JobRecord) -> None:
        """Renew the lease; a renewal the store refuses is retried with back-off, not given up."""
        delay = self.renew_every_s
        while True:
            await asyncio.sleep(delay)
            self._renew(job)
            try:
                await self._write(job)
            except StoreError as exc:
                if delay >= self.renew_every_s:
                    log.warning("job %s: lease not renewed (%s); retrying", job.id, exc)
                    delay = 0.05
                else:
                    delay = min(delay * 2, RENEW_RETRY_MAX_S)
                continue
            if delay < self.renew_every_s:
                log.info("job %s: lease renewed after a store outage", job.id)
            delay = self.renew_every_s

    async def store_call(self, job: JobRecord, fn: Callable, *args):
        """``fn(*args)`` in a thread; a :class:`StoreError` is retried with back-off while the job's
        stored lease holds (the outage may be shorter than the lease), then raised."""
        delay = 0.05
        while True:
            try:
                return await asyncio.to_thread(fn, *args)
            except StoreError as exc:
                if time.time() + delay >= self._held_until.get(job.id, 0.0):
                    raise
                if delay == 0.05:
                    log.warning("job %s: the store is unavailable (%s); retrying while the lease holds",
                                job.id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RENEW_RETRY_MAX_S)

    async def _write_final(self, job: JobRecord) -> None:
        """The final state, retried in the background while the store is down, so the record
        does not stay ``running`` after the store comes back."""
        try:
            await self._write(job)
        except StoreError as exc:
            log.warning("job %s: final state %s not saved yet (%s); retrying until the store is back",
                        job.id, job.state, exc)
            task = asyncio.create_task(self._retry_final(job), name=f"vgloss-job-final-{job.id}")
            self._final_writes.add(task)
            task.add_done_callback(self._final_writes.discard)

    async def _retry_final(self, job: JobRecord) -> None:
        delay, deadline = 0.25, time.monotonic() + FINAL_WRITE_RETRY_FOR_S
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, FINAL_WRITE_RETRY_MAX_S)
            try:
                await self._write(job)
            except StoreError:
                continue
            log.info("job %s: final state %s saved", job.id, job.state)
            return
        log.error("job %s: final state %s never saved; its lease will expire", job.id, job.state)

    def _store(self, job_id: str, change: Callable[[JobRecord], None], expires: object) -> None:
        """Blocking, on the writer thread: write the record and note the lease expiry it carries."""
        self.store.update_job(job_id, change)
        if isinstance(expires, (int, float)) and job_id in self._held_until:
            self._held_until[job_id] = max(self._held_until[job_id], expires)

    def _write_soon(self, job: JobRecord) -> None:
        future = self._writer.submit(self._store, job.id, _becomes(job), job.extra.get("lease_expires_at"))
        future.add_done_callback(lambda f: f.exception() and log.warning("job %s: progress not saved: %s",
                                                                          job.id, f.exception()))

    async def _write(self, job: JobRecord, quiet: bool = False) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer, self._store, job.id, _becomes(job),
                                       job.extra.get("lease_expires_at"))
        except StoreError:
            if not quiet:
                raise
            log.warning("job %s: final state %s not saved (store unavailable)", job.id, job.state)

    async def close(self) -> None:
        for task in list(self._tasks.values()) + list(self._final_writes):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), *self._final_writes, return_exceptions=True)
        self._writer.shutdown(wait=True)


def _becomes(job: JobRecord) -> Callable[[JobRecord], None]:
    """A change that makes the stored record this process's copy of it, as it is now (this
    process is the job's only writer)."""
    snapshot = copy.deepcopy(job)

    def change(stored: JobRecord) -> None:
        if stored.state == "failed" and stored.extra.get("error") == ORPHANED:
            return  # a reader found the lease run out and told the client so: that verdict stands
        vars(stored).update(copy.deepcopy(vars(snapshot)))

    return change


class _Progress:
    """A job's :class:`JobProgress` in this process."""

    def __init__(self, jobs: InProcessJobs, job: JobRecord) -> None:
        self.jobs, self.job = jobs, job

    def __call__(self) -> None:
        self.jobs._write_soon(self.job)

    async def store_call(self, fn: Callable, *args):
        return await self.jobs.store_call(self.job, fn, *args)
