"""A damaged active-classifier pointer on a real uvicorn server (issue #24 item 6): that set says
it is damaged, the listing still lists every set, nothing answers 500."""

from __future__ import annotations

import time

import httpx

from gloss_gen.data.store import DirectoryBackend, Store

ADMIN_KEY = "admin-key-pointer"


def test_a_damaged_active_pointer_marks_its_set_and_not_the_listing(live_server_factory, tmp_path, jpeg_bytes):
    store = Store(DirectoryBackend(tmp_path / "shared-store"), "vgloss")
    server = live_server_factory(store=store, admin_keys=[ADMIN_KEY])
    model_id = server.runtime.registry.model.model_id
    with httpx.Client(base_url=server.url, timeout=120) as http:
        created = http.post("/v1/class-sets", json={"name": "pets", "classes": ["cat", "dog"], "method": "classname"},
                            headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert created.status_code == 202, created.text
        for _ in range(600):
            if http.get("/v1/class-sets/pets").json().get("ready"):
                break
            time.sleep(0.1)
        store.backend.set(store._k("active", model_id, "pets"), b"[1, 2]")
        listing = http.get("/v1/class-sets")
        assert listing.status_code == 200, listing.text
        body = listing.json()
        sets = body if isinstance(body, list) else body["class_sets"]
        assert {"cifar10", "pets"} <= {s["name"] for s in sets}
        detail = http.get("/v1/class-sets/pets")
        assert detail.status_code == 200, detail.text
        assert detail.json()["ready"] is False and detail.json()["error"]["code"] == "classifier_corrupt"
        classified = http.post("/v1/classify", files={"images": ("a.jpg", jpeg_bytes[0], "image/jpeg")},
                               data={"class_set": "pets"})
        assert classified.status_code < 500, classified.text
