"""Class-set jobs that outlive their server or a store outage (issue: jobs that survive)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from api_helpers import free_port, start_vgloss_serve

from gloss_gen.data.classsets import ClassSet, ClassSpec
from gloss_gen.data.job_records import JobRecord
from gloss_gen.data.store import DirectoryBackend, Store

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin-key"


def _job(store: Store, job_id: str, lease_in_s: float | None) -> None:
    job = JobRecord.new(job_id, "class-set", ClassSet("birds", [ClassSpec("hen", "hen")]), "vgloss")
    job.mark("running")
    if lease_in_s is not None:
        job.mark(owner="other", lease_expires_at=time.time() + lease_in_s)
    store.put_job(job)


def test_reconcile_fails_only_jobs_whose_lease_expired(tmp_path):
    from app.services.job_runner import ORPHANED, reconcile_orphaned_jobs

    store = Store(DirectoryBackend(tmp_path / "store"))
    _job(store, "dead", lease_in_s=-1)
    _job(store, "legacy", lease_in_s=None)  # written before leases existed
    _job(store, "alive", lease_in_s=60)
    assert reconcile_orphaned_jobs(store) == 2
    assert store.get_job("dead").state == "failed" and store.get_job("dead").extra["error"] == ORPHANED
    assert store.get_job("legacy").state == "failed"
    assert store.get_job("alive").state == "running"


def _serve(tmp_path: Path, port: int, log_name: str, stub_url: str) -> subprocess.Popen:
    return start_vgloss_serve(
        tmp_path, port, tmp_path / log_name,
        VGLOSS_ADMIN_KEYS=ADMIN, VGLOSS_QUEUE_LEASE_S="0.5", VGLOSS_LLM_CONCURRENCY="1",
        OPENAI_BASE_URL=stub_url, OPENAI_API_KEY="test-key",
    )


@pytest.mark.slow
def test_a_job_of_a_killed_server_is_failed_with_a_reason_after_restart(tmp_path):
    from gloss_gen.testing import LLMStub

    with LLMStub(latency_ms=2000) as stub:
        port = free_port()
        server = _serve(tmp_path, port, "first.log", stub.url)
        base = f"http://127.0.0.1:{port}"
        try:
            created = httpx.post(f"{base}/v1/class-sets", headers={"authorization": f"Bearer {ADMIN}"},
                                 json={"name": "birds", "classes": ["hen", "ostrich", "goldfinch", "robin"],
                                       "method": "vgloss"}, timeout=30)
            assert created.status_code == 202, created.text
            job_id = created.json()["job_id"]
            deadline = time.monotonic() + 60
            while httpx.get(f"{base}/v1/jobs/{job_id}", timeout=10).json()["state"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.1)
        finally:
            server.send_signal(signal.SIGKILL)
            server.wait(30)
        time.sleep(2.5)  # past the stored lease: 1.5 s (3 x VGLOSS_QUEUE_LEASE_S) + 0.75 s renewal slack
        port = free_port()
        server = _serve(tmp_path, port, "second.log", stub.url)
        try:
            state = httpx.get(f"http://127.0.0.1:{port}/v1/jobs/{job_id}", timeout=10).json()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    assert state["state"] == "failed", state
    assert "stopped before it finished" in state["error"]


def test_final_state_is_written_once_the_store_is_back(app_factory, monkeypatch):
    """The store fails exactly when the job's final state is written; the record must not stay
    'running' once the store answers again."""
    from api_helpers import runtime_of

    from gloss_gen.data.store import StoreError

    client = app_factory(admin_keys=[ADMIN])
    store = runtime_of(client).store
    real_update = store.update_job
    failures = {"left": 0}

    def flaky_update(job_id, change, result=None):
        probe = JobRecord.from_json(store.get_job(job_id).to_json())
        change(probe)
        if probe.finished and failures["left"] > 0:
            failures["left"] -= 1
            raise StoreError("Redis at redis://127.0.0.1:6379 is unavailable: connection refused")
        return real_update(job_id, change, result)

    failures["left"] = 3
    monkeypatch.setattr(store, "update_job", flaky_update)
    created = client.post("/v1/class-sets", headers={"authorization": f"Bearer {ADMIN}"},
                          json={"name": "fruit", "classes": ["apple", "banana"], "method": "classname"})
    job_id = created.json()["job_id"]
    deadline = time.monotonic() + 60
    while True:
        state = client.get(f"/v1/jobs/{job_id}").json()
        if state["state"] == "done":
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    assert failures["left"] == 0  # the final write failed three times, then went through


def test_an_adapter_job_of_a_killed_server_is_failed_with_a_reason_after_restart(tmp_path):
    """A long ClipFit job is running when its server is SIGKILLed; the next server on the store
    marks it failed (its lease expired) instead of leaving it 'running' for ever."""
    import io

    import numpy as np
    from api_helpers import make_settings, wait_ready
    from fastapi.testclient import TestClient
    from PIL import Image

    from app.main import create_app

    rng = np.random.default_rng(0)
    files, labels = [], []
    for label, rgb in (("airplane", (200, 40, 40)), ("cat", (40, 60, 200))):
        for i in range(4):
            buffer = io.BytesIO()
            noisy = np.clip(np.asarray(rgb)[None, None, :] + rng.normal(0, 60, (32, 32, 3)), 0, 255)
            Image.fromarray(noisy.astype(np.uint8)).save(buffer, format="PNG")
            files.append(("images", (f"{label}-{i}.png", buffer.getvalue(), "image/png")))
            labels.append(label)
    auth = {"authorization": f"Bearer {ADMIN}"}
    port = free_port()
    server = _serve(tmp_path, port, "first.log", "http://127.0.0.1:9/v1")
    base = f"http://127.0.0.1:{port}"
    try:
        added = httpx.post(f"{base}/v1/class-sets/cifar10/examples", headers=auth, files=files,
                           data={"labels": labels}, timeout=30)
        assert added.status_code == 200, added.text
        created = httpx.post(f"{base}/v1/class-sets/cifar10/adapters", headers=auth, timeout=30,
                             json={"method": "clipfit", "shots": 4, "epochs": 1000})
        assert created.status_code == 202, created.text
        job_id = created.json()["job_id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{base}/v1/jobs/{job_id}", timeout=10).json()["state"] != "running":
            assert time.monotonic() < deadline, (tmp_path / "first.log").read_text()
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(30)
    time.sleep(2.5)  # past the stored lease: 1.5 s (3 x VGLOSS_QUEUE_LEASE_S) + 0.75 s renewal slack
    # the next server on the same data directory (in this process: a second subprocess adds ~10 s)
    with TestClient(create_app(make_settings(tmp_path / "data", admin_keys=[ADMIN]))) as restarted:
        wait_ready(restarted)
        state = restarted.get(f"/v1/jobs/{job_id}").json()
    assert state["state"] == "failed" and state["kind"] == "adapter", state
    assert "stopped before it finished" in state["error"]
