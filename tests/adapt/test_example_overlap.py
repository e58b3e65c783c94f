"""Examples that are evaluation images are found by content (bytes or pixels), not by path (issue 23)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gloss_gen.adapt.example_overlap import find_overlap
from gloss_gen.cli import main
from gloss_gen.evaluation.datasets import PixelArrays, open_dataset


@pytest.fixture()
def leaky_examples(colour_data, tmp_path: Path) -> Path:
    """The 8-per-class examples plus two evaluation files copied under new names and one evaluation
    image re-encoded (same pixels, other bytes): three examples that are evaluation images."""
    examples, evaluation = colour_data
    leaky = tmp_path / "leaky"
    shutil.copytree(examples, leaky)
    shutil.copy(evaluation / "red" / "03.png", leaky / "red" / "copy-a.png")
    shutil.copy(evaluation / "blue" / "11.png", leaky / "blue" / "copy-b.png")
    pixels = np.asarray(Image.open(evaluation / "green" / "05.png").convert("RGB"))
    Image.fromarray(pixels).save(leaky / "green" / "reencoded.png", compress_level=0)
    assert (leaky / "green" / "reencoded.png").read_bytes() != (evaluation / "green" / "05.png").read_bytes()
    return leaky


def test_copies_and_reencodes_of_evaluation_images_are_found(leaky_examples, colour_data):
    overlap = find_overlap(open_dataset(leaky_examples), open_dataset(colour_data[1]))
    assert sorted(overlap.pairs) == [("blue/copy-b.png", "blue/11.png"), ("green/reencoded.png", "green/05.png"),
                                     ("red/copy-a.png", "red/03.png")]
    assert not find_overlap(open_dataset(colour_data[0]), open_dataset(colour_data[1]))


def test_binary_sets_compare_pixels(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)
    source = tmp_path / "batch.bin"
    source.write_bytes(b"x")
    data = PixelArrays("cifar10", source, [source], images, ["a"] * 6)
    overlap = find_overlap(data.subset([1, 4]), data.subset([0, 4, 5]))
    assert overlap.rows == [1] and overlap.pairs == [("batch.bin#4", "batch.bin#4")]


def test_eval_refuses_them_in_one_line_or_leaves_them_out(isolated_env, leaky_examples, colour_data, tmp_path,
                                                          capsys):
    colours = tmp_path / "colours.txt"
    colours.write_text("red\ngreen\nblue\nyellow\n")
    argv = ["eval", str(colour_data[1]), "--class-set", str(colours), "--methods", "classname",
            "--examples", str(leaky_examples), "--shots", "2", "--adapt", "zero-shot,tip"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "3 example images are evaluation images (same bytes or decoded pixels): " in err[0]
    assert "red/copy-a.png = red/03.png" in err[0] and "--allow-overlap" in err[0]

    assert main([*argv, "--allow-overlap"]) == 0
    captured = capsys.readouterr()
    assert "warning: 3 example images are evaluation images" in captured.err
    assert "left out (--allow-overlap)" in captured.err
    assert "tip" in captured.out
