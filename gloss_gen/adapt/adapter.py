"""Building a cache adapter for a classifier: the one pipeline the CLI, eval and the server share."""

from __future__ import annotations

import numpy as np

from gloss_gen.adapt import AdaptError
from gloss_gen.adapt.examples import Examples
from gloss_gen.adapt.tip import TipConfig, fit_cache
from gloss_gen.classify.adapter_records import AdapterRecord, adapter_key


def build_adapter(classifier, examples: Examples, config: TipConfig, progress: bool = False) -> AdapterRecord:
    """Fit a Tip-Adapter (or -F) cache of ``examples`` over ``classifier``'s prototypes."""
    if examples.model_id != classifier.model_id:
        raise AdaptError(
            f"examples were embedded with {examples.model_id} but the classifier is for {classifier.model_id}"
        )
    if examples.class_set.ids != classifier.class_set.ids:
        raise AdaptError(
            f"examples are labelled for class set {examples.class_set.name}, the classifier is for "
            f"{classifier.class_set.name}"
        )
    fitted = fit_cache(examples, classifier.prototypes, classifier.logit_scale, config, progress)
    validation = {"folds": fitted.folds, "held_out": fitted.held_out, "paper_config": fitted.paper_config}
    if fitted.held_out:
        validation["zero_shot_accuracy"] = fitted.zero_shot_correct / fitted.held_out
        validation["adapted_accuracy"] = fitted.adapted_correct / fitted.held_out
    params = config.params()
    params["augment"] = examples.augment
    if config.method == "tip-f":  # 0: trained on the cache's views in turn (before issue 23)
        params["fresh_views"] = 0 if examples.train_views is None else len(examples.train_views)
    return AdapterRecord(
        key=adapter_key(classifier.key, examples.hash, params),
        method=config.method,
        classifier_key=classifier.key,
        model_id=classifier.model_id,
        class_set=classifier.class_set.name,
        class_ids=list(classifier.class_set.ids),
        example_hash=examples.hash,
        params=params,
        alpha=fitted.alpha,
        beta=fitted.beta,
        keys=np.asarray(fitted.keys, dtype=np.float32),
        labels=examples.labels.astype(np.int64),
        names=list(examples.names),
        validation=validation,
        notes=list(examples.notes) + fitted.notes,
    )
