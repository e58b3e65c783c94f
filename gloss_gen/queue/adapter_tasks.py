"""The worker side of adapter jobs: the ``adapter_job`` arq task.

The job's record and :class:`gloss_gen.adapt.fitting.AdapterJobSpec` are in the store (written by
:func:`.client.submit_adapter_job`); the fit itself is :mod:`gloss_gen.adapt.fitting`, the same
pipeline a server runs in process. A worker that dies mid-fit loses the task's arq lease, so
another worker runs it again (a cache is refitted from scratch; ClipFit resumes from its last
epoch checkpoint if the data directory is shared, else starts over). The checkpoint is named by the
fit, not the job, so a new job for the same fit resumes it too. A Redis outage mid-fit does not end
it: epoch progress that cannot be recorded is logged, and example images are read with retries.
"""

from __future__ import annotations

import logging

from gloss_gen.adapt import AdaptError
from gloss_gen.adapt.fitting import AdapterJobSpec, fit_clipfit_job, fit_tip_job
from gloss_gen.data.descriptions import utc_now
from gloss_gen.data.job_records import JobRecord
from gloss_gen.data.store import Store, StoreError
from gloss_gen.imaging import ImageLimits
from gloss_gen.model.clip_models import get_model
from gloss_gen.queue.tasks import run_job_step

log = logging.getLogger(__name__)

ADAPTER_TIMEOUT_S = 12 * 3600  # ClipFit at the paper's epochs on a CPU worker
ADAPTER_RESULT_KEEP_S = 7 * 24 * 3600  # as embed_job: a late duplicate enqueue is refused


async def adapter_job(ctx: dict, job_id: str) -> str:
    """arq task: fit the job's adapter from the stored examples and write it to the store."""

    def start(job: JobRecord) -> None:
        job.mark("running", started_at=job.extra.get("started_at") or utc_now(),
                 runs=job.extra.get("runs", 0) + 1)

    def finish(job: JobRecord, result: dict) -> None:
        job.done = job.total
        job.mark("done", **result, finished_at=utc_now())

    result = await run_job_step(
        ctx, job_id, "fitting this adapter", lambda spec: _fit(ctx, job_id, spec), start, finish,
        failure_message=lambda exc: getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}",
        give_up_after_attempts=True, finished_at=utc_now,
    )
    if isinstance(result, str):
        return result
    return result.get("adapter") or result.get("delta") or "done"


def _fit(ctx: dict, job_id: str, raw_spec: dict) -> dict:
    """Blocking: the fit on this worker's device; the job's result fields."""

    settings = ctx["settings"]
    store: Store = ctx["store"]
    spec = AdapterJobSpec.from_dict(raw_spec)
    limits = ImageLimits.from_settings(settings)
    if spec.method == "clipfit":
        def on_epoch(log_line) -> None:
            try:
                store.update_job(job_id, lambda job: job.mark(epochs_done=log_line.epoch, loss=log_line.loss,
                                                              val_accuracy=log_line.val_accuracy))
            except StoreError as exc:  # progress only: a Redis outage must not end the fit
                log.warning("job %s: epoch %d not recorded (%s)", job_id, log_line.epoch, exc)

        return fit_clipfit_job(spec, store, limits, settings.data_dir, device=settings.resolved_device(),
                               cache_dir=settings.cache_dir, on_epoch=on_epoch)
    classifier = store.get_classifier(spec.classifier)
    if classifier is None:
        raise AdaptError(f"classifier {spec.classifier} of class set {spec.class_set.name} is not in the store")
    # the classifier's model, on this worker's device and precision, loaded once per process
    model = get_model(settings, name=spec.model, pretrained=spec.pretrained)
    _, result = fit_tip_job(spec, store, model, classifier, limits)
    return result
