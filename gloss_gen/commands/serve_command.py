from __future__ import annotations

import argparse
import os
from pathlib import Path

from gloss_gen.commands.verb_support import UserError, add_model_arguments, warn_if_random_weights

HELP = "run the REST server"
DESCRIPTION = """\
Serve the HTTP API (see DESIGN.md, "HTTP API (v1)") with uvicorn. Start-up loads the model and
the default class set's classifier in the background: /healthz answers at once, /readyz turns 200
when classification can start. A missing default classifier is built with VGLOSS_DEFAULT_METHOD
(wordnet: no LLM needed) and written to the store. Settings come from VGLOSS_* variables or .env.
A taken port, an unknown VGLOSS_DEFAULT_CLASS_SET or missing WordNet is reported in one line
(exit 2) before the model loads. The web page is at http://HOST:PORT/, the API docs at /docs.

Examples:
  vgloss serve
  vgloss serve --host 0.0.0.0 --port 8000 --workers 2
  VGLOSS_PRETRAINED=none vgloss serve --model vgloss-tiny     # offline smoke test
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    parser.add_argument(
        "--workers", type=int, default=1,
        help="server processes, each with its own model and batcher (default 1)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--plain-logs", action="store_true", help="human-readable logs instead of JSON lines")
    parser.add_argument(
        "--graceful-timeout", type=float, default=30.0,
        help="seconds to finish in-flight requests after SIGTERM (default 30)",
    )
    add_model_arguments(parser)


def preflight(settings, host: str, port: int) -> None:
    """Start-up problems a user can fix, found before uvicorn starts and the model loads."""
    import socket

    from gloss_gen.data.classsets import BUILTIN_CLASS_SETS, CUSTOM_SUFFIXES, load_class_set
    from gloss_gen.data.store import StoreError, open_store
    from gloss_gen.data.wordnet import find_wordnet_corpus

    if port:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                sock.bind(address)
            except OSError as exc:
                raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    name = settings.default_class_set
    if name not in BUILTIN_CLASS_SETS:
        if Path(name).suffix.lower() in CUSTOM_SUFFIXES:
            load_class_set(name)  # "class set file ... does not exist" or its parse error
        else:
            try:
                known = open_store(settings).get_class_set(name) is not None
            except StoreError:
                known = True  # the store is down: the server waits for it, then reports
            if not known:
                raise UserError(
                    f"VGLOSS_DEFAULT_CLASS_SET={name!r} is not a built-in class set "
                    f"({', '.join(BUILTIN_CLASS_SETS)}), a class-set file or a set in the store"
                )
    find_wordnet_corpus(settings.nltk_data, settings.data_dir)  # WordNetMissingError: one line, exit 2
    from gloss_gen.model.weights import require_weights

    require_weights(settings.model, settings.pretrained, settings.cache_dir)  # no weights: one line, exit 2


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, not {args.port}")
    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    # every worker process builds its settings from the environment, so overrides travel there
    for option, variable in (("model", "VGLOSS_MODEL"), ("pretrained", "VGLOSS_PRETRAINED"), ("device", "VGLOSS_DEVICE")):
        value = getattr(args, option, None)
        if value is not None:
            os.environ[variable] = value
    from gloss_gen.core.config import get_settings

    get_settings.cache_clear()
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic's ValidationError names the bad variable
        raise UserError(f"invalid settings: {exc}") from None
    preflight(settings, args.host, args.port)
    warn_if_random_weights(args)

    import uvicorn

    log_config = _uvicorn_log_config(args.log_level, json_logs=not args.plain_logs)
    if not args.verbose and args.log_level != "debug":  # open_clip's root-logger INFO lines, matplotlib's cache line
        log_config.setdefault("filters", {})["quiet_libraries"] = {"()": "gloss_gen.commands.verb_support.QuietThirdPartyFilter"}
        log_config["handlers"]["default"].setdefault("filters", []).append("quiet_libraries")
        log_config.setdefault("loggers", {})["matplotlib"] = {"level": "ERROR"}
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=log_config,
        log_level=args.log_level,
        access_log=False,  # app.access logs every request with its request id
        timeout_graceful_shutdown=args.graceful_timeout,
        proxy_headers=True,
        http="app.http_protocol:AUTO",  # uvicorn's auto protocol with a header timeout (VGLOSS_HEADER_TIMEOUT_S)
    )
    return 0


def _uvicorn_log_config(level: str = "info", json_logs: bool = True) -> dict:
    """A ``logging.dictConfig`` for uvicorn, applied in every worker process.

    The server is named by import strings only (the app factory, its formatter and request-id
    filter in ``app.observability``): uvicorn imports them in each worker, the library never does.
    """
    formatter = (
        {"()": "app.observability.JsonFormatter"}
        if json_logs
        else {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}
    )
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "app.observability.RequestIdFilter"}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"level": level},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"level": "WARNING"},  # app.access logs each request instead
            "httpx": {"level": "WARNING"},
        },
    }
