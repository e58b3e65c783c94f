"""A handle on a CLIP model that loads it only when something needs it."""

from __future__ import annotations

from gloss_gen.model.clip_models import MODEL_CACHE, ClipModel, ModelCache, ModelSpec


class ModelSource:
    """A handle on the CLIP model that loads it (through the process's model cache) only when
    something actually needs it: a run whose embeddings and classifiers are all in the store
    never loads the model."""

    def __init__(self, spec: ModelSpec, model: ClipModel | None = None, cache: ModelCache = MODEL_CACHE):
        self.spec = spec
        self._model = model
        self._cache = cache

    @classmethod
    def of(cls, model: ClipModel) -> ModelSource:
        return cls(ModelSpec(model.model_name, model.pretrained, str(model.device), model.precision), model=model)

    @classmethod
    def from_settings(cls, settings=None) -> ModelSource:
        return cls(ModelSpec.from_settings(settings))

    @property
    def id(self) -> str:
        return self._model.id if self._model is not None else self.spec.id

    @property
    def device(self) -> str:
        return self.spec.device

    @property
    def cache_tag(self) -> str:
        """The embeddings-cache identity: the model id, plus the CPU inference path asked for when it
        is not eager torch fp32 (cached embeddings never come from another numeric path)."""
        path = f"{self.spec.backend}/{self.spec.precision}"
        return self.id if self.device != "cpu" or path == "torch/fp32" else f"{self.id}@{path}"

    def get(self) -> ClipModel:
        if self._model is None:
            self._model = self._cache.get(self.spec)
        return self._model
