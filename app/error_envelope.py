"""The error envelope ``{"error": {"code", "message"}}`` and the handlers that produce it.

Every error leaves the server in this shape: every :class:`gloss_gen.core.errors.VglossError` (the
library's, the services' and the HTTP layer's own, mapped to a status by one table), FastAPI's
validation errors (422), Starlette's 404/405 and, as a last resort, unexpected exceptions (500,
with no internals in the message).
"""

from __future__ import annotations

import logging
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from gloss_gen.core.errors import (
    ConfigError,
    CorruptDataError,
    InputError,
    NotFoundError,
    UnavailableError,
    VglossError,
)

log = logging.getLogger(__name__)
E = TypeVar("E", bound=BaseException)

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}
"""Starlette's own HTTP errors (404 for an unknown path, 405...) get these codes."""

HTTP_STATUS_BY_CODE = {
    # the request itself
    "validation_error": 422,
    "invalid_multipart": 400,
    "invalid_json": 400,
    "unsupported_media_type": 415,
    "request_too_large": 413,
    "request_timeout": 408,
    "too_many_images": 413,
    "server_busy": 503,
    # not 413: the body is small; it is what the labels ask the text encoder to do that is refused
    "too_many_label_prompts": 422,
    "invalid_open_set": 422,
    "open_set_threshold_required": 422,
    # keys
    "missing_api_key": 401,
    "invalid_api_key": 403,
    "admin_disabled": 403,
    "invalid_admin_key": 403,
    # images
    "empty_image": 400,
    "invalid_image": 400,
    "invalid_base64": 400,
    "image_too_large": 413,
    "image_too_many_pixels": 413,
    "image_aspect_ratio_too_large": 413,
    "image_too_many_scans": 413,
    "unsupported_image": 415,
    # class sets and jobs
    "class_set_not_found": 404,
    "job_not_found": 404,
    "class_set_not_ready": 409,
    "no_examples": 409,
    "no_pair_descriptions": 409,
    "too_many_jobs": 429,
    "invalid_name": 422,
}
"""The one table from an error code to its HTTP status. Codes not listed fall back on their family."""

FAMILY_STATUS = (
    (NotFoundError, 404),
    (InputError, 400),
    (UnavailableError, 503),
    (CorruptDataError, 503),
    (ConfigError, 503),
)
DEFAULT_RETRY_AFTER_S = 5


def status_for(error: VglossError) -> int:
    """The HTTP status of ``error``: its code's entry in the table, else its family's, else 500."""
    status = HTTP_STATUS_BY_CODE.get(error.code)
    if status is not None:
        return status
    for family, family_status in FAMILY_STATUS:
        if isinstance(error, family):
            return family_status
    return 500


class ApiError(VglossError):
    """An error the HTTP layer raises itself (bad fields, media type, keys)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message, code=code, retry_after_s=retry_after_s)
        self.headers = headers or {}


def detached(error: E) -> E:
    """``error`` without its traceback and chained causes, to be kept as a result (a per-image
    error): a caught exception kept with its traceback holds the frames that raised it, and their
    locals (the image's bytes and base64 text, the parsed body), until the cyclic garbage collector
    happens to run, since those frames also hold the exception."""
    error.__traceback__ = None
    error.__cause__ = error.__context__ = None
    return error


def validation_error(message: str) -> ApiError:
    return ApiError("validation_error", message)


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def error_headers(error: VglossError, status: int) -> dict[str, str]:
    headers = dict(getattr(error, "headers", {}) or {})
    retry_after = error.retry_after_s
    if retry_after is None and status == 503:
        retry_after = DEFAULT_RETRY_AFTER_S
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return headers


def _vgloss_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VglossError)
    status = status_for(exc)
    if status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    return error_response(status, exc.code, exc.message, error_headers(exc, status) or None)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route at this path takes. Starlette's 405 names only the first matching
    route's, and a path such as ``/v1/class-sets`` has one route per method."""
    return [
        method
        for method in HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in request.app.router.routes)
    ]


def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, VglossError):
        # FastAPI answers any error while it reads a body as 400 "error parsing the body"; the body
        # limits and timeouts of the middleware raise there, and their own answer is the right one
        return _vgloss_error(request, exc.__cause__)
    code = STATUS_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        message = "There is nothing at this path."
    elif exc.status_code == 405:
        message = "This path does not accept that method."
        headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
    else:
        message = detail or "The request could not be served."
    return error_response(exc.status_code, code, message, headers or None)


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
    app.add_exception_handler(VglossError, _vgloss_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(Exception, _unexpected)
