"""ONNX Runtime paths: the exported fp32 graph, and the same graph with int8 MatMul weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gloss_gen.inference.runners import Runner


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no busy-waiting between calls: the spinning pool would take the cores from decoding threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: no per-node warnings at start-up
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _runner(path_name: str, graph: Path, tower_name: str, threads: int) -> Runner:
    session = _session(graph, threads)
    input_type = np.int64 if tower_name == "text" else np.float32

    def run(inputs: torch.Tensor) -> torch.Tensor:  # InferenceSession.run is thread-safe
        array = np.ascontiguousarray(inputs.cpu().numpy(), dtype=input_type)
        (features,) = session.run(["features"], {"input": array})
        return torch.from_numpy(features)

    return Runner(path_name, tower_name, run)


def onnxruntime_fp32(context, tower_name: str) -> Runner:
    return _runner("onnxruntime/fp32", context.graphs.onnx(tower_name), tower_name, context.threads)


def onnxruntime_int8(context, tower_name: str) -> Runner:
    return _runner("onnxruntime/int8", context.graphs.onnx_int8(tower_name), tower_name, context.threads)
