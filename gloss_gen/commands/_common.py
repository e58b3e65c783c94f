"""Pieces several verbs share: model options, settings overrides, the model, default classifiers."""

from __future__ import annotations

import argparse


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
    """The model the settings name, from the process's model cache."""
    from ..models import get_model

    return get_model(settings)


def get_or_build_classifier(store, model, class_set_ref: str, method: str, progress: bool = True):
    """The active classifier for a class set (a name in the store, a built-in or a file), built with
    an offline method and stored if missing."""
    from ..classsets import BUILTIN_CLASS_SETS, load_class_set
    from ..pipeline import get_or_build_classifier as active_or_build

    ref = str(class_set_ref)
    class_set = store.get_class_set(ref) if ref not in BUILTIN_CLASS_SETS else None
    if class_set is None:
        classifier = store.get_active_classifier(model.id, ref)
        if classifier is not None:
            return classifier
        class_set = load_class_set(class_set_ref)
    return active_or_build(store, model, class_set, method, progress=progress)
