"""Everything one server process holds, wired together, with start-up and shutdown.

Start-up runs in the background so ``/healthz`` answers at once: load the model, then the default
class set's classifier (from the store, or built with ``Settings.default_method`` when missing).
``/readyz`` turns 200 only once both are in memory. A store that cannot be reached at start-up is
retried with back-off; anything else that fails leaves the server alive and ``/readyz`` saying why.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from app.prometheus_metrics import Metrics
from app.services.adapting import AdapterService, AdapterWork
from app.services.batcher import InferenceBatcher
from app.services.catalog import ClassSetCatalog
from app.services.classification import ClassifyService
from app.services.decoding import ImageDecoder
from app.services.job_runner import (
    ADAPTER_JOB_KIND,
    JOB_KIND,
    ClassSetWork,
    InProcessJobs,
    JobBackend,
    JobRunner,
    QueuedJobs,
)
from app.services.model import ModelHolder, available_cores
from app.services.readiness import Readiness, failure_detail
from app.services.registry import ClassifierRegistry
from app.services.service_errors import ShuttingDown, StoreUnavailable
from app.services.text_work import TextWork, chunk_prompts_for
from gloss_gen.core.config import Settings
from gloss_gen.data.store import Store, open_store
from gloss_gen.data.wordnet import get_wordnet

log = logging.getLogger(__name__)

STORE_RETRY_MAX_S = 30.0


async def _in_daemon_thread(fn, name: str):
    """``await fn()`` run on a daemon thread: a SIGTERM during a long load (weights, WordNet) ends
    the process at once instead of waiting for the load to finish (executor threads are joined at exit)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def settle(setter, value) -> None:
        if not done.done():
            setter(value)

    def run() -> None:
        try:
            outcome = (done.set_result, fn())
        except BaseException as exc:  # handed to the awaiting task
            outcome = (done.set_exception, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop closed meanwhile (the server stopped): nobody is waiting
            pass

    threading.Thread(target=run, name=name, daemon=True).start()
    return await done


class ServerRuntime:
    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.readiness = Readiness()
        self.store = store if store is not None else open_store(settings)
        self.model = ModelHolder(settings, self.metrics)
        # images go through the model on this one thread; text on one build's thread at a time
        self._inference_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vgloss-inference")
        self.text_work = TextWork(chunk_prompts_for(settings.resolved_device()))
        self.decoder = ImageDecoder(
            settings.decode_threads or available_cores(), settings.decode_threads_per_request or None
        )
        self.registry = ClassifierRegistry(settings, self.store, self.model, self.metrics, self.text_work)
        self.batcher = InferenceBatcher(
            self.model.encode_images,
            max_batch=settings.max_batch,
            wait_s=settings.batch_wait_ms / 1000.0,
            max_queue=settings.max_queue,
            metrics=self.metrics,
            executor=self._inference_executor,
        )
        self.classifier_service = ClassifyService(
            settings, self.readiness, self.model, self.registry, self.decoder, self.batcher, self.metrics
        )
        self.jobs = JobRunner(self.store, self._job_backend())
        self.catalog = ClassSetCatalog(self.store, self.registry, self.jobs, settings.default_method)
        self.adapters = AdapterService(settings, self.store, self.registry, self.jobs)
        self._startup: asyncio.Task | None = None

    def _job_backend(self) -> JobBackend:
        """Where class-set and adapter jobs run: on the worker queue with ``VGLOSS_JOBS_ON_QUEUE``,
        else here."""
        if self.settings.jobs_on_queue:
            return QueuedJobs(self.settings, self.store)
        work = {
            JOB_KIND: ClassSetWork(self.settings, self.registry),
            ADAPTER_JOB_KIND: AdapterWork(self.settings, self.store, self.registry),
        }
        return InProcessJobs(self.settings, self.store, work)

    async def start(self) -> None:
        self.batcher.start()
        self._startup = asyncio.create_task(self._load(), name="vgloss-startup")

    async def wait_ready(self, timeout_s: float | None = None) -> bool:
        """For tests and tools: wait for start-up to finish; whether the server is ready."""
        if self._startup is not None:
            await asyncio.wait_for(asyncio.shield(self._startup), timeout_s)
        return self.readiness.ready

    async def _load(self) -> None:
        try:
            if not self.settings.jobs_on_queue:
                await self.jobs.reconcile()
            self.readiness.set("loading_model", f"loading model {self.settings.model}")
            loads = [_in_daemon_thread(self.model.load, "vgloss-load-model")]
            if self.settings.default_method != "classname":  # WordNet parses beside the model loading
                loads.append(_in_daemon_thread(lambda: get_wordnet(self.settings.nltk_data), "vgloss-load-wordnet"))
            await asyncio.gather(*loads)
            name = self.settings.default_class_set
            self.readiness.set("loading_classifier", f"loading the classifier for class set {name}")
            delay = 1.0
            while True:
                try:
                    await self.registry.get_named(name)
                    break
                except StoreUnavailable as exc:
                    self.readiness.set("loading_classifier", f"waiting for the store to load {name}")
                    log.warning("%s; retrying in %.0fs", exc.message, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, STORE_RETRY_MAX_S)
            self.readiness.set("ready", "ready")
            log.info("ready: %s serving %s", self.model.model_id, name)
            self.model.probe_in_background(self.store)
        except asyncio.CancelledError:
            raise
        except ShuttingDown:
            log.info("start-up stopped: the server is shutting down")
        except Exception as exc:
            self.readiness.set("failed", failure_detail(self.readiness.detail, exc))
            log.exception("start-up failed; /readyz will answer 503")

    def begin_shutdown(self) -> None:
        """As soon as the server is told to stop: classifiers being embedded stop at their next
        chunk (their requests get 503 ``shutting_down``) and no new ones start; a background probe
        stops at its next timed call."""
        self.text_work.close()
        self.model.stop_probe()

    async def stop(self) -> None:
        """Finish queued work, then release threads. uvicorn has already drained open requests."""
        self.begin_shutdown()
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
            await asyncio.gather(self._startup, return_exceptions=True)
        await self.jobs.close()
        await self.batcher.close()
        await self.registry.close()
        self.decoder.shutdown()
        self._inference_executor.shutdown(wait=True)
        self.text_work.shutdown()
