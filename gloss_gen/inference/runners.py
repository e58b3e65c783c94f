"""Runners: one tower on one inference path, called with a batch and returning float32 features.

Every runner takes the tower's torch input (pixels ``(N, 3, H, W)`` float32 or tokens ``(N, L)``
int64) and returns unnormalised ``(N, D)`` float32 features on the CPU. Builders live in the
per-backend modules; :mod:`gloss_gen.inference.paths` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Runner:
    path: str  # "backend/precision", e.g. "onnxruntime/fp32"
    tower: str  # "image" | "text"
    run: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.run(inputs)
