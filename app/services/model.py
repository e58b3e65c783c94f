"""The server's handle on its CLIP model (from the process's model cache), its preprocessor and
its image limits; every call the server makes into the model goes through it."""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import Sequence

import numpy as np
import torch

from app.prometheus_metrics import Metrics
from gloss_gen.core.config import Settings
from gloss_gen.imaging import ImageLimits, Preprocessor
from gloss_gen.inference import attach_engine
from gloss_gen.inference.paths import REFERENCE
from gloss_gen.inference.probe import ProbeCancelled
from gloss_gen.model.clip_models import BetweenBatches, ClipModel, ModelSpec, get_model

log = logging.getLogger(__name__)


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class CountingTextEncoder:
    """What :func:`gloss_gen.data.classifier.build_classifier` needs from a model, counting prompts."""

    def __init__(self, clip: ClipModel, metrics: Metrics) -> None:
        self._clip = clip
        self._metrics = metrics
        self.id = clip.id
        self.logit_scale = clip.logit_scale
        self.logit_bias = clip.logit_bias

    def encode_text(
        self,
        texts: Sequence[str],
        batch_size: int = 256,
        progress: bool = False,
        between_batches: BetweenBatches | None = None,
    ) -> np.ndarray:
        self._metrics.text_prompts_encoded.inc(len(texts))
        started = time.perf_counter()
        embeddings = self._clip.encode_text(texts, batch_size=batch_size, progress=progress,
                                            between_batches=between_batches)
        _count(self._metrics, "text", inference_path(self._clip, "text"), len(texts), started)
        return embeddings


def inference_path(clip: ClipModel, tower: str, batch: int = 1) -> str:
    """The ``backend/precision`` serving ``tower`` at ``batch`` (eager torch when no engine is attached)."""
    if clip.engine is None:
        return f"torch/{clip.precision}"
    return clip.engine.image_path(batch) if tower == "image" else clip.engine.text.path


def _count(metrics: Metrics, tower: str, path: str, items: int, started: float) -> None:
    metrics.inference_items.labels(tower=tower, path=path).inc(items)
    metrics.inference_seconds.labels(tower=tower, path=path).inc(time.perf_counter() - started)


class ModelHolder:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.limits = ImageLimits.from_settings(settings)
        self._clip: ClipModel | None = None
        self._preprocessor: Preprocessor | None = None
        self._text_encoder: CountingTextEncoder | None = None
        self._probe_cancel = threading.Event()
        self._probe: threading.Thread | None = None
        self.probe_state = "none"  # none | running | done | failed | cancelled

    @property
    def loaded(self) -> bool:
        return self._clip is not None

    @property
    def clip(self) -> ClipModel:
        if self._clip is None:
            raise RuntimeError("the model is not loaded yet")
        return self._clip

    @property
    def model_id(self) -> str:
        return self.clip.id

    @property
    def device(self) -> torch.device:
        return self.clip.device

    @property
    def preprocessor(self) -> Preprocessor:
        if self._preprocessor is None:
            raise RuntimeError("the model is not loaded yet")
        return self._preprocessor

    @property
    def text_encoder(self) -> CountingTextEncoder:
        if self._text_encoder is None:
            raise RuntimeError("the model is not loaded yet")
        return self._text_encoder

    def load(self) -> None:
        """Blocking: load the configured model, build its preprocessor and warm it up."""
        if self.settings.resolved_device() == "cpu":
            # intra-op threads = cores: the one inference thread gets the whole machine while
            # decoding threads mostly wait on PIL, which releases the GIL
            torch.set_num_threads(available_cores())
        clip = get_model(self.settings)
        preprocessor = Preprocessor.from_open_clip(clip.model)
        height, width = preprocessor.image_size
        clip.encode_images(torch.zeros(1, 3, height, width))  # first call allocates; keep it off a request
        self._preprocessor = preprocessor
        self._text_encoder = CountingTextEncoder(clip, self.metrics)
        self._clip = clip

    def probe_in_background(self, store) -> bool:
        """Measure the pending inference paths on a daemon thread while the reference serves, then
        swap the engine in one assignment (the batcher reads it once per batch). Whether one started."""
        engine = self.clip.engine
        if engine is None or not engine.pending or self._probe is not None:
            return False
        spec = ModelSpec.from_settings(self.settings)
        # its own copy of the weights: exporting traces the model, which must not race a forward
        shadow = copy.copy(self.clip)
        shadow.model = copy.deepcopy(self.clip.model)

        def run() -> None:
            self.probe_state = "running"
            try:
                attach_engine(shadow, spec, probe=True, store=store, cancel=self._probe_cancel)
            except ProbeCancelled:
                self.probe_state = "cancelled"
                return
            except Exception:
                self.probe_state = "failed"
                log.exception("the background probe of the inference paths failed; torch/fp32 keeps serving")
                return
            self.clip.engine = shadow.engine
            self.probe_state = "done"
            log.info("inference switched to the probe's choice: %s", shadow.engine.summary())

        self._probe = threading.Thread(target=run, name="vgloss-probe", daemon=True)
        self._probe.start()
        log.info("ready on %s; probing %s in the background (budget %.0fs)", REFERENCE,
                 ", ".join(engine.pending), self.settings.probe_budget_s)
        return True

    def stop_probe(self) -> None:
        """Stop a background probe at its next timed call; never waits for it (it is a daemon)."""
        self._probe_cancel.set()

    def inference(self) -> dict:
        """Which inference path serves each tower and why (for ``/readyz``)."""
        if self.clip.engine is not None:
            described = self.clip.engine.describe()
            described["probe"] = self.probe_state
            return described
        path = inference_path(self.clip, "image")
        why = f"eager torch on {self.clip.device}"
        return {"image": [{"path": path, "batch_sizes": "1+"}], "text": path, "why": {"image": why, "text": why}}

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        started = time.perf_counter()
        embeddings = self.clip.encode_images(pixels)
        _count(self.metrics, "image", inference_path(self.clip, "image", len(pixels)), len(pixels), started)
        return embeddings
