"""vgloss, the library: class sets, WordNet, descriptions, CLIP embeddings, scoring and the store.

Layers, bottom first (a folder imports only from folders before it; ``lint-imports`` checks it):
``core`` → ``data`` → ``imaging`` → ``inference`` → ``model`` → ``classify`` → ``describe`` →
``evaluation`` → ``adapt`` → ``queue`` → entry points (``zeroshot``, ``commands``, ``cli``).

The public names below are imported on first use, so ``import gloss_gen`` (and ``vgloss --help``)
does not pay for torch and open_clip.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "Classifier": "data.classifier",
    "build_classifier": "data.classifier",
    "classifier_key": "data.classifier",
    "ClassSet": "data.classsets",
    "ClassSetError": "data.classsets",
    "ClassSpec": "data.classsets",
    "build_class_set": "data.classsets",
    "load_class_set": "data.classsets",
    "Settings": "core.config",
    "get_settings": "core.config",
    "DescriptionRecord": "data.descriptions",
    "DescriptionSet": "data.descriptions",
    "describe_classname": "data.descriptions",
    "describe_import": "data.description_importers",
    "describe_wordnet": "data.descriptions",
    "load_description_set": "data.descriptions",
    "ClipModel": "model.clip_models",
    "ModelSpec": "model.clip_models",
    "get_model": "model.clip_models",
    "load_clip": "model.clip_models",
    "model_id": "model.clip_models",
    "METHODS": "data.methods",
    "describe_offline": "data.methods",
    "build_and_store": "classify.pipeline",
    "ScoringHead": "classify.scoring",
    "Store": "data.store",
    "StoreError": "data.store",
    "open_store": "data.store",
    "ZeroShotClassifier": "zeroshot",
    # the error root and the families callers catch (gloss_gen.core.errors)
    "VglossError": "core.errors",
    "InputError": "core.errors",
    "NotFoundError": "core.errors",
    "UnavailableError": "core.errors",
    "CorruptDataError": "core.errors",
    "ConfigError": "core.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gloss_gen' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
