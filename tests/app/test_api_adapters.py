"""Few-shot adapters over the API: upload examples, fit an adapter, classify with it on two replicas."""

from __future__ import annotations

import io

import numpy as np
import pytest
from api_helpers import runtime_of
from test_api_admin import bearer, wait_for_job

ADMIN_KEY = "admin-key-1"
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200), "yellow": (220, 200, 40)}


def colour_png(rgb, rng) -> bytes:
    from PIL import Image

    noisy = np.asarray(rgb)[None, None, :] + rng.normal(0, 60, (32, 32, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(client, name: str, images: list[tuple[str, bytes]], labels: list[str]):
    files = [("images", (filename, data, "image/png")) for filename, data in images]
    return client.post(f"/v1/class-sets/{name}/examples", files=files, data={"labels": labels},
                       headers=bearer(ADMIN_KEY))


@pytest.fixture()
def replicas(app_factory, redis_store):
    first = app_factory(store=redis_store, admin_keys=[ADMIN_KEY])
    second = app_factory(store=redis_store, admin_keys=[ADMIN_KEY])
    runtime_of(second).registry.refresh_s = 0.0  # pick up store changes on the next request
    return first, second


def test_examples_then_adapter_then_classify_on_both_replicas(replicas):
    first, second = replicas
    rng = np.random.default_rng(0)
    created = first.post("/v1/class-sets", json={"name": "colours", "classes": list(COLOURS), "method": "classname"},
                         headers=bearer(ADMIN_KEY))
    assert created.status_code == 202, created.text
    assert wait_for_job(first, created.json()["job_id"])["state"] == "done"

    images, labels = [], []
    for colour, rgb in COLOURS.items():
        for i in range(8):
            images.append((f"{colour}-{i}.png", colour_png(rgb, rng)))
            labels.append(colour)
    images.append(("broken.png", b"\x89PNG\r\n\x1a\nnot an image"))
    labels.append("red")
    added = upload(first, "colours", images, labels)
    assert added.status_code == 200, added.text
    body = added.json()
    assert body["added"] == 32 and body["examples"] == {c: 8 for c in COLOURS}
    assert [r["filename"] for r in body["rejected"]] == ["broken.png"]

    unknown = upload(first, "colours", [("p.png", colour_png((120, 0, 120), rng))], ["purple"])
    assert unknown.status_code == 422
    assert "'purple' (1 images)" in unknown.json()["error"]["message"]
    assert first.post("/v1/class-sets/colours/examples").status_code == 401  # admin only
    again = upload(first, "colours", images[:2], labels[:2])
    assert again.json()["added"] == 0 and again.json()["duplicates"] == 2

    no_key = first.post("/v1/class-sets/colours/adapters", json={"method": "tip"})
    assert no_key.status_code == 401
    job = first.post("/v1/class-sets/colours/adapters", json={"method": "tip", "shots": 8}, headers=bearer(ADMIN_KEY))
    assert job.status_code == 202 and job.headers["location"].startswith("/v1/jobs/")
    state = wait_for_job(first, job.json()["job_id"])
    assert state["state"] == "done", state
    key = state["adapter"]

    detail = first.get("/v1/class-sets/colours").json()
    assert detail["examples"] == {c: 8 for c in COLOURS}
    assert detail["adapter"]["key"] == key and detail["adapter"]["examples"] == 32

    held_out = [(colour, colour_png(rgb, rng)) for colour, rgb in COLOURS.items() for _ in range(3)]
    files = [("images", (f"{c}.png", data, "image/png")) for c, data in held_out]
    for replica in (first, second):
        response = replica.post("/v1/classify", files=files, data={"class_set": "colours", "explain": "true"})
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["adapter"] == key
        top = [r["predictions"][0] for r in result["results"]]
        assert sum(p["class_id"] == colour for p, (colour, _) in zip(top, held_out)) >= 11
        assert all(p["example"].startswith(f"{p['class_id']}/") for p in top)


def test_adapter_job_needs_examples_and_a_known_method(app_factory):
    client = app_factory(admin_keys=[ADMIN_KEY])
    response = client.post("/v1/class-sets/cifar10/adapters", json={"method": "tip"}, headers=bearer(ADMIN_KEY))
    assert response.status_code == 409 and response.json()["error"]["code"] == "no_examples" and "has no examples yet" in response.json()["error"]["message"]
    response = client.post("/v1/class-sets/cifar10/adapters", json={"method": "lora"}, headers=bearer(ADMIN_KEY))
    assert response.status_code == 422
    assert client.get("/v1/class-sets/cifar10").json()["adapter"] is None
    missing = client.post("/v1/class-sets/nope/examples", files=[("images", ("a.png", b"x", "image/png"))],
                          data={"labels": ["a"]}, headers=bearer(ADMIN_KEY))
    assert missing.status_code == 404
