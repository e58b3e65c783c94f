"""The embed / classify / export verbs as a user runs them (real subprocesses, real stores)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gloss_gen.data.classsets import load_class_set
from gloss_gen.data.description_importers import describe_import
from gloss_gen.data.descriptions import write_jsonl


def vgloss(*args: str, env: dict, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")} | env
    proc = subprocess.run([sys.executable, "-m", "gloss_gen.cli", *args], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"vgloss {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


@pytest.fixture()
def cupl_file(tmp_path: Path, cupl_cifar10_file: Path) -> Path:
    ds, _ = describe_import(load_class_set("cifar10"), cupl_cifar10_file)
    path = tmp_path / "cifar10.import.jsonl"
    write_jsonl(path, ds.records)
    return path


def test_every_verb_has_help(isolated_env, tmp_path):
    out = vgloss("--help", env=isolated_env, cwd=tmp_path).stdout
    from gloss_gen.cli import VERBS

    for verb in VERBS:
        assert verb in out
        verb_help = vgloss(verb, "--help", env=isolated_env, cwd=tmp_path).stdout
        assert "usage: vgloss " + verb in verb_help
        assert "\nExamples:\n  vgloss " + verb in verb_help and "examples:" not in verb_help, verb  # one style
    assert vgloss("--version", env=isolated_env, cwd=tmp_path).stdout.strip() == "vgloss 0.1.0"


def test_embed_writes_to_the_data_dir_without_redis(isolated_env, tmp_path, cupl_file):
    proc = vgloss("embed", str(cupl_file), env=isolated_env, cwd=tmp_path)
    assert "10 classes of cifar10" in proc.stdout and "store" in proc.stdout
    from gloss_gen.core.config import Settings
    from gloss_gen.data.store import open_store

    store = open_store(Settings())
    clf = store.get_active_classifier("vgloss-tiny/none", "cifar10")
    assert clf is not None and clf.method == "import" and clf.prompt_style == "sentence"
    assert (Path(isolated_env["VGLOSS_DATA_DIR"]) / "store").is_dir()


def test_embed_writes_to_redis_when_url_set(isolated_env, tmp_path, cupl_file, redis_url, redis_namespace):
    env = isolated_env | {"VGLOSS_REDIS_URL": redis_url, "VGLOSS_REDIS_NAMESPACE": redis_namespace}
    vgloss("embed", str(cupl_file), env=env, cwd=tmp_path)
    from gloss_gen.data.store import RedisBackend, Store

    store = Store(RedisBackend(redis_url), redis_namespace)
    assert store.get_active_classifier("vgloss-tiny/none", "cifar10").method == "import"
    assert not (Path(isolated_env["VGLOSS_DATA_DIR"]) / "store").exists()


def test_embed_refuses_failed_classes_unless_allowed(isolated_env, tmp_path, cupl_file):
    lines = cupl_file.read_text().splitlines()
    first = json.loads(lines[0])
    first.pop("descriptions")
    first["error"] = "rate limited"
    cupl_file.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    proc = vgloss("embed", str(cupl_file), env=isolated_env, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "1 of 10 classes have no descriptions (airplane)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    vgloss("embed", str(cupl_file), "--allow-missing", env=isolated_env, cwd=tmp_path)


def test_classify_local_images_with_explain(isolated_env, tmp_path, cupl_file, sample_photos):
    vgloss("embed", str(cupl_file), env=isolated_env, cwd=tmp_path)
    images = sample_photos[:2]
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    proc = vgloss("classify", *map(str, images), str(bad), "--class-set", "cifar10", "--top-k", "3",
                  "--explain", "--json", env=isolated_env, cwd=tmp_path, check=False)
    assert proc.returncode == 1  # one image failed
    result = json.loads(proc.stdout)
    assert result["model"] == "vgloss-tiny/none" and result["class_set"] == "cifar10"
    good, failed = result["results"][:2], result["results"][2]
    for item in good:
        assert len(item["predictions"]) == 3
        assert all(p["evidence"] for p in item["predictions"])
        assert sum(p["score"] for p in item["predictions"]) <= 1.0 + 1e-6
    assert failed["error"]["code"] == "invalid_image"


def test_classify_builds_a_missing_default_with_wordnet(isolated_env, tmp_path, sample_photos):
    env = isolated_env | {"VGLOSS_DEFAULT_CLASS_SET": "stl10"}
    image = sample_photos[0]
    proc = vgloss("classify", str(image), "--json", env=env, cwd=tmp_path)
    assert json.loads(proc.stdout)["class_set"] == "stl10"
    from gloss_gen.core.config import Settings
    from gloss_gen.data.store import open_store

    assert open_store(Settings()).get_active_classifier("vgloss-tiny/none", "stl10").method == "wordnet"


def test_export_jsonl_and_hf(isolated_env, tmp_path, cupl_file):
    vgloss("export", str(cupl_file), "--format", "jsonl", "--out", "silver.jsonl", env=isolated_env, cwd=tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "silver.jsonl").read_text().splitlines()]
    source = [json.loads(line) for line in cupl_file.read_text().splitlines()]
    assert len(rows) == sum(len(r["descriptions"]) for r in source)
    assert rows[0]["definition"].startswith("an aircraft") and rows[0]["synset"] == "n02691156"
    vgloss("export", str(cupl_file), "--format", "hf", "--out", "hf", env=isolated_env, cwd=tmp_path)
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "path: data/train.jsonl" in card and f"num_examples: {len(rows)}" in card
    assert (tmp_path / "hf" / "data" / "train.jsonl").read_text().count("\n") == len(rows)


def test_bad_input_exits_2_with_one_line(isolated_env, tmp_path):
    for args, message in [
        (("embed", "missing.jsonl"), "missing.jsonl does not exist"),
        (("classify", "nofile.jpg"), "nofile.jpg: no such file"),
        (("export", "missing.jsonl", "--format", "hf"), "does not exist"),
        (("embed", "imagenet22k", "--method", "wordnet"), "unknown class set 'imagenet22k'"),
        (("classify", "x.jpg", "--top-k", "0"), "--top-k must be between 1 and 100"),
        (("export", "missing.jsonl", "--format", "jsonl"), "does not exist"),
    ]:
        proc = vgloss(*args, env=isolated_env, cwd=tmp_path, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_eval_scoring_choices_match_the_scoring_head():
    from gloss_gen.classify.scoring import SCORING_MODES
    from gloss_gen.commands.eval_command import SCORING_CHOICES

    assert SCORING_CHOICES == SCORING_MODES


def test_help_does_not_import_torch():
    code = "import sys; from gloss_gen.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def test_classify_checks_its_inputs_before_loading_the_model(isolated_env, tmp_path, sample_photos):
    for args, message in [
        (("classify", "nofile.jpg"), "vgloss classify: error: nofile.jpg: no such file"),
        (("classify", str(sample_photos[0]), "--class-set", "cifar100"), "unknown class set 'cifar100'"),
        (("classify", str(sample_photos[0]), "--labels", " ", ""), "--labels needs at least one non-empty label"),
    ]:
        proc = vgloss(*args, env=isolated_env, cwd=tmp_path, check=False)
        assert proc.returncode == 2, proc.stderr
        assert len(_stderr_lines(proc)) == 1 and message in proc.stderr, proc.stderr
        assert "loaded vgloss-tiny" not in proc.stderr  # the model was never loaded


def test_model_verbs_are_quiet_and_warn_once_about_random_weights(isolated_env, tmp_path, sample_photos):
    from gloss_gen.commands.verb_support import RANDOM_WEIGHTS_WARNING

    proc = vgloss("classify", str(sample_photos[0]), "--class-set", "cifar10", env=isolated_env, cwd=tmp_path)
    assert proc.stderr.count(RANDOM_WEIGHTS_WARNING) == 1
    assert "Parsing" not in proc.stderr and "INFO root" not in proc.stderr and "font cache" not in proc.stderr
    assert [line for line in _stderr_lines(proc) if line.startswith("INFO")] == [
        line for line in _stderr_lines(proc) if line.startswith("INFO gloss_gen")
    ]
    verbose = vgloss("-v", "classify", str(sample_photos[0]), env=isolated_env, cwd=tmp_path)
    assert "INFO root: Parsing" in verbose.stderr  # the library lines are only hidden, not lost


def test_the_random_weights_warning_follows_the_effective_pretrained_setting(isolated_env, monkeypatch, capsys):
    import argparse

    from gloss_gen.commands.verb_support import RANDOM_WEIGHTS_WARNING, warn_if_random_weights
    from gloss_gen.core.config import get_settings

    warn_if_random_weights(argparse.Namespace(verb="embed", pretrained=None))  # VGLOSS_PRETRAINED=none
    assert capsys.readouterr().err.count(RANDOM_WEIGHTS_WARNING) == 1
    warn_if_random_weights(argparse.Namespace(verb="embed", pretrained="openai"))  # --pretrained wins
    warn_if_random_weights(argparse.Namespace(verb="describe"))  # loads no model
    monkeypatch.setenv("VGLOSS_PRETRAINED", "openai")
    get_settings.cache_clear()
    warn_if_random_weights(argparse.Namespace(verb="classify", pretrained=None))
    assert capsys.readouterr().err == ""


def test_classify_labels_reuse_the_stored_label_classifier(isolated_env, tmp_path, sample_photos):
    from gloss_gen.core.config import Settings
    from gloss_gen.data.classifier import ad_hoc_class_set
    from gloss_gen.data.store import open_store

    args = ("classify", str(sample_photos[0]), "--labels", "a cat", "a rocket", "a cup of coffee", "--json")
    first = vgloss(*args, env=isolated_env, cwd=tmp_path)
    assert "embedded 3 labels" in first.stderr
    name = ad_hoc_class_set(["a cat", "a rocket", "a cup of coffee"]).name  # the server's name for these labels
    stored = open_store(Settings()).get_active_classifier("vgloss-tiny/none", name)
    assert stored is not None and stored.class_set.names == ["a cat", "a rocket", "a cup of coffee"]
    second = vgloss(*args, env=isolated_env, cwd=tmp_path)
    assert "no text encoded" in second.stderr and "embedded" not in second.stderr
    assert json.loads(second.stdout) == json.loads(first.stdout)
    assert json.loads(first.stdout)["class_set"] == name


def test_failed_export_leaves_no_files_and_embed_names_a_missing_file(isolated_env, tmp_path):
    for fmt in ("jsonl", "hf"):
        proc = vgloss("export", "missing.jsonl", "--format", fmt, env=isolated_env, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and "missing.jsonl does not exist" in proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*") if "vgloss-data" not in p.parts) == []
    proc = vgloss("embed", "missing.jsonl", env=isolated_env, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "missing.jsonl does not exist" in proc.stderr


def test_eval_reports_progress_when_stderr_is_not_a_terminal(isolated_env, tmp_path, sample_photos):
    import shutil

    data = tmp_path / "photos"
    for index, photo in enumerate(sample_photos[:6]):
        folder = data / ("cat" if index % 2 else "ship")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / photo.name)
    proc = vgloss("eval", str(data), "--class-set", "cifar10", "--methods", "classname",
                  env=isolated_env, cwd=tmp_path)  # stderr is a pipe here, as in a CI log
    assert "encoding images" in proc.stderr and "6/6" in proc.stderr
