"""The Python entry point: ``ZeroShotClassifier``, zero-shot classification in a notebook or script.

    from gloss_gen import ZeroShotClassifier

    clf = ZeroShotClassifier(class_set="cifar10")
    clf.classify("cat.jpg", top_k=3, explain=True)          # -> [{"class_id", "label", "score", ...}]
    clf.classify("cat.jpg", candidate_labels=["a cat", "a teapot"])
    clf.label("photos/", out="labels/")                     # a folder, shards or a path list -> Parquet

It gives the predictions the server gives for the same image: the same stored classifier (the
store named by the ``VGLOSS_*`` settings, built with the server's default method when missing),
the same decoding and preprocessing (:mod:`gloss_gen.imaging`), the same scoring head
(:class:`gloss_gen.classify.scoring.ScoringHead`), the process's model cache and the one build-and-store
step (:func:`gloss_gen.classify.pipeline.build_and_store`). Ad-hoc labels are cached in the store under the name the
server uses, so labels embedded here, by ``vgloss classify --labels`` or by the server are shared.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from gloss_gen.classify.pipeline import build_and_store, get_or_build_named_classifier
from gloss_gen.classify.scoring import ScoringHead
from gloss_gen.core.config import get_settings
from gloss_gen.core.errors import InputError
from gloss_gen.data.classifier import ad_hoc_class_set, serves_labels
from gloss_gen.data.classsets import BUILTIN_CLASS_SETS, load_class_set
from gloss_gen.data.descriptions import describe_classname
from gloss_gen.data.methods import OFFLINE_METHODS, describe_offline
from gloss_gen.data.store import open_store
from gloss_gen.imaging import ImageLimits, Preprocessor, load_tensor, to_rgb
from gloss_gen.labelling.label_job import LabelSummary, run_label_job
from gloss_gen.labelling.label_options import LabelOptions
from gloss_gen.model.clip_models import get_model
from gloss_gen.model.weights import RANDOM_WEIGHTS_WARNING

if TYPE_CHECKING:
    from PIL import Image

    from gloss_gen.core.config import Settings
    from gloss_gen.data.classifier import Classifier
    from gloss_gen.data.store import Store
    from gloss_gen.model.clip_models import ClipModel

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, "Image.Image"]
"""A file path, the bytes of an image file, or a PIL image."""

log = logging.getLogger(__name__)


def label_classifier(store: Store, model: ClipModel, labels: Sequence[str], templates: str) -> Classifier:
    """The classifier for ad-hoc labels in the ``templates`` template set
    (``Settings.label_templates``): the one stored for this model under the server's name for them
    (:func:`gloss_gen.data.classifier.ad_hoc_class_set`) if any, else class-name prompts embedded now and
    stored under that name."""

    class_set = ad_hoc_class_set(list(labels), templates)
    classifier = store.get_active_classifier(model.id, class_set.name)
    if classifier is not None and serves_labels(classifier, class_set):
        log.info("labels %s: using the classifier stored for %s (no text encoded)", class_set.name, model.id)
        return classifier
    classifier = build_and_store(model, describe_classname(class_set), store)
    log.info("labels %s: embedded %d labels and stored them for the next run", class_set.name, len(labels))
    return classifier


def _clean_labels(labels: Sequence[str]) -> list[str]:
    if isinstance(labels, str):
        raise InputError("labels must be a list of strings, e.g. ['a cat', 'a dog'], not one string")
    cleaned = [str(label).strip() for label in labels if str(label).strip()]
    if not cleaned:
        raise InputError("give at least one non-empty label")
    return cleaned


class ZeroShotClassifier:
    """Classify images against a class set (or ad-hoc labels) with CLIP and stored descriptions.

    ``class_set``: a built-in name (``imagenet1k``, ``cifar10``, ``stl10``), a class-set file, or a
    set in the store (default: ``VGLOSS_DEFAULT_CLASS_SET``). ``method``: ``None`` uses the active
    stored classifier, as the server does, building one with ``VGLOSS_DEFAULT_METHOD`` if there is
    none; ``"wordnet"`` or ``"classname"`` uses a classifier built with that method (built and
    stored if missing). ``model``/``pretrained``/``device`` default to the ``VGLOSS_*`` settings;
    ``store`` to the store they name.
    """

    def __init__(
        self,
        class_set: str | None = None,
        method: str | None = None,
        *,
        model: str | None = None,
        pretrained: str | None = None,
        device: str | None = None,
        store: Store | None = None,
        settings: Settings | None = None,
        _labels: Sequence[str] | None = None,
    ) -> None:

        overrides = {k: v for k, v in {"model": model, "pretrained": pretrained, "device": device}.items() if v}
        base = settings or get_settings()
        self.settings = base.model_copy(update=overrides) if overrides else base
        if method is not None and method not in OFFLINE_METHODS:
            raise InputError(
                f"method {method!r} needs a description file: run `vgloss describe` and `vgloss embed`, "
                "then use ZeroShotClassifier(class_set=...) to classify with the stored classifier"
            )
        self.store = store or open_store(self.settings)
        if _labels is None:
            self._check_class_set(class_set or self.settings.default_class_set)
        self.model = get_model(self.settings)
        if str(self.model.pretrained).strip().lower() == "none":
            warnings.warn(RANDOM_WEIGHTS_WARNING, UserWarning, stacklevel=2)
        if _labels is not None:
            self.classifier = label_classifier(self.store, self.model, _clean_labels(_labels),
                                               self.settings.label_templates)
        else:
            self.classifier = self._named_classifier(class_set or self.settings.default_class_set, method)
        self._heads: dict[str, Any] = {}
        self._label_classifiers: dict[tuple[str, ...], Classifier] = {}
        self._preprocessor = None

    @classmethod
    def from_labels(cls, labels: Sequence[str], **options: Any) -> ZeroShotClassifier:
        """A classifier for ad-hoc labels (class-name prompts, cached in the store like the server's)."""
        return cls(_labels=_clean_labels(labels), **options)

    # ------------------------------------------------------------------------------ public

    @property
    def labels(self) -> list[str]:
        return list(self.classifier.class_set.names)

    @property
    def class_set(self) -> str:
        return self.classifier.class_set.name

    def classify(
        self,
        images: ImageInput | Sequence[ImageInput],
        top_k: int = 5,
        explain: bool = False,
        candidate_labels: Sequence[str] | None = None,
    ) -> list[dict] | list[list[dict]]:
        """Top-``top_k`` predictions, best first, as the server's ``predictions`` lists: dicts with
        ``class_id``, ``label``, ``score``, ``similarity`` (and ``evidence`` with ``explain``).

        One image (a path, bytes or a PIL image) gives one list; a list of images gives a list of
        lists. ``candidate_labels`` classifies against those labels instead of the class set. A file
        that is not a readable image raises :class:`gloss_gen.imaging.ImageError` (its message is the
        server's).
        """
        import torch

        if not 1 <= int(top_k) <= 100:
            raise InputError("top_k must be between 1 and 100")
        single = not isinstance(images, (list, tuple))
        batch = [images] if single else list(images)
        classifier = self.classifier
        if candidate_labels is not None:
            labels = tuple(_clean_labels(candidate_labels))
            if labels not in self._label_classifiers:
                self._label_classifiers[labels] = label_classifier(self.store, self.model, labels,
                                                                   self.settings.label_templates)
            classifier = self._label_classifiers[labels]
        head = self._head(classifier)
        tensors = [self._tensor(image) for image in batch]
        results: list[list[dict]] = []
        step = self.settings.max_batch
        for start in range(0, len(tensors), step):
            embeddings = self.model.encode_images(torch.stack(tensors[start : start + step]))
            for predictions in head.predict(embeddings, top_k=int(top_k), explain=explain):
                results.append([p.to_dict(explain) for p in predictions])
        return results[0] if single else results

    __call__ = classify

    def label(
        self,
        source: str | os.PathLike | Sequence[str | os.PathLike],
        out: str | os.PathLike,
        *,
        top_k: int = 5,
        embeddings: bool = False,
        embedding_dtype: str = "float16",
        shard_size: int = 1000,
        batch_size: int | None = None,
        engine: str = "local",
        ray_address: str | None = None,
        progress: bool = True,
    ) -> LabelSummary:
        """Label every image ``source`` names (a folder, tar shards, a .txt/.csv/.parquet list of
        paths, or a list of those) into ``out/part-NNNNN.parquet``: the job ``vgloss label`` runs,
        with this classifier's model, classifier and scores. Re-running resumes; other settings
        into the same ``out`` are refused. Returns the run's summary (``.to_dict()``)."""
        sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
        options = LabelOptions(top_k=int(top_k), embedding_dtype=embedding_dtype if embeddings else None,
                               shard_size=int(shard_size), batch_size=batch_size, progress=progress)
        return run_label_job(sources, out, model=self.model, classifier=self.classifier, settings=self.settings,
                             options=options, engine=engine, ray_address=ray_address)

    def __repr__(self) -> str:
        return (f"ZeroShotClassifier(class_set={self.class_set!r}, classes={len(self.labels)}, "
                f"method={self.classifier.method!r}, model={self.model.id!r})")

    # ------------------------------------------------------------------------------ internals

    def _check_class_set(self, name: str) -> None:
        """Unknown names fail before the model loads."""

        if name not in BUILTIN_CLASS_SETS and self.store.get_class_set(name) is None:
            load_class_set(name)  # raises ClassSetError with the one-line reason

    def _named_classifier(self, name: str, method: str | None) -> Classifier:

        if method is None:
            return get_or_build_named_classifier(self.store, self.model, name, self.settings.default_method,
                                           progress=False)

        active = self.store.get_active_classifier(self.model.id, name)
        if active is not None and active.method == method:
            return active
        class_set = (self.store.get_class_set(name) if name not in BUILTIN_CLASS_SETS else None) or load_class_set(name)
        description_set, _ = describe_offline(class_set, method)
        # activated only where nothing is active: never replaces what a server serves
        return build_and_store(self.model, description_set, self.store, activate=active is None)

    def _head(self, classifier: Classifier):

        if classifier.key not in self._heads:
            self._heads[classifier.key] = ScoringHead(classifier, self.model.device)
        return self._heads[classifier.key]

    def _tensor(self, image: ImageInput):
        from PIL import Image, ImageOps

        if self._preprocessor is None:
            self._preprocessor = Preprocessor.from_open_clip(self.model.model)
        limits = ImageLimits.from_settings(self.settings)
        if isinstance(image, Image.Image):
            return self._preprocessor(to_rgb(ImageOps.exif_transpose(image)))
        if isinstance(image, (bytes, bytearray, memoryview)):
            return load_tensor(bytes(image), limits, self._preprocessor)
        if isinstance(image, (str, os.PathLike)):
            path = Path(image)
            if not path.is_file():
                raise InputError(f"{path}: no such file")
            return load_tensor(path.read_bytes(), limits, self._preprocessor)
        if isinstance(image, io.IOBase):
            return load_tensor(image.read(), limits, self._preprocessor)
        raise InputError(f"cannot classify a {type(image).__name__}: give a path, bytes or a PIL image")
