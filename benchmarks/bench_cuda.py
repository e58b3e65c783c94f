"""CUDA: the raw image forward in fp16 over fp32 at batch 1-256, decode capacity, and `vgloss
serve` on the GPU at 16 and 64 clients over min(raw fp16 forward, decode capacity), in one run.

    python3 benchmarks/bench_cuda.py [--batches 1 8 32 128 256] [--levels 16 64] [--device cuda]

ViT-B-32 with random weights (no download), real JPEGs from ../shared/data/imagenet-sample. The
server's bound is the slower of the two things every request needs: the GPU forward (raw fp16 at
the server's batch size) and decoding on the CPU cores (the server's decode pool). ``--device cpu``
runs the same script on a CPU (fp32 against itself) to check it end to end without a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

import torch
from bench_fastpath_server import decode_images_per_s
from bench_server import DATA, MAX_BATCH, ServerProcess, prepare_model_and_classifier, python_env, run_level_on

from gloss_gen.model.clip_models import load_clip

MODEL = "ViT-B-32"


def forward_images_per_s(clip, batch: int, seconds: float = 2.0) -> float:
    pixels = torch.randn(batch, 3, 224, 224)
    clip.encode_images(pixels)  # warm-up: kernels, allocator
    if clip.device.type == "cuda":
        torch.cuda.synchronize()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or done < 3 * batch:
        clip.encode_images(pixels)  # returns on the CPU: includes the copy back, as the server does
        done += batch
    return done / (time.perf_counter() - started)


def parity_check(clip, images: list[tuple[str, bytes]]) -> None:
    """The device path's embeddings against CPU fp32 on the same decoded JPEGs."""
    from gloss_gen.imaging import ImageLimits, Preprocessor, load_tensor

    reference = load_clip(MODEL, "none", "cpu", "fp32")
    preprocessor = Preprocessor.from_open_clip(reference.model)
    pixels = torch.stack([load_tensor(data, ImageLimits(), preprocessor) for _, data in images])
    want, got = reference.encode_images(pixels), clip.encode_images(pixels)
    cosine = (want * got).sum(-1)
    protos = torch.nn.functional.normalize(torch.randn(1000, want.shape[-1], generator=torch.Generator().manual_seed(0)), dim=-1)
    agree = ((want @ protos.T).argmax(-1) == (got @ protos.T).argmax(-1)).float().mean()
    print(f"parity {clip.device.type}/{clip.precision} vs cpu/fp32 on {len(images)} JPEGs: cosine min "
          f"{float(cosine.min()):.5f}, top-1 agreement {100 * float(agree):.1f}% over 1000 random classes", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 128, 256])
    parser.add_argument("--levels", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--requests-per-client", type=int, default=8)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.mkdtemp(prefix="bench-cuda-")))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device visible to torch")
    images = [(p.name, p.read_bytes()) for p in sorted((DATA / "imagenet-sample").glob("*.JPEG"))]
    if not images:
        sys.exit(f"no JPEGs under {DATA / 'imagenet-sample'} (../shared beside the checkout)")
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"{name}; torch {torch.__version__}; {os.cpu_count()} CPUs; {MODEL} random weights", flush=True)

    fast = "fp16" if args.device == "cuda" else "fp32"
    models = {precision: load_clip(MODEL, "none", args.device, precision) for precision in ("fp32", fast)}
    parity_check(models[fast], images[:32])
    raw = {}
    print(f"{'batch':>6} {'fp32 img/s':>11} {fast + ' img/s':>11} {'ratio':>6}")
    for batch in args.batches:
        raw[batch] = {p: forward_images_per_s(m, batch) for p, m in models.items()}
        print(f"{batch:>6} {raw[batch]['fp32']:>11.1f} {raw[batch][fast]:>11.1f} {raw[batch][fast] / raw[batch]['fp32']:>6.2f}",
              flush=True)
    decode = decode_images_per_s(models["fp32"], images, 3.0)
    forward = forward_images_per_s(models[fast], MAX_BATCH)
    bound = min(forward, decode)
    print(f"decode capacity {decode:.1f} img/s; raw {fast} forward at batch {MAX_BATCH} {forward:.1f} img/s; "
          f"bound {bound:.1f} img/s ({'decode' if decode < forward else 'forward'})", flush=True)
    del models
    if args.device == "cuda":
        torch.cuda.empty_cache()

    prepare_model_and_classifier(args.data_dir)
    env = python_env({"VGLOSS_MODEL": MODEL, "VGLOSS_PRETRAINED": "none", "VGLOSS_DEVICE": args.device,
                      "VGLOSS_DATA_DIR": str(args.data_dir), "VGLOSS_DEFAULT_CLASS_SET": "imagenet1k",
                      "VGLOSS_BACKEND": "torch"})
    server = ServerProcess("vgloss", [sys.executable, "-m", "gloss_gen.cli", "serve", "--port", "{port}",
                                      "--plain-logs"], env, "/readyz", args.data_dir)
    server.launch()
    try:
        print(f"vgloss serve ready in {server.wait_ready():.1f}s", flush=True)
        for clients in args.levels:
            row = run_level_on(server, "/v1/classify", images, clients, args.requests_per_client, None, 0.0, True)
            batch = f"{row.mean_batch:.1f}" if row.mean_batch else "-"
            print(f"  {clients:>3} clients: {row.images_per_s:.1f} img/s = {row.images_per_s / bound:.2f} x bound; "
                  f"p50 {1000 * row.percentile(50):.0f} ms, p99 {1000 * row.percentile(99):.0f} ms; mean batch {batch}",
                  flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
