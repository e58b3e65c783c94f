"""``vgloss adapt``: fit a Tip-Adapter cache from labelled example images onto a classifier."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gloss_gen.commands.verb_support import (
    UserError,
    add_model_arguments,
    check_model_setup,
    open_checked_store,
    settings_from_args,
)

HELP = "few-shot adapt a class set's classifier with labelled examples (Tip-Adapter / -F cache)"

DESCRIPTION = """\
Build a Tip-Adapter cache from a handful of labelled images per class and make it the adapter the
class set is served with (`vgloss classify`, the server). The classifier (any description method)
stays as it is; the cache adds  alpha * exp(-beta * (1 - cos(image, example))) per example to its
class's logit.

CLASSIFIER_OR_SET is a classifier key in the store, or a class set (built-in name, file, or one
stored by the server): its active classifier is used, or a class-name one is built.
EXAMPLES is a folder in any layout `vgloss eval` reads (DATA/<class id or name>/<image>, a labels
CSV, ...). Every label must name a class; classes without examples keep their zero-shot score;
unreadable images are skipped and named.

alpha and beta are searched on examples held out from the cache (stratified k-fold, up to 4
folds), never on evaluation images, over the grid of the authors' config for the class set
(gaopengcuhk/Tip-Adapter configs/<set>.yaml; ImageNet's for sets they have none for); with one
shot per class the paper's values are used.
--method tip-f also fine-tunes the cache keys (AdamW, cosine schedule; seconds on a CPU).

Defaults follow the official code: each cache key is the mean of 10 random crop/flip views
(augment_epoch: 10), and tip-f trains each epoch on a fresh crop/flip of every example (its
train_loader_F). Before issue 23: --augment 0 (plain embeddings as keys) and --reuse-views
(tip-f cycles the cache's views).

Examples:
  vgloss adapt cifar10 ./my-examples --shots 16
  vgloss adapt imagenet1k ./few-shot --method tip-f --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gloss_gen.adapt import ADAPTER_METHODS as METHODS
    from gloss_gen.evaluation.datasets import LAYOUTS

    parser.add_argument("target", metavar="CLASSIFIER_OR_SET", help="classifier key or class set")
    parser.add_argument("examples", metavar="EXAMPLES", type=Path, help="labelled example images (see above)")
    parser.add_argument("--method", choices=METHODS, default="tip", help="tip (training-free, default) or tip-f")
    parser.add_argument("--shots", type=int, default=16, help="examples per class (default: %(default)s)")
    parser.add_argument("--augment", type=int, default=10,
                        help="average each key over N random crop/flip views (default: %(default)s, the official "
                             "augment_epoch; 0: the plain embeddings)")
    parser.add_argument("--reuse-views", action="store_true",
                        help="tip-f trains on the cache's views in turn instead of a fresh crop/flip per epoch")
    parser.add_argument("--alpha", type=float, help="fix alpha instead of searching it")
    parser.add_argument("--beta", type=float, help="fix beta instead of searching it")
    parser.add_argument("--folds", type=int, default=0, help="hold-out folds for the search (0 = auto)")
    parser.add_argument("--epochs", type=int, default=20, help="tip-f training epochs (default: %(default)s)")
    parser.add_argument("--layout", choices=("auto", *LAYOUTS), default="auto", help="examples layout")
    parser.add_argument("--seed", type=int, default=0, help="shot selection / training seed")
    parser.add_argument("--no-activate", action="store_true", help="store the adapter without serving it")
    parser.add_argument("--json", action="store_true", help="print the adapter summary as JSON")
    add_model_arguments(parser)


def resolve_classifier(store, model, target: str, default_method: str):
    """A stored classifier by key, else the class set's active (or a freshly built) classifier."""
    classifier = store.get_classifier(target)
    if classifier is not None:
        if classifier.model_id != model.id:
            raise UserError(f"classifier {target} is for {classifier.model_id}, not {model.id}; pass --model/--pretrained")
        return classifier
    from gloss_gen.classify.pipeline import get_or_build_named_classifier

    return get_or_build_named_classifier(store, model, target, default_method, progress=sys.stderr.isatty())


def run(args: argparse.Namespace) -> int:
    from gloss_gen.adapt import AdaptError
    from gloss_gen.adapt.adapter import build_adapter
    from gloss_gen.adapt.examples import embed_examples, open_examples
    from gloss_gen.adapt.tip import TipConfig
    from gloss_gen.classify.adapter_records import put_adapter
    from gloss_gen.commands.verb_support import load_model
    from gloss_gen.evaluation.runner import default_workers
    from gloss_gen.imaging import ImageLimits
    from gloss_gen.model.model_source import ModelSource

    settings = settings_from_args(args)
    store = open_checked_store(settings)
    try:
        config = TipConfig(method=args.method, alpha=args.alpha, beta=args.beta, folds=args.folds,
                           epochs=args.epochs, seed=args.seed)
        check_model_setup(settings)
        model = load_model(settings)
        classifier = resolve_classifier(store, model, args.target, settings.default_method)
        source = open_examples(args.examples, classifier.class_set, args.layout)
        limits = ImageLimits.from_settings(settings)
        fresh = config.epochs if config.method == "tip-f" and not args.reuse_views else 0
        embedded = embed_examples(source, ModelSource.of(model), store, limits, augment=args.augment,
                                  train_views=fresh, seed=args.seed, workers=default_workers(settings.decode_threads),
                                  progress=sys.stderr.isatty())
        examples = embedded.take(args.shots, args.seed)
        for note in examples.notes:
            print(f"vgloss adapt: {note}", file=sys.stderr)
        record = build_adapter(classifier, examples, config, progress=sys.stderr.isatty())
    except AdaptError as exc:
        raise UserError(str(exc)) from None
    put_adapter(store, record, activate=not args.no_activate)
    summary = {**record.summary(), "model": record.model_id, "class_set": record.class_set,
               "active": not args.no_activate, "notes": record.notes}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    counts = examples.counts()
    v = record.validation
    print(f"adapter {record.key} ({record.method}) for {record.class_set}, classifier {record.classifier_key}, "
          f"model {record.model_id}")
    print(f"  examples: {len(examples)} ({int(counts.max())} max per class, {int((counts > 0).sum())} of "
          f"{len(counts)} classes)")
    if v.get("held_out"):
        print(f"  alpha {record.alpha:.4g}, beta {record.beta:.4g}: searched, {v['folds']}-fold on "
              f"{v['held_out']} held-out examples")
        print(f"  held-out top-1: zero-shot {100 * v['zero_shot_accuracy']:.1f}%, "
              f"{record.method} {100 * v['adapted_accuracy']:.1f}%")
    else:
        print(f"  alpha {record.alpha:.4g}, beta {record.beta:.4g} (not searched)")
    print("  active: classify and the server now use it" if not args.no_activate else "  stored, not active")
    return 0
