"""A process-wide budget of request-body bytes held at once, so concurrent uploads cannot exhaust memory.

Each request is charged for its body while it is being served: a declared ``Content-Length`` up
front, a chunked body as its chunks arrive. A request that does not fit is answered 503
``server_busy`` with ``Retry-After``; what it was charged is given back when it ends, however it
ends. One event loop per process charges and releases, so no lock is needed.
"""

from __future__ import annotations

from app.error_envelope import ApiError

BUSY_RETRY_AFTER_S = 2


def server_busy(capacity: int) -> ApiError:
    return ApiError(
        "server_busy",
        f"The server is receiving as many request bodies as it can hold ({capacity} bytes); retry shortly.",
        retry_after_s=BUSY_RETRY_AFTER_S,
    )


class BodyBudget:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0

    def try_charge(self, size: int) -> bool:
        if self.in_use + size > self.capacity:
            return False
        self.in_use += size
        return True

    def release(self, size: int) -> None:
        self.in_use -= size
