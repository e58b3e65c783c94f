"""The graph cache: a restart loads the exported graph instead of exporting again; the graph
computes what the torch tower computes; another checkpoint or library version gets its own file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gloss_gen.inference import graph_export as export
from gloss_gen.inference.graph_export import GraphCache
from gloss_gen.model.clip_models import load_clip


def cache_for(clip, data_dir) -> GraphCache:
    return GraphCache(data_dir, clip.id, clip.model,
                      {"image": torch.zeros(1, 3, 224, 224), "text": clip.tokenizer(["a dog"])})


def test_second_load_does_not_re_export(tmp_path, fresh_tiny):
    ort = pytest.importorskip("onnxruntime")
    first = cache_for(fresh_tiny, tmp_path)
    graph = first.onnx("image")
    assert first.exports == 1 and graph.is_file()
    written = graph.stat().st_mtime_ns

    restarted = cache_for(load_clip("vgloss-tiny", "none"), tmp_path)  # a new process, same model
    assert restarted.onnx("image") == graph and restarted.exports == 0
    assert graph.stat().st_mtime_ns == written
    assert not list(graph.parent.glob(".export-*"))  # no temporary left behind

    pixels = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    (features,) = session.run(["features"], {"input": pixels.numpy()})  # a batch of 3: the axis is dynamic
    with torch.no_grad():
        want = fresh_tiny.model.encode_image(pixels).numpy()
    assert np.allclose(features, want, atol=1e-4)


def test_other_weights_or_versions_get_their_own_graph(tmp_path, fresh_tiny, monkeypatch):
    pytest.importorskip("onnx")
    graph = cache_for(fresh_tiny, tmp_path).onnx("text")

    other = load_clip("vgloss-tiny", "none")
    with torch.no_grad():
        other.model.text_projection.mul_(2.0)
    other_cache = cache_for(other, tmp_path)
    assert other_cache.onnx("text") != graph and other_cache.exports == 1

    real_versions = export.library_versions
    monkeypatch.setattr(export, "library_versions", lambda *names: {**real_versions(*names), "torch": "0.0"})
    upgraded = cache_for(load_clip("vgloss-tiny", "none"), tmp_path)
    assert upgraded.onnx("text") != graph and upgraded.exports == 1


def test_openvino_ir_is_cached_beside_its_weights(tmp_path, fresh_tiny):
    pytest.importorskip("openvino")
    cache = cache_for(fresh_tiny, tmp_path)
    xml = cache.openvino_ir("text")
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    again = cache_for(load_clip("vgloss-tiny", "none"), tmp_path)
    assert again.openvino_ir("text") == xml and again.exports == 0
