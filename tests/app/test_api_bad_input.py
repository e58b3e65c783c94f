"""Every kind of bad request gets its documented status and error code, never a 5xx, and the server
answers the next good request."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from api_helpers import multipart
from PIL import Image

MAX_IMAGE_BYTES = 150_000
MAX_IMAGES = 4
MAX_LABELS = 5


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (the data is one tiny IDAT)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def jpeg_of_size(min_bytes: int) -> bytes:
    import numpy as np

    rng = np.random.default_rng(0)
    side = 256
    while True:
        noise = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noise).save(buffer, "JPEG", quality=95)
        if buffer.tell() > min_bytes:
            return buffer.getvalue()
        side *= 2


@pytest.fixture(scope="module")
def bad_client(tmp_path_factory):
    from api_helpers import make_settings, wait_ready
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = make_settings(
        tmp_path_factory.mktemp("bad-input"),
        max_image_bytes=MAX_IMAGE_BYTES,
        max_images_per_request=MAX_IMAGES,
        max_labels=MAX_LABELS,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def good_jpeg(jpeg_bytes) -> bytes:
    small = [data for data in jpeg_bytes if len(data) < MAX_IMAGE_BYTES]
    return small[0]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bad_requests(good: bytes) -> list[tuple[str, dict, int, str]]:
    truncated = good[: len(good) // 2]
    too_big = jpeg_of_size(MAX_IMAGE_BYTES + 1)
    return [
        ("empty body", {"content": b""}, 422, "validation_error"),
        ("multipart without images", {"files": [("other", ("x.txt", b"hi", "text/plain"))], "data": {"top_k": "3"}}, 422, "validation_error"),
        ("zero-byte file", multipart([b""]), 400, "empty_image"),
        ("text file named .jpg", multipart([b"hello, I am plain text\n" * 20], ["photo.jpg"]), 400, "invalid_image"),
        ("truncated JPEG", multipart([truncated]), 400, "invalid_image"),
        ("PNG declaring 30000x30000", multipart([png_declaring(30000, 30000)], ["huge.png"]), 413, "image_too_many_pixels"),
        ("file over the byte limit", multipart([too_big]), 413, "image_too_large"),
        ("base64 image over the byte limit", {"json": {"images": [b64(too_big)]}}, 413, "image_too_large"),
        ("more images than allowed (multipart)", multipart([good] * (MAX_IMAGES + 1)), 413, "too_many_images"),
        ("more images than allowed (JSON)", {"json": {"images": [b64(good)] * (MAX_IMAGES + 1)}}, 413, "too_many_images"),
        ("unknown class set", multipart([good], class_set="no-such-set"), 404, "class_set_not_found"),
        ("class set name that cannot exist", multipart([good], class_set="../../etc/passwd"), 404, "class_set_not_found"),
        ("top_k 0", multipart([good], top_k=0), 422, "validation_error"),
        ("top_k 10000", multipart([good], top_k=10000), 422, "validation_error"),
        ("top_k not a number", multipart([good], top_k="five"), 422, "validation_error"),
        ("top_k 0 in JSON", {"json": {"images": [b64(good)], "top_k": 0}}, 422, "validation_error"),
        ("top_k 10000 in JSON", {"json": {"images": [b64(good)], "top_k": 10000}}, 422, "validation_error"),
        ("explain not a bool", multipart([good], explain="maybe"), 422, "validation_error"),
        ("wrong content type", {"content": b"\xff\xd8\xff", "headers": {"content-type": "image/jpeg"}}, 415, "unsupported_media_type"),
        ("no content type with a body", {"content": b"abc"}, 415, "unsupported_media_type"),
        ("urlencoded form", {"data": {"top_k": "3"}}, 415, "unsupported_media_type"),
        ("malformed base64", {"json": {"images": ["not base64 at all!!"]}}, 400, "invalid_base64"),
        ("malformed JSON", {"content": b'{"images": [', "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
        ("JSON images not a list", {"json": {"images": b64(good)}}, 422, "validation_error"),
        ("JSON without images", {"json": {"top_k": 3}}, 422, "validation_error"),
        ("JSON with empty images", {"json": {"images": []}}, 422, "validation_error"),
        ("JSON with an unknown field", {"json": {"images": [b64(good)], "topk": 3}}, 422, "validation_error"),
        ("labels empty (JSON)", {"json": {"images": [b64(good)], "labels": []}}, 422, "validation_error"),
        ("labels empty (form JSON list)", multipart([good], labels="[]"), 422, "validation_error"),
        ("a blank label", multipart([good], labels=["cat", "  "]), 422, "validation_error"),
        ("labels too long", multipart([good], labels=[f"label {i}" for i in range(MAX_LABELS + 1)]), 422, "validation_error"),
        ("labels too long (JSON)", {"json": {"images": [b64(good)], "labels": [f"l{i}" for i in range(MAX_LABELS + 1)]}}, 422, "validation_error"),
        ("labels not a list of strings", multipart([good], labels='[1, 2]'), 422, "validation_error"),
        ("labels and class_set both", multipart([good], labels=["cat", "dog"], class_set="cifar10"), 422, "validation_error"),
        ("labels and class_set both (JSON)", {"json": {"images": [b64(good)], "labels": ["cat"], "class_set": "cifar10"}}, 422, "validation_error"),
        ("multipart without a boundary", {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}}, 400, "invalid_multipart"),
        ("images sent as a text field", {"files": [("x", ("x", b"", "text/plain"))], "data": {"images": "aGVsbG8="}}, 400, "invalid_image"),
        ("every image bad, first over the limit", multipart([too_big, b""]), 413, "image_too_large"),
        ("every image bad, first empty", multipart([b"", too_big]), 400, "empty_image"),
    ]


CASE_NAMES = [case[0] for case in bad_requests(b"\xff\xd8placeholder")]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_request_gets_its_status_and_code(bad_client, good_jpeg, case):
    name, kwargs, status, code = next(c for c in bad_requests(good_jpeg) if c[0] == case)
    response = bad_client.post("/v1/classify", **kwargs)
    assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    after = bad_client.post("/v1/classify", **multipart([good_jpeg]))
    assert after.status_code == 200, "the server must answer the next good request"


def test_malformed_base64_among_good_images_is_a_per_item_error(bad_client, good_jpeg):
    response = bad_client.post("/v1/classify", json={"images": [b64(good_jpeg), "%%%", b64(good_jpeg)]})
    assert response.status_code == 200
    results = response.json()["results"]
    assert results[1]["error"]["code"] == "invalid_base64"
    assert "predictions" in results[0] and "predictions" in results[2]


def test_per_item_errors_keep_their_own_codes(bad_client, good_jpeg):
    huge_png = png_declaring(30000, 30000)
    response = bad_client.post(
        "/v1/classify", **multipart([b"", good_jpeg, huge_png, jpeg_of_size(MAX_IMAGE_BYTES + 1)], ["e", "ok", "px", "big"])
    )
    assert response.status_code == 200
    codes = [r.get("error", {}).get("code") for r in response.json()["results"]]
    assert codes == ["empty_image", None, "image_too_many_pixels", "image_too_large"]


def test_body_over_the_total_limit_is_refused_before_it_is_read(bad_client):
    limit = MAX_IMAGES * MAX_IMAGE_BYTES
    response = bad_client.post(
        "/v1/classify",
        content=b"x" * (limit + 2 * 1024 * 1024),
        headers={"content-type": "multipart/form-data; boundary=abc"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_unknown_paths_and_methods_use_the_envelope(bad_client):
    missing = bad_client.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong_method = bad_client.get("/v1/classify")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    bad_job_body = bad_client.get("/v1/jobs/not-a-job")
    assert bad_job_body.status_code == 404 and bad_job_body.json()["error"]["code"] == "job_not_found"
