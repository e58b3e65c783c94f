"""``waffle`` as a user runs it: ``vgloss describe --method waffle`` writes the file, ``vgloss embed``
builds it, and ``vgloss eval`` puts classname, waffle (a row per seed, their mean), vgloss and fudd
side by side, with the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_rerank_cli import write_cifar10_pairs

from gloss_gen.cli import main
from gloss_gen.core.errors import EvalError
from gloss_gen.data.classsets import load_class_set
from gloss_gen.data.descriptions import DescriptionRecord, load_description_set, write_jsonl
from gloss_gen.evaluation.runner import parse_methods

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_waffle_specs_take_one_seed_or_several():
    specs = parse_methods("classname,waffle,waffle:seed=9,waffle:seeds=3")
    assert [(s.kind, s.label, s.seed) for s in specs] == [
        ("classname", "classname", None), ("waffle", "waffle", None), ("waffle", "waffle:seed=9", 9),
        ("waffle", "waffle:seed=0", 0), ("waffle", "waffle:seed=1", 1), ("waffle", "waffle:seed=2", 2),
    ]


@pytest.mark.parametrize("text", ["waffle:seeds=0", "waffle:seed=-1", "waffle:", "waffle:count=3", "waffle:seeds=x"])
def test_bad_waffle_specs_say_the_forms(text: str):
    with pytest.raises(EvalError, match="use waffle, waffle:seed=S or waffle:seeds=N"):
        parse_methods(text)


def test_the_same_seed_twice_is_refused():
    with pytest.raises(EvalError, match="twice"):
        parse_methods("waffle:seeds=2,waffle:seed=1")


@pytest.fixture()
def three_class_folder(tmp_path: Path) -> Path:
    """ImageFolder of three CIFAR-10 classes, two noise JPEGs each."""
    from PIL import Image

    root = tmp_path / "images"
    rng = np.random.default_rng(3)
    for name in ("airplane", "bird", "cat"):
        (root / name).mkdir(parents=True)
        for copy in range(2):
            pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels, mode="RGB").save(root / name / f"{copy}.jpg", format="JPEG", quality=95)
    return root


def vgloss_file(path: Path) -> Path:
    cifar10 = load_class_set("cifar10")
    records = []
    for index, spec in enumerate(cifar10.classes):
        record = DescriptionRecord.for_class(spec, cifar10, index, "vgloss")
        record.descriptions = [f"a {spec.name} seen from the side", "sharp outlines"]
        record.provenance = {"prompt_style": "phrases"}
        records.append(record)
    write_jsonl(path, records)
    return path


def test_describe_embed_and_eval_side_by_side(isolated_env: dict, three_class_folder: Path, tmp_path: Path,
                                              capsys):
    assert main(["describe", "cifar10", "--method", "waffle", "--no-progress"]) == 0
    written = tmp_path / "cifar10.waffle.jsonl"
    lines = [json.loads(line) for line in written.read_text().splitlines()]
    assert len(lines) == 10 and all(len(line["descriptions"]) == 30 for line in lines)
    assert all(line["method"] == "waffle" and line["provenance"]["seed"] == 0 for line in lines)
    assert lines[2]["descriptions"][0].startswith("A photo of a bird, which ")
    capsys.readouterr()

    assert main(["embed", str(written), "--no-activate"]) == 0
    assert "method waffle, prompts sentence" in capsys.readouterr().out

    out = tmp_path / "results"
    methods = (f"classname,waffle,waffle:seeds=2,vgloss:{vgloss_file(tmp_path / 'cifar10.vgloss.jsonl')},"
               f"fudd:{write_cifar10_pairs(tmp_path / 'cifar10.fudd.jsonl')}")
    assert main(["eval", str(three_class_folder), "--class-set", "cifar10", "--methods", methods,
                 "--scoring", "mean-description", "--out", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    labels = ["classname", "waffle", "waffle:seed=0", "waffle:seed=1", "vgloss:cifar10.vgloss.jsonl",
              "fudd:cifar10.fudd.jsonl"]
    assert [row.split()[0] for row in table[3:9]] == labels
    assert table[9].startswith("waffle, mean of 2 seeds (± standard deviation): top-1 ")

    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == labels
    rows = results["methods"]
    # `waffle` in eval is the set `vgloss describe --method waffle` wrote: seed 0, same content id.
    assert rows["waffle"]["descriptions_id"] == load_description_set(written).id == rows["waffle:seed=0"]["descriptions_id"]
    assert rows["waffle:seed=1"]["descriptions_id"] != rows["waffle"]["descriptions_id"]
    assert rows["waffle"]["prompt_style"] == "sentence"
    seeds = [rows[f"waffle:seed={s}"]["top1"]["accuracy"] for s in (0, 1)]
    summary = results["waffle_seeds"]
    assert summary["seeds"] == [0, 1]
    assert summary["top1"]["mean"] == pytest.approx(np.mean(seeds))
    assert summary["top1"]["std"] == pytest.approx(np.std(seeds))
    assert f"top-1 {100 * np.mean(seeds):.2f} ± {100 * np.std(seeds):.2f} %" in table[9]
    assert (out / "top1.png").read_bytes()[:8] == PNG_MAGIC
