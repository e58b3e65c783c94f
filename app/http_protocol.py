"""uvicorn's HTTP protocols with a header timeout: a request head must arrive within a deadline.

uvicorn times out idle keep-alive connections but not a request head that arrives slowly: its
keep-alive timer stops at the first byte, so a client that sends one header byte every few seconds
(or opens a connection and sends nothing) holds it forever (red-team issue #9, item 8). Here a
timer starts whenever the connection waits for a request head; when it fires, a client that sent
part of a head gets a 408 ``request_timeout`` and the connection is closed, one that sent nothing
is just closed. Request bodies have their own timeouts in :mod:`app.middleware`.

``vgloss serve`` names these classes by import string (uvicorn's ``http=``), so every worker
process builds its own. The timeout is ``VGLOSS_HEADER_TIMEOUT_S`` unless a subclass made by
:func:`with_header_timeout` sets ``header_timeout_s``.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.h11_impl import H11Protocol

from app.error_envelope import error_body
from gloss_gen.core.config import get_settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional for uvicorn; uvicorn's "auto" then means h11
    HttpToolsProtocol = None


def _timeout_answer() -> bytes:
    body = json.dumps(error_body("request_timeout", "The request head did not arrive in time.")).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


TIMEOUT_ANSWER = _timeout_answer()


class HeaderTimeout:
    """Mixed into a uvicorn HTTP protocol: both keep the request being served in ``self.cycle``."""

    header_timeout_s: float | None = None
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: object

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_head():
            self._arm_head_timer()
            self._head_bytes += len(data)
        super().data_received(data)  # type: ignore[misc]
        if not self._waiting_for_head():  # the head is complete: the request is being served
            self._cancel_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        # idle between requests is uvicorn's keep-alive timeout; the next head's bytes re-arm ours
        self._head_bytes = 0

    def _waiting_for_head(self) -> bool:
        cycle = self.cycle
        return cycle is None or getattr(cycle, "response_complete", False)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._timeout_s(), self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if getattr(self, "_head_timer", None) is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._waiting_for_head():
            return
        if self._head_bytes:
            self.transport.write(TIMEOUT_ANSWER)
        self.transport.close()

    def _timeout_s(self) -> float:
        if self.header_timeout_s is not None:
            return self.header_timeout_s

        return get_settings().header_timeout_s


class TimedH11Protocol(HeaderTimeout, H11Protocol):
    pass


if HttpToolsProtocol is not None:

    class TimedHttpToolsProtocol(HeaderTimeout, HttpToolsProtocol):
        pass

    AUTO: type = TimedHttpToolsProtocol
else:
    AUTO = TimedH11Protocol
"""The protocol uvicorn's ``auto`` would pick (httptools when installed), with the header timeout."""


def import_string() -> str:
    """``AUTO`` as the import string ``uvicorn.run(http=...)`` takes (resolved again in each worker)."""
    return f"{__name__}:{AUTO.__name__}"


def with_header_timeout(seconds: float, base: type = AUTO) -> type:
    """``base`` with a fixed header timeout instead of the setting (tests, embedded servers)."""
    return type(base.__name__, (base,), {"header_timeout_s": seconds})
