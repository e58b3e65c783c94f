"""Slow-drip clients against a real uvicorn server (issue #9, item 8): header and body timeouts.

Each case drips real bytes over a raw socket, with the timeouts made short by the settings (and the
protocol class ``vgloss serve`` uses), while a well-behaved client is served on the same server.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from app.http_protocol import AUTO, TimedH11Protocol, with_header_timeout

HEADER_TIMEOUT_S = 1.0


def _drip(port: int, first: bytes, drops: bytes, every_s: float, give_up_s: float) -> tuple[bytes, float]:
    """Send ``first``, then ``drops`` one byte every ``every_s`` until the server answers or closes;
    (what it answered, seconds until it closed). Fails the test if still open after ``give_up_s``."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=give_up_s) as sock:
        sock.sendall(first)
        answer = b""
        for byte in drops:
            sock.settimeout(every_s)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                assert time.monotonic() - started < give_up_s, "the server kept a dripping connection open"
                try:
                    sock.sendall(bytes([byte]))
                except OSError:  # closed while we were sending
                    break
                continue
            except ConnectionResetError:
                break
            answer += chunk
            if not chunk:
                break
        sock.settimeout(give_up_s)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer, time.monotonic() - started


def _good_requests_meanwhile(url: str, stop: threading.Event, statuses: list[int]) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        while not stop.is_set():
            statuses.append(http.get("/healthz").status_code)
            time.sleep(0.1)


def test_a_dripped_request_head_is_answered_408_and_closed(live_server_factory):
    for protocol in {AUTO, TimedH11Protocol}:  # httptools (uvicorn's auto when installed) and h11
        server = live_server_factory(http=with_header_timeout(HEADER_TIMEOUT_S, protocol))
        stop, statuses = threading.Event(), []
        good = threading.Thread(target=_good_requests_meanwhile, args=(server.url, stop, statuses))
        good.start()
        try:
            with ThreadPoolExecutor(2) as pool:
                silent_drip = pool.submit(_drip, server.port, b"", b"", every_s=0.1, give_up_s=10)
                answer, closed_after = _drip(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
                                             b"X-Slow: " + b"a" * 200, every_s=0.1, give_up_s=10)
                silent, silent_closed_after = silent_drip.result()
        finally:
            stop.set()
            good.join()
        assert answer.startswith(b"HTTP/1.1 408"), (protocol, answer[:200])
        assert b'"request_timeout"' in answer
        # the server's clock starts at accept, the client's just before connect; asyncio may also fire a
        # timer up to its clock resolution early (0.9999 s seen for 1 s)
        assert HEADER_TIMEOUT_S - 0.05 <= closed_after < HEADER_TIMEOUT_S + 2, closed_after
        assert silent == b"" and silent_closed_after < HEADER_TIMEOUT_S + 2  # sent nothing: just closed
        assert statuses and set(statuses) == {200}


def test_the_header_timeout_does_not_cut_keep_alive_requests_or_slow_answers(live_server_factory):
    server = live_server_factory(http=with_header_timeout(0.3))
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for _ in range(3):
            assert http.get("/healthz").status_code == 200
            time.sleep(0.5)  # idle between requests on one connection: uvicorn's keep-alive, not ours


def test_a_body_that_drips_inside_the_idle_timeout_is_cut_at_the_body_deadline(live_server_factory):
    server = live_server_factory(http=with_header_timeout(HEADER_TIMEOUT_S), body_timeout_s=1.5)
    stop, statuses = threading.Event(), []
    good = threading.Thread(target=_good_requests_meanwhile, args=(server.url, stop, statuses))
    good.start()
    try:
        # one byte every 0.2 s never trips the 30 s idle timeout; the whole body may take only 1.5 s
        answer, closed_after = _drip(
            server.port,
            b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n{",
            b'"images": ["' + b"A" * 1000, every_s=0.2, give_up_s=10,
        )
    finally:
        stop.set()
        good.join()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"request_timeout"' in answer
    assert 1.5 <= closed_after < 4, closed_after
    assert statuses and set(statuses) == {200}
