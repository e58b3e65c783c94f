"""Label builds abandoned by their clients on a real uvicorn server (issue #24 item 4): a build
nobody waits for stops at its next chunk and gives back its text-work slot."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from app.services.text_work import MAX_BUILDS


def test_dropped_label_requests_do_not_lock_out_new_ones(live_server_factory, jpeg_bytes):
    server = live_server_factory()
    image = ("a.jpg", jpeg_bytes[0], "image/jpeg")

    def drop(n: int) -> None:
        labels = [f"thing {n} number {i}" for i in range(1000)]
        try:
            with httpx.Client(base_url=server.url, timeout=0.3) as http:
                http.post("/v1/classify", files={"images": image}, data={"labels": labels})
        except httpx.TimeoutException:
            pass  # the client gives up and hangs up

    with ThreadPoolExecutor(MAX_BUILDS) as pool:
        list(pool.map(drop, range(MAX_BUILDS)))
    time.sleep(1.0)
    with httpx.Client(base_url=server.url, timeout=120) as http:
        fresh = http.post("/v1/classify", files={"images": image}, data={"labels": ["cat", "dog"]})
    assert fresh.status_code == 200, fresh.text
    deadline = time.monotonic() + 30
    while server.runtime.text_work._admitted and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.runtime.text_work._admitted == 0
