"""The ``vgloss`` command line: one console script, one module per verb.

Each verb lives in ``gloss_gen/commands/<verb>.py`` and defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Modules import heavy libraries (torch,
open_clip) inside ``run`` so ``vgloss --help`` stays fast. Any :class:`gloss_gen.errors.VglossError`
(a bad input, an unreachable store, a corrupt stored entry...) is printed as one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import InputError, VglossError

VERBS = ("describe", "embed", "serve", "classify", "eval", "export", "worker")


class UserError(InputError):
    """A problem with the command line itself: printed as one line, exit status 2."""

    code = "usage_error"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vgloss",
        description="Zero-shot image classification with V-GLOSS descriptions and CLIP. "
        "Settings come from VGLOSS_* environment variables or a .env file.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb in VERBS:
        try:
            module = importlib.import_module(f"gloss_gen.commands.{verb}")
        except ModuleNotFoundError as exc:
            if exc.name != f"gloss_gen.commands.{verb}":
                raise
            continue  # a verb whose module is not part of this build
        p = sub.add_parser(
            verb,
            help=module.HELP.replace("%", "%%"),  # argparse %-formats help strings
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpx2", "httpcore", "openai", "open_clip", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not args.verbose else logging.DEBUG)
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (VglossError, FileNotFoundError) as exc:
        message = getattr(exc, "message", None) or (exc.args[0] if exc.args else str(exc))
        print(f"vgloss {args.verb}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run through the imported module so `python -m gloss_gen.cli` and the verbs share one
    # UserError class (as __main__ this file would define a second one).
    from gloss_gen.cli import main as _main

    sys.exit(_main())
