"""vgloss offline side: class sets, WordNet, descriptions, CLIP text embeddings and the store.

The public names below are imported on first use, so ``import gloss_gen`` (and ``vgloss --help``)
does not pay for torch and open_clip.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "Classifier": "classifier",
    "build_classifier": "classifier",
    "classifier_key": "classifier",
    "ClassSet": "classsets",
    "ClassSetError": "classsets",
    "ClassSpec": "classsets",
    "build_class_set": "classsets",
    "load_class_set": "classsets",
    "Settings": "config",
    "get_settings": "config",
    "DescriptionRecord": "descriptions",
    "DescriptionSet": "descriptions",
    "describe_classname": "descriptions",
    "describe_import": "descriptions",
    "describe_wordnet": "descriptions",
    "load_description_set": "descriptions",
    "ClipModel": "models",
    "ModelSpec": "models",
    "get_model": "models",
    "load_clip": "models",
    "model_id": "models",
    "METHODS": "methods",
    "describe_offline": "methods",
    "build_and_store": "pipeline",
    "VglossError": "errors",
    "ScoringHead": "scoring",
    "Store": "store",
    "StoreError": "store",
    "open_store": "store",
    "ZeroShotClassifier": "zeroshot",
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
