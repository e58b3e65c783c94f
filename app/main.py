"""The FastAPI application: ``create_app(settings)`` for tests and ``uvicorn --factory``, ``app`` for
``uvicorn app.main:app``. Routes live in :mod:`app.api.routes`, the work in :mod:`app.services`."""

from __future__ import annotations

import asyncio
import math
import re
import signal
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api.deps import api_key_refusal
from app.api.routes import class_sets, classify, health, jobs, web
from app.body_budget import BodyBudget
from app.error_envelope import install_exception_handlers
from app.middleware import RequestContextMiddleware
from app.services.runtime import ServerRuntime
from gloss_gen.core.config import Settings, get_settings
from gloss_gen.data.store import Store

FORM_OVERHEAD_BYTES = 1024 * 1024  # boundaries, part headers and the text fields of a form
SMALL_BODY_BYTES = 32 * 1024 * 1024
"""The body limit of every route but classify and examples: a class-set creation of 10,000 classes
(the most one may have) of 300-character names fits, a stray upload is refused as it arrives."""
IMAGE_BODY_PATHS = re.compile(r"^(/v1)?/classify$|^/v1/class-sets/[^/]+/examples$")
"""The routes whose bodies carry images; every other route takes at most SMALL_BODY_BYTES."""


def body_limits(settings: Settings) -> Callable[[str, str], int]:
    """The largest request body by path and media type: for the routes that take images, every
    allowed image at the byte limit, plus room for base64 (4/3) in JSON and for the form around the
    files in multipart; SMALL_BODY_BYTES for the others (JSON fields only)."""
    images = settings.max_images_per_request * settings.max_image_bytes

    def limit(path: str, media_type: str) -> int:
        if not IMAGE_BODY_PATHS.match(path):
            return SMALL_BODY_BYTES
        if media_type == "application/json" or media_type.endswith("+json"):
            return 4 * math.ceil(images / 3) + FORM_OVERHEAD_BYTES
        return images + FORM_OVERHEAD_BYTES

    return limit


def _on_termination_signal(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` on the event loop as soon as SIGTERM or SIGINT arrives, before the handler
    uvicorn installed (which it still calls): uvicorn waits for open requests before the lifespan
    shutdown, and a request waiting for a long build would hold it there. Returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # an app served from a thread (tests): signals reach only the main thread
    loop = asyncio.get_running_loop()
    chained: dict[int, Callable] = {}

    def handler(signum, frame) -> None:
        loop.call_soon_threadsafe(callback)
        chained[signum](signum, frame)

    for signum in (signal.SIGTERM, signal.SIGINT):
        current = signal.getsignal(signum)
        if callable(current):  # uvicorn's; a default or ignored signal is left alone
            chained[signum] = current
            signal.signal(signum, handler)

    def restore() -> None:
        for signum, previous in chained.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, previous)

    return restore


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    """A server for ``settings`` (default: the process's ``VGLOSS_*`` settings).

    ``store`` replaces the one the settings name (tests use a private Redis namespace).
    """
    settings = settings or get_settings()
    runtime = ServerRuntime(settings, store=store)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await runtime.start()
        restore_signals = _on_termination_signal(runtime.begin_shutdown)
        try:
            yield
        finally:
            restore_signals()
            await runtime.stop()

    app = FastAPI(
        title="vgloss",
        version="1",
        summary="Zero-shot image classification with V-GLOSS descriptions and CLIP.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.body_budget = BodyBudget(
        settings.max_body_bytes_in_flight or max(body_limits(settings)("/v1/classify", t) for t in ("application/json", ""))
    )
    install_exception_handlers(app)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=runtime.metrics,
        body_limit=body_limits(settings),
        body_timeout_s=settings.body_timeout_s,
        body_budget=app.state.body_budget,
        refuse_unauthenticated=lambda authorization: api_key_refusal(authorization, settings),
    )
    for module in (health, classify, class_sets, jobs, web):
        app.include_router(module.router)
    return app


def __getattr__(name: str):
    # ``app`` is built on first access, so importing this module has no side effects
    if name == "app":
        value = create_app()
        globals()["app"] = value
        return value
    raise AttributeError(name)
