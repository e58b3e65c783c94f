"""`vgloss embed` throughput over raw open_clip `encode_text` at the same batch size, one run.

    python benchmarks/bench_embed.py [--model ViT-B-32] [--classes 150] [--batch-size 256] [--repeats 2]

Both sides encode the same prompts (DCLIP descriptions of the first N ImageNet classes, built as
DCLIP prompts); runs alternate so machine noise hits both alike; the best of each is reported.
Target: ratio >= 0.9.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from gloss_gen.core.prompts import build_prompts
from gloss_gen.data.classifier import build_classifier
from gloss_gen.data.classsets import load_class_set
from gloss_gen.data.description_importers import describe_import
from gloss_gen.data.descriptions import DescriptionSet
from gloss_gen.model.clip_models import load_clip

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--classes", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    model = load_clip(args.model, "none")
    imagenet = load_class_set("imagenet1k")
    full, _ = describe_import(imagenet, SHARED / "descriptions" / "dclip_imagenet.json")
    imagenet.classes = imagenet.classes[: args.classes]
    subset = DescriptionSet(imagenet, full.method, full.records[: args.classes], full.prompt_style)
    prompts = [p for r in subset.records for p in build_prompts(r.name, r.descriptions, subset.prompt_style)]

    @torch.inference_mode()
    def raw() -> None:
        for start in range(0, len(prompts), args.batch_size):
            tokens = model.tokenizer(prompts[start : start + args.batch_size])
            model.model.encode_text(tokens, normalize=True)

    def ours() -> None:
        build_classifier(model, subset, batch_size=args.batch_size)

    timings: dict[str, list[float]] = {"raw encode_text": [], "vgloss embed": []}
    raw()  # warm-up
    for _ in range(args.repeats):
        for name, fn in (("raw encode_text", raw), ("vgloss embed", ours)):
            started = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - started)

    best = {name: min(values) for name, values in timings.items()}
    rate = {name: len(prompts) / seconds for name, seconds in best.items()}
    print(f"model {model.id}, {args.classes} classes, {len(prompts)} prompts, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    for name in timings:
        print(f"  {name:16s} {rate[name]:8.1f} prompts/s  (best of {args.repeats}: {best[name]:.2f}s)")
    ratio = rate["vgloss embed"] / rate["raw encode_text"]
    print(f"ratio vgloss embed / raw encode_text = {ratio:.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
