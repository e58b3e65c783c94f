"""Data layouts for ``vgloss eval``: detection, the binary readers, CSV labels, label resolution."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from gloss_gen.data.classsets import ClassSet, ClassSpec, load_class_set
from gloss_gen.evaluation.datasets import (
    DatasetError,
    detect_layout,
    limited_indices,
    open_dataset,
    resolve_labels,
)

STL10_ORDER = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
CIFAR10_ORDER = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def asymmetric_images(count: int, side: int, seed: int = 0) -> np.ndarray:
    """(count, side, side, 3) uint8 images with no symmetry a transposition or flip would preserve."""
    images = np.random.default_rng(seed).integers(0, 256, size=(count, side, side, 3), dtype=np.uint8)
    images[:, :, : side // 8, 2] = 255  # more blue in the left columns
    images[:, : side // 4, :, :] = (255, 0, 0)  # a red band along the top edge
    return images


def write_stl10(folder: Path, images: np.ndarray, codes: list[int]) -> Path:
    """The STL-10 binary format as its README states it: per image, per channel, column-major."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "test_X.bin").open("wb") as fh:
        for image in images:
            for channel in range(3):
                fh.write(image[:, :, channel].tobytes(order="F"))
    (folder / "test_y.bin").write_bytes(bytes(codes))
    return folder


def write_cifar10(path: Path, images: np.ndarray, codes: list[int]) -> Path:
    """CIFAR-10 binary: per record a label byte, then the R, G and B planes, each row-major."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for image, code in zip(images, codes):
            fh.write(bytes([code]))
            for channel in range(3):
                fh.write(image[:, :, channel].tobytes(order="C"))
    return path


# --------------------------------------------------------------------------- binary formats


def test_stl10_reader_round_trips_pixels_and_orientation(tmp_path: Path):
    images = asymmetric_images(3, 96)
    folder = write_stl10(tmp_path / "stl10_binary", images, [1, 8, 10])

    dataset = open_dataset(tmp_path)  # found one level down, in stl10_binary/
    assert dataset.layout == "stl10"
    assert len(dataset) == 3
    for index in range(3):
        assert np.array_equal(dataset.pixels(index), images[index])
    top_row = dataset.pixels(0)[0]
    assert (top_row == (255, 0, 0)).all(), "row 0 must be the top of the picture"
    # The file's first 96 bytes are the red values of column 0, top to bottom.
    first_column_red = np.frombuffer((folder / "test_X.bin").read_bytes()[:96], dtype=np.uint8)
    assert np.array_equal(first_column_red, dataset.pixels(0)[:, 0, 0])
    assert dataset.labels == ["airplane", "monkey", "truck"]
    assert resolve_labels(dataset.labels, load_class_set("stl10")).tolist() == [0, 7, 9]


def test_stl10_labels_outside_one_to_ten_are_rejected(tmp_path: Path):
    write_stl10(tmp_path, asymmetric_images(2, 96), [0, 3])
    with pytest.raises(DatasetError, match="label byte 0"):
        open_dataset(tmp_path / "test_X.bin")


def test_cifar10_reader_round_trips_pixels_and_labels(tmp_path: Path):
    images = asymmetric_images(4, 32, seed=1)
    batch = write_cifar10(tmp_path / "test_batch.bin", images, [0, 1, 6, 9])

    dataset = open_dataset(tmp_path)
    assert (dataset.layout, len(dataset)) == ("cifar10", 4)
    for index in range(4):
        assert np.array_equal(dataset.pixels(index), images[index])
    assert (dataset.pixels(2)[0] == (255, 0, 0)).all()
    assert dataset.labels == ["airplane", "automobile", "frog", "truck"]
    assert open_dataset(batch).labels == dataset.labels  # the batch file itself works too
    assert resolve_labels(dataset.labels, load_class_set("cifar10")).tolist() == [0, 1, 6, 9]


def test_cifar10_binary_of_the_wrong_size_is_rejected(tmp_path: Path):
    (tmp_path / "data_batch_1.bin").write_bytes(b"\x01" * 3000)
    with pytest.raises(DatasetError, match="3073"):
        open_dataset(tmp_path / "data_batch_1.bin")


def test_python_pickle_cifar_is_refused_pointing_at_the_binary_version(tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    # The first bytes of a protocol-2 pickle, as in the Python download; never unpickled here.
    (folder / "test_batch").write_bytes(b"\x80\x02}q\x00(X\x04\x00\x00\x00data" + b"\x00" * 64)
    for target in (folder, folder / "test_batch", tmp_path):
        with pytest.raises(DatasetError, match="binary version") as info:
            open_dataset(target)
        assert "cifar-10-binary.tar.gz" in str(info.value)
    with pytest.raises(DatasetError, match="pickle"):
        open_dataset(folder / "test_batch", layout="cifar10")


# --------------------------------------------------------------------------- file layouts


def test_imagefolder_of_the_cifar_sample(cifar_sample: Path):
    dataset = open_dataset(cifar_sample)
    assert dataset.layout == "imagefolder"
    assert len(dataset) == 500
    assert Counter(dataset.labels) == {name: 50 for name in CIFAR10_ORDER}
    truth = resolve_labels(dataset.labels, load_class_set("cifar10"))
    assert np.bincount(truth).tolist() == [50] * 10


def test_flat_wnid_files_of_the_imagenet_sample(imagenet_sample: Path):
    dataset = open_dataset(imagenet_sample)
    assert dataset.layout == "wnid-files"
    assert len(dataset) == 250
    assert dataset.labels[0] == "n01440764"
    assert dataset.item_name(0) == "n01440764_tench.JPEG"
    imagenet = load_class_set("imagenet1k")
    truth = resolve_labels(dataset.labels, imagenet)
    assert imagenet.classes[truth[0]].name == "tench"
    assert len(set(truth.tolist())) == 250


def test_flat_files_without_wnids_need_a_csv(tmp_path: Path, imagenet_sample: Path):
    shutil.copy(imagenet_sample / "n01440764_tench.JPEG", tmp_path / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DatasetError, match="labels CSV"):
        open_dataset(tmp_path)


def test_labels_csv_with_ids_and_names(tmp_path: Path, cifar_sample: Path):
    (tmp_path / "images").mkdir()
    rows = [("cat/0000.jpg", "cat"), ("automobile/0001.jpg", "Automobile"), ("truck/0002.jpg", "truck")]
    lines = ["filename,class_id"]
    for source, label in rows:
        target = tmp_path / "images" / source.replace("/", "_")
        shutil.copy(cifar_sample / source, target)
        lines.append(f"images/{target.name},{label}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")

    assert detect_layout(tmp_path) == "csv"
    dataset = open_dataset(tmp_path)
    assert dataset.layout == "csv"
    assert dataset.item_name(1) == "images/automobile_0001.jpg"
    assert resolve_labels(dataset.labels, load_class_set("cifar10")).tolist() == [3, 1, 9]
    assert open_dataset(tmp_path / "labels.csv").labels == ["cat", "Automobile", "truck"]


def test_labels_csv_needs_its_header_and_its_files(tmp_path: Path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("a.jpg,cat\n")
    with pytest.raises(DatasetError, match="header naming the columns 'filename' and 'class_id'"):
        open_dataset(tmp_path)
    (tmp_path / "labels.csv").write_text("filename,class_id\na.jpg,cat\nmissing.jpg,dog\n")
    with pytest.raises(DatasetError, match="1 listed images do not exist: missing.jpg"):
        open_dataset(tmp_path)


# --------------------------------------------------------------------------- labels and subsets


def test_unknown_labels_are_named_with_their_counts(cifar_sample: Path):
    dataset = open_dataset(cifar_sample)
    with pytest.raises(DatasetError) as info:
        resolve_labels(dataset.labels, load_class_set("stl10"))
    message = str(info.value)
    assert "2 labels match no class of stl10" in message
    assert "'automobile' (50 images)" in message and "'frog' (50 images)" in message


def test_a_label_naming_two_classes_is_ambiguous():
    class_set = ClassSet("twins", [ClassSpec("a", "crane"), ClassSpec("b", "crane"), ClassSpec("c", "heron")])
    assert resolve_labels(["a", "heron", "b"], class_set).tolist() == [0, 2, 1]
    with pytest.raises(DatasetError, match=r"label 'crane' names several classes of twins \(a, b\)"):
        resolve_labels(["crane"], class_set)


def test_limit_picks_the_same_spread_subset_every_time(cifar_sample: Path):
    dataset = open_dataset(cifar_sample)
    first, again = limited_indices(len(dataset), 60), limited_indices(len(dataset), 60)
    assert first.tolist() == again.tolist() == sorted(set(first.tolist()))
    assert len(first) == 60
    subset = dataset.subset(first.tolist())
    assert len(set(subset.labels)) == 10, "a class-ordered folder must not be cut to its first classes"
    assert limited_indices(len(dataset), 10_000).tolist() == list(range(500))
