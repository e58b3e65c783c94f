"""Describe jobs on a Redis queue: one task per class, any number of ``vgloss worker`` processes.

The engine is arq: asyncio-native (the LLM client is async, so one worker process keeps N
requests in flight), Redis-only, and its job ids dedupe enqueues. Jobs and results are JSON
here — arq's default serializer is pickle, which this package never uses.

:mod:`.client` submits a job and follows it; :mod:`.worker` runs the tasks. What a job is and
how far it got lives in the store (:class:`gloss_gen.data.job_records.JobRecord`, its spec and its results,
see :mod:`gloss_gen.data.store`); on queue ``settings.queue_name`` go ``describe_class(job,
class_id)`` with arq job id ``{job}:{class_id}``, and once every class is recorded
``embed_job(job)`` with id ``{job}:embed``, which builds and activates the classifier. A result
is stored only if its class has none (in one transaction with the job record), so every class is
recorded, and counted, exactly once.

A worker that dies mid-task loses nothing: arq leaves the task in the queue, and a worker's
claim on it (arq's in-progress key) lasts only ``queue_lease_s`` unless the worker renews it, so
another worker re-runs the task within about ``queue_lease_s`` of the death. A class recorded
before the death is skipped on the re-run without calling the LLM.

Adapter jobs (``POST /v1/class-sets/{name}/adapters`` on a server with ``VGLOSS_JOBS_ON_QUEUE``)
are one task, ``adapter_job(job)`` with id ``{job}:adapter`` (:mod:`.adapter_tasks`): it fits the
adapter from the examples in the store and makes it active there; ClipFit writes its delta under
the worker's data directory and resumes from its epoch checkpoint when the task is re-run.
"""

from gloss_gen.queue.client import (
    QueueError,
    adapter_task_id,
    describe_task_id,
    enqueue_describe_job,
    enqueue_or_attach_describe_job,
    submit_adapter_job,
    submit_describe_job,
    wait_for_job,
    watch_job,
    worker_serving,
)
from gloss_gen.queue.worker import MAX_ATTEMPTS, create_worker, run_worker

__all__ = [
    "MAX_ATTEMPTS",
    "QueueError",
    "adapter_task_id",
    "create_worker",
    "describe_task_id",
    "enqueue_describe_job",
    "enqueue_or_attach_describe_job",
    "submit_adapter_job",
    "submit_describe_job",
    "wait_for_job",
    "run_worker",
    "watch_job",
    "worker_serving",
]
