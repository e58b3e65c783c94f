"""``vgloss label`` as a user runs it: killed mid-run and run again, against ``vgloss classify`` on
the same files; its one-line refusals; ``ZeroShotClassifier.label``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labelling_helpers import REPO_ROOT, vgloss, write_photo_folder

from gloss_gen.labelling.shards import MANIFEST_NAME


def read_rows(out: Path) -> list[dict]:
    import pyarrow.dataset as ds

    return ds.dataset(out, format="parquet").to_table().to_pylist()


def test_a_killed_run_resumes_to_one_row_per_file_with_classify_s_labels(isolated_env, tmp_path, sample_photos):
    folder = write_photo_folder(tmp_path / "photos", sample_photos)
    # A file whose read hangs (a FIFO with no writer: a stalled network mount, say) in the second
    # shard: the run writes part 0, then waits there until it is killed.
    stalled = tmp_path / "photos" / "nested" / "d0" / "img_030x.jpg"
    os.mkfifo(stalled)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")} | isolated_env
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "gloss_gen.cli", "label", "photos", "--class-set", "cifar10", "--out", "out",
               "--shard-size", "25", "--no-progress"]
    run = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "out" / "part-00000.parquet").exists():
            assert run.poll() is None, run.communicate()[1].decode()
            assert time.monotonic() < deadline, "no part written in 300 s"
            time.sleep(0.05)
        time.sleep(1.0)
        assert run.poll() is None and not (tmp_path / "out" / "part-00001.parquet").exists()
    finally:
        run.kill()
        run.communicate()
    stalled.unlink()
    stalled.write_bytes((tmp_path / "photos" / "nested" / "d5" / "img_299.jpg").read_bytes())

    proc = vgloss("label", "photos", "--class-set", "cifar10", "--out", "out", "--shard-size", "25", "--no-progress",
                  env=isolated_env, cwd=tmp_path)
    assert "labelled 279 images into 12 parts" in proc.stdout and "(1 of 13 parts were there already)" in proc.stdout
    assert "3 unreadable" not in proc.stdout  # the bad files sort first: they were in part 0
    rows = read_rows(tmp_path / "out")
    relative = sorted(f"photos/{Path(p).relative_to(folder.root).as_posix()}" for p in folder.images)
    assert sorted(row["path"] for row in rows) == sorted(relative + ["photos/nested/d0/img_030x.jpg"])

    by_path = {row["path"]: row for row in rows}
    # classify refuses files that do not even start like an image; label gives them a row each
    assert by_path["photos/bad/empty.jpg"]["error"]["code"] == "empty_image"
    assert by_path["photos/bad/not_an_image.jpg"]["error"]["code"] == "invalid_image"
    paths = sorted(path for path in by_path if path not in ("photos/bad/empty.jpg", "photos/bad/not_an_image.jpg"))
    classified = vgloss("classify", *paths, "--class-set", "cifar10", "--json", env=isolated_env, cwd=tmp_path,
                        check=False)
    assert classified.returncode == 1, classified.stderr  # 1: the truncated JPEG cannot be decoded
    results = json.loads(classified.stdout)["results"]
    for path, result in zip(paths, results):
        row = by_path[path]
        if "error" in result:
            assert row["error"] == result["error"], path  # same code, same message
        else:
            assert row["error"] is None and row["class_id"] == result["predictions"][0]["class_id"], path
            assert row["score"] == pytest.approx(result["predictions"][0]["score"], abs=1e-5)
    assert sum(row["error"] is not None for row in rows) == 3

    refused = vgloss("label", "photos", "--class-set", "cifar10", "--out", "out", "--shard-size", "25",
                     "--top-k", "3", env=isolated_env, cwd=tmp_path, check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("vgloss label: error: out holds labels made with "
                                                              "other settings (top_k 5 -> 3)")
    assert json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())["settings"]["top_k"] == 5


def test_label_checks_its_inputs_before_loading_the_model(isolated_env, tmp_path):
    (tmp_path / "photos").mkdir()
    cases = [
        (("label", "nowhere", "--out", "o"), "vgloss label: error: nowhere: no such file or folder"),
        (("label", "photos", "--out", "o", "--labels", "a", "--class-set", "cifar10"), "give --class-set or --labels"),
        (("label", "photos", "--out", "o", "--shard-size", "0"), "--shard-size must be at least 1, not 0"),
        (("label", "photos", "--out", "o", "--ray-address", "auto"), "--ray-address needs --engine ray"),
    ]
    for args, expected in cases:
        proc = vgloss(*args, env=isolated_env, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and expected in proc.stderr, (args, proc.stderr)
        assert "loaded model" not in proc.stderr
        assert not (tmp_path / "o").exists()


def test_zero_shot_classifier_label_gives_its_classify_answers(photo_folder, tmp_path, label_settings):
    from gloss_gen.zeroshot import ZeroShotClassifier

    clf = ZeroShotClassifier.from_labels(["a cat", "a rocket", "a cup of coffee", "the moon"], settings=label_settings)
    folder = photo_folder.root / "nested" / "d4"
    summary = clf.label(folder, tmp_path / "labels", top_k=2, embeddings=True, shard_size=20, progress=False)
    assert summary.to_dict()["labelled"] == 50 and summary.to_dict()["errors"] == {}
    rows = {Path(row["path"]).name: row for row in read_rows(tmp_path / "labels")}
    files = sorted(folder.glob("*.jpg"))
    for file, predictions in zip(files, clf.classify([str(f) for f in files], top_k=2)):
        row = rows[file.name]
        assert [p["label"] for p in row["top_k"]] == [p["label"] for p in predictions]
        assert row["score"] == pytest.approx(predictions[0]["score"], abs=1e-5)
        assert len(row["embedding"]) == clf.model.embed_dim
