"""Throughput of ``vgloss eval``'s image stage against the model alone.

    python3 benchmarks/bench_eval.py [--model ViT-B-32] [--batch-size 64] [--workers N] [--data DIR]

Both sides use the same model (random weights, ``pretrained=none``: the architecture, not the
weights, sets the cost) and the same batches:

- **raw**: ``model.encode_image`` over tensors made before the clock starts (batched, no I/O);
- **eval**: :func:`gloss_gen.evaluation.runner.embed_images` on a cold cache: fingerprinting
  the folder, reading and decoding the JPEGs in the thread pool, preprocessing, encoding, and
  writing the embeddings to a fresh store.

The two alternate (raw, eval, eval, raw, ...) so that drift in machine speed cancels. The
target is eval / raw >= 0.85: decoding must hide behind the model, not add to it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gloss_gen.classify.image_embeddings import embed_images
from gloss_gen.data.store import DirectoryBackend, Store
from gloss_gen.evaluation.datasets import open_dataset
from gloss_gen.evaluation.runner import default_workers
from gloss_gen.imaging import ImageLimits, Preprocessor
from gloss_gen.model.clip_models import load_clip
from gloss_gen.model.model_source import ModelSource

DEFAULT_DATA = REPO.parent / "shared" / "data" / "imagenet-sample"
TARGET_RATIO = 0.85


@torch.inference_mode()
def raw_throughput(model, pixels: torch.Tensor, batch_size: int) -> float:
    start = time.perf_counter()
    for offset in range(0, len(pixels), batch_size):
        model.model.encode_image(pixels[offset : offset + batch_size].to(model.device), normalize=True).cpu()
    return len(pixels) / (time.perf_counter() - start)


def eval_throughput(model, data: Path, limits: ImageLimits, batch_size: int, workers: int) -> float:
    with tempfile.TemporaryDirectory(prefix="vgloss-bench-eval-") as tmp:
        store = Store(DirectoryBackend(Path(tmp)))
        start = time.perf_counter()
        dataset = open_dataset(data)
        result = embed_images(dataset, ModelSource.of(model), store, limits, batch_size=batch_size, workers=workers)
        elapsed = time.perf_counter() - start
    if result.encoded != len(dataset):
        raise SystemExit(f"expected a cold cache and {len(dataset)} images encoded, got {result.encoded}")
    return len(dataset) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="decode threads (0 = one per core)")
    parser.add_argument("--rounds", type=int, default=2, help="raw/eval pairs, alternating order")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    workers = default_workers(args.workers)
    precision = "fp16" if args.device == "cuda" else "fp32"
    model = load_clip(args.model, "none", device=args.device, precision=precision)
    limits = ImageLimits()
    dataset = open_dataset(args.data)
    preprocessor = Preprocessor.from_open_clip(model.model)
    pixels = torch.stack([dataset.load_tensor(i, preprocessor, limits) for i in range(len(dataset))])
    pixels = pixels.to(dtype=model.dtype)
    raw_throughput(model, pixels[: args.batch_size], args.batch_size)  # warm-up

    raw_runs: list[float] = []
    eval_runs: list[float] = []
    for round_index in range(args.rounds):
        # ABBA order: a steady drift in machine speed (other load) hits both sides alike.
        order = ("raw", "eval") if round_index % 2 == 0 else ("eval", "raw")
        for side in order:
            if side == "raw":
                raw_runs.append(raw_throughput(model, pixels, args.batch_size))
            else:
                eval_runs.append(eval_throughput(model, args.data, limits, args.batch_size, workers))
    # images/s over all runs of a side = harmonic mean of the per-run rates (same images each run)
    raw = len(raw_runs) / sum(1 / r for r in raw_runs)
    evaluated = len(eval_runs) / sum(1 / r for r in eval_runs)
    ratio = evaluated / raw

    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, device {args.device}")
    print(f"model {args.model} (random weights), {len(dataset)} images from {args.data}, "
          f"batch {args.batch_size}, {workers} decode threads, {args.rounds} rounds (ABBA)")
    print(f"raw encode_image:  {raw:7.2f} images/s  (runs: {', '.join(f'{r:.2f}' for r in raw_runs)})")
    print(f"eval (cold cache): {evaluated:7.2f} images/s  (runs: {', '.join(f'{r:.2f}' for r in eval_runs)})")
    print(f"eval / raw:        {ratio:7.3f}  (target >= {TARGET_RATIO})")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
