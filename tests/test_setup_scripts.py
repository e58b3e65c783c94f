"""The README's two set-up commands, as a newcomer types them: ./scripts/serve.sh refuses in one
line where the CLIP weights cannot be downloaded and serves with --offline; ./scripts/test.sh is
what CI runs (this suite is its proof)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")}
    env.update(VGLOSS_MODEL="vgloss-tiny", VGLOSS_DATA_DIR=str(tmp_path / "data"), VGLOSS_DEVICE="cpu",
               VGLOSS_DEFAULT_CLASS_SET="cifar10", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf"))
    env.update(extra)
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_sh_without_weights_says_so_in_one_line_and_names_offline(tmp_path):
    done = subprocess.run([str(REPO / "scripts" / "serve.sh"), "--port", str(_free_port())],
                          env=_env(tmp_path, VGLOSS_MODEL="ViT-B-32"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "cannot load CLIP ViT-B-32" in lines[0] and "./scripts/serve.sh --offline" in lines[0]


def test_serve_sh_offline_serves_with_random_weights(tmp_path):
    port = _free_port()
    server = subprocess.Popen([str(REPO / "scripts" / "serve.sh"), "--offline", "--port", str(port)],
                              env=_env(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.2)
        assert ready.json()["model"] == "vgloss-tiny/none"
        assert ready.json()["default_class_set"] == "cifar10"
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert "RANDOM weights" in output


def test_ci_runs_the_readme_test_command():
    run = (REPO / ".ci" / "run").read_text()
    assert "./scripts/test.sh" in run
    script = (REPO / "scripts" / "test.sh").read_text()
    assert "lint-imports" in script and "pytest" in script and "redis-server" in script
