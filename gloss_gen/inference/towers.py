"""The two towers of a CLIP model as stand-alone modules: what every inference path runs.

Each tower maps its input to *unnormalised* float features; :class:`gloss_gen.model.clip_models.ClipModel`
normalises in float32 whichever path produced them, so every path is compared like for like.
"""

from __future__ import annotations

import copy

import torch

TOWERS = ("image", "text")


class ImageTower(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels, normalize=False)


class TextTower(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens, normalize=False)


def tower(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """The ``image`` or ``text`` tower of ``model``, sharing its weights."""
    return ImageTower(model) if name == "image" else TextTower(model)


def detached_tower(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """A deep copy of one tower only (for paths that rewrite weights: bf16 cast, int8 quantisation),
    without copying the other tower's weights."""
    if name == "image":
        return _ImageOnly(copy.deepcopy(model.visual))
    visual = model.visual
    model.visual = None  # the text path never needs it; leave it out of the copy
    try:
        text_only = copy.deepcopy(model)
    finally:
        model.visual = visual
    return TextTower(text_only).eval()


class _ImageOnly(torch.nn.Module):
    """``encode_image`` without the text tower: open_clip's is ``visual(pixels)``."""

    def __init__(self, visual: torch.nn.Module) -> None:
        super().__init__()
        self.visual = visual.eval()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)
