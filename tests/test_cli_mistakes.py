"""One line for every mistake, early: the newcomer's mistakes through the real CLI, each an exit
status 2, one line on stderr naming the fix, no traceback, and found long before a model loads."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOUND_S = 30  # the slowest refusals import torch + open_clip (3 s quiet); before, they loaded a model (40-150 s)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, sample_photos):
    root = tmp_path_factory.mktemp("mistakes")
    (root / "cat.jpg").write_bytes(next(p for p in sample_photos if p.name == "chelsea_full.jpg").read_bytes())
    (root / "notes.md").write_text("# not an image\n")
    (root / "latin1.txt").write_bytes("caf\xe9\nth\xe9\n".encode("latin-1"))
    return root


CASES = [
    # (id, extra environment, command line, what the line must say)
    ("missing-image", {}, ["classify", "missing.jpg"], "missing.jpg: no such file"),
    ("not-an-image", {}, ["classify", "notes.md"], "notes.md: not an image"),
    ("typo-class-set", {}, ["classify", "cat.jpg", "--class-set", "cifar1O"], "unknown class set 'cifar1O'"),
    ("typo-class-set-eval", {}, ["eval", ".", "--class-set", "cifar1O"], "cifar1O"),
    ("class-set-not-utf8", {}, ["classify", "cat.jpg", "--class-set", "latin1.txt"], "UTF-8"),
    ("max-batch-not-a-number", {"VGLOSS_MAX_BATCH": "abc"}, ["classify", "cat.jpg"],
     "invalid setting VGLOSS_MAX_BATCH='abc'"),
    ("device-gpu", {"VGLOSS_DEVICE": "gpu"}, ["classify", "cat.jpg"], "invalid setting VGLOSS_DEVICE='gpu'"),
    ("pretrained-typo", {"VGLOSS_MODEL": "ViT-B-32", "VGLOSS_PRETRAINED": "opnai"}, ["classify", "cat.jpg"],
     "no pretrained weights named 'opnai' (known: openai"),
    ("weights-offline", {"VGLOSS_MODEL": "ViT-B-32", "VGLOSS_PRETRAINED": "openai", "HF_HUB_OFFLINE": "1",
                         "HF_HOME": "{workdir}/hf-empty"}, ["embed", "cifar10", "--method", "wordnet"],
     "--pretrained none"),
    ("redis-down", {"VGLOSS_REDIS_URL": "redis://127.0.0.1:1"}, ["classify", "cat.jpg"], "does not answer"),
    ("redis-url-malformed", {"VGLOSS_REDIS_URL": "notaurl"}, ["classify", "cat.jpg"], "invalid VGLOSS_REDIS_URL"),
    ("embed-missing-file", {}, ["embed", "nothere.vgloss.jsonl"], "nothere.vgloss.jsonl does not exist"),
    ("top-k-out-of-range", {}, ["classify", "cat.jpg", "--top-k", "0"], "--top-k must be between 1 and 100"),
]
if importlib.util.find_spec("openvino") is None:
    CASES.append(("backend-not-installed", {"VGLOSS_BACKEND": "openvino"}, ["classify", "cat.jpg"],
                  "pip install 'vgloss[openvino]'"))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_mistake_is_one_line_and_exit_2_before_any_model_loads(case, workdir):
    _, extra, argv, expected = case
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")}
    env.update(VGLOSS_MODEL="vgloss-tiny", VGLOSS_PRETRAINED="none", VGLOSS_DEVICE="cpu",
               VGLOSS_DATA_DIR=str(workdir / "data"), PYTHONPATH=str(REPO))
    env.update({k: v.format(workdir=workdir) for k, v in extra.items()})
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "gloss_gen.cli", *argv], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and lines[0].startswith(f"vgloss {argv[0]}: error: ")
    assert expected in lines[0], lines[0]
    assert elapsed < BOUND_S, f"{elapsed:.1f}s to refuse: {lines[0]}"
