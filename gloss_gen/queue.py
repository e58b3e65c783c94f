"""Describe jobs on a Redis queue: one task per class, any number of ``vgloss worker`` processes.

The engine is arq: asyncio-native (the LLM client is async, so one worker process keeps N
requests in flight), Redis-only, and its job ids dedupe enqueues. Jobs and results are JSON
here — arq's default serializer is pickle, which this module never uses.

Layout (``{ns}`` = ``settings.redis_namespace`` or ``vgloss:v1``, ``{q}`` = ``settings.queue_name``):

- ``{ns}:job:{job}`` — the job state, as :meth:`Store.get_job` and ``GET /v1/jobs/{id}`` read
  it: ``{id, kind, state, done, failed, total, errors, class_set, method, ...}``; ``state`` goes
  ``queued`` → ``running`` → ``embedding`` → ``done`` (or ``failed``). ``done`` counts classes
  with a record, failures included; ``failed`` counts those with an error.
- ``{ns}:qjob:{job}:spec`` — what to do: the class set, method, describe options, model, ``out``.
- ``{ns}:qjob:{job}:records`` — hash ``class_id`` → :class:`DescriptionRecord` JSON. A record is
  written only if the class has none (in one transaction with the job state), so every class is
  recorded, and counted, exactly once.
- on queue ``{q}``: ``describe_class(job, class_id)`` with arq job id ``{job}:{class_id}``, and
  once every class is recorded ``embed_job(job)`` with id ``{job}:embed``, which builds and
  activates the classifier.

A worker that dies mid-task loses nothing: arq leaves the task in the queue, and a worker's
claim on it (arq's in-progress key) lasts only ``queue_lease_s`` unless the worker renews it, so
another worker re-runs the task within about ``queue_lease_s`` of the death. A class recorded
before the death is skipped on the re-run without calling the LLM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .classsets import ClassSet
from .config import Settings, get_settings
from .descriptions import (
    DescriptionRecord,
    assemble,
    latest_by_class,
    read_jsonl,
    utc_now,
    write_jsonl,
)
from .jobstate import FINAL_STATES, count_failure, new_job_state
from .store import DEFAULT_NAMESPACE, StoreError, open_store

log = logging.getLogger(__name__)

#: Attempts at one class before it is recorded as failed (each one ended by a dying worker).
MAX_ATTEMPTS = 3
#: How many error entries the job state lists; ``failed`` keeps the full count.
#: arq's limits per task; a class is bounded more tightly by its LLM options (_class_time_limit_s).
DESCRIBE_TIMEOUT_S = 4 * 3600
EMBED_TIMEOUT_S = 3600
#: arq result of an embed task, kept so a late duplicate enqueue of ``{job}:embed`` is refused.
EMBED_RESULT_KEEP_S = 7 * 24 * 3600
POLL_DELAY_S = 0.1
HEALTH_CHECK_S = 5
ENQUEUE_BATCH = 64


class QueueError(StoreError):
    """The queue cannot be used as asked (no Redis configured, unknown job); the message says why."""


# --------------------------------------------------------------------------- shared pieces


def _dumps(obj: Any) -> bytes:
    # default=str: arq stores a failed task's exception as its result
    return json.dumps(obj, default=str, ensure_ascii=False, separators=(",", ":")).encode()


def _loads(data: bytes) -> Any:
    return json.loads(data)


@dataclass(frozen=True)
class Keys:
    ns: str

    @classmethod
    def for_settings(cls, settings: Settings) -> Keys:
        return cls(settings.redis_namespace or DEFAULT_NAMESPACE)

    def job(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}"  # the key Store.get_job reads

    def spec(self, job_id: str) -> str:
        return f"{self.ns}:qjob:{job_id}:spec"

    def records(self, job_id: str) -> str:
        return f"{self.ns}:qjob:{job_id}:records"


def describe_task_id(job_id: str, class_id: str) -> str:
    return f"{job_id}:{class_id}"


def embed_task_id(job_id: str) -> str:
    return f"{job_id}:embed"


def _require_redis(settings: Settings) -> str:
    if not settings.redis_url:
        raise QueueError("the queue needs Redis: set VGLOSS_REDIS_URL (e.g. redis://localhost:6379/0)")
    return settings.redis_url


def _redis_settings(settings: Settings):
    from arq.connections import RedisSettings

    return RedisSettings.from_dsn(_require_redis(settings))


async def _arq_pool(settings: Settings):
    from arq import create_pool

    return await create_pool(
        _redis_settings(settings),
        job_serializer=_dumps,
        job_deserializer=_loads,
        default_queue_name=settings.queue_name,
    )


async def _update_job(
    redis, keys: Keys, job_id: str, change: Callable[[dict], None], record: DescriptionRecord | None = None
) -> bool:
    """Apply ``change`` to the job state atomically (optimistic WATCH/MULTI, retried on conflict).

    With ``record``: only if its class has no record yet, and the record is written in the same
    transaction. Returns whether anything was written.
    """
    from redis.exceptions import WatchError

    job_key, records_key = keys.job(job_id), keys.records(job_id)
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(job_key, records_key)
                if record is not None and await pipe.hexists(records_key, record.class_id):
                    await pipe.reset()
                    return False
                raw = await pipe.get(job_key)
                if raw is None:
                    await pipe.reset()
                    return False
                state = json.loads(raw)
                change(state)
                state["updated_at"] = utc_now()
                pipe.multi()
                if record is not None:
                    pipe.hset(records_key, record.class_id, json.dumps(record.to_json(), ensure_ascii=False))
                pipe.set(job_key, json.dumps(state, ensure_ascii=False))
                await pipe.execute()
                return True
            except WatchError:
                continue


# --------------------------------------------------------------------------- enqueue side


def _options_for_spec(method: str, options: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The describe options as JSON, with this process's LLM defaults filled in (so every worker
    asks the same model); no API key: workers read their own ``OPENAI_API_KEY``."""
    from .describe import DescribeOptions

    if options.get("api_key"):
        log.warning("the API key given is not sent through the queue; workers use their OPENAI_API_KEY")
    if options.get("import_file") is not None:
        options = {**options, "import_file": str(Path(options["import_file"]).resolve())}
    return DescribeOptions.from_settings(method, settings, **options).to_dict()


def _resumable_records(out: Path, class_set: ClassSet, method: str) -> list[DescriptionRecord]:
    """Successful records of an earlier run in ``out`` (DESIGN: a re-run skips finished classes)."""
    from .describe import finished_class_ids

    if not out.is_file():
        return []
    earlier = read_jsonl(out)
    latest = latest_by_class(earlier)
    return [latest[class_id] for class_id in finished_class_ids(earlier, class_set, method)]


async def submit_describe_job(
    class_set: ClassSet,
    method: str,
    *,
    settings: Settings | None = None,
    out: str | Path | None = None,
    job_id: str | None = None,
    **options: Any,
) -> str:
    """Queue a describe job: one ``describe_class`` task per class still to describe. Returns its id.

    ``options`` are :class:`gloss_gen.describe.DescribeOptions` fields. ``out`` (a path on the
    host that runs the final embed step) receives the JSONL; successful classes already in it
    are not described again.
    """
    settings = settings or get_settings()
    _require_redis(settings)
    opts = _options_for_spec(method, options, settings)
    job_id = job_id or uuid.uuid4().hex
    keys = Keys.for_settings(settings)
    out_path = Path(out).resolve() if out else None
    seeded = _resumable_records(out_path, class_set, method) if out_path else []
    seeded_ids = {r.class_id for r in seeded}
    spec = {
        "id": job_id,
        "class_set": class_set.to_dict(),
        "method": method,
        "options": opts,
        "model": settings.model,
        "pretrained": settings.pretrained,
        "out": str(out_path) if out_path else None,
    }
    state = new_job_state(job_id, "describe", class_set, method, done=len(seeded))
    pool = await _arq_pool(settings)
    try:
        # The spec and the state go first: a worker may take the first task at once.
        async with pool.pipeline(transaction=True) as pipe:
            pipe.set(keys.spec(job_id), json.dumps(spec, ensure_ascii=False))
            for record in seeded:
                pipe.hset(keys.records(job_id), record.class_id, json.dumps(record.to_json(), ensure_ascii=False))
            pipe.set(keys.job(job_id), json.dumps(state, ensure_ascii=False))
            await pipe.execute()
        todo = [c.id for c in class_set.classes if c.id not in seeded_ids]
        for start in range(0, len(todo), ENQUEUE_BATCH):
            await asyncio.gather(*(
                pool.enqueue_job("describe_class", job_id, class_id, _job_id=describe_task_id(job_id, class_id))
                for class_id in todo[start : start + ENQUEUE_BATCH]
            ))
        if not todo:
            await pool.enqueue_job("embed_job", job_id, _job_id=embed_task_id(job_id))
    finally:
        await pool.aclose()
    log.info("queued describe job %s: %d tasks for %s on %s%s", job_id, len(todo), class_set.name,
             settings.queue_name, f" ({len(seeded)} classes already in {out_path})" if seeded else "")
    return job_id


def enqueue_describe_job(
    class_set: ClassSet,
    method: str,
    *,
    settings: Settings | None = None,
    out: str | Path | None = None,
    **options: Any,
) -> str:
    """Blocking form of :func:`submit_describe_job` (for the CLI)."""
    return asyncio.run(submit_describe_job(class_set, method, settings=settings, out=out, **options))


def wait_for_job(
    job_id: str,
    settings: Settings | None = None,
    progress: bool = True,
    *,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
) -> dict:
    """Block until the job is ``done`` or ``failed`` and return its state; a tqdm bar shows
    done/failed meanwhile. Raises :class:`QueueError` for an unknown job, ``TimeoutError`` after
    ``timeout_s``."""
    import redis

    settings = settings or get_settings()
    store = open_store(settings)
    client = redis.Redis.from_url(_require_redis(settings))
    health_key = settings.queue_name + ":health-check"  # arq's; any live worker keeps it set
    state = store.get_job(job_id)
    if state is None:
        raise QueueError(f"no job {job_id!r} in {store.describe()}")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=state["total"], desc=f"describe {state.get('class_set', '')}", unit="class")
    started = time.monotonic()
    warned = False
    try:
        while True:
            if bar is not None:
                bar.n = state["done"]
                bar.set_postfix(failed=state["failed"], state=state["state"], refresh=False)
                bar.refresh()
            if state["state"] in FINAL_STATES:
                return state
            waited = time.monotonic() - started
            if timeout_s is not None and waited > timeout_s:
                raise TimeoutError(f"job {job_id} still {state['state']} after {timeout_s:.0f}s")
            if not warned and waited > 2 * HEALTH_CHECK_S and not client.exists(health_key):
                warned = True
                print(f"no worker is serving queue {settings.queue_name!r} yet; "
                      "start one with `vgloss worker` (same VGLOSS_REDIS_URL)", file=sys.stderr)
            time.sleep(poll_s)
            state = store.get_job(job_id) or state
    finally:
        if bar is not None:
            bar.close()
        client.close()


# --------------------------------------------------------------------------- worker side


@dataclass
class _LoadedJob:
    spec: dict
    class_set: ClassSet
    index: dict[str, int]
    context: Any = None  # gloss_gen.describe.DescribeContext
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
            del jobs[job_id]  # a Redis error: the next task tries again
        raise


async def _prepare_job(ctx: dict, job_id: str) -> _LoadedJob | None:
    from .describe import DescribeOptions, prepare

    raw = await ctx["redis"].get(ctx["keys"].spec(job_id))
    if raw is None:
        return None
    spec = json.loads(raw)
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
    from .llm import make_client

    key = (options.base_url, options.timeout)
    if key not in ctx["clients"]:
        ctx["clients"][key] = make_client(base_url=options.base_url, timeout=options.timeout)
    return ctx["clients"][key]


def _class_time_limit_s(options) -> float:
    """Upper bound on one class: every LLM attempt timing out, plus the longest waits between."""
    from .llm import RetryPolicy

    longest_wait = max(options.retry_max_delay, RetryPolicy().max_retry_after_s)
    return options.timeout * (options.max_retries + 1) + longest_wait * options.max_retries + 30


async def _finish_if_complete(ctx: dict, job_id: str) -> None:
    """Enqueue the embed step once every class has a record; its fixed id makes this idempotent."""
    redis, keys = ctx["redis"], ctx["keys"]
    raw = await redis.get(keys.job(job_id))
    if raw is None:
        return
    total = json.loads(raw)["total"]
    if await redis.hlen(keys.records(job_id)) >= total:
        await redis.enqueue_job("embed_job", job_id, _job_id=embed_task_id(job_id))


def _count(record: DescriptionRecord) -> Callable[[dict], None]:
    def change(state: dict) -> None:
        state["done"] += 1
        if state["state"] == "queued":
            state["state"] = "running"
        count_failure(state, record)

    return change


async def describe_class(ctx: dict, job_id: str, class_id: str) -> str:
    """arq task: describe one class of a job and record it, unless it is recorded already."""
    from arq.worker import Retry
    from redis.exceptions import RedisError

    redis, keys = ctx["redis"], ctx["keys"]
    try:
        if await redis.hexists(keys.records(job_id), class_id):
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
        recorded = await _update_job(redis, keys, job_id, _count(record), record=record)
        await _finish_if_complete(ctx, job_id)
        return ("recorded" if recorded else "recorded elsewhere") + ("" if record.ok else " (failed)")
    except RedisError as exc:
        # a Redis blip must not drop the class: arq runs the task again
        log.warning("job %s class %s: Redis error, retrying: %s", job_id, class_id, exc)
        raise Retry(defer=2) from exc


async def _describe(ctx: dict, loaded: _LoadedJob, class_id: str) -> DescriptionRecord:
    from .describe import describe_one

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
    """arq task: assemble the job's records in class-set order, build and activate the classifier."""
    from arq.worker import Retry

    redis, keys = ctx["redis"], ctx["keys"]
    raw_state = await redis.get(keys.job(job_id))
    raw_spec = await redis.get(keys.spec(job_id))
    if raw_state is None or raw_spec is None:
        return "job gone"
    if json.loads(raw_state)["state"] in FINAL_STATES:
        return "already finished"
    spec = json.loads(raw_spec)
    raw_records = await redis.hgetall(keys.records(job_id))
    records = [DescriptionRecord.from_json(json.loads(v)) for v in raw_records.values()]

    def start(state: dict) -> None:
        state["state"] = "embedding"
        state["embed_runs"] = state.get("embed_runs", 0) + 1

    await _update_job(redis, keys, job_id, start)
    try:
        result = await asyncio.to_thread(_embed, ctx, spec, records)
    except Exception as exc:
        if isinstance(exc, StoreError) and ctx["job_try"] < MAX_ATTEMPTS:
            log.warning("embed step of job %s could not write to the store, retrying: %s", job_id, exc)
            raise Retry(defer=5) from exc
        log.exception("embed step of job %s failed", job_id)
        message = f"embed: {type(exc).__name__}: {exc}"

        def fail(state: dict) -> None:
            state["state"] = "failed"
            state["error"] = message

        await _update_job(redis, keys, job_id, fail)
        return "failed"

    def finish(state: dict) -> None:
        state.update(result)
        state["state"] = "failed" if "error" in result else "done"
        state["finished_at"] = utc_now()

    await _update_job(redis, keys, job_id, finish)
    return result.get("classifier", "failed")


def _embed(ctx: dict, spec: dict, records: list[DescriptionRecord]) -> dict:
    from .classifier import build_classifier

    class_set = ClassSet.from_dict(spec["class_set"])
    description_set = assemble(class_set, records, method=spec["method"])
    if spec.get("out"):
        out = Path(spec["out"])
        out.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(out, description_set.records)
    if len(description_set.failed) == len(description_set.records):
        return {"error": "every class failed to be described; no classifier was built"}
    model = _model(ctx, spec["model"], spec["pretrained"])
    classifier = build_classifier(model, description_set)
    store = ctx["store"]
    store.put_descriptions(description_set)
    store.put_classifier(classifier)
    return {"classifier": classifier.key, "descriptions": description_set.id, "model": classifier.model_id}


def _model(ctx: dict, name: str, pretrained: str):
    """The job's CLIP model, loaded once per worker process (the worker's device and precision)."""
    from .models import load_clip_from_settings

    with ctx["models_lock"]:
        key = (name, pretrained)
        if key not in ctx["models"]:
            settings = ctx["settings"].model_copy(update={"model": name, "pretrained": pretrained})
            ctx["models"][key] = load_clip_from_settings(settings)
        return ctx["models"][key]


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

    from . import describe, wordnet  # noqa: F401
    from .llm import clip_token_count

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
    redis_settings = _redis_settings(settings)
    concurrency = concurrency or settings.llm_concurrency

    async def on_startup(ctx: dict) -> None:
        # Before taking tasks: loading these stalls the event loop for seconds, long enough for a
        # claim on a running task to lapse and another worker to run it again.
        await asyncio.to_thread(_warm_up)
        ctx.update(
            settings=settings,
            keys=Keys.for_settings(settings),
            store=open_store(settings),
            jobs={},
            models={},
            models_lock=threading.Lock(),
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
            # keep_result=0: the records hash is the result; the task ids only dedupe enqueues
            func(describe_class, name="describe_class", timeout=DESCRIBE_TIMEOUT_S, keep_result=0),
            func(embed_job, name="embed_job", timeout=EMBED_TIMEOUT_S, keep_result=EMBED_RESULT_KEEP_S),
        ],
        queue_name=settings.queue_name,
        redis_settings=redis_settings,
        burst=burst,
        max_jobs=concurrency,
        poll_delay=POLL_DELAY_S,
        # above MAX_ATTEMPTS, so describe_class itself records a class that keeps killing workers
        max_tries=MAX_ATTEMPTS + 3,
        health_check_interval=HEALTH_CHECK_S,
        job_serializer=_dumps,
        job_deserializer=_loads,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        handle_signals=handle_signals,
        lease_s=settings.queue_lease_s,
    )
