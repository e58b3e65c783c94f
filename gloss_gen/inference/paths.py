"""The registry of inference paths: ``backend/precision`` -> how to build a runner for a tower.

Adding a path is one entry here and one builder; selection, the fidelity gate and the probe treat
every entry alike. ``requires`` names the optional package a path needs and the extra that installs
it, so forcing a path whose package is missing fails with one line that says what to install.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gloss_gen.core.errors import ConfigError
from gloss_gen.inference import onnxruntime_paths, openvino_paths, torch_paths
from gloss_gen.inference.graph_export import GraphCache
from gloss_gen.inference.runners import Runner

REFERENCE = "torch/fp32"
BACKENDS = ("torch", "onnxruntime", "openvino")


@dataclass(frozen=True)
class PathSpec:
    backend: str
    precision: str
    build: Callable[[BuildContext, str], Runner]
    requires: tuple[str, str] | None = None  # (importable module, pip extra)
    # int8 paths quantize activations per batch: an image's scores depend on its batch neighbours,
    # so `auto` never picks them (they run only when named)
    batch_invariant: bool = True
    cpu_flags: tuple[str, ...] = ()  # any of these CPU flags makes the path worth probing (none: always)

    @property
    def name(self) -> str:
        return f"{self.backend}/{self.precision}"

    @property
    def available(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires[0]) is not None

    def check_available(self) -> None:
        if not self.available:
            module, extra = self.requires
            raise ConfigError(
                f"inference path {self.name} needs the {module} package: pip install 'vgloss[{extra}]'"
            )


@dataclass
class BuildContext:
    """What a builder needs: the fp32 torch model, its graph cache, the thread count, the device."""

    model: torch.nn.Module
    graphs: GraphCache
    threads: int
    device: torch.device


_ORT = ("onnxruntime", "onnx")
_OV = ("openvino", "openvino")

PATHS: dict[str, PathSpec] = {
    spec.name: spec
    for spec in (
        PathSpec("torch", "fp32", torch_paths.torch_fp32),
        PathSpec("torch", "bf16", torch_paths.torch_bf16, cpu_flags=("avx512_bf16", "amx_bf16", "bf16")),
        PathSpec("torch", "int8", torch_paths.torch_int8, batch_invariant=False),
        PathSpec("onnxruntime", "fp32", onnxruntime_paths.onnxruntime_fp32, _ORT),
        PathSpec("onnxruntime", "int8", onnxruntime_paths.onnxruntime_int8, _ORT, batch_invariant=False),
        PathSpec("openvino", "fp32", openvino_paths.openvino_fp32, _OV),
    )
}


def candidates(backend: str, precision: str) -> list[PathSpec]:
    """The registered paths matching ``backend`` and ``precision`` (``auto`` matches any)."""
    return [
        spec
        for spec in PATHS.values()
        if backend in ("auto", spec.backend) and precision in ("auto", spec.precision)
    ]
