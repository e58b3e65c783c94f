"""Pieces several verbs share: model options, settings overrides, building default classifiers."""

from __future__ import annotations

import argparse
import logging
import time

log = logging.getLogger(__name__)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="open_clip model name (default: VGLOSS_MODEL or ViT-B-32)")
    group.add_argument(
        "--pretrained",
        help="pretrained tag, checkpoint path, or 'none' for random init (default: VGLOSS_PRETRAINED or openai)",
    )
    group.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: VGLOSS_DEVICE or auto")


def settings_from_args(args: argparse.Namespace):
    """The process settings with the command line's model options laid over them."""
    from ..config import get_settings

    overrides = {
        key: getattr(args, key)
        for key in ("model", "pretrained", "device")
        if getattr(args, key, None) is not None
    }
    settings = get_settings()
    return settings.model_copy(update=overrides) if overrides else settings


def load_model(settings):
    from ..models import load_clip_from_settings

    started = time.perf_counter()
    model = load_clip_from_settings(settings)
    log.info("loaded %s on %s (%s) in %.1fs", model.id, model.device, model.precision,
             time.perf_counter() - started)
    return model


def offline_descriptions(class_set, method: str):
    from ..descriptions import describe_classname, describe_wordnet

    if method == "classname":
        return describe_classname(class_set)
    if method == "wordnet":
        return describe_wordnet(class_set)
    from ..cli import UserError

    raise UserError(f"method {method!r} needs a description file; run `vgloss describe` first")


def get_or_build_classifier(store, model, class_set_ref: str, method: str, progress: bool = True):
    """The active classifier for a class set, built with an offline method and stored if missing."""
    from ..classifier import build_classifier
    from ..classsets import BUILTIN_CLASS_SETS, load_class_set

    classifier = store.get_active_classifier(model.id, str(class_set_ref))
    if classifier is not None:
        return classifier
    class_set = store.get_class_set(str(class_set_ref)) if class_set_ref not in BUILTIN_CLASS_SETS else None
    if class_set is None:
        class_set = load_class_set(class_set_ref)
        classifier = store.get_active_classifier(model.id, class_set.name)
        if classifier is not None:
            return classifier
    log.info("no classifier for %s with %s yet; building one with the %s method",
             class_set.name, model.id, method)
    description_set = offline_descriptions(class_set, method)
    classifier = build_classifier(model, description_set, progress=progress)
    store.put_descriptions(description_set)
    store.put_classifier(classifier)
    return classifier
