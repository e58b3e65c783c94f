"""Which device and precision a setting means on this machine (``auto`` resolved once, here)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch  # here, so reading settings does not import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` → fp16 on CUDA, fp32 on the CPU; fp16 on the CPU falls back to fp32 (slow or unsupported)."""
    device = resolve_device(device)
    if precision == "auto":
        return "fp16" if device == "cuda" else "fp32"
    if device == "cpu" and precision == "fp16":
        log.warning("fp16 is slow or unsupported on the CPU; using fp32")
        return "fp32"
    return precision
