"""``/v1/class-sets``: list, inspect and (admin) create class sets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.api.deps import AdminKey, ApiKey, RuntimeDep
from app.api.schemas import (
    ClassSetDetail,
    ClassSetSummary,
    CreateClassSetRequest,
    ErrorResponse,
    JobCreated,
)
from gloss_gen.names import NAME_MAX_CHARS, NAME_PATTERN, NAME_RULE

ClassSetName = Annotated[
    str, Path(pattern=NAME_PATTERN, max_length=NAME_MAX_CHARS, description=f"Class set name: {NAME_RULE}.")
]

router = APIRouter(prefix="/v1/class-sets", tags=["class sets"])

_KEY_ERRORS = {
    401: {"model": ErrorResponse, "description": "An API key is required"},
    403: {"model": ErrorResponse, "description": "The key is wrong (or, for administration, not an admin key)"},
    503: {"model": ErrorResponse, "description": "Not ready, or the store is unavailable (see Retry-After)"},
}


# exclude_unset: 'error' appears only on a set whose stored classifier failed verification
@router.get("", response_model=list[ClassSetSummary], response_model_exclude_unset=True, responses=_KEY_ERRORS,
            dependencies=[ApiKey])
async def list_class_sets(runtime: RuntimeDep) -> list[ClassSetSummary]:
    runtime.readiness.require()
    return await runtime.catalog.list()


@router.get(
    "/{name}",
    response_model=ClassSetDetail,
    response_model_exclude_unset=True,
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, **_KEY_ERRORS},
    dependencies=[ApiKey],
)
async def get_class_set(name: ClassSetName, runtime: RuntimeDep) -> ClassSetDetail:
    runtime.readiness.require()
    return await runtime.catalog.detail(name)


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
