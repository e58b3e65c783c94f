"""Raw forward of every inference path over torch fp32, with the fidelity gate's figures beside.

    python3 benchmarks/bench_inference.py [--batches 1 8 32] [--repeats 3] [--paths ...] [--data-dir DIR]

The real ViT-B-32 architecture with deterministic random weights, on the CPU with the thread count
the server uses (one per core). Each path is built by the same builders ``VGLOSS_BACKEND=auto``
probes (gloss_gen.inference.paths); exported graphs are cached in ``--data-dir``. At each batch
size the paths run interleaved, one call each in turn, ``--repeats`` times after a warm-up, so
background load hits them alike; the figure is the median. A path more than 3x slower than the
best at batch 1 is not timed at larger batches (as the probe does). The text tower runs on 64 ImageNet
prompts and on the 800 prompts (10 labels x 80 templates) of a first ad-hoc-label request. The
gate columns are the start-up gate's (64 real JPEGs / 64 prompts): cosine to fp32 and top-1
agreement over a 1000-class classifier; "gate" says whether ``auto`` may choose the path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch

from app.services.model import available_cores
from gloss_gen.core.prompts import template_prompts
from gloss_gen.inference import paths
from gloss_gen.inference.fidelity import compare, gate_pixels, gate_prompts, run_in_batches
from gloss_gen.inference.graph_export import GraphCache
from gloss_gen.inference.probe import SLOW_CUTOFF, probe_tower, time_runners
from gloss_gen.model.clip_models import load_clip

LABELS = ["red fox", "harbour seal", "espresso machine", "tandem bicycle", "snow leopard", "sea anemone",
          "pipe organ", "fire truck", "barn owl", "paper lantern"]


def print_ratios(table: dict) -> None:
    """The timings as soon as they are measured (the gate columns come in the final table)."""
    for (tower, batch), timings in table.items():
        ref = timings[paths.REFERENCE]
        figures = ", ".join(f"{n} {1000 * t:.0f} ms ({ref / t:.2f}x)" for n, t in sorted(timings.items(), key=lambda kv: kv[1]))
        print(f"    {tower} batch {batch}: {figures}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paths", nargs="+", default=[n for n, s in paths.PATHS.items() if s.available])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "vgloss-bench")
    parser.add_argument("--skip-text", action="store_true")
    args = parser.parse_args()
    if paths.REFERENCE not in args.paths:
        args.paths.insert(0, paths.REFERENCE)

    torch.set_num_threads(available_cores())
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{args.model} random weights; load average {os.getloadavg()[0]:.1f}", flush=True)
    clip = load_clip(args.model, "none")
    size = clip.preprocess_cfg["size"]
    height, width = (size, size) if isinstance(size, int) else size
    graphs = GraphCache(args.data_dir, clip.id, clip.model,
                        {"image": torch.zeros(1, 3, height, width), "text": clip.tokenizer(["a dog"])})
    context = paths.BuildContext(clip.model, graphs, torch.get_num_threads(), clip.device)
    towers = ["image"] if args.skip_text else ["image", "text"]
    print(f"paths: {', '.join(args.paths)}; a path over {SLOW_CUTOFF:.0f}x slower than the best at the first "
          "size is not timed at larger ones (as the auto probe does)", flush=True)
    runners = {tower: {} for tower in towers}
    for name in args.paths:
        for tower in towers:
            started = time.perf_counter()
            try:
                runners[tower][name] = paths.PATHS[name].build(context, tower)
            except Exception as exc:
                print(f"  {name} {tower}: failed to build ({type(exc).__name__}: {exc})")
                continue
            print(f"  built {name} {tower} in {time.perf_counter() - started:.1f}s", flush=True)

    pixels, source = gate_pixels(clip.preprocess)
    prompts = clip.tokenizer(gate_prompts())
    table = {}
    image_times = probe_tower(runners["image"], lambda n: pixels[:n].contiguous(), args.batches, args.repeats,
                              keep=(paths.REFERENCE,))
    for batch in args.batches:
        table[("image", batch)] = {n: per[batch] for n, per in image_times.items() if batch in per}
    print(f"  image timed; load average {os.getloadavg()[0]:.1f}", flush=True)
    print_ratios(table)
    if not args.skip_text:
        table[("text", 64)] = time_runners(runners["text"], prompts, args.repeats)
        fast = {n for n, t in table[("text", 64)].items() if n == paths.REFERENCE or t <= SLOW_CUTOFF * min(table[("text", 64)].values())}
        first_request = clip.tokenizer([p for label in LABELS for p in template_prompts(label)])
        table[("text", len(first_request))] = time_runners(
            {n: (lambda tokens, r=r: run_in_batches(r, tokens, 256)) for n, r in runners["text"].items() if n in fast},
            first_request, max(1, args.repeats - 1))
        print(f"  text timed; load average {os.getloadavg()[0]:.1f}", flush=True)
        print_ratios({k: v for k, v in table.items() if k[0] == "text"})

    # the gate: 64 items, or 16 for paths too slow to be timed past batch 1 (they can never win)
    gates, gate_sizes = {}, {}
    for tower, inputs in (("image", pixels), ("text", prompts)):
        if tower not in runners or (tower == "text" and args.skip_text):
            continue
        reference = run_in_batches(runners[tower][paths.REFERENCE], inputs, 32)
        gates[tower] = {}
        for name, runner in runners[tower].items():
            count = len(inputs) if any(name in t for (tw, b), t in table.items() if tw == tower and b > 1) else 16
            gates[tower][name] = compare(reference[:count], run_in_batches(runner, inputs[:count], 32))
            gate_sizes[(tower, name)] = count
    print(f"  gate on {source} and 64 prompts", flush=True)

    print(f"\n{'tower':<6} {'batch':>5} {'path':<18} {'ms/call':>9} {'items/s':>9} {'vs fp32':>8} "
          f"{'cos min':>8} {'top-1':>6} {'gate':>5}")
    summary = {}
    for (tower, batch), timings in table.items():
        ref = timings[paths.REFERENCE]
        skipped = [n for n in runners[tower] if n not in timings]
        for name, seconds in sorted(timings.items(), key=lambda kv: kv[1]):
            gate = gates[tower][name]
            ok = "ref" if name == paths.REFERENCE else ("pass" if gate.passed else "FAIL")
            print(f"{tower:<6} {batch:>5} {name:<18} {1000 * seconds:>9.1f} {batch / seconds:>9.1f} "
                  f"{ref / seconds:>7.2f}x {gate.cosine_min:>8.5f} {100 * gate.top1_agreement:>5.1f}% {ok:>5}"
                  + ("" if gate_sizes[(tower, name)] == 64 else f" (gate on {gate_sizes[(tower, name)]})"))
            summary[f"{tower}_bs{batch}_{name}"] = round(ref / seconds, 3)
        if skipped:
            print(f"{tower:<6} {batch:>5} not timed (over {SLOW_CUTOFF:.0f}x slower at the first size): {', '.join(skipped)}")
        print()
    print(f"load average now {os.getloadavg()[0]:.1f}")
    print("json: " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
