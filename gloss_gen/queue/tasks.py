"""What every queued job step shares: find the unfinished job, mark it started, run the blocking
work in a thread, retry on a store outage, record a failure, record the result.

The describe job's embed step (:func:`gloss_gen.queue.worker.embed_job`) and the adapter job
(:func:`gloss_gen.queue.adapter_tasks.adapter_job`) are both one call of :func:`run_job_step`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gloss_gen.data.job_records import JobRecord
from gloss_gen.data.store import Store, StoreError

log = logging.getLogger(__name__)

#: Attempts at one task before it is recorded as failed (each one ended by a dying worker).
MAX_ATTEMPTS = 3


async def unfinished_job(store: Store, job_id: str) -> tuple[JobRecord, dict] | str:
    """The job's record and spec for a task to work on, or why there is nothing to do."""
    job = await asyncio.to_thread(store.get_job, job_id)
    spec = await asyncio.to_thread(store.get_job_spec, job_id)
    if job is None or spec is None:
        return "job gone"
    if job.finished:
        return "already finished"
    return job, spec


async def run_job_step(
    ctx: dict,
    job_id: str,
    step: str,
    work: Callable[[dict], dict],
    start: Callable[[JobRecord], None],
    finish: Callable[[JobRecord, dict], None],
    failure_message: Callable[[Exception], str],
    give_up_after_attempts: bool = False,
    finished_at: Callable[[], str] | None = None,
) -> dict | str:
    """Run ``work(spec)`` (blocking, in a thread) for an unfinished job; its result dict, or a
    short word when there is nothing to return (``job gone``, ``already finished``, ``failed``).

    A :class:`StoreError` retries the task (arq ``Retry``) while attempts remain; any other error
    marks the job failed with ``failure_message(exc)``. With ``give_up_after_attempts``, a task
    that has already been started :data:`MAX_ATTEMPTS` times (each ended by a dying worker) is
    marked failed instead of run again. ``finished_at`` stamps failures with a time.
    """
    from arq.worker import Retry

    store: Store = ctx["store"]
    found = await unfinished_job(store, job_id)
    if isinstance(found, str):
        return found
    _, spec = found

    def fail(message: str) -> Callable[[JobRecord], None]:
        extra = {"finished_at": finished_at()} if finished_at else {}
        return lambda job: job.mark("failed", error=message, **extra)

    if give_up_after_attempts and ctx["job_try"] > MAX_ATTEMPTS:
        await asyncio.to_thread(store.update_job, job_id,
                                fail(f"a worker stopped while {step} {MAX_ATTEMPTS} times"))
        return "failed"
    await asyncio.to_thread(store.update_job, job_id, start)
    try:
        result = await asyncio.to_thread(work, spec)
    except Exception as exc:
        if isinstance(exc, StoreError) and ctx["job_try"] < MAX_ATTEMPTS:
            log.warning("%s (job %s) could not use the store, retrying: %s", step, job_id, exc)
            raise Retry(defer=5) from exc
        log.exception("%s (job %s) failed", step, job_id)
        await asyncio.to_thread(store.update_job, job_id, fail(failure_message(exc)))
        return "failed"
    await asyncio.to_thread(store.update_job, job_id, lambda job: finish(job, result))
    return result
