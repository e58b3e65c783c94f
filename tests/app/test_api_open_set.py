"""POST /v1/classify with open_set on a real uvicorn server over a real Redis: NegLabel's negatives
build in the background (503 + Retry-After meanwhile, other requests served), then every image has
an ood_score and unknown; thresholds calibrate on uploaded examples; bad fields are 422."""

from __future__ import annotations

import base64
import time

import httpx
import pytest
from api_helpers import multipart
from test_api_adapters import ADMIN_KEY, upload_colours

from gloss_gen.classify.negative_embeddings import NEGATIVES_KIND
from gloss_gen.core.config import Settings
from gloss_gen.data.store import RedisBackend, Store

CANDIDATES = 800  # VGLOSS_NEGLABEL_MAX_CANDIDATES: seconds on vgloss-tiny instead of minutes


def until_not_503(http: httpx.Client, timeout_s: float = 180, **request) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = http.post("/v1/classify", **request)
        if response.status_code != 503:
            return response
        assert time.monotonic() < deadline, response.text
        assert 1 <= int(response.headers["retry-after"]) <= 60
        time.sleep(0.2)


@pytest.fixture()
def redis_backed(redis_url, redis_namespace):
    return lambda: Store(RedisBackend(redis_url), redis_namespace)


def test_neglabel_builds_negatives_in_the_background_then_scores_every_image(
    live_server_factory, redis_backed, redis_url, redis_namespace, jpeg_bytes
):
    server = live_server_factory(store=redis_backed(), neglabel_max_candidates=CANDIDATES)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        first = http.post("/v1/classify", **multipart(jpeg_bytes[:3], open_set="neglabel", top_k=2))
        assert first.status_code == 503, first.text
        assert first.json()["error"]["code"] == "negatives_building"
        assert 1 <= int(first.headers["retry-after"]) <= 60

        # the build blocks nobody: plain and MCM requests are answered while it runs
        plain = http.post("/v1/classify", **multipart(jpeg_bytes[:1]))
        assert plain.status_code == 200 and set(plain.json()) == {"model", "class_set", "descriptions", "results"}
        assert set(plain.json()["results"][0]) == {"index", "filename", "predictions"}
        mcm = http.post("/v1/classify", **multipart(jpeg_bytes[:1], open_set="mcm", open_set_threshold=0.2))
        assert mcm.status_code == 200, mcm.text
        assert mcm.json()["open_set"] == {"method": "mcm", "threshold": 0.2, "threshold_source": "request"}

        done = until_not_503(http, **multipart(jpeg_bytes[:3], open_set="neglabel", top_k=2))
        assert done.status_code == 200, done.text
        body = done.json()
        info = body["open_set"]
        assert info["method"] == "neglabel" and info["threshold"] == 0.5 and info["threshold_source"] == "default"
        assert 0.14 * CANDIDATES <= info["negatives"] <= 0.15 * CANDIDATES
        for result in body["results"]:
            assert 0.0 <= result["ood_score"] <= 1.0
            assert result["unknown"] == (result["ood_score"] < 0.5)
            assert len(result["predictions"]) == 2  # still listed
        stored = Store(RedisBackend(redis_url), redis_namespace).get_bytes(NEGATIVES_KIND, info["negatives_key"])
        assert stored is not None

        as_json = http.post("/v1/classify", json={
            "images": [base64.b64encode(data).decode() for data in jpeg_bytes[:3]], "open_set": "neglabel",
            "open_set_threshold": 0.99, "top_k": 2})
        assert as_json.status_code == 200, as_json.text
        assert as_json.json()["open_set"]["threshold_source"] == "request"
        for a, b in zip(body["results"], as_json.json()["results"]):
            assert b["ood_score"] == pytest.approx(a["ood_score"], abs=1e-5)
            assert b["unknown"] == (b["ood_score"] < 0.99)

    # a second server on the same store reads the negatives: no build, no 503
    second = live_server_factory(store=redis_backed(), neglabel_max_candidates=CANDIDATES)
    with httpx.Client(base_url=second.url, timeout=60) as http:
        again = http.post("/v1/classify", **multipart(jpeg_bytes[:3], open_set="neglabel", top_k=2))
        assert again.status_code == 200, again.text
        assert [r["ood_score"] for r in again.json()["results"]] == pytest.approx(
            [r["ood_score"] for r in body["results"]], abs=1e-5)


BAD_FIELDS = [
    ({"open_set": "maybe"}, "Invalid open_set: unknown open_set mode 'maybe'"),
    ({"open_set": "neglabel", "open_set_threshold": 1.5}, "Invalid open_set_threshold: the open-set threshold must be between 0 and 1"),
    ({"open_set": "mcm", "open_set_threshold": "high"}, "Invalid open_set_threshold: 'high' is not a number"),
    ({"open_set_threshold": 0.4}, "Invalid open_set_threshold: it needs open_set mcm or neglabel"),
    ({"open_set": "mcm"}, "open_set=mcm has no default threshold"),
]


def test_bad_open_set_fields_are_422_in_both_encodings(live_server_factory, jpeg_bytes):
    server = live_server_factory()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for fields, message in BAD_FIELDS:
            as_form = http.post("/v1/classify", **multipart(jpeg_bytes[:1], **fields))
            assert as_form.status_code == 422, as_form.text
            assert message in as_form.json()["error"]["message"]
            if isinstance(fields.get("open_set_threshold", 0.0), str):
                continue  # a JSON number field cannot carry the text (pydantic's own 422 covers it)
            as_json = http.post("/v1/classify", json={"images": [base64.b64encode(jpeg_bytes[0]).decode()], **fields})
            assert as_json.status_code == 422, as_json.text
            assert message in as_json.json()["error"]["message"]


def test_mcm_calibrates_on_uploaded_examples(live_server_factory, redis_backed, jpeg_bytes):
    server = live_server_factory(store=redis_backed(), admin_keys=[ADMIN_KEY])
    with httpx.Client(base_url=server.url, timeout=60) as http:
        upload_colours(http, "cifar10", per_class=10)
        first = http.post("/v1/classify", **multipart(jpeg_bytes[:2], open_set="mcm"))
        assert first.status_code == 503, first.text
        assert first.json()["error"]["code"] == "open_set_calibrating" and "retry-after" in first.headers
        # a threshold in the request needs no calibration
        given = http.post("/v1/classify", **multipart(jpeg_bytes[:2], open_set="mcm", open_set_threshold=0.1))
        assert given.status_code == 200 and given.json()["open_set"]["threshold_source"] == "request"
        done = until_not_503(http, **multipart(jpeg_bytes[:2], open_set="mcm"))
        assert done.status_code == 200, done.text
        info = done.json()["open_set"]
        assert info["threshold_source"] == "calibration"
        assert info["calibration"]["examples"] == 40 and info["calibration"]["tpr"] >= 0.95
        for result in done.json()["results"]:
            assert result["unknown"] == (result["ood_score"] < info["threshold"])


def test_the_server_default_applies_when_a_request_names_no_method(app_factory, jpeg_bytes):
    client = app_factory(open_set="mcm", open_set_threshold=0.2)
    body = client.post("/v1/classify", **multipart(jpeg_bytes[:1])).json()
    assert body["open_set"] == {"method": "mcm", "threshold": 0.2, "threshold_source": "setting"}
    assert "ood_score" in body["results"][0]
    off = client.post("/v1/classify", **multipart(jpeg_bytes[:1], open_set="off")).json()
    assert "open_set" not in off and "ood_score" not in off["results"][0]
    with pytest.raises(ValueError, match="VGLOSS_OPEN_SET=mcm needs VGLOSS_OPEN_SET_THRESHOLD"):
        Settings(_env_file=None, open_set="mcm")
