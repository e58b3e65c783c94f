"""The server names its inference path in /readyz and labels inference metrics by it."""

from __future__ import annotations

import pytest
from api_helpers import metric_value, multipart, wait_ready


def test_readyz_and_metrics_name_the_inference_path(app_factory, jpeg_bytes):
    pytest.importorskip("onnxruntime")
    client = app_factory(ready=False, backend="onnxruntime", precision="fp32")
    wait_ready(client, timeout_s=600)  # exporting the graphs first: slow on a loaded machine
    inference = client.get("/readyz").json()["inference"]
    assert inference["image"] == [{"path": "onnxruntime/fp32", "batch_sizes": "1-32+"}]
    assert inference["text"] == "onnxruntime/fp32"
    assert "asked for" in inference["why"]["image"]

    assert client.post("/v1/classify", **multipart(jpeg_bytes[:2])).status_code == 200
    text = client.get("/metrics").text
    assert metric_value(text, "vgloss_inference_items_total", {"tower": "image", "path": "onnxruntime/fp32"}) == 2
    assert metric_value(text, "vgloss_inference_items_total", {"tower": "text", "path": "onnxruntime/fp32"}) > 0
    assert metric_value(text, "vgloss_inference_items_total", {"path": "torch/fp32"}) == 0


def test_default_test_servers_report_the_reference_path(client):
    inference = client.get("/readyz").json()["inference"]
    assert inference["image"][0]["path"] == inference["text"] == "torch/fp32"
