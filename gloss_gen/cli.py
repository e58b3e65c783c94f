"""The ``vgloss`` command line: one console script, one module per verb.

Each verb lives in ``gloss_gen/commands/<verb>.py`` and defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Modules import heavy libraries (torch,
open_clip) inside ``run`` so ``vgloss --help`` stays fast. Any :class:`gloss_gen.core.errors.VglossError`
(a bad input, an unreachable store, a corrupt stored entry...) is printed as one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from gloss_gen.commands.verb_support import quiet_libraries, warn_if_random_weights
from gloss_gen.core.errors import VglossError

VERBS = ("describe", "embed", "serve", "classify", "label", "eval", "export", "worker", "adapt", "fit", "probe")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vgloss")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vgloss",
        description="Zero-shot image classification with V-GLOSS descriptions and CLIP. "
        "Settings come from VGLOSS_* environment variables or a .env file.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages, library logs included")
    parser.add_argument("--version", action="version", version=f"vgloss {_version()}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb in VERBS:
        try:
            module = importlib.import_module(f"gloss_gen.commands.{verb}_command")
        except ModuleNotFoundError as exc:
            if exc.name != f"gloss_gen.commands.{verb}_command":
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
    quiet_libraries(args.verbose, own_info=args.verb in ("serve", "worker", "probe"))
    try:
        code = int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (VglossError, FileNotFoundError) as exc:
        message = getattr(exc, "message", None) or (exc.args[0] if exc.args else str(exc))
        print(f"vgloss {args.verb}: error: {message}", file=sys.stderr)
        return 2
    if args.verb != "serve":  # serve warns as it starts; other verbs under the scores they printed
        warn_if_random_weights(args)
    return code


if __name__ == "__main__":
    # Run through the imported module so `python -m gloss_gen.cli` and the verbs share one
    # UserError class (as __main__ this file would define a second one).
    from gloss_gen.cli import main as _main

    sys.exit(_main())
