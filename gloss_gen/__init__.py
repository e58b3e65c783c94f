"""vgloss offline side: class sets, WordNet, descriptions, CLIP text embeddings and the store."""

from .classifier import Classifier, build_classifier, classifier_key
from .classsets import ClassSet, ClassSetError, ClassSpec, build_class_set, load_class_set
from .config import Settings, get_settings
from .descriptions import (
    DescriptionRecord,
    DescriptionSet,
    describe_classname,
    describe_import,
    describe_wordnet,
    load_description_set,
)
from .models import ClipModel, load_clip, load_clip_from_settings, model_id
from .store import Store, StoreError, open_store

__version__ = "0.1.0"

__all__ = [
    "Classifier",
    "ClassSet",
    "ClassSetError",
    "ClassSpec",
    "ClipModel",
    "DescriptionRecord",
    "DescriptionSet",
    "Settings",
    "Store",
    "StoreError",
    "build_class_set",
    "build_classifier",
    "classifier_key",
    "describe_classname",
    "describe_import",
    "describe_wordnet",
    "get_settings",
    "load_class_set",
    "load_clip",
    "load_clip_from_settings",
    "load_description_set",
    "model_id",
    "open_store",
]
