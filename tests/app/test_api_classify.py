"""POST /v1/classify on the tiny model: response shape, both encodings, labels, class sets."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import pytest
from api_helpers import (
    assert_same_predictions,
    make_settings,
    metric_value,
    multipart,
    runtime_of,
    wait_ready,
)

PREDICTION_KEYS = {"class_id", "label", "score", "similarity"}


def test_multipart_response_has_the_documented_shape(client, jpeg_bytes):
    response = client.post("/v1/classify", **multipart(jpeg_bytes[:2], ["a.jpg", "b.jpg"], top_k=3))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"model", "class_set", "descriptions", "results"}
    assert body["model"] == "vgloss-tiny/none"
    assert body["class_set"] == "cifar10"
    assert body["descriptions"] == runtime_of(client).registry.loaded("cifar10").classifier.descriptions_id
    assert [r["index"] for r in body["results"]] == [0, 1]
    assert [r["filename"] for r in body["results"]] == ["a.jpg", "b.jpg"]
    cifar_ids = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}
    for result in body["results"]:
        predictions = result["predictions"]
        assert len(predictions) == 3
        assert all(set(p) == PREDICTION_KEYS for p in predictions)  # no evidence unless asked
        assert {p["class_id"] for p in predictions} <= cifar_ids
        scores = [p["score"] for p in predictions]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert all(-1.0 <= p["similarity"] <= 1.0 for p in predictions)


def test_top_k_defaults_to_five_and_scores_are_a_distribution(client, jpeg_bytes):
    body = client.post("/v1/classify", **multipart(jpeg_bytes[:1])).json()
    assert len(body["results"][0]["predictions"]) == 5
    full = client.post("/v1/classify", **multipart(jpeg_bytes[:1], top_k=100)).json()
    predictions = full["results"][0]["predictions"]
    assert len(predictions) == 10  # top_k is capped by the class set's size
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-4)


def test_json_base64_gives_the_same_answer_as_multipart(client, jpeg_bytes):
    via_form = client.post("/v1/classify", **multipart(jpeg_bytes[:2], top_k=4)).json()
    encoded = [base64.b64encode(data).decode() for data in jpeg_bytes[:2]]
    encoded[1] = "data:image/jpeg;base64," + encoded[1]  # data URLs are accepted too
    via_json = client.post("/v1/classify", json={"images": encoded, "top_k": 4}).json()
    assert [r["filename"] for r in via_json["results"]] == [None, None]
    for a, b in zip(via_form["results"], via_json["results"]):
        assert_same_predictions(b["predictions"], a["predictions"])


def test_classify_alias_is_the_same_handler(client, jpeg_bytes):
    a = client.post("/v1/classify", **multipart(jpeg_bytes[:1], top_k=2)).json()
    b = client.post("/classify", **multipart(jpeg_bytes[:1], top_k=2)).json()
    assert a == b


def test_explain_adds_the_best_matching_description(client, jpeg_bytes):
    runtime = runtime_of(client)
    classifier = runtime.registry.loaded("cifar10").classifier
    body = client.post("/v1/classify", **multipart(jpeg_bytes[:1], top_k=3, explain=True)).json()
    for prediction in body["results"][0]["predictions"]:
        index = classifier.class_set.ids.index(prediction["class_id"])
        own_texts = classifier.evidence_texts[classifier.offsets[index] : classifier.offsets[index + 1]]
        assert prediction["evidence"] in own_texts  # a WordNet gloss of that very class
    json_body = client.post(
        "/v1/classify", json={"images": [base64.b64encode(jpeg_bytes[0]).decode()], "explain": True}
    ).json()
    assert all(p["evidence"] for p in json_body["results"][0]["predictions"])


def test_one_bad_image_among_good_ones_is_a_per_item_error(client, jpeg_bytes):
    response = client.post(
        "/v1/classify",
        **multipart([jpeg_bytes[0], b"this is not an image", jpeg_bytes[1]], ["ok.jpg", "bad.jpg", "ok2.jpg"]),
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert "predictions" in results[0] and "predictions" in results[2]
    assert results[1] == {
        "index": 1,
        "filename": "bad.jpg",
        "error": {"code": "invalid_image", "message": results[1]["error"]["message"]},
    }
    alone = client.post("/v1/classify", **multipart([jpeg_bytes[1]])).json()
    assert_same_predictions(results[2]["predictions"], alone["results"][0]["predictions"])


def test_request_id_is_honoured_or_generated(client, jpeg_bytes):
    response = client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    generated = client.post("/v1/classify", **multipart(jpeg_bytes[:1])).headers["x-request-id"]
    assert len(generated) == 32
    assert client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"] != "bad id\twith spaces"


def test_adhoc_labels_are_embedded_once_then_cached(client, jpeg_bytes):
    runtime = runtime_of(client)
    labels = ["a red sports car", "a tabby cat", "a sailing boat"]

    def encoded_prompts() -> float:
        return metric_value(client.get("/metrics").text, "vgloss_text_prompts_encoded_total")

    before = encoded_prompts()
    first = client.post("/v1/classify", **multipart(jpeg_bytes[:1], labels=labels, top_k=3))
    assert first.status_code == 200, first.text
    after_first = encoded_prompts()
    assert after_first - before == 7 * len(labels)  # class name in open_clip's 7 simple templates
    body = first.json()
    assert body["class_set"].startswith("labels-")
    assert {p["label"] for p in body["results"][0]["predictions"]} == set(labels)

    # the same labels again, as one JSON-list field this time: no text is encoded
    second = client.post("/v1/classify", **multipart(jpeg_bytes[:1], labels=json.dumps(labels), top_k=3))
    assert second.json() == body
    assert encoded_prompts() == after_first
    text = client.get("/metrics").text
    assert metric_value(text, "vgloss_label_classifier_lookups_total", {"source": "memory"}) == 1
    assert metric_value(text, "vgloss_label_classifier_lookups_total", {"source": "built"}) == 1
    assert runtime.store.get_active_classifier("vgloss-tiny/none", body["class_set"]) is not None


def test_label_lru_is_bounded_and_falls_back_to_the_store(app_factory, jpeg_bytes):
    client = app_factory(label_cache_size=2)
    sets = [["cat", "dog"], ["car", "bus"], ["tree", "flower"]]
    for labels in sets:
        assert client.post("/v1/classify", **multipart(jpeg_bytes[:1], labels=labels)).status_code == 200
    runtime = runtime_of(client)
    assert len(runtime.registry._labels) == 2
    encoded = metric_value(client.get("/metrics").text, "vgloss_text_prompts_encoded_total")
    again = client.post("/v1/classify", **multipart(jpeg_bytes[:1], labels=sets[0]))  # evicted from memory
    assert again.status_code == 200
    text = client.get("/metrics").text
    assert metric_value(text, "vgloss_text_prompts_encoded_total") == encoded
    assert metric_value(text, "vgloss_label_classifier_lookups_total", {"source": "store"}) == 1


def test_label_classifiers_in_the_store_serve_a_second_server(app_factory, tmp_path, jpeg_bytes):
    shared = tmp_path / "shared-data"
    first = app_factory(data_dir=shared)
    labels = ["an apple", "a banana"]
    a = first.post("/v1/classify", **multipart(jpeg_bytes[:2], labels=labels)).json()
    second = app_factory(data_dir=shared)
    b = second.post("/v1/classify", **multipart(jpeg_bytes[:2], labels=labels)).json()
    assert a == b
    assert metric_value(second.get("/metrics").text, "vgloss_text_prompts_encoded_total") == 0


def test_builtin_class_set_is_built_on_first_request(client, jpeg_bytes):
    listed = {s["name"]: s for s in client.get("/v1/class-sets").json()}
    assert listed["stl10"]["ready"] is False
    response = client.post("/v1/classify", **multipart(jpeg_bytes[:1], class_set="stl10", top_k=10))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["class_set"] == "stl10"
    assert {p["class_id"] for p in body["results"][0]["predictions"]} == {
        c.id for c in runtime_of(client).registry.loaded("stl10").classifier.class_set.classes
    }
    listed = {s["name"]: s for s in client.get("/v1/class-sets").json()}
    assert listed["stl10"]["ready"] is True and listed["stl10"]["method"] == "wordnet"


def test_unknown_class_set_is_404_and_the_server_keeps_answering(client, jpeg_bytes):
    response = client.post("/v1/classify", **multipart(jpeg_bytes[:1], class_set="no-such-set"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "class_set_not_found"
    assert client.post("/v1/classify", **multipart(jpeg_bytes[:1])).status_code == 200


def test_fresh_server_serves_imagenet1k_by_default(app_factory, tmp_path, jpeg_bytes):
    data_dir = tmp_path / "fresh"
    client = app_factory(data_dir=data_dir, default_class_set="imagenet1k")
    response = client.post("/v1/classify", **multipart(jpeg_bytes[:1], ["tench.jpg"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["class_set"] == "imagenet1k"
    assert all(p["class_id"].startswith("n") and len(p["class_id"]) == 9 for p in body["results"][0]["predictions"])
    summary = {s["name"]: s for s in client.get("/v1/class-sets").json()}["imagenet1k"]
    assert summary == {
        "name": "imagenet1k", "num_classes": 1000, "descriptions": body["descriptions"], "method": "wordnet",
        "model": "vgloss-tiny/none", "ready": True, "builtin": True,
    }
    # a restart on the same data directory loads the stored classifier: no text encoded at all
    restarted = app_factory(data_dir=data_dir, default_class_set="imagenet1k")
    assert restarted.post("/v1/classify", **multipart(jpeg_bytes[:1], ["tench.jpg"])).json() == body
    assert metric_value(restarted.get("/metrics").text, "vgloss_text_prompts_encoded_total") == 0


def test_healthz_answers_while_loading_and_readyz_tells_the_truth(tmp_path, jpeg_bytes, monkeypatch):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.services.model import ModelHolder

    gate = threading.Event()
    real_load = ModelHolder.load

    def gated_load(self):
        gate.wait(30)
        real_load(self)

    monkeypatch.setattr(ModelHolder, "load", gated_load)
    with TestClient(create_app(make_settings(tmp_path / "d"))) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
        early = client.post("/v1/classify", **multipart(jpeg_bytes[:1]))
        assert early.status_code == 503 and early.headers["retry-after"]
        assert early.json()["error"]["code"] == "not_ready"
        gate.set()
        wait_ready(client)
        assert client.get("/readyz").json()["default_class_set"] == "cifar10"
        assert client.post("/v1/classify", **multipart(jpeg_bytes[:1])).status_code == 200


def test_failed_start_keeps_the_process_alive_and_says_why(app_factory):
    client = app_factory(ready=False, default_class_set="not-a-set")
    deadline = time.monotonic() + 60
    while "start-up failed" not in client.get("/readyz").text and time.monotonic() < deadline:
        time.sleep(0.05)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "not-a-set" in ready.json()["error"]["message"]
    assert client.get("/healthz").status_code == 200


def test_docs_and_openapi_describe_the_api(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert {"/v1/class-sets", "/v1/class-sets/{name}", "/v1/jobs/{job_id}", "/healthz", "/readyz"} <= set(spec["paths"])


def test_metrics_count_requests_images_and_batches(client, jpeg_bytes):
    client.post("/v1/classify", **multipart(jpeg_bytes[:3]))
    client.post("/v1/classify", **multipart([b"", jpeg_bytes[0]]))
    client.post("/v1/classify", **multipart(jpeg_bytes[:1], class_set="missing-set"))
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric_value(text, "vgloss_http_requests_total", {"route": "/v1/classify", "status": "200"}) == 2
    assert metric_value(text, "vgloss_http_requests_total", {"route": "/v1/classify", "status": "404"}) == 1
    assert metric_value(text, "vgloss_http_request_duration_seconds_count", {"route": "/v1/classify"}) == 3
    assert metric_value(text, "vgloss_images_classified_total") == 4
    assert metric_value(text, "vgloss_image_errors_total", {"code": "empty_image"}) == 1
    assert metric_value(text, "vgloss_inference_batch_size_sum") == 4
    assert metric_value(text, "vgloss_inference_queue_depth") == 0


def test_cli_classify_json_is_the_server_response(isolated_env, tmp_path, app_factory, data_dir, capsys):
    """`vgloss classify --json` and POST /v1/classify give the same body for the same images."""
    from gloss_gen.cli import main

    client = app_factory(data_dir=Path(isolated_env["VGLOSS_DATA_DIR"]))  # stores the cifar10 classifier
    paths = sorted((data_dir / "cifar10-sample" / "cat").glob("*.jpg"))[:2]
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    paths.append(bad)
    blobs, names = [p.read_bytes() for p in paths], [p.name for p in paths]
    response = client.post("/v1/classify", **multipart(blobs, names, class_set="cifar10", top_k=3, explain=True))
    assert response.status_code == 200, response.text
    served = response.json()

    code = main(["classify", *map(str, paths), "--class-set", "cifar10", "--top-k", "3", "--explain", "--json"])
    local = json.loads(capsys.readouterr().out)
    assert code == 1  # one image failed
    assert {k: v for k, v in local.items() if k != "results"} == {k: v for k, v in served.items() if k != "results"}
    assert len(local["results"]) == len(served["results"]) == 3
    for mine, theirs in zip(local["results"], served["results"]):
        assert set(mine) == set(theirs)
        assert (mine["index"], mine["filename"]) == (theirs["index"], theirs["filename"])
        if "error" in theirs:
            assert mine["error"] == theirs["error"]
        else:
            assert_same_predictions(mine["predictions"], theirs["predictions"])
