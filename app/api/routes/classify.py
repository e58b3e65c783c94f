"""``POST /v1/classify`` (and ``POST /classify``): parse multipart or JSON, hand over to the service."""

from __future__ import annotations

import base64
import binascii
import json
import re

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.api.deps import ApiKey, RuntimeDep
from app.api.schemas import (
    LABEL_SCHEMA,
    MAX_LABEL_CHARS,
    RERANK_K_MAX,
    RERANK_K_MIN,
    RERANK_METHODS,
    TOP_K_DEFAULT,
    TOP_K_MAX,
    TOP_K_MIN,
    ClassifyJsonRequest,
    ClassifyResponse,
    ErrorResponse,
)
from app.error_envelope import ApiError, describe_validation_error, detached, validation_error
from app.services.classification import ClassifyQuery, ImageUpload
from gloss_gen.classify.open_set import OPEN_SET_MODES, OpenSetError, check_open_set_mode, check_threshold
from gloss_gen.core.config import Settings
from gloss_gen.imaging import ImageError, check_image_bytes

router = APIRouter(tags=["classify"])

MAX_TEXT_PART_BYTES = 1024 * 1024
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_DATA_URL_PREFIX = re.compile(r"^data:[^,]{0,100};base64,", re.IGNORECASE)
_WHITESPACE = re.compile(rb"\s+")

_MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["images"],
    "properties": {
        "images": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}},
        "class_set": {"type": "string"},
        "labels": {
            "type": "array",
            "minItems": 1,
            "items": LABEL_SCHEMA,
            "description": "Repeat the field, or send one JSON list.",
        },
        "top_k": {"type": "integer", "minimum": TOP_K_MIN, "maximum": TOP_K_MAX, "default": TOP_K_DEFAULT},
        "explain": {"type": "boolean", "default": False},
        "open_set": {"type": "string", "enum": list(OPEN_SET_MODES), "description": "default: VGLOSS_OPEN_SET"},
        "open_set_threshold": {"type": "number", "minimum": 0, "maximum": 1},
        "rerank": {"type": "string", "enum": list(RERANK_METHODS), "description": "default: VGLOSS_RERANK"},
        "rerank_k": {"type": "integer", "minimum": RERANK_K_MIN, "maximum": RERANK_K_MAX, "description": "default: VGLOSS_RERANK_K"},
    },
}
_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
            "application/json": {"schema": ClassifyJsonRequest.model_json_schema()},
        },
    }
}
_ERRORS = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Every image is undecodable or empty, or the body is malformed",
        401: "An API key is required",
        403: "The API key is wrong",
        404: "Unknown class set",
        408: "The body did not arrive in time (idle, or past its deadline)",
        413: "An image or the request is over a size or pixel limit",
        415: "Neither multipart/form-data nor application/json",
        409: "The class set has no classifier for this model yet, or no pair descriptions for rerank fudd",
        422: "Invalid fields (an unknown open_set or rerank, a threshold outside 0-1, mcm with no threshold)",
        503: "Not ready, queue or body budget full, store unavailable, or open-set negatives or calibration "
        "being prepared (see Retry-After)",
    }.items()
}


@router.post(
    "/v1/classify",
    response_model=ClassifyResponse,
    response_model_exclude_unset=True,  # "evidence" only with explain; "predictions" or "error"
    responses=_ERRORS,
    openapi_extra=_OPENAPI_BODY,
    dependencies=[ApiKey],
    summary="Classify images against a class set or ad-hoc labels",
)
@router.post("/classify", response_model_exclude_unset=True, include_in_schema=False, dependencies=[ApiKey])
async def classify(request: Request, runtime: RuntimeDep) -> ClassifyResponse:
    query = await _read_classify_request(request, runtime.settings)
    result = await runtime.classifier_service.classify(query)
    return ClassifyResponse.model_validate(result.to_dict())


async def _read_classify_request(request: Request, settings: Settings) -> ClassifyQuery:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        return await _read_multipart(request, settings)
    if media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json")):
        return await _read_json(request, settings)
    if not media_type and not await request.body():
        raise _no_images()
    raise ApiError(
        "unsupported_media_type",
        f"Send multipart/form-data or application/json, not {media_type or 'a body without a Content-Type'}.",
    )


def _no_images() -> ApiError:
    return validation_error(
        "Send one or more images: 'images' file parts (multipart/form-data) or an 'images' list of base64 strings (JSON)."
    )


def _too_many_images(settings: Settings) -> ApiError:
    return ApiError("too_many_images", f"At most {settings.max_images_per_request} images may be sent in one request.")


# ---------------------------------------------------------------------------------- multipart


async def _read_multipart(request: Request, settings: Settings) -> ClassifyQuery:
    parser = MultiPartParser(
        request.headers,
        request.stream(),
        max_files=settings.max_images_per_request,
        max_fields=settings.max_labels + 16,
        max_part_size=MAX_TEXT_PART_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise _too_many_images(settings) from None
        if exc.message.startswith("Too many fields"):
            raise validation_error(f"Too many form fields; at most {settings.max_labels} labels are allowed.") from None
        raise ApiError("invalid_multipart", f"The multipart body could not be parsed: {exc.message}") from None
    try:
        images: list[ImageUpload] = []
        for key, value in form.multi_items():
            if key != "images":
                continue
            if isinstance(value, UploadFile):
                images.append(await _read_upload(value, settings))
            else:
                images.append(
                    ImageUpload(
                        filename=None,
                        error=ImageError("invalid_image", "This 'images' part is a text field, not a file."),
                    )
                )
        class_set = _single_text(form, "class_set")
        labels_values = [v for v in form.getlist("labels") if isinstance(v, str)]
        labels = _labels_from_form(labels_values) if labels_values else None
        top_k_text = _single_text(form, "top_k")
        explain_text = _single_text(form, "explain")
        open_set = _single_text(form, "open_set") or None
        threshold_text = _single_text(form, "open_set_threshold") or None
        rerank = _single_text(form, "rerank") or None
        rerank_k_text = _single_text(form, "rerank_k") or None
    finally:
        await form.close()
    top_k = TOP_K_DEFAULT if top_k_text is None else _parse_int("top_k", top_k_text)
    explain = False if explain_text is None else _parse_bool("explain", explain_text)
    threshold = None if threshold_text is None else _parse_float("open_set_threshold", threshold_text)
    rerank_k = None if rerank_k_text is None else _parse_int("rerank_k", rerank_k_text)
    return _validated(images, class_set or None, labels, top_k, explain, settings, open_set, threshold,
                      rerank, rerank_k)


async def _read_upload(upload: UploadFile, settings: Settings) -> ImageUpload:
    try:
        if upload.size is not None:
            check_image_bytes(upload.size, settings.max_image_bytes)
    except ImageError as error:
        return ImageUpload(upload.filename, error=detached(error))
    return ImageUpload(upload.filename, data=await upload.read())


def _single_text(form, key: str) -> str | None:
    values = form.getlist(key)
    if not values:
        return None
    if len(values) > 1:
        raise validation_error(f"Invalid {key}: give it once, not {len(values)} times.")
    if not isinstance(values[0], str):
        raise validation_error(f"Invalid {key}: expected a text field, not a file.")
    return values[0].strip()


def _labels_from_form(values: list[str]) -> list:
    if len(values) == 1 and values[0].lstrip().startswith("["):
        try:
            parsed = json.loads(values[0])
        except (ValueError, RecursionError):  # RecursionError: '[' nested past Python's stack
            raise validation_error("Invalid labels: the field looks like a JSON list but is not valid JSON.") from None
        return parsed if isinstance(parsed, list) else [parsed]
    return values


def _parse_int(field: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise validation_error(f"Invalid {field}: {text[:40]!r} is not an integer.") from None


def _parse_float(field: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise validation_error(f"Invalid {field}: {text[:40]!r} is not a number.") from None


def _parse_bool(field: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise validation_error(f"Invalid {field}: {text[:40]!r} is not true or false.")


# ---------------------------------------------------------------------------------- JSON


async def _read_json(request: Request, settings: Settings) -> ClassifyQuery:
    # one growing buffer, and the text decoded from it dropped as soon as it is parsed: the body
    # costs about twice its size at the peak, not three times (starlette's body() joins a chunk list)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
    if not body or body.isspace():  # (strip() would copy the whole body)
        raise _no_images()
    try:
        document = body.decode(json.detect_encoding(body), "surrogatepass")
        del body
        payload = json.loads(document)
        del document
    except RecursionError:
        raise ApiError("invalid_json", "The request body nests JSON too deeply.") from None
    except ValueError:
        raise ApiError("invalid_json", "The request body is not valid JSON.") from None
    try:
        parsed = ClassifyJsonRequest.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(describe_validation_error(exc.errors())) from None
    if len(parsed.images) > settings.max_images_per_request:
        raise _too_many_images(settings)
    images = [_decode_base64(text, settings) for text in parsed.images]
    return _validated(images, parsed.class_set, parsed.labels, parsed.top_k, parsed.explain, settings,
                      parsed.open_set, parsed.open_set_threshold, parsed.rerank, parsed.rerank_k)


def _decode_base64(text: str, settings: Settings) -> ImageUpload:
    data = _WHITESPACE.sub(b"", _DATA_URL_PREFIX.sub("", text, count=1).encode("ascii", "replace"))
    decoded_size = len(data) * 3 // 4 - data[-2:].count(b"=")
    try:
        check_image_bytes(decoded_size, settings.max_image_bytes, estimated=True)
    except ImageError as error:
        return ImageUpload(None, error=detached(error))
    try:
        return ImageUpload(None, data=base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return ImageUpload(None, error=ImageError("invalid_base64", "The image is not valid base64."))


# ---------------------------------------------------------------------------------- both


def _validated(
    images: list[ImageUpload],
    class_set: str | None,
    labels: list | None,
    top_k: int,
    explain: bool,
    settings: Settings,
    open_set: str | None = None,
    open_set_threshold: float | None = None,
    rerank: str | None = None,
    rerank_k: int | None = None,
) -> ClassifyQuery:
    if not images:
        raise _no_images()
    if len(images) > settings.max_images_per_request:
        raise _too_many_images(settings)
    if not TOP_K_MIN <= top_k <= TOP_K_MAX:
        raise validation_error(f"Invalid top_k: {top_k} is not between {TOP_K_MIN} and {TOP_K_MAX}.")
    if labels is not None:
        if class_set is not None:
            raise validation_error("Give either class_set or labels, not both.")
        labels = _clean_labels(labels, settings)
    try:
        mode = check_open_set_mode(open_set if open_set is not None else settings.open_set)
        if open_set_threshold is not None:
            open_set_threshold = check_threshold(open_set_threshold)
    except OpenSetError as exc:
        raise validation_error(f"Invalid {'open_set_threshold' if 'threshold' in exc.message else 'open_set'}: "
                               f"{exc.message}.") from None
    if open_set_threshold is not None and mode == "off":
        raise validation_error("Invalid open_set_threshold: it needs open_set mcm or neglabel.")
    if rerank not in (None, *RERANK_METHODS):
        raise validation_error(f"Invalid rerank: {str(rerank)[:40]!r} is not one of {', '.join(RERANK_METHODS)}.")
    if rerank_k is not None and not RERANK_K_MIN <= rerank_k <= RERANK_K_MAX:
        raise validation_error(f"Invalid rerank_k: {rerank_k} is not between {RERANK_K_MIN} and {RERANK_K_MAX}.")
    return ClassifyQuery(images=images, class_set=class_set, labels=labels, top_k=top_k, explain=explain,
                         open_set=mode, open_set_threshold=open_set_threshold, rerank=rerank, rerank_k=rerank_k)


def _clean_labels(labels: list, settings: Settings) -> list[str]:
    if not labels:
        raise validation_error("Invalid labels: give at least one label.")
    if len(labels) > settings.max_labels:
        raise validation_error(f"Invalid labels: {len(labels)} labels, over the limit of {settings.max_labels}.")
    cleaned = []
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            raise validation_error("Invalid labels: every label must be a non-empty string.")
        if len(label) > MAX_LABEL_CHARS:
            raise validation_error(f"Invalid labels: a label is longer than {MAX_LABEL_CHARS} characters.")
        cleaned.append(label.strip())
    return cleaned
