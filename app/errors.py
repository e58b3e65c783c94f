"""The error envelope ``{"error": {"code", "message"}}`` and the handlers that produce it.

Every error leaves the server in this shape: the services' own errors, image rejections,
FastAPI's validation errors (422), Starlette's 404/405, store outages (503) and, as a last
resort, unexpected exceptions (500, with no internals in the message).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.imaging import ImageError
from app.services.errors import ServiceError
from gloss_gen.store import StoreError

log = logging.getLogger(__name__)

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(ServiceError):
    """An error the HTTP layer raises itself (bad fields, media type, keys)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(code, status, message, retry_after_s=retry_after_s)
        self.headers = headers or {}


def validation_error(message: str) -> ApiError:
    return ApiError(422, "validation_error", message)


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = dict(getattr(exc, "headers", {}) or {})
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    return error_response(exc.status, exc.code, exc.message, headers or None)


def _image_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImageError)
    return error_response(exc.status, exc.code, exc.message)


def _store_error(_: Request, exc: Exception) -> JSONResponse:
    log.warning("store error: %s", exc)
    return error_response(
        503, "store_unavailable", f"The store is unavailable: {exc}", {"Retry-After": "5"}
    )


def _http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = STATUS_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code == 404:
        message = "There is nothing at this path."
    elif exc.status_code == 405:
        message = "This path does not accept that method."
    else:
        message = detail or "The request could not be served."
    return error_response(exc.status_code, code, message, dict(exc.headers or {}) or None)


def describe_validation_error(errors: list[dict]) -> str:
    """One sentence naming the first invalid field (FastAPI's ``loc`` minus the 'body' prefix)."""
    if not errors:
        return "The request is invalid."
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    where = ".".join(location) or "request body"
    message = str(first.get("msg", "is invalid")).rstrip(".")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"Invalid {where}: {message}{more}."


def _request_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "validation_error", describe_validation_error(list(exc.errors())))


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "The server failed to answer this request.")


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(ImageError, _image_error)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(Exception, _unexpected)
