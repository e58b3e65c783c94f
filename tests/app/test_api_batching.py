"""Dynamic batching on a real uvicorn: concurrency, isolation between requests, back-pressure,
graceful shutdown."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from api_helpers import assert_same_predictions, metric_value, multipart


def _request_plan(jpeg_bytes: list[bytes]) -> list[dict]:
    """32 different requests: images, counts, class sets, labels, top_k and explain all vary."""
    label_sets = [["a dog", "a cat", "a fish"], ["a car", "a boat"], ["a tree", "a house", "a bird", "a hat"]]
    plan = []
    for i in range(32):
        images = [jpeg_bytes[(i + j) % len(jpeg_bytes)] for j in range(1 + i % 3)]
        fields: dict = {"top_k": 1 + i % 5}
        if i % 4 == 1:
            fields["class_set"] = "stl10"
        elif i % 4 == 2:
            fields["labels"] = label_sets[i % 3]
        if i % 5 == 0:
            fields["explain"] = True
        plan.append(multipart(images, [f"r{i}-{j}.jpg" for j in range(len(images))], **fields))
    return plan


def test_concurrent_requests_get_exactly_their_own_answers(live_server_factory, jpeg_bytes):
    server = live_server_factory(max_batch=32, batch_wait_ms=30)
    plan = _request_plan(jpeg_bytes)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        one_by_one = [http.post("/v1/classify", **request) for request in plan]
        assert all(r.status_code == 200 for r in one_by_one), [r.text for r in one_by_one if r.status_code != 200]
        metrics_before = http.get("/metrics").text

    start = threading.Barrier(len(plan))

    def send(request: dict) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            start.wait()
            return http.post("/v1/classify", **request)

    with ThreadPoolExecutor(max_workers=len(plan)) as pool:
        together = list(pool.map(send, plan))

    for alone, concurrent in zip(one_by_one, together):
        assert concurrent.status_code == 200, concurrent.text
        a, b = alone.json(), concurrent.json()
        assert (b["class_set"], b["descriptions"], b["model"]) == (a["class_set"], a["descriptions"], a["model"])
        assert [r["filename"] for r in b["results"]] == [r["filename"] for r in a["results"]]
        for ra, rb in zip(a["results"], b["results"]):
            assert_same_predictions(rb["predictions"], ra["predictions"])

    with httpx.Client(base_url=server.url) as http:
        metrics_after = http.get("/metrics").text
    batches = metric_value(metrics_after, "vgloss_inference_batch_size_count") - metric_value(
        metrics_before, "vgloss_inference_batch_size_count"
    )
    images = metric_value(metrics_after, "vgloss_inference_batch_size_sum") - metric_value(
        metrics_before, "vgloss_inference_batch_size_sum"
    )
    assert images == sum(len(r["files"]) for r in plan)
    assert images / batches > 1, f"mean batch size {images / batches:.2f}: requests were not batched"
    assert server.runtime.batcher.stats.largest > 1


def test_a_batch_never_mixes_requests_with_the_same_classifier(live_server_factory, jpeg_bytes):
    """Many one-image requests for the same class set land in one batch; each gets its image's answer."""
    server = live_server_factory(max_batch=64, batch_wait_ms=50)
    images = jpeg_bytes[:12]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        expected = [http.post("/v1/classify", **multipart([img], top_k=3)).json() for img in images]
    barrier = threading.Barrier(len(images))

    def send(image: bytes) -> dict:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            barrier.wait()
            return http.post("/v1/classify", **multipart([image], top_k=3)).json()

    with ThreadPoolExecutor(len(images)) as pool:
        got = list(pool.map(send, images))
    for g, e in zip(got, expected):
        assert_same_predictions(g["results"][0]["predictions"], e["results"][0]["predictions"])
    # the images differ, so their answers differ: a mix-up could not go unnoticed
    assert len({tuple(p["class_id"] for p in e["results"][0]["predictions"]) + (round(e["results"][0]["predictions"][0]["score"], 6),) for e in expected}) > 1


@pytest.fixture()
def gated_model(monkeypatch):
    """Hold the model inside ``encode_images`` until the test opens the gate."""
    entered, gate = threading.Event(), threading.Event()

    def install(runtime) -> None:
        clip = runtime.model.clip
        real = clip.encode_images

        def held(pixels):
            entered.set()
            assert gate.wait(30), "the test never opened the gate"
            return real(pixels)

        monkeypatch.setattr(clip, "encode_images", held)

    yield install, entered, gate
    gate.set()


def test_full_queue_answers_503_with_retry_after(live_server_factory, jpeg_bytes, gated_model):
    install, entered, gate = gated_model
    server = live_server_factory(max_batch=2, batch_wait_ms=0, max_queue=2)
    install(server.runtime)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(lambda: httpx.post(f"{server.url}/v1/classify", timeout=60, **multipart(jpeg_bytes[:2])))
        assert entered.wait(30)
        refused = httpx.post(f"{server.url}/v1/classify", timeout=60, **multipart(jpeg_bytes[2:3]))
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "queue_full"
        assert int(refused.headers["retry-after"]) >= 1
        gate.set()
        assert first.result().status_code == 200
    after = httpx.post(f"{server.url}/v1/classify", timeout=60, **multipart(jpeg_bytes[2:3]))
    assert after.status_code == 200


def test_shutdown_finishes_requests_in_flight(live_server_factory, jpeg_bytes, gated_model):
    install, entered, gate = gated_model
    server = live_server_factory()
    install(server.runtime)
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(lambda: httpx.post(f"{server.url}/v1/classify", timeout=60, **multipart(jpeg_bytes[:3])))
        assert entered.wait(30)
        server.server.should_exit = True  # what SIGTERM does
        time.sleep(0.3)
        gate.set()
        response = in_flight.result()
    assert response.status_code == 200
    assert len(response.json()["results"]) == 3
    server.thread.join(30)
    assert not server.thread.is_alive()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=2)


def test_chunked_upload_over_the_body_limit_is_refused(live_server_factory):
    server = live_server_factory(max_image_bytes=10_000, max_images_per_request=2)

    def chunks():  # a well-formed file part that just never ends
        yield b'--abc\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n\r\n'
        for _ in range(200):
            yield b"x" * 16_384

    response = httpx.post(
        f"{server.url}/v1/classify",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=abc"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert httpx.get(f"{server.url}/readyz").status_code == 200
