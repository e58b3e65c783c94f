"""The first minute on a fresh data dir with the default settings (VGLOSS_BACKEND=auto): the
server is ready on the reference path at once and probes in the background, SIGTERM ends it within
5 s in any phase, and a CLI verb embeds a built-in set without probing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from api_helpers import REPO_ROOT, free_port, start_vgloss_serve

pytestmark = pytest.mark.slow
AUTO = {"VGLOSS_BACKEND": "auto", "VGLOSS_PRECISION": "auto"}


def _stopped_within(server: subprocess.Popen, seconds: float) -> float:
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=seconds + 10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(30)
        pytest.fail(f"SIGTERM did not end the server within {seconds + 10:.0f} s")
    return time.monotonic() - started


def test_ready_on_the_reference_path_then_the_probe_runs_in_the_background_and_sigterm_stops_it(tmp_path):
    pytest.importorskip("onnxruntime")
    port = free_port()
    log = tmp_path / "serve.log"
    server = start_vgloss_serve(tmp_path, port, log, **AUTO, VGLOSS_MODEL="ViT-B-32")
    try:
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).json()
        inference = ready["inference"]
        assert inference["image"][0]["path"] == inference["text"] == "torch/fp32"  # served at once
        assert "onnxruntime/fp32" in inference["pending"]
        assert inference["probe"] == "running"
        assert "until a probe has measured" in inference["why"]["image"]
        classified = httpx.post(f"http://127.0.0.1:{port}/v1/classify", timeout=60,
                                files={"images": ("x.jpg", _jpeg())})
        assert classified.status_code == 200, classified.text  # serving while probing
        elapsed = _stopped_within(server, 5)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(30)
    assert elapsed < 5, f"SIGTERM during the background probe took {elapsed:.1f} s\n{log.read_text()[-3000:]}"
    assert "probing" in log.read_text()


@pytest.mark.parametrize("after_s", [1.0, 3.0], ids=["loading-model", "building-classifier"])
def test_sigterm_during_start_up_ends_the_server_within_5_s(tmp_path, after_s):
    port = free_port()
    log = tmp_path / "serve.log"
    server = start_vgloss_serve(tmp_path, port, log, wait=False, **AUTO, VGLOSS_MODEL="ViT-B-32",
                                VGLOSS_DEFAULT_CLASS_SET="imagenet1k")
    time.sleep(after_s)
    try:
        elapsed = _stopped_within(server, 5)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(30)
    assert elapsed < 5, f"SIGTERM {after_s}s into start-up took {elapsed:.1f} s\n{log.read_text()[-3000:]}"


def test_embed_of_a_built_in_set_on_a_fresh_data_dir_needs_no_probe(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")}
    env.update(VGLOSS_PRETRAINED="none", VGLOSS_DATA_DIR=str(tmp_path / "data"), VGLOSS_DEVICE="cpu",
               PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "gloss_gen.cli", "embed", "cifar10", "--method", "wordnet"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "probing" not in done.stderr
    assert elapsed < 60, f"vgloss embed cifar10 --method wordnet took {elapsed:.0f} s on a fresh data dir"


def _jpeg() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 80, 40)).save(out, "JPEG")
    return out.getvalue()


def test_the_probe_verb_prints_its_table_and_caches_the_decision(tmp_path):
    pytest.importorskip("onnxruntime")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")}
    env.update(VGLOSS_MODEL="vgloss-tiny", VGLOSS_PRETRAINED="none", VGLOSS_DATA_DIR=str(tmp_path / "data"),
               VGLOSS_DEVICE="cpu", VGLOSS_MAX_BATCH="4",
               PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    cli = [sys.executable, "-m", "gloss_gen.cli", "probe"]
    first = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "image  torch/fp32" in first.stdout and "onnxruntime/fp32" in first.stdout
    assert "serves: image" in first.stdout
    # a later verb (and a server) uses the cached decision: nothing is pending
    port = free_port()
    log = tmp_path / "serve.log"
    server = start_vgloss_serve(tmp_path, port, log, VGLOSS_BACKEND="auto", VGLOSS_PRECISION="auto",
                                VGLOSS_MAX_BATCH="4")
    try:
        inference = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).json()["inference"]
        assert inference["pending"] == [] and inference["probe"] == "none"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
