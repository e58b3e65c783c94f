"""The job record both job runners write to the store (``Store.put_job``) and ``GET /v1/jobs/{id}``
reads: the REST server's in-process class-set jobs and the queued describe jobs.

``{"id", "kind", "state", "class_set", "method", "total", "done", "failed", "errors": [{class_id,
name, error}, ...], "created_at", "updated_at", ...}``; ``done`` counts failed classes too.
"""

from __future__ import annotations

from .classsets import ClassSet
from .descriptions import DescriptionRecord, utc_now

JOB_STATES = ("queued", "running", "embedding", "done", "failed")
FINAL_STATES = ("done", "failed")
MAX_LISTED_ERRORS = 50


def new_job_state(job_id: str, kind: str, class_set: ClassSet, method: str, *, done: int = 0, **extra) -> dict:
    now = utc_now()
    return {
        "id": job_id,
        "kind": kind,
        "state": "queued",
        "class_set": class_set.name,
        "method": method,
        "total": len(class_set),
        "done": done,
        "failed": 0,
        "errors": [],
        "created_at": now,
        "updated_at": now,
        **extra,
    }


def count_failure(state: dict, record: DescriptionRecord) -> None:
    """Count a finished class's failure, if it failed (``done`` is the caller's to move)."""
    if record.ok:
        return
    state["failed"] += 1
    if len(state["errors"]) < MAX_LISTED_ERRORS:
        state["errors"].append({"class_id": record.class_id, "name": record.name, "error": record.error})
