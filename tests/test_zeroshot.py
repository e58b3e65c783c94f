"""gloss_gen.ZeroShotClassifier: the user guide's example runs, and it answers what the server answers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from gloss_gen.core.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def _settings(data_dir: Path) -> Settings:
    # the fp32 reference path: int8 paths quantize activations per batch, so a batch of three and
    # one image alone may differ in the third decimal (tests/inference covers the other paths)
    return Settings(_env_file=None, model="vgloss-tiny", pretrained="none", device="cpu", data_dir=data_dir,
                    backend="torch", precision="fp32",
                    default_class_set="cifar10", redis_url=None, api_keys=[], admin_keys=[])


def _user_guide_python_example() -> str:
    guide = (REPO_ROOT / "docs" / "user-guide.md").read_text()
    section = guide.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the user guide's Python section has one example"
    return blocks[0]


def test_the_user_guide_python_example_runs(isolated_env, tmp_path, sample_photos):
    code = _user_guide_python_example()
    assert len(code.strip().splitlines()) <= 6
    shutil.copy(next(p for p in sample_photos if p.name == "chelsea_full.jpg"), tmp_path / "cat.jpg")  # a cat
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")} | isolated_env
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 4 and all("%" in line and "because: " in line for line in lines[:3]), proc.stdout
    assert lines[3] in ("a tabby cat", "a teapot")


@pytest.fixture()
def server(tmp_path):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(_settings(tmp_path / "data"))) as client:
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").text
            time.sleep(0.05)
        yield client


def _served(client, path: Path, **fields) -> list[dict]:
    data = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in fields.items()}
    response = client.post("/v1/classify", files=[("images", (path.name, path.read_bytes(), "image/jpeg"))], data=data)
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["predictions"]


def _same(got: list[dict], expected: list[dict]) -> None:
    assert [p["class_id"] for p in got] == [p["class_id"] for p in expected]
    for a, b in zip(got, expected):
        assert set(a) == set(b)
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
        assert a["similarity"] == pytest.approx(b["similarity"], abs=1e-5)
        assert a.get("evidence") == b.get("evidence")


def test_predictions_are_the_servers(server, tmp_path, sample_photos):
    from gloss_gen import ZeroShotClassifier

    photos = sample_photos[:3]
    clf = ZeroShotClassifier(settings=_settings(tmp_path / "data"))  # the server's store and default set
    assert clf.class_set == "cifar10" and len(clf.labels) == 10
    for photo in photos:
        _same(clf.classify(photo, top_k=4, explain=True), _served(server, photo, top_k=4, explain=True))
    # paths, bytes and PIL images of the same file, one at a time or as a batch: one answer
    batch = clf.classify([str(photos[0]), photos[0].read_bytes(), Image.open(photos[0])], top_k=3)
    for predictions in batch:
        _same(predictions, clf.classify(photos[0], top_k=3))

    labels = ["a cat", "a rocket", "a cup of coffee"]
    _same(clf.classify(photos[1], candidate_labels=labels, top_k=3), _served(server, photos[1], labels=labels, top_k=3))
    from_labels = ZeroShotClassifier.from_labels(labels, settings=_settings(tmp_path / "data"))
    _same(from_labels.classify(photos[1], top_k=3), _served(server, photos[1], labels=labels, top_k=3))


def test_labels_are_embedded_in_the_simple_templates_under_the_servers_name_and_key(server, tmp_path, sample_photos):
    from gloss_gen import ZeroShotClassifier

    labels = ["a tabby cat", "a red bus"]
    served = server.post("/v1/classify", files=[("images", ("x.jpg", sample_photos[0].read_bytes(), "image/jpeg"))],
                         data={"labels": labels}).json()["class_set"]
    on_server = server.app.state.runtime.registry._labels[served].classifier
    here = ZeroShotClassifier.from_labels(labels, settings=_settings(tmp_path / "elsewhere")).classifier  # built anew
    assert on_server.template_set == here.template_set == "simple"
    assert (here.class_set.name, here.key) == (served, on_server.key)
    openai = _settings(tmp_path / "elsewhere").model_copy(update={"label_templates": "openai"})
    other = ZeroShotClassifier.from_labels(labels, settings=openai).classifier
    assert other.template_set == "openai" and other.class_set.name != served and other.key != on_server.key


def test_a_method_builds_its_own_classifier_without_touching_what_is_served(server, tmp_path, sample_photos):
    from gloss_gen import ZeroShotClassifier

    served_before = _served(server, sample_photos[0], top_k=3)
    by_name = ZeroShotClassifier("cifar10", method="classname", settings=_settings(tmp_path / "data"))
    assert by_name.classifier.method == "classname"
    assert _served(server, sample_photos[0], top_k=3) == served_before  # the wordnet one stays active


def test_bad_input_is_one_clear_error(tmp_path, sample_photos):
    from gloss_gen import ZeroShotClassifier
    from gloss_gen.core.errors import VglossError

    settings = _settings(tmp_path / "data")
    with pytest.raises(VglossError, match="unknown class set 'cifar100'"):
        ZeroShotClassifier("cifar100", settings=settings)
    with pytest.raises(VglossError, match="needs a description file"):
        ZeroShotClassifier("cifar10", method="vgloss", settings=settings)
    with pytest.raises(VglossError, match="list of strings"):
        ZeroShotClassifier.from_labels("cat, dog", settings=settings)
    clf = ZeroShotClassifier("cifar10", settings=settings)
    with pytest.raises(VglossError, match="could not be decoded as an image"):
        clf.classify(b"not an image")
    with pytest.raises(VglossError, match="no such file"):
        clf.classify(tmp_path / "missing.jpg")
