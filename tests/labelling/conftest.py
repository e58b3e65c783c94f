"""Fixtures for the ``vgloss label`` tests: the photo folder, the tiny model's settings and classifier."""

from __future__ import annotations

from pathlib import Path

import pytest
from labelling_helpers import PhotoFolder, write_photo_folder


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory: pytest.TempPathFactory, sample_photos: list[Path]) -> PhotoFolder:
    return write_photo_folder(tmp_path_factory.mktemp("label-source") / "photos", sample_photos)


@pytest.fixture()
def label_settings(tmp_path: Path):
    """Settings of the tiny model on the torch fp32 path, with a private store."""
    from gloss_gen.core.config import Settings

    return Settings(_env_file=None, model="vgloss-tiny", pretrained="none", device="cpu", backend="torch",
                    precision="fp32", data_dir=tmp_path / "vgloss-data", redis_url=None, max_batch=16)


@pytest.fixture(scope="session")
def cifar10_classifier(tiny_model):
    """The tiny model's class-name classifier for cifar10."""
    from gloss_gen.data.classifier import build_classifier
    from gloss_gen.data.classsets import builtin_class_set
    from gloss_gen.data.descriptions import describe_classname

    return build_classifier(tiny_model, describe_classname(builtin_class_set("cifar10")))
