from __future__ import annotations

import argparse
import time
from pathlib import Path

from gloss_gen.commands.verb_support import (
    UserError,
    add_model_arguments,
    check_model_setup,
    load_model,
    open_checked_store,
    settings_from_args,
)

HELP = "build a classifier (CLIP text embeddings) from descriptions and write it to the store"
DESCRIPTION = """\
Build a classifier from a description file written by `vgloss describe` and write it to the store
(Redis when VGLOSS_REDIS_URL is set, otherwise the directory under VGLOSS_DATA_DIR). The stored
classifier becomes the active one for its class set and model, so `vgloss serve` and
`vgloss classify` use it.

Examples:
  vgloss embed cifar10.vgloss.jsonl
  vgloss embed imagenet1k.wordnet.jsonl --model ViT-L-14 --pretrained openai
  vgloss embed cifar10 --method classname        # no file: an offline method on a class set
  vgloss embed cifar10.fudd.jsonl                 # FuDD pair descriptions: the set's second look

A pair file from `vgloss describe S --method fudd` is embedded into the pair embeddings the class
set re-ranks its top-k with (`rerank: "fudd"`); its classifier stays the one it has.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gloss_gen.core.prompts import TEMPLATE_SETS  # light: no torch
    from gloss_gen.data.methods import OFFLINE_METHODS

    parser.add_argument(
        "descriptions",
        metavar="DESCRIPTIONS",
        help="a JSONL file from `vgloss describe`, or a class set (name or file) with --method",
    )
    parser.add_argument("--method", choices=OFFLINE_METHODS,
                        help="describe DESCRIPTIONS (a class set) with an offline method first")
    parser.add_argument("--class-set", help="the class set the file was made for (default: from the file)")
    parser.add_argument("--templates", choices=TEMPLATE_SETS, default=None,
                        help="template set for class-name prompts (default: the class set's own: CLIP's "
                        "cifar10 / stl10 sets for those, openai = CLIP's 80 ImageNet templates otherwise)")
    parser.add_argument("--batch-size", type=int, default=256, help="prompts per text-encoder batch")
    parser.add_argument("--allow-missing", action="store_true",
                        help="embed classes that failed in `describe` with class-name prompts instead of refusing")
    parser.add_argument("--no-activate", action="store_true",
                        help="store the classifier without making it the one served for its class set")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from gloss_gen.classify.pipeline import build_and_store
    from gloss_gen.data.classsets import load_class_set
    from gloss_gen.data.descriptions import load_description_set
    from gloss_gen.data.methods import describe_offline
    from gloss_gen.data.pair_descriptions import is_pair_file, load_pair_description_set

    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    settings = settings_from_args(args)
    path = Path(args.descriptions)
    if args.method:
        class_set = load_class_set(args.descriptions)
        store = open_checked_store(settings)
        check_model_setup(settings)  # before WordNet is read: a missing weight is one line at once
        description_set, _ = describe_offline(class_set, args.method)
    else:
        if not path.exists():
            raise UserError(f"{path} does not exist (give a JSONL from `vgloss describe`, or a class set with --method)")
        if not path.is_file():
            raise UserError(
                f"{path} is not a description file (give a JSONL from `vgloss describe`, "
                "or a class set with --method classname|wordnet)"
            )
        class_set = load_class_set(args.class_set) if args.class_set else None
        if is_pair_file(path):
            return _embed_pairs(args, settings, load_pair_description_set(path, class_set))
        description_set = load_description_set(path, class_set)
        failed = description_set.failed
        if failed and not args.allow_missing:
            names = ", ".join(r.name for r in failed[:5]) + (" ..." if len(failed) > 5 else "")
            raise UserError(
                f"{len(failed)} of {len(description_set.records)} classes have no descriptions "
                f"({names}); re-run `vgloss describe` to retry them, or pass --allow-missing"
            )
    if not args.method:
        store = open_checked_store(settings)
        check_model_setup(settings)
    model = load_model(settings)
    started = time.perf_counter()
    classifier = build_and_store(model, description_set, store, template_set=args.templates,
                                 activate=not args.no_activate, batch_size=args.batch_size, progress=True)
    elapsed = time.perf_counter() - started
    print(
        f"classifier {classifier.key}: {classifier.num_classes} classes of "
        f"{classifier.class_set.name}, {len(classifier.evidence_texts)} evidence rows, "
        f"method {classifier.method}, prompts {classifier.prompt_style}, model {classifier.model_id}, "
        f"built in {elapsed:.1f}s -> {store.describe()}"
    )
    return 0


def _embed_pairs(args: argparse.Namespace, settings, pair_set) -> int:
    from gloss_gen.classify.pair_embeddings import build_pair_embeddings, put_pair_embeddings

    store = open_checked_store(settings)
    check_model_setup(settings)
    model = load_model(settings)
    started = time.perf_counter()
    pairs = build_pair_embeddings(model, pair_set, batch_size=args.batch_size, progress=True)
    put_pair_embeddings(store, pairs, activate=not args.no_activate)
    failed = len(pair_set.failed)
    note = f"; {failed} failed pairs use the class-name prompt (re-run `vgloss describe` to retry them)" if failed else ""
    print(
        f"pair embeddings {pairs.key}: {pairs.num_pairs} pairs, {len(pairs.texts)} texts of "
        f"{pair_set.class_set.name}, model {pairs.model_id}, built in {time.perf_counter() - started:.1f}s "
        f"-> {store.describe()}{note}"
    )
    return 0
