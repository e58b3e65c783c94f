"""OpenVINO path: the IR converted from the ONNX graph, compiled for the CPU in fp32.

On CPUs with AMX/AVX-512-BF16 OpenVINO would pick bf16 by itself; the precision hint pins f32
so that this path is what its name says and bf16 stays a separate, gated choice.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from gloss_gen.inference.runners import Runner


def openvino_fp32(context, tower_name: str) -> Runner:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(context.graphs.openvino_ir(tower_name))),
        "CPU",
        {"INFERENCE_NUM_THREADS": context.threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"},
    )
    local = threading.local()  # an infer request serves one call at a time: one per calling thread
    input_type = np.int64 if tower_name == "text" else np.float32

    def run(inputs: torch.Tensor) -> torch.Tensor:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        array = np.ascontiguousarray(inputs.cpu().numpy(), dtype=input_type)
        result = request.infer({0: array})
        return torch.from_numpy(np.array(result[compiled.output(0)], dtype=np.float32))

    return Runner("openvino/fp32", tower_name, run)
