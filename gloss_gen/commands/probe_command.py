from __future__ import annotations

import argparse
import sys

from gloss_gen.commands.verb_support import (
    UserError,
    add_model_arguments,
    check_model_setup,
    open_checked_store,
    settings_from_args,
)

HELP = "measure the CPU inference paths (torch, ONNX Runtime, OpenVINO) and cache the fastest exact one"
DESCRIPTION = """\
Measure the CPU inference paths this machine can run for the model (VGLOSS_BACKEND=auto), time
each at batch 1 first (a path slower than torch fp32 there is dropped), then at VGLOSS_MAX_BATCH,
gate the winners against the fp32 reference (cosine, top-1 agreement, batch invariance), and cache
the decision in the store (Redis when VGLOSS_REDIS_URL is set), keyed by model, weights, CPU
flags, threads and library versions. Every `vgloss serve` replica and every verb on the same
machine kind then uses it without measuring.

No other verb probes: they use a cached decision or torch fp32. `vgloss serve` starts on torch
fp32 at once and probes in the background once it is ready.

Examples:
  vgloss probe                       # the configured model; prints the table
  vgloss probe --budget 60           # stop measuring after 60 s; what was measured decides
  vgloss probe --again               # measure again even if a decision is cached
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", type=float, metavar="SECONDS",
                        help="the most seconds the probe may take (default: VGLOSS_PROBE_BUDGET_S or 120)")
    parser.add_argument("--again", action="store_true", help="measure again, ignoring a cached decision")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.budget is not None and args.budget <= 0:
        raise UserError("--budget must be a positive number of seconds")
    settings = settings_from_args(args)
    if settings.resolved_device() != "cpu":
        raise UserError("the probe measures CPU inference paths; on CUDA vgloss runs torch fp16 (VGLOSS_DEVICE=cpu to probe)")
    settings = settings.model_copy(update={"backend": "auto", "precision": "auto",
                                           **({"probe_budget_s": args.budget} if args.budget else {})})
    from tqdm.auto import tqdm

    from gloss_gen.inference import attach_engine
    from gloss_gen.model.clip_models import ModelSpec, load_clip

    store = open_checked_store(settings)  # a bad Redis URL fails here, before the model loads
    check_model_setup(settings)
    clip = load_clip(settings.model, settings.pretrained, "cpu", "fp32", settings.cache_dir)
    with tqdm(desc="probing", unit="step", disable=not sys.stderr.isatty()) as bar:
        def progress(message: str) -> None:
            bar.set_postfix_str(message)
            bar.update(1)

        engine = attach_engine(clip, ModelSpec.from_settings(settings), probe=True, store=store,
                               progress=progress, remeasure=args.again)
    print(format_probe(engine))
    return 0


def format_probe(engine) -> str:
    lines = []
    for tower in ("image", "text"):
        measured = engine.timings.get(tower, {})
        for path, per_batch in sorted(measured.items()):
            figures = "  ".join(f"bs{b} {1000 * t:8.1f} ms" for b, t in sorted(per_batch.items(), key=lambda x: int(x[0])))
            lines.append(f"{tower:5}  {path:18}  {figures}")
    broken = engine.timings.get("broken", {})
    lines += [f"broken {path}: {why}" for path, why in broken.items()]
    described = engine.describe()
    lines.append("serves: image " + ", ".join(f"{r['path']} (batch {r['batch_sizes']})" for r in described["image"])
                 + f"; text {described['text']}")
    lines += [f"why {tower}: {why}" for tower, why in described["why"].items()]
    return "\n".join(lines)
