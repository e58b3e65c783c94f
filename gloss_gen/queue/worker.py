"""The worker side of the queue: the describe tasks, the worker that runs them and the adapter
task of :mod:`.adapter_tasks`.

Job state is read and written through the store (:meth:`gloss_gen.data.store.Store.update_job`); the
store calls block, so the tasks make them in threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gloss_gen.classify.pipeline import build_and_store
from gloss_gen.core.config import Settings, get_settings
from gloss_gen.data import wordnet
from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.descriptions import DescriptionRecord, assemble, utc_now, write_jsonl
from gloss_gen.data.job_records import JobRecord
from gloss_gen.data.store import Store, StoreError, open_store
from gloss_gen.describe.describe_job import DescribeOptions, describe_one, prepare
from gloss_gen.describe.llm import RetryPolicy, clip_token_count, make_client
from gloss_gen.model.clip_models import get_model
from gloss_gen.queue.adapter_tasks import ADAPTER_RESULT_KEEP_S, ADAPTER_TIMEOUT_S, adapter_job
from gloss_gen.queue.client import HEALTH_CHECK_S, dumps, embed_task_id, loads, redis_settings
from gloss_gen.queue.tasks import MAX_ATTEMPTS, run_job_step

log = logging.getLogger(__name__)

#: arq's limits per task; a class is bounded more tightly by its LLM options (_class_time_limit_s).
DESCRIBE_TIMEOUT_S = 4 * 3600
EMBED_TIMEOUT_S = 3600
#: arq result of an embed task, kept so a late duplicate enqueue of ``{job}:embed`` is refused.
EMBED_RESULT_KEEP_S = 7 * 24 * 3600
POLL_DELAY_S = 0.1


@dataclass
class _LoadedJob:
    spec: dict
    class_set: ClassSet
    index: dict[str, int]
    context: Any = None  # gloss_gen.describe.describe_job.DescribeContext
    error: str | None = None  # why prepare() failed on this worker: every class records it

    @property
    def method(self) -> str:
        return self.spec["method"]

    def error_record(self, class_id: str, error: str) -> DescriptionRecord:
        index = self.index[class_id]
        record = DescriptionRecord.for_class(self.class_set.classes[index], self.class_set, index, self.method)
        record.provenance = {"method": self.method, "created_at": utc_now()}
        record.error = error
        return record


async def _load_job(ctx: dict, job_id: str) -> _LoadedJob | None:
    """The job's spec and prepared describe context, once per job per worker process."""
    jobs: dict[str, asyncio.Task] = ctx["jobs"]
    task = jobs.get(job_id)
    if task is None:
        task = asyncio.ensure_future(_prepare_job(ctx, job_id))
        jobs[job_id] = task
        while len(jobs) > 16:  # jobs mostly run one after another; keep the recent few
            jobs.pop(next(iter(jobs)))
    try:
        return await asyncio.shield(task)
    except Exception:
        if jobs.get(job_id) is task:
            del jobs[job_id]  # a store error: the next task tries again
        raise


async def _prepare_job(ctx: dict, job_id: str) -> _LoadedJob | None:

    spec = await asyncio.to_thread(ctx["store"].get_job_spec, job_id)
    if spec is None:
        return None
    class_set = ClassSet.from_dict(spec["class_set"])
    loaded = _LoadedJob(spec, class_set, class_set.index_of())
    try:
        options = DescribeOptions.from_dict(spec["options"])
        # prepare() reads WordNet and ranks confusables: CPU work, kept off the event loop
        loaded.context = await asyncio.to_thread(prepare, class_set, options)
    except Exception as exc:  # e.g. no WordNet or no import file on this host
        log.exception("job %s cannot be prepared on this worker", job_id)
        loaded.error = f"{type(exc).__name__}: {exc}"
    return loaded


def _llm_client(ctx: dict, options) -> Any:
    """One OpenAI client per endpoint per worker process, shared by its tasks."""

    key = (options.base_url, options.timeout)
    if key not in ctx["clients"]:
        ctx["clients"][key] = make_client(base_url=options.base_url, timeout=options.timeout)
    return ctx["clients"][key]


def _class_time_limit_s(options) -> float:
    """Upper bound on one class: every LLM attempt timing out, plus the longest waits between."""

    longest_wait = max(options.retry_max_delay, RetryPolicy().max_retry_after_s)
    return options.timeout * (options.max_retries + 1) + longest_wait * options.max_retries + 30


async def _finish_if_complete(ctx: dict, job_id: str) -> None:
    """Enqueue the embed step once every class has a result; its fixed id makes this idempotent."""
    store: Store = ctx["store"]
    job = await asyncio.to_thread(store.get_job, job_id)
    if job is None:
        return
    if await asyncio.to_thread(store.job_result_count, job_id) >= job.total:
        await ctx["redis"].enqueue_job("embed_job", job_id, _job_id=embed_task_id(job_id))


async def describe_class(ctx: dict, job_id: str, class_id: str) -> str:
    """arq task: describe one class of a job and record it, unless it is recorded already."""
    from arq.worker import Retry
    from redis.exceptions import RedisError

    store: Store = ctx["store"]
    try:
        if await asyncio.to_thread(store.has_job_result, job_id, class_id):
            await _finish_if_complete(ctx, job_id)
            return "already recorded"
        loaded = await _load_job(ctx, job_id)
        if loaded is None:
            return "job gone"
        if class_id not in loaded.index:
            return "class not in the job"
        if loaded.error is not None:
            record = loaded.error_record(class_id, loaded.error)
        elif ctx["job_try"] > MAX_ATTEMPTS:
            record = loaded.error_record(class_id, f"a worker stopped while describing this class {MAX_ATTEMPTS} times")
        else:
            record = await _describe(ctx, loaded, class_id)
        recorded = await asyncio.to_thread(store.update_job, job_id, lambda job: job.count(record), record)
        await _finish_if_complete(ctx, job_id)
        return ("recorded" if recorded else "recorded elsewhere") + ("" if record.ok else " (failed)")
    except (StoreError, RedisError) as exc:
        # a Redis blip must not drop the class: arq runs the task again
        log.warning("job %s class %s: Redis error, retrying: %s", job_id, class_id, exc)
        raise Retry(defer=2) from exc


async def _describe(ctx: dict, loaded: _LoadedJob, class_id: str) -> DescriptionRecord:

    options = loaded.context.options
    limit_s = _class_time_limit_s(options)
    try:
        client = None if loaded.context.offline is not None else _llm_client(ctx, options)
        return await asyncio.wait_for(describe_one(loaded.context, loaded.index[class_id], client), limit_s)
    except asyncio.TimeoutError:
        return loaded.error_record(class_id, f"no answer within {limit_s:.0f}s")
    except Exception as exc:  # describe_one reports LLM failures itself; e.g. no OPENAI_API_KEY here
        log.exception("describing class %s failed", class_id)
        return loaded.error_record(class_id, f"{type(exc).__name__}: {exc}")


async def embed_job(ctx: dict, job_id: str) -> str:
    """arq task: assemble the job's results in class-set order, build and activate the classifier."""
    store: Store = ctx["store"]

    def start(job: JobRecord) -> None:
        job.mark("embedding", embed_runs=job.extra.get("embed_runs", 0) + 1)

    def finish(job: JobRecord, result: dict) -> None:
        job.mark("failed" if "error" in result else "done", **result, finished_at=utc_now())

    def work(spec: dict) -> dict:
        return _embed(ctx, spec, store.job_results(job_id))

    result = await run_job_step(ctx, job_id, "the embed step", work, start, finish,
                                failure_message=lambda exc: f"embed: {type(exc).__name__}: {exc}")
    return result if isinstance(result, str) else result.get("classifier", "failed")


def _embed(ctx: dict, spec: dict, records: list[DescriptionRecord]) -> dict:

    class_set = ClassSet.from_dict(spec["class_set"])
    description_set = assemble(class_set, records, method=spec["method"])
    if spec.get("out"):
        out = Path(spec["out"])
        out.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(out, description_set.records)
    if len(description_set.failed) == len(description_set.records):
        return {"error": "every class failed to be described; no classifier was built"}
    # the job's model on this worker's device and precision, loaded once per process
    model = get_model(ctx["settings"], name=spec["model"], pretrained=spec["pretrained"])
    classifier = build_and_store(model, description_set, ctx["store"])
    return {"classifier": classifier.key, "descriptions": description_set.id, "model": classifier.model_id}


def _make_worker_class():
    from arq.constants import in_progress_key_prefix
    from arq.worker import Worker

    class LeasedWorker(Worker):
        """An arq worker whose claim on a running task is a short lease it keeps renewing.

        arq's claim otherwise lasts the job timeout + 10 s, which must exceed the slowest LLM
        call; a renewed short lease lets a dead worker's task run again within ``lease_s``.
        """

        def __init__(self, *args: Any, lease_s: float, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.in_progress_timeout_s = lease_s
            self._lease_ms = int(lease_s * 1000)
            self._renew_every_s = lease_s / 3
            self._renewed_at = 0.0

        async def heart_beat(self) -> None:
            await super().heart_beat()
            now = time.monotonic()
            running = [job_id for job_id, task in self.tasks.items() if not task.done()]
            if running and now - self._renewed_at >= self._renew_every_s:
                self._renewed_at = now
                async with self.pool.pipeline(transaction=False) as pipe:
                    for job_id in running:
                        pipe.pexpire(in_progress_key_prefix + job_id, self._lease_ms)
                    await pipe.execute()

    return LeasedWorker


def _warm_up() -> None:
    """Load what the first task would otherwise load on the event loop: the openai client
    library, WordNet, CLIP's BPE vocabulary."""
    import openai  # noqa: F401

    try:
        wordnet.get_wordnet()
    except wordnet.WordNetMissingError as exc:
        log.warning("no WordNet on this worker (%s); vgloss and wordnet jobs will fail here", exc)
    clip_token_count("a photo of a thing")


def create_worker(
    settings: Settings | None = None,
    *,
    concurrency: int | None = None,
    burst: bool = False,
    handle_signals: bool = True,
):
    """An arq worker for the describe queue (``vgloss worker``); call ``.run()`` on it."""
    from arq.worker import func

    settings = settings or get_settings()
    arq_redis = redis_settings(settings)
    concurrency = concurrency or settings.llm_concurrency

    async def on_startup(ctx: dict) -> None:
        # Before taking tasks: loading these stalls the event loop for seconds, long enough for a
        # claim on a running task to lapse and another worker to run it again.
        await asyncio.to_thread(_warm_up)
        ctx.update(
            settings=settings,
            store=open_store(settings),
            jobs={},
            clients={},
        )
        log.info("vgloss worker ready: queue %s, concurrency %d, lease %.1fs, store %s",
                 settings.queue_name, concurrency, settings.queue_lease_s, ctx["store"].describe())

    async def on_shutdown(ctx: dict) -> None:
        for client in ctx.get("clients", {}).values():
            await client.close()

    worker_class = _make_worker_class()
    return worker_class(
        functions=[
            # keep_result=0: the job's results in the store are the result; task ids only dedupe enqueues
            func(describe_class, name="describe_class", timeout=DESCRIBE_TIMEOUT_S, keep_result=0),
            func(embed_job, name="embed_job", timeout=EMBED_TIMEOUT_S, keep_result=EMBED_RESULT_KEEP_S),
            func(adapter_job, name="adapter_job", timeout=ADAPTER_TIMEOUT_S, keep_result=ADAPTER_RESULT_KEEP_S),
        ],
        queue_name=settings.queue_name,
        redis_settings=arq_redis,
        burst=burst,
        max_jobs=concurrency,
        poll_delay=POLL_DELAY_S,
        # above MAX_ATTEMPTS, so describe_class itself records a class that keeps killing workers
        max_tries=MAX_ATTEMPTS + 3,
        health_check_interval=HEALTH_CHECK_S,
        job_serializer=dumps,
        job_deserializer=loads,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        handle_signals=handle_signals,
        lease_s=settings.queue_lease_s,
    )


RECONNECT_MAX_S = 30.0


def run_worker(
    settings: Settings | None = None,
    *,
    concurrency: int | None = None,
    burst: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run a worker until it is stopped, riding out Redis outages: a lost connection (arq raises
    it out of its poll loop) is logged and a new worker connects again with back-off, up to
    ``RECONNECT_MAX_S`` between tries. Tasks that were running are re-run by whichever worker
    next holds their lease; recorded classes are never described twice."""
    import redis

    delay = 1.0
    while True:
        worker = create_worker(settings, concurrency=concurrency, burst=burst)
        started = time.monotonic()
        try:
            worker.run()
            return
        except (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError) as exc:
            if time.monotonic() - started > RECONNECT_MAX_S:
                delay = 1.0  # it ran a while: a fresh outage, not the same one
            log.warning("lost the connection to Redis (%s); reconnecting in %.0fs", exc, delay)
            sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)
