"""The describe queue end to end: real Redis, real `vgloss worker` processes, the LLM stub over HTTP.

Each test uses its own store namespace and queue name and deletes its keys afterwards. Without
Redis (conftest's ``redis_url``) the tests skip, except in CI, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from gloss_gen.core.config import Settings
from gloss_gen.data.classsets import ClassSet, builtin_class_set
from gloss_gen.data.descriptions import DescriptionRecord, read_jsonl, write_jsonl
from gloss_gen.data.store import open_store

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL_ID = "vgloss-tiny/none"
# arq's log lines for a task starting and finishing: "→ {task id}:{function}" / "← ..."
TASK_LOG = re.compile(r"([→←]) (\S+):(describe_class|embed_job)\b")


def _read_until(stream, pattern: str, failure: str) -> str:
    """Read a child's output until ``pattern`` matches; its first group."""
    seen = ""
    while not (match := re.search(pattern, seen)):
        line = stream.readline()
        assert line, f"{failure}: {seen!r}"
        seen += line
    return match.group(1)


@dataclass
class QueueEnv:
    """One test's namespace, queue, settings and the processes it started."""

    tmp: Path
    redis_url: str
    client: redis.Redis
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    procs: list[subprocess.Popen] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    openai_base_url: str = "http://127.0.0.1:9/v1"  # unreachable unless a test starts a stub
    lease_s: float = 4.0

    @property
    def namespace(self) -> str:
        return f"vgloss:test-{self.tag}:v1"

    @property
    def queue(self) -> str:
        return f"vgloss:test-{self.tag}:queue"

    @property
    def settings(self) -> Settings:
        return Settings(
            redis_url=self.redis_url, redis_namespace=self.namespace, queue_name=self.queue,
            queue_lease_s=self.lease_s, model="vgloss-tiny", pretrained="none", device="cpu",
            llm_model="stub-model", llm_max_retries=1, data_dir=self.tmp / "data",
        )

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VGLOSS_", "OPENAI_"))}
        env.update(
            PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            VGLOSS_REDIS_URL=self.redis_url, VGLOSS_REDIS_NAMESPACE=self.namespace,
            VGLOSS_QUEUE_NAME=self.queue, VGLOSS_QUEUE_LEASE_S=str(self.lease_s),
            VGLOSS_MODEL="vgloss-tiny", VGLOSS_PRETRAINED="none", VGLOSS_DEVICE="cpu",
            VGLOSS_BACKEND="torch", VGLOSS_PRECISION="fp32", VGLOSS_LLM_MAX_RETRIES="1", VGLOSS_DATA_DIR=str(self.tmp / "data"),
            OPENAI_BASE_URL=self.openai_base_url, OPENAI_API_KEY="test-key",
        )
        return env

    def start_stub(self, latency_ms: int) -> Path:
        log_path = self.tmp / "stub-requests.jsonl"
        proc = subprocess.Popen(
            [sys.executable, "-m", "gloss_gen.testing.llm_stub", "--port", "0",
             "--latency-ms", str(latency_ms), "--mode", "normal", "--log", str(log_path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env(), cwd=self.tmp,
        )
        self.procs.append(proc)
        self.openai_base_url = _read_until(proc.stdout, r"listening on (\S+)", "the LLM stub did not start")
        return log_path

    def start_worker(self, name: str, *args: str) -> tuple[subprocess.Popen, Path]:
        log_path = self.tmp / f"{name}.log"
        with log_path.open("w") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gloss_gen.cli", "worker", *args],
                stdout=fh, stderr=subprocess.STDOUT, env=self.env(), cwd=self.tmp,
            )
        self.procs.append(proc)
        return proc, log_path

    def wait_ready(self, workers: list[tuple[subprocess.Popen, Path]], timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        for proc, log_path in workers:
            while "vgloss worker ready" not in log_path.read_text():
                assert proc.poll() is None, f"worker exited early:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, f"worker not ready:\n{log_path.read_text()}"
                time.sleep(0.05)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout:
                proc.stdout.close()
        patterns = [f"vgloss:test-{self.tag}:*"] + [f"arq:*:{job_id}:*" for job_id in self.job_ids]
        for pattern in patterns:
            keys = list(self.client.scan_iter(match=pattern, count=1000))
            if keys:
                self.client.delete(*keys)


@pytest.fixture
def qenv(tmp_path, redis_url):
    client = redis.Redis.from_url(redis_url)
    env = QueueEnv(tmp=tmp_path, redis_url=redis_url, client=client)
    try:
        yield env
    finally:
        env.cleanup()
        client.close()


def _enqueue(qenv: QueueEnv, class_set: ClassSet, method: str, **kwargs) -> str:
    from gloss_gen.queue import enqueue_describe_job

    job_id = enqueue_describe_job(class_set, method, settings=qenv.settings, **kwargs)
    qenv.job_ids.append(job_id)
    return job_id


def _task_events(log_path: Path, function: str) -> list[tuple[str, str]]:
    """(arrow, task id) for each start/finish line of ``function`` in a worker log."""
    return [(m.group(1), m.group(2)) for m in TASK_LOG.finditer(log_path.read_text())
            if m.group(3) == function]


def _stub_requests(log_path: Path) -> list[dict]:
    if not log_path.exists():
        return []
    return [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]


def test_three_workers_one_killed_every_class_described_once(qenv):
    imagenet = builtin_class_set("imagenet1k")
    class_set = ClassSet(name=f"qtest-{qenv.tag}", classes=imagenet.classes[:100])
    by_name = {c.name.lower(): c.id for c in class_set.classes}
    stub_log = qenv.start_stub(latency_ms=300)
    workers = [qenv.start_worker(f"worker{i}", "--concurrency", "4") for i in range(3)]
    qenv.wait_ready(workers)
    out = qenv.tmp / "out.jsonl"
    job_id = _enqueue(qenv, class_set, "vgloss", out=out)
    store = open_store(qenv.settings)
    records_key = f"{qenv.namespace}:qjob:{job_id}:records"

    first_seen: dict[str, float] = {}  # class id -> first time the test saw its record

    def watch_records() -> None:
        now = time.time()
        for raw in qenv.client.hkeys(records_key):
            first_seen.setdefault(raw.decode(), now)

    victim, victim_log = workers[0]

    def victim_in_flight() -> set[str]:
        """Classes whose task the victim started and has not finished, per arq's log lines."""
        events = _task_events(victim_log, "describe_class")
        started = {task for arrow, task in events if arrow == "→"}
        finished = {task for arrow, task in events if arrow == "←"}
        return {task.split(":", 1)[1] for task in started - finished}

    # Progress is readable mid-run. Once a fifth of the classes are recorded, kill one worker
    # while it has tasks running.
    mid_run = None
    deadline = time.monotonic() + 60
    while True:
        watch_records()
        state = store.get_job(job_id).to_json()
        if state["done"] >= 20:
            mid_run = mid_run or state
            if victim_in_flight():
                break
        assert time.monotonic() < deadline and state["done"] < 90, f"no kill window: {state}"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.time()
    watch_records()
    in_flight_at_kill = victim_in_flight()
    assert in_flight_at_kill
    assert mid_run["state"] == "running" and 20 <= mid_run["done"] < 100, mid_run
    assert mid_run["total"] == 100 and mid_run["failed"] == 0

    deadline = time.monotonic() + 60
    while (state := store.get_job(job_id).to_json())["state"] not in ("done", "failed"):
        watch_records()
        assert time.monotonic() < deadline, f"job did not finish: {state}"
        time.sleep(0.02)
    watch_records()

    # Every class described exactly once in the result, in class-set order.
    assert state["state"] == "done", state
    assert (state["done"], state["failed"], state["errors"]) == (100, 0, [])
    records = {k.decode(): json.loads(v) for k, v in qenv.client.hgetall(records_key).items()}
    assert sorted(records) == sorted(class_set.ids)
    assert all(r["descriptions"] and "error" not in r for r in records.values())
    stored = store.get_description_records(state["descriptions"])
    assert [r.class_id for r in stored] == class_set.ids
    assert [r.class_id for r in read_jsonl(out)] == class_set.ids

    # The stub saw each class once, except classes the victim had in flight; nothing was asked
    # again once its record was stored.
    requests = _stub_requests(stub_log)
    per_class = Counter(by_name[r["class"].lower()] for r in requests)
    assert set(per_class) == set(class_set.ids)
    duplicated = {cid for cid, n in per_class.items() if n > 1}
    assert duplicated <= in_flight_at_kill, (duplicated, in_flight_at_kill)
    assert all(n <= 2 for n in per_class.values()), per_class.most_common(3)
    for request in requests:
        cid = by_name[request["class"].lower()]
        assert request["time"] < first_seen[cid], f"{cid} requested after its record was stored"
    asked_before_kill = {by_name[r["class"].lower()] for r in requests if r["time"] < killed_at}
    asked_again = {by_name[r["class"].lower()] for r in requests if r["time"] > killed_at} & asked_before_kill
    assert asked_again == duplicated, "a duplicate request came before the kill"

    # Another worker re-ran each task the victim had running, as the task's second try.
    survivors_log = "".join(path.read_text() for _, path in workers[1:])
    for cid in in_flight_at_kill:
        retry = re.search(rf"→ {job_id}:{cid}:describe_class\(.*\) try=2", survivors_log)
        assert retry, f"the victim's task for {cid} was not run again"

    # The embed step ran once and its classifier serves the class set.
    embeds = [e for _, path in workers for e in _task_events(path, "embed_job") if e[0] == "→"]
    assert len(embeds) == 1, embeds
    assert state["embed_runs"] == 1
    assert store.get_active_key(TINY_MODEL_ID, class_set.name) == state["classifier"]
    classifier = store.get_classifier(state["classifier"])
    assert classifier.num_classes == 100 and classifier.class_set.ids == class_set.ids

    # The survivors keep serving; SIGTERM stops them cleanly.
    for proc, log_path in workers[1:]:
        assert proc.poll() is None, log_path.read_text()
        proc.terminate()
        assert proc.wait(timeout=60) == 0, log_path.read_text()


def test_describe_queue_cli_burst_worker_and_a_class_that_kept_killing_workers(qenv):
    """`vgloss describe --queue` queues, waits and reports; a `--burst` worker runs the job and
    exits. One task's arq retry counter says workers already died on it MAX_ATTEMPTS times: it
    is recorded as failed and the job still completes."""
    from gloss_gen.queue import MAX_ATTEMPTS, describe_task_id

    class_set = builtin_class_set("cifar10")
    out = qenv.tmp / "cifar10.wordnet.jsonl"
    cli = subprocess.Popen(
        [sys.executable, "-m", "gloss_gen.cli", "describe", "cifar10", "--method", "wordnet",
         "--queue", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=qenv.env(), cwd=qenv.tmp,
    )
    qenv.procs.append(cli)
    job_id = _read_until(cli.stderr, r"queued job (\w+)", "`vgloss describe --queue` queued nothing")
    qenv.job_ids.append(job_id)
    cursed = class_set.ids[3]

    # The queued task is JSON, never pickle.
    payload = json.loads(qenv.client.get(f"arq:job:{describe_task_id(job_id, cursed)}"))
    assert payload["f"] == "describe_class" and payload["a"] == [job_id, cursed]
    qenv.client.set(f"arq:retry:{describe_task_id(job_id, cursed)}", MAX_ATTEMPTS)
    assert open_store(qenv.settings).get_job(job_id).state == "queued"

    worker, log_path = qenv.start_worker("burst", "--burst", "--concurrency", "3")
    stdout, stderr = cli.communicate(timeout=120)
    assert worker.wait(timeout=60) == 0, log_path.read_text()
    assert cli.returncode == 1, stdout + stderr  # one class failed
    assert "10/10 classes done, 1 failed" in stdout and cursed in stdout, stdout

    store = open_store(qenv.settings)
    state = store.get_job(job_id).to_json()
    assert state["state"] == "done", state
    assert (state["total"], state["done"], state["failed"]) == (10, 10, 1)
    assert [e["class_id"] for e in state["errors"]] == [cursed]
    assert f"{MAX_ATTEMPTS} times" in state["errors"][0]["error"]
    records = store.get_description_records(state["descriptions"])
    assert [r.class_id for r in records] == class_set.ids
    assert all(r.ok and r.method == "wordnet" and r.descriptions for r in records if r.class_id != cursed)
    assert [r.class_id for r in read_jsonl(out)] == class_set.ids
    assert store.get_active_key(TINY_MODEL_ID, "cifar10") == state["classifier"]


def test_recorded_classes_are_not_described_again(qenv):
    """Classes already in ``out`` (an earlier run) and a class recorded by a worker that died
    before its task finished are skipped without an LLM request. Each LLM answer takes longer
    than the worker's claim on its task lasts unrenewed, so a claim that lapsed would show as
    a second request."""
    from gloss_gen.queue import wait_for_job

    class_set = builtin_class_set("cifar10")
    qenv.lease_s = 2.0
    stub_log = qenv.start_stub(latency_ms=5000)
    out = qenv.tmp / "cifar10.vgloss.jsonl"
    earlier = []
    for index, spec in enumerate(class_set.classes[:3]):
        record = DescriptionRecord.for_class(spec, class_set, index, "vgloss")
        record.descriptions = [f"an earlier description of {spec.name}"]
        earlier.append(record)
    failed = DescriptionRecord.for_class(class_set.classes[3], class_set, 3, "vgloss")
    failed.error = "HTTP 500 from the LLM endpoint"
    write_jsonl(out, [*earlier, failed])

    job_id = _enqueue(qenv, class_set, "vgloss", out=out)
    store = open_store(qenv.settings)
    assert store.get_job(job_id).done == 3

    # A worker recorded class 4 and died before its task finished: the task is still queued.
    orphan = DescriptionRecord.for_class(class_set.classes[4], class_set, 4, "vgloss")
    orphan.descriptions = ["recorded by a worker that died"]

    assert store.update_job(job_id, lambda job: job.count(orphan), orphan)
    assert qenv.client.zcard(qenv.queue) == 7  # 10 classes less the 3 in ``out``

    proc, log_path = qenv.start_worker("burst", "--burst")
    state = wait_for_job(job_id, qenv.settings, timeout_s=60).to_json()
    assert proc.wait(timeout=30) == 0, log_path.read_text()
    assert state["state"] == "done" and (state["done"], state["failed"]) == (10, 0), state

    asked = Counter(r["class"] for r in _stub_requests(stub_log))
    assert sorted(asked) == sorted(c.name for c in class_set.classes[3:4] + class_set.classes[5:])
    assert set(asked.values()) == {1}
    lines = read_jsonl(out)
    assert [r.class_id for r in lines] == class_set.ids
    assert lines[0].descriptions == earlier[0].descriptions
    assert lines[4].descriptions == orphan.descriptions
    assert lines[3].ok and lines[3].descriptions


def test_worker_command_needs_redis(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "gloss_gen.cli", "worker", "--burst"],
        check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )
    assert result.returncode == 2
    assert "VGLOSS_REDIS_URL" in result.stderr and result.stderr.count("\n") == 1


def test_api_class_set_jobs_can_run_on_the_worker_queue(qenv, sample_photos):
    """With VGLOSS_JOBS_ON_QUEUE, POST /v1/class-sets queues the job for `vgloss worker`; the api
    reports its progress from the store and serves the set once the worker's embed step is done."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = qenv.settings.model_copy(
        update={"jobs_on_queue": True, "admin_keys": ["admin-key"], "default_class_set": "cifar10"}
    )
    image = sample_photos[0].read_bytes()
    with TestClient(create_app(settings)) as api:
        deadline = time.monotonic() + 120
        while api.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, api.get("/readyz").text
            time.sleep(0.1)
        created = api.post(
            "/v1/class-sets",
            headers={"authorization": "Bearer admin-key"},
            json={"name": "pets", "classes": [{"name": "tabby cat"}, {"name": "beagle"}, {"name": "goldfish"}],
                  "method": "wordnet"},
        )
        assert created.status_code == 202, created.text
        job_id = created.json()["job_id"]
        qenv.job_ids.append(job_id)
        assert api.get(f"/v1/jobs/{job_id}").json()["state"] == "queued"  # nothing runs in the api

        worker, log_path = qenv.start_worker("burst", "--burst")
        worker.wait(timeout=180)
        assert worker.returncode == 0, log_path.read_text()
        job = api.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "done" and job["done"] == job["total"] == 3, job

        result = api.post("/v1/classify", files={"images": ("cat.jpg", image)}, data={"class_set": "pets"})
        assert result.status_code == 200, result.text
        assert {p["label"] for p in result.json()["results"][0]["predictions"]} == {"tabby cat", "beagle", "goldfish"}


def test_watch_job_yields_records_until_final_and_prints_nothing(redis_url, redis_namespace, capsys):
    import threading

    from gloss_gen.data.job_records import JobRecord
    from gloss_gen.queue import QueueError, watch_job, worker_serving

    settings = Settings(redis_url=redis_url, redis_namespace=redis_namespace,
                        queue_name=f"{redis_namespace}:queue")
    store = open_store(settings)
    store.put_job(JobRecord.new("w1", "describe", builtin_class_set("cifar10"), "wordnet"))

    def finish() -> None:
        time.sleep(0.3)
        store.update_job("w1", lambda job: job.mark("running"))
        time.sleep(0.3)
        store.update_job("w1", lambda job: job.mark("done", classifier="k"))

    thread = threading.Thread(target=finish)
    thread.start()
    seen = [job.state for job in watch_job("w1", settings, poll_s=0.05, timeout_s=30)]
    thread.join()
    assert seen[0] == "queued" and "running" in seen and seen[-1] == "done" and seen.count("done") == 1
    assert capsys.readouterr() == ("", "")
    assert not worker_serving(settings)

    store.put_job(JobRecord.new("w2", "describe", builtin_class_set("cifar10"), "wordnet"))
    with pytest.raises(TimeoutError, match="still queued"):
        list(watch_job("w2", settings, poll_s=0.05, timeout_s=0.2))
    with pytest.raises(QueueError, match="no job 'nope'"):
        next(watch_job("nope", settings))


def _colour_examples(labels: list[str], per_class: int) -> tuple[list, list[str]]:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = [(200, 40, 40), (40, 180, 60), (40, 60, 200), (220, 200, 40)]
    files, names = [], []
    for label, rgb in zip(labels, colours):
        for i in range(per_class):
            buffer = io.BytesIO()
            noisy = np.clip(np.asarray(rgb)[None, None, :] + rng.normal(0, 60, (32, 32, 3)), 0, 255)
            Image.fromarray(noisy.astype(np.uint8)).save(buffer, format="PNG")
            files.append(("images", (f"{label}-{i}.png", buffer.getvalue(), "image/png")))
            names.append(label)
    return files, names


def test_api_adapter_jobs_run_on_the_worker_queue(qenv):
    """With VGLOSS_JOBS_ON_QUEUE, POST /v1/class-sets/{name}/adapters queues the fit for `vgloss
    worker`: a tip adapter the worker writes to the store is served by the api on its refresh, and
    a ClipFit job leaves its delta under the worker's data directory."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = qenv.settings.model_copy(
        update={"jobs_on_queue": True, "admin_keys": ["admin-key"], "default_class_set": "cifar10",
                "backend": "torch", "precision": "fp32"}
    )
    auth = {"authorization": "Bearer admin-key"}
    labels = ["airplane", "automobile", "bird", "cat"]
    files, names = _colour_examples(labels, per_class=4)
    with TestClient(create_app(settings)) as api:
        deadline = time.monotonic() + 120
        while api.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, api.get("/readyz").text
            time.sleep(0.1)
        api.app.state.runtime.registry.refresh_s = 0.0  # pick up the worker's adapter on the next request
        added = api.post("/v1/class-sets/cifar10/examples", files=files, data={"labels": names}, headers=auth)
        assert added.status_code == 200, added.text
        tip = api.post("/v1/class-sets/cifar10/adapters", json={"method": "tip", "shots": 4}, headers=auth)
        fit = api.post("/v1/class-sets/cifar10/adapters", json={"method": "clipfit", "shots": 4, "epochs": 2},
                       headers=auth)
        assert (tip.status_code, fit.status_code) == (202, 202), (tip.text, fit.text)
        tip_id, fit_id = tip.json()["job_id"], fit.json()["job_id"]
        qenv.job_ids += [tip_id, fit_id]
        # nothing runs in the api, and a queued job has no lease in its record to expire
        assert [api.get(f"/v1/jobs/{j}").json()["state"] for j in (tip_id, fit_id)] == ["queued", "queued"]

        worker, log_path = qenv.start_worker("burst", "--burst")
        worker.wait(timeout=180)
        assert worker.returncode == 0, log_path.read_text()
        tip_job, fit_job = (api.get(f"/v1/jobs/{job_id}").json() for job_id in (tip_id, fit_id))
        assert tip_job["state"] == "done" and tip_job["kind"] == "adapter", tip_job
        assert fit_job["state"] == "done" and fit_job["epochs_run"] == 2, fit_job
        assert Path(fit_job["delta"]).is_file() and Path(fit_job["delta"]).parent == (qenv.tmp / "data" / "clipfit").resolve()
        assert fit_job["adapted_model"].startswith(TINY_MODEL_ID + "+clipfit-")

        image = files[0][1][1]
        api.post("/v1/classify", files={"images": ("a.png", image)}, data={"class_set": "cifar10"})  # refresh
        deadline = time.monotonic() + 30
        while True:
            result = api.post("/v1/classify", files={"images": ("a.png", image)}, data={"class_set": "cifar10"})
            assert result.status_code == 200, result.text
            if result.json().get("adapter") == tip_job["adapter"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert result.json().get("adapter") == tip_job["adapter"]
