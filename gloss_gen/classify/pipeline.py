"""Descriptions → classifier → store: the one build-and-store step every caller uses.

``vgloss embed``, ``vgloss classify``, ``vgloss eval``, the server (built-in sets, ad-hoc labels,
class-set jobs) and the queue's embed step all turn a description set into a stored classifier
through :func:`build_and_store`, so the content-hash key, what is written (descriptions and
classifier) and how a store outage is treated are decided here once.
"""

from __future__ import annotations

import logging

from gloss_gen.data.classifier import BetweenBatches, Classifier, build_classifier
from gloss_gen.data.classsets import BUILTIN_CLASS_SETS, ClassSet, load_class_set
from gloss_gen.data.descriptions import DescriptionSet
from gloss_gen.data.methods import describe_offline
from gloss_gen.data.store import Store, StoreError

log = logging.getLogger(__name__)


def build_and_store(
    model,
    description_set: DescriptionSet,
    store: Store | None,
    *,
    template_set: str | None = None,
    activate: bool = True,
    keep_on_store_error: bool = False,
    batch_size: int = 256,
    progress: bool = False,
    between_batches: BetweenBatches | None = None,
) -> Classifier:
    """Embed ``description_set`` with ``model`` and write the descriptions and the classifier.

    Args:
        model: a :class:`~gloss_gen.model.clip_models.ClipModel` (or anything with ``id``, ``encode_text``,
            ``logit_scale`` and ``logit_bias``).
        store: where to write; ``None`` builds without writing.
        template_set: the template set of class-name prompts (part of the classifier key);
            ``None``: the class set's own (CLIP's per-dataset templates for CIFAR-10 and STL-10).
        activate: make the classifier the one served for its class set under this model.
        keep_on_store_error: a store that cannot be written is logged and the classifier is
            returned anyway (the server keeps serving from memory); otherwise the error is raised.
        batch_size, progress, between_batches: for the text encoder
            (:meth:`gloss_gen.model.clip_models.ClipModel.encode_text`); an exception raised between
            batches stops the build before anything is written.
    """
    classifier = build_classifier(
        model, description_set, template_set=template_set, batch_size=batch_size, progress=progress,
        between_batches=between_batches,
    )
    if store is None:
        return classifier
    try:
        store_classifier(store, description_set, classifier, activate=activate)
    except StoreError:
        if not keep_on_store_error:
            raise
        log.warning("built classifier %s for %s but could not write it to the store; keeping it in memory",
                    classifier.key, classifier.class_set.name, exc_info=True)
    return classifier


def store_classifier(store: Store, description_set: DescriptionSet, classifier: Classifier, *,
                     activate: bool = True) -> None:
    """Write the descriptions and the classifier built from them (and make it the active one);
    raises :class:`StoreError`. Idempotent: a retry after an outage writes the same keys."""
    store.put_descriptions(description_set)
    store.put_classifier(classifier, activate=activate)


def get_or_build_classifier(
    store: Store, model, class_set: ClassSet, method: str, *, progress: bool = False
) -> Classifier:
    """The active classifier of ``class_set`` under ``model``, built with an offline method and
    stored if there is none yet."""

    classifier = store.get_active_classifier(model.id, class_set.name)
    if classifier is not None:
        return classifier
    log.info("no classifier for %s with %s yet; building one with the %s method", class_set.name, model.id, method)
    description_set, _ = describe_offline(class_set, method)
    return build_and_store(model, description_set, store, progress=progress)


def get_or_build_named_classifier(store, model, class_set_ref: str, method: str, progress: bool = True):
    """The active classifier for a class set (a name in the store, a built-in or a file), built with
    an offline method and stored if missing."""
    ref = str(class_set_ref)
    class_set = store.get_class_set(ref) if ref not in BUILTIN_CLASS_SETS else None
    if class_set is None:
        classifier = store.get_active_classifier(model.id, ref)
        if classifier is not None:
            return classifier
        class_set = load_class_set(class_set_ref)
    return get_or_build_classifier(store, model, class_set, method, progress=progress)
