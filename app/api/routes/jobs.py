"""``GET /v1/jobs/{job_id}``: the progress of a class-set job, from the store (any replica)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.api.deps import ApiKey, RuntimeDep
from app.api.schemas import ErrorResponse, JobState
from gloss_gen.core.names import NAME_MAX_CHARS, NAME_PATTERN, NAME_RULE

JobId = Annotated[str, Path(pattern=NAME_PATTERN, max_length=NAME_MAX_CHARS, description=f"Job id: {NAME_RULE}.")]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_API_STATES = {"queued", "running", "done", "failed"}


@router.get(
    "/{job_id}",
    response_model=JobState,
    responses={
        404: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
        401: {"model": ErrorResponse, "description": "An API key is required"},
        403: {"model": ErrorResponse, "description": "The API key is wrong"},
        503: {"model": ErrorResponse, "description": "The store is unavailable (see Retry-After)"},
    },
    dependencies=[ApiKey],
)
async def get_job(job_id: JobId, runtime: RuntimeDep) -> JobState:
    state = (await runtime.jobs.get(job_id)).to_json()
    errors = list(state.get("errors") or [])
    if state.get("error"):
        errors.append({"error": state["error"]})
    stored_state = state.get("state", "queued")
    body = {
        **state,
        "job_id": job_id,
        # queue workers also report an "embedding" phase; the API's states are the four above
        "state": stored_state if stored_state in _API_STATES else "running",
        "done": int(state.get("done", 0)),
        "total": int(state.get("total", 0)),
        "errors": errors,
    }
    body.pop("id", None)
    return JobState.model_validate(body)
