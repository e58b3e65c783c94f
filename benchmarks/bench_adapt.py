"""Cost of few-shot adaptation: fitting time against shots x classes, and the serving overhead.

    python3 benchmarks/bench_adapt.py [--model ViT-B-32] [--quick]

- **fit**: wall time of fitting a Tip-Adapter (training-free, with its k-fold α/β search) and a
  Tip-Adapter-F (keys trained per fold and once more on all examples) on synthetic unit
  embeddings with class structure, for shots x classes; and of one ClipFit epoch on the
  ``vgloss-tiny`` model over generated images (the per-image cost of a real model is the image
  forward + backward, which the serving figure below puts in proportion).
- **serve**: per image, the scoring head's cost with a 16-shot x 1000-class cache over plain
  prototype scoring, as a share of the image forward of ``--model`` (random weights: the
  architecture sets the cost), at batch 1 and 32 on this machine. Target: <= 5 %.

Timings alternate (plain, cached, cached, plain, ...) so drift in machine speed cancels.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gloss_gen.adapt.examples import Examples  # noqa: E402
from gloss_gen.adapt.tip import TipConfig, fit_cache  # noqa: E402
from gloss_gen.classify.adapter_records import AdapterRecord  # noqa: E402
from gloss_gen.classify.scoring import ScoringHead  # noqa: E402
from gloss_gen.data.classifier import Classifier  # noqa: E402
from gloss_gen.data.classsets import ClassSet, ClassSpec  # noqa: E402
from gloss_gen.model.clip_models import load_clip  # noqa: E402

TARGET_SHARE = 0.05
DIM = 512


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def synthetic(classes: int, shots: int, dim: int = DIM, seed: int = 0):
    """Prototypes and examples: each example = its class direction + noise (so the search has signal)."""
    g = torch.Generator().manual_seed(seed)
    centres = unit(torch.randn(classes, dim, generator=g))
    labels = torch.arange(classes).repeat_interleave(shots)
    vectors = unit(centres[labels] + 1.5 * torch.randn(len(labels), dim, generator=g) / dim**0.5)
    prototypes = unit(centres + 2.0 * torch.randn(classes, dim, generator=g) / dim**0.5)
    class_set = ClassSet(f"c{classes}", [ClassSpec(f"c{i}", f"class {i}") for i in range(classes)])
    examples = Examples(class_set, "bench", vectors.numpy(), labels.numpy(), [str(i) for i in range(len(labels))], "f")
    return prototypes.numpy(), examples


def bench_fit(grid: list[tuple[int, int]], methods: list[str]) -> None:
    print("fit time (s), synthetic 512-d embeddings, k-fold search on the examples")
    print(f"{'method':6s} {'classes':>7s} {'shots':>5s} {'seconds':>8s} {'held-out zs -> adapted':>24s}")
    for method in methods:
        for classes, shots in grid:
            if method == "tip-f" and classes * shots > 1600:
                continue  # keys x batch x epochs x folds: quadratic in the cache size
            prototypes, examples = synthetic(classes, shots)
            start = time.perf_counter()
            fitted = fit_cache(examples, prototypes, 100.0, TipConfig(method=method))
            elapsed = time.perf_counter() - start
            acc = (f"{fitted.zero_shot_correct / fitted.held_out:.2f} -> {fitted.adapted_correct / fitted.held_out:.2f}"
                   if fitted.held_out else "(no search)")
            print(f"{method:6s} {classes:7d} {shots:5d} {elapsed:8.2f} {acc:>24s}")


def bench_clipfit_epoch() -> None:
    from gloss_gen.adapt.clipfit import FitConfig, fit_clipfit
    from gloss_gen.adapt.examples import open_examples

    sys.path.insert(0, str(REPO / "tests" / "adapt"))
    from conftest import write_colour_images  # the generated-images fixture of the tests

    model = load_clip("vgloss-tiny", "none")
    with tempfile.TemporaryDirectory(prefix="vgloss-bench-fit-") as tmp:
        root = write_colour_images(Path(tmp) / "ex", 16, seed=0)
        from conftest import colour_class_set

        source = open_examples(root, colour_class_set())
        for shots in (4, 16):
            start = time.perf_counter()
            result = fit_clipfit(model, source, Path(tmp) / f"d{shots}.safetensors",
                                 FitConfig(shots=shots, epochs=2, val_fraction=0))
            per_epoch = (time.perf_counter() - start) / 2
            print(f"clipfit vgloss-tiny, 4 classes x {shots} shots: {per_epoch:.2f} s/epoch "
                  f"({result.trained_parameters} of {result.total_parameters} parameters trained)")


@torch.inference_mode()
def bench_serving(model_name: str, rounds: int, batches: list[int]) -> None:
    model = load_clip(model_name, "none")
    classes, shots = 1000, 16
    prototypes, examples = synthetic(classes, shots, dim=model.embed_dim)
    class_set = examples.class_set
    classifier = Classifier(
        key="k", model_id=model.id, class_set=class_set, descriptions_id="d", method="classname",
        prompt_style="templates", template_set="openai", prototypes=prototypes, evidence=prototypes,
        offsets=np.arange(classes + 1), evidence_texts=class_set.names, logit_scale=100.0,
    )
    record = AdapterRecord(
        key="a", method="tip", classifier_key="k", model_id=model.id, class_set=class_set.name,
        class_ids=class_set.ids, example_hash="e", params={}, alpha=1.0, beta=5.0, keys=examples.vectors,
        labels=examples.labels, names=examples.names,
    )
    plain, cached = ScoringHead(classifier), ScoringHead(classifier, adapter=record)
    size = model.preprocess_cfg.get("size", 224)
    size = size if isinstance(size, int) else size[0]
    print(f"\nserving: {classes} classes, {shots}-shot cache ({len(examples)} keys) on {model.id}, "
          f"{torch.get_num_threads()} threads")
    for batch in batches:
        pixels = torch.randn(batch, 3, size, size)
        feats = model.encode_images(pixels)
        timings = {"forward": [], "plain": [], "cached": []}

        def timed(name, fn, repeat):
            start = time.perf_counter()
            for _ in range(repeat):
                fn()
            timings[name].append((time.perf_counter() - start) / repeat / batch)

        repeat = max(3, 64 // batch)
        for r in range(rounds):
            timed("forward", lambda: model.encode_images(pixels), 2)
            order = [("plain", plain), ("cached", cached)] if r % 2 == 0 else [("cached", cached), ("plain", plain)]
            for name, head in order:
                timed(name, lambda h=head: h.predict(feats, top_k=5), repeat)
        forward, p, c = (statistics.median(timings[k]) for k in ("forward", "plain", "cached"))
        share = (c - p) / forward
        verdict = "ok" if share <= TARGET_SHARE else "OVER TARGET"
        print(f"batch {batch:3d}: image forward {1000 * forward:7.2f} ms/img, plain scoring {1000 * p:6.3f} ms/img, "
              f"with cache {1000 * c:6.3f} ms/img -> cache adds {100 * share:.2f}% of the forward "
              f"(target <= {100 * TARGET_SHARE:.0f}%: {verdict})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--quick", action="store_true", help="a smaller grid and fewer rounds")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    if args.quick:
        grid = [(10, 1), (10, 16), (100, 16), (1000, 16)]
    else:
        grid = [(c, s) for c in (10, 100, 1000) for s in (1, 4, 16)]
    bench_fit(grid, ["tip", "tip-f"])
    bench_clipfit_epoch()
    bench_serving(args.model, rounds=3 if args.quick else 6, batches=[1, 32])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
