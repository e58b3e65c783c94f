"""Test data that needs nothing beside the checkout.

Photographs come from scikit-image's bundled sample images (a test dependency: the ``dev`` extra),
loaded from the installed package and written as JPEGs into a temporary directory; nothing is copied
into the repository. Description files in the CuPL (sentences) and DCLIP (descriptor phrases) JSON
formats are written by the tests from the small tables below.

The large samples and published files in ``../shared/data`` (250 ImageNet JPEGs, 500 CIFAR-10
JPEGs, the real CuPL/DCLIP files) are still used, where present, by the tests that need exactly them.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()

# skimage.data loaders of colour photographs shipped inside the scikit-image wheel (no download).
_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
# Grayscale photographs: JPEG 'L' images, as some real ImageNet files are.
_GRAY_PHOTOS = ("camera", "coins", "moon")

CIFAR10_CUPL = {
    "airplane": ["An airplane is a large metal aircraft with two wings and a tail.",
                 "A photo of an airplane shows a long fuselage with jet engines under the wings."],
    "automobile": ["An automobile is a four-wheeled vehicle with doors, windows and headlights.",
                   "A car has a shiny painted body and black rubber tyres."],
    "bird": ["A bird is a small animal with feathers, a beak and two thin legs.",
             "A bird often perches on a branch with its wings folded."],
    "cat": ["A cat is a small furry animal with pointed ears and long whiskers.",
            "A domestic cat has green or yellow eyes and a long tail."],
    "deer": ["A deer is a brown animal with long thin legs and branching antlers.",
             "A deer stands in a forest clearing with white spots on its coat."],
    "dog": ["A dog is a furry four-legged animal with a wagging tail.",
            "A dog has floppy or pointed ears and a wet black nose."],
    "frog": ["A frog is a small green amphibian with bulging eyes and smooth wet skin.",
             "A frog sits on a lily pad with long folded hind legs."],
    "horse": ["A horse is a large animal with a long mane, a tail and hooves.",
              "A horse has a long face and a muscular brown or black body."],
    "ship": ["A ship is a large vessel floating on water with a tall hull.",
             "A ship has decks, a bridge and sometimes cranes for cargo."],
    "truck": ["A truck is a large vehicle with a cab in front and a cargo box behind.",
              "A truck has big wheels and a flat bed or trailer for heavy loads."],
}

CIFAR10_DCLIP = {
    "airplane": ["two wings", "a long fuselage", "jet engines"],
    "automobile": ["four wheels", "headlights", "a windshield"],
    "bird": ["feathers", "a beak", "two thin legs"],
    "cat": ["pointed ears", "whiskers", "a long tail"],
    "deer": ["antlers", "long thin legs", "brown fur"],
    "dog": ["a wet nose", "floppy ears", "a wagging tail"],
    "frog": ["bulging eyes", "smooth green skin", "webbed feet"],
    "horse": ["a long mane", "hooves", "a muscular body"],
    "ship": ["a tall hull", "decks", "water around it"],
    "truck": ["a cargo box", "big wheels", "a cab in front"],
}


def write_description_file(path: Path, table: dict[str, list[str]]) -> Path:
    """Write ``{class name: [texts]}`` as JSON, the layout both CuPL and DCLIP publish."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=1))
    return path


def _photo_arrays() -> list[tuple[str, object]]:
    import skimage.data

    photos = [(name, getattr(skimage.data, name)()) for name in _PHOTOS]
    left, right, _ = skimage.data.stereo_motorcycle()
    photos += [("motorcycle_left", left), ("motorcycle_right", right)]
    photos += [(name, getattr(skimage.data, name)()) for name in _GRAY_PHOTOS]
    return photos


def write_sample_photos(directory: Path) -> list[Path]:
    """Write 24 real photographs (full frames and crops of skimage's samples, several sizes) as JPEGs."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name, array in _photo_arrays():
        image = Image.fromarray(array)
        w, h = image.size
        for tag, variant in (("full", image), ("crop", image.crop((w // 8, h // 8, w - w // 8, h - h // 4)))):
            path = directory / f"{name}_{tag}.jpg"
            variant.save(path, "JPEG", quality=90)
            paths.append(path)
    return sorted(paths)


def write_thumbnails(directory: Path, photos: list[Path], size: int = 32) -> list[Path]:
    """CIFAR-sized (32x32) JPEG thumbnails of ``photos``."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for photo in photos:
        path = directory / f"{photo.stem}_{size}.jpg"
        Image.open(photo).convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(path, "JPEG", quality=95)
        paths.append(path)
    return paths


@functools.cache
def module_photo_dir() -> Path:
    """A process-wide temporary directory of sample photos, for test modules that parametrize at import."""
    directory = Path(tempfile.mkdtemp(prefix="vgloss-test-photos-"))
    atexit.register(shutil.rmtree, directory, True)
    write_sample_photos(directory / "photos")
    write_thumbnails(directory / "thumbnails", sorted((directory / "photos").glob("*.jpg"))[:10])
    return directory


def imagenet_like_files() -> list[Path]:
    """The ImageNet sample JPEGs from ../shared where present, else 24 sample photographs."""
    shared = sorted((SHARED_DATA / "imagenet-sample").glob("*.JPEG"))
    return shared if len(shared) >= 20 else sorted((module_photo_dir() / "photos").glob("*.jpg"))


def cifar_like_files() -> list[Path]:
    """The CIFAR-10 sample JPEGs (32x32) from ../shared where present, else 32x32 thumbnails of photographs."""
    shared = sorted((SHARED_DATA / "cifar10-sample").glob("*/*.jpg"))
    return shared or sorted((module_photo_dir() / "thumbnails").glob("*.jpg"))
