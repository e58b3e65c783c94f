"""Fixtures for the few-shot tests: generated colour images, a CIFAR-10 example/evaluation split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200), "yellow": (220, 200, 40)}


def write_colour_images(root: Path, per_class: int, seed: int) -> Path:
    """Noisy solid-colour PNGs, ROOT/<colour>/<i>.png: random-weight CLIP features separate them."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            noisy = np.asarray(rgb)[None, None, :] + rng.normal(0, 60, (32, 32, 3))
            Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    return root


def colour_class_set():
    from gloss_gen.data.classsets import ClassSet, ClassSpec

    return ClassSet("colours", [ClassSpec(name, name) for name in COLOURS])


@pytest.fixture(scope="session")
def colour_set():
    return colour_class_set()


@pytest.fixture(scope="session")
def colour_data(tmp_path_factory) -> tuple[Path, Path]:
    """(examples folder with 8 per class, evaluation folder with 20 other images per class)."""
    root = tmp_path_factory.mktemp("colours")
    return write_colour_images(root / "examples", 8, seed=1), write_colour_images(root / "eval", 20, seed=2)


@pytest.fixture(scope="session")
def cifar_split(data_dir: Path, tmp_path_factory) -> tuple[Path, Path]:
    """The CIFAR-10 sample split per class: first 16 images -> examples, the other 34 -> evaluation."""
    sample = data_dir / "cifar10-sample"
    if not sample.is_dir():
        pytest.skip(f"{sample} is missing")
    root = tmp_path_factory.mktemp("cifar-split")
    for folder in sorted(p for p in sample.iterdir() if p.is_dir()):
        images = sorted(folder.glob("*.jpg"))
        for split, chosen in (("examples", images[:16]), ("eval", images[16:])):
            target = root / split / folder.name
            target.mkdir(parents=True)
            for image in chosen:
                os.symlink(image.resolve(), target / image.name)
    return root / "examples", root / "eval"


@pytest.fixture(scope="session")
def tiny_source(tiny_model):
    from gloss_gen.evaluation.runner import ModelSource

    return ModelSource.of(tiny_model)


@pytest.fixture(scope="session")
def limits():
    from gloss_gen.imaging import ImageLimits

    return ImageLimits()


@pytest.fixture(scope="session")
def classname_classifier(tiny_source):
    """class set -> its class-name classifier under the tiny model (built, not stored)."""
    from gloss_gen.evaluation.runner import MethodSpec, classifier_for, prepare_method

    def build(class_set):
        method = prepare_method(MethodSpec("classname", "classname"), class_set)
        return classifier_for(method, tiny_source, None)[0]

    return build
