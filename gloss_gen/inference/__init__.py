"""Inference paths for the two CLIP towers, chosen per machine with a fidelity gate.

``attach_engine(clip, settings)`` is the one entry point: the model factory calls it, and
:class:`gloss_gen.model.clip_models.ClipModel` delegates ``encode_images`` / ``encode_text`` to the engine it
attaches, so serving, ``eval``, ``classify``, ``embed`` and adapters share one numeric path.
Paths (:data:`PATHS`): ``torch/fp32`` (the reference), ``torch/bf16``, ``torch/int8``,
``onnxruntime/fp32``, ``onnxruntime/int8``, ``openvino/fp32``.
"""

from gloss_gen.inference.engine import InferenceEngine
from gloss_gen.inference.paths import PATHS, PathSpec
from gloss_gen.inference.select import attach_engine

__all__ = ["PATHS", "InferenceEngine", "PathSpec", "attach_engine"]
