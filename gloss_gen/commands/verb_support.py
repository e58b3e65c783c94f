"""Pieces several verbs share: model options, settings overrides, the model, usage errors, the
random-weights warning and quiet library logs."""

from __future__ import annotations

import argparse
import logging
import sys

from gloss_gen.core.config import get_settings
from gloss_gen.core.errors import InputError

# Loggers of libraries whose INFO lines are noise in verb output (shown with --verbose).
NOISY_LOGGERS = ("httpx", "httpx2", "httpcore", "openai", "open_clip", "urllib3", "matplotlib", "PIL")
RANDOM_WEIGHTS_WARNING = (
    "WARNING: pretrained=none: the CLIP model has RANDOM weights, so every score it gives is meaningless "
    "(fine for smoke tests; set VGLOSS_PRETRAINED or --pretrained, e.g. openai, for real results)"
)


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
    overrides = {
        key: getattr(args, key)
        for key in ("model", "pretrained", "device")
        if getattr(args, key, None) is not None
    }
    settings = get_settings()
    return settings.model_copy(update=overrides) if overrides else settings


def load_model(settings):
    """The model the settings name, from the process's model cache."""
    from gloss_gen.model.clip_models import get_model  # torch: only when a verb runs, not for --help

    return get_model(settings)


class UserError(InputError):
    """A problem with the command line itself: printed as one line, exit status 2."""

    code = "usage_error"


def warn_if_random_weights(args: argparse.Namespace) -> None:
    """One loud line on stderr when a verb that loads CLIP loaded random weights."""
    if not hasattr(args, "pretrained"):  # the verb takes no model options: it loads no model
        return
    pretrained = args.pretrained
    if pretrained is None:
        try:
                    pretrained = get_settings().pretrained
        except Exception:  # invalid settings are the verb's to report
            return
    if str(pretrained).strip().lower() == "none":
        print(f"vgloss {args.verb}: {RANDOM_WEIGHTS_WARNING}", file=sys.stderr)


class QuietThirdPartyFilter(logging.Filter):
    """Drops below-WARNING records logged through the root logger itself: libraries that call
    ``logging.info`` directly (open_clip's "Parsing tokenizer identifier ...") rather than their own
    logger. vgloss's own loggers are named, so they pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "root" or record.levelno >= logging.WARNING


def quiet_libraries(verbose: bool = False) -> None:
    """Keep library chatter out of verb output unless ``verbose``."""
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("matplotlib").setLevel(logging.DEBUG if verbose else logging.ERROR)  # the font-cache line
    if not verbose:
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, QuietThirdPartyFilter) for f in handler.filters):
                handler.addFilter(QuietThirdPartyFilter())
