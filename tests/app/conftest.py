"""Fixtures for the server tests: TestClient apps and live uvicorn servers on the tiny model.

Every app gets its own data directory (a directory store) unless a test passes a store or a
data directory to share; the default class set is cifar10 (ten WordNet glosses embed in well under
a second on vgloss-tiny). Helpers live in api_helpers.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from api_helpers import LiveServer, make_settings, wait_ready
from fastapi.testclient import TestClient

from app.main import create_app
from gloss_gen.data.store import Store


@pytest.fixture()
def app_factory(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """``app_factory(store=None, ready=True, data_dir=None, **settings)`` -> a started TestClient."""
    clients: list[TestClient] = []

    def start(*, store: Store | None = None, ready: bool = True, data_dir: Path | None = None,
              **overrides) -> TestClient:
        settings = make_settings(data_dir or tmp_path / f"data-{len(clients)}", **overrides)
        client = TestClient(create_app(settings, store=store), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        if ready:
            wait_ready(client)
        return client

    yield start
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture()
def client(app_factory) -> TestClient:
    return app_factory()


@pytest.fixture(scope="session")
def jpeg_bytes(sample_photos: list[Path]) -> list[bytes]:
    """16 real JPEG photographs (colour and grayscale, 190x380 to 1411x1411)."""
    return [path.read_bytes() for path in sample_photos[:16]]


@pytest.fixture()
def live_server_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """``live_server_factory(store=None, http="auto", **settings)`` -> a started LiveServer (stopped
    after the test); ``http`` is uvicorn's protocol class."""
    servers: list[LiveServer] = []

    def start(**overrides) -> LiveServer:
        store = overrides.pop("store", None)
        http = overrides.pop("http", "auto")
        settings = make_settings(tmp_path / f"live-{len(servers)}", **overrides)
        server = LiveServer(create_app(settings, store=store), http=http)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
