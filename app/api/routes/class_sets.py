"""``/v1/class-sets``: list, inspect and (admin) create class sets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from app.api.deps import AdminKey, ApiKey, RuntimeDep
from app.api.schemas import (
    LABEL_SCHEMA,
    ClassSetDetail,
    ClassSetSummary,
    ClipFitAdapterRequest,
    CreateAdapterRequest,
    CreateClassSetRequest,
    ErrorResponse,
    ExamplesAdded,
    JobCreated,
)
from app.error_envelope import ApiError, validation_error
from gloss_gen.core.names import NAME_MAX_CHARS, NAME_PATTERN, NAME_RULE

ClassSetName = Annotated[
    str, Path(pattern=NAME_PATTERN, max_length=NAME_MAX_CHARS, description=f"Class set name: {NAME_RULE}.")
]

router = APIRouter(prefix="/v1/class-sets", tags=["class sets"])

_KEY_ERRORS = {
    401: {"model": ErrorResponse, "description": "An API key is required"},
    403: {"model": ErrorResponse, "description": "The key is wrong (or, for administration, not an admin key)"},
    503: {"model": ErrorResponse, "description": "Not ready, or the store is unavailable (see Retry-After)"},
}
_ADMIN_ROUTE_ERRORS = {
    400: {"model": ErrorResponse, "description": "The body could not be parsed"},
    404: {"model": ErrorResponse, "description": "No class set of that name"},
    409: {"model": ErrorResponse, "description": "The class set has no classifier for this model yet"},
    422: {"model": ErrorResponse, "description": "Invalid fields, name or examples"},
    429: {"model": ErrorResponse, "description": "Too many jobs queued or running (see Retry-After)"},
    **_KEY_ERRORS,
}

_EXAMPLES_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["images", "labels"],
            "properties": {
                "images": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}},
                # one field (a single value reads as a string or a one-item list) or one per image
                "labels": {"anyOf": [LABEL_SCHEMA, {"type": "array", "minItems": 1, "items": LABEL_SCHEMA}],
                           "description": "The class (name or id) of each image, in order; or one for them all."},
            },
        }}},
    }
}


# exclude_unset: 'error' appears only on a set whose stored classifier failed verification
@router.get("", response_model=list[ClassSetSummary], response_model_exclude_unset=True, responses=_KEY_ERRORS,
            dependencies=[ApiKey])
async def list_class_sets(runtime: RuntimeDep) -> list[ClassSetSummary]:
    runtime.readiness.require()
    return [ClassSetSummary(**summary) for summary in await runtime.catalog.list()]


@router.get(
    "/{name}",
    response_model=ClassSetDetail,
    response_model_exclude_unset=True,
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, **_KEY_ERRORS},
    dependencies=[ApiKey],
)
async def get_class_set(name: ClassSetName, runtime: RuntimeDep) -> ClassSetDetail:
    runtime.readiness.require()
    detail = await runtime.catalog.detail(name)
    return ClassSetDetail(**detail, **await runtime.adapters.summary(name))


@router.post(
    "",
    status_code=202,
    response_model=JobCreated,
    responses={
        400: {"model": ErrorResponse, "description": "The body is not JSON"},
        422: {"model": ErrorResponse, "description": "Invalid fields, name or classes"},
        429: {"model": ErrorResponse, "description": "Too many jobs queued or running (see Retry-After)"},
        **_KEY_ERRORS,
    },
    dependencies=[AdminKey],
    summary="Create or rebuild a class set (describe + embed in the background)",
)
async def create_class_set(body: CreateClassSetRequest, runtime: RuntimeDep, response: Response) -> JobCreated:
    runtime.readiness.require()
    classes = None
    if body.classes is not None:
        classes = [c if isinstance(c, str) else c.model_dump(exclude_none=True) for c in body.classes]
    job_id = await runtime.catalog.create(body.name, classes, body.method, body.description)
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return JobCreated(job_id=job_id)


@router.post(
    "/{name}/examples",
    response_model=ExamplesAdded,
    responses=_ADMIN_ROUTE_ERRORS,
    dependencies=[AdminKey],
    openapi_extra=_EXAMPLES_BODY,
    summary="Add labelled example images (multipart: 'images' files, one 'labels' field per image)",
)
async def add_examples(name: ClassSetName, request: Request, runtime: RuntimeDep) -> JSONResponse:
    runtime.readiness.require()
    settings = runtime.settings
    try:
        form = await request.form(max_files=settings.max_examples_per_request,
                                  max_fields=settings.max_examples_per_request + 8)
    except Exception as exc:  # starlette raises MultiPartException / HTTPException for a bad body
        raise ApiError("invalid_multipart", f"The multipart body could not be parsed: {exc}") from None
    try:
        files = [v for k, v in form.multi_items() if k == "images" and not isinstance(v, str)]
        labels = [v.strip() for v in form.getlist("labels") if isinstance(v, str)]
        if len(labels) == 1 and len(files) > 1:
            labels = labels * len(files)  # one label for the whole upload
        if not files or len(labels) != len(files):
            raise validation_error(f"Give 'images' files and one 'labels' field per image ({len(files)} images, "
                                   f"{len(labels)} labels).")
        uploads = []
        for upload, label in zip(files, labels):
            data = await upload.read()
            if len(data) > settings.max_image_bytes:
                raise validation_error(f"{upload.filename}: {len(data)} bytes is over the limit of "
                                       f"{settings.max_image_bytes} bytes per image.")
            uploads.append((upload.filename, data, label))
    finally:
        await form.close()
    return JSONResponse(await runtime.adapters.add_examples(name, uploads))


@router.post(
    "/{name}/adapters",
    status_code=202,
    response_model=JobCreated,
    responses=_ADMIN_ROUTE_ERRORS,
    dependencies=[AdminKey],
    summary="Fit a few-shot adapter on the class set's examples (background job): a tip / tip-f cache "
    "becomes active; a clipfit delta is written and named in the job's result",
)
async def create_adapter(name: ClassSetName, body: CreateAdapterRequest, runtime: RuntimeDep) -> JSONResponse:
    runtime.readiness.require()
    if isinstance(body, ClipFitAdapterRequest):
        job_id = await runtime.adapters.submit(name, body.method, body.shots, epochs=body.epochs, lr=body.lr)
    else:
        job_id = await runtime.adapters.submit(name, body.method, body.shots, augment=body.augment)
    return JSONResponse({"job_id": job_id}, status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})
