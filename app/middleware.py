"""One ASGI middleware for what every request needs: request id, body limit, metrics, access log.

Pure ASGI (not ``BaseHTTPMiddleware``) so the body streams through untouched and nothing is
buffered on the way in.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError, error_body, status_for
from app.metrics import Metrics
from app.observability import REQUEST_ID_HEADER, accept_request_id, request_id_var

access_log = logging.getLogger("app.access")
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: debug level


def body_too_large(limit: int) -> ApiError:
    return ApiError("request_too_large", f"The request body is over the limit of {limit} bytes.")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, body_limit: Callable[[str], int]) -> None:
        self.app = app
        self.metrics = metrics
        self.body_limit = body_limit  # media type -> bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = accept_request_id(headers.get(REQUEST_ID_HEADER))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        limit = self.body_limit(media_type)
        try:
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                # refused before a byte of the body is read
                await self._send_error(send_with_id, body_too_large(limit))
            else:
                await self.app(scope, self._limited(receive, limit), send_with_id)
        finally:
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
    def _limited(receive: Receive, limit: int) -> Receive:
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise body_too_large(limit)  # raised inside the route: the handlers answer 413
            return message

        return receive_within_limit

    @staticmethod
    async def _send_error(send: Send, error: ApiError) -> None:
        body = json.dumps(error_body(error.code, error.message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status_for(error),
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
