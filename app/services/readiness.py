"""What the server can do right now, for ``/readyz`` and for requests that arrive too early."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from app.services.service_errors import NotReady

_ABSOLUTE_PATH = re.compile(r"""(?<![\w.~:/\\])(?:[A-Za-z]:)?(?:[/\\][^\s'"`,;()<>\[\]{}]+)+""")
MAX_DETAIL_CHARS = 300


def redact_paths(text: str) -> str:
    """``text`` with every absolute file path replaced by its last part (``/srv/m/ckpt.pt`` -> ``ckpt.pt``)."""
    return _ABSOLUTE_PATH.sub(lambda m: os.path.basename(m.group(0).replace("\\", "/").rstrip("/")) or "/", text)


def failure_detail(step: str, exc: BaseException) -> str:
    """What ``/readyz`` says after start-up failed in ``step``: the step and the error, never where files live.

    The full error (paths included) goes to the server's log, for the operator.
    """
    code = getattr(exc, "code", None) or type(exc).__name__
    message = " ".join(str(getattr(exc, "message", None) or exc).split())
    if len(message) > MAX_DETAIL_CHARS:
        message = message[:MAX_DETAIL_CHARS] + "..."
    return redact_paths(f"start-up failed while {step} ({code}): {message}")


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
