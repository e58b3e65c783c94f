"""Fixtures for the ``vgloss eval`` tests: the shared samples, an encoder call counter, small data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def cifar_sample(data_dir: Path) -> Path:
    return data_dir / "cifar10-sample"


@pytest.fixture(scope="session")
def imagenet_sample(data_dir: Path) -> Path:
    return data_dir / "imagenet-sample"


@pytest.fixture(scope="session")
def cupl_cifar10(data_dir: Path) -> Path:
    return data_dir / "descriptions" / "cupl_cifar10.json"


@dataclass
class EncoderCounter:
    calls: int = 0
    images: int = 0


@pytest.fixture()
def counted_model(tiny_model, monkeypatch: pytest.MonkeyPatch):
    """The tiny model, with every image that goes through ``encode_images`` counted."""
    counter = EncoderCounter()
    original = tiny_model.encode_images

    def counting_encode_images(pixels, **kwargs):
        counter.calls += 1
        counter.images += int(pixels.shape[0])
        return original(pixels, **kwargs)

    monkeypatch.setattr(tiny_model, "encode_images", counting_encode_images)
    tiny_model.counter = counter
    yield tiny_model
    del tiny_model.counter


def write_jpeg(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="RGB").save(path, format="JPEG", quality=95)
    return path


@pytest.fixture()
def synthetic_folder(tmp_path: Path) -> Path:
    """ImageFolder: 4 classes ``c0``..``c3``, each 3 copies of its own random-noise picture."""
    root = tmp_path / "synthetic"
    rng = np.random.default_rng(7)
    for class_index in range(4):
        picture = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
        for copy in range(3):
            write_jpeg(root / f"c{class_index}" / f"img{copy}.jpg", picture)
    return root
