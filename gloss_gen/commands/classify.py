from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import add_model_arguments, get_or_build_classifier, load_model, settings_from_args

HELP = "classify local images without a server"
DESCRIPTION = """\
Classify image files with the model and the stored classifier for a class set, as the server
would (same decoding, preprocessing and scoring). A class set with no stored classifier is built
first with VGLOSS_DEFAULT_METHOD (wordnet), as `vgloss serve` does.

examples:
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


def run(args: argparse.Namespace) -> int:
    import torch

    from ..classifier import ad_hoc_class_set, build_classifier
    from ..cli import UserError
    from ..descriptions import describe_classname
    from ..errors import InputError
    from ..imaging import ImageError, ImageLimits, Preprocessor, load_tensor
    from ..results import ClassifyResult, ImageResult
    from ..scoring import ScoringHead
    from ..store import open_store

    if not 1 <= args.top_k <= 100:
        raise UserError("--top-k must be between 1 and 100")
    if args.labels and args.class_set:
        raise UserError("give --class-set or --labels, not both")
    settings = settings_from_args(args)
    store = open_store(settings)
    model = load_model(settings)
    if args.labels:
        labels = [label.strip() for label in args.labels if label.strip()]
        if not labels:
            raise UserError("--labels needs at least one non-empty label")
        description_set = describe_classname(ad_hoc_class_set(labels))
        classifier = build_classifier(model, description_set)
    else:
        classifier = get_or_build_classifier(
            store, model, args.class_set or settings.default_class_set, settings.default_method
        )
    head = ScoringHead(classifier, model.device)
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
        print(json.dumps(ClassifyResult.for_classifier(classifier, results, args.explain).to_dict(), indent=2))
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
                print(line)
    return 1 if any(result.error is not None for result in results) else 0
