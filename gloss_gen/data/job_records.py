"""The job record: the progress of a class-set or adapter job as the store keeps it and
``GET /v1/jobs/{id}`` reports it, whichever runner runs the job (the server in process, or
``vgloss worker``s). ``kind`` is ``class-set`` (in process), ``describe`` (on the queue) or
``adapter`` (either; ``runner: "queue"`` on the queue).

Its JSON form is ``{"id", "kind", "state", "class_set", "method", "total", "done", "failed",
"errors": [{class_id, name, error}, ...], "created_at", "updated_at", ...}``; extra fields such as
``model``, ``classifier``, ``descriptions``, ``error``, ``started_at`` and ``finished_at`` follow
(an adapter job's result: ``adapter``, ``validation``, ``notes``; for ClipFit ``delta``,
``adapted_model``, ``pretrained``, ``serving``, ``resumed_from``, ...). A job a server runs in
process also holds a lease: ``owner`` and ``lease_expires_at`` (epoch seconds), renewed while it
runs; only once that has passed may a reader mark the job failed (see ``app.services.job_runner``).
``state`` goes ``queued`` → ``running`` (→ ``embedding`` on the queue) → ``done`` or ``failed``.
``done`` counts classes with a result, failures included; ``failed`` counts those with an error.
Every write goes through :meth:`gloss_gen.data.store.Store.update_job`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.descriptions import DescriptionRecord, utc_now

FINAL_STATES = ("done", "failed")
MAX_LISTED_ERRORS = 50


@dataclass
class JobRecord:
    id: str
    kind: str
    class_set: str
    method: str
    total: int
    state: str = "queued"
    done: int = 0
    failed: int = 0
    errors: list[dict] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""
    #: what a runner adds: model, classifier, descriptions, error, started_at, finished_at, ...
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, job_id: str, kind: str, class_set: ClassSet, method: str, *, done: int = 0,
            **extra: Any) -> JobRecord:
        """A queued job over every class of ``class_set``; ``done`` counts classes already finished."""
        now = utc_now()
        return cls(id=job_id, kind=kind, class_set=class_set.name, method=method, total=len(class_set),
                   done=done, created_at=now, updated_at=now, extra=extra)

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def count(self, record: DescriptionRecord) -> None:
        """Count one more finished class (a queued job starts running with its first)."""
        self.done += 1
        if self.state == "queued":
            self.state = "running"
        self.count_failure(record)

    def count_failure(self, record: DescriptionRecord) -> None:
        """Count a finished class's failure, if it failed (``done`` is the caller's to move)."""
        if record.ok:
            return
        self.failed += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"class_id": record.class_id, "name": record.name, "error": record.error})

    def mark(self, state: str | None = None, **extra: Any) -> None:
        """Move to ``state`` (when given) and set extra fields."""
        if state is not None:
            self.state = state
        self.extra.update(extra)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data["errors"] = [dict(e) for e in self.errors]
        data.update((k, v) for k, v in self.extra.items() if k not in data)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known})

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> JobRecord:
        return cls.from_json(json.loads(raw))
