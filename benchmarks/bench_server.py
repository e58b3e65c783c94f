"""End-to-end throughput of ``vgloss serve`` against the model's raw batched throughput and two
servers built the usual way.

    python3 benchmarks/bench_server.py [--quick] [--levels 1 4 16 64] [--data-dir DIR]

Everything runs on the CPU with the ViT-B-32 architecture and deterministic random weights, in one
run, on real JPEGs from ../shared/data/imagenet-sample. Each server is its own process on a
loopback port; the benchmark starts and stops them. At each concurrency level, that many clients
(asyncio + httpx) each send one image per request, in a loop, for a fixed number of requests.

- raw: ``ClipModel.encode_images`` on already-preprocessed tensors at the server's ``max_batch``
  (32), in this process while the servers are idle. All servers start first; then each level runs
  on every server in turn, with raw measured before and after the level and averaged, so drifting
  background load hits all figures of a level alike. Target: vgloss / raw >= 0.85 at 16 clients.
- vgloss: ``vgloss serve`` (uvicorn, the app factory, default settings) serving imagenet1k with
  the wordnet method. The classifier is built once into ``--data-dir`` (1000 prompts) and reused.
- hf-pipeline: baseline (a), the transformers ``zero-shot-image-classification`` pipeline behind a
  plain FastAPI endpoint, candidate labels = the 1000 ImageNet names (benchmarks/baselines/).
  Target: vgloss >= 3x its throughput.
- naive-open_clip: baseline (b), open_clip per request re-encoding the 1000 class names with ONE
  template each (with the 80 templates a request takes minutes). Target: vgloss >= 2x.
- naive-cached (full runs only): open_clip per request scored against the classifier vgloss
  stored (no text work); no batching, FastAPI's thread pool.
  Not a target; it shows how much of the gain is batching rather than caching.

Both text-encoding baselines need seconds per request on a CPU, so each level of a baseline has a
time budget: clients stop starting requests when it runs out, and a level that cannot finish its
requests within budget + grace is marked saturated and ends that server's run (higher
concurrency cannot help a server whose every request is CPU-bound text encoding). A baseline's
figure at 16 clients is then its best throughput at any level measured (its capacity) - a bound
in the baseline's favour; a level where not one request finished gives only the bound
"< 1 image / wall time", and ratios against it are lower bounds (printed with < and >).
``--quick`` sends fewer requests, gives baselines 15 s per level plus 15 s grace, and skips
naive-cached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx
import torch

DATA = REPO.parent / "shared" / "data"
MODEL, PRETRAINED = "ViT-B-32", "none"
MAX_BATCH = 32  # the server's default VGLOSS_MAX_BATCH
TARGET_AT = 16
TARGETS = {"raw": 0.85, "hf-pipeline": 3.0, "naive-open_clip": 2.0}

FULL_REQUESTS = {1: 16, 4: 8, 16: 4, 64: 2}
QUICK_REQUESTS = {1: 4, 4: 2, 16: 2, 64: 1}


@dataclass
class LevelResult:
    server: str
    clients: int
    requests: int = 0
    failed: int = 0
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    mean_batch: float | None = None
    saturated: bool = False

    @property
    def images_per_s(self) -> float:
        """Completed images per second; with none completed, the bound 1 / wall time (fewer than one
        image finished in that time), so ratios against it are lower bounds."""
        if self.wall_s <= 0:
            return 0.0
        return max(self.requests, 1) / self.wall_s

    @property
    def is_bound(self) -> bool:
        return self.requests == 0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1]


# ------------------------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(self, name: str, command: list[str], env: dict[str, str], ready_path: str, cwd: Path) -> None:
        self.name = name
        self.port = free_port()
        self.command = [part.replace("{port}", str(self.port)) for part in command]
        self.env = env
        self.ready_path = ready_path
        self.cwd = cwd
        handle, log_path = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")
        os.close(handle)
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None
        self._launched = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        self._launched = time.perf_counter()
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(self.command, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 900) -> float:
        """Seconds from launch to ready."""
        started = self._launched
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited during start-up:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            if time.perf_counter() - started > timeout_s:
                self.stop()
                raise SystemExit(f"{self.name} not ready after {timeout_s:.0f}s (log: {self.log_path})")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def python_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


# ------------------------------------------------------------------------------------ load


async def run_level(
    server: str,
    url: str,
    images: list[tuple[str, bytes]],
    clients: int,
    requests_per_client: int,
    budget_s: float | None,
    grace_s: float,
) -> LevelResult:
    result = LevelResult(server, clients)
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    async with httpx.AsyncClient(limits=limits, timeout=None) as http:
        started = time.perf_counter()
        deadline = None if budget_s is None else started + budget_s
        last_done = started

        async def client(index: int) -> None:
            nonlocal last_done
            for number in range(requests_per_client):
                if deadline is not None and time.perf_counter() > deadline:
                    result.saturated = True
                    return
                name, data = images[(index * requests_per_client + number) % len(images)]
                sent = time.perf_counter()
                response = await http.post(url, files={"images": (name, data, "image/jpeg")})
                last_done = time.perf_counter()
                if response.status_code == 200:
                    result.requests += 1
                    result.latencies.append(last_done - sent)
                else:
                    result.failed += 1

        tasks = [asyncio.create_task(client(i)) for i in range(clients)]
        wait_s = None if budget_s is None else budget_s + grace_s
        _, pending = await asyncio.wait(tasks, timeout=wait_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            result.saturated = True
            last_done = time.perf_counter()
        result.wall_s = last_done - started
    return result


def batch_counters(url: str) -> tuple[float, float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        for name in ("vgloss_inference_batch_size_sum", "vgloss_inference_batch_size_count"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    return values.get("vgloss_inference_batch_size_sum", 0.0), values.get("vgloss_inference_batch_size_count", 0.0)


def run_level_on(
    server: ServerProcess,
    path: str,
    images: list[tuple[str, bytes]],
    clients: int,
    requests: int,
    budget_s: float | None,
    grace_s: float,
    batch_metrics: bool,
) -> LevelResult:
    before = batch_counters(server.url) if batch_metrics else None
    result = asyncio.run(run_level(server.name, server.url + path, images, clients, requests, budget_s, grace_s))
    if before is not None:
        after = batch_counters(server.url)
        batches = after[1] - before[1]
        result.mean_batch = (after[0] - before[0]) / batches if batches else None
    print(f"    {server.name:<16} {clients:>3} clients: {result.requests} images in {result.wall_s:.1f}s"
          + (" (saturated)" if result.saturated else ""), flush=True)
    return result


# ------------------------------------------------------------------------------------ raw model


def prepare_model_and_classifier(data_dir: Path):
    """The model (for the raw measurement) and the imagenet1k classifier in the bench store."""
    from gloss_gen.core.config import Settings
    from gloss_gen.data.classifier import build_classifier
    from gloss_gen.data.classsets import builtin_class_set
    from gloss_gen.data.descriptions import describe_wordnet
    from gloss_gen.data.store import open_store
    from gloss_gen.model.clip_models import load_clip

    model = load_clip(MODEL, PRETRAINED, device="cpu", precision="fp32")
    store = open_store(Settings(_env_file=None, data_dir=data_dir, redis_url=None))
    if store.get_active_classifier(model.id, "imagenet1k") is None:
        print("  building the imagenet1k classifier (wordnet, 1000 prompts) once into", data_dir, flush=True)
        descriptions = describe_wordnet(builtin_class_set("imagenet1k"))
        classifier = build_classifier(model, descriptions, progress=True)
        store.put_descriptions(descriptions)
        store.put_classifier(classifier)
    return model


def raw_images_per_s(model, images: list[tuple[str, bytes]], seconds: float, batch_size: int = MAX_BATCH) -> float:
    from gloss_gen.imaging import ImageLimits, Preprocessor, load_tensor

    preprocessor = Preprocessor.from_open_clip(model.model)
    limits = ImageLimits()
    batch = torch.stack([load_tensor(data, limits, preprocessor) for _, data in images[:batch_size]])
    model.encode_images(batch)  # warm-up
    done, started = 0, time.perf_counter()
    while done < 3 * batch_size or time.perf_counter() - started < seconds:
        model.encode_images(batch)
        done += batch_size
    return done / (time.perf_counter() - started)


# ------------------------------------------------------------------------------------ report


def print_table(rows: list[LevelResult], raw_by_level: dict[int, float]) -> None:
    print(f"\n{'server':<16} {'clients':>7} {'images':>7} {'images/s':>9} {'raw':>6} {'vs raw':>7} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'mean batch':>10}")
    for r in rows:
        raw = raw_by_level[r.clients]
        batch = f"{r.mean_batch:.1f}" if r.mean_batch is not None else "-"
        rate = f"<{r.images_per_s:.3f}" if r.is_bound else f"{r.images_per_s:.2f}"
        note = "  saturated" if r.saturated else ""
        print(f"{r.server:<16} {r.clients:>7} {r.requests:>7} {rate:>9} {raw:>6.2f} {r.images_per_s / raw:>7.2f} "
              f"{1000 * r.percentile(50):>8.0f} {1000 * r.percentile(99):>8.0f} {batch:>10}{note}")


def at_level(rows: list[LevelResult], server: str, clients: int) -> tuple[float, str, bool]:
    """(images/s, how it was obtained, whether it is only an upper bound) for ``server``."""
    mine = [r for r in rows if r.server == server]
    exact = [r for r in mine if r.clients == clients and not r.saturated]
    if exact:
        return exact[0].images_per_s, f"at {clients} clients", exact[0].is_bound
    if not mine:
        return 0.0, "not run", False
    best = max(mine, key=lambda r: r.images_per_s)
    return best.images_per_s, f"best measured, at {best.clients} clients", best.is_bound


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests; baselines 15 s per level")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--requests-per-client", type=int, help="override the per-level request counts")
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "vgloss-bench",
                        help="where the vgloss server's store (the imagenet1k classifier) is kept between runs")
    parser.add_argument("--batch-wait-ms", type=float,
                        help="VGLOSS_BATCH_WAIT_MS for the vgloss server (default: its default)")
    parser.add_argument("--skip-baselines", action="store_true")
    args = parser.parse_args()
    if TARGET_AT not in args.levels:
        args.levels = sorted({*args.levels, TARGET_AT})

    paths = sorted((DATA / "imagenet-sample").glob("*.JPEG"))
    if not paths:
        sys.exit(f"no JPEGs under {DATA / 'imagenet-sample'} (../shared beside the checkout)")
    images = [(p.name, p.read_bytes()) for p in paths]
    per_client = QUICK_REQUESTS if args.quick else FULL_REQUESTS
    requests = {c: args.requests_per_client or per_client.get(c, max(1, 64 // c)) for c in args.levels}
    budget_s, grace_s = (15.0, 15.0) if args.quick else (60.0, 120.0)
    raw_seconds = 3.0 if args.quick else 6.0
    bench_started = time.perf_counter()

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); {MODEL} random weights, CPU fp32; {len(images)} JPEGs; "
          f"load average {os.getloadavg()[0]:.1f}")
    model = prepare_model_and_classifier(args.data_dir)

    vgloss_env = {
        "VGLOSS_MODEL": MODEL, "VGLOSS_PRETRAINED": PRETRAINED, "VGLOSS_DEVICE": "cpu",
        "VGLOSS_DATA_DIR": str(args.data_dir), "VGLOSS_DEFAULT_CLASS_SET": "imagenet1k",
    }
    if args.batch_wait_ms is not None:
        vgloss_env["VGLOSS_BATCH_WAIT_MS"] = str(args.batch_wait_ms)
    workdir = Path(tempfile.mkdtemp(prefix="bench-server-"))
    baselines = REPO / "benchmarks" / "baselines"
    vgloss_command = [sys.executable, "-m", "gloss_gen.cli", "serve", "--port", "{port}",
                      "--log-level", "warning", "--plain-logs"]
    # (server, path, time budget per level: the baselines are time-boxed, vgloss is not)
    plan = [(ServerProcess("vgloss", vgloss_command, python_env(vgloss_env), "/readyz", workdir), "/v1/classify", None)]
    if not args.skip_baselines:
        commands = [
            ("hf-pipeline", [str(baselines / "hf_pipeline_server.py")]),
            ("naive-open_clip", [str(baselines / "naive_openclip_server.py")]),
        ]
        if not args.quick:
            commands.append(("naive-cached", [str(baselines / "naive_openclip_server.py"),
                                              "--classifier-from", str(args.data_dir)]))
        for name, command in commands:
            server = ServerProcess(name, [sys.executable, *command, "--port", "{port}"], python_env({}),
                                   "/healthz", workdir)
            plan.append((server, "/classify", budget_s))

    rows: list[LevelResult] = []
    raw_by_level: dict[int, float] = {}
    try:
        for server, _, _ in plan:
            server.launch()
        for server, path, budget in plan:
            print(f"  {server.name}: ready in {server.wait_ready():.0f}s", flush=True)
            if budget is None or server.name == "naive-cached":
                # one untimed request, so lazy initialisation stays out of the figures (the
                # text-encoding baselines spend seconds per request anyway, and a warm-up would
                # cost as much)
                httpx.post(server.url + path, files={"images": images[0]}, timeout=None)
        # Levels go round-robin over the servers, with the raw model measured before and after
        # each level, so drifting background load on the machine hits every figure alike.
        saturated: set[str] = set()
        for clients in args.levels:
            raw_before = raw_images_per_s(model, images, raw_seconds)
            for server, path, budget in plan:
                if server.name in saturated:
                    continue
                result = run_level_on(server, path, images, clients, requests[clients], budget, grace_s,
                                      batch_metrics=server.name == "vgloss")
                rows.append(result)
                if result.saturated:
                    saturated.add(server.name)
            raw_after = raw_images_per_s(model, images, raw_seconds)
            raw_by_level[clients] = (raw_before + raw_after) / 2
            print(f"    raw encode_images at batch {MAX_BATCH}: {raw_before:.2f} before, {raw_after:.2f} after",
                  flush=True)
    finally:
        for server, _, _ in plan:
            server.stop()

    print_table(rows, raw_by_level)
    ours, _, _ = at_level(rows, "vgloss", TARGET_AT)
    raw = raw_by_level[TARGET_AT]
    summary = {"raw_images_per_s_at_16": raw, "vgloss_at_16": ours}
    ratio = ours / raw if raw else 0.0
    print(f"\nvgloss / raw batched encode_images (batch {MAX_BATCH}) at {TARGET_AT} clients: {ours:.2f} / {raw:.2f} = "
          f"{ratio:.2f} (target >= {TARGETS['raw']}) {'OK' if ratio >= TARGETS['raw'] else 'MISSED'}")
    summary["vgloss_over_raw"] = ratio
    for name in ("hf-pipeline", "naive-open_clip", "naive-cached"):
        theirs, how, bound = at_level(rows, name, TARGET_AT)
        if how == "not run":
            continue
        ratio = ours / theirs if theirs else float("inf")
        target = TARGETS.get(name)
        verdict = "" if target is None else f" (target >= {target}x) {'OK' if ratio >= target else 'MISSED'}"
        if bound:
            how += ", none finished: an upper bound"
        print(f"vgloss at {TARGET_AT} clients / {name} ({how}: {'<' if bound else ''}{theirs:.3f} images/s): "
              f"{'>' if bound else ''}{ratio:.1f}x{verdict}")
        summary[f"vgloss_over_{name}"] = ratio
    print(f"total time {time.perf_counter() - bench_started:.0f}s; load average now {os.getloadavg()[0]:.1f}")
    print("json: " + json.dumps({k: round(v, 3) for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
