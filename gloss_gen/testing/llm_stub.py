"""A local OpenAI-protocol chat-completions server for offline tests and benchmarks.

It speaks real HTTP (``POST /v1/chat/completions``, ``GET /v1/models``) so the official ``openai``
client talks to it unchanged. Answers are deterministic: in ``normal`` mode a JSON array of short,
class-specific, grammatical descriptions made from the ``Class:``, ``Definition:`` and ``Kind of:``
lines of the prompt (the format :func:`gloss_gen.describe.llm.build_messages` writes), in the style it asks
for: phrases, or visual glosses (:mod:`gloss_gen.testing.stub_phrases`). Other modes exercise the
failure paths:

========== ==============================================================================
normal     ``["is a member of the genus Canis", "has a matte tan frame", ...]``, ``finish_reason: stop``
429        HTTP 429 with ``Retry-After`` (and ``retry-after-ms`` when configured)
500        HTTP 500
timeout    sleeps ``slow_s`` (longer than the client's timeout), then answers normally
malformed  prose that is not JSON at all
truncated  a JSON array cut in half, ``finish_reason: length``
chatty     prose, a numbered list and a fenced JSON block around the answer
empty      an empty message
========== ==============================================================================

A mode applies to the whole server, or per attempt: ``schedule=["429", "500"]`` answers every
class's first attempt with 429, its second with 500 and later ones with ``mode``;
``class_modes={"cat": "500"}`` (or a list, a schedule for that class alone) overrides one class.
A FuDD pair prompt (``First class:`` / ``Second class:`` lines,
:func:`gloss_gen.describe.llm.build_pair_messages`) gets a JSON array of ``{"attribute", "first",
"second"}`` contrasts (:mod:`gloss_gen.testing.stub_pairs`); its "class" is ``"first / second"``
(``class_modes={"cat / dog": "500"}``).

In-process::

    with LLMStub(latency_ms=50, schedule=["429"]) as stub:
        client = AsyncOpenAI(base_url=stub.url, api_key="x", max_retries=0)
        ...
        stub.requests, stub.max_in_flight

As a process (prints ``LLM stub listening on URL`` once ready)::

    python -m gloss_gen.testing.llm_stub --port 0 --latency-ms 200 --mode normal --log requests.jsonl

``--log`` appends one JSON line per request as it arrives (``class``, ``attempt``, ``mode``,
``time``), so another process can assert which classes were requested. ``GET /_stub/stats``
returns ``{requests, in_flight, max_in_flight}``; ``POST /_stub/reset`` clears them.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

try:
    from .stub_pairs import contrast_lines, pair_names, stub_contrasts
    from .stub_phrases import stub_descriptions
except ImportError:  # started by file path: the sibling modules (standard library only, like this one)
    from stub_pairs import contrast_lines, pair_names, stub_contrasts  # type: ignore[no-redef]
    from stub_phrases import stub_descriptions  # type: ignore[no-redef]

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Self

MODES = ("normal", "429", "500", "timeout", "malformed", "truncated", "chatty", "empty")
DEFAULT_MODEL = "stub-model"
# For a stub in another process: GET the counters, POST to reset them.
STATS_PATH = "/_stub/stats"
RESET_PATH = "/_stub/reset"

_CLASS_RE = re.compile(r"^Class:\s*(.+?)\s*$", re.MULTILINE)
_DEFINITION_RE = re.compile(r"^Definition:\s*(.+?)\s*$", re.MULTILINE)
_KIND_OF_RE = re.compile(r"^Kind of:\s*(.+?)\s*$", re.MULTILINE)
_COUNT_RE = re.compile(r"JSON array of (\d+)")
_GLOSS_STYLE_RE = re.compile(r"\bvisual gloss(?:es)?\b")  # the gloss style's instruction


@dataclass
class StubRequest:
    """One chat-completions request as the stub saw it."""

    class_name: str | None
    attempt: int  # 1-based count of requests for this class so far
    mode: str
    model: str
    messages: list[dict]
    started: float  # time.time(), comparable across processes
    status: int = 0
    finished: float | None = None

    @property
    def prompt(self) -> str:
        return "\n".join(_content_text(m.get("content")) for m in self.messages)


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the default backlog of 5 stalls bursts of concurrent connects


class LLMStub:
    """A threaded OpenAI chat-completions stub; see the module docstring."""

    def __init__(
        self,
        *,
        mode: str = "normal",
        schedule: Sequence[str] | None = None,
        class_modes: dict[str, str | Sequence[str]] | None = None,
        latency_ms: float = 0.0,
        retry_after: str | None = "1",
        retry_after_ms: float | None = None,
        slow_s: float = 30.0,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: str | Path | None = None,
        model_name: str = DEFAULT_MODEL,
    ):
        self.latency_s = latency_ms / 1000.0
        self.retry_after = retry_after
        self.retry_after_ms = retry_after_ms
        self.slow_s = slow_s
        self.model_name = model_name
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._requests: list[StubRequest] = []
        self._attempts: dict[str, int] = {}
        self._in_flight = 0
        self._max_in_flight = 0
        self._log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
        self.set_mode(mode, schedule=schedule, class_modes=class_modes)
        self._server = _Server((host, port), _make_handler(self))
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ configuration

    def set_mode(
        self,
        mode: str = "normal",
        *,
        schedule: Sequence[str] | None = None,
        class_modes: dict[str, str | Sequence[str]] | None = None,
    ) -> None:
        for m in [mode, *(schedule or [])] + [
            x for v in (class_modes or {}).values() for x in ([v] if isinstance(v, str) else v)
        ]:
            if m not in MODES:
                raise ValueError(f"unknown stub mode {m!r}; choose from {', '.join(MODES)}")
        with self._lock:
            self.mode = mode
            self.schedule = list(schedule or [])
            self.class_modes = {k.lower(): v for k, v in (class_modes or {}).items()}

    def reset(self) -> None:
        """Forget logged requests, attempt counts and the in-flight maximum."""
        with self._lock:
            self._requests.clear()
            self._attempts.clear()
            self._max_in_flight = 0

    def _mode_for(self, class_name: str | None, attempt: int) -> str:
        plan: str | Sequence[str] | None = self.class_modes.get((class_name or "").lower())
        if plan is None and self.schedule:
            plan = self.schedule
        if isinstance(plan, str):
            return plan
        if plan and attempt <= len(plan):
            return plan[attempt - 1]
        return self.mode

    # ------------------------------------------------------------------ introspection

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The ``base_url`` for an OpenAI client."""
        host = self._server.server_address[0]
        return f"http://{host}:{self.port}/v1"

    @property
    def requests(self) -> list[StubRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, class_name: str) -> list[StubRequest]:
        return [r for r in self.requests if (r.class_name or "").lower() == class_name.lower()]

    def stats(self) -> dict:
        with self._lock:
            return {"requests": len(self._requests), "in_flight": self._in_flight,
                    "max_in_flight": self._max_in_flight}

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LLMStub:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                name="llm-stub", daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def close(self) -> None:
        self._closing.set()  # wakes handlers sleeping in latency / timeout mode
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ request handling

    def _begin(self, body: dict) -> StubRequest:
        messages = body.get("messages") or []
        text = "\n".join(_content_text(m.get("content")) for m in messages if isinstance(m, dict))
        match = _CLASS_RE.search(text)
        pair = pair_names(text)
        class_name = match.group(1).strip().strip('"') if match else (" / ".join(pair) if pair else None)
        with self._lock:
            key = (class_name or "").lower()
            attempt = self._attempts.get(key, 0) + 1
            self._attempts[key] = attempt
            record = StubRequest(
                class_name=class_name,
                attempt=attempt,
                mode=self._mode_for(class_name, attempt),
                model=str(body.get("model", "")),
                messages=messages,
                started=time.time(),
            )
            self._requests.append(record)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            if self._log is not None:
                self._log.write(json.dumps({
                    "class": class_name, "attempt": attempt, "mode": record.mode,
                    "time": record.started,
                }) + "\n")
                self._log.flush()
        return record

    def _end(self, record: StubRequest, status: int) -> None:
        with self._lock:
            self._in_flight -= 1
            record.status = status
            record.finished = time.time()

    def _answer(self, record: StubRequest) -> tuple[int, dict, dict[str, str]]:
        """(status, JSON body, extra headers) for a chat-completions request."""
        if self.latency_s:
            self._closing.wait(self.latency_s)
        mode = record.mode
        if mode == "429":
            headers = {}
            if self.retry_after is not None:
                headers["Retry-After"] = str(self.retry_after)
            if self.retry_after_ms is not None:
                headers["retry-after-ms"] = str(self.retry_after_ms)
            return 429, _error("Rate limit reached for requests", "rate_limit_exceeded"), headers
        if mode == "500":
            return 500, _error("The server had an error while processing your request", "server_error"), {}
        if mode == "timeout":
            self._closing.wait(self.slow_s)
        text = record.prompt
        definition = _DEFINITION_RE.search(text)
        kind_of = _KIND_OF_RE.search(text)
        count = _COUNT_RE.search(text)
        name = record.class_name or "object"
        pair = pair_names(text)
        descriptions = stub_contrasts(*pair, int(count.group(1)) if count else 4) if pair else stub_descriptions(
            name, definition.group(1) if definition else None, int(count.group(1)) if count else 5,
            hypernyms=kind_of.group(1).split(" > ") if kind_of else (),
            style="gloss" if _GLOSS_STYLE_RE.search(text) else "phrases",
        )
        finish = "stop"
        if mode == "malformed":
            content = f"The {name} is a fascinating subject and there is a lot one could say about it."
        elif mode == "truncated":
            full = json.dumps(descriptions)
            content = full[: max(1, len(full) // 2)]
            finish = "length"
        elif mode == "chatty":
            numbered = (contrast_lines(descriptions) if pair
                        else "\n".join(f"{i}. {d}" for i, d in enumerate(descriptions, 1)))
            content = (
                f"Sure! Here are {len(descriptions)} visual descriptions of a {name}:\n\n{numbered}\n\n"
                f"As JSON:\n```json\n{json.dumps(descriptions, indent=2)}\n```\n"
                "Let me know if you would like more."
            )
        elif mode == "empty":
            content = ""
        else:
            content = json.dumps(descriptions)
        return 200, _completion(record.model or self.model_name, content, finish), {}


def _error(message: str, code: str) -> dict:
    return {"error": {"message": message, "type": code, "param": None, "code": code}}


def _completion(model: str, content: str, finish_reason: str) -> dict:
    return {
        "id": f"chatcmpl-stub-{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "logprobs": None,
            "finish_reason": finish_reason,
        }],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def _make_handler(stub: LLMStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do
        # Without TCP_NODELAY, Nagle's algorithm and the client's delayed ACK add ~40 ms to
        # every keep-alive response.
        disable_nagle_algorithm = True

        def log_message(self, format, *args):
            pass

        def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self._headers_buffer.append(b"\r\n")
                self._headers_buffer.append(payload)  # headers and body in one send
                self.flush_headers()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout); nothing to tell it

        def do_GET(self):
            path = self.path.rstrip("/")
            if path in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [
                    {"id": stub.model_name, "object": "model", "created": 0, "owned_by": "vgloss"}
                ]})
            elif path == STATS_PATH:
                self._send(200, stub.stats())
            else:
                self._send(404, _error(f"no route {self.path}", "not_found"))

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path.rstrip("/") == RESET_PATH:
                stub.reset()
                self._send(200, stub.stats())
                return
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._send(404, _error(f"no route {self.path}", "not_found"))
                return
            try:
                body = json.loads(raw or b"null")
            except ValueError as exc:
                self._send(400, _error(f"invalid request body: {exc}", "invalid_request_error"))
                return
            if not isinstance(body, dict):
                self._send(400, _error("the body must be a JSON object", "invalid_request_error"))
                return
            record = stub._begin(body)
            try:
                status, answer, headers = stub._answer(record)
            except BaseException:
                stub._end(record, 0)
                raise
            # Counted as finished before the bytes go out: a client that has its answer never sees
            # its own request still in flight.
            stub._end(record, status)
            self._send(status, answer, headers)

    return Handler


def _parse_class_mode(text: str) -> tuple[str, list[str]]:
    name, sep, modes = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=MODE[,MODE...], got {text!r}")
    return name, modes.split(",")


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gloss_gen.testing.llm_stub",
        description="A local OpenAI-protocol chat-completions stub for offline tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every answer")
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--schedule", default="", help="modes for each class's 1st, 2nd... attempt, "
                        "comma-separated; later attempts use --mode")
    parser.add_argument("--class-mode", action="append", default=[], type=_parse_class_mode,
                        metavar="NAME=MODE[,MODE...]", help="a mode or schedule for one class")
    parser.add_argument("--retry-after", default="1", help="Retry-After header value for 429s")
    parser.add_argument("--slow-s", type=float, default=30.0, help="sleep of the timeout mode")
    parser.add_argument("--log", type=Path, help="append one JSON line per request here")
    args = parser.parse_args(argv)
    schedule = [m for m in args.schedule.split(",") if m]
    try:
        stub = LLMStub(
            mode=args.mode, schedule=schedule, class_modes=dict(args.class_mode),
            latency_ms=args.latency_ms, retry_after=args.retry_after, slow_s=args.slow_s,
            host=args.host, port=args.port, log_path=args.log,
        )
    except ValueError as exc:
        parser.error(str(exc))
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    print(f"LLM stub listening on {stub.url}", flush=True)
    try:
        stub.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
