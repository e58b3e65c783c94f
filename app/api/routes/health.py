"""Liveness, readiness and metrics: no API key, as load balancers and scrapers expect."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from app.api.deps import RuntimeDep
from app.api.schemas import ErrorResponse, Health, Ready
from app.error_envelope import error_body

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"model": ErrorResponse, "description": "Still starting, or start-up failed"}},
    summary="The model and the default classifier are loaded",
)
async def readyz(runtime: RuntimeDep) -> Ready | JSONResponse:
    readiness = runtime.readiness
    if not readiness.ready:
        return JSONResponse(
            error_body("not_ready", f"Not ready: {readiness.detail}."),
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return Ready(
        model=runtime.model.model_id,
        default_class_set=runtime.settings.default_class_set,
        class_sets_loaded=runtime.registry.loaded_names(),
        inference=runtime.model.inference(),
    )


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(runtime: RuntimeDep) -> Response:
    runtime.metrics.queue_depth.set(runtime.batcher.queued)
    body, content_type = runtime.metrics.render()
    return Response(body, media_type=content_type)
