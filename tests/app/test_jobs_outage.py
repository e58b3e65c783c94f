"""Jobs a server runs in process ride out a Redis outage shorter than their lease (issue 24 item
10): a real redis-server that is shut down (saving its data) and started again mid-job."""

from __future__ import annotations

import io
import shutil
import threading
import time

import numpy as np
import pytest
import redis
from api_helpers import free_port, make_settings, runtime_of, wait_ready
from test_api_redis import IN_CI, RedisProcess, redis_store

from gloss_gen.data.classsets import ClassSet, ClassSpec

ADMIN = "admin-key"
AUTH = {"authorization": f"Bearer {ADMIN}"}


@pytest.fixture()
def saving_redis(tmp_path):
    """A redis-server whose :meth:`RedisProcess.stop` with ``keep_data`` loses nothing."""
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("redis-server is not installed in CI")
        pytest.skip("SKIPPED: redis-server is not installed; these tests start their own")
    (tmp_path / "redis").mkdir()
    process = RedisProcess(free_port(), data_dir=tmp_path / "redis").start()
    yield process
    process.stop()


def _colour_uploads(labels: list[str], per_class: int) -> list[tuple[str, bytes, str]]:
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = [(200, 40, 40), (40, 60, 200), (40, 180, 60)]
    uploads = []
    for label, rgb in zip(labels, colours):
        for i in range(per_class):
            buffer = io.BytesIO()
            noisy = np.clip(np.asarray(rgb)[None, None, :] + rng.normal(0, 60, (32, 32, 3)), 0, 255)
            Image.fromarray(noisy.astype(np.uint8)).save(buffer, format="PNG")
            uploads.append((f"{label}-{i}.png", buffer.getvalue(), label))
    return uploads


def test_a_class_set_job_rides_out_an_outage_shorter_than_its_lease(app_factory, saving_redis, monkeypatch):
    """Redis goes away for 5 s of a 6 s lease while the job describes its last classes and embeds
    them: the job ends `done` with its classifier stored, and no reader ever sees it `failed`
    (before: the classifier write failed the job, and a reader could find the lease run out)."""
    from gloss_gen.testing import LLMStub

    outage_s, lease_s = 5.0, 6.0
    with LLMStub(latency_ms=300) as stub:
        monkeypatch.setenv("OPENAI_BASE_URL", stub.url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        client = app_factory(store=redis_store(saving_redis.url), admin_keys=[ADMIN],
                             queue_lease_s=lease_s / 3, llm_concurrency=1)
        store = runtime_of(client).store
        names = ["hen", "ostrich", "goldfinch", "robin", "magpie", "jay"]
        created = client.post("/v1/class-sets", headers=AUTH,
                              json={"name": "birds", "classes": names, "method": "vgloss"})
        assert created.status_code == 202, created.text
        job_id = created.json()["job_id"]
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{job_id}").json().get("done", 0) < 1:
            assert time.monotonic() < deadline, client.get(f"/v1/jobs/{job_id}").text
            time.sleep(0.05)

        saving_redis.stop(keep_data=True)
        cut = time.monotonic()
        assert client.get(f"/v1/jobs/{job_id}").status_code == 503
        while len(stub.requests) < len(names) and time.monotonic() - cut < outage_s - 0.5:
            time.sleep(0.05)
        asked_during_outage = len(stub.requests)
        time.sleep(max(0.0, outage_s - (time.monotonic() - cut)))
        saving_redis.start()
        outage = time.monotonic() - cut
        assert outage < lease_s

        seen = []
        deadline = time.monotonic() + 60
        while True:
            state = client.get(f"/v1/jobs/{job_id}").json()
            seen.append(state.get("state"))
            if state.get("state") in ("done", "failed"):
                break
            assert time.monotonic() < deadline, state
            time.sleep(0.05)
    assert asked_during_outage == len(names), "the job did not describe its classes during the outage"
    assert "failed" not in seen, state
    assert state["state"] == "done" and (state["done"], state["total"], state["failed"]) == (6, 6, 0), state
    assert len(stub.requests) == len(names)  # nothing described twice
    model_id = runtime_of(client).registry.model.model_id
    assert store.get_active_key(model_id, "birds") == state["classifier"]
    assert store.get_classifier(state["classifier"]).class_set.names == names


def test_a_clipfit_fit_rides_out_an_outage(saving_redis, tmp_path):
    """The store goes away after the first epoch, while the fit still reads its example images
    from it: the fit waits for the store and finishes (before: StoreError ended it)."""
    from gloss_gen.adapt.fitting import AdapterJobSpec, fit_clipfit_job
    from gloss_gen.adapt.uploads import add_examples
    from gloss_gen.imaging import ImageLimits

    store = redis_store(saving_redis.url)
    colours = ClassSet("colours", [ClassSpec("red", "red"), ClassSpec("blue", "blue")])
    limits = ImageLimits()
    add_examples(store, colours, _colour_uploads(["red", "blue"], 4), limits, 100, 10_000_000)
    spec = AdapterJobSpec(colours, "clipfit", "vgloss-tiny", "none", shots=4, epochs=3)
    restarted = threading.Event()

    def on_epoch(log_line) -> None:
        if log_line.epoch == 1:
            saving_redis.stop(keep_data=True)

            def back() -> None:
                time.sleep(2.0)
                saving_redis.start()
                restarted.set()

            threading.Thread(target=back, daemon=True).start()

    result = fit_clipfit_job(spec, store, limits, tmp_path / "data", on_epoch=on_epoch)
    assert restarted.is_set()
    assert result["epochs_run"] == 3 and result["resumed_from"] == 0, result
    assert not list((tmp_path / "data" / "clipfit").glob("fit-*")), "checkpoint or half-named delta left"


def test_a_new_clipfit_job_for_the_same_fit_resumes_the_checkpoint(app_factory, tmp_path):
    """A ClipFit job is stopped mid-fit (its server shuts down); a new job for the same fit on the
    next server resumes from the last finished epoch instead of starting over (before: the
    checkpoint was named by the old job's id and orphaned)."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    data_dir = tmp_path / "data"
    uploads = _colour_uploads(["airplane", "cat"], 4)
    files = [("images", (name, data, "image/png")) for name, data, _ in uploads]
    labels = [label for _, _, label in uploads]
    request = {"method": "clipfit", "shots": 4, "epochs": 60}
    with TestClient(create_app(make_settings(data_dir, admin_keys=[ADMIN]))) as first:
        wait_ready(first)
        added = first.post("/v1/class-sets/cifar10/examples", headers=AUTH, files=files, data={"labels": labels})
        assert added.status_code == 200, added.text
        created = first.post("/v1/class-sets/cifar10/adapters", headers=AUTH, json=request)
        assert created.status_code == 202, created.text
        first_id = created.json()["job_id"]
        deadline = time.monotonic() + 60
        while (state := first.get(f"/v1/jobs/{first_id}").json()).get("epochs_done", 0) < 3:
            assert state["state"] in ("queued", "running"), state
            assert time.monotonic() < deadline, state
            time.sleep(0.02)
    # the server shut down mid-fit: the job failed, its last finished epoch checkpointed

    second = app_factory(data_dir=data_dir, admin_keys=[ADMIN])
    assert second.get(f"/v1/jobs/{first_id}").json()["state"] == "failed"
    created = second.post("/v1/class-sets/cifar10/adapters", headers=AUTH, json=request)
    assert created.status_code == 202, created.text
    second_id = created.json()["job_id"]
    assert second_id != first_id
    deadline = time.monotonic() + 120
    while (state := second.get(f"/v1/jobs/{second_id}").json())["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    assert state["state"] == "done", state
    assert not list((data_dir / "clipfit").glob("*.ckpt")), "a checkpoint was left behind"
    assert state["resumed_from"] >= 3 and state["epochs_run"] == 60, state
    assert not list((data_dir / "clipfit").glob("fit-*")), "a half-named delta was left behind"


def test_a_job_a_reader_found_orphaned_stays_failed(tmp_path):
    """Once a reader has marked a job failed because its lease ran out, a late write from the job
    does not bring it back (the client was told it failed)."""
    from app.services.job_runner import ORPHANED, _becomes
    from gloss_gen.data.job_records import JobRecord
    from gloss_gen.data.store import DirectoryBackend, Store

    store = Store(DirectoryBackend(tmp_path / "store"))
    job = JobRecord.new("j", "class-set", ClassSet("birds", [ClassSpec("hen", "hen")]), "vgloss")
    job.mark("running", lease_expires_at=time.time() - 1)
    store.put_job(job)
    store.update_job("j", lambda stored: stored.mark("failed", error=ORPHANED))
    job.mark("done", classifier="k")
    store.update_job("j", _becomes(job))
    assert store.get_job("j").state == "failed"


def test_redis_shutdown_keeps_data(saving_redis):
    client = redis.Redis.from_url(saving_redis.url)
    client.set("k", b"v")
    saving_redis.stop(keep_data=True)
    saving_redis.start()
    assert client.get("k") == b"v"
