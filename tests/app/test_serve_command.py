"""``vgloss serve`` as a user runs it: a subprocess on a loopback port, stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from api_helpers import free_port, start_vgloss_serve

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_vgloss_serve_starts_classifies_and_stops_cleanly(tmp_path, sample_photos):
    port = free_port()
    log_path = tmp_path / "server.log"
    server = start_vgloss_serve(tmp_path, port, log_path, VGLOSS_HEADER_TIMEOUT_S="1")
    base = f"http://127.0.0.1:{port}"
    try:
        image = sample_photos[0]
        response = httpx.post(
            f"{base}/v1/classify",
            files={"images": (image.name, image.read_bytes(), "image/jpeg")},
            headers={"X-Request-ID": "serve-test-1"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["class_set"] == "cifar10"
        assert httpx.get(f"{base}/docs", timeout=5).status_code == 200
        _assert_a_dripped_head_is_cut(port, timeout_s=1.0)
    finally:
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(60)
    # uvicorn re-raises the signal once it has shut down gracefully
    assert exit_code in (0, -signal.SIGTERM), log_path.read_text()
    assert "Application shutdown complete." in log_path.read_text()
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    access = [r for r in records if r["logger"] == "app.access" and r["path"] == "/v1/classify"]
    assert access and access[0]["request_id"] == "serve-test-1" and access[0]["status"] == 200


def _assert_a_dripped_head_is_cut(port: int, timeout_s: float) -> None:
    """A head that never completes gets a 408 and the connection closed (VGLOSS_HEADER_TIMEOUT_S)."""
    import socket

    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s + 5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer, answer[:200]
    assert time.monotonic() - started < timeout_s + 2


def test_vgloss_serve_rejects_a_bad_port():
    result = subprocess.run(
        [sys.executable, "-m", "gloss_gen.cli", "serve", "--port", "70000"],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "--port" in result.stderr


def _serve_env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")}
    env.update(VGLOSS_MODEL="vgloss-tiny", VGLOSS_PRETRAINED="none", VGLOSS_DEVICE="cpu",
               VGLOSS_DATA_DIR=str(tmp_path / "data"), VGLOSS_DEFAULT_CLASS_SET="cifar10",
               PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    env.update(extra)
    return env


def test_vgloss_serve_reports_start_up_errors_in_one_line_before_loading_the_model(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = [
            ((), {}, f"cannot listen on 127.0.0.1:{port}"),
            (("--port", "0"), {"VGLOSS_DEFAULT_CLASS_SET": "no-such-set"}, "VGLOSS_DEFAULT_CLASS_SET='no-such-set'"),
            (("--port", "0"), {"VGLOSS_DEFAULT_CLASS_SET": "mine.yaml"}, "class set file mine.yaml does not exist"),
        ]
        for args, extra, message in cases:
            result = subprocess.run(
                [sys.executable, "-m", "gloss_gen.cli", "serve", "--port", str(port), *args],
                check=False, cwd=tmp_path, env=_serve_env(tmp_path, **extra), capture_output=True, text=True,
                timeout=60,
            )
            assert result.returncode == 2, result.stderr
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("vgloss serve: error:") and message in lines[0], lines


def test_vgloss_serve_without_wordnet_exits_2(tmp_path, monkeypatch, capsys):
    from gloss_gen.cli import main
    from gloss_gen.core.config import get_settings
    from gloss_gen.data import wordnet

    for key, value in _serve_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(wordnet, "_candidate_roots", lambda extra: [])
    monkeypatch.setattr(wordnet, "DEBIAN_WORDNET_DIR", tmp_path / "no-wordnet")
    get_settings.cache_clear()
    try:
        assert main(["serve", "--port", "0"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err.strip()
    assert err.startswith("vgloss serve: error:") and "WordNet" in err and "\n" not in err
