"""A `vgloss worker` rides out a Redis outage: Redis stops and starts again, the worker keeps
running and then processes the next job (real redis-server, real worker process)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
import redis
from test_queue import QueueEnv, _enqueue, _read_until, _stub_requests

from gloss_gen.data.classsets import ClassSet, ClassSpec, builtin_class_set
from gloss_gen.data.descriptions import read_jsonl
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


def _stop_redis_keeping_data(server: subprocess.Popen, port: int) -> None:
    """Shut redis-server down saving its data (``_start_redis`` on the same ``tmp`` loads it)."""
    redis.Redis(port=port).shutdown(save=True)
    server.wait(10)


@pytest.mark.slow
def test_describe_queue_client_rides_out_an_outage_and_a_rerun_reattaches(tmp_path):
    """Issue 24 item 11: re-running the same `vgloss describe --queue` while its job runs attaches
    to that job (no duplicate job, no class described twice), and both waiting clients ride out a
    Redis outage and report the job `done` (before: a second job was queued, and each client
    exited rc=2 on the outage)."""
    if shutil.which("redis-server") is None:
        pytest.skip("SKIPPED: redis-server is not installed")
    port = _free_port()
    server = _start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    qenv = QueueEnv(tmp=tmp_path, redis_url=url, client=redis.Redis.from_url(url))
    class_set = builtin_class_set("cifar10")
    out = tmp_path / "cifar10.vgloss.jsonl"
    command = [sys.executable, "-m", "gloss_gen.cli", "describe", "cifar10", "--method", "vgloss", "--queue",
               "--out", str(out), "--no-progress"]
    try:
        stub_log = qenv.start_stub(latency_ms=500)
        worker = qenv.start_worker("worker", "--concurrency", "1")  # starts while the clients do

        def client() -> subprocess.Popen:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=qenv.env(), cwd=tmp_path)
            qenv.procs.append(proc)
            return proc

        first = client()
        job_id = _read_until(first.stderr, r"queued job (\w+)", "the first client queued nothing")
        second = client()
        attached = _read_until(second.stderr, r"(attached to running job \w+|queued job \w+)",
                               "the second client said nothing")
        assert attached == f"attached to running job {job_id}"
        qenv.wait_ready([worker])
        store = open_store(qenv.settings)
        deadline = time.monotonic() + 60
        while (job := store.get_job(job_id)).done < 2:
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        assert not job.finished, "the job ended before the outage; the test proves nothing"

        _stop_redis_keeping_data(server, port)
        time.sleep(3.0)
        server = _start_redis(port, tmp_path)

        results = [proc.communicate(timeout=120) for proc in (first, second)]
        for proc, (stdout, stderr) in zip((first, second), results):
            assert proc.returncode == 0, stdout + stderr
            assert f"job {job_id}: done, 10/10 classes done, 0 failed" in stdout, stdout
            assert stderr.count("Redis unreachable, retrying") == 1, stderr
        assert [j for j in store.job_ids() if store.get_job(j).kind == "describe"] == [job_id]
        asked = [r["class"] for r in _stub_requests(stub_log)]
        assert len(asked) <= len(class_set) + 1, asked  # at most the class in flight at the outage twice
        assert [r.class_id for r in read_jsonl(out)] == class_set.ids
        assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    finally:
        qenv.cleanup()
        server.terminate()
        server.wait(10)


def test_a_waiting_client_gives_up_after_its_limit_and_says_how_to_reattach(tmp_path, monkeypatch, capsys):
    from gloss_gen import queue
    from gloss_gen.commands import describe_command
    from gloss_gen.commands.verb_support import UserError
    from gloss_gen.core.config import Settings
    from gloss_gen.data.job_records import JobRecord

    if shutil.which("redis-server") is None:
        pytest.skip("SKIPPED: redis-server is not installed")
    port = _free_port()
    server = _start_redis(port, tmp_path)
    settings = Settings(redis_url=f"redis://127.0.0.1:{port}/0", redis_namespace="vgloss:giveup:v1",
                        queue_name="vgloss:giveup:queue")
    open_store(settings).put_job(JobRecord.new("w1", "describe", builtin_class_set("cifar10"), "wordnet"))
    server.terminate()
    server.wait(10)
    monkeypatch.setattr(describe_command, "QUEUE_OUTAGE_LIMIT_S", 1.0)
    started = time.monotonic()
    with pytest.raises(UserError, match="re-run the same command to reattach") as raised:
        describe_command._follow(queue, "w1", settings, progress=False)
    assert 1.0 <= time.monotonic() - started < 10
    assert "job w1" in str(raised.value)
    assert capsys.readouterr().err.count("Redis unreachable, retrying") == 1


def test_two_writers_of_the_same_out_file_never_share_a_temporary_file(tmp_path):
    """Issue 24 item 11: two describe jobs writing the same `--out` both succeed (before: both
    wrote `<out>.tmp`, and the second rename failed, so a job with every class done reported
    `failed`). The inner write happens while the outer one is half written."""
    from gloss_gen.data.descriptions import DescriptionRecord, write_jsonl

    class_set = builtin_class_set("cifar10")
    out = tmp_path / "cifar10.wordnet.jsonl"

    def records(tag: str):
        for index, spec in enumerate(class_set.classes):
            record = DescriptionRecord.for_class(spec, class_set, index, "wordnet")
            record.descriptions = [f"{tag} {spec.name}"]
            if tag == "outer" and index == 5:
                write_jsonl(out, records("inner"))  # another job finishes meanwhile
            yield record

    write_jsonl(out, records("outer"))
    written = read_jsonl(out)
    assert [r.class_id for r in written] == class_set.ids
    assert {r.descriptions[0].split()[0] for r in written} == {"outer"}
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
