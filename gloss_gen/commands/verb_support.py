"""Pieces several verbs share: model options, settings overrides, the model, usage errors, the
random-weights warning and quiet library logs."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from gloss_gen.core.config import get_settings
from gloss_gen.core.errors import InputError
from gloss_gen.core.file_types import looks_like_image
from gloss_gen.model.weights import RANDOM_WEIGHTS_WARNING

# Loggers of libraries whose INFO lines are noise in verb output (shown with --verbose).
NOISY_LOGGERS = ("httpx", "httpx2", "httpcore", "openai", "open_clip", "urllib3", "matplotlib", "PIL",
                 "huggingface_hub", "filelock")
# vgloss's own INFO lines about loading (model cache, inference path): noise in a verb's output.
OWN_STARTUP_LOGGERS = ("gloss_gen.inference", "gloss_gen.model")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="open_clip model name (default: VGLOSS_MODEL or ViT-B-32)")
    group.add_argument(
        "--pretrained",
        help="pretrained tag, checkpoint path, or 'none' for random init (default: VGLOSS_PRETRAINED or openai)",
    )
    group.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: VGLOSS_DEVICE or auto")


def settings_from_args(args: argparse.Namespace):
    """The process settings with the command line's model options laid over them; a bad
    ``VGLOSS_*`` value is one line naming the variable."""
    overrides = {
        key: getattr(args, key)
        for key in ("model", "pretrained", "device")
        if getattr(args, key, None) is not None
    }
    try:
        settings = get_settings()
    except ValidationError as exc:
        raise UserError(settings_error_line(exc)) from None
    return settings.model_copy(update=overrides) if overrides else settings


def settings_error_line(exc: ValidationError) -> str:
    """pydantic's report of the first bad setting as one line: the variable, its value, the rule."""
    error = exc.errors()[0]
    name = "VGLOSS_" + "_".join(str(part) for part in error["loc"]).upper() if error["loc"] else "a VGLOSS_ setting"
    shown = f"={error['input']!r}" if "input" in error and not isinstance(error["input"], dict) else ""
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"invalid setting {name}{shown}: {error['msg']}{more}"


def check_image_files(paths) -> None:
    """Every path exists, and at least one starts like an image; else one line naming them."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise UserError(f"{shown}: no such file" if len(missing) == 1 else f"{len(missing)} files do not exist: {shown}")
    folders = [str(p) for p in paths if not p.is_file()]
    if folders:
        raise UserError(f"{folders[0]} is not a file (give image files; for a folder use vgloss eval)")
    others = [str(p) for p in paths if not looks_like_image(p)]
    if others and len(others) == len(paths):  # among images, a non-image is that image's error, as the API does
        shown = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
        raise UserError(f"{shown}: not an image (JPEG, PNG, WebP, GIF, BMP or TIFF)" if len(others) == 1
                        else f"none of the {len(others)} files is an image: {shown}")


def open_checked_store(settings):
    """The settings' store; a configured Redis must answer within 2 s, else one line saying which
    and why (no password shown)."""
    from gloss_gen.data.store import open_store

    if not settings.redis_url:
        return open_store(settings)
    import redis

    from gloss_gen.data.store_backends import RedisBackend

    try:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
        where = RedisBackend(settings.redis_url, client=client).describe()
    except ValueError as exc:
        raise UserError(f"invalid VGLOSS_REDIS_URL: {exc}") from None
    try:
        client.ping()
    except redis.RedisError as exc:
        raise UserError(f"Redis at {where} does not answer ({exc}); start it or fix VGLOSS_REDIS_URL") from None
    return open_store(settings)


def check_model_setup(settings) -> None:
    """The inference runtime's package and the CLIP weights, before the model loads: one line each."""
    from gloss_gen.inference.paths import candidates
    from gloss_gen.model.weights import require_weights

    if settings.resolved_device() == "cpu":
        for spec in candidates(settings.backend, settings.precision):
            if settings.backend != "auto":
                spec.check_available()
    require_weights(settings.model, settings.pretrained, settings.cache_dir)


def check_class_set_args(args: argparse.Namespace, settings, store) -> None:
    """``--class-set`` (else the default set) names a built-in, a set in the store or a readable
    class-set file; ``--labels`` and ``--class-set`` are not both given."""
    from gloss_gen.data.classsets import BUILTIN_CLASS_SETS, load_class_set

    if args.labels and args.class_set:
        raise UserError("give --class-set or --labels, not both")
    if args.labels is not None and not any(label.strip() for label in args.labels):
        raise UserError("--labels needs at least one non-empty label")
    if not args.labels:
        ref = args.class_set or settings.default_class_set
        if ref not in BUILTIN_CLASS_SETS and store.get_class_set(ref) is None:
            load_class_set(ref)  # raises the one-line "unknown class set" / "file does not exist" error


def classifier_from_args(args: argparse.Namespace, settings, store, model):
    """The classifier ``--labels`` or ``--class-set`` names (built and stored when missing, as the
    server does) and the class set's active adapter (none for ad-hoc labels)."""
    from gloss_gen.classify.adapter_records import get_active_adapter
    from gloss_gen.classify.pipeline import get_or_build_named_classifier
    from gloss_gen.zeroshot import label_classifier

    if args.labels:
        labels = [label.strip() for label in args.labels if label.strip()]
        return label_classifier(store, model, labels, settings.label_templates), None
    classifier = get_or_build_named_classifier(store, model, args.class_set or settings.default_class_set,
                                               settings.default_method)
    return classifier, get_active_adapter(store, model.id, classifier.class_set.name, classifier.key)


def add_rerank_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rerank", choices=("fudd", "none"),
                        help="second look: fudd re-ranks the top --rerank-k classes with the class set's pair "
                             "descriptions (default: VGLOSS_RERANK, applied where the set has them)")
    parser.add_argument("--rerank-k", type=int, metavar="K", help="classes re-ranked (2-100, default: VGLOSS_RERANK_K)")


def check_rerank_args(args: argparse.Namespace) -> None:
    if args.rerank_k is not None and not 2 <= args.rerank_k <= 100:
        raise UserError("--rerank-k must be between 2 and 100")
    if args.rerank_k is not None and args.rerank == "none":
        raise UserError("--rerank-k needs --rerank fudd (or leave --rerank out)")


def rerank_from_args(args: argparse.Namespace, settings, store, head) -> tuple[int, dict | None]:
    """Attach the class set's active pair embeddings to ``head`` when the re-rank applies; the depth
    to re-rank and its description for the JSON output (0 and None: first pass only)."""
    from gloss_gen.classify.pair_embeddings import get_active_pair_embeddings

    method = args.rerank or settings.rerank
    if method == "none" or getattr(args, "labels", None):
        if args.rerank == "fudd":
            raise UserError("--rerank fudd needs a class set with pair descriptions, not --labels")
        return 0, None
    name = head.classifier.class_set.name
    pairs = get_active_pair_embeddings(store, head.classifier.model_id, name)
    if pairs is None:
        if args.rerank == "fudd":
            raise UserError(f"class set {name} has no pair descriptions for {head.classifier.model_id}; run "
                            f"`vgloss describe {name} --method fudd` and `vgloss embed` its file first")
        return 0, None
    head.attach_pairs(pairs)
    k = min(args.rerank_k or settings.rerank_k, head.num_classes)
    return (k, {"method": "fudd", "k": k, "pairs": pairs.key}) if k > 1 else (0, None)


def add_open_set_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--open-set", metavar="MODE", help="off, mcm or neglabel (default: VGLOSS_OPEN_SET or off)")
    parser.add_argument("--open-set-threshold", metavar="T",
                        help="unknown below this score (0-1; default: calibrated on the set's examples, "
                             "else VGLOSS_OPEN_SET_THRESHOLD, else the method's default)")


def check_open_set_args(args: argparse.Namespace, settings) -> None:
    """``args.open_set`` (off/mcm/neglabel) and ``args.open_set_threshold`` (float or None), checked."""
    from gloss_gen.classify.open_set import check_open_set_mode, check_threshold

    args.open_set = check_open_set_mode(args.open_set if args.open_set is not None else settings.open_set)
    if args.open_set_threshold is not None:
        text = str(args.open_set_threshold)
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"--open-set-threshold must be a number between 0 and 1, not {text[:40]!r}") from None
        args.open_set_threshold = check_threshold(value)
        if args.open_set == "off":
            raise UserError("--open-set-threshold needs --open-set mcm or neglabel")


def open_set_scorer_from_args(args: argparse.Namespace, settings, store, model, head):
    """The open-set scorer ``--open-set`` asks for (negatives built and stored on first use, the
    threshold calibrated when the set has examples), or ``None`` when it is off."""
    if args.open_set == "off":
        return None
    from gloss_gen.adapt.open_set_calibration import open_set_scorer
    from gloss_gen.imaging import ImageLimits
    from gloss_gen.model.model_source import ModelSource

    return open_set_scorer(store, ModelSource.of(model), head, args.open_set, ImageLimits.from_settings(settings),
                           settings, requested=args.open_set_threshold, progress=True)


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


def quiet_libraries(verbose: bool = False, own_info: bool = False) -> None:
    """Keep library chatter out of verb output unless ``verbose``; vgloss's own start-up lines
    (model loaded, inference path) only where they are the point (``own_info``: serve, worker, probe)."""
    for noisy in NOISY_LOGGERS + (() if own_info else OWN_STARTUP_LOGGERS):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("matplotlib").setLevel(logging.DEBUG if verbose else logging.ERROR)  # the font-cache line
    if not verbose:
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, QuietThirdPartyFilter) for f in handler.filters):
                handler.addFilter(QuietThirdPartyFilter())
