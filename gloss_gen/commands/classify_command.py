from __future__ import annotations

import argparse
import json
from pathlib import Path

from gloss_gen.commands.verb_support import (
    UserError,
    add_model_arguments,
    add_open_set_arguments,
    add_rerank_arguments,
    check_class_set_args,
    check_image_files,
    check_model_setup,
    check_open_set_args,
    check_rerank_args,
    classifier_from_args,
    load_model,
    open_checked_store,
    open_set_scorer_from_args,
    rerank_from_args,
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

Open-set scoring (--open-set mcm|neglabel, default VGLOSS_OPEN_SET) adds an ood_score (higher =
more in-set) and says "unknown" below the threshold: --open-set-threshold, else one calibrated at 95%
in-set on the class set's stored examples, else VGLOSS_OPEN_SET_THRESHOLD (for that method), else
the method's default (neglabel 0.5; mcm has none). neglabel embeds WordNet negative labels once per
classifier and keeps them in the store (see docs/open-set.md).

Examples:
  vgloss classify cat.jpg dog.png
  vgloss classify photos/*.jpg --class-set cifar10 --top-k 3 --explain
  vgloss classify x.jpg --labels "a red car" "a blue bike" --json
  vgloss classify photos/*.jpg --class-set cifar10 --open-set neglabel
  vgloss classify photos/*.jpg --class-set cifar10 --rerank fudd --rerank-k 5   # after describe/embed --method fudd
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", metavar="IMAGE", nargs="+", type=Path, help="image files")
    parser.add_argument("--class-set", help="class set name or file (default: VGLOSS_DEFAULT_CLASS_SET)")
    parser.add_argument("--labels", nargs="+", help="ad-hoc labels instead of a class set")
    parser.add_argument("--top-k", type=int, default=5, help="predictions per image (1-100, default 5)")
    parser.add_argument("--explain", action="store_true", help="show the best-matching description")
    parser.add_argument("--json", action="store_true", help="print JSON like the REST API")
    add_open_set_arguments(parser)
    add_rerank_arguments(parser)
    add_model_arguments(parser)


def check_inputs(args: argparse.Namespace, settings, store) -> None:
    """Everything that can be wrong with the command line, found before the model loads."""

    if not 1 <= args.top_k <= 100:
        raise UserError("--top-k must be between 1 and 100")
    check_open_set_args(args, settings)
    check_rerank_args(args)
    check_image_files(args.images)
    check_class_set_args(args, settings, store)


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

    model = load_model(settings)
    classifier, adapter = classifier_from_args(args, settings, store, model)
    head = ScoringHead(classifier, model.device, adapter)
    preprocessor = Preprocessor.from_open_clip(model.model)
    limits = ImageLimits.from_settings(settings)
    scorer = open_set_scorer_from_args(args, settings, store, model, head)
    rerank_k, rerank = rerank_from_args(args, settings, store, head)

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
        scored = head.score(model.encode_images(batch), top_k=args.top_k, explain=args.explain, open_set=scorer,
                            rerank_k=rerank_k)
        for offset, image in enumerate(scored):
            results[positions[start + offset]].predictions = image.predictions
            results[positions[start + offset]].open_set = image.open_set

    if args.json:
        print(json.dumps(ClassifyResult.for_classifier(classifier, results, args.explain, adapter.key if adapter else None,
                                                       scorer.info() if scorer else None, rerank).to_dict(), indent=2))
    else:
        for result in results:
            print(result.filename)
            if result.error is not None:
                print(f"  error: {result.error.message}")
                continue
            if result.open_set is not None:
                verdict = "unknown" if result.open_set.unknown else "in set"
                print(f"  {verdict}: {scorer.method} score {result.open_set.ood_score:.4g} "
                      f"(threshold {scorer.threshold:.4g}, {scorer.threshold_source})")
            for p in result.predictions:
                line = f"  {p.score:7.2%}  {p.label}  ({p.class_id}, cos {p.similarity:.3f})"
                if args.explain and p.evidence:
                    line += f"\n           because: {p.evidence}"
                if args.explain and p.example:
                    line += f"\n           nearest example: {p.example}"
                print(line)
    return 1 if any(result.error is not None for result in results) else 0
