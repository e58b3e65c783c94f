"""The worker side of adapter jobs: the ``adapter_job`` arq task.

The job's record and :class:`gloss_gen.adapt.fitting.AdapterJobSpec` are in the store (written by
:func:`.client.submit_adapter_job`); the fit itself is :mod:`gloss_gen.adapt.fitting`, the same
pipeline a server runs in process. A worker that dies mid-fit loses the task's arq lease, so
another worker runs it again (a cache is refitted from scratch; ClipFit resumes from its last
epoch checkpoint if the data directory is shared, else starts over).
"""

from __future__ import annotations

import asyncio
import logging

from ..descriptions import utc_now
from ..jobs import JobRecord
from ..store import Store, StoreError

log = logging.getLogger(__name__)

ADAPTER_TIMEOUT_S = 12 * 3600  # ClipFit at the paper's 100 epochs on a CPU worker
ADAPTER_RESULT_KEEP_S = 7 * 24 * 3600  # as embed_job: a late duplicate enqueue is refused


async def adapter_job(ctx: dict, job_id: str) -> str:
    """arq task: fit the job's adapter from the stored examples and write it to the store."""
    from arq.worker import Retry

    from .worker import MAX_ATTEMPTS, unfinished_job

    store: Store = ctx["store"]
    found = await unfinished_job(store, job_id)
    if isinstance(found, str):
        return found
    _, spec = found
    if ctx["job_try"] > MAX_ATTEMPTS:
        message = f"a worker stopped while fitting this adapter {MAX_ATTEMPTS} times"
        await asyncio.to_thread(store.update_job, job_id,
                                lambda job: job.mark("failed", error=message, finished_at=utc_now()))
        return "failed"

    def start(job: JobRecord) -> None:
        job.mark("running", started_at=job.extra.get("started_at") or utc_now(),
                 runs=job.extra.get("runs", 0) + 1)

    await asyncio.to_thread(store.update_job, job_id, start)
    try:
        result = await asyncio.to_thread(_fit, ctx, job_id, spec)
    except Exception as exc:
        if isinstance(exc, StoreError) and ctx["job_try"] < MAX_ATTEMPTS:
            log.warning("adapter job %s could not use the store, retrying: %s", job_id, exc)
            raise Retry(defer=5) from exc
        log.exception("adapter job %s failed", job_id)
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        await asyncio.to_thread(store.update_job, job_id,
                                lambda job: job.mark("failed", error=message, finished_at=utc_now()))
        return "failed"

    def finish(job: JobRecord) -> None:
        job.done = job.total
        job.mark("done", **result, finished_at=utc_now())

    await asyncio.to_thread(store.update_job, job_id, finish)
    return result.get("adapter") or result.get("delta") or "done"


def _fit(ctx: dict, job_id: str, raw_spec: dict) -> dict:
    """Blocking: the fit on this worker's device; the job's result fields."""
    from ..adapt import AdaptError
    from ..adapt.fitting import AdapterJobSpec, fit_clipfit_job, fit_tip_job
    from ..imaging import ImageLimits
    from ..models import get_model

    settings = ctx["settings"]
    store: Store = ctx["store"]
    spec = AdapterJobSpec.from_dict(raw_spec)
    limits = ImageLimits.from_settings(settings)
    if spec.method == "clipfit":
        def on_epoch(log_line) -> None:
            store.update_job(job_id, lambda job: job.mark(epochs_done=log_line.epoch, loss=log_line.loss,
                                                          val_accuracy=log_line.val_accuracy))

        return fit_clipfit_job(spec, store, limits, settings.data_dir, job_id, device=settings.resolved_device(),
                               cache_dir=settings.cache_dir, on_epoch=on_epoch)
    classifier = store.get_classifier(spec.classifier)
    if classifier is None:
        raise AdaptError(f"classifier {spec.classifier} of class set {spec.class_set.name} is not in the store")
    # the classifier's model, on this worker's device and precision, loaded once per process
    model = get_model(settings, name=spec.model, pretrained=spec.pretrained)
    _, result = fit_tip_job(spec, store, model, classifier, limits)
    return result
