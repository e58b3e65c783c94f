"""``vgloss serve`` with the default ``VGLOSS_BACKEND=auto`` over the same server forced to today's
torch fp32, and over the auto path's raw batched forward, in one run.

    python3 benchmarks/bench_fastpath_server.py [--levels 1 16 64] [--requests-per-client N] [--data-dir DIR]

Reuses bench_server.py's machinery (server processes, clients, the imagenet1k classifier in the
bench store). Both servers run the ViT-B-32 architecture with random weights on real JPEGs and
share ``--data-dir``, so the auto server's probe (run in the background once it is ready; the
bench waits for it) and exported graphs are cached there (the first run pays for them). At each level the two servers run in
turn, with the raw auto-path ``encode_images`` at batch 32 measured before and after (in this
process, attached through the same probe cache). Then each server gets one request with 10 ad-hoc
labels it has not seen (the first-request text work: 10 labels x 80 templates).
Targets: auto / torch-fp32 images/s at 16 clients >= 2.5; p50 at 1 client auto / torch-fp32 <= 0.5;
auto server / raw auto forward at 16 clients >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

import httpx
import torch
from bench_server import (
    DATA,
    MAX_BATCH,
    MODEL,
    PRETRAINED,
    ServerProcess,
    prepare_model_and_classifier,
    python_env,
    raw_images_per_s,
    run_level_on,
)

from app.services.model import available_cores

TARGETS = {"throughput_at_16": 2.5, "p50_at_1": 0.5, "auto_over_raw_at_16": 0.8}
FIRST_LABELS = {  # one set per server: the two share a store, and a set one built the other would only read
    "auto": ["red fox", "harbour seal", "espresso machine", "tandem bicycle", "snow leopard", "sea anemone",
             "pipe organ", "fire truck", "barn owl", "paper lantern"],
    "torch-fp32": ["grey wolf", "sea lion", "coffee grinder", "mountain bike", "clouded leopard", "starfish",
                   "church bell", "ambulance", "tawny owl", "paper kite"],
}


def auto_model(data_dir: Path):
    """The model with the engine ``vgloss serve`` attaches (read from the probe cache it wrote)."""
    from gloss_gen.core.config import Settings
    from gloss_gen.model.clip_models import get_model

    torch.set_num_threads(available_cores())  # as ModelHolder.load does
    settings = Settings(_env_file=None, model=MODEL, pretrained=PRETRAINED, device="cpu", data_dir=data_dir)
    return get_model(settings)


def decode_images_per_s(model, images: list[tuple[str, bytes]], seconds: float) -> float:
    """Decode + preprocess alone, on the server's decode pool (one thread per core): the other
    half of what a classify request costs, on the same cores as the forward."""
    from concurrent.futures import ThreadPoolExecutor

    from gloss_gen.imaging import ImageLimits, Preprocessor, load_tensor

    preprocessor, limits = Preprocessor.from_open_clip(model.model), ImageLimits()
    with ThreadPoolExecutor(available_cores()) as pool:
        list(pool.map(lambda item: load_tensor(item[1], limits, preprocessor), images[:8]))  # warm-up
        done, started = 0, time.perf_counter()
        while done < len(images) or time.perf_counter() - started < seconds:
            list(pool.map(lambda item: load_tensor(item[1], limits, preprocessor), images))
            done += len(images)
    return done / (time.perf_counter() - started)


def first_label_request(server: ServerProcess, image: tuple[str, bytes], run_tag: str) -> float:
    """One request with 10 labels no earlier run stored (the bench store persists between runs)."""
    labels = [f"{label} {run_tag}" for label in FIRST_LABELS[server.name]]
    started = time.perf_counter()
    response = httpx.post(server.url + "/v1/classify", files={"images": image},
                          data={"labels": json.dumps(labels)}, timeout=None)
    response.raise_for_status()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--requests-per-client", type=int, nargs="+", default=[24, 6, 3],
                        help="per level (one value, or one per level)")
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "vgloss-bench")
    parser.add_argument("--raw-seconds", type=float, default=3.0)
    args = parser.parse_args()
    counts = args.requests_per_client * (len(args.levels) if len(args.requests_per_client) == 1 else 1)
    requests = dict(zip(args.levels, counts))

    images = [(p.name, p.read_bytes()) for p in sorted((DATA / "imagenet-sample").glob("*.JPEG"))]
    if not images:
        sys.exit(f"no JPEGs under {DATA / 'imagenet-sample'} (../shared beside the checkout)")
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}; {MODEL} random weights; {len(images)} JPEGs; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    prepare_model_and_classifier(args.data_dir)

    base = {"VGLOSS_MODEL": MODEL, "VGLOSS_PRETRAINED": PRETRAINED, "VGLOSS_DEVICE": "cpu",
            "VGLOSS_DATA_DIR": str(args.data_dir), "VGLOSS_DEFAULT_CLASS_SET": "imagenet1k"}
    command = [sys.executable, "-m", "gloss_gen.cli", "serve", "--port", "{port}", "--plain-logs"]
    workdir = Path(tempfile.mkdtemp(prefix="bench-fastpath-"))
    servers = [
        ServerProcess("auto", command, python_env(base), "/readyz", workdir),
        ServerProcess("torch-fp32", command, python_env(base | {"VGLOSS_BACKEND": "torch", "VGLOSS_PRECISION": "fp32"}),
                      "/readyz", workdir),
    ]
    rows, raw, first = [], {}, {}
    run_tag = f"v{os.getpid() % 10_000}"
    try:
        for server in servers:  # one at a time: the auto server's first start probes
            server.launch()
            print(f"  {server.name}: ready in {server.wait_ready():.0f}s", flush=True)
            readyz = httpx.get(server.url + "/readyz").json()
            started = time.perf_counter()
            while readyz["inference"].get("probe") == "running":  # auto serves fp32 while it probes
                time.sleep(1)
                readyz = httpx.get(server.url + "/readyz").json()
            if readyz["inference"].get("probe") not in (None, "none"):
                print(f"    background probe: {readyz['inference']['probe']} after {time.perf_counter() - started:.0f}s",
                      flush=True)
            print(f"    inference: {json.dumps(readyz['inference'])}", flush=True)
            httpx.post(server.url + "/v1/classify", files={"images": images[0]}, timeout=None)  # warm-up
        model = auto_model(args.data_dir)
        print(f"  raw auto path: {model.engine.summary()}", flush=True)
        for clients in args.levels:
            before = raw_images_per_s(model, images, args.raw_seconds)
            for server in servers:
                rows.append(run_level_on(server, "/v1/classify", images, clients, requests[clients], None, 0.0, True))
            after = raw_images_per_s(model, images, args.raw_seconds)
            raw[clients] = (before + after) / 2
            print(f"    raw auto encode_images at batch {MAX_BATCH}: {before:.2f} before, {after:.2f} after", flush=True)
        for server in servers:
            first[server.name] = first_label_request(server, images[1], run_tag)
        decode = decode_images_per_s(model, images, args.raw_seconds)
        at_16 = next((r for r in rows if r.server == "auto" and r.clients == 16 and r.mean_batch), None)
        raw_at_served_batch = raw_images_per_s(model, images, args.raw_seconds, max(1, round(at_16.mean_batch))) if at_16 else None
    finally:
        for server in servers:
            server.stop()

    print(f"\n{'server':<11} {'clients':>7} {'images':>6} {'images/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'mean batch':>10} {'raw auto':>9}")
    by = {(r.server, r.clients): r for r in rows}
    for r in rows:
        batch = f"{r.mean_batch:.1f}" if r.mean_batch is not None else "-"
        print(f"{r.server:<11} {r.clients:>7} {r.requests:>6} {r.images_per_s:>9.2f} {1000 * r.percentile(50):>8.0f} "
              f"{1000 * r.percentile(99):>8.0f} {batch:>10} {raw[r.clients]:>9.2f}")
    summary = {}
    for clients in args.levels:
        auto, fp32 = by[("auto", clients)], by[("torch-fp32", clients)]
        summary[f"throughput_ratio_at_{clients}"] = auto.images_per_s / fp32.images_per_s
        summary[f"p50_ratio_at_{clients}"] = auto.percentile(50) / fp32.percentile(50)
        summary[f"auto_over_raw_at_{clients}"] = auto.images_per_s / raw[clients]
    summary["first_labels_request_ratio"] = first["auto"] / first["torch-fp32"]
    print()
    for label, key, target, better in (
        ("auto / torch-fp32 images/s at 16 clients", "throughput_ratio_at_16", TARGETS["throughput_at_16"], ">="),
        ("auto / torch-fp32 p50 at 1 client", "p50_ratio_at_1", TARGETS["p50_at_1"], "<="),
        ("auto server / raw auto forward at 16 clients", "auto_over_raw_at_16", TARGETS["auto_over_raw_at_16"], ">="),
    ):
        if key in summary:
            value = summary[key]
            ok = value >= target if better == ">=" else value <= target
            print(f"{label}: {value:.2f} (target {better} {target}) {'OK' if ok else 'MISSED'}")
    forward = sum(raw.values()) / len(raw)
    bound = 1 / (1 / forward + 1 / decode)
    print(f"where the time goes: raw auto forward {forward:.1f} images/s, decode + preprocess alone {decode:.1f} "
          f"images/s on the same {available_cores()} cores -> both in turn at most {bound:.1f} images/s; "
          f"auto server at 16 clients {by[('auto', 16)].images_per_s:.1f} = "
          f"{by[('auto', 16)].images_per_s / bound:.2f}x that bound" if ("auto", 16) in by else "")
    summary["decode_images_per_s"] = decode
    if raw_at_served_batch:
        summary["auto_over_raw_at_its_batch_at_16"] = by[("auto", 16)].images_per_s / raw_at_served_batch
        print(f"at 16 clients the server's batches average {by[('auto', 16)].mean_batch:.1f} images; the raw auto "
              f"forward at that batch size is {raw_at_served_batch:.1f} images/s, so the server runs at "
              f"{summary['auto_over_raw_at_its_batch_at_16']:.2f}x the raw forward at the batches it gets")
    print(f"first request with 10 new labels: auto {first['auto']:.1f}s, torch-fp32 {first['torch-fp32']:.1f}s "
          f"-> {summary['first_labels_request_ratio']:.2f}x the latency")
    print(f"load average now {os.getloadavg()[0]:.1f}")
    print("json: " + json.dumps({k: round(v, 3) for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
