"""The enqueue side of the describe queue: submit a job, then follow its record in the store.

``vgloss describe --queue`` asks for a job by what it does (:func:`describe_run_key`: class set,
method, options, model, ``out``): while a job for the same run is unfinished, a re-run reattaches
to it instead of queueing a duplicate (the store's ``describe-run`` pointer names the last job
queued for each run). Following a job rides out Redis outages up to a limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gloss_gen.core.config import Settings, get_settings
from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.descriptions import DescriptionRecord, latest_by_class, read_jsonl
from gloss_gen.data.job_records import JobRecord
from gloss_gen.data.store import Store, StoreError, open_store
from gloss_gen.describe.describe_job import DescribeOptions, finished_class_ids

log = logging.getLogger(__name__)

HEALTH_CHECK_S = 5
ENQUEUE_BATCH = 64
OUTAGE_RETRY_MAX_S = 2.0
"""A follower retries a store it cannot read at most this far apart."""
RUN_KIND = "describe-run"
"""Store key kind: ``describe-run:{describe_run_key}`` holds the id of the last job queued for that run."""


class QueueError(StoreError):
    """The queue cannot be used as asked (no Redis configured, unknown job); the message says why."""


def dumps(obj: Any) -> bytes:
    """arq's job serializer here: JSON, never arq's default pickle."""
    # default=str: arq stores a failed task's exception as its result
    return json.dumps(obj, default=str, ensure_ascii=False, separators=(",", ":")).encode()


def loads(data: bytes) -> Any:
    return json.loads(data)


def describe_task_id(job_id: str, class_id: str) -> str:
    return f"{job_id}:{class_id}"


def embed_task_id(job_id: str) -> str:
    return f"{job_id}:embed"


def adapter_task_id(job_id: str) -> str:
    return f"{job_id}:adapter"


def require_redis(settings: Settings) -> str:
    if not settings.redis_url:
        raise QueueError("the queue needs Redis: set VGLOSS_REDIS_URL (e.g. redis://localhost:6379/0)")
    return settings.redis_url


def redis_settings(settings: Settings):
    from arq.connections import RedisSettings

    return RedisSettings.from_dsn(require_redis(settings))


async def _arq_pool(settings: Settings):
    from arq import create_pool

    return await create_pool(
        redis_settings(settings),
        job_serializer=dumps,
        job_deserializer=loads,
        default_queue_name=settings.queue_name,
    )


def _options_for_spec(method: str, options: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The describe options as JSON, with this process's LLM defaults filled in (so every worker
    asks the same model); no API key: workers read their own ``OPENAI_API_KEY``."""

    if options.get("api_key"):
        log.warning("the API key given is not sent through the queue; workers use their OPENAI_API_KEY")
    if options.get("import_file") is not None:
        options = {**options, "import_file": str(Path(options["import_file"]).resolve())}
    return DescribeOptions.from_settings(method, settings, **options).to_dict()


def _resumable_records(out: Path, class_set: ClassSet, method: str) -> list[DescriptionRecord]:
    """Successful records of an earlier run in ``out`` (DESIGN: a re-run skips finished classes)."""

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
    store: Store | None = None,
    **options: Any,
) -> str:
    """Queue a describe job: one ``describe_class`` task per class still to describe. Returns its id.

    ``options`` are :class:`gloss_gen.describe.describe_job.DescribeOptions` fields. ``out`` (a path on the
    host that runs the final embed step) receives the JSONL; successful classes already in it
    are not described again. The job goes into ``store`` (default: the settings' store, which
    the workers must share).
    """
    job_id, _ = await _submit_describe_job(class_set, method, settings=settings, out=out, job_id=job_id,
                                           store=store, attach=False, **options)
    return job_id


def describe_run_key(spec: dict) -> str:
    """What a describe job does, as a key: its class set, method, options, model and ``out``."""
    what = {k: spec[k] for k in ("class_set", "method", "options", "model", "pretrained", "out")}
    return hashlib.sha256(json.dumps(what, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


def _claim_run(store: Store, run_key: str, job_id: str) -> str | None:
    """Blocking: point the run at ``job_id``, unless it points at a job that is still unfinished
    (compare-and-set, so two clients starting together agree); that job's id, or ``None``."""
    running: list[str] = []

    def change(raw: bytes | None) -> bytes | None:
        running.clear()
        if raw is not None:
            job = store.get_job(raw.decode())
            if job is not None and not job.finished:
                running.append(job.id)
                return None
        return job_id.encode()

    store.update_bytes(RUN_KIND, run_key, change)
    return running[0] if running else None


async def _submit_describe_job(
    class_set: ClassSet,
    method: str,
    *,
    settings: Settings | None,
    out: str | Path | None,
    job_id: str | None,
    store: Store | None,
    attach: bool,
    **options: Any,
) -> tuple[str, bool]:
    settings = settings or get_settings()
    require_redis(settings)
    store = store or open_store(settings)
    opts = _options_for_spec(method, options, settings)
    job_id = job_id or uuid.uuid4().hex
    out_path = Path(out).resolve() if out else None
    spec = {
        "id": job_id,
        "class_set": class_set.to_dict(),
        "method": method,
        "options": opts,
        "model": settings.model,
        "pretrained": settings.pretrained,
        "out": str(out_path) if out_path else None,
    }
    if attach:
        running = await asyncio.to_thread(_claim_run, store, describe_run_key(spec), job_id)
        if running is not None:
            log.info("describe job %s for %s is still running; attached to it", running, class_set.name)
            return running, True
    seeded = _resumable_records(out_path, class_set, method) if out_path else []
    seeded_ids = {r.class_id for r in seeded}
    job = JobRecord.new(job_id, "describe", class_set, method, done=len(seeded))
    # The job goes into the store before its tasks: a worker may take the first one at once.
    await asyncio.to_thread(store.create_job, job, spec, seeded)
    pool = await _arq_pool(settings)
    try:
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
    return job_id, False


async def submit_adapter_job(job: JobRecord, spec: dict, *, settings: Settings | None = None,
                             store: Store | None = None) -> str:
    """Queue an adapter job (:class:`gloss_gen.adapt.fitting.AdapterJobSpec` as ``spec``): its
    record and spec go into the store, then one ``adapter_job`` task. Returns the job id."""
    settings = settings or get_settings()
    require_redis(settings)
    await asyncio.to_thread((store or open_store(settings)).create_job, job, spec)
    pool = await _arq_pool(settings)
    try:
        await pool.enqueue_job("adapter_job", job.id, _job_id=adapter_task_id(job.id))
    finally:
        await pool.aclose()
    log.info("queued adapter job %s: %s for %s on %s", job.id, spec.get("method"), job.class_set,
             settings.queue_name)
    return job.id


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


def enqueue_or_attach_describe_job(
    class_set: ClassSet,
    method: str,
    *,
    settings: Settings | None = None,
    out: str | Path | None = None,
    **options: Any,
) -> tuple[str, bool]:
    """Blocking, for ``vgloss describe --queue``: the id of the unfinished job that does exactly
    this (same class set, method, options, model and ``out``) and ``True``, so a re-run reattaches
    to it; else a new job's id (see :func:`submit_describe_job`) and ``False``."""
    return asyncio.run(_submit_describe_job(class_set, method, settings=settings, out=out, job_id=None,
                                            store=None, attach=True, **options))


def watch_job(
    job_id: str,
    settings: Settings | None = None,
    *,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
    ride_out_s: float = 0.0,
    on_outage: Callable[[StoreError], None] | None = None,
) -> Iterator[JobRecord]:
    """The job's record every ``poll_s`` until it is ``done`` or ``failed`` (the last one yielded).
    Raises :class:`QueueError` for an unknown job, ``TimeoutError`` after ``timeout_s``.

    A store that cannot be read is tried again with back-off for up to ``ride_out_s`` seconds
    (``on_outage(error)`` is called once as each outage starts) before its :class:`StoreError`
    is raised; the job goes on running on the workers meanwhile."""
    store = open_store(settings or get_settings())
    outage_since: float | None = None

    def read() -> JobRecord | None:
        nonlocal outage_since
        delay = poll_s
        while True:
            try:
                job = store.get_job(job_id)
            except StoreError as exc:
                now = time.monotonic()
                if outage_since is None:
                    outage_since = now
                    if on_outage is not None:
                        on_outage(exc)
                left = ride_out_s - (now - outage_since)
                if left <= 0:
                    raise
                time.sleep(min(delay, left))
                delay = min(delay * 2, OUTAGE_RETRY_MAX_S)
                continue
            outage_since = None
            return job

    job = read()
    if job is None:
        raise QueueError(f"no job {job_id!r} in {store.describe()}")
    started = time.monotonic()
    while True:
        yield job
        if job.finished:
            return
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise TimeoutError(f"job {job_id} still {job.state} after {timeout_s:.0f}s")
        time.sleep(poll_s)
        job = read() or job


def wait_for_job(job_id: str, settings: Settings | None = None, *, poll_s: float = 0.5,
                 timeout_s: float | None = None) -> JobRecord:
    """Block until the job is ``done`` or ``failed``; its final record (see :func:`watch_job`)."""
    for job in watch_job(job_id, settings, poll_s=poll_s, timeout_s=timeout_s):
        pass
    return job


def worker_serving(settings: Settings | None = None) -> bool | None:
    """Whether any ``vgloss worker`` serves the settings' queue (arq's health-check key is set);
    ``None`` when Redis cannot be asked."""
    import redis

    settings = settings or get_settings()
    client = redis.Redis.from_url(require_redis(settings), socket_connect_timeout=5, socket_timeout=5)
    try:
        return bool(client.exists(settings.queue_name + ":health-check"))
    except redis.RedisError:
        return None
    finally:
        client.close()
