"""A `vgloss worker` rides out a Redis outage: Redis stops and starts again, the worker keeps
running and then processes the next job (real redis-server, real worker process)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis
from test_queue import QueueEnv, _enqueue

from gloss_gen.data.classsets import ClassSet, ClassSpec
from gloss_gen.data.store import open_store


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_redis(port: int, tmp) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


@pytest.mark.slow
def test_worker_survives_a_redis_restart_and_takes_the_next_job(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("SKIPPED: redis-server is not installed")
    port = _free_port()
    server = _start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    qenv = QueueEnv(tmp=tmp_path, redis_url=url, client=redis.Redis.from_url(url))
    try:
        worker, log_path = qenv.start_worker("worker")
        qenv.wait_ready([(worker, log_path)])
        server.terminate()
        server.wait(10)
        deadline = time.monotonic() + 60
        while "lost the connection to Redis" not in log_path.read_text():
            assert worker.poll() is None, f"the worker exited on the outage:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        server = _start_redis(port, tmp_path)
        class_set = ClassSet("fruit", [ClassSpec("apple", "apple"), ClassSpec("banana", "banana")])
        job_id = _enqueue(qenv, class_set, "classname")
        store = open_store(qenv.settings)
        deadline = time.monotonic() + 120
        while (job := store.get_job(job_id)) is None or not job.finished:
            assert worker.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"job not finished: {job}\n{log_path.read_text()}"
            time.sleep(0.2)
        assert job.state == "done", job
    finally:
        qenv.cleanup()
        server.terminate()
        server.wait(10)
