"""Labelled image collections for ``vgloss eval``: finding the images, their labels, and pixels.

Layouts (auto-detected; ``open_dataset(..., layout=...)`` forces one):

- ``imagefolder`` — ``ROOT/<label>/**/<image>``; the folder name is a class id or a class name;
- ``wnid-files`` — ``ROOT/<wnid>_<anything>.<ext>``, flat (file names start with an ImageNet wnid);
- ``csv`` — a labels file with a header naming ``filename`` and ``class_id`` (or ``label``)
  columns; file names are relative to the CSV's folder; the label is a class id or name;
- ``stl10`` — the STL-10 binary test files ``test_X.bin`` (uint8, N x 3 x 96 x 96, each channel
  stored column-major) and ``test_y.bin`` (one byte per image, 1..10);
- ``cifar10`` — a CIFAR-10 binary batch (``test_batch.bin`` / ``data_batch_N.bin``): records of
  one label byte and 3072 pixel bytes (R, G, B planes, 32 x 32, row-major).

Binary data sets are memory-mapped and read with numpy. The Python-pickle CIFAR-10 download is
refused: unpickling runs arbitrary code, and the binary download holds the same images.

Labels stay as found (``labels``); :func:`resolve_labels` maps them onto a class set and names
every label it cannot place, so a wrong ``--class-set`` fails before any image is decoded.
"""

from __future__ import annotations

import csv
import hashlib
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gloss_gen.core.errors import InputError
from gloss_gen.core.file_types import IMAGE_SUFFIXES
from gloss_gen.data.classsets import ClassSet, builtin_class_set

if TYPE_CHECKING:
    import torch

    from gloss_gen.imaging import ImageLimits, Preprocessor

LAYOUTS = ("imagefolder", "wnid-files", "csv", "stl10", "cifar10")
WNID_PREFIX = re.compile(r"^(n\d{8})(?![0-9])")
CIFAR_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"

STL10_SIDE = 96
CIFAR10_SIDE = 32
CIFAR10_RECORD = 1 + 3 * CIFAR10_SIDE * CIFAR10_SIDE
_PICKLE_PROTOCOL_OPCODE = 0x80  # first byte of every pickle of protocol >= 2 (CIFAR's is 2)
_HASH_CHUNK = 8 * 1024 * 1024


class DatasetError(InputError):
    """A data folder or file that cannot be evaluated as given; the message says why."""


class LabelledImages(ABC):
    """Images in a fixed order, each with the label the data gives it (a class id or name)."""

    layout: str
    source: Path
    labels: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def item_name(self, index: int) -> str:
        """What to call image ``index`` in messages: its relative path, or ``file#record``."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A hex digest that changes whenever the images (or their order) change."""

    @abstractmethod
    def load_tensor(self, index: int, preprocessor: Preprocessor, limits: ImageLimits) -> torch.Tensor:
        """Image ``index`` as the model's (3, H, W) input tensor; thread-safe."""

    @abstractmethod
    def subset(self, indices: Sequence[int]) -> LabelledImages:
        """The images at ``indices``, in that order."""


class ImageFiles(LabelledImages):
    """Encoded image files (JPEG, PNG, ...) on disk, decoded by ``gloss_gen.imaging`` as the server does."""

    def __init__(self, layout: str, source: Path, root: Path, paths: list[Path], labels: list[str]):
        if len(paths) != len(labels):
            raise ValueError("one label per path")
        self.layout = layout
        self.source = source
        self.root = root
        self.paths = paths
        self.labels = labels

    def item_name(self, index: int) -> str:
        return _relative(self.paths[index], self.root)

    def fingerprint(self) -> str:
        # Path, size and modification time of every file, not the bytes: hashing an ImageNet-sized
        # folder would cost as much as reading it, and the cache exists to avoid that.
        digest = hashlib.sha256(b"vgloss-image-files-v1\0")
        for path in self.paths:
            stat = path.stat()
            digest.update(f"{_relative(path, self.root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def load_tensor(self, index: int, preprocessor: Preprocessor, limits: ImageLimits) -> torch.Tensor:

        from gloss_gen.imaging import load_tensor  # torch: not when `vgloss eval --help` reads LAYOUTS
        return load_tensor(self.paths[index].read_bytes(), limits, preprocessor)

    def subset(self, indices: Sequence[int]) -> ImageFiles:
        return ImageFiles(
            self.layout,
            self.source,
            self.root,
            [self.paths[i] for i in indices],
            [self.labels[i] for i in indices],
        )


class PixelArrays(LabelledImages):
    """Raw uint8 RGB images from a binary data set file, as an (N, H, W, 3) array view."""

    def __init__(
        self,
        layout: str,
        source: Path,
        files: list[Path],
        images: np.ndarray,
        labels: list[str],
        positions: np.ndarray | None = None,
    ):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError("images must be a uint8 (N, H, W, 3) array")
        self.layout = layout
        self.source = source
        self.files = files
        self.images = images
        self.positions = np.arange(len(images)) if positions is None else np.asarray(positions, dtype=np.int64)
        if len(labels) != len(self.positions):
            raise ValueError("one label per image")
        self.labels = labels

    def pixels(self, index: int) -> np.ndarray:
        """Image ``index`` as a contiguous uint8 (H, W, 3) array, row 0 at the top."""
        return np.ascontiguousarray(self.images[self.positions[index]])

    def item_name(self, index: int) -> str:
        return f"{self.files[0].name}#{int(self.positions[index])}"

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"vgloss-pixel-arrays-v1\0{self.layout}\0".encode())
        for path in self.files:
            with path.open("rb") as fh:
                while chunk := fh.read(_HASH_CHUNK):
                    digest.update(chunk)
        digest.update(self.positions.astype("<i8").tobytes())
        return digest.hexdigest()

    def load_tensor(self, index: int, preprocessor: Preprocessor, limits: ImageLimits) -> torch.Tensor:
        from PIL import Image

        return preprocessor(Image.fromarray(self.pixels(index), mode="RGB"))

    def subset(self, indices: Sequence[int]) -> PixelArrays:
        return PixelArrays(
            self.layout,
            self.source,
            self.files,
            self.images,
            [self.labels[i] for i in indices],
            self.positions[np.asarray(indices, dtype=np.int64)],
        )


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def _visible_children(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


# --------------------------------------------------------------------------- file layouts


def read_image_folder(root: Path) -> ImageFiles:
    paths: list[Path] = []
    labels: list[str] = []
    for folder in _visible_children(root):
        if not folder.is_dir():
            continue
        images = sorted(p for p in folder.rglob("*") if _is_image(p) and not _hidden_below(p, folder))
        paths.extend(images)
        labels.extend([folder.name] * len(images))
    if not paths:
        raise DatasetError(f"{root}: no images in class folders (expected ROOT/<class>/<image>)")
    return ImageFiles("imagefolder", root, root, paths, labels)


def _hidden_below(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def read_wnid_files(root: Path) -> ImageFiles:
    images = [p for p in _visible_children(root) if _is_image(p)]
    if not images:
        raise DatasetError(f"{root}: no image files at the top level")
    labels = []
    unlabelled = []
    for path in images:
        match = WNID_PREFIX.match(path.name)
        if match:
            labels.append(match.group(1))
        else:
            unlabelled.append(path.name)
    if unlabelled:
        raise DatasetError(
            f"{root}: {len(unlabelled)} image file names do not start with a wnid "
            f"(e.g. {unlabelled[0]!r}); name them <wnid>_..., use class folders, or give a labels CSV"
        )
    return ImageFiles("wnid-files", root, root, images, labels)


def find_labels_csv(folder: Path) -> Path | None:
    preferred = folder / "labels.csv"
    if preferred.is_file():
        return preferred
    candidates = [p for p in _visible_children(folder) if p.suffix.lower() == ".csv" and p.is_file()]
    return candidates[0] if len(candidates) == 1 else None


def read_labels_csv(csv_path: Path) -> ImageFiles:
    root = csv_path.parent
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        label_column = next((c for c in ("class_id", "label") if c in header), None)
        if "filename" not in header or label_column is None:
            raise DatasetError(
                f"{csv_path}: the first line must be a header naming the columns 'filename' and "
                f"'class_id' (found {', '.join(map(repr, header)) or 'nothing'})"
            )
        paths: list[Path] = []
        labels: list[str] = []
        for line_number, row in enumerate(reader, start=2):
            filename = (row.get("filename") or "").strip()
            label = (row.get(label_column) or "").strip()
            if not filename and not label:
                continue
            if not filename or not label:
                raise DatasetError(f"{csv_path}:{line_number}: needs both a filename and a class_id")
            path = Path(filename)
            paths.append(path if path.is_absolute() else root / path)
            labels.append(label)
    if not paths:
        raise DatasetError(f"{csv_path}: lists no images")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(_relative(p, root) for p in missing[:5])
        raise DatasetError(
            f"{csv_path}: {len(missing)} listed images do not exist: {shown}"
            + (" ..." if len(missing) > 5 else "")
        )
    return ImageFiles("csv", csv_path, root, paths, labels)


# --------------------------------------------------------------------------- binary layouts


def _binary_class_ids(set_name: str) -> list[str]:
    return builtin_class_set(set_name).ids


def read_stl10(images_path: Path, labels_path: Path | None = None) -> PixelArrays:
    """STL-10 binary: ``*_X.bin`` pixels and the matching ``*_y.bin`` labels (1..10)."""
    if labels_path is None:
        labels_path = images_path.with_name(images_path.name.replace("_X.bin", "_y.bin"))
    if not labels_path.is_file():
        raise DatasetError(f"{images_path}: the labels file {labels_path.name} is missing beside it")
    per_image = 3 * STL10_SIDE * STL10_SIDE
    size = images_path.stat().st_size
    if size == 0 or size % per_image:
        raise DatasetError(f"{images_path}: {size} bytes is not a whole number of 3x96x96 images")
    raw = np.memmap(images_path, dtype=np.uint8, mode="r").reshape(-1, 3, STL10_SIDE, STL10_SIDE)
    # Each channel is stored column-major, so the last axis is the row: (N, C, x, y) -> (N, y, x, C).
    images = raw.transpose(0, 3, 2, 1)
    codes = np.fromfile(labels_path, dtype=np.uint8)
    if len(codes) != len(images):
        raise DatasetError(f"{labels_path}: {len(codes)} labels for {len(images)} images in {images_path.name}")
    labels = _labels_from_codes(codes, _binary_class_ids("stl10"), first_code=1, source=labels_path)
    return PixelArrays("stl10", images_path, [images_path, labels_path], images, labels)


def read_cifar10(batch_path: Path) -> PixelArrays:
    """A CIFAR-10 binary batch: 10000 records of (label byte, R plane, G plane, B plane)."""
    _refuse_pickle(batch_path)
    size = batch_path.stat().st_size
    if size == 0 or size % CIFAR10_RECORD:
        raise DatasetError(f"{batch_path}: {size} bytes is not a whole number of CIFAR-10 records (3073 bytes)")
    records = np.memmap(batch_path, dtype=np.uint8, mode="r").reshape(-1, CIFAR10_RECORD)
    images = records[:, 1:].reshape(-1, 3, CIFAR10_SIDE, CIFAR10_SIDE).transpose(0, 2, 3, 1)
    codes = np.asarray(records[:, 0])
    labels = _labels_from_codes(codes, _binary_class_ids("cifar10"), first_code=0, source=batch_path)
    return PixelArrays("cifar10", batch_path, [batch_path], images, labels)


def _labels_from_codes(codes: np.ndarray, class_ids: list[str], first_code: int, source: Path) -> list[str]:
    valid = (codes >= first_code) & (codes < first_code + len(class_ids))
    if not valid.all():
        bad = int(codes[~valid][0])
        raise DatasetError(
            f"{source}: label byte {bad} is outside {first_code}..{first_code + len(class_ids) - 1}"
        )
    return [class_ids[int(code) - first_code] for code in codes]


def _looks_pickled(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(1) == bytes([_PICKLE_PROTOCOL_OPCODE])


def _pickle_refusal(where: Path) -> DatasetError:
    return DatasetError(
        f"{where} is the Python (pickle) version of CIFAR-10, which vgloss does not unpickle "
        f"(unpickling can run arbitrary code); use the binary version instead, {CIFAR_BINARY_URL} "
        "(test_batch.bin)"
    )


def _refuse_pickle(path: Path) -> None:
    if _looks_pickled(path):
        raise _pickle_refusal(path)


def _cifar_pickle_folder(folder: Path) -> bool:
    if folder.name == "cifar-10-batches-py":
        return True
    return any((folder / name).is_file() for name in ("test_batch", "data_batch_1", "batches.meta"))


# --------------------------------------------------------------------------- detection


def _binary_folder_candidates(folder: Path, subfolder: str) -> list[Path]:
    return [folder, folder / subfolder]


def _find_in(folder: Path, subfolder: str, name: str) -> Path | None:
    for candidate in _binary_folder_candidates(folder, subfolder):
        if (candidate / name).is_file():
            return candidate / name
    return None


def detect_layout(path: Path) -> str:
    """The layout of ``path`` (a folder or a file), or a :class:`DatasetError` saying why none fits."""
    if path.is_file():
        name = path.name.lower()
        if path.suffix.lower() == ".csv":
            return "csv"
        if name.endswith("_x.bin"):
            return "stl10"
        if name.endswith(".bin") and ("batch" in name or path.stat().st_size % CIFAR10_RECORD == 0):
            return "cifar10"
        if _looks_pickled(path):
            raise _pickle_refusal(path)
        raise DatasetError(
            f"{path}: cannot tell the layout of this file; give a folder, a labels .csv, an STL-10 "
            "test_X.bin or a CIFAR-10 .bin batch"
        )
    if not path.is_dir():
        raise DatasetError(f"{path} does not exist")
    if _find_in(path, "stl10_binary", "test_X.bin"):
        return "stl10"
    if _find_in(path, "cifar-10-batches-bin", "test_batch.bin"):
        return "cifar10"
    if _cifar_pickle_folder(path) or (path / "cifar-10-batches-py").is_dir():
        raise _pickle_refusal(path)
    if find_labels_csv(path):
        return "csv"
    children = _visible_children(path)
    if any(_is_image(p) for p in children):
        return "wnid-files"
    if any(p.is_dir() for p in children):
        return "imagefolder"
    raise DatasetError(
        f"{path}: found no images; expected class folders, <wnid>_*.JPEG files, a labels.csv, "
        "or STL-10 / CIFAR-10 binary files"
    )


def open_dataset(path: str | Path, layout: str = "auto") -> LabelledImages:
    """Read the images and labels under ``path`` (see the module docstring for the layouts)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    if layout == "auto":
        layout = detect_layout(path)
    if layout == "imagefolder":
        return read_image_folder(_require_dir(path, layout))
    if layout == "wnid-files":
        return read_wnid_files(_require_dir(path, layout))
    if layout == "csv":
        csv_path = path if path.is_file() else find_labels_csv(path)
        if csv_path is None:
            raise DatasetError(f"{path}: no labels.csv (or single .csv file) in this folder")
        return read_labels_csv(csv_path)
    if layout == "stl10":
        images = path if path.is_file() else _find_in(path, "stl10_binary", "test_X.bin")
        if images is None:
            raise DatasetError(f"{path}: no STL-10 test_X.bin here (or in stl10_binary/)")
        return read_stl10(images)
    if layout == "cifar10":
        if path.is_dir():
            batch = _find_in(path, "cifar-10-batches-bin", "test_batch.bin")
            if batch is None:
                if _cifar_pickle_folder(path):
                    raise _pickle_refusal(path)
                raise DatasetError(f"{path}: no CIFAR-10 test_batch.bin here; give the batch file itself")
            path = batch
        return read_cifar10(path)
    raise DatasetError(f"unknown layout {layout!r}; choose from auto, {', '.join(LAYOUTS)}")


def _require_dir(path: Path, layout: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"the {layout} layout needs a folder, and {path} is not one")
    return path


# --------------------------------------------------------------------------- labels


def normalise_label(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text.strip().lower())


def resolve_labels(labels: Sequence[str], class_set: ClassSet) -> np.ndarray:
    """Class index of every label, matched as class id, then exact name, then normalised name.

    Raises :class:`DatasetError` naming each label that matches no class (with its image count)
    or several classes.
    """
    by_id = class_set.index_of()
    by_name: dict[str, list[int]] = {}
    by_normalised: dict[str, list[int]] = {}
    for index, spec in enumerate(class_set.classes):
        by_name.setdefault(spec.name, []).append(index)
        by_normalised.setdefault(normalise_label(spec.name), []).append(index)

    resolved: dict[str, int] = {}
    unknown: Counter[str] = Counter()
    ambiguous: dict[str, list[int]] = {}
    for label, count in Counter(labels).items():
        if label in by_id:
            resolved[label] = by_id[label]
            continue
        candidates = by_name.get(label) or by_normalised.get(normalise_label(label)) or []
        if len(candidates) == 1:
            resolved[label] = candidates[0]
        elif candidates:
            ambiguous[label] = candidates
        else:
            unknown[label] = count
    problems = []
    if unknown:
        shown = ", ".join(f"{label!r} ({count} images)" for label, count in unknown.most_common(10))
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        problems.append(f"{len(unknown)} labels match no class of {class_set.name}: {shown}{more}")
    for label, candidates in list(ambiguous.items())[:5]:
        ids = ", ".join(class_set.classes[i].id for i in candidates)
        problems.append(f"label {label!r} names several classes of {class_set.name} ({ids}); use the class id")
    if problems:
        raise DatasetError("; ".join(problems))
    return np.fromiter((resolved[label] for label in labels), dtype=np.int64, count=len(labels))


def limited_indices(total: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """All indices, or a fixed pseudo-random ``limit`` of them in their original order.

    Random rather than the first ``limit`` so that a class-ordered folder still yields every class.
    """
    if limit is None or limit >= total:
        return np.arange(total)
    if limit < 1:
        raise DatasetError(f"--limit must be at least 1, not {limit}")
    chosen = np.random.default_rng(seed).choice(total, size=limit, replace=False)
    return np.sort(chosen)
