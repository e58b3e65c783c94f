"""API keys, admin class-set jobs end to end, class-set listing and detail."""

from __future__ import annotations

import time

import pytest
from api_helpers import multipart, runtime_of

API_KEY, ADMIN_KEY = "reader-key-1", "admin-key-1"


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def wait_for_job(client, job_id: str, headers: dict | None = None, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"/v1/jobs/{job_id}", headers=headers or {})
        assert response.status_code == 200, response.text
        state = response.json()
        assert state["state"] in ("queued", "running", "done", "failed")
        if state["state"] in ("done", "failed"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {state}")


@pytest.fixture()
def keyed(app_factory):
    return app_factory(api_keys=[API_KEY, "reader-key-2"], admin_keys=[ADMIN_KEY])


def test_api_keys_protect_v1_routes(keyed, jpeg_bytes):
    request = multipart(jpeg_bytes[:1])
    missing = keyed.post("/v1/classify", **request)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = keyed.post("/v1/classify", headers=bearer("reader-key-3"), **request)
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "invalid_api_key"
    not_bearer = keyed.post("/v1/classify", headers={"Authorization": f"Basic {API_KEY}"}, **request)
    assert not_bearer.status_code == 401
    for key in (API_KEY, "reader-key-2", ADMIN_KEY):
        assert keyed.post("/v1/classify", headers=bearer(key), **request).status_code == 200
    # the alias is the same handler, so it is protected the same way
    assert keyed.post("/classify", **request).status_code == 401
    assert keyed.post("/classify", headers=bearer(API_KEY), **request).status_code == 200
    for path in ("/v1/class-sets", "/v1/class-sets/cifar10", "/v1/jobs/abc"):
        assert keyed.get(path).status_code == 401
        assert keyed.get(path, headers=bearer("nope")).status_code == 403
    # operations endpoints stay open for probes and scrapers
    for path in ("/healthz", "/readyz", "/metrics", "/docs"):
        assert keyed.get(path).status_code == 200


def test_mutating_routes_need_an_admin_key(keyed):
    body = {"name": "pets", "classes": ["cat", "dog"], "method": "classname"}
    assert keyed.post("/v1/class-sets", json=body).status_code == 401
    reader = keyed.post("/v1/class-sets", json=body, headers=bearer(API_KEY))
    assert reader.status_code == 403 and reader.json()["error"]["code"] == "invalid_admin_key"
    assert keyed.post("/v1/class-sets", json=body, headers=bearer(ADMIN_KEY)).status_code == 202


def test_admin_is_refused_when_no_admin_keys_are_configured(app_factory):
    client = app_factory(api_keys=[API_KEY])
    response = client.post(
        "/v1/class-sets", json={"name": "pets", "classes": ["cat"], "method": "classname"}, headers=bearer(API_KEY)
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_disabled"
    open_server = app_factory()  # no keys at all: reads are open, administration is still off
    assert open_server.get("/v1/class-sets").status_code == 200
    assert open_server.post("/v1/class-sets", json={"name": "x", "classes": ["cat"]}).status_code == 403


@pytest.fixture()
def admin(app_factory):
    return app_factory(admin_keys=[ADMIN_KEY])


def test_wordnet_class_set_job_end_to_end(admin, jpeg_bytes):
    classes = ["tench", "goldfish", {"name": "shark", "synset": "n01491361"}, "hen"]
    created = admin.post(
        "/v1/class-sets", json={"name": "fishy", "classes": classes, "method": "wordnet"}, headers=bearer(ADMIN_KEY)
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    assert created.headers["location"] == f"/v1/jobs/{job_id}"
    state = wait_for_job(admin, job_id)
    assert state["state"] == "done", state
    assert (state["done"], state["total"], state["errors"]) == (4, 4, [])

    listed = {s["name"]: s for s in admin.get("/v1/class-sets").json()}
    assert listed["fishy"]["ready"] is True
    assert listed["fishy"]["num_classes"] == 4 and listed["fishy"]["method"] == "wordnet"

    detail = admin.get("/v1/class-sets/fishy").json()
    assert [c["name"] for c in detail["classes"]] == ["tench", "goldfish", "shark", "hen"]
    shark = detail["classes"][2]
    assert shark["synset"] == "n01491361"
    assert shark["descriptions"] and "shark" in shark["descriptions"][0].lower()  # its WordNet gloss
    assert detail["descriptions"] == listed["fishy"]["descriptions"]

    response = admin.post("/v1/classify", **multipart(jpeg_bytes[:2], class_set="fishy", top_k=4, explain=True))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["class_set"] == "fishy" and body["descriptions"] == detail["descriptions"]
    predictions = body["results"][0]["predictions"]
    assert {p["label"] for p in predictions} == {"tench", "goldfish", "shark", "hen"}
    by_name = {c["name"]: c["descriptions"] for c in detail["classes"]}
    assert all(p["evidence"] in by_name[p["label"]] for p in predictions)


def test_classname_class_set_job_end_to_end(admin, jpeg_bytes):
    created = admin.post(
        "/v1/class-sets",
        json={"name": "vehicles", "classes": ["bicycle", "tractor", "canoe"], "method": "classname"},
        headers=bearer(ADMIN_KEY),
    )
    state = wait_for_job(admin, created.json()["job_id"])
    assert state["state"] == "done" and state["method"] == "classname"
    detail = admin.get("/v1/class-sets/vehicles").json()
    assert detail["ready"] and all(c["descriptions"] == [] for c in detail["classes"])
    body = admin.post("/v1/classify", **multipart(jpeg_bytes[:1], class_set="vehicles")).json()
    assert {p["label"] for p in body["results"][0]["predictions"]} == {"bicycle", "tractor", "canoe"}


def test_waffle_class_set_job_end_to_end(admin, jpeg_bytes):
    created = admin.post(
        "/v1/class-sets",
        json={"name": "vehicles", "classes": ["bicycle", "tractor", "canoe"], "method": "waffle"},
        headers=bearer(ADMIN_KEY),
    )
    state = wait_for_job(admin, created.json()["job_id"])
    assert state["state"] == "done" and state["method"] == "waffle"
    detail = admin.get("/v1/class-sets/vehicles").json()
    assert detail["ready"] and [len(c["descriptions"]) for c in detail["classes"]] == [30, 30, 30]
    assert all(d.startswith(f"A photo of a {c['name']}, which ") for c in detail["classes"] for d in c["descriptions"])
    body = admin.post("/v1/classify", **multipart(jpeg_bytes[:1], class_set="vehicles", explain=True)).json()
    by_name = {c["name"]: c["descriptions"] for c in detail["classes"]}
    assert all(p["evidence"] in by_name[p["label"]] for p in body["results"][0]["predictions"])


def test_vgloss_class_set_job_with_a_local_llm(admin, jpeg_bytes, monkeypatch):
    pytest.importorskip("gloss_gen.describe.describe_job")
    from gloss_gen.testing import LLMStub

    with LLMStub() as stub:
        monkeypatch.setenv("OPENAI_BASE_URL", stub.url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        created = admin.post(
            "/v1/class-sets",
            json={"name": "birds", "classes": ["hen", "ostrich", "goldfinch"], "method": "vgloss"},
            headers=bearer(ADMIN_KEY),
        )
        state = wait_for_job(admin, created.json()["job_id"])
        assert state["state"] == "done", state
        assert sorted(r.class_name for r in stub.requests) == ["goldfinch", "hen", "ostrich"]
        assert all("Class:" in r.prompt for r in stub.requests)
    detail = admin.get("/v1/class-sets/birds").json()
    assert detail["method"] == "vgloss"
    assert all(len(c["descriptions"]) >= 1 for c in detail["classes"])
    body = admin.post("/v1/classify", **multipart(jpeg_bytes[:1], class_set="birds", explain=True)).json()
    assert {p["label"] for p in body["results"][0]["predictions"]} == {"hen", "ostrich", "goldfinch"}


def test_failed_llm_job_reports_why(admin, monkeypatch):
    pytest.importorskip("gloss_gen.describe.describe_job")
    from gloss_gen.testing import LLMStub

    with LLMStub(mode="500") as stub:
        monkeypatch.setenv("OPENAI_BASE_URL", stub.url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setattr(runtime_of(admin).settings, "llm_max_retries", 0)
        created = admin.post(
            "/v1/class-sets", json={"name": "doomed", "classes": ["hen"], "method": "vgloss"}, headers=bearer(ADMIN_KEY)
        )
        state = wait_for_job(admin, created.json()["job_id"])
    assert state["state"] == "failed"
    assert state["errors"] and any(e.get("class_id") == "hen" for e in state["errors"])
    listed = {s["name"]: s for s in admin.get("/v1/class-sets").json()}
    assert listed["doomed"]["ready"] is False
    refused = admin.post("/v1/classify", **multipart([b"x"], class_set="doomed"))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "class_set_not_ready"


def test_rebuilding_a_builtin_set_switches_what_it_serves(admin, jpeg_bytes):
    before = admin.post("/v1/classify", **multipart(jpeg_bytes[:1])).json()  # cifar10, wordnet
    created = admin.post("/v1/class-sets", json={"name": "cifar10", "method": "classname"}, headers=bearer(ADMIN_KEY))
    assert wait_for_job(admin, created.json()["job_id"])["state"] == "done"
    after = admin.post("/v1/classify", **multipart(jpeg_bytes[:1])).json()
    assert after["class_set"] == "cifar10" and after["descriptions"] != before["descriptions"]
    assert {s["name"]: s for s in admin.get("/v1/class-sets").json()}["cifar10"]["method"] == "classname"


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"name": "bad name!", "classes": ["cat"]}, "invalid class set name"),
        ({"name": "labels-0123456789ab", "classes": ["cat"]}, "reserved"),
        ({"name": "cifar10", "classes": ["cat"]}, "built-in"),
        ({"name": "empty", "classes": []}, "classes"),
        ({"name": "nothing"}, "classes"),
        ({"name": "pinned", "classes": [{"name": "cat", "synset": "n99999999"}]}, "cat"),
        ({"name": "imported", "classes": ["cat"], "method": "import"}, "method"),
        ({"name": "typo", "classes": ["cat"], "methd": "wordnet"}, "methd"),
        ({"classes": ["cat"]}, "name"),
    ],
)
def test_invalid_class_set_requests_are_422(admin, body, fragment):
    response = admin.post("/v1/class-sets", json=body, headers=bearer(ADMIN_KEY))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert fragment in error["message"]


def test_listing_and_detail(admin):
    listed = admin.get("/v1/class-sets").json()
    names = [s["name"] for s in listed]
    assert {"imagenet1k", "cifar10", "stl10"} <= set(names)
    assert all(set(s) == {"name", "num_classes", "descriptions", "method", "model", "ready", "builtin"} for s in listed)
    imagenet = next(s for s in listed if s["name"] == "imagenet1k")
    assert imagenet["num_classes"] == 1000 and imagenet["ready"] is False and imagenet["descriptions"] is None
    detail = admin.get("/v1/class-sets/imagenet1k").json()
    assert detail["classes"][0] == {"id": "n01440764", "name": "tench", "synset": "n01440764", "descriptions": []}
    cifar = admin.get("/v1/class-sets/cifar10").json()
    assert cifar["ready"] and all(len(c["descriptions"]) == 1 for c in cifar["classes"])
    missing = admin.get("/v1/class-sets/unknown-set")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "class_set_not_found"
    # ad-hoc label sets are cached in the store but are not class sets anyone named
    admin.post("/v1/classify", **multipart([b"x"], labels=["cat", "dog"]))
    assert not any(n.startswith("labels-") for n in (s["name"] for s in admin.get("/v1/class-sets").json()))


def test_a_second_replica_answers_for_jobs_and_serves_the_set(app_factory, tmp_path, jpeg_bytes):
    shared = tmp_path / "shared"
    a = app_factory(data_dir=shared, admin_keys=[ADMIN_KEY])
    b = app_factory(data_dir=shared)
    job_id = a.post(
        "/v1/class-sets", json={"name": "fruit", "classes": ["apple", "banana"], "method": "wordnet"},
        headers=bearer(ADMIN_KEY),
    ).json()["job_id"]
    assert wait_for_job(b, job_id)["state"] == "done"  # state lives in the shared store
    from_b = b.post("/v1/classify", **multipart(jpeg_bytes[:1], class_set="fruit")).json()
    from_a = a.post("/v1/classify", **multipart(jpeg_bytes[:1], class_set="fruit")).json()
    assert from_a == from_b

    # a rebuild on replica a reaches replica b once b re-checks the store
    runtime_of(b).registry.refresh_s = 0.0
    job_id = a.post(
        "/v1/class-sets", json={"name": "fruit", "classes": ["apple", "banana", "cherry"], "method": "classname"},
        headers=bearer(ADMIN_KEY),
    ).json()["job_id"]
    assert wait_for_job(a, job_id)["state"] == "done"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = b.post("/v1/classify", **multipart(jpeg_bytes[:1], class_set="fruit", top_k=10)).json()
        if len(body["results"][0]["predictions"]) == 3:
            break
        time.sleep(0.05)
    assert {p["label"] for p in body["results"][0]["predictions"]} == {"apple", "banana", "cherry"}
