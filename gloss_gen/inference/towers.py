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


def encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """``model.encode_text(tokens)`` with the context cut after the batch's last end-of-text token.

    CLIP's text transformer is causal and pools at the end-of-text token, so the positions after it
    never reach the output: running only the first ``L`` positions gives the same features (within
    float rounding) at ``L / 77`` of the cost; short prompts are 3-4x faster. Models this does not
    fit (no causal mask, other pooling) run ``encode_text`` as is.
    """
    mask = getattr(model, "attn_mask", None)
    if getattr(model, "text_pool_type", None) != "argmax" or mask is None or not hasattr(model, "token_embedding"):
        return model.encode_text(tokens, normalize=normalize)
    from open_clip.transformer import text_global_pool

    length = int(tokens.argmax(dim=-1).max()) + 1  # the end-of-text token has the largest id
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.ln_final(model.transformer(x, attn_mask=mask[:length, :length]))
    x = text_global_pool(x, tokens, "argmax")
    projection = model.text_projection
    if projection is not None:
        x = projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
    return torch.nn.functional.normalize(x, dim=-1) if normalize else x


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
