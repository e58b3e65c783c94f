"""Cost of FuDD's second look per image, against the image forward it follows, in one run.

    python3 benchmarks/bench_rerank.py [--model ViT-B-32] [--rerank-k 10] [--quick]

The class set is ImageNet-sized (1000 classes) with as many pairs as `vgloss describe --method
fudd` writes for it at K = 5 confusables (every class paired with its 5 nearest, deduplicated;
drawn at random here, so few are mutual: about 5,000 pairs, the most it can be) and 4 texts per side, as random unit rows: the re-rank's
cost depends on the number of rows it gathers, not on their values. Measured per image, at batch 1
and 32: the image forward of ``--model`` (random weights: the architecture sets the cost), the
scoring head's first pass alone, and the first pass with the re-rank of the top ``--rerank-k``.
Timings alternate (forward, first pass, re-rank, then reversed) so drift in machine speed cancels.
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

from gloss_gen.classify.pair_embeddings import PairEmbeddings  # noqa: E402
from gloss_gen.classify.scoring import ScoringHead  # noqa: E402
from gloss_gen.data.classifier import Classifier  # noqa: E402
from gloss_gen.data.classsets import builtin_class_set  # noqa: E402
from gloss_gen.model.clip_models import load_clip  # noqa: E402

TEXTS_PER_SIDE = 4
CONFUSABLES = 5


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def imagenet_head(model, dim: int, rng: np.random.Generator) -> tuple[ScoringHead, int]:
    class_set = builtin_class_set("imagenet1k")
    classes = len(class_set)
    prototypes = unit(rng.standard_normal((classes, dim)))
    head = ScoringHead(Classifier(
        key="bench", model_id=model.id, class_set=class_set, descriptions_id="d", method="classname",
        prompt_style="templates", template_set="openai", prototypes=prototypes, evidence=prototypes,
        offsets=np.arange(classes + 1), evidence_texts=class_set.names, logit_scale=100.0))
    pairs = sorted({tuple(sorted((c, int(o)))) for c in range(classes)
                    for o in rng.choice(np.delete(np.arange(classes), c), CONFUSABLES, replace=False)})
    rows = classes + 2 * TEXTS_PER_SIDE * len(pairs)
    side_rows = np.arange(classes, rows, dtype=np.int64)
    row_class = np.concatenate([np.arange(classes), np.repeat(np.asarray(pairs).reshape(-1), TEXTS_PER_SIDE)])
    head.attach_pairs(PairEmbeddings(
        key="bench", model_id=model.id, pairs_id="p", class_set=class_set, texts=[f"t{i}" for i in range(rows)],
        embeddings=unit(rng.standard_normal((rows, dim))), row_class=row_class,
        fallback_row=np.arange(classes, dtype=np.int64), pair_index=np.asarray(pairs, dtype=np.int64),
        side_offsets=np.arange(0, len(side_rows) + 1, TEXTS_PER_SIDE, dtype=np.int64), side_rows=side_rows))
    return head, len(pairs)


def timed(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--rerank-k", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="vgloss-tiny, one round")
    args = parser.parse_args()
    model_name, rounds = ("vgloss-tiny", 1) if args.quick else (args.model, args.rounds)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_clip(model_name, "none")
    size = model.preprocess_cfg.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        dim = model.encode_images(torch.zeros(1, 3, size, size)).shape[1]
        head, num_pairs = imagenet_head(model, dim, rng)
        print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
              f"threads; model {model.id}; 1000 classes, {num_pairs} pairs, {len(head.reranker.texts)} rows; "
              f"rerank_k {args.rerank_k}")
        print(f"{'batch':>5}  {'forward ms/img':>14}  {'first pass':>10}  {'+ re-rank':>9}  {'re-rank/forward':>15}")
        for batch in (1, 32):
            pixels = torch.randn(batch, 3, size, size)
            emb = torch.nn.functional.normalize(torch.randn(batch, dim), dim=-1)
            runs = {"forward": [], "first": [], "rerank": []}
            jobs = {
                "forward": lambda: model.encode_images(pixels),
                "first": lambda: head.score(emb, top_k=5),
                "rerank": lambda: head.score(emb, top_k=5, rerank_k=args.rerank_k),
            }
            repeats = {"forward": 2 if batch > 1 else 5, "first": 20, "rerank": 20}
            for r in range(rounds):
                for name in (list(jobs) if r % 2 == 0 else list(reversed(jobs))):
                    runs[name].append(timed(jobs[name], repeats[name]) / batch * 1000)
            forward, first, rerank = (statistics.median(runs[n]) for n in ("forward", "first", "rerank"))
            extra = rerank - first
            print(f"{batch:>5}  {forward:>14.2f}  {first:>10.3f}  {rerank:>9.3f}  {extra / forward:>14.2%}")
    print("re-rank/forward: the re-rank's extra time per image over the first pass, as a share of the image forward")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
