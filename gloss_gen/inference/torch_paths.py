"""Eager PyTorch paths: fp32 (the reference), the tower cast to bf16, dynamic int8 Linear layers.

bf16 casts the weights (``module.to(bfloat16)``) rather than using ``torch.autocast``, which was
measured slower than fp32 at batch 8 and 32. int8 is ``torch.ao.quantization.quantize_dynamic`` of
the ``nn.Linear`` layers (weights int8, activations quantised per batch).
"""

from __future__ import annotations

import functools
import warnings

import torch

from gloss_gen.inference.runners import Runner
from gloss_gen.inference.towers import detached_tower, encode_text_trimmed, tower


def torch_fp32(context, tower_name: str) -> Runner:
    module = tower(context.model, tower_name).eval()
    if tower_name == "text":  # the same features, without the padding positions (towers.encode_text_trimmed)
        module = functools.partial(encode_text_trimmed, context.model.eval())

    def run(inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(inputs.to(context.device)).float().cpu()

    return Runner("torch/fp32", tower_name, run)


def torch_bf16(context, tower_name: str) -> Runner:
    module = detached_tower(context.model, tower_name).to(torch.bfloat16)
    is_image = tower_name == "image"

    def run(inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            inputs = inputs.to(context.device, dtype=torch.bfloat16) if is_image else inputs.to(context.device)
            return module(inputs).float().cpu()

    return Runner("torch/bf16", tower_name, run)


def torch_int8(context, tower_name: str) -> Runner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's "migrate to torchao" deprecation notice
        module = torch.ao.quantization.quantize_dynamic(
            detached_tower(context.model, tower_name), {torch.nn.Linear}, dtype=torch.qint8
        )
    for part in module.modules():
        if hasattr(part, "get_cast_dtype"):
            # open_clip reads the dtype off an MLP weight, which quantised Linear layers turn into a method
            part.get_cast_dtype = lambda: torch.float32

    def run(inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(inputs).float()

    return Runner("torch/int8", tower_name, run)
