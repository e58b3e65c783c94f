"""API replicas are stateless: two `vgloss serve` processes on one Redis share every classifier,
job state and label classifier through it.

Real Redis (skipped without one outside CI, failed in CI), a namespace of its own, the tiny
random-init model, a private data directory per replica so nothing is shared on disk.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "admin-" + uuid.uuid4().hex
LABEL_LOOKUPS = "vgloss_label_classifier_lookups_total"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Replica:
    def __init__(self, name: str, tmp: Path, redis_url: str, namespace: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"replica-{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VGLOSS_", "OPENAI_"))}
        env.update(
            PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            VGLOSS_MODEL="vgloss-tiny", VGLOSS_PRETRAINED="none", VGLOSS_DEVICE="cpu",
            VGLOSS_BACKEND="torch", VGLOSS_PRECISION="fp32",
            VGLOSS_REDIS_URL=redis_url, VGLOSS_REDIS_NAMESPACE=namespace,
            VGLOSS_DEFAULT_CLASS_SET="cifar10", VGLOSS_ADMIN_KEYS=ADMIN_KEY,
            VGLOSS_DATA_DIR=str(tmp / f"data-{name}"),
        )
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gloss_gen.cli", "serve", "--port", str(self.port), "--plain-logs"],
                cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                if self.http.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{self.url} not ready:\n{self.log_path.read_text()}"
            time.sleep(0.1)

    def label_lookups(self, source: str) -> float:
        text = self.http.get("/metrics").text
        prefix = f'{LABEL_LOOKUPS}{{source="{source}"}} '
        return sum(float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))

    def classify(self, image: Path, **fields) -> dict:
        response = self.http.post(
            "/v1/classify", files={"images": (image.name, image.read_bytes(), "image/jpeg")}, data=fields
        )
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()


@pytest.fixture
def replicas(tmp_path, redis_url, redis_namespace):
    started = [Replica(name, tmp_path, redis_url, redis_namespace) for name in ("a", "b")]
    try:
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


def test_a_class_set_created_on_one_replica_serves_from_every_replica(replicas, redis_url, redis_namespace,
                                                                        sample_photos):
    a, b = replicas
    image = sample_photos[0]
    name = f"scaleout-{uuid.uuid4().hex[:8]}"
    labels = ["tench", "goldfish", "great white shark", "hammerhead shark", "stingray"]

    created = a.http.post(
        "/v1/class-sets", json={"name": name, "classes": labels, "method": "wordnet"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]

    # The job runs on A; its state is in Redis, so B answers for it.
    deadline = time.monotonic() + 120
    while (job := b.http.get(f"/v1/jobs/{job_id}")).json()["state"] not in ("done", "failed"):
        assert job.status_code == 200, job.text
        assert time.monotonic() < deadline, job.text
        time.sleep(0.1)
    job = job.json()
    assert (job["state"], job["done"], job["total"], job["errors"]) == ("done", 5, 5, []), job
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.exists(f"{redis_namespace}:job:{job_id}")
    finally:
        client.close()

    # B lists the set as ready and shows its WordNet glosses, never having built it.
    listed = {s["name"]: s for s in b.http.get("/v1/class-sets").json()}
    assert listed[name]["ready"] and listed[name]["num_classes"] == 5
    detail = b.http.get(f"/v1/class-sets/{name}").json()
    assert [c["name"] for c in detail["classes"]] == labels
    assert all(c["synset"] and c["descriptions"] for c in detail["classes"])

    # Both replicas classify with the one classifier in the store, with the same answer.
    on_b = b.classify(image, class_set=name, top_k="5")
    on_a = a.classify(image, class_set=name, top_k="5")
    assert on_b["class_set"] == name and on_b["descriptions"] == listed[name]["descriptions"]
    predictions = on_b["results"][0]["predictions"]
    assert sorted(p["label"] for p in predictions) == sorted(labels)
    assert predictions == on_a["results"][0]["predictions"]

    # An ad-hoc label set embedded on A is found in the store by B, not embedded again.
    ad_hoc = ["a red bicycle", "a wooden chair", f"a {uuid.uuid4().hex[:6]} lamp"]
    a.classify(image, labels=json.dumps(ad_hoc))
    from_store, built = b.label_lookups("store"), b.label_lookups("built")
    b.classify(image, labels=json.dumps(ad_hoc))
    assert (b.label_lookups("store"), b.label_lookups("built")) == (from_store + 1, built)

    # Nothing lived in A: with A gone, B still serves the set A built.
    a.stop()
    assert a.proc.returncode is not None
    assert b.classify(image, class_set=name)["results"][0]["predictions"][0]["label"] in labels
