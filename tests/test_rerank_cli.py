"""FuDD's second look from the command line: ``vgloss embed`` of a pair file, then ``vgloss classify
--rerank fudd``; the re-rank changes only the order within the first pass's top-k, and mistakes are one
line."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import _stderr_lines, vgloss

from gloss_gen.data.classsets import load_class_set
from gloss_gen.data.descriptions import JsonlWriter
from gloss_gen.data.pair_descriptions import PairRecord

CONTRASTS = {  # cifar10 pairs a first pass confuses, with one contrasting attribute each
    ("cat", "dog"): ("pointed upright ears", "floppy ears and a long muzzle"),
    ("automobile", "truck"): ("a low sleek body", "a tall cargo box"),
    ("airplane", "bird"): ("metal wings and jet engines", "feathered wings and a beak"),
    ("deer", "horse"): ("antlers and a white tail", "a flowing mane"),
    ("ship", "airplane"): ("a hull on water", "wings in the sky"),
}


def write_cifar10_pairs(path: Path, failed: tuple[str, str] | None = None) -> Path:
    """A pair file as `vgloss describe cifar10 --method fudd` writes it (optionally one failed pair)."""
    cifar = load_class_set("cifar10")
    index = {cid: i for i, cid in enumerate(cifar.ids)}
    with JsonlWriter(path) as out:
        for (a, b), (text_a, text_b) in CONTRASTS.items():
            record = PairRecord.for_pair(cifar, index[a], index[b])
            first, second = (text_a, text_b) if index[a] < index[b] else (text_b, text_a)
            record.attributes = ["shape"]
            record.descriptions = ([f"a photo of a {record.names[0]}, with {first}."],
                                   [f"a photo of a {record.names[1]}, with {second}."])
            if failed == (a, b):
                record.error = "LLM answered nothing usable"
            out.write(record)
    return path


def test_embed_pairs_then_classify_reranks_within_the_top_k(isolated_env, tmp_path, sample_photos):
    pairs = write_cifar10_pairs(tmp_path / "cifar10.fudd.jsonl", failed=("deer", "horse"))
    embedded = vgloss("embed", str(pairs), env=isolated_env, cwd=tmp_path)
    assert "pair embeddings" in embedded.stdout and "4 pairs" in embedded.stdout
    assert "1 failed pairs use the class-name prompt" in embedded.stdout
    photos = [str(p) for p in sample_photos[:4]]
    common = ("--class-set", "cifar10", "--json", "--top-k", "10")
    first = json.loads(vgloss("classify", *photos, *common, "--rerank", "none", env=isolated_env, cwd=tmp_path).stdout)
    second = json.loads(vgloss("classify", *photos, *common, "--rerank-k", "4", env=isolated_env, cwd=tmp_path).stdout)
    assert "rerank" not in first
    assert second["rerank"]["method"] == "fudd" and second["rerank"]["k"] == 4  # VGLOSS_RERANK=fudd by default
    moved = 0
    for before, after in zip(first["results"], second["results"]):
        b, a = before["predictions"], after["predictions"]
        assert {p["class_id"] for p in a[:4]} == {p["class_id"] for p in b[:4]}
        assert a[4:] == b[4:]
        assert abs(sum(p["score"] for p in a[:4]) - sum(p["score"] for p in b[:4])) < 1e-5
        moved += [p["class_id"] for p in a[:4]] != [p["class_id"] for p in b[:4]]
    assert moved, "the re-rank changed no order on four photos"


def test_rerank_mistakes_are_one_line(isolated_env, tmp_path, sample_photos):
    photo = str(sample_photos[0])
    for args, message in [
        (("--class-set", "cifar10", "--rerank", "fudd"), "class set cifar10 has no pair descriptions"),
        (("--class-set", "cifar10", "--rerank-k", "1"), "--rerank-k must be between 2 and 100"),
        (("--class-set", "cifar10", "--rerank", "none", "--rerank-k", "3"), "--rerank-k needs --rerank fudd"),
        (("--labels", "a cat", "a dog", "--rerank", "fudd"), "--rerank fudd needs a class set"),
    ]:
        proc = vgloss("classify", photo, *args, env=isolated_env, cwd=tmp_path, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        errors = [line for line in _stderr_lines(proc) if "error:" in line]
        assert len(errors) == 1 and message in errors[0], proc.stderr
