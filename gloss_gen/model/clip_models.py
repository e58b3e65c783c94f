"""Loading open_clip models and encoding text and images with them.

``load_clip`` is the one factory; :class:`ModelSpec` names what to load (device and precision
resolved once, here) and :func:`get_model` / :data:`MODEL_CACHE` hold one loaded model per spec,
shared by the server, the CLI verbs, the evaluation harness and the queue workers, so the same
settings always give the same model, loaded once per process.

Model names follow open_clip: a built-in architecture (``ViT-B-32``) with a ``pretrained`` tag or
checkpoint path, or a schema-prefixed name (``hf-hub:org/repo``, ``local-dir:/path``) that
carries its own weights. ``pretrained='none'`` builds the architecture with random weights from a
fixed seed, so two processes given the same settings get the same model (tests and offline smoke
checks rely on this). ``pretrained='BASE+DELTA.safetensors'`` loads BASE and applies a ClipFit
delta over it (:mod:`gloss_gen.model.deltas`); the delta's hash is part of the model id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gloss_gen.core.config import get_settings
from gloss_gen.core.devices import resolve_device, resolve_precision
from gloss_gen.core.errors import ConfigError
from gloss_gen.core.logs import quiet_root_logger
from gloss_gen.data.classifier import BetweenBatches
from gloss_gen.inference import attach_engine
from gloss_gen.inference.towers import encode_text_trimmed
from gloss_gen.model.deltas import apply_delta, delta_model_id, split_pretrained
from gloss_gen.model.weights import require_weights

log = logging.getLogger(__name__)

"""``(texts encoded so far, total)``; see :meth:`ClipModel.encode_text`."""

RANDOM_INIT_SEED = 0
_NONE_TAGS = {"none", "", "random"}
SCHEMA_PREFIXES = ("hf-hub:", "local-dir:")
"""Model names that carry their own weights (``pretrained`` is ignored for them)."""
_configs_registered = False
_register_lock = threading.Lock()


def register_model_configs() -> None:
    """Add vgloss's own model configs (``vgloss-tiny``, a small CLIP for tests) to open_clip."""
    global _configs_registered
    if _configs_registered:
        return
    with _register_lock:
        if not _configs_registered:
            import open_clip

            open_clip.add_model_config(Path(str(resources.files("gloss_gen.model") / "configs")))
            _configs_registered = True


def has_own_weights(model_name: str) -> bool:
    return model_name.startswith(SCHEMA_PREFIXES)


def pretrained_tag(model_name: str, pretrained: str | None) -> str | None:
    """The tag or checkpoint open_clip should load, or ``None`` for random init / own weights."""
    if has_own_weights(model_name):
        return None
    tag = (pretrained or "none").strip()
    return None if tag.lower() in _NONE_TAGS else tag


def model_id(model_name: str, pretrained: str | None) -> str:
    """The identifier a classifier is keyed by: ``ViT-B-32/openai``, ``hf-hub:org/repo``, ..."""

    base, delta = split_pretrained((pretrained or "none").strip())
    if delta is not None:
        return delta_model_id(model_id(model_name, base), delta)
    if has_own_weights(model_name):
        return model_name
    tag = pretrained_tag(model_name, pretrained)
    if tag is None:
        tag = "none"
    elif Path(tag).is_file():
        tag = f"file:{Path(tag).name}"
    return f"{model_name}/{tag}"


@dataclass
class ClipModel:
    """An open_clip model with its tokenizer and validation transform, ready for inference."""

    model: torch.nn.Module
    tokenizer: Callable
    preprocess: Callable
    model_name: str
    pretrained: str
    device: torch.device
    precision: str
    engine: Any = None  # a gloss_gen.inference.InferenceEngine, or None for eager self.model

    @property
    def id(self) -> str:
        return model_id(self.model_name, self.pretrained)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().float().exp().item())

    @property
    def logit_bias(self) -> float | None:
        bias = getattr(self.model, "logit_bias", None)
        return None if bias is None else float(bias.detach().float().item())

    @property
    def embed_dim(self) -> int:
        proj = getattr(self.model, "text_projection", None)
        if isinstance(proj, torch.Tensor):
            return int(proj.shape[-1])
        return int(self.encode_text(["x"]).shape[-1])

    @property
    def preprocess_cfg(self) -> dict:
        import open_clip

        return dict(open_clip.get_model_preprocess_cfg(self.model))

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.inference_mode()
    def encode_text(
        self,
        texts: Sequence[str],
        batch_size: int = 256,
        progress: bool = False,
        between_batches: BetweenBatches | None = None,
    ) -> np.ndarray:
        """L2-normalised float32 text embeddings, shape (len(texts), dim).

        ``between_batches(done, total)`` is called before every batch after the first, with the
        texts encoded so far: a caller may wait there (to share the model with other work) or raise
        (to stop); nothing is left half-done when it raises. Texts are batched shortest first, so
        each batch carries little padding (the text tower skips padding positions); the rows come
        back in the order given.
        """
        tokens = self.tokenizer(list(texts)) if len(texts) else None
        order = torch.argsort(tokens.argmax(dim=-1), stable=True) if tokens is not None else torch.zeros(0)
        out = []
        starts = range(0, len(texts), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encoding text", unit="batch")
        for start in starts:
            if between_batches is not None and start > 0:
                between_batches(start, len(texts))
            batch = tokens[order[start : start + batch_size]]
            if self.engine is not None:
                out.append(torch.nn.functional.normalize(self.engine.text_features(batch).float(), dim=-1))
                continue
            emb = encode_text_trimmed(self.model, batch.to(self.device), normalize=True)
            out.append(emb.float().cpu())
        if not out:
            return np.zeros((0, 0), dtype=np.float32)
        embeddings = torch.empty((len(texts), out[0].shape[1]), dtype=torch.float32)
        embeddings[order] = torch.cat(out)
        return embeddings.numpy()

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Float32 image embeddings (on the CPU) for a preprocessed batch, L2-normalised unless
        ``normalize`` is false (Tip-Adapter averages raw features over augmented views)."""
        if self.engine is not None:
            features = self.engine.image_features(pixels).float()
            return torch.nn.functional.normalize(features, dim=-1) if normalize else features
        non_blocking = self.device.type == "cuda"
        if non_blocking and not pixels.is_pinned():
            pixels = pixels.pin_memory()
        pixels = pixels.to(self.device, dtype=self.dtype, non_blocking=non_blocking)
        emb = self.model.encode_image(pixels, normalize=normalize)
        return emb.float().cpu()


def load_clip(
    model_name: str = "ViT-B-32",
    pretrained: str | None = "openai",
    device: str = "cpu",
    precision: str = "fp32",
    cache_dir: str | Path | None = None,
) -> ClipModel:
    """Create an open_clip model for inference (uncached: most callers want :func:`get_model`).

    Args:
        model_name: an open_clip architecture (``ViT-B-32``, ``ViT-L-14``, ``vgloss-tiny``...) or a
            schema-prefixed name (``hf-hub:org/repo``, ``local-dir:/path``).
        pretrained: a pretrained tag (``openai``, ``laion2b_s34b_b79k``...), a checkpoint file, or
            ``none`` for deterministic random weights. Ignored for schema-prefixed names.
        device: ``cpu`` or ``cuda`` (``auto`` picks CUDA when available).
        precision: ``fp32``, ``fp16`` or ``bf16`` (``auto``: fp16 on CUDA, fp32 on CPU).
        cache_dir: where downloaded weights are cached (defaults to open_clip's / HF's cache).
    """
    import open_clip

    base, delta = split_pretrained((pretrained or "none").strip())
    if delta is not None:
        loaded = load_clip(model_name, base, device, precision, cache_dir)
        apply_delta(loaded.model, delta, loaded.id)
        loaded.pretrained = pretrained
        return loaded
    register_model_configs()
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    tag = pretrained_tag(model_name, pretrained)
    kwargs = dict(precision=precision, device=device, cache_dir=str(cache_dir) if cache_dir else None)
    if tag is None and not has_own_weights(model_name):
        # Random weights are asked for here, so open_clip's "no pretrained weights" warning is noise.
        with torch.random.fork_rng(devices=[]), quiet_root_logger():
            torch.manual_seed(RANDOM_INIT_SEED)
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None, **kwargs)
    else:
        require_weights(model_name, pretrained, kwargs["cache_dir"])
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=tag, **kwargs)
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name, cache_dir=kwargs["cache_dir"])
    return ClipModel(
        model=model,
        tokenizer=tokenizer,
        preprocess=preprocess,
        model_name=model_name,
        pretrained=pretrained or "none",
        device=torch.device(device),
        precision=precision,
    )


@dataclass(frozen=True)
class ModelSpec:
    """What to load: the key of the model cache. Device and precision are already resolved."""

    name: str
    pretrained: str
    device: str = "cpu"
    precision: str = "fp32"
    cache_dir: str | None = None
    # CPU inference path (gloss_gen.inference): with precision auto|bf16|int8 or another backend, the
    # model loads in fp32 and the engine chosen for these settings serves both towers
    backend: str = "torch"
    data_dir: str | None = None
    max_batch: int = 32
    # where the probe decision is cached (the settings' store) and how long a probe may take
    redis_url: str | None = None
    redis_namespace: str | None = None
    probe_budget_s: float = 120.0

    @classmethod
    def create(
        cls,
        name: str,
        pretrained: str | None,
        device: str = "auto",
        precision: str = "auto",
        cache_dir: str | Path | None = None,
        backend: str = "torch",
        data_dir: str | Path | None = None,
        max_batch: int = 32,
        redis_url: str | None = None,
        redis_namespace: str | None = None,
        probe_budget_s: float = 120.0,
    ) -> ModelSpec:
        device = resolve_device(device)
        keep = device == "cpu" and precision in ("auto", "bf16", "int8")  # the engine resolves these
        precision = precision if keep else resolve_precision(precision, device)
        if device != "cpu" and backend == "auto":
            backend = "torch"
        if device != "cpu" or (backend, precision) == ("torch", "fp32"):
            data_dir, max_batch = None, 32  # no engine: keep one cache entry for every data dir
            redis_url = redis_namespace = None
        return cls(name, pretrained or "none", device, precision, str(cache_dir) if cache_dir else None,
                   backend, str(data_dir) if data_dir else None, max_batch, redis_url, redis_namespace,
                   float(probe_budget_s))

    @classmethod
    def from_settings(cls, settings=None, **overrides) -> ModelSpec:
        """The spec ``Settings`` name (``model``, ``pretrained``, ``device``, ``precision``,
        ``cache_dir``), with non-``None`` overrides laid over them."""

        s = settings or get_settings()
        values = {"name": s.model, "pretrained": s.pretrained, "device": s.device,
                  "precision": s.precision, "cache_dir": s.cache_dir, "backend": s.backend,
                  "data_dir": s.data_dir, "max_batch": s.max_batch, "redis_url": s.redis_url,
                  "redis_namespace": s.redis_namespace, "probe_budget_s": s.probe_budget_s}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.create(**values)

    @property
    def id(self) -> str:
        return model_id(self.name, self.pretrained)


class ModelCache:
    """One loaded model per :class:`ModelSpec`, loaded on first use, safe across threads.

    Concurrent first requests for the same spec load it once; different specs load in parallel.
    """

    def __init__(self, loader: Callable[[ModelSpec], ClipModel] | None = None) -> None:
        self._loader = loader or _load_spec
        self._models: dict[ModelSpec, ClipModel] = {}
        self._locks: dict[ModelSpec, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, spec: ModelSpec) -> ClipModel:
        model = self._models.get(spec)
        if model is not None:
            return model
        with self._guard:
            lock = self._locks.setdefault(spec, threading.Lock())
        with lock:
            model = self._models.get(spec)
            if model is None:
                started = time.perf_counter()
                model = self._loader(spec)
                self._models[spec] = model
                log.info("loaded model %s on %s (%s) in %.1fs", model.id, model.device, model.precision,
                         time.perf_counter() - started)
            return model

    def loaded(self, spec: ModelSpec) -> bool:
        return spec in self._models

    def clear(self) -> None:
        with self._guard:
            self._models.clear()
            self._locks.clear()


def _load_spec(spec: ModelSpec) -> ClipModel:
    if spec.device != "cpu" or (spec.backend, spec.precision) == ("torch", "fp32"):
        if spec.precision in ("auto", "int8") or spec.backend not in ("auto", "torch"):

            raise ConfigError(f"VGLOSS_BACKEND={spec.backend} VGLOSS_PRECISION={spec.precision} run on the CPU only")
        return load_clip(spec.name, spec.pretrained, spec.device, spec.precision, spec.cache_dir)

    clip = load_clip(spec.name, spec.pretrained, spec.device, "fp32", spec.cache_dir)
    attach_engine(clip, spec)
    return clip


MODEL_CACHE = ModelCache()
"""The process's models: every caller that loads by settings goes through it."""


def get_model(settings=None, **overrides) -> ClipModel:
    """The model the settings name (see :meth:`ModelSpec.from_settings`), loaded once per process."""
    return MODEL_CACHE.get(ModelSpec.from_settings(settings, **overrides))
