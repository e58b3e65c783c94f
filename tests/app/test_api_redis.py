"""The server on a real Redis: classification survives an outage after start, and start-up waits for
a store that is not there yet. Each test runs its own redis-server on a free port, so it can stop it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis
from api_helpers import free_port, multipart, wait_ready

from gloss_gen.data.store import RedisBackend, Store

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class RedisProcess:
    """A redis-server on ``port``; with ``data_dir``, :meth:`stop` with ``keep_data`` saves the
    database there and the next :meth:`start` loads it (an outage that loses nothing)."""

    def __init__(self, port: int, data_dir: Path | None = None) -> None:
        self.port = port
        self.data_dir = data_dir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             *(["--dir", str(self.data_dir)] if self.data_dir else [])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise AssertionError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self, keep_data: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            if keep_data:
                redis.Redis(port=self.port).shutdown(save=True)
            else:
                self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture()
def redis_process():
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("redis-server is not installed in CI")
        pytest.skip("SKIPPED: redis-server is not installed; these tests start their own")
    process = RedisProcess(free_port())
    yield process
    process.stop()


def redis_store(url: str) -> Store:
    backend = RedisBackend(url, client=redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2))
    return Store(backend, f"vgloss-test-{uuid.uuid4().hex[:10]}:v1")


def test_classification_survives_a_redis_outage(app_factory, redis_process, jpeg_bytes):
    redis_process.start()
    client = app_factory(store=redis_store(redis_process.url))
    runtime = client.app.state.runtime
    before = client.post("/v1/classify", **multipart(jpeg_bytes[:2], top_k=3)).json()
    labels = ["a cat", "a dog"]
    with_labels = client.post("/v1/classify", **multipart(jpeg_bytes[:1], labels=labels)).json()

    redis_process.stop()
    runtime.registry.refresh_s = 0.0  # make the server try the store on every request

    # class sets and labels already in memory keep serving, with the same answers
    for _ in range(3):
        during = client.post("/v1/classify", **multipart(jpeg_bytes[:2], top_k=3))
        assert during.status_code == 200, during.text
        assert during.json() == before
    assert client.post("/v1/classify", **multipart(jpeg_bytes[:1], labels=labels)).json() == with_labels
    # new ad-hoc labels need only the model, so they are embedded without the store
    fresh_labels = client.post("/v1/classify", **multipart(jpeg_bytes[:1], labels=["a boat", "a tree"]))
    assert fresh_labels.status_code == 200

    # what needs the store says so
    not_loaded = client.post("/v1/classify", **multipart(jpeg_bytes[:1], class_set="stl10"))
    assert not_loaded.status_code == 503
    assert not_loaded.json()["error"]["code"] == "store_unavailable"
    assert "retry-after" in not_loaded.headers
    assert client.get("/v1/jobs/some-job").json()["error"]["code"] == "store_unavailable"
    assert client.get("/v1/class-sets").status_code == 503
    assert client.get("/readyz").status_code == 200  # it can still classify

    redis_process.start()  # same port, empty database
    back = client.post("/v1/classify", **multipart(jpeg_bytes[:1], class_set="stl10"))
    assert back.status_code == 200, back.text
    assert client.post("/v1/classify", **multipart(jpeg_bytes[:2], top_k=3)).json() == before


def test_startup_waits_for_the_store(app_factory, redis_process, jpeg_bytes):
    client = app_factory(store=redis_store(redis_process.url), ready=False)
    deadline = time.monotonic() + 30
    while "waiting for the store" not in client.get("/readyz").text:
        assert time.monotonic() < deadline, client.get("/readyz").text
        time.sleep(0.05)
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    redis_process.start()
    wait_ready(client, timeout_s=60)
    assert client.post("/v1/classify", **multipart(jpeg_bytes[:1])).status_code == 200


def test_shared_redis_store_serves_a_second_server(app_factory, redis_url, redis_namespace, jpeg_bytes):
    """With the project's Redis: what one server built, another loads without encoding text."""
    first = app_factory(store=Store(RedisBackend(redis_url), redis_namespace))
    a = first.post("/v1/classify", **multipart(jpeg_bytes[:2])).json()
    second = app_factory(store=Store(RedisBackend(redis_url), redis_namespace))
    b = second.post("/v1/classify", **multipart(jpeg_bytes[:2])).json()
    assert a == b
    assert "vgloss_text_prompts_encoded_total 0.0" in second.get("/metrics").text
