"""Exported graphs (ONNX, OpenVINO IR) of a model's towers, cached in the data dir.

A graph lives under ``<data_dir>/inference/graphs/<model>/<key>/`` where ``key`` hashes the model
id, a fingerprint of its weights and the versions of the libraries that wrote it, so a restart
loads the file instead of exporting again and an upgrade or another checkpoint never reads a stale
one. Files are written to a temporary name and renamed, so a crash never leaves half a graph.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from gloss_gen.core.logs import quiet_root_logger
from gloss_gen.inference.towers import tower

log = logging.getLogger(__name__)

ONNX_OPSET = 17
GRAPH_FORMAT = 1  # bump when the exported graph's inputs or outputs change


def library_versions(*names: str) -> dict[str, str]:
    """``{package: version}`` for the packages a cached artefact depends on (absent ones skipped)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A cheap fingerprint of every weight: name, shape, dtype, sum, absolute sum and first values
    of each tensor, so two checkpoints of one architecture never share a cached graph (hashing all
    the bytes would cost seconds per start on a large model)."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            flat = value.detach().reshape(-1)
            wide = flat.double() if flat.is_floating_point() else flat.long().double()
            digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}:{float(wide.sum())!r}:"
                          f"{float(wide.abs().sum())!r};".encode())
            digest.update(wide[:64].cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def graph_dir(data_dir: Path, model_id: str, key_parts: dict) -> Path:
    safe_model = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_") or "model"
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    return Path(data_dir) / "inference" / "graphs" / safe_model / key


def _cached(path: Path, write: Callable[[Path], None], what: str) -> Path:
    """``path`` if it exists; otherwise ``write(tmp)`` into its folder and rename it there."""
    if path.exists():
        log.debug("using cached %s %s", what, path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".export-", dir=path.parent))
    try:
        tmp = tmp_dir / path.name
        write(tmp)
        for produced in tmp_dir.iterdir():  # a graph may come with side files (OpenVINO's .bin)
            os.replace(produced, path.parent / produced.name)
    finally:
        for leftover in tmp_dir.glob("*"):
            leftover.unlink()
        tmp_dir.rmdir()
    log.info("exported %s to %s", what, path)
    return path


class GraphCache:
    """Where the exported graphs of one model go, and how to make the missing ones."""

    def __init__(self, data_dir: Path, model_id: str, model: torch.nn.Module, example_inputs: dict) -> None:
        self.data_dir = Path(data_dir)
        self.model_id = model_id
        self.model = model
        self.example_inputs = example_inputs  # tower -> one example input tensor
        self._fingerprint: str | None = None
        self.exports = 0  # graphs actually written by this process (tests check restarts write none)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        return self._fingerprint

    def _dir(self, *libraries: str) -> Path:
        parts = {
            "format": GRAPH_FORMAT,
            "model": self.model_id,
            "weights": self.fingerprint,
            "opset": ONNX_OPSET,
            "versions": library_versions("torch", "open_clip_torch", *libraries),
        }
        return graph_dir(self.data_dir, self.model_id, parts)

    def onnx(self, tower_name: str) -> Path:
        """The fp32 ONNX graph of one tower (dynamic batch axis)."""
        path = self._dir("onnx") / f"{tower_name}.onnx"
        return _cached(path, lambda tmp: self._export_onnx(tower_name, tmp), f"{tower_name} tower (ONNX)")

    def onnx_int8(self, tower_name: str) -> Path:
        """The ONNX graph with ONNX Runtime's dynamic int8 quantisation of its MatMul weights."""
        source = self.onnx(tower_name)
        path = self._dir("onnx", "onnxruntime") / f"{tower_name}.int8.onnx"

        def quantize(tmp: Path) -> None:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            with quiet_root_logger():  # the quantiser logs one INFO line per tensor on the root logger
                quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
            self.exports += 1

        return _cached(path, quantize, f"{tower_name} tower (ONNX int8)")

    def openvino_ir(self, tower_name: str) -> Path:
        """The OpenVINO IR (``.xml`` + ``.bin``) converted from the ONNX graph."""
        source = self.onnx(tower_name)
        path = self._dir("onnx", "openvino") / f"{tower_name}.xml"

        def convert(tmp: Path) -> None:
            import openvino as ov

            ov.save_model(ov.convert_model(str(source)), str(tmp), compress_to_fp16=False)
            self.exports += 1

        return _cached(path, convert, f"{tower_name} tower (OpenVINO IR)")

    def _export_onnx(self, tower_name: str, tmp: Path) -> None:
        module = tower(self.model, tower_name).eval()
        example = self.example_inputs[tower_name]
        # MultiheadAttention's fused eval fast path has no ONNX symbol; trace the plain ops instead
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about Python-side shape maths
                torch.onnx.export(
                    module,
                    (example,),
                    str(tmp),
                    input_names=["input"],
                    output_names=["features"],
                    dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
                    opset_version=ONNX_OPSET,
                    dynamo=False,
                )
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        self.exports += 1
