from __future__ import annotations

import argparse
import logging

from gloss_gen.commands.verb_support import UserError

HELP = "process describe tasks from the Redis queue (scale out: run several)"
DESCRIPTION = """\
Process the describe tasks that `vgloss describe ... --queue` puts on the Redis queue: one task
per class, then a final embed step that builds the classifier and makes it active in the store
(where every `vgloss serve` replica on that Redis picks it up). Run as many workers as you like, on as many hosts as reach the same Redis
(VGLOSS_REDIS_URL); each class is described once. A worker that dies mid-task loses nothing:
another one re-runs its tasks after VGLOSS_QUEUE_LEASE_S seconds. A Redis outage does not stop
it: it reconnects with back-off (up to 30 s between tries). SIGTERM/Ctrl-C hands running tasks
back to the queue at once.

The LLM client reads OPENAI_API_KEY and OPENAI_BASE_URL; the embed step loads the model the job
was queued with, on this worker's VGLOSS_DEVICE.

Examples:
  vgloss worker                          # VGLOSS_LLM_CONCURRENCY requests in flight
  vgloss worker --concurrency 16
  vgloss worker --burst                  # exit once the queue is empty
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int,
                        help="tasks (LLM requests) in flight in this worker (default: VGLOSS_LLM_CONCURRENCY)")
    parser.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    parser.add_argument("--queue", help="queue name (default: VGLOSS_QUEUE_NAME or vgloss:queue)")


def run(args: argparse.Namespace) -> int:
    from gloss_gen.core.config import get_settings
    from gloss_gen.queue import QueueError, run_worker

    if args.concurrency is not None and args.concurrency < 1:
        raise UserError("--concurrency must be at least 1")
    # A worker's INFO lines are its output: ready, each task started and finished.
    for name in ("arq", "gloss_gen.queue"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    settings = get_settings()
    if args.queue:
        settings = settings.model_copy(update={"queue_name": args.queue})
    try:
        run_worker(settings, concurrency=args.concurrency, burst=args.burst)
    except QueueError as exc:
        raise UserError(str(exc)) from None
    return 0
