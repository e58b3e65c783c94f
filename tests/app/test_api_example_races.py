"""Concurrent example uploads on a real uvicorn server (issue #24 item 3): none is acknowledged
and then lost, and the per-set limit holds under concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from test_api_adapters import colour_png

ADMIN_KEY = "admin-key-race"
UPLOADERS, PER_UPLOAD, LIMIT = 10, 5, 30


def test_parallel_example_uploads_keep_every_acknowledged_example(live_server_factory):
    server = live_server_factory(admin_keys=[ADMIN_KEY], max_examples=LIMIT)
    rng = np.random.default_rng(7)
    batches = [[colour_png((40 * u % 255, 20 * i, 90), rng) for i in range(PER_UPLOAD)] for u in range(UPLOADERS)]

    def upload(images: list[bytes]) -> httpx.Response:
        files = [("images", (f"{n}.png", data, "image/png")) for n, data in enumerate(images)]
        with httpx.Client(base_url=server.url, timeout=120) as http:
            return http.post("/v1/class-sets/cifar10/examples", files=files, data={"labels": ["cat"] * PER_UPLOAD},
                             headers={"Authorization": f"Bearer {ADMIN_KEY}"})

    with ThreadPoolExecutor(UPLOADERS) as pool:
        responses = list(pool.map(upload, batches))
    acknowledged = sum(r.json()["added"] for r in responses if r.status_code == 200)
    refused = [r for r in responses if r.status_code != 200]
    assert all(r.status_code == 422 for r in refused), [r.text for r in refused]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        kept = http.get("/v1/class-sets/cifar10").json()["examples"]["cat"]
    assert kept == acknowledged  # nothing acknowledged and then lost
    assert kept <= LIMIT
    assert acknowledged + PER_UPLOAD * len(refused) == UPLOADERS * PER_UPLOAD
