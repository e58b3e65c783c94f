"""``vgloss eval``: top-1/top-5 accuracy of description methods side by side on labelled images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gloss_gen.commands.verb_support import (
    UserError,
    add_model_arguments,
    check_model_setup,
    open_checked_store,
    settings_from_args,
)

HELP = "accuracy (top-1/top-5, 95% intervals) of description methods on a labelled image set"

DESCRIPTION = """\
Measure zero-shot accuracy of several description methods on the same labelled images.

Every image is embedded once and cached in the store per (model, data set), so adding a method
or changing --scoring re-encodes no image; each method's classifier is cached by its key too.
Accuracies come with 95% Wilson score intervals. Images are decoded exactly as open_clip's
own preprocessing does (no JPEG draft decoding unless --jpeg-draft).

DATA layouts (auto-detected, or --layout):
  imagefolder  DATA/<class id or name>/<image>
  wnid-files   DATA/<wnid>_<anything>.JPEG (flat, as ImageNet samples are named)
  csv          a labels CSV with header 'filename,class_id' (paths relative to the CSV)
  stl10        STL-10 binary test_X.bin + test_y.bin (DATA = the folder or test_X.bin)
  cifar10      CIFAR-10 binary batch (test_batch.bin, data_batch_N.bin); the Python
               pickle version is refused
Every label must name a class of --class-set (by id or name); otherwise nothing runs.

Methods (--methods, comma-separated):
  classname        the class name in the class set's prompt templates (the CLIP baseline:
                   CLIP's 18 CIFAR-10 / 2 STL-10 templates, its 80 ImageNet ones otherwise)
  wordnet          the WordNet gloss of each class's synset
  vgloss:FILE      descriptions written by `vgloss describe` (JSONL)
  fudd:FILE        FuDD's second look: class-name prompts, then the top --rerank-k classes
                   re-ranked by the pair descriptions of `vgloss describe --method fudd`
  import:FILE      a CuPL or DCLIP description JSON, embedded as its authors' code does:
                   CuPL sentences as written, repeats included; DCLIP descriptors as
                   "{name}, which is/has {descriptor}."

Scoring (--scoring):
  prototype         (default) cosine to each class's mean prompt embedding, as CuPL and
                    CLIP_benchmark score
  mean-description  mean of the cosines to a class's descriptions, as DCLIP scores

Open set (--ood OOD_DIR): images of none of the classes (every image file under OOD_DIR, or a
binary set) against DATA's, scored by each --open-set method (mcm, neglabel; default both) with
every description method: AUROC, FPR at 95% TPR and the threshold there, beside top-1. --out then
also writes open_set_rows.jsonl, one line per image and method: path, in_set, open_set, ood_score,
unknown (below the 95%-TPR threshold), and the chart gains a panel. neglabel embeds its WordNet
negative labels once per classifier (VGLOSS_NEGLABEL_MAX_CANDIDATES caps them; see docs/open-set.md).

Few-shot adaptation (--examples): labelled example images (any layout above, separate from
DATA) adapt every method, and each (method, adaptation, shots) is scored on the same DATA images:
  zero-shot   the method alone
  tip         Tip-Adapter cache of the examples (alpha, beta searched on the examples only)
  tip-f       Tip-Adapter-F (cache keys fine-tuned)
  clipfit     ClipFit delta per shot count, trained on every shot, last epoch kept (slow: trains
              the model; --fit-epochs); scored with its training prompt ('a photo of a {}.', the
              row "prompt '...'") and with each method's own prompts
--out then also writes few_shot.json and few_shot.png (accuracy against shots).
Examples whose file bytes or decoded pixels equal a DATA image are refused, named in one line
(--allow-overlap leaves them out with a warning instead).

Examples:
  vgloss eval ./imagenet-val --class-set imagenet1k \\
      --methods classname,wordnet,import:descriptors_imagenet.json --out results/
  vgloss eval ./stl10_binary --class-set stl10 --model ViT-B-16 --methods classname,wordnet
  vgloss eval ./val --layout csv --class-set imagenet1k --scoring mean-description \\
      --methods import:descriptors_imagenet.json --limit 5000
  vgloss eval ./cifar-10-batches-bin/test_batch.bin --class-set cifar10 --templates openai \\
      --methods classname        # CIFAR-10 with the 80 ImageNet templates instead of CLIP's 18
  vgloss eval ./imagenet-val --class-set imagenet1k --jpeg-draft --limit 1000   # as the server decodes
  vgloss eval ./cifar-test --class-set cifar10 --ood ./not-cifar --open-set mcm,neglabel --out results/
  vgloss eval ./cifar-test --class-set cifar10 --examples ./cifar-16shot \\
      --shots 1,2,4,8,16 --adapt zero-shot,tip,tip-f,clipfit --out results/
"""


SCORING_CHOICES = ("prototype", "mean-description")  # gloss_gen.classify.scoring.SCORING_MODES (a test keeps them equal)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Light imports only: `vgloss --help` builds every verb's parser and must not load torch.
    from gloss_gen.core.prompts import TEMPLATE_SETS
    from gloss_gen.evaluation.datasets import LAYOUTS

    parser.add_argument("data", metavar="DATA", type=Path, help="labelled images: a folder or a file (see above)")
    parser.add_argument(
        "--class-set", help="built-in class set or a .txt/.json/.yaml file (default: VGLOSS_DEFAULT_CLASS_SET)"
    )
    parser.add_argument(
        "--methods",
        default="classname,wordnet",
        help="comma-separated: classname, wordnet, vgloss:FILE, fudd:FILE, import:FILE (default: %(default)s)",
    )
    parser.add_argument("--rerank-k", type=int, metavar="K",
                        help="fudd: classes of the first pass re-ranked (default: VGLOSS_RERANK_K, 10)")
    parser.add_argument(
        "--scoring",
        choices=SCORING_CHOICES,
        default="prototype",
        help="how classes are scored (default: %(default)s)",
    )
    parser.add_argument(
        "--templates",
        choices=TEMPLATE_SETS,
        default=None,
        help="prompt templates for class-name prompts (default: the class set's own: CLIP's "
        "cifar10 / stl10 sets for those, openai = CLIP's 80 ImageNet templates otherwise; "
        "simple = open_clip's 7)",
    )
    parser.add_argument("--layout", choices=("auto", *LAYOUTS), default="auto", help="data layout (default: auto)")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="images per model call (default: %(default)s)"
    )
    parser.add_argument(
        "--limit", type=int, help="evaluate a fixed pseudo-random subset of N images (the same every run)"
    )
    parser.add_argument(
        "--workers", type=int, help="image decoding threads (default: VGLOSS_DECODE_THREADS, 0 = one per core)"
    )
    parser.add_argument(
        "--jpeg-draft",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="decode large JPEGs at reduced scale as the server does with VGLOSS_JPEG_DRAFT "
        "(default: off, open_clip's exact preprocessing)",
    )
    parser.add_argument(
        "--top-confusions", type=int, default=20, help="true -> predicted pairs kept in results.json (default: 20)"
    )
    parser.add_argument("--out", type=Path, help="write results.json and top1.png into this folder")
    open_set = parser.add_argument_group("open set")
    open_set.add_argument("--ood", type=Path, metavar="OOD_DIR", help="out-of-set images to tell from DATA's")
    open_set.add_argument("--open-set", metavar="METHODS", help="comma-separated: mcm, neglabel (default: both)")
    open_set.add_argument("--ood-layout", choices=("auto", *LAYOUTS), default="auto",
                          help="layout of --ood (default: every image file under it)")
    few = parser.add_argument_group("few-shot adaptation")
    few.add_argument("--examples", type=Path, help="labelled example images to adapt with (not DATA itself)")
    few.add_argument("--shots", default="1,2,4,8,16", help="examples per class to try (default: %(default)s)")
    few.add_argument("--adapt", default="zero-shot,tip,tip-f",
                     help="comma-separated: zero-shot, tip, tip-f, clipfit (default: %(default)s)")
    few.add_argument("--examples-layout", choices=("auto", *LAYOUTS), default="auto", help="layout of --examples")
    few.add_argument("--augment", type=int, default=10,
                     help="random crop/flip views averaged into each cache key (default: %(default)s, Tip-Adapter's)")
    few.add_argument("--reuse-views", action="store_true",
                     help="tip-f trains on the cache's views in turn (default: a fresh crop/flip per epoch)")
    few.add_argument("--fit-epochs", type=int, help="ClipFit epochs (default: the backbone's official count)")
    few.add_argument("--allow-overlap", action="store_true",
                     help="leave out examples whose bytes or pixels equal a DATA image, with a warning "
                          "(default: refuse them)")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from gloss_gen.data.classsets import load_class_set
    from gloss_gen.evaluation.runner import EvalConfig, default_workers, evaluate, parse_methods
    from gloss_gen.model.model_source import ModelSource

    settings = settings_from_args(args)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, not {args.limit}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {args.batch_size}")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} exists and is not a folder")
    methods = parse_methods(args.methods)  # EvalError, AdaptError: VglossErrors the CLI prints as one line
    from gloss_gen.evaluation.open_set_eval import parse_open_set_methods

    if args.open_set is not None and args.ood is None:
        raise UserError("--open-set measures detection of out-of-set images: give them with --ood OOD_DIR")
    if args.ood is not None and args.examples is not None:
        raise UserError("--ood does not combine with --examples; run them separately")
    if args.examples is not None and any(m.kind == "fudd" for m in methods):
        raise UserError("fudd does not combine with --examples (the re-rank is not adapted); run it separately")
    if args.rerank_k is not None and not 2 <= args.rerank_k <= 100:
        raise UserError(f"--rerank-k must be between 2 and 100, not {args.rerank_k}")
    open_set = parse_open_set_methods(args.open_set) if args.ood is not None else ()
    class_set = load_class_set(args.class_set or settings.default_class_set)

    check_model_setup(settings)
    models = ModelSource.from_settings(settings)
    config = EvalConfig(
        data=args.data,
        class_set=class_set,
        methods=methods,
        layout=args.layout,
        scoring=args.scoring,
        batch_size=args.batch_size,
        limit=args.limit,
        workers=default_workers(args.workers if args.workers is not None else settings.decode_threads),
        jpeg_draft=bool(args.jpeg_draft),
        max_image_bytes=settings.max_image_bytes,
        max_image_pixels=settings.max_image_pixels,
        template_set=args.templates,
        max_confusions=max(0, args.top_confusions),
        scoring_device=models.device,
        ood=args.ood,
        ood_layout=args.ood_layout,
        open_set=open_set,
        neglabel_max_candidates=settings.neglabel_max_candidates,
        rerank_k=args.rerank_k if args.rerank_k is not None else settings.rerank_k,
        progress=True,  # a bar on a terminal; tqdm's plain updates in a log file, as describe and embed
    )

    def notify(message: str) -> None:
        print(f"vgloss eval: {message}", file=sys.stderr)

    if args.examples is not None:
        from gloss_gen.adapt import few_shot_report as report

        result = _run_few_shot(args, config, models, open_checked_store(settings), notify)
    else:
        from gloss_gen.evaluation import eval_report as report

        result = evaluate(config, models, open_checked_store(settings), notify)
    print(report.format_table(result))
    if args.out is not None:
        json_path, chart_path = report.write_outputs(result, args.out)
        notify(f"wrote {json_path} and {chart_path}")
    return 0


def _run_few_shot(args, config, models, store, notify):
    from gloss_gen.adapt.compare import AdaptOptions, compare, parse_adaptations, parse_shots

    options = AdaptOptions(
        examples=args.examples,
        shots=parse_shots(args.shots),
        adaptations=parse_adaptations(args.adapt),
        layout=args.examples_layout,
        augment=args.augment,
        reuse_views=args.reuse_views,
        fit_epochs=args.fit_epochs,
        allow_overlap=args.allow_overlap,
        delta_dir=(args.out or Path(".")) / "clipfit-deltas",
    )
    return compare(config, options, models, store, notify)
