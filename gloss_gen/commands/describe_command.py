"""``vgloss describe``: the batch description job."""

from __future__ import annotations

import argparse
import sys

from gloss_gen.commands.verb_support import UserError

HELP = "write descriptions for every class of a class set (one JSON line per class, per pair for fudd; resumable)"
DESCRIPTION = """\
Write descriptions for every class of a class set: one JSON line per class, written as each
class finishes. Re-running the same command skips finished classes (resume after a crash or
Ctrl-C) and retries the classes that failed. Exit status 1 when any class failed. With --queue,
re-running the same command while its job is unfinished reattaches to that job, and the wait
rides out a Redis outage of up to 5 minutes.

Methods:
  classname  no descriptions; the class name in prompt templates (the CLIP baseline)
  wordnet    the synset's WordNet definition
  waffle     WaffleCLIP's random descriptors: 15 pairs of random words (WordNet lemmas) and
             random characters, the same for every class, written as whole sentences
             ("A photo of a {class}, which has {noise}."), seed 0 (`vgloss eval` takes
             waffle:seed=S and waffle:seeds=N)
  vgloss     an LLM writes visual descriptions grounded in WordNet that tell each class
             apart from its most confusable classes in the same set, in one of two styles
             (--style): phrases (default; short phrases, embedded as "{class}, which has
             {phrase}.") or gloss (visual glosses that replace the WordNet definition, as in
             the V-GLOSS paper, embedded like the wordnet method's definitions)
  fudd       FuDD's pairwise differential descriptions: for each pair of classes that can
             meet in a top-k (each class with its --confusables K nearest, plus with
             --pairs-from the pairs met in vgloss eval or vgloss label output), an LLM names
             --descriptions N attributes (default 4) that differ, and each side becomes
             "a photo of a {class}, with {phrase}."; one JSON line per pair
  import     a CuPL ({class: [sentences]}) or DCLIP ({class: [descriptors]}) JSON file

The vgloss and fudd methods talk to any OpenAI-compatible endpoint: OPENAI_API_KEY and OPENAI_BASE_URL
as for the openai client (a local endpoint needs no key). Defaults for --llm-model and
--concurrency come from VGLOSS_LLM_MODEL and VGLOSS_LLM_CONCURRENCY.

Examples:
  vgloss describe cifar10 --method wordnet
  vgloss describe cifar10 --method waffle       # cifar10.waffle.jsonl, no LLM
  OPENAI_BASE_URL=http://127.0.0.1:8000/v1 vgloss describe imagenet1k --method vgloss \\
      --llm-model meta-llama/Llama-3.1-8B-Instruct --concurrency 32
  vgloss describe imagenet1k --method import --import cupl_imagenet.json --out cupl.jsonl
  vgloss describe labels.txt --method vgloss --queue
  vgloss describe cifar10 --method vgloss --style gloss --descriptions 1   # cifar10.vgloss-gloss.jsonl
  vgloss describe cifar10 --method fudd --pairs-from results/   # cifar10.fudd.jsonl
"""

NO_WORKER_WARNING_S = 10  # two of arq's health checks: a live worker has refreshed its key by then
QUEUE_OUTAGE_LIMIT_S = 300.0  # how long --queue waits through a Redis outage before it gives up


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gloss_gen.data.methods import METHOD_NAMES  # light: no torch

    parser.add_argument("class_set", metavar="CLASS_SET",
                        help="imagenet1k, cifar10, stl10, or a .txt/.json/.yaml class file")
    parser.add_argument("--method", required=True, choices=METHOD_NAMES)
    parser.add_argument("--import", dest="import_file", metavar="FILE",
                        help="CuPL or DCLIP JSON file (with --method import)")
    parser.add_argument("--import-format", choices=("auto", "cupl", "dclip"), default="auto",
                        help="cupl: full sentences; dclip: descriptor phrases (default: auto)")
    parser.add_argument("--style", choices=("phrases", "gloss"), default="phrases",
                        help="vgloss: short phrases (default) or visual glosses replacing the WordNet definition")
    parser.add_argument("--llm-model", metavar="M", help="chat model (default: VGLOSS_LLM_MODEL)")
    parser.add_argument("--concurrency", type=int, metavar="N",
                        help="LLM requests in flight (default: VGLOSS_LLM_CONCURRENCY, 8)")
    parser.add_argument("--descriptions", type=int, metavar="N",
                        help="descriptions to ask for per class (default: 5); fudd: attributes per pair (default: 4)")
    parser.add_argument("--confusables", type=int, default=5, metavar="K",
                        help="confusable classes named in each prompt (default: 5); fudd: each class is paired "
                        "with its K nearest")
    parser.add_argument("--pairs-from", metavar="PATH",
                        help="fudd: also the pairs met in the top-k of a vgloss label output (folder or .parquet) "
                        "or a vgloss eval output (folder or results.json)")
    parser.add_argument("--max-pairs", type=int, metavar="N",
                        help="fudd: of the --pairs-from pairs, the N met most often (default: all)")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="seconds per LLM request (default: VGLOSS_LLM_TIMEOUT_S, 60)")
    parser.add_argument("--max-retries", type=int, metavar="N",
                        help="retries per class on 429/5xx/timeouts (default: VGLOSS_LLM_MAX_RETRIES, 5)")
    parser.add_argument("--out", metavar="FILE.jsonl",
                        help="output file (default: <class_set>.<method>.jsonl in the current directory)")
    parser.add_argument("--queue", action="store_true",
                        help="run the job on the worker queue (vgloss worker) and wait for it; re-running "
                             "the same command while it runs reattaches to it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _options(args: argparse.Namespace, settings):
    from gloss_gen.describe.describe_job import DescribeOptions
    from gloss_gen.describe.llm import DEFAULT_N_ATTRIBUTES

    return DescribeOptions.from_settings(
        args.method,
        settings,
        llm_model=args.llm_model,
        style=args.style,
        concurrency=args.concurrency,
        n_descriptions=(args.descriptions if args.descriptions is not None
                        else DEFAULT_N_ATTRIBUTES if args.method == "fudd" else 5),
        k_confusables=args.confusables,
        import_file=args.import_file,
        import_format=args.import_format,
        timeout=args.timeout,
        max_retries=args.max_retries,
    )


def _run_queued(args: argparse.Namespace, class_set, options, settings) -> int:
    try:
        from gloss_gen import queue
    except ImportError as exc:
        raise UserError(f"the queue is not available: {exc}") from None
    extra = options.to_dict()
    extra.pop("method")
    job_id, attached = queue.enqueue_or_attach_describe_job(class_set, args.method, settings=settings,
                                                            out=args.out, **extra)
    print(f"attached to running job {job_id}" if attached else f"queued job {job_id}", file=sys.stderr)
    job = _follow(queue, job_id, settings, progress=not args.no_progress)
    print(f"job {job_id}: {job.state}, {job.done}/{job.total} classes done, {job.failed} failed")
    for error in job.errors:
        print(f"  failed: {error.get('name')} ({error.get('class_id')}): {error.get('error')}")
    return 0 if job.state == "done" and not job.failed else 1


def _follow(queue, job_id: str, settings, progress: bool):
    """Wait for the queued job, with a bar of classes done; say so when no worker serves the queue."""
    import time

    from gloss_gen.data.store import StoreError

    bar = None
    started = time.monotonic()
    warned = False

    def on_outage(exc) -> None:
        print(f"Redis unreachable, retrying for up to {QUEUE_OUTAGE_LIMIT_S:.0f}s ({exc}); "
              f"job {job_id} goes on on the workers", file=sys.stderr)

    try:
        for job in queue.watch_job(job_id, settings, ride_out_s=QUEUE_OUTAGE_LIMIT_S, on_outage=on_outage):
            if progress:
                if bar is None:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=job.total, desc=f"describe {job.class_set}", unit="class")
                bar.n = job.done
                bar.set_postfix(failed=job.failed, state=job.state, refresh=False)
                bar.refresh()
            if (not warned and not job.finished and time.monotonic() - started > NO_WORKER_WARNING_S
                    and queue.worker_serving(settings) is False):
                warned = True
                print(f"no worker is serving queue {settings.queue_name!r} yet; "
                      "start one with `vgloss worker` (same VGLOSS_REDIS_URL)", file=sys.stderr)
    except StoreError:
        raise UserError(f"Redis unreachable for {QUEUE_OUTAGE_LIMIT_S:.0f}s; gave up waiting for job {job_id}, "
                        "which goes on on the workers: re-run the same command to reattach to it") from None
    finally:
        if bar is not None:
            bar.close()
    return job


def run(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from gloss_gen.core.config import get_settings
    from gloss_gen.data.classsets import load_class_set
    from gloss_gen.describe.describe_job import run_describe_job

    if args.method == "import" and not args.import_file:
        raise UserError("--method import needs --import FILE")
    if args.import_file and args.method != "import":
        raise UserError(f"--import is only read by --method import, not --method {args.method}")
    if args.method != "fudd" and (args.pairs_from or args.max_pairs is not None):
        raise UserError(f"--pairs-from and --max-pairs are only read by --method fudd, not --method {args.method}")
    if args.method == "fudd" and args.queue:
        raise UserError("--queue does not run --method fudd (its job writes pairs, the queue's classes); "
                        "run it here, without --queue")
    if args.max_pairs is not None and args.max_pairs < 0:
        raise UserError("--max-pairs must be at least 0")
    settings = get_settings()
    options = _options(args, settings)
    class_set = load_class_set(args.class_set)
    if args.queue:
        return _run_queued(args, class_set, options, settings)

    stem = "vgloss-gloss" if args.method == "vgloss" and args.style == "gloss" else args.method
    out = Path(args.out) if args.out else Path(f"{class_set.name}.{stem}.jsonl")
    if out.exists() and not out.is_file():
        raise UserError(f"--out {out} is not a file")
    try:
        if args.method == "fudd":
            from gloss_gen.describe.pair_job import run_pair_job

            summary = asyncio.run(run_pair_job(class_set, options, out, pairs_from=args.pairs_from,
                                               max_pairs=args.max_pairs, progress=not args.no_progress))
        else:
            summary = asyncio.run(run_describe_job(class_set, options, out, progress=not args.no_progress))
    except KeyboardInterrupt:
        print(f"interrupted; finished {'pairs' if args.method == 'fudd' else 'classes'} are in {out}; "
              "re-run the same command to resume", file=sys.stderr)
        return 130
    if getattr(summary, "import_report", None) is not None:
        for line in summary.import_report.lines():
            print(line)
    for line in summary.lines():
        print(line)
    return summary.exit_code
