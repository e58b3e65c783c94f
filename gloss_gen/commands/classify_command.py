from __future__ import annotations

import argparse
import json
from pathlib import Path

from gloss_gen.commands.verb_support import (
    UserError,
    add_model_arguments,
    check_image_files,
    check_model_setup,
    load_model,
    open_checked_store,
    settings_from_args,
)

HELP = "classify local images without a server"
DESCRIPTION = """\
Classify image files with the model and the stored classifier for a class set, as the server
would (same decoding, preprocessing and scoring). A class set with no stored classifier is built
first with VGLOSS_DEFAULT_METHOD (wordnet), as `vgloss serve` does.

Ad-hoc --labels are embedded once per model, in the VGLOSS_LABEL_TEMPLATES template set (default
simple: 7 prompts a label), and kept in the store under the same name the server uses
(labels-<hash>), so the next run with the same labels, or the server, encodes no text.

Examples:
  vgloss classify cat.jpg dog.png
  vgloss classify photos/*.jpg --class-set cifar10 --top-k 3 --explain
  vgloss classify x.jpg --labels "a red car" "a blue bike" --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", metavar="IMAGE", nargs="+", type=Path, help="image files")
    parser.add_argument("--class-set", help="class set name or file (default: VGLOSS_DEFAULT_CLASS_SET)")
    parser.add_argument("--labels", nargs="+", help="ad-hoc labels instead of a class set")
    parser.add_argument("--top-k", type=int, default=5, help="predictions per image (1-100, default 5)")
    parser.add_argument("--explain", action="store_true", help="show the best-matching description")
    parser.add_argument("--json", action="store_true", help="print JSON like the REST API")
    add_model_arguments(parser)


def check_inputs(args: argparse.Namespace, settings, store) -> None:
    """Everything that can be wrong with the command line, found before the model loads."""
    from gloss_gen.data.classsets import BUILTIN_CLASS_SETS, load_class_set

    if not 1 <= args.top_k <= 100:
        raise UserError("--top-k must be between 1 and 100")
    if args.labels and args.class_set:
        raise UserError("give --class-set or --labels, not both")
    if args.labels is not None and not any(label.strip() for label in args.labels):
        raise UserError("--labels needs at least one non-empty label")
    check_image_files(args.images)
    if not args.labels:
        ref = args.class_set or settings.default_class_set
        if ref not in BUILTIN_CLASS_SETS and store.get_class_set(ref) is None:
            load_class_set(ref)  # raises the one-line "unknown class set" / "file does not exist" error


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    store = open_checked_store(settings)
    check_inputs(args, settings, store)  # everything above imports no torch: mistakes are found at once
    check_model_setup(settings)

    import torch

    from gloss_gen.classify.results import ClassifyResult, ImageResult
    from gloss_gen.classify.scoring import ScoringHead
    from gloss_gen.core.errors import InputError
    from gloss_gen.imaging import ImageError, ImageLimits, Preprocessor, load_tensor
    from gloss_gen.zeroshot import label_classifier

    model = load_model(settings)
    if args.labels:
        labels = [label.strip() for label in args.labels if label.strip()]
        classifier = label_classifier(store, model, labels, settings.label_templates)
    else:
        from gloss_gen.classify.pipeline import get_or_build_named_classifier

        classifier = get_or_build_named_classifier(
            store, model, args.class_set or settings.default_class_set, settings.default_method
        )
    from gloss_gen.classify.adapter_records import get_active_adapter

    adapter = None if args.labels else get_active_adapter(store, model.id, classifier.class_set.name, classifier.key)
    head = ScoringHead(classifier, model.device, adapter)
    preprocessor = Preprocessor.from_open_clip(model.model)
    limits = ImageLimits.from_settings(settings)

    results, tensors, positions = [], [], []
    for index, path in enumerate(args.images):
        result = ImageResult(index, path.name)
        try:
            tensors.append(load_tensor(path.read_bytes(), limits, preprocessor))
            positions.append(index)
        except OSError as exc:
            result.error = InputError(exc.strerror or str(exc), code="unreadable_file")
        except ImageError as exc:
            result.error = exc
        results.append(result)
    for start in range(0, len(tensors), settings.max_batch):
        batch = torch.stack(tensors[start : start + settings.max_batch])
        predictions = head.predict(model.encode_images(batch), top_k=args.top_k, explain=args.explain)
        for offset, preds in enumerate(predictions):
            results[positions[start + offset]].predictions = preds

    if args.json:
        print(json.dumps(ClassifyResult.for_classifier(classifier, results, args.explain,
                                                       adapter.key if adapter else None).to_dict(), indent=2))
    else:
        for result in results:
            print(result.filename)
            if result.error is not None:
                print(f"  error: {result.error.message}")
                continue
            for p in result.predictions:
                line = f"  {p.score:7.2%}  {p.label}  ({p.class_id}, cos {p.similarity:.3f})"
                if args.explain and p.evidence:
                    line += f"\n           because: {p.evidence}"
                if args.explain and p.example:
                    line += f"\n           nearest example: {p.example}"
                print(line)
    return 1 if any(result.error is not None for result in results) else 0
