"""The engine a :class:`gloss_gen.model.clip_models.ClipModel` delegates to: the selected runner per tower,
and for images one runner per range of batch sizes (a path can win small batches and another large).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gloss_gen.inference.runners import Runner


@dataclass
class Route:
    low: int
    high: int  # inclusive; the last route also takes every larger batch
    runner: Runner


@dataclass
class InferenceEngine:
    image_routes: list[Route]
    text: Runner
    reasons: dict[str, str] = field(default_factory=dict)  # tower -> why its path(s) were chosen
    pending: list[str] = field(default_factory=list)  # paths not measured yet (no probe decision)
    timings: dict = field(default_factory=dict)  # the probe's {tower: {path: {batch: seconds}}}

    def image_runner(self, batch: int) -> Runner:
        for route in self.image_routes:
            if batch <= route.high:
                return route.runner
        return self.image_routes[-1].runner

    def image_path(self, batch: int) -> str:
        return self.image_runner(batch).path

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_runner(len(pixels))(pixels)

    def text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text(tokens)

    def describe(self) -> dict:
        """For ``/readyz`` and the start-up log: which path runs where, and why."""
        return {
            "image": [{"path": r.runner.path, "batch_sizes": _span(r, r is self.image_routes[-1])}
                      for r in self.image_routes],
            "text": self.text.path,
            "why": dict(self.reasons),
            "pending": list(self.pending),
        }

    def summary(self) -> str:
        image = ", ".join(f"{r.runner.path} (batch {_span(r, r is self.image_routes[-1])})" for r in self.image_routes)
        return f"image {image}; text {self.text.path}"


def _span(route: Route, last: bool) -> str:
    high = f"{route.high}+" if last else str(route.high)
    return high if route.low == route.high and not last else f"{route.low}-{high}"
