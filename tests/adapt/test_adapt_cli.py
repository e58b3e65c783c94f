"""``vgloss adapt``, ``vgloss fit`` and ``vgloss eval --examples`` as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gloss_gen.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def colours_txt(tmp_path: Path) -> Path:
    path = tmp_path / "colours.txt"
    path.write_text("red\ngreen\nblue\nyellow\n")
    return path


def run_json(capsys, *argv) -> dict:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_adapt_then_classify_uses_the_active_adapter_and_names_it(isolated_env, colours_txt, colour_data, capsys):
    examples, held_out = colour_data
    summary = run_json(capsys, "adapt", str(colours_txt), str(examples), "--shots", "8", "--json")
    assert summary["method"] == "tip" and summary["examples"] == 32 and summary["active"]
    assert summary["validation"]["held_out"] == 32
    assert summary["validation"]["adapted_accuracy"] > summary["validation"]["zero_shot_accuracy"]

    images = [str(held_out / colour / "00.png") for colour in ("red", "blue")]
    out = run_json(capsys, "classify", "--class-set", str(colours_txt), "--json", "--explain", *images)
    assert out["adapter"] == summary["key"]
    first = out["results"][0]["predictions"][0]
    assert first["class_id"] == "red" and first["example"].startswith("red/")
    assert out["results"][1]["predictions"][0]["class_id"] == "blue"


def test_adapt_refuses_unknown_labels_and_stores_nothing(isolated_env, colours_txt, colour_data, tmp_path, capsys):
    from gloss_gen.data.store import open_store

    examples = tmp_path / "bad-examples"
    shutil.copytree(colour_data[0], examples)
    shutil.move(examples / "green", examples / "greeen")
    assert main(["adapt", str(colours_txt), str(examples)]) == 2
    err = capsys.readouterr().err
    assert "vgloss adapt: error: examples: 1 labels match no class of colours: 'greeen' (8 images)" in err
    store = open_store()
    assert [k for k in store.backend.keys(store.ns + ":") if ":adapter" in k] == []


def test_fit_writes_a_delta_that_classify_and_eval_load(isolated_env, colours_txt, colour_data, tmp_path, capsys):
    delta = tmp_path / "colours.safetensors"
    result = run_json(capsys, "fit", str(colours_txt), str(colour_data[0]), "--out", str(delta), "--shots", "4",
                      "--epochs", "2", "--json")
    assert delta.is_file() and result["epochs_run"] == 2
    assert (result["kept_epoch"], result["kept"]) == (2, "last")  # every shot, the last epoch (issue 23)
    assert 0 < result["trained_parameters"] < 0.001 * result["total_parameters"]
    assert result["pretrained"] == f"none+{delta}"
    out = run_json(capsys, "classify", "--class-set", str(colours_txt), "--pretrained", result["pretrained"],
                   "--json", str(colour_data[1] / "red" / "00.png"))
    assert out["model"] == f"vgloss-tiny/none+clipfit-{result['content_hash'][:16]}"


def test_eval_with_examples_reports_every_combination_and_a_chart(
    isolated_env, colours_txt, colour_data, tmp_path, capsys
):
    out = tmp_path / "out"
    argv = ["eval", str(colour_data[1]), "--class-set", str(colours_txt), "--methods", "classname",
            "--examples", str(colour_data[0]), "--shots", "2,8", "--adapt", "zero-shot,tip,tip-f", "--out", str(out)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("80 evaluation images, 4 classes (colours)")
    rows = [line.split() for line in lines[3:]]
    assert [(r[1], r[2]) for r in rows] == [("zero-shot", "-"), ("tip", "2"), ("tip", "8"), ("tip-f", "2"),
                                            ("tip-f", "8")]
    results = json.loads((out / "few_shot.json").read_text())
    zero_shot = results["rows"][0]["top1"]
    tip8 = next(r for r in results["rows"] if r["adaptation"] == "tip" and r["shots"] == 8)["top1"]
    assert all(r["top1"]["n"] == 80 for r in results["rows"])  # the same evaluation images for every row
    assert tip8["ci95"][0] > zero_shot["ci95"][1]
    assert (out / "few_shot.png").read_bytes()[:8] == PNG_MAGIC


def test_eval_refuses_the_evaluation_images_as_examples(isolated_env, colours_txt, colour_data, capsys):
    argv = ["eval", str(colour_data[1]), "--class-set", str(colours_txt), "--methods", "classname",
            "--examples", str(colour_data[1]), "--shots", "2"]
    assert main(argv) == 2
    assert "are the evaluation images themselves" in capsys.readouterr().err
    assert main([*argv[:-1], "0"]) == 2
    assert "--shots needs numbers of at least 1" in capsys.readouterr().err
