"""The first minute on a fresh data dir, with the default settings (``VGLOSS_BACKEND=auto``):

    python3 benchmarks/bench_first_minute.py [--model ViT-B-32] [--class-set imagenet1k]

- ``vgloss serve``: seconds to ``/readyz`` 200 (model load + the default classifier, built with
  WordNet descriptions), then seconds until the background probe has picked a path, and seconds
  for SIGTERM to end the process;
- ``vgloss serve`` again on a fresh data dir, SIGTERM one second into start-up: seconds to exit;
- ``vgloss embed cifar10 --method wordnet`` on a fresh data dir: seconds end to end.
Random weights (``VGLOSS_PRETRAINED=none``; no download here). Target: ready within 30 s, every
SIGTERM within 5 s, embed within 60 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def env_for(data_dir: Path, model: str, class_set: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")}
    env.update(VGLOSS_MODEL=model, VGLOSS_PRETRAINED="none", VGLOSS_DATA_DIR=str(data_dir),
               VGLOSS_DEFAULT_CLASS_SET=class_set, PYTHONPATH=str(REPO))
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sigterm_seconds(server: subprocess.Popen) -> float:
    started = time.perf_counter()
    server.send_signal(signal.SIGTERM)
    server.wait(120)
    return time.perf_counter() - started


def serve(env: dict, log: Path) -> tuple[subprocess.Popen, int, float]:
    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "gloss_gen.cli", "serve", "--port", str(port), "--plain-logs"],
                              env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=log.parent)
    return server, port, started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--class-set", default="imagenet1k")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-first-minute-"))
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f}; {args.model} random weights; default set {args.class_set}")

    server, port, started = serve(env_for(work / "data-1", args.model, args.class_set), work / "serve-1.log")
    try:
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if answer.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                sys.exit((work / "serve-1.log").read_text())
            time.sleep(0.2)
        ready_s = time.perf_counter() - started
        print(f"serve, fresh data dir: /readyz 200 after {ready_s:.1f}s; serving "
              f"{answer.json()['inference']['text']} (pending: {', '.join(answer.json()['inference']['pending']) or '-'})")
        while (inference := httpx.get(f"http://127.0.0.1:{port}/readyz").json()["inference"])["probe"] == "running":
            time.sleep(1)
        print(f"  background probe {inference['probe']} {time.perf_counter() - started - ready_s:.0f}s after ready: "
              f"image {', '.join(r['path'] + ' (' + r['batch_sizes'] + ')' for r in inference['image'])}; "
              f"text {inference['text']}")
        print(f"  SIGTERM when serving: exit after {sigterm_seconds(server):.2f}s")
    finally:
        if server.poll() is None:
            server.kill()

    server, port, started = serve(env_for(work / "data-2", args.model, args.class_set), work / "serve-2.log")
    time.sleep(1.0)
    print(f"serve, SIGTERM 1 s into start-up: exit after {sigterm_seconds(server):.2f}s")

    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gloss_gen.cli", "embed", "cifar10", "--method", "wordnet"],
                          env=env_for(work / "data-3", args.model, args.class_set), capture_output=True, text=True,
                          cwd=work)
    print(f"embed cifar10 --method wordnet, fresh data dir: {time.perf_counter() - started:.1f}s (exit {done.returncode})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
