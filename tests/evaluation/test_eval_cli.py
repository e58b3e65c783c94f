"""``vgloss eval`` as a user runs it: the console script, its table, its files and its errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from gloss_gen.evaluation.runner import EvalConfig, ModelSource, evaluate, parse_methods

REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NUMBER, INTERVAL = r"(\d+\.\d+)", r"\[\s*(\d+\.\d),\s*(\d+\.\d)\]"
ROW = re.compile(rf"^(\S+)\s+{NUMBER}\s+{INTERVAL}\s+{NUMBER}\s+{INTERVAL}$")


def test_eval_prints_one_table_and_writes_results_and_chart(isolated_env: dict, tmp_path: Path, data_dir: Path):
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")} | isolated_env
    env["VGLOSS_JPEG_DRAFT"] = "true"  # the server's speed setting; eval decodes exactly regardless
    command = [
        sys.executable, "-m", "gloss_gen.cli", "eval", "../shared/data/cifar10-sample",
        "--class-set", "cifar10",
        "--methods", "classname,wordnet,import:../shared/data/descriptions/cupl_cifar10.json",
        "--out", str(out), "--model", "vgloss-tiny", "--pretrained", "none",
    ]  # fmt: skip
    proc = subprocess.run(command, check=False, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr

    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("500 images, 10 classes (cifar10); model vgloss-tiny/none; scoring prototype")
    assert lines[1].split() == ["method", "top-1", "%", "95%", "CI", "top-5", "%", "95%", "CI"]
    rows = lines[3:]
    assert [row.split()[0] for row in rows] == ["classname", "wordnet", "import:cupl_cifar10.json"]
    for row in rows:
        match = ROW.match(row)
        assert match, row
        top1, low1, high1, top5, low5, high5 = map(float, match.groups()[1:])
        assert low1 <= top1 <= high1 and low5 <= top5 <= high5 and top1 <= top5
    assert "import:cupl_cifar10.json: imported descriptions for 10 classes" in proc.stderr

    results = json.loads((out / "results.json").read_text())
    assert results["data"]["num_images"] == 500 and results["data"]["layout"] == "imagefolder"
    assert results["model"] == "vgloss-tiny/none" and results["scoring"] == "prototype"
    assert results["template_set"] == "cifar10" and results["jpeg_draft"] is False
    assert list(results["methods"]) == ["classname", "wordnet", "import:cupl_cifar10.json"]
    for label, method in results["methods"].items():
        assert {"top1", "top5", "n", "per_class", "top_confusions"} <= set(method), label
        assert method["n"] == 500 and len(method["per_class"]) == 10
        low, high = method["top1"]["ci95"]
        assert low <= method["top1"]["accuracy"] <= high
        assert len(method["top_confusions"]) <= 20
        counts = [c["count"] for c in method["top_confusions"]]
        assert counts == sorted(counts, reverse=True)
    assert (out / "top1.png").read_bytes()[:8] == PNG_MAGIC


def test_unknown_labels_exit_2_naming_them_before_any_work(isolated_env: dict, synthetic_folder: Path, capsys):
    from gloss_gen.cli import main

    code = main(["eval", str(synthetic_folder), "--class-set", "cifar10", "--out", "out"])
    captured = capsys.readouterr()
    assert code == 2
    assert "4 labels match no class of cifar10: 'c0' (3 images)" in captured.err
    assert captured.out == ""
    assert not Path("out").exists()
    store = Path(isolated_env["VGLOSS_DATA_DIR"]) / "store"
    assert not [path for path in store.rglob("*") if path.is_file()], "nothing may be cached"


def test_pickled_cifar_exits_2_pointing_at_the_binary_download(isolated_env: dict, tmp_path: Path, capsys):
    from gloss_gen.cli import main

    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    (batches / "test_batch").write_bytes(b"\x80\x02}q\x00" + b"\x00" * 32)
    code = main(["eval", str(batches), "--class-set", "cifar10"])
    err = capsys.readouterr().err
    assert code == 2
    assert "pickle" in err and "cifar-10-binary.tar.gz" in err
    assert len(err.strip().splitlines()) == 1


def test_embeddings_cache_in_redis(tiny_model, redis_store, synthetic_folder: Path):
    from gloss_gen.data.classsets import ClassSet, ClassSpec

    class_set = ClassSet("synthetic", [ClassSpec(f"c{i}", f"pattern {i}") for i in range(4)])
    config = EvalConfig(data=synthetic_folder, class_set=class_set, methods=parse_methods("classname"))
    first = evaluate(config, ModelSource.of(tiny_model), redis_store)
    second = evaluate(config, ModelSource.of(tiny_model), redis_store)
    assert (first.images_encoded, second.images_encoded) == (12, 0)
    assert second.methods[0].classifier_cached
    assert second.methods[0].scores.top1 == first.methods[0].scores.top1
