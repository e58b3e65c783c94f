"""One ASGI middleware for what every request needs: request id, body limit, metrics, access log.

Pure ASGI (not ``BaseHTTPMiddleware``) so the body streams through untouched and nothing is
buffered on the way in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.body_budget import BodyBudget, server_busy
from app.error_envelope import ApiError, error_body, error_headers, status_for
from app.observability import REQUEST_ID_HEADER, accept_request_id, request_id_var
from app.prometheus_metrics import Metrics

access_log = logging.getLogger("app.access")
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: debug level


DRAIN_MAX_BYTES = 128 * 1024 * 1024
"""A refused request's unread body is read (and dropped) up to this much before the answer is sent,
so the client, still sending, gets the answer instead of a reset connection."""
DRAIN_TIMEOUT_S = 10.0
BODY_IDLE_TIMEOUT_S = 30.0
"""A request body that sends nothing for this long is answered 408 (slow-drip connections)."""
BODY_TIMEOUT_S = 300.0
"""A request body must arrive completely within this (``VGLOSS_BODY_TIMEOUT_S``), else 408: a body
that drips a byte just inside the idle timeout would otherwise hold its connection for ever."""


RESERVATION_SHARE = 8
"""A declared body reserves at most 1/8 of the body budget before its bytes arrive; the rest is
charged as it arrives, so one slow connection declaring a huge length cannot hold the whole budget."""


CLIENT_CLOSED_REQUEST = 499
"""Recorded (metrics, access log) for a request whose client disconnected before the answer."""


def body_too_large(limit: int) -> ApiError:
    return ApiError("request_too_large", f"The request body is over the limit of {limit} bytes.")


def body_timeout(seconds: float) -> ApiError:
    return ApiError("request_timeout", f"The request body sent nothing for {seconds:.0f} seconds.")


def body_deadline_passed(seconds: float) -> ApiError:
    return ApiError("request_timeout", f"The request body did not arrive within {seconds:.0f} seconds.")


class _BodyState:
    """How much of one request's body the app has read, and whether all of it."""

    def __init__(self) -> None:
        self.received = 0
        self.complete = False
        self.charged = 0  # bytes of the body budget this request holds
        self.reserved = 0  # of which held ahead of the bytes (part of a declared length)
        self.abandoned = False  # timed out: the rest of the body is not waited for
        self.expects_continue = False  # the client sends its body only once the app asks for it
        self.asked = False  # the app has asked for the body
        self.responded = False  # the answer has started
        self.served: asyncio.Future | None = None  # the app serving the request
        self.watcher: asyncio.Future | None = None  # waits for the client to leave once the body is in
        self.disconnected = asyncio.Event()

    def unread(self) -> bool:
        """Part of the body is on its way and nobody has read it."""
        return not self.complete and (self.asked or not self.expects_continue)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, body_limit: Callable[[str, str], int],
                 body_idle_timeout_s: float | None = None, body_timeout_s: float | None = None,
                 body_budget: BodyBudget | None = None,
                 refuse_unauthenticated: Callable[[str], ApiError | None] | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.body_limit = body_limit  # (path, media type) -> bytes
        self.body_idle_timeout_s = body_idle_timeout_s
        self.body_timeout_s = body_timeout_s
        self.body_budget = body_budget
        self.refuse_unauthenticated = refuse_unauthenticated  # Authorization header -> refusal or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = accept_request_id(headers.get(REQUEST_ID_HEADER))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        body = _BodyState()
        # a client waiting for '100 Continue' sends no body unless the app reads it: nothing to drain
        body.expects_continue = headers.get("expect", "").lower() == "100-continue"

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                body.responded = True
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
                if status >= 400 and body.unread():
                    # refused mid-upload: take in the rest first, so the answer reaches the client
                    await self._drain(receive, body)
                if status >= 400 and (body.abandoned or body.unread()):
                    # the rest of the body would be read as the next request: end the connection
                    MutableHeaders(scope=message)["Connection"] = "close"
            await send(message)

        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        budget = self.body_budget
        limit = self.body_limit(scope["path"], media_type)
        if budget is not None:
            limit = min(limit, budget.capacity)  # a larger body could never be received
        try:
            declared = headers.get("content-length")
            declared_size = int(declared) if declared is not None and declared.isdigit() else None
            refusal = (self.refuse_unauthenticated(headers.get("authorization", ""))
                       if self.refuse_unauthenticated is not None and scope["path"].startswith("/v1/")
                       and (declared_size or "transfer-encoding" in headers) else None)
            if refusal is not None:
                # no key, no share of the body budget: refused before any of the body is taken in,
                # and the connection closed rather than drained
                body.complete = body.abandoned = True
                await self._send_error(send_with_id, refusal)
            elif declared_size is not None and declared_size > limit:
                # refused before the body is parsed (what is in flight is drained, then the answer sent)
                await self._send_error(send_with_id, body_too_large(limit))
            elif declared_size is not None and budget is not None and not budget.try_charge(
                    reservation := min(declared_size, budget.capacity // RESERVATION_SHARE)):
                await self._send_error(send_with_id, server_busy(budget.capacity))
            else:
                if declared_size is not None and budget is not None:
                    body.charged = body.reserved = reservation
                idle_timeout_s = self.body_idle_timeout_s or BODY_IDLE_TIMEOUT_S
                deadline = asyncio.get_running_loop().time() + (self.body_timeout_s or BODY_TIMEOUT_S)
                receive_body = self._limited(receive, limit, body, idle_timeout_s, deadline, budget)
                served = asyncio.ensure_future(self.app(scope, self._watched(receive, receive_body, body),
                                                        send_with_id))
                body.served = served
                try:
                    await served
                except ClientDisconnect:
                    # the client went away mid-request: nobody to answer, and not a server error
                    if status == 500:
                        status = CLIENT_CLOSED_REQUEST
                except asyncio.CancelledError:
                    if not body.disconnected.is_set():  # this request itself was cancelled
                        served.cancel()
                        raise
                    if status == 500:  # the client left before the answer: its work was stopped
                        status = CLIENT_CLOSED_REQUEST
                finally:
                    if body.watcher is not None:
                        body.watcher.cancel()
        finally:
            if budget is not None and body.charged:
                budget.release(body.charged)
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None)
            if route is None:  # plain Starlette routes (/docs, /openapi.json) do not record themselves
                route = scope["path"] if status < 400 else "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(route=route, method=method, status=str(status)).inc()
            self.metrics.latency.labels(route=route, method=method).observe(elapsed)
            access_log.log(
                logging.DEBUG if route in QUIET_ROUTES and status < 400 else logging.INFO,
                "%s %s %d %.1fms",
                method,
                scope["path"],
                status,
                elapsed * 1000,
                extra={"method": method, "path": scope["path"], "route": route, "status": status,
                       "duration_ms": round(elapsed * 1000, 2)},
            )
            request_id_var.reset(token)

    @staticmethod
    def _limited(receive: Receive, limit: int, body: _BodyState, idle_timeout_s: float, deadline: float,
                 budget: BodyBudget | None) -> Receive:
        """``receive`` for the app: 413 past ``limit``, 408 when idle or past ``deadline`` (loop time),
        503 when a chunk does not fit in ``budget`` beyond what the request reserved up front."""
        loop = asyncio.get_running_loop()
        total_timeout_s = deadline - loop.time()

        async def receive_within_limit() -> Message:
            body.asked = True
            if body.complete:
                return await receive()  # only http.disconnect is left
            left_s = deadline - loop.time()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, min(idle_timeout_s, left_s)))
            except asyncio.TimeoutError:
                body.complete = body.abandoned = True  # nothing to drain from a client that stopped sending
                if left_s <= idle_timeout_s:
                    raise body_deadline_passed(total_timeout_s) from None
                raise body_timeout(idle_timeout_s) from None
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                body.received += size
                body.complete = not message.get("more_body", False)
                if body.received > limit:
                    raise body_too_large(limit)  # raised inside the route: the handlers answer 413
                extra = max(body.received, body.reserved) - body.charged
                if budget is not None and extra > 0:
                    if not budget.try_charge(extra):
                        raise server_busy(budget.capacity)
                    body.charged += extra
            elif message["type"] == "http.disconnect":
                body.complete = True
            return message

        return receive_within_limit

    @staticmethod
    def _watched(receive: Receive, receive_body: Receive, body: _BodyState) -> Receive:
        """``receive_body`` that, once the whole body is in, watches for the client leaving: the app
        is cancelled if it leaves before the answer (so work nobody waits for stops), and is told
        ``http.disconnect`` when it asks."""

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            body.disconnected.set()
            if not body.responded and body.served is not None and not body.served.done():
                body.served.cancel()

        async def receive_or_disconnect() -> Message:
            if body.watcher is not None:
                await body.disconnected.wait()
                return {"type": "http.disconnect"}
            message = await receive_body()
            if body.complete and message["type"] == "http.request" and not body.abandoned:
                body.watcher = asyncio.ensure_future(watch())
            elif message["type"] == "http.disconnect":
                body.disconnected.set()
            return message

        return receive_or_disconnect

    @staticmethod
    async def _drain(receive: Receive, body: _BodyState) -> None:
        """Read and drop what is left of the body, up to DRAIN_MAX_BYTES and DRAIN_TIMEOUT_S."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        drained = 0
        while not body.complete and drained <= DRAIN_MAX_BYTES:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return
            if message["type"] != "http.request":
                body.complete = True
                return
            drained += len(message.get("body", b""))
            body.complete = not message.get("more_body", False)

    @staticmethod
    async def _send_error(send: Send, error: ApiError) -> None:
        body = json.dumps(error_body(error.code, error.message)).encode()
        status = status_for(error)
        extra = [(name.lower().encode(), value.encode()) for name, value in error_headers(error, status).items()]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
