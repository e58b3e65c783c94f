"""Errors the services raise for the HTTP layer to turn into the error envelope.

Each carries its snake_case ``code``, the HTTP ``status`` it stands for and a one-sentence,
client-safe ``message`` (the same shape as :class:`app.imaging.ImageError`), so the services stay
free of any web framework while the mapping stays in one place.
"""

from __future__ import annotations


class ServiceError(Exception):
    def __init__(
        self, code: str, status: int, message: str, *, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


class NotReady(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__("not_ready", 503, f"The server is not ready: {detail}.", retry_after_s=5)


class ShuttingDown(ServiceError):
    def __init__(self) -> None:
        super().__init__("shutting_down", 503, "The server is shutting down.", retry_after_s=1)


class QueueFull(ServiceError):
    def __init__(self, pending: int, limit: int, retry_after_s: int) -> None:
        super().__init__(
            "queue_full",
            503,
            f"{pending} images are already waiting for the model (limit {limit}); retry shortly.",
            retry_after_s=retry_after_s,
        )


class StoreUnavailable(ServiceError):
    def __init__(self, reason: str) -> None:
        super().__init__(
            "store_unavailable",
            503,
            f"The store is unavailable, so class sets not already in memory cannot be loaded "
            f"({reason}); loaded class sets keep serving.",
            retry_after_s=5,
        )


class ClassSetNotFound(ServiceError):
    def __init__(self, name: str) -> None:
        super().__init__("class_set_not_found", 404, f"There is no class set named {name!r}.")


class ClassSetNotReady(ServiceError):
    def __init__(self, name: str, model_id: str) -> None:
        super().__init__(
            "class_set_not_ready",
            409,
            f"Class set {name!r} has no classifier for {model_id} yet: its job is still running, or failed.",
        )


class JobNotFound(ServiceError):
    def __init__(self, job_id: str) -> None:
        super().__init__("job_not_found", 404, f"There is no job {job_id!r}.")


class NoUsableImages(ServiceError):
    """Every image of a request was rejected; status and code are those of the first rejection."""

    def __init__(self, code: str, status: int, first_message: str, count: int) -> None:
        if count == 1:
            message = first_message
        else:
            message = f"None of the {count} images could be classified; the first: {first_message}"
        super().__init__(code, status, message)
