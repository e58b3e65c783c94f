"""Throughput of gloss_gen.imaging.load_tensor against open_clip's own transform.

    python benchmarks/bench_imaging.py [--rounds 5] [--large 8] [--torch-threads N] [--data DIR]

Rows, each the best of ``--rounds`` passes over the same in-memory bytes:

The baseline's ToTensor/Normalize run on torch's intra-op threads, which makes it very slow on a
busy CPU; ``--torch-threads 1`` shows the comparison without that effect. Rounds are interleaved
across rows and the best round of each is kept; CPU ms/image (process time, all threads) is the
figure least disturbed by other load on the machine.

* sample JPEGs (all of imagenet-sample): open_clip's validation transform on
  ``Image.open(...).convert("RGB")`` (the baseline), then ``load_tensor`` with JPEG draft off and on,
  and ``load_tensor`` (draft on) in a 2-thread pool as the server runs it;
* large JPEGs (samples upscaled to 3000x2000, quality 90): the same rows, plus the mean / max
  absolute difference of the draft-on tensors from the draft-off ones, un-normalised to [0, 1].
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import open_clip
import torch
from PIL import Image

from gloss_gen.imaging import ImageLimits, Preprocessor, load_tensor

DRAFT_ON = ImageLimits(jpeg_draft=True)
DRAFT_OFF = ImageLimits(jpeg_draft=False)


def run_rows(
    title: str, blobs: Sequence[bytes], pre: Preprocessor, reference: Callable, rounds: int
) -> None:
    def baseline() -> None:
        for blob in blobs:
            reference(Image.open(io.BytesIO(blob)).convert("RGB"))

    def ours(limits: ImageLimits) -> Callable[[], None]:
        def work() -> None:
            for blob in blobs:
                load_tensor(blob, limits, pre)

        return work

    def pooled() -> None:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda blob: load_tensor(blob, DRAFT_ON, pre), blobs))

    rows = [
        ("open_clip transform (baseline)", baseline),
        ("load_tensor, draft off", ours(DRAFT_OFF)),
        ("load_tensor, draft on", ours(DRAFT_ON)),
        ("load_tensor, draft on, 2 threads", pooled),
    ]
    best = {name: float("inf") for name, _ in rows}
    best_cpu = {name: float("inf") for name, _ in rows}
    for _ in range(rounds):
        for name, work in rows:
            wall, cpu = time.perf_counter(), time.process_time()
            work()
            best[name] = min(best[name], time.perf_counter() - wall)
            best_cpu[name] = min(best_cpu[name], time.process_time() - cpu)

    print(f"\n{title} ({len(blobs)} images, best of {rounds} interleaved rounds)")
    print(f"  {'path':<34} {'images/s':>10} {'vs baseline':>12} {'CPU ms/image':>13}")
    base = len(blobs) / best[rows[0][0]]
    for name, _ in rows:
        rate = len(blobs) / best[name]
        cpu_ms = 1000 * best_cpu[name] / len(blobs)
        print(f"  {name:<34} {rate:>10.1f} {rate / base:>11.2f}x {cpu_ms:>13.2f}")


def draft_error(blobs: Sequence[bytes], pre: Preprocessor) -> tuple[float, float]:
    std = torch.tensor(pre.std).view(3, 1, 1)
    diffs = [
        ((load_tensor(b, DRAFT_ON, pre) - load_tensor(b, DRAFT_OFF, pre)) * std).abs()
        for b in blobs
    ]
    return (
        float(torch.stack([d.mean() for d in diffs]).mean()),
        float(max(d.max() for d in diffs)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--large", type=int, default=8, help="number of 3000x2000 JPEGs")
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="torch.set_num_threads (0: leave torch's default)"
    )
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    paths = sorted((args.data / "imagenet-sample").glob("*.JPEG"))
    if not paths:
        sys.exit(f"no JPEGs under {args.data / 'imagenet-sample'}")
    samples = [p.read_bytes() for p in paths]

    cfg = {"size": 224, "mean": open_clip.OPENAI_DATASET_MEAN, "std": open_clip.OPENAI_DATASET_STD}
    reference = open_clip.image_transform(224, is_train=False, mean=cfg["mean"], std=cfg["std"])
    pre = Preprocessor.from_open_clip(cfg)

    large = []
    for path in paths[: args.large]:
        img = Image.open(path).convert("RGB").resize((3000, 2000), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        large.append(buf.getvalue())

    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"open_clip {open_clip.__version__}, Pillow {Image.__version__}; "
        f"ViT-B-32 preprocessing (224 px, bicubic, shortest side); draft_size {pre.draft_size}"
    )
    for blob in samples[:10]:
        reference(Image.open(io.BytesIO(blob)).convert("RGB"))
        load_tensor(blob, DRAFT_ON, pre)
    run_rows("imagenet-sample JPEGs", samples, pre, reference, args.rounds)
    run_rows("large JPEGs, 3000x2000", large, pre, reference, args.rounds)
    mean_diff, max_diff = draft_error(large, pre)
    print(f"  draft on vs off, un-normalised: mean |diff| {mean_diff:.4f}, max {max_diff:.4f}")


if __name__ == "__main__":
    main()
