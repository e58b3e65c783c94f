"""Fixtures shared by the whole suite: sample photos and description files, paths to ../shared, real
Redis, tiny random CLIP models.

Everything but ``shared_dir``/``data_dir`` works in a clone with nothing beside it (see sample_data.py);
tests that need the large samples or the published description files ask for ``data_dir`` and skip
without it (CI, which has ../shared, fails instead).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sample_data import CIFAR10_CUPL, CIFAR10_DCLIP, write_description_file, write_sample_photos

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = (REPO_ROOT / ".." / "shared").resolve()
REDIS_URL = os.environ.get("VGLOSS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED_DIR / "data").is_dir():
        if IN_CI:
            pytest.fail(f"{SHARED_DIR}/data is missing: CI must run with ../shared beside the checkout")
        pytest.skip(f"needs {SHARED_DIR}/data beside the checkout (the 250 ImageNet / 500 CIFAR-10 sample JPEGs, "
                    "the ImageNet class index or the published CuPL/DCLIP files); CI runs these")
    return SHARED_DIR


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    return shared_dir / "data"


@pytest.fixture(scope="session")
def sample_photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """24 real photographs as JPEGs (scikit-image's bundled samples, full frames and crops; 6 grayscale)."""
    return write_sample_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def cupl_cifar10_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CuPL-format description file (two sentences per CIFAR-10 class), written by the test."""
    return write_description_file(tmp_path_factory.mktemp("descriptions") / "cupl_cifar10.json", CIFAR10_CUPL)


@pytest.fixture(scope="session")
def dclip_cifar10_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DCLIP-format description file (three descriptor phrases per CIFAR-10 class), written by the test."""
    return write_description_file(tmp_path_factory.mktemp("descriptions") / "dclip_cifar10.json", CIFAR10_DCLIP)


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis at {REDIS_URL} is not answering in CI: {exc}")
        pytest.skip(f"SKIPPED: no Redis at {REDIS_URL} ({exc}); start one to run these tests")
    return REDIS_URL


@pytest.fixture()
def redis_namespace(redis_url: str):
    """A unique key namespace, deleted after the test."""
    import redis

    namespace = f"vgloss-test-{uuid.uuid4().hex[:10]}:v1"
    yield namespace
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture()
def redis_store(redis_url: str, redis_namespace: str):
    from gloss_gen.data.store import RedisBackend, Store

    return Store(RedisBackend(redis_url), redis_namespace)


@pytest.fixture()
def dir_store(tmp_path: Path):
    from gloss_gen.data.store import DirectoryBackend, Store

    return Store(DirectoryBackend(tmp_path / "store"))


@pytest.fixture(scope="session")
def tiny_model():
    """The registered 64-d ``vgloss-tiny`` CLIP with deterministic random weights."""
    from gloss_gen.model.clip_models import load_clip

    return load_clip("vgloss-tiny", "none")


@pytest.fixture()
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Environment for subprocesses and settings: tiny model, private data dir, no Redis, no .env."""
    from gloss_gen.core.config import get_settings

    env = {
        "VGLOSS_MODEL": "vgloss-tiny",
        "VGLOSS_PRETRAINED": "none",
        "VGLOSS_DATA_DIR": str(tmp_path / "vgloss-data"),
        "VGLOSS_DEVICE": "cpu",
        # the fp32 reference path: no start-up probe (tests/inference covers the other paths)
        "VGLOSS_BACKEND": "torch",
        "VGLOSS_PRECISION": "fp32",
    }
    for key in list(os.environ):
        if key.startswith("VGLOSS_") and key not in env:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()
