"""Wall time of the ``vgloss`` describe job against the ideal for its LLM concurrency.

    python3 benchmarks/bench_describe.py [--quick] [--classes 200] [--latency-ms 200]
                                         [--concurrency 1 8 32]

The LLM is the OpenAI-protocol stub (:mod:`gloss_gen.testing.llm_stub`, a threaded HTTP server
in its own process, as a real endpoint would be) answering every request after ``--latency-ms``;
the client is the real job,
:func:`gloss_gen.describe.describe_job.run_describe_job`: the real ``openai`` client, prompts with confusables,
parsing, the 77-token cap and one fsynced JSON line per class. The class set is the first
``--classes`` classes of ImageNet-1k. WordNet, the tokenizer and the openai client's response
types are loaded (an untimed 4-class job) before the clock starts.

For each concurrency the table gives the wall time, the ideal ``classes x latency / concurrency``,
their ratio (target <= 1.10 at 8 and 32), and the bound of whole rounds,
``ceil(classes / concurrency) x latency``: no schedule beats it, since each slot serves whole
requests (200 classes at 32: 7 rounds, 1.12 x the ideal). ``--quick`` runs concurrency 1 on 40
classes instead of all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gloss_gen.data.classsets import ClassSet, load_class_set
from gloss_gen.describe.describe_job import DescribeOptions, prepare, run_describe_job
from gloss_gen.describe.llm import clip_token_count
from gloss_gen.testing.llm_stub import RESET_PATH, STATS_PATH

TARGET_RATIO = 1.10
TARGET_AT = (8, 32)


def _class_set(count: int) -> ClassSet:
    imagenet = load_class_set("imagenet1k")
    return ClassSet(name=f"imagenet-first-{count}", classes=imagenet.classes[:count])


def _start_stub(latency_ms: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gloss_gen.testing.llm_stub", "--port", "0", "--latency-ms", str(latency_ms)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    banner = process.stdout.readline()
    if "listening on" not in banner:
        process.kill()
        raise SystemExit(f"the LLM stub did not start: {banner!r}")
    return process, banner.split()[-1]


def _run_once(url: str, class_set: ClassSet, concurrency: int, workdir: Path) -> tuple[float, int, int]:
    """(wall seconds, classes described, the stub's most requests in flight)."""
    import httpx

    root = url.removesuffix("/v1")
    options = DescribeOptions("vgloss", llm_model="stub-model", base_url=url, api_key="bench",
                              concurrency=concurrency, timeout=30.0, max_retries=2)
    httpx.post(root + RESET_PATH).raise_for_status()
    out = workdir / f"c{concurrency}.jsonl"
    started = time.perf_counter()
    summary = asyncio.run(run_describe_job(class_set, options, out, progress=False))
    wall = time.perf_counter() - started
    if not summary.ok:
        raise SystemExit(f"the job failed: {summary.lines()}")
    return wall, summary.described, int(httpx.get(root + STATS_PATH).json()["max_in_flight"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--quick", action="store_true", help="concurrency 1 on 40 classes only")
    args = parser.parse_args(argv)
    latency = args.latency_ms / 1000.0

    print(f"python {platform.python_version()}, {platform.machine()}, "
          f"stub latency {args.latency_ms:.0f} ms, ImageNet-1k first {args.classes} classes")
    full = _class_set(args.classes)
    short = _class_set(min(40, args.classes))
    prepare(full, DescribeOptions("vgloss"))  # load WordNet before any clock starts
    clip_token_count("warm up the tokenizer")

    rows = []
    stub, url = _start_stub(args.latency_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # One untimed job first: the openai client builds its response models on first use.
            _run_once(url, _class_set(4), 4, Path(tmp))
            for concurrency in args.concurrency:
                class_set = short if (args.quick and concurrency == 1) else full
                wall, count, in_flight = _run_once(url, class_set, concurrency, Path(tmp))
                ideal = count * latency / concurrency
                rounds = math.ceil(count / concurrency) * latency
                rows.append((concurrency, count, wall, ideal, wall / ideal, rounds, wall / rounds, in_flight))
    finally:
        stub.terminate()
        stub.wait(timeout=30)

    print(f"{'concurrency':>11} {'classes':>7} {'wall s':>8} {'ideal s':>8} {'ratio':>6} "
          f"{'rounds s':>8} {'/rounds':>7} {'in flight':>9}")
    for concurrency, count, wall, ideal, ratio, rounds, per_round, in_flight in rows:
        print(f"{concurrency:>11} {count:>7} {wall:>8.2f} {ideal:>8.2f} {ratio:>6.3f} "
              f"{rounds:>8.2f} {per_round:>7.3f} {in_flight:>9}")
    for concurrency, _, _, _, ratio, _, per_round, _ in rows:
        if concurrency in TARGET_AT:
            verdict = "met" if ratio <= TARGET_RATIO else "missed"
            print(f"concurrency {concurrency}: ratio {ratio:.3f} vs target <= {TARGET_RATIO} ({verdict}); "
                  f"{per_round:.3f} x the whole-rounds bound")
    return 0


if __name__ == "__main__":
    sys.exit(main())
