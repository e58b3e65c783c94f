"""Few-shot adaptation of a zero-shot classifier from a handful of labelled images per class.

- :mod:`.examples` — labelled example images, shot selection, cached embeddings;
- :mod:`.tip` — the Tip-Adapter cache model (training-free, and ``-F`` with trainable keys);
- :mod:`.record` — adapter records in the store (safetensors + JSON header, never pickle);
- :mod:`.clipfit` — ClipFit: tune text FFN biases and image LayerNorms, write a small delta;
- :mod:`.delta` — reading a ClipFit delta and applying it to a base model (``--pretrained BASE+DELTA``);
- :mod:`.compare` — ``vgloss eval --examples``: every (method, adaptation, shots) side by side.
"""

from gloss_gen.core.errors import AdaptError

__all__ = ["ADAPTER_METHODS", "AdaptError"]

ADAPTER_METHODS = ("tip", "tip-f")  # here, not in .tip, so `vgloss --help` imports no torch
