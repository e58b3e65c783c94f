"""Lone surrogates in labels and class names on a real uvicorn server (issue #24 item 5): a 4xx
with a code, never a 500."""

from __future__ import annotations

import base64
import json

import httpx

ADMIN_KEY = "admin-key-surrogate"


def test_lone_surrogates_are_refused_with_a_code(live_server_factory, jpeg_bytes):
    server = live_server_factory(admin_keys=[ADMIN_KEY])
    image = base64.b64encode(jpeg_bytes[0]).decode()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        answers = {
            "json escape": http.post("/v1/classify", headers={"Content-Type": "application/json"},
                                     content=b'{"images": ["%s"], "labels": ["\\ud800x", "dog"]}' % image.encode()),
            "raw bytes": http.post("/v1/classify", headers={"Content-Type": "application/json"},
                                   content=b'{"images": ["%s"], "labels": ["\xed\xa0\x80", "dog"]}' % image.encode()),
            "multipart": http.post("/v1/classify", files=[("images", ("a.jpg", jpeg_bytes[0], "image/jpeg")),
                                                          ("labels", (None, b"\xed\xa0\x80")),
                                                          ("labels", (None, b"dog"))]),
            "admin class": http.post("/v1/class-sets", headers={"Content-Type": "application/json",
                                                                "Authorization": f"Bearer {ADMIN_KEY}"},
                                     content=json.dumps({"name": "surr", "classes": ["\ud800x", "dog"],
                                                         "method": "classname"}).encode()),
        }
    # multipart text is decoded with replacement characters: a label, not an error, and never a 500
    assert answers.pop("multipart").status_code == 200
    for how, answer in answers.items():
        assert 400 <= answer.status_code < 500, (how, answer.status_code, answer.text)
        assert answer.json()["error"]["code"], (how, answer.text)
