"""Large request bodies against a real uvicorn server (issue #9, item 7): the body budget.

Concurrent chunked JSON uploads of real bytes: the server's memory stays bounded by the budget of
request-body bytes it holds at once, every upload gets an answer (503 ``server_busy`` or 413), the
budget is given back whatever happens, and a small request is served as before.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

MIB = 1024 * 1024
UPLOADS = 4
UPLOAD_MIB = 64
BUDGET_MIB = 32


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:  # the live server runs in this process
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class PeakRss:
    """The highest resident set size seen while the block runs, sampled every few milliseconds."""

    def __enter__(self) -> PeakRss:
        self.before = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.before


def _chunked_json(mib: int):
    """A classify body of one base64 'image' of ``mib`` MiB, sent chunked (no Content-Length)."""
    yield b'{"images": ["'
    chunk = b"A" * MIB
    for _ in range(mib):
        yield chunk
    yield b'"]}'


def _upload(url: str, mib: int) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60) as http:
        return http.post("/v1/classify", content=_chunked_json(mib), headers={"Content-Type": "application/json"})


def concurrent_uploads(url: str, uploads: int = UPLOADS, mib: int = UPLOAD_MIB) -> tuple[list[httpx.Response], PeakRss]:
    with PeakRss() as rss, ThreadPoolExecutor(uploads) as pool:
        responses = list(pool.map(lambda _: _upload(url, mib), range(uploads)))
    return responses, rss


def test_concurrent_chunked_json_uploads_stay_within_the_body_budget(live_server_factory, jpeg_bytes):
    server = live_server_factory(max_body_bytes_in_flight=BUDGET_MIB * MIB)
    responses, rss = concurrent_uploads(server.url)
    codes = [(r.status_code, r.json()["error"]["code"]) for r in responses]
    # 503 while others hold the budget; 413 for one that reaches the whole budget on its own (the
    # per-request limit is capped at the budget), which timing decides
    assert set(codes) <= {(503, "server_busy"), (413, "image_too_large"), (413, "request_too_large")}, codes
    assert (503, "server_busy") in codes
    assert all(r.headers["Retry-After"] for r in responses if r.status_code == 503)
    # 4 x 64 MiB arrived; what the server held at once is the 32 MiB budget, about twice over at most
    assert rss.growth < 160 * MIB, f"RSS grew {rss.growth / MIB:.0f} MiB"
    assert server.app.state.body_budget.in_use == 0
    with httpx.Client(base_url=server.url, timeout=30) as http:
        good = http.post("/v1/classify", files={"images": ("a.jpg", jpeg_bytes[0], "image/jpeg")})
    assert good.status_code == 200, good.text


def test_a_declared_body_that_does_not_fit_is_refused_before_it_is_read(live_server_factory, jpeg_bytes):
    server = live_server_factory(max_body_bytes_in_flight=BUDGET_MIB * MIB)
    budget = server.app.state.body_budget
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as holder:
        # a chunked upload that has sent 30 MiB and pauses, holding that much of the budget
        holder.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b"A" * MIB
        holder.sendall(b"%x\r\n" % 13 + b'{"images": ["\r\n')
        for _ in range(30):
            holder.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        deadline = time.monotonic() + 10
        while budget.in_use < 30 * MIB and time.monotonic() < deadline:
            time.sleep(0.02)
        assert budget.in_use >= 30 * MIB
        with httpx.Client(base_url=server.url, timeout=30) as http:
            started = time.monotonic()
            busy = http.post("/v1/classify", content=b"{}" + b" " * (4 * MIB),
                             headers={"Content-Type": "application/json"})
            refused_in = time.monotonic() - started
            assert http.get("/healthz").status_code == 200  # bodiless requests are not held up
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "server_busy", busy.text
    assert int(busy.headers["Retry-After"]) >= 1
    assert refused_in < 2
    deadline = time.monotonic() + 10  # the holder hung up: its share of the budget comes back
    while budget.in_use and time.monotonic() < deadline:
        time.sleep(0.02)
    assert budget.in_use == 0
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/v1/classify", files={"images": ("a.jpg", jpeg_bytes[0], "image/jpeg")}).status_code == 200


def _dripping_head(port: int, declared: int, authorization: bytes = b"") -> socket.socket:
    """A connection that declares a body of ``declared`` bytes and sends one byte of it."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + authorization + b"Content-Length: %d\r\n\r\n{" % declared)
    return conn


def test_a_slow_body_declaring_a_huge_length_does_not_block_other_uploads(live_server_factory, jpeg_bytes):
    """Issue #24 item 1: the declared length was charged up front, before authentication."""
    server = live_server_factory(api_keys=["user-key"], max_body_bytes_in_flight=BUDGET_MIB * MIB)
    budget = server.app.state.body_budget
    declared = BUDGET_MIB * MIB - 1  # within the per-request limit, the whole budget
    anonymous = [_dripping_head(server.port, declared) for _ in range(3)]
    keyed = _dripping_head(server.port, declared, b"Authorization: Bearer user-key\r\n")
    try:
        time.sleep(0.5)
        for conn in anonymous:  # refused at once, without waiting for the body
            conn.settimeout(5)
            assert b" 401 " in conn.recv(4096).split(b"\r\n")[0]
        # the keyed slow body holds a small reservation, not the budget
        assert budget.in_use <= BUDGET_MIB * MIB // 8
        with httpx.Client(base_url=server.url, timeout=30,
                          headers={"Authorization": "Bearer user-key"}) as http:
            for _ in range(3):
                good = http.post("/v1/classify", files={"images": ("a.jpg", jpeg_bytes[0], "image/jpeg")})
                assert good.status_code == 200, good.text
    finally:
        for conn in [*anonymous, keyed]:
            conn.close()
    deadline = time.monotonic() + 10
    while budget.in_use and time.monotonic() < deadline:
        time.sleep(0.02)
    assert budget.in_use == 0
