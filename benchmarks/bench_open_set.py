"""Cost of open-set scoring: NegLabel's serving overhead per image, and the one-time negatives build.

    python3 benchmarks/bench_open_set.py [--model ViT-B-32] [--build-candidates 2000] [--full-build] [--quick]

- **serve**: per image, the scoring head (``ScoringHead.score``, as the server batches it) plain, with
  MCM and with NegLabel, against the image forward of ``--model`` in the same run (random weights:
  the architecture sets the cost), at batch 1 and 32. The class set is ImageNet-sized (1000 classes)
  and NegLabel scores against as many negatives as it keeps for ImageNet-1k (15 % of its WordNet
  candidates of each part of speech), as random unit rows: the cost depends on their number only.
- **build**: the one-time negatives build for ImageNet-1k with ``--model``'s text encoder: mining
  WordNet (first time in a process and cached), embedding ``--build-candidates`` prompts (the rate),
  selecting the 15 % among all candidates (on random rows of the real count), and the total a full
  build takes at that rate. ``--full-build`` embeds every candidate instead of extrapolating.

Timings alternate (plain, mcm, neglabel, then reversed) so drift in machine speed cancels.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gloss_gen.classify.negative_embeddings import spread_sample  # noqa: E402
from gloss_gen.classify.open_set import OpenSetScorer  # noqa: E402
from gloss_gen.classify.scoring import ScoringHead  # noqa: E402
from gloss_gen.data.classifier import Classifier  # noqa: E402
from gloss_gen.data.classsets import builtin_class_set  # noqa: E402
from gloss_gen.data.negative_labels import negative_candidates, select_negatives  # noqa: E402
from gloss_gen.model.clip_models import load_clip  # noqa: E402


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def imagenet_classifier(model, prototypes: np.ndarray) -> Classifier:
    class_set = builtin_class_set("imagenet1k")
    return Classifier(
        key="bench", model_id=model.id, class_set=class_set, descriptions_id="d", method="classname",
        prompt_style="templates", template_set="openai", prototypes=prototypes, evidence=prototypes,
        offsets=np.arange(len(class_set) + 1), evidence_texts=class_set.names, logit_scale=100.0,
    )


def mine(class_set) -> tuple[list, float, float]:
    start = time.perf_counter()
    candidates = negative_candidates(class_set)
    first = time.perf_counter() - start
    start = time.perf_counter()
    negative_candidates(class_set)
    return candidates, first, time.perf_counter() - start


def kept_count(candidates) -> int:
    nouns = sum(c.pos == "noun" for c in candidates)
    return int(nouns * 0.15) + int((len(candidates) - nouns) * 0.15)


@torch.inference_mode()
def bench_serving(model, classifier: Classifier, negatives: int, rounds: int, batches: list[int]) -> None:
    head = ScoringHead(classifier)
    g = torch.Generator().manual_seed(1)
    scorers = {
        "plain": None,
        "mcm": OpenSetScorer("mcm", threshold=0.001),
        "neglabel": OpenSetScorer("neglabel", threshold=0.5,
                                  negatives=unit(torch.randn(negatives, model.embed_dim, generator=g))),
    }
    size = model.preprocess_cfg.get("size", 224)
    size = size if isinstance(size, int) else size[0]
    print(f"\nserving: {classifier.num_classes} classes, {negatives} negatives on {model.id}, "
          f"{torch.get_num_threads()} threads")
    for batch in batches:
        pixels = torch.randn(batch, 3, size, size)
        feats = model.encode_images(pixels)
        timings: dict[str, list[float]] = {"forward": [], **{name: [] for name in scorers}}

        def timed(name, fn, repeat):
            start = time.perf_counter()
            for _ in range(repeat):
                fn()
            timings[name].append((time.perf_counter() - start) / repeat / batch)

        repeat = max(3, 64 // batch)
        for r in range(rounds):
            timed("forward", lambda: model.encode_images(pixels), 2)
            order = list(scorers.items()) if r % 2 == 0 else list(reversed(scorers.items()))
            for name, scorer in order:
                timed(name, lambda s=scorer: head.score(feats, top_k=5, open_set=s), repeat)
        forward, plain, mcm, neglabel = (statistics.median(timings[k]) for k in ("forward", "plain", "mcm", "neglabel"))
        print(f"batch {batch:3d}: image forward {1000 * forward:7.2f} ms/img; scoring plain {1000 * plain:6.3f}, "
              f"mcm {1000 * mcm:6.3f}, neglabel {1000 * neglabel:6.3f} ms/img -> neglabel adds "
              f"{1000 * (neglabel - plain):.3f} ms/img = {100 * (neglabel - plain) / forward:.2f}% of the forward "
              f"(mcm {100 * (mcm - plain) / forward:.2f}%)")


def bench_build(model, classifier: Classifier, candidates: list, first_mining: float, cached_mining: float,
                sample: int, full: bool) -> None:
    print(f"\nnegatives build for imagenet1k on {model.id}: {len(candidates)} candidates, "
          f"{kept_count(candidates)} kept")
    print(f"mining WordNet: {first_mining:.1f} s the first time in a process, {cached_mining:.2f} s after")
    embedded = candidates if full else spread_sample(candidates, sample)
    start = time.perf_counter()
    vectors = model.encode_text([c.prompt for c in embedded], batch_size=256)
    embed_s = time.perf_counter() - start
    rate = len(embedded) / embed_s
    print(f"embedding {len(embedded)} prompts (batch 256): {embed_s:.1f} s = {rate:.1f} prompts/s")
    g = torch.Generator().manual_seed(2)
    all_rows = vectors if full else unit(torch.randn(len(candidates), model.embed_dim, generator=g)).numpy()
    start = time.perf_counter()
    select_negatives(all_rows, classifier.prototypes, parts_of_speech=[c.pos for c in candidates])
    select_s = time.perf_counter() - start
    print(f"selecting the 15% of {len(candidates)} candidates against {classifier.num_classes} classes: {select_s:.1f} s")
    total = first_mining + len(candidates) / rate + select_s
    what = "measured" if full else "at that rate"
    print(f"full build ({what}): {total:.0f} s = {total / 60:.1f} min "
          f"(VGLOSS_NEGLABEL_MAX_CANDIDATES=10000: {(first_mining + 10000 / rate + select_s) / 60:.1f} min)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--build-candidates", type=int, default=2000, help="prompts to time the text encoder on")
    parser.add_argument("--full-build", action="store_true", help="embed every candidate (15-25 min on 2 CPU cores)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    model = load_clip(args.model, "none")
    class_set = builtin_class_set("imagenet1k")
    prototypes = unit(torch.randn(len(class_set), model.embed_dim, generator=torch.Generator().manual_seed(0)))
    classifier = imagenet_classifier(model, prototypes.numpy())
    candidates, first_mining, cached_mining = mine(class_set)
    bench_serving(model, classifier, kept_count(candidates), rounds=3 if args.quick else 6, batches=[1, 32])
    bench_build(model, classifier, candidates, first_mining, cached_mining, args.build_candidates, args.full_build)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
