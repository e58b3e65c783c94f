"""Soak: many clients against one ``vgloss serve`` for a fixed time; every answer, latency and RSS.

    python3 benchmarks/bench_soak.py [--clients 64] [--seconds 60] [--backend auto] [--data-dir DIR]

The red-team load case of the hardening issue: 64 clients x 60 s of one-image classify requests
on real JPEGs (ViT-B-32 random weights, imagenet1k with the wordnet method, the bench store of
bench_server.py). Prints the status counts (all should be 200), images/s, p50/p99 and the server
process's RSS at ready, at its peak during the run (sampled every 0.5 s) and at the end: a flat
RSS means no request leaves memory behind.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

import httpx
from bench_server import DATA, MODEL, PRETRAINED, ServerProcess, prepare_model_and_classifier, python_env


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def soak(url: str, images: list[tuple[str, bytes]], clients: int, seconds: float):
    statuses: collections.Counter = collections.Counter()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(index: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            n = index
            while time.perf_counter() < deadline:
                name, data = images[n % len(images)]
                n += clients
                started = time.perf_counter()
                try:
                    response = await http.post("/v1/classify", files={"images": (name, data, "image/jpeg")})
                    statuses[str(response.status_code)] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return statuses, latencies, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--backend", default="auto", help="VGLOSS_BACKEND of the server (auto, torch, ...)")
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "vgloss-bench")
    args = parser.parse_args()

    images = [(p.name, p.read_bytes()) for p in sorted((DATA / "imagenet-sample").glob("*.JPEG"))]
    if not images:
        sys.exit(f"no JPEGs under {DATA / 'imagenet-sample'} (../shared beside the checkout)")
    prepare_model_and_classifier(args.data_dir)
    env = python_env({"VGLOSS_MODEL": MODEL, "VGLOSS_PRETRAINED": PRETRAINED, "VGLOSS_DEVICE": "cpu",
                      "VGLOSS_DATA_DIR": str(args.data_dir), "VGLOSS_DEFAULT_CLASS_SET": "imagenet1k",
                      "VGLOSS_BACKEND": args.backend})
    if args.backend == "torch":
        env["VGLOSS_PRECISION"] = "fp32"
    server = ServerProcess("vgloss", [sys.executable, "-m", "gloss_gen.cli", "serve", "--port", "{port}", "--plain-logs"],
                           env, "/readyz", Path(tempfile.mkdtemp(prefix="bench-soak-")))
    server.launch()
    try:
        print(f"{os.cpu_count()} CPUs; {MODEL} random weights; backend {args.backend}; ready in "
              f"{server.wait_ready():.0f}s; load average {os.getloadavg()[0]:.1f}", flush=True)
        httpx.post(server.url + "/v1/classify", files={"images": images[0]}, timeout=None)  # warm-up
        pid = server.process.pid
        at_ready = rss_mib(pid)
        peak, stop = [at_ready], threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                peak.append(rss_mib(pid))  # one sample per 0.5 s: index 2 * t

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        statuses, latencies, wall = asyncio.run(soak(server.url, images, args.clients, args.seconds))
        stop.set()
        sampler.join()
        time.sleep(1.0)
        at_end = rss_mib(pid)
    finally:
        server.stop()
    latencies.sort()
    done = len(latencies)
    p = lambda q: latencies[min(done - 1, int(q * done))] if done else float("nan")  # noqa: E731
    print(f"{args.clients} clients x {wall:.0f} s: {sum(statuses.values())} requests, statuses {dict(statuses)}")
    print(f"images/s {done / wall:.1f}; p50 {1000 * p(0.5):.0f} ms, p99 {1000 * p(0.99):.0f} ms, "
          f"mean {1000 * statistics.fmean(latencies):.0f} ms" if done else "no request finished")
    quarters = ", ".join(f"{peak[min(len(peak) - 1, round(q * (len(peak) - 1)))]:.0f}" for q in (0.25, 0.5, 0.75, 1.0))
    print(f"server RSS: {at_ready:.0f} MiB at ready, {max(peak):.0f} MiB peak, {at_end:.0f} MiB after; "
          f"at each quarter of the run {quarters} MiB (flat = no request leaves memory behind)")
    print("json: " + json.dumps({"statuses": dict(statuses), "images_per_s": round(done / wall, 2),
                                 "p50_ms": round(1000 * p(0.5)), "p99_ms": round(1000 * p(0.99)),
                                 "rss_ready_mib": round(at_ready), "rss_peak_mib": round(max(peak)),
                                 "rss_end_mib": round(at_end)}))
    return 0 if set(statuses) == {"200"} else 1


if __name__ == "__main__":
    sys.exit(main())
