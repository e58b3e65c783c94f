"""The server's text-encoder work: every classifier it builds (ad-hoc labels, a missing built-in
set, class-set jobs) embeds its prompts here, a chunk at a time, taking turns.

One build at a time uses the model. Between two chunks of ``chunk_prompts`` prompts a build hands
its turn to the next build waiting, first come first served, so builds round-robin: a request
for one label waits for at most one chunk of each build ahead of it, not for a 1000-label build to
end. Each build runs on a thread of its own and waits for its turn there; at most ``max_builds``
are admitted at once (more are refused with 503 ``text_queue_full``).

``close()`` (at shutdown, or as soon as SIGTERM arrives, before uvicorn waits for open requests)
stops every build at its next chunk with :class:`ShuttingDown`, so no build holds the exit and
the requests waiting for one are answered 503.

A build whose caller is cancelled (its last waiting client went away) gives back its admission at
once and stops at its next chunk, so abandoned requests cannot hold the builds' slots.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from app.services.service_errors import ShuttingDown, TextQueueFull

T = TypeVar("T")

CPU_CHUNK_PROMPTS = 32
"""Prompts a build embeds before it hands the model on, on the CPU: ViT-B-32 encodes about 14
prompts/s on 2 cores (no slower per prompt in batches of 32 than of 256), so a chunk is 1-2 s."""
CUDA_CHUNK_PROMPTS = 256
"""On a GPU a chunk of 256 takes milliseconds, and smaller batches would waste it."""
MAX_BUILDS = 16


class BuildAbandoned(Exception):
    """Raised on a text thread to stop a build nobody waits for any more (never reaches a client)."""


def chunk_prompts_for(device: str) -> int:
    return CUDA_CHUNK_PROMPTS if device == "cuda" else CPU_CHUNK_PROMPTS


class TextWork:
    def __init__(self, chunk_prompts: int = CPU_CHUNK_PROMPTS, max_builds: int = MAX_BUILDS) -> None:
        self.max_builds = max_builds
        self.chunk_prompts = chunk_prompts
        self._executor = ThreadPoolExecutor(max_workers=max_builds, thread_name_prefix="vgloss-text")
        self._turns = threading.Condition()
        self._waiting: deque[object] = deque()  # builds waiting for the model, in turn order
        self._holder: object | None = None  # the build using the model
        self._closing = False
        self._admitted = 0  # touched on the event loop only

    async def run(self, build: Callable[..., T], *args, **kwargs) -> T:
        """``build(*args, batch_size=, between_batches=, **kwargs)`` on a text thread, in turns:
        ``build`` hands both to the text encoder (as :func:`gloss_gen.classify.pipeline.build_and_store`
        does). Raises :class:`ShuttingDown` once :meth:`close` is called, :class:`TextQueueFull`
        when ``max_builds`` builds are already admitted."""
        if self._closing:
            raise ShuttingDown()
        if self._admitted >= self.max_builds:
            raise TextQueueFull(self.max_builds)
        call = functools.partial(build, *args, batch_size=self.chunk_prompts, **kwargs)
        abandoned = threading.Event()
        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._in_turns, call, abandoned)
        except asyncio.CancelledError:
            with self._turns:  # the thread stops at its next chunk (or leaves the queue now)
                abandoned.set()
                self._turns.notify_all()
            raise
        finally:
            self._admitted -= 1

    def close(self) -> None:
        """Stop every build at its next chunk and admit no more. Thread-safe."""
        with self._turns:
            self._closing = True
            self._turns.notify_all()

    def shutdown(self) -> None:
        """:meth:`close`, then wait for the text threads (each stops within a chunk)."""
        self.close()
        self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------ on the text threads

    def _in_turns(self, call: Callable[..., T], abandoned: threading.Event) -> T:
        ticket = object()
        self._take_turn(ticket, abandoned)
        try:
            return call(between_batches=lambda done, total: self._pass_turn(ticket, abandoned))
        finally:
            with self._turns:
                if self._holder is ticket:
                    self._holder = None
                    self._turns.notify_all()

    def _take_turn(self, ticket: object, abandoned: threading.Event) -> None:
        with self._turns:
            self._waiting.append(ticket)
            self._turns.wait_for(lambda: self._closing or abandoned.is_set()
                                 or (self._holder is None and self._waiting[0] is ticket))
            if self._closing or abandoned.is_set():
                self._waiting.remove(ticket)
                self._turns.notify_all()
                raise ShuttingDown() if self._closing else BuildAbandoned()
            self._waiting.popleft()
            self._holder = ticket

    def _pass_turn(self, ticket: object, abandoned: threading.Event) -> None:
        """Between two chunks: let the next build waiting have one chunk, then queue up again."""
        with self._turns:
            if self._closing:
                raise ShuttingDown()
            if abandoned.is_set():
                raise BuildAbandoned()
            if not self._waiting:
                return
            self._holder = None
            self._turns.notify_all()
        self._take_turn(ticket, abandoned)
