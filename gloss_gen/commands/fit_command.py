"""``vgloss fit``: ClipFit — tune CLIP's text FFN biases and image LayerNorms on labelled examples."""

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

HELP = "ClipFit: fine-tune 0.01-0.1% of CLIP on labelled examples and write a small delta file"

DESCRIPTION = """\
Fine-tune only ClipFit's parameters (Li et al. 2024): the bias of every text-encoder MLP output
projection (c_proj) and every LayerNorm of the image encoder, with cross-entropy over the class
prompts ('a photo of a {}.') plus 8 * (1 - cos(tuned text, original text)). SGD, lr 2e-3,
batch 32, one warm-up epoch then cosine.

Defaults are the authors' recipe (minglllli/CLIPFit on Dassl): every shot is trained on and the
LAST epoch is kept; the epoch count is the backbone's config (ViT-B-32, RN50, RN101: 200;
ViT-B-16: 100, its few-shot script; others: 200); random resized crops at scale 0.08-1 (Dassl's
default) and the last partial batch dropped. The recipe before issue 23 is available by flag:
  --val-fraction 0.2 --patience 10   hold out 20% of the shots, stop early, keep the best epoch
  --crop-scale 0.5                   crops at scale 0.5-1
  --keep-last-batch                  train on the last partial batch too
  --epochs 100
Every epoch is checkpointed beside OUT (OUT.ckpt); --resume continues from it. --json says which
epoch the delta holds ("kept_epoch", "kept").

OUT is a delta: only the tuned tensors, the base model id, the class set and a content hash.
Use it anywhere a model is chosen with --pretrained BASE+OUT, e.g.
  vgloss eval ./val --class-set cifar10 --pretrained openai+cifar-fit.safetensors
The adapted model's id carries the delta's hash, so nothing embedded under the base is reused.

Examples:
  vgloss fit cifar10 ./my-examples --out cifar-fit.safetensors --shots 16
  vgloss fit pets.txt ./pets-train --out pets.safetensors --epochs 50 --resume
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gloss_gen.evaluation.datasets import LAYOUTS

    parser.add_argument("class_set", metavar="CLASS_SET", help="built-in class set, file, or stored class set")
    parser.add_argument("examples", metavar="EXAMPLES", type=Path, help="labelled example images")
    parser.add_argument("--out", type=Path, required=True, help="delta file to write (.safetensors)")
    parser.add_argument("--shots", type=int, default=16, help="examples per class (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: the backbone's official count (200; 100 for ViT-B-16)")
    parser.add_argument("--lr", type=float, default=2e-3, help="SGD learning rate (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--lambda", dest="reg_lambda", type=float, default=8.0,
                        help="text-feature regulariser weight (default: %(default)s)")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="held-out share for early stopping and keeping the best epoch; default 0: train "
                             "on all shots, keep the last epoch (0.2 was the default before issue 23)")
    parser.add_argument("--patience", type=int, default=10,
                        help="early-stop patience in epochs, with --val-fraction (default: %(default)s)")
    parser.add_argument("--crop-scale", type=float, default=0.08, dest="crop_min_scale", metavar="MIN",
                        help="smallest random-crop area share (default: %(default)s, Dassl's; 0.5 before issue 23)")
    parser.add_argument("--keep-last-batch", action="store_true",
                        help="train on the last partial batch too (the authors' loader drops it)")
    parser.add_argument("--template", default="a photo of a {}.", help="class prompt (default: %(default)r)")
    parser.add_argument("--layout", choices=("auto", *LAYOUTS), default="auto", help="examples layout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT.ckpt")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from gloss_gen.adapt import AdaptError
    from gloss_gen.adapt.clipfit import FitConfig, fit_clipfit
    from gloss_gen.adapt.examples import open_examples
    from gloss_gen.commands.verb_support import load_model
    from gloss_gen.data.classsets import BUILTIN_CLASS_SETS, load_class_set
    from gloss_gen.imaging import ImageLimits

    if args.out.suffix != ".safetensors":
        raise UserError(f"--out must end in .safetensors (it is passed as --pretrained BASE+{args.out})")
    settings = settings_from_args(args)
    class_set = None
    if args.class_set not in BUILTIN_CLASS_SETS and not Path(args.class_set).exists():
        class_set = open_checked_store(settings).get_class_set(args.class_set)
    class_set = class_set or load_class_set(args.class_set)

    def notify(message: str) -> None:
        print(f"vgloss fit: {message}", file=sys.stderr)

    try:
        config = FitConfig(shots=args.shots, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                           reg_lambda=args.reg_lambda, val_fraction=args.val_fraction, patience=args.patience,
                           crop_min_scale=args.crop_min_scale, drop_last=not args.keep_last_batch,
                           template=args.template, seed=args.seed)
        source = open_examples(args.examples, class_set, args.layout)
        check_model_setup(settings)
        model = load_model(settings)
        limits = ImageLimits.from_settings(settings)
        def on_epoch(log) -> None:  # a line per epoch as it ends, as --help promises
            val = "" if log.val_accuracy is None else f", held-out {100 * log.val_accuracy:.1f}%"
            notify(f"epoch {log.epoch}/{config.epochs}: loss {log.loss:.4f}, train {100 * log.train_accuracy:.1f}%{val}")

        config = config.for_model(model.model_name)
        result = fit_clipfit(model, source, args.out, config, limits, resume=args.resume,
                             progress=sys.stderr.isatty(), notify=notify, on_epoch=on_epoch)
    except AdaptError as exc:
        raise UserError(str(exc)) from None
    pretrained = f"{settings.pretrained}+{args.out}"
    summary = result.summary(args.out, pretrained) | {"history": [vars(h) for h in result.history]}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    share = 100 * result.trained_parameters / result.total_parameters
    print(f"trained {result.trained_parameters:,} of {result.total_parameters:,} parameters ({share:.3f}%)")
    last = result.history[-1] if result.history else None
    if last is not None:  # each epoch was reported on stderr as it ended
        print(f"  {len(result.history)} epochs; last: loss {last.loss:.4f}, train top-1 {100 * last.train_accuracy:.1f}%")
    print(f"kept epoch {result.best_epoch} ({result.kept})")
    if result.zero_shot_val is not None:
        print(f"held-out top-1: zero-shot {100 * result.zero_shot_val:.1f}%, best {100 * result.best_val:.1f}% "
              f"(epoch {result.best_epoch})")
    print(f"wrote {args.out} (hash {result.delta.hash[:16]}); use it with --pretrained {pretrained}")
    return 0
