from __future__ import annotations

import argparse
import os

from ._common import add_model_arguments

HELP = "run the REST server"
DESCRIPTION = """\
Serve the HTTP API (see DESIGN.md, "HTTP API (v1)") with uvicorn. Start-up loads the model and
the default class set's classifier in the background: /healthz answers at once, /readyz turns 200
when classification can start. A missing default classifier is built with VGLOSS_DEFAULT_METHOD
(wordnet: no LLM needed) and written to the store. Settings come from VGLOSS_* variables or .env.

examples:
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


def run(args: argparse.Namespace) -> int:
    from ..cli import UserError

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, not {args.port}")
    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    # every worker process builds its settings from the environment, so overrides travel there
    for option, variable in (("model", "VGLOSS_MODEL"), ("pretrained", "VGLOSS_PRETRAINED"), ("device", "VGLOSS_DEVICE")):
        value = getattr(args, option, None)
        if value is not None:
            os.environ[variable] = value
    from ..config import get_settings

    get_settings.cache_clear()
    try:
        get_settings()
    except Exception as exc:  # pydantic's ValidationError names the bad variable
        raise UserError(f"invalid settings: {exc}") from None

    import uvicorn

    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=_uvicorn_log_config(args.log_level, json_logs=not args.plain_logs),
        log_level=args.log_level,
        access_log=False,  # app.access logs every request with its request id
        timeout_graceful_shutdown=args.graceful_timeout,
        proxy_headers=True,
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
