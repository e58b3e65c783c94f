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


def upload_colours(client, name: str, per_class: int, seed: int = 0, labels=("airplane", "automobile", "bird", "cat")):
    """Noisy colour images as examples of the first four classes of ``name`` (cifar10 by default)."""
    rng = np.random.default_rng(seed)
    images, image_labels = [], []
    for label, rgb in zip(labels, COLOURS.values()):
        for i in range(per_class):
            images.append((f"{label}-{i}.png", colour_png(rgb, rng)))
            image_labels.append(label)
    added = upload(client, name, images, image_labels)
    assert added.status_code == 200, added.text
    return added.json()


def test_clipfit_job_writes_a_delta_and_says_how_to_serve_it(app_factory, tmp_path):
    from gloss_gen.model.clip_models import load_clip

    client = app_factory(admin_keys=[ADMIN_KEY], data_dir=tmp_path / "data")
    upload_colours(client, "cifar10", per_class=5)
    probe = [("images", ("probe.png", colour_png((200, 40, 40), np.random.default_rng(9)), "image/png"))]
    before = client.post("/v1/classify", files=probe, data={"class_set": "cifar10"}).json()

    for wrong in ({"method": "tip", "epochs": 2}, {"method": "clipfit", "augment": 2}):
        refused = client.post("/v1/class-sets/cifar10/adapters", json=wrong, headers=bearer(ADMIN_KEY))
        assert refused.status_code == 422, refused.text
    job = client.post("/v1/class-sets/cifar10/adapters", json={"method": "clipfit", "shots": 5, "epochs": 2},
                      headers=bearer(ADMIN_KEY))
    assert job.status_code == 202, job.text
    state = wait_for_job(client, job.json()["job_id"])
    assert state["state"] == "done", state
    assert state["kind"] == "adapter" and state["method"] == "clipfit" and state["epochs_run"] == 2

    delta = tmp_path / "data" / "clipfit" / f"cifar10-{state['content_hash'][:16]}.safetensors"
    assert state["delta"] == str(delta) and delta.is_file()
    assert not list(delta.parent.glob("fit-*"))  # no checkpoint or half-named file left behind
    assert state["adapted_model"] == f"vgloss-tiny/none+clipfit-{state['content_hash'][:16]}"
    assert state["pretrained"] == f"none+{delta}"
    assert f"VGLOSS_PRETRAINED={state['pretrained']}" in state["serving"]
    assert 0 < state["trained_parameters"] < state["total_parameters"]
    # what the job says to set loads the adapted model under the id it reported
    assert load_clip("vgloss-tiny", state["pretrained"]).id == state["adapted_model"]

    # the running server is not hot-swapped: same model, no adapter, the same scores as before
    after = client.post("/v1/classify", files=probe, data={"class_set": "cifar10"}).json()
    assert after["model"] == before["model"] == "vgloss-tiny/none"
    assert after["results"][0]["predictions"] == before["results"][0]["predictions"]
    assert client.get("/v1/class-sets/cifar10").json()["adapter"] is None


def test_the_job_cap_counts_adapter_jobs(app_factory, monkeypatch):
    import app.services.job_runner

    monkeypatch.setattr(app.services.job_runner, "MAX_ACTIVE_JOBS", 2)
    client = app_factory(admin_keys=[ADMIN_KEY])
    upload_colours(client, "cifar10", per_class=4)
    long_fit = client.post("/v1/class-sets/cifar10/adapters", json={"method": "clipfit", "shots": 4, "epochs": 1000},
                           headers=bearer(ADMIN_KEY))
    tip = client.post("/v1/class-sets/cifar10/adapters", json={"method": "tip", "shots": 4}, headers=bearer(ADMIN_KEY))
    assert (long_fit.status_code, tip.status_code) == (202, 202), (long_fit.text, tip.text)
    class_set = client.post("/v1/class-sets", json={"name": "fruit", "classes": ["apple", "pear"],
                                                    "method": "classname"}, headers=bearer(ADMIN_KEY))
    adapter = client.post("/v1/class-sets/cifar10/adapters", json={"method": "tip"}, headers=bearer(ADMIN_KEY))
    for refused in (class_set, adapter):
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_jobs" and refused.headers["Retry-After"] == "30"
    # the refused creation left nothing behind (issue #24 item 14): no set waiting for a job that does not exist
    assert client.get("/v1/class-sets/fruit").status_code == 404
    # the tip job waits its turn behind the ClipFit job: one job runs at a time
    assert client.get(f"/v1/jobs/{long_fit.json()['job_id']}").json()["state"] == "running"
    assert client.get(f"/v1/jobs/{tip.json()['job_id']}").json()["state"] == "queued"
