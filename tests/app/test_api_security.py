"""Red-team cases against a real uvicorn server (issue #9): traversal, hostile names, /readyz.

Each case sends the exact bytes the red team sent over a real socket.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from api_helpers import LiveServer, make_settings

from app.main import create_app

ADMIN_KEY = "admin-key-sec"


def _traversal_id(target: Path) -> str:
    """A job id that, split on ':' by the old directory store, walks up to / and down to ``target``."""
    return ":".join([".."] * 40 + list(target.parts[1:]))


def test_job_ids_cannot_read_files_outside_the_store(live_server_factory, tmp_path):
    secret = tmp_path / "outside" / "secret.json"
    secret.parent.mkdir()
    secret.write_text(json.dumps({"state": "done", "done": 1, "total": 1, "errors": [], "leak": "s3cr3t"}))
    not_json = tmp_path / "outside" / "passwd"
    not_json.write_text("root:x:0:0:root:/root:/bin/bash\n")
    server = live_server_factory()
    store = server.runtime.store
    store.backend.set(store._k("job", "seed"), b"{}")  # the store's job folder exists, as on any used server
    answers = []
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for target in (secret, not_json, tmp_path / "outside" / "missing.json", Path("/etc/passwd")):
            response = http.get(f"/v1/jobs/{_traversal_id(target)}")
            assert "s3cr3t" not in response.text and "root:x" not in response.text
            answers.append((response.status_code, response.json()["error"]["code"]))
        # the red team's literal form, relative from the store's job directory
        literal = http.get("/v1/jobs/" + ":".join([".."] * 13 + ["etc", "passwd"]))
        answers.append((literal.status_code, literal.json()["error"]["code"]))
    # no file-existence oracle: an existing JSON file, a non-JSON file and a missing one answer alike
    assert set(answers) == {(422, "validation_error")}, answers


def test_class_set_names_cannot_read_files_outside_the_store(live_server_factory, tmp_path):
    planted = tmp_path / "outside" / "active.json"
    planted.parent.mkdir()
    planted.write_text(json.dumps({"key": "deadbeef"}))
    server = live_server_factory()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        existing = http.get(f"/v1/class-sets/{_traversal_id(planted)}")
        missing = http.get(f"/v1/class-sets/{_traversal_id(planted.with_name('nope.json'))}")
        classify = http.post("/v1/classify", json={"images": [], "class_set": _traversal_id(planted)})
    assert (existing.status_code, existing.json()) == (missing.status_code, missing.json())
    assert existing.status_code == 422 and existing.json()["error"]["code"] == "validation_error"
    assert classify.status_code in (404, 422), classify.text


HOSTILE_PATHS = [
    "/v1/jobs/" + "j" * 300,
    "/v1/jobs/" + "j" * 5000,
    "/v1/jobs/%2E%2E",
    "/v1/jobs/..%00",
    "/v1/jobs/a%2Fb",
    "/v1/jobs/.hidden",
    "/v1/class-sets/" + "n" * 300,
    "/v1/class-sets/%2E%2E",
    "/v1/class-sets/a%00b",
    "/v1/class-sets/a:b",
]


def test_hostile_names_and_ids_get_a_4xx_with_a_code(live_server_factory):
    server = live_server_factory()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for path in HOSTILE_PATHS:
            response = http.get(path)
            assert 400 <= response.status_code < 500, (path[:40], response.status_code, response.text)
            assert response.json()["error"]["code"] in ("validation_error", "not_found"), path[:40]


def test_hostile_names_in_admin_bodies_get_a_4xx_with_a_code(live_server_factory):
    server = live_server_factory(admin_keys=[ADMIN_KEY])
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=server.url, timeout=10, headers=auth) as http:
        for name in ("n" * 300, "..", "../../etc", "a:b", "", "a\0b", "x" * 70_000):
            response = http.post("/v1/class-sets", json={"name": name, "classes": ["cat", "dog"]})
            assert response.status_code == 422, (name[:20], response.text)
            assert response.json()["error"]["code"] == "validation_error"
            assert len(response.text) < 1000  # the name is not echoed back in full
        ok = http.get("/v1/class-sets")
    assert ok.status_code == 200


def _start_without_waiting(settings) -> LiveServer:
    server = LiveServer(create_app(settings))
    server.thread.start()
    deadline = time.monotonic() + 30
    while not server.server.started:
        assert server.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    return server


@pytest.mark.parametrize("checkpoint", ["missing", "garbage"])
def test_readyz_after_a_failed_start_says_what_failed_not_where_files_live(checkpoint, tmp_path):
    secret_dir = tmp_path / "srv-secret-models"
    secret_dir.mkdir()
    path = secret_dir / "weights.pt"
    if checkpoint == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    server = _start_without_waiting(make_settings(tmp_path / "data", pretrained=str(path)))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            deadline = time.monotonic() + 60
            while "start-up failed" not in (response := http.get("/readyz")).text:
                assert time.monotonic() < deadline, response.text
                time.sleep(0.05)
    finally:
        server.stop()
    assert response.status_code == 503 and response.json()["error"]["code"] == "not_ready"
    message = response.json()["error"]["message"]
    assert "loading model vgloss-tiny" in message  # what failed
    assert str(tmp_path) not in message and "srv-secret-models" not in message  # not where it lives
    assert len(message) < 500


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _reorder_first_two_classes(data: bytes) -> bytes:
    """Swap the first two classes in the stored header, keeping every byte of the arrays."""
    import struct

    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    meta = json.loads(header["__metadata__"]["vgloss"])
    classes = meta["class_set"]["classes"]
    classes[0], classes[1] = classes[1], classes[0]
    header["__metadata__"]["vgloss"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + length :]


def test_damaged_stored_classifiers_are_detected_rebuilt_or_marked(live_server_factory, tiny_model, tmp_path):
    from gloss_gen.data.classifier import ad_hoc_class_set, build_classifier
    from gloss_gen.data.classsets import ClassSet, ClassSpec, builtin_class_set
    from gloss_gen.data.descriptions import describe_classname, describe_wordnet
    from gloss_gen.data.store import DirectoryBackend, Store

    store = Store(DirectoryBackend(tmp_path / "shared-store"))
    pets = ClassSet("pets", [ClassSpec("cat", "cat"), ClassSpec("dog", "dog"), ClassSpec("fish", "fish")])
    labels = ["red thing", "blue thing", "green thing"]
    built = {
        "cifar10": build_classifier(tiny_model, describe_wordnet(builtin_class_set("cifar10"))),
        "pets": build_classifier(tiny_model, describe_classname(pets)),
        "labels": build_classifier(tiny_model, describe_classname(ad_hoc_class_set(labels))),
    }
    for classifier in built.values():
        store.put_classifier(classifier)
        key = store._k("classifier", classifier.key)
        store.backend.set(key, _reorder_first_two_classes(store.backend.get(key)))

    server = live_server_factory(store=store)  # start-up loads (and must rebuild) cifar10
    image = _png()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        listing = http.get("/v1/class-sets")
        detail = http.get("/v1/class-sets/cifar10")
        pets_answer = http.post("/v1/classify", files={"images": ("a.png", image, "image/png")},
                                data={"class_set": "pets"})
        labels_answer = http.post("/v1/classify", files={"images": ("a.png", image, "image/png")},
                                  data={"labels": labels})
        default_answer = http.post("/v1/classify", files={"images": ("a.png", image, "image/png")})
    assert listing.status_code == 200, listing.text
    by_name = {entry["name"]: entry for entry in listing.json()}
    assert by_name["cifar10"]["ready"] and by_name["cifar10"].get("error") is None
    assert by_name["pets"]["ready"] is False and by_name["pets"]["error"]["code"] == "classifier_corrupt"
    assert by_name["stl10"]["builtin"]  # the other sets are listed as before
    # the built-in set was rebuilt in its true order, and the store now holds a good entry
    assert [c["id"] for c in detail.json()["classes"]] == builtin_class_set("cifar10").ids
    assert store.get_active_classifier(tiny_model.id, "cifar10").class_set.ids == builtin_class_set("cifar10").ids
    assert default_answer.status_code == 200, default_answer.text
    # a custom set cannot be rebuilt from here: a clear code, not wrong labels
    assert pets_answer.status_code == 503 and pets_answer.json()["error"]["code"] == "classifier_corrupt"
    assert "POST /v1/class-sets" in pets_answer.json()["error"]["message"]
    # label sets are rebuilt from the labels themselves
    assert labels_answer.status_code == 200, labels_answer.text
    rebuilt = store.get_active_classifier(tiny_model.id, ad_hoc_class_set(labels).name)
    assert rebuilt.class_set.names == labels


def test_deeply_nested_json_gets_a_4xx_not_a_500(live_server_factory):
    server = live_server_factory(admin_keys=[ADMIN_KEY])
    nested = b"[" * 100_000
    with httpx.Client(base_url=server.url, timeout=30) as http:
        answers = {
            "classify": http.post("/v1/classify", content=nested, headers={"Content-Type": "application/json"}),
            "classify object": http.post("/v1/classify", content=b'{"images": ' + nested,
                                         headers={"Content-Type": "application/json"}),
            "form labels": http.post("/v1/classify", files={"images": ("a.png", _png(), "image/png")},
                                     data={"labels": "[" * 100_000}),
            "admin anonymous": http.post("/v1/class-sets", content=nested,
                                         headers={"Content-Type": "application/json"}),
            "admin": http.post("/v1/class-sets", content=nested, headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_KEY}"}),
        }
        assert http.get("/healthz").status_code == 200
    for what, response in answers.items():
        assert 400 <= response.status_code < 500, (what, response.status_code, response.text)
        assert response.json()["error"]["code"], what


def _noise_png(size: int = 96) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.effect_noise((size, size), 80).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_refused_500_image_request_gets_its_413_not_a_reset(live_server_factory):
    server = live_server_factory()
    image = _noise_png()
    files = [("images", (f"{i}.png", image, "image/png")) for i in range(500)]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for _ in range(3):
            response = http.post("/v1/classify", files=files)
            assert response.status_code == 413 and response.json()["error"]["code"] == "too_many_images"
        assert http.get("/healthz").status_code == 200  # and the connection is still usable


def test_a_slow_drip_body_is_answered_408_and_closed(live_server_factory, monkeypatch):
    import socket

    import app.middleware

    monkeypatch.setattr(app.middleware, "BODY_IDLE_TIMEOUT_S", 1.0)
    server = live_server_factory()
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n{\"images\": [")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request_timeout" in answer


def test_a_client_that_disconnects_mid_upload_is_not_a_server_error(live_server_factory):
    import socket

    from api_helpers import metric_value

    server = live_server_factory()
    boundary = b"vglossboundary"
    head = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + _noise_png()[:500])
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary="
                         + boundary + b"\r\nContent-Length: 200000\r\n\r\n" + head)
            time.sleep(0.3)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        deadline = time.monotonic() + 20
        while True:
            metrics = http.get("/metrics").text
            closed = metric_value(metrics, "vgloss_http_requests_total", {"route": "/v1/classify", "status": "499"})
            if closed >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert metric_value(metrics, "vgloss_http_requests_total", {"status": "500"}) == 0
    assert closed == 3


def test_admin_jobs_are_capped_with_a_429_and_retry_after(live_server_factory, monkeypatch):
    import app.services.job_runner
    from gloss_gen.testing import LLMStub

    monkeypatch.setattr(app.services.job_runner, "MAX_ACTIVE_JOBS", 3)
    with LLMStub(latency_ms=3000) as stub:  # every job waits on the LLM while the cap is probed
        monkeypatch.setenv("OPENAI_BASE_URL", stub.url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        server = live_server_factory(admin_keys=[ADMIN_KEY])
        auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=server.url, timeout=30, headers=auth) as http:
            answers = [http.post("/v1/class-sets", json={"name": f"birds{i}", "classes": ["hen"], "method": "vgloss"})
                       for i in range(6)]
        statuses = [a.status_code for a in answers]
        assert statuses[:3] == [202, 202, 202] and statuses[3:] == [429, 429, 429], statuses
        refused = answers[3]
        assert refused.json()["error"]["code"] == "too_many_jobs" and refused.headers["Retry-After"] == "30"


def _png_of_size(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def test_thin_images_are_refused_before_the_resize(live_server_factory):
    server = live_server_factory()
    thin, wide = _png_of_size(1, 65_500), _png_of_size(4000, 1)
    assert len(thin) < 2000  # a few hundred bytes that used to allocate gigabytes
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for data in (thin, wide):
            response = http.post("/v1/classify", files={"images": ("t.png", data, "image/png")})
            assert response.status_code == 413, response.text
            assert response.json()["error"]["code"] == "image_aspect_ratio_too_large"
        mixed = http.post("/v1/classify", files=[("images", ("t.png", thin, "image/png")),
                                                 ("images", ("p.png", _png_of_size(900, 300), "image/png"))])
    assert mixed.status_code == 200, mixed.text
    results = mixed.json()["results"]
    assert results[0]["error"]["code"] == "image_aspect_ratio_too_large" and results[1]["predictions"]
