"""Chunked JSON bodies over a route's limit, against a real uvicorn server (issue 24, item 12).

A body sent with ``Transfer-Encoding: chunked`` declares no length, so it can only be refused as
its bytes arrive. The routes that take no images (class-set creation, adapters) have a small limit
of their own: a large chunked body is answered 413 ``request_too_large`` once the received bytes
pass it, before the client has sent the whole body and without the server buffering it all (it
used to be buffered and parsed up to the JSON image limit, about 855 MiB).
"""

from __future__ import annotations

import gc
import socket
import threading
import time

import httpx

from app.main import SMALL_BODY_BYTES

MIB = 1024 * 1024
TOTAL_MIB = 320  # well over a small route's limit (32 MiB) plus what a refusal drains (128 MiB)
ADMIN_KEY = "admin-key-for-chunked-limits"


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:  # the live server runs in this process
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _send_chunked_until_answered(port: int, path: str, opening: bytes, total_mib: int,
                                 headers: dict[str, str]) -> tuple[bytes, int, int]:
    """POST ``opening`` then 1 MiB chunks of ``A`` (up to ``total_mib``), stopping as soon as the
    server answers or closes; returns (answer, MiB sent, peak RSS growth in bytes)."""
    answer = bytearray()
    answered = threading.Event()
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)

    def read() -> None:
        try:
            while data := sock.recv(65536):
                answer.extend(data)
                answered.set()
        except OSError:
            pass
        answered.set()

    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    before = peak = _rss_bytes()
    sent_mib = 0
    with sock:
        sock.sendall(head.encode() + b"\r\n" + b"%x\r\n%s\r\n" % (len(opening), opening))
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        block = b"%x\r\n%s\r\n" % (MIB, b"A" * MIB)
        try:
            while sent_mib < total_mib and not answered.is_set():
                sock.sendall(block)
                sent_mib += 1
                if sent_mib % 8 == 0:
                    peak = max(peak, _rss_bytes())
            if not answered.is_set():
                sock.sendall(b'3\r\n"]}\r\n0\r\n\r\n')  # end the body: the server must answer
        except OSError:  # the server closed the connection after answering
            pass
        answered.wait(120)
        time.sleep(0.2)  # the rest of the answer
        peak = max(peak, _rss_bytes())
    return bytes(answer), sent_mib, peak - before


def _status_and_code(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, httpx.Response(status, content=body).json()["error"]["code"]


def test_a_chunked_json_body_over_the_route_limit_is_refused_as_it_arrives(live_server_factory):
    server = live_server_factory(admin_keys=[ADMIN_KEY])
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for path, opening in [("/v1/class-sets", b'{"name": "big", "classes": ["'),
                          ("/v1/class-sets/cifar10/adapters", b'{"method": "tip", "shots": 1, "x": "')]:
        answer, sent_mib, rss_growth = _send_chunked_until_answered(server.port, path, opening, TOTAL_MIB, admin)
        print(f"{path}: answered after {sent_mib} MiB sent, RSS +{rss_growth / MIB:.0f} MiB")

        assert _status_and_code(answer) == (413, "request_too_large"), answer[:300]
        assert sent_mib < TOTAL_MIB, "the server answered only once the whole body was in"
        # the server holds at most the route's limit of the body, not the body
        assert rss_growth < SMALL_BODY_BYTES + 48 * MIB, f"RSS grew by {rss_growth / MIB:.0f} MiB"

    # a declared length over the limit is refused before any of the body is sent
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"POST /v1/class-sets HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Length: {SMALL_BODY_BYTES + 1}\r\n\r\n".encode())
        assert _status_and_code(sock.recv(65536)) == (413, "request_too_large")
    with httpx.Client(base_url=server.url, timeout=30, headers=admin) as http:  # the server serves on
        assert http.get("/v1/class-sets").status_code == 200
        assert http.post("/v1/class-sets", json={"name": "small", "classes": ["cat", "dog"]}).status_code == 202


def test_a_chunked_classify_body_over_the_json_image_limit_is_refused_as_it_arrives(live_server_factory):
    # two 1 MiB images: the JSON limit is about 3.7 MiB
    server = live_server_factory(max_images_per_request=2, max_image_bytes=MIB)
    answer, sent_mib, rss_growth = _send_chunked_until_answered(server.port, "/v1/classify", b'{"images": ["',
                                                                TOTAL_MIB, {})
    print(f"/v1/classify: answered after {sent_mib} MiB sent, RSS +{rss_growth / MIB:.0f} MiB")
    assert _status_and_code(answer) == (413, "request_too_large"), answer[:300]
    assert sent_mib < TOTAL_MIB
    assert rss_growth < 48 * MIB, f"RSS grew by {rss_growth / MIB:.0f} MiB"


def test_a_refused_large_image_is_given_back_as_soon_as_it_is_answered(live_server_factory):
    """A JSON image over the per-image limit (a per-item 413, after the body is parsed) keeps no memory
    once answered: the error kept for the answer used to hold, through its traceback, the frames
    that held the base64 text and the parsed body, until the cyclic garbage collector happened to
    run (the 850 MiB body of item 12 stayed resident)."""
    server = live_server_factory(max_images_per_request=2, max_image_bytes=40 * MIB)  # JSON limit ~107 MiB
    gc.collect()
    gc.disable()  # what is given back must be given back by reference counting, not by a lucky collection
    try:
        before = _rss_bytes()
        answer, sent_mib, rss_growth = _send_chunked_until_answered(server.port, "/v1/classify", b'{"images": ["',
                                                                    96, {})
        retained = _rss_bytes() - before
    finally:
        gc.enable()
    print(f"/v1/classify, one 96 MiB image: RSS peak +{rss_growth / MIB:.0f} MiB, +{retained / MIB:.0f} MiB after")
    assert _status_and_code(answer) == (413, "image_too_large"), answer[:300]
    assert sent_mib == 96
    assert retained < 48 * MIB, f"{retained / MIB:.0f} MiB still held after the answer"
