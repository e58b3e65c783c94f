"""POST /v1/classify with FuDD's second look on a real uvicorn server: applied by default where the
class set has pair descriptions (``rerank`` in the body), per request off or deeper, refused in one
error where it cannot be had, and damaged pairs never keep the set from serving."""

from __future__ import annotations

import base64

import httpx
import pytest
from api_helpers import multipart
from test_rerank_cli import write_cifar10_pairs

from gloss_gen.classify.pair_embeddings import ACTIVE_KIND, build_pair_embeddings, put_pair_embeddings
from gloss_gen.data.classsets import load_class_set
from gloss_gen.data.pair_descriptions import load_pair_description_set
from gloss_gen.data.store import Store
from gloss_gen.data.store_backends import DirectoryBackend


@pytest.fixture()
def store_with_pairs(tmp_path, tiny_model):
    store = Store(DirectoryBackend(tmp_path / "shared-store"))
    pair_set = load_pair_description_set(write_cifar10_pairs(tmp_path / "cifar10.fudd.jsonl"),
                                         load_class_set("cifar10"))
    pairs = build_pair_embeddings(tiny_model, pair_set)
    put_pair_embeddings(store, pairs)
    return store, pairs


def test_rerank_by_default_per_request_and_off(live_server_factory, store_with_pairs, jpeg_bytes):
    store, pairs = store_with_pairs
    server = live_server_factory(store=store)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        default = http.post("/v1/classify", **multipart(jpeg_bytes[:4], top_k=10))
        assert default.status_code == 200, default.text
        assert default.json()["rerank"] == {"method": "fudd", "k": 10, "pairs": pairs.key}
        off = http.post("/v1/classify", **multipart(jpeg_bytes[:4], top_k=10, rerank="none"))
        assert off.status_code == 200 and "rerank" not in off.json()
        images = [base64.b64encode(data).decode() for data in jpeg_bytes[:4]]
        shallow = http.post("/v1/classify", json={"images": images, "top_k": 10, "rerank": "fudd", "rerank_k": 3,
                                                  "explain": True})
        assert shallow.status_code == 200, shallow.text
        assert shallow.json()["rerank"]["k"] == 3
        for before, after in zip(off.json()["results"], shallow.json()["results"]):
            b, a = before["predictions"], after["predictions"]
            assert {p["class_id"] for p in a[:3]} == {p["class_id"] for p in b[:3]}
            assert [p["class_id"] for p in a[3:]] == [p["class_id"] for p in b[3:]]
            for p in a[:3]:  # the evidence of a re-ranked class is one of its own pair texts or its name prompt
                assert p["evidence"].startswith(f"a photo of a {p['label']}")


def test_rerank_refusals(live_server_factory, store_with_pairs, jpeg_bytes):
    store, _ = store_with_pairs
    server = live_server_factory(store=store)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for fields, status, code in [
            ({"rerank": "maybe"}, 422, "validation_error"),
            ({"rerank_k": 1}, 422, "validation_error"),
            ({"rerank_k": "many"}, 422, "validation_error"),
            ({"labels": ["a cat", "a teapot"], "rerank": "fudd"}, 409, "no_pair_descriptions"),
        ]:
            response = http.post("/v1/classify", **multipart(jpeg_bytes[:1], **fields))
            assert response.status_code == status, (fields, response.text)
            assert response.json()["error"]["code"] == code
        labels = http.post("/v1/classify", **multipart(jpeg_bytes[:1], labels=["a cat", "a teapot"]))
        assert labels.status_code == 200 and "rerank" not in labels.json()  # the default applies where pairs exist


def test_damaged_pairs_serve_the_first_pass(live_server_factory, store_with_pairs, jpeg_bytes, tiny_model):
    store, _ = store_with_pairs
    store.put_bytes(ACTIVE_KIND, f"{tiny_model.id}:cifar10", b"[1, 2]")
    server = live_server_factory(store=store)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.post("/v1/classify", **multipart(jpeg_bytes[:1]))
        assert response.status_code == 200 and "rerank" not in response.json()
        asked = http.post("/v1/classify", **multipart(jpeg_bytes[:1], rerank="fudd"))
        assert asked.status_code == 409 and asked.json()["error"]["code"] == "no_pair_descriptions"
