"""What the server can do right now, for ``/readyz`` and for requests that arrive too early."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import NotReady


@dataclass
class Readiness:
    phase: str = "starting"  # starting -> loading_model -> loading_classifier -> ready | failed
    detail: str = "the server is starting"

    @property
    def ready(self) -> bool:
        return self.phase == "ready"

    def set(self, phase: str, detail: str) -> None:
        self.phase, self.detail = phase, detail

    def require(self) -> None:
        if not self.ready:
            raise NotReady(self.detail)
