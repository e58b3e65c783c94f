"""attach_engine: auto refuses a path that fails the fidelity gate, forcing warns with the figure,
the probe is cached, each backend can be forced or fails with one clear line."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gloss_gen.core.errors import ConfigError
from gloss_gen.inference import attach_engine, paths, probe, select
from gloss_gen.inference.fidelity import gate_prompts


def reference_embeddings(clip, pixels, prompts):
    """fp32 embeddings written out independently of the inference package."""
    with torch.no_grad():
        image = F.normalize(clip.model.encode_image(pixels), dim=-1)
        text = F.normalize(clip.model.encode_text(clip.tokenizer(prompts)), dim=-1)
    return image, text.numpy()


def test_auto_refuses_a_path_that_fails_the_gate(fresh_tiny, engine_settings, only_paths, caplog):
    only_paths("torch/fp32", scrambled=True)
    with caplog.at_level(logging.INFO, logger="gloss_gen.inference"):
        engine = attach_engine(fresh_tiny, engine_settings(), probe=True)
    assert engine.image_path(1) == engine.image_path(8) == "torch/fp32"
    assert engine.text.path == "torch/fp32"
    why = engine.describe()["why"]
    for tower in ("image", "text"):
        assert "torch/scrambled fails the fidelity gate" in why[tower]
        assert "top-1 agreement" in why[tower]
    assert "-> FAIL" in caplog.text  # the start-up log says it too


def test_forcing_a_path_that_fails_the_gate_warns_with_the_figure(fresh_tiny, engine_settings, only_paths, caplog):
    only_paths("torch/fp32", scrambled=True)
    with caplog.at_level(logging.WARNING, logger="gloss_gen.inference"):
        engine = attach_engine(fresh_tiny, engine_settings("torch", "scrambled"))
    assert engine.image_path(1) == "torch/scrambled"  # the user asked for it: it runs
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per tower
    assert all("fails the fidelity gate" in w and "cosine to fp32 min" in w for w in warnings)


def test_the_probe_is_cached_and_the_next_start_measures_nothing(fresh_tiny, engine_settings, only_paths, monkeypatch):
    pytest.importorskip("onnxruntime")
    only_paths("torch/fp32", "onnxruntime/fp32")
    settings = engine_settings(max_batch=4)
    first = attach_engine(fresh_tiny, settings, probe=True)
    assert list((settings.data_dir / "store").rglob("*probe*"))  # the decision is in the store

    def no_measuring(*args, **kwargs):
        raise AssertionError("the probe ran again")

    monkeypatch.setattr(select, "probe_tower", no_measuring)
    monkeypatch.setattr(probe, "time_runners", no_measuring)
    from gloss_gen.model.clip_models import load_clip

    second = attach_engine(load_clip("vgloss-tiny", "none"), settings)  # a verb: probe=False, cache used
    assert second.describe() == first.describe()


@pytest.mark.parametrize("name", ["torch/fp32", "torch/bf16", "torch/int8", "onnxruntime/fp32",
                                  "onnxruntime/int8", "openvino/fp32"])
def test_each_path_can_be_forced_and_serves_both_towers(name, fresh_tiny, engine_settings, data_dir):
    spec = paths.PATHS[name]
    if not spec.available:
        pytest.skip(f"{spec.requires[0]} is not installed")
    from gloss_gen.imaging import ImageLimits, Preprocessor, load_tensor

    preprocessor = Preprocessor.from_open_clip(fresh_tiny.model)
    files = sorted((data_dir / "imagenet-sample").glob("*.JPEG"))[:4]
    pixels = torch.stack([load_tensor(p.read_bytes(), ImageLimits(), preprocessor) for p in files])
    prompts = gate_prompts(6)
    want_image, want_text = reference_embeddings(fresh_tiny, pixels, prompts)

    engine = attach_engine(fresh_tiny, engine_settings(*name.split("/")))
    assert engine.image_path(1) == engine.image_path(4) == engine.text.path == name
    got_image = fresh_tiny.encode_images(pixels)
    got_text = fresh_tiny.encode_text(prompts)
    assert got_image.dtype == torch.float32 and got_text.dtype == np.float32
    tolerance = 1e-5 if name.endswith("fp32") else 0.02  # bf16 / int8 are close, not equal
    assert (got_image * want_image).sum(-1).min() > 1 - tolerance
    assert (got_text * want_text).sum(-1).min() > 1 - tolerance
    assert np.allclose(np.linalg.norm(got_text, axis=-1), 1, atol=1e-5)


def test_a_missing_runtime_fails_with_one_line_naming_the_extra(fresh_tiny, engine_settings, monkeypatch):
    monkeypatch.setattr(paths.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as excinfo:
        attach_engine(fresh_tiny, engine_settings("openvino", "fp32"))
    message = str(excinfo.value)
    assert "\n" not in message and "pip install 'vgloss[openvino]'" in message


def test_auto_skips_runtimes_that_are_not_installed(fresh_tiny, engine_settings, only_paths, monkeypatch):
    only_paths("torch/fp32", "onnxruntime/fp32", "openvino/fp32")
    monkeypatch.setattr(paths.importlib.util, "find_spec", lambda name: None)
    engine = attach_engine(fresh_tiny, engine_settings(precision="fp32"), probe=True)
    assert engine.image_path(1) == engine.text.path == "torch/fp32"


def test_an_export_failure_falls_back_to_torch_with_one_warning(fresh_tiny, engine_settings, monkeypatch, caplog):
    pytest.importorskip("onnxruntime")
    from gloss_gen.inference.graph_export import GraphCache

    def failing_export(self, tower, tmp):
        raise RuntimeError("Exporting the operator 'aten::made_up' to ONNX is not supported")

    monkeypatch.setattr(GraphCache, "_export_onnx", failing_export)
    with caplog.at_level(logging.WARNING, logger="gloss_gen.inference"):
        engine = attach_engine(fresh_tiny, engine_settings("onnxruntime", "fp32"))
    assert engine.image_path(1) == engine.text.path == "torch/fp32"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "falling back to torch/fp32" in warnings[0]
    assert "failed to build" in engine.describe()["why"]["image"]


def test_unknown_combination_is_one_line(fresh_tiny, engine_settings):
    with pytest.raises(ConfigError, match="no inference path is openvino/int8; known paths"):
        attach_engine(fresh_tiny, engine_settings("openvino", "int8"))


def test_choose_routes_splits_batch_sizes_between_paths():
    timings = {"a": {"1": 0.010, "32": 0.320}, "b": {"1": 0.030, "32": 0.100}, "c": {"1": 0.001, "32": 0.002}}
    gated = []

    def passes(name):
        gated.append(name)
        return name != "c"

    routes = select.choose_routes(timings, 32, passes)
    # a: 10 + 10 ms per extra image, b: 30 + 2.26 ms per extra image: b wins from batch 4 on
    assert routes == [(1, 3, "a"), (4, 32, "b")]
    assert gated[0] == "c" and set(gated) == {"a", "b", "c"}


def test_settings_take_backend_and_the_new_precisions():
    from gloss_gen.core.config import Settings

    settings = Settings(_env_file=None, backend="openvino", precision="int8")
    assert (settings.backend, settings.precision) == ("openvino", "int8")
    assert Settings(_env_file=None).backend == "auto"
    with pytest.raises(ValueError):
        Settings(_env_file=None, backend="tensorrt")


def test_the_cli_reports_an_impossible_path_in_one_line(isolated_env, tmp_path, data_dir):
    import subprocess
    import sys

    image = sorted((data_dir / "imagenet-sample").glob("*.JPEG"))[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")}
    env |= isolated_env | {"VGLOSS_BACKEND": "openvino", "VGLOSS_PRECISION": "int8"}
    proc = subprocess.run([sys.executable, "-m", "gloss_gen.cli", "classify", str(image), "--class-set", "cifar10"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "no inference path is openvino/int8; known paths" in errors[0]
    assert "Traceback" not in proc.stderr
