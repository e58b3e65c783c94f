"""``vgloss classify --open-set`` as a user runs it: a progress bar while the negatives embed, the
open-set fields in --json and in the text, negatives reused on the next run, one line for bad input."""

from __future__ import annotations

import json

from test_cli import _stderr_lines, vgloss


def test_classify_open_set_neglabel_scores_and_reuses_its_negatives(isolated_env, tmp_path, sample_photos):
    env = isolated_env | {"VGLOSS_NEGLABEL_MAX_CANDIDATES": "600"}
    photos = [str(p) for p in sample_photos[:2]]
    first = vgloss("classify", *photos, "--class-set", "cifar10", "--open-set", "neglabel", "--json", "--top-k", "2",
                   env=env, cwd=tmp_path)
    assert "embedding NegLabel's candidate negative labels" in first.stderr
    assert "encoding text: 100%" in first.stderr  # the progress bar
    body = json.loads(first.stdout)
    assert body["open_set"]["method"] == "neglabel" and body["open_set"]["threshold_source"] == "default"
    assert body["open_set"]["negatives"] == 89  # 15 % of the 473 nouns and of the 127 adjectives
    for result in body["results"]:
        assert result["unknown"] == (result["ood_score"] < 0.5) and len(result["predictions"]) == 2

    text = vgloss("classify", *photos, "--class-set", "cifar10", "--open-set", "neglabel", "--open-set-threshold",
                  "0.01", env=env, cwd=tmp_path)
    assert "embedding NegLabel" not in text.stderr  # read from the store
    verdicts = [line.strip() for line in text.stdout.splitlines() if "neglabel score" in line]
    assert len(verdicts) == 2
    for verdict, result in zip(verdicts, body["results"]):
        assert verdict.startswith("in set" if result["ood_score"] >= 0.01 else "unknown")
        assert verdict.endswith("(threshold 0.01, request)")


def test_bad_open_set_options_exit_2_with_one_line(isolated_env, tmp_path, sample_photos):
    photo = str(sample_photos[0])
    for args, message in [
        (("--open-set", "maybe"), "unknown open_set mode 'maybe'; choose from off, mcm, neglabel"),
        (("--open-set", "neglabel", "--open-set-threshold", "2"), "threshold must be between 0 and 1, got 2.0"),
        (("--open-set", "mcm", "--open-set-threshold", "x"), "--open-set-threshold must be a number between 0 and 1"),
        (("--open-set-threshold", "0.5",), "--open-set-threshold needs --open-set mcm or neglabel"),
        (("--open-set", "mcm"), "open_set=mcm has no default threshold"),
    ]:
        proc = vgloss("classify", photo, "--class-set", "cifar10", *args, env=isolated_env, cwd=tmp_path, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        errors = [line for line in _stderr_lines(proc) if "error:" in line]
        assert len(errors) == 1 and message in errors[0], proc.stderr


def test_label_open_set_columns_equal_classify_and_a_changed_setting_is_refused(isolated_env, tmp_path, sample_photos):
    import pyarrow.dataset as ds

    env = isolated_env | {"VGLOSS_NEGLABEL_MAX_CANDIDATES": "600"}
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sample_photos[:3]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    options = ("--class-set", "cifar10", "--open-set", "neglabel", "--open-set-threshold", "0.5")
    done = vgloss("label", str(folder), "--out", str(tmp_path / "out"), *options, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {row["path"].rsplit("/", 1)[-1]: row for row in ds.dataset(tmp_path / "out", format="parquet").to_table().to_pylist()}
    body = json.loads(vgloss("classify", *sorted(str(p) for p in folder.iterdir()), *options, "--json",
                             env=env, cwd=tmp_path).stdout)
    assert len(rows) == len(body["results"]) == 3
    for result in body["results"]:
        row = rows[result["filename"]]
        assert abs(row["ood_score"] - result["ood_score"]) < 1e-5 and row["unknown"] == result["unknown"]
        assert row["class_id"] == result["predictions"][0]["class_id"]
    refused = vgloss("label", str(folder), "--out", str(tmp_path / "out"), "--class-set", "cifar10", env=env, cwd=tmp_path,
                     check=False)
    assert refused.returncode == 2 and len(_stderr_lines(refused)) == 1 and "open_set" in refused.stderr
