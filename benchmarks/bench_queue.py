"""Describe throughput of the Redis queue with 1, 2 and 4 `vgloss worker` processes.

    python3 benchmarks/bench_queue.py [--classes 160] [--latency-ms 200] [--concurrency 4]

The LLM is the local stub (its own process, a fixed latency per request), so the workers are
I/O bound the way they are against a real endpoint. For each worker count: start the workers and
wait until each is ready, then queue `--repeats` `vgloss`-method jobs over the first N ImageNet
classes one after another, timing each from the enqueue until every class is recorded (the
describe phase; the final embed step is timed apart, it runs once whatever the worker count).
The table shows medians. Needs Redis at VGLOSS_REDIS_URL (default redis://127.0.0.1:6379/0);
uses a throwaway namespace and queue and deletes them.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gloss_gen.core.config import Settings
from gloss_gen.data.classsets import ClassSet, builtin_class_set
from gloss_gen.data.store import open_store
from gloss_gen.queue import enqueue_describe_job


def _env(redis_url: str, namespace: str, queue: str, stub_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VGLOSS_", "OPENAI_"))}
    env.update(
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        VGLOSS_REDIS_URL=redis_url, VGLOSS_REDIS_NAMESPACE=namespace, VGLOSS_QUEUE_NAME=queue,
        VGLOSS_MODEL="vgloss-tiny", VGLOSS_PRETRAINED="none", VGLOSS_DEVICE="cpu",
        VGLOSS_DATA_DIR=str(data_dir), OPENAI_BASE_URL=stub_url, OPENAI_API_KEY="bench",
    )
    return env


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_jobs(n_workers: int, class_set: ClassSet, args, stub_url: str, tmp: Path) -> list[tuple[float, float]]:
    """(describe seconds, embed seconds) of ``args.repeats`` jobs, one after another, on the same
    ``n_workers`` workers (started, and ready, before the first job is queued)."""
    tag = uuid.uuid4().hex[:10]
    namespace, queue = f"vgloss:bench-{tag}:v1", f"vgloss:bench-{tag}:queue"
    settings = Settings(redis_url=args.redis_url, redis_namespace=namespace, queue_name=queue,
                        model="vgloss-tiny", pretrained="none", llm_model="stub-model")
    env = _env(args.redis_url, namespace, queue, stub_url, tmp / "data")
    logs = [tmp / f"w{n_workers}-{i}.log" for i in range(n_workers)]
    procs = []
    for log_path in logs:
        with log_path.open("w") as fh:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "gloss_gen.cli", "worker", "--concurrency", str(args.concurrency)],
                stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=tmp,
            ))
    client = redis.Redis.from_url(args.redis_url)
    job_ids: list[str] = []
    timings = []
    try:
        deadline = time.monotonic() + 180
        for proc, log_path in zip(procs, logs):
            while "vgloss worker ready" not in log_path.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"worker did not start:\n{log_path.read_text()}")
                time.sleep(0.05)
        store = open_store(settings)
        for _ in range(args.repeats):
            started = time.perf_counter()
            job_id = enqueue_describe_job(class_set, "vgloss", settings=settings)
            job_ids.append(job_id)
            described = None
            while True:
                job = store.get_job(job_id)
                if described is None and job.done >= job.total:
                    described = time.perf_counter() - started
                if job.finished:
                    break
                if time.perf_counter() - started > 600:
                    raise SystemExit(f"job did not finish: {job}")
                time.sleep(0.01)
            if job.state != "done" or job.failed:
                raise SystemExit(f"job failed: {job}")
            timings.append((described, time.perf_counter() - started - described))
        return timings
    finally:
        _stop(procs)
        patterns = [f"vgloss:bench-{tag}:*"] + [f"arq:*:{job_id}:*" for job_id in job_ids]
        for pattern in patterns:
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=160)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4, help="tasks in flight per worker")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to compare")
    parser.add_argument("--repeats", type=int, default=3, help="jobs per worker count; the median is shown")
    parser.add_argument("--redis-url", default=os.environ.get("VGLOSS_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]

    client = redis.Redis.from_url(args.redis_url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise SystemExit(f"no Redis at {args.redis_url}: {exc}") from None
    finally:
        client.close()

    imagenet = builtin_class_set("imagenet1k")
    class_set = ClassSet(name=f"bench-imagenet{args.classes}", classes=imagenet.classes[: args.classes])
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp_dir:
        tmp = Path(tmp_dir)
        stub = subprocess.Popen(
            [sys.executable, "-m", "gloss_gen.testing.llm_stub", "--port", "0",
             "--latency-ms", str(args.latency_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp,
        )
        try:
            seen = ""
            while not (match := re.search(r"listening on (\S+)", seen)):
                line = stub.stdout.readline()
                if not line:
                    raise SystemExit(f"the LLM stub did not start: {seen}")
                seen += line
            stub_url = match.group(1)
            print(f"{args.classes} classes, stub latency {args.latency_ms} ms, "
                  f"{args.concurrency} tasks in flight per worker, {os.cpu_count()} CPU cores, "
                  f"median of {args.repeats} jobs")
            ideal = args.classes * args.latency_ms / 1000 / args.concurrency
            print(f"(1 worker's floor: {ideal:.1f} s)\n")
            print(f"{'workers':>7}  {'describe s':>10}  {'classes/s':>9}  {'speed-up':>8}  {'embed s':>7}")
            base = None  # speed-up is over the first worker count given (1 by default)
            for n in counts:
                timings = run_jobs(n, class_set, args, stub_url, tmp)
                described = statistics.median(t[0] for t in timings)
                embedded = statistics.median(t[1] for t in timings)
                base = base or described
                print(f"{n:>7}  {described:>10.2f}  {args.classes / described:>9.1f}  "
                      f"{base / described:>7.2f}x  {embedded:>7.2f}", flush=True)
        finally:
            _stop([stub])
            stub.stdout.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
