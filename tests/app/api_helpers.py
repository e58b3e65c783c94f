"""Helpers for the server tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from gloss_gen.core.config import Settings

READY_TIMEOUT_S = 120.0


def make_settings(data_dir: Path, **overrides) -> Settings:
    values = {
        "model": "vgloss-tiny",
        "pretrained": "none",
        "device": "cpu",
        "backend": "torch",  # the fp32 reference path: no start-up probe (tests/inference covers auto)
        "precision": "fp32",
        "data_dir": data_dir,
        "default_class_set": "cifar10",
        "redis_url": None,
        "api_keys": [],
        "admin_keys": [],
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def wait_ready(client: TestClient | httpx.Client, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            return
        if "start-up failed" in response.text:
            raise AssertionError(f"server failed to start: {response.text}")
        time.sleep(0.05)
    raise AssertionError(f"server not ready after {timeout_s}s: {client.get('/readyz').text}")


def runtime_of(client: TestClient):
    return client.app.state.runtime


def metric_value(metrics_text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The sum of a metric's samples in Prometheus text whose labels include ``labels`` (0 if none)."""
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    for match in pattern.finditer(metrics_text):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if labels is None or all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def multipart(images: list[bytes], names: list[str] | None = None, **fields) -> dict:
    """httpx keyword arguments for a multipart classify request."""
    names = names or [f"image{i}.jpg" for i in range(len(images))]
    files = [("images", (name, data, "image/jpeg")) for name, data in zip(names, images)]
    data = {}
    for key, value in fields.items():
        if isinstance(value, bool):
            value = str(value).lower()
        elif not isinstance(value, (str, list)):
            value = str(value)
        data[key] = value
    return {"files": files, "data": data}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """A real uvicorn serving an app on a free loopback port, in a background thread."""

    def __init__(self, app, http: type | str = "auto") -> None:
        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="on",
                                http=http)
        self.server = uvicorn.Server(config)
        self.port = config.port
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def runtime(self):
        return self.app.state.runtime

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.02)
        with httpx.Client(base_url=self.url, timeout=10) as http:
            wait_ready(http)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def assert_same_predictions(got: list[dict], expected: list[dict], tol: float = 1e-5) -> None:
    """Same classes in the same order with the same numbers, up to float noise.

    Batches of different sizes take different BLAS paths, so scores may differ in the last bits;
    where two neighbouring scores are closer than ``tol`` their order may differ too.
    """
    assert len(got) == len(expected)
    for rank, (a, b) in enumerate(zip(got, expected)):
        assert set(a) == set(b)
        assert a["score"] == pytest.approx(b["score"], abs=tol)
        assert a["similarity"] == pytest.approx(b["similarity"], abs=tol)
        if a["class_id"] == b["class_id"]:
            assert a.get("evidence") == b.get("evidence")
        else:  # a near tie swapped: the neighbours must be the same two classes
            assert {p["class_id"] for p in got[rank : rank + 2]} == {p["class_id"] for p in expected[rank : rank + 2]}


REPO_ROOT = Path(__file__).resolve().parents[2]


def start_vgloss_serve(tmp_path: Path, port: int, log_path: Path, wait: bool = True, **settings: str):
    """A real ``vgloss serve`` subprocess on ``port`` (vgloss-tiny, torch fp32, cifar10, data in
    ``tmp_path/data``; ``settings`` are more or other ``VGLOSS_*`` variables), logging to
    ``log_path``; with ``wait``, returned once ``/readyz`` answers 200."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")}
    env.update(
        VGLOSS_MODEL="vgloss-tiny", VGLOSS_PRETRAINED="none", VGLOSS_DEVICE="cpu",
        VGLOSS_BACKEND="torch", VGLOSS_PRECISION="fp32",  # the fp32 reference path: no start-up probe
        VGLOSS_DATA_DIR=str(tmp_path / "data"), VGLOSS_DEFAULT_CLASS_SET="cifar10",
        PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    env.update(settings)
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "gloss_gen.cli", "serve", "--port", str(port)],
                                  cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    if wait:
        try:
            wait_for_vgloss_serve(server, port, log_path)
        except BaseException:
            server.kill()  # never left running behind a failed start
            server.wait(30)
            raise
    return server


def wait_for_vgloss_serve(server, port: int, log_path: Path, timeout_s: float = 180.0) -> None:
    """Until ``/readyz`` answers 200; the server's log in the failure if it exits or never does."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert server.poll() is None, log_path.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)
