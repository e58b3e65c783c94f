"""``fudd:PAIRS.jsonl`` in ``vgloss eval``: FuDD's procedure (class-name first pass, top-k re-ranked by
the pair descriptions) scored beside the other methods, its embeddings cached but never served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_rerank_cli import write_cifar10_pairs

from gloss_gen.classify.pair_embeddings import get_active_pair_embeddings
from gloss_gen.classify.scoring import ScoringHead
from gloss_gen.core.errors import EvalError
from gloss_gen.data.classifier import build_classifier
from gloss_gen.data.classsets import load_class_set
from gloss_gen.evaluation.runner import EvalConfig, ModelSource, evaluate, parse_methods, prepare_method
from gloss_gen.evaluation.second_look import pair_embeddings_for, rank_with_rerank


@pytest.fixture()
def cifar_photos(tmp_path: Path, sample_photos: list[Path]) -> Path:
    root = tmp_path / "photos"
    for i, photo in enumerate(sample_photos[:16]):
        folder = root / ("cat", "dog", "automobile", "truck")[i % 4]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / photo.name).write_bytes(photo.read_bytes())
    return root


def test_fudd_row_beside_classname(cifar_photos, tmp_path, tiny_model, dir_store):
    cifar10 = load_class_set("cifar10")
    pairs_file = write_cifar10_pairs(tmp_path / "cifar10.fudd.jsonl")
    methods = parse_methods(f"classname,fudd:{pairs_file}")
    assert [m.label for m in methods] == ["classname", "fudd:cifar10.fudd.jsonl"]
    models = ModelSource.of(tiny_model)
    result = evaluate(EvalConfig(data=cifar_photos, class_set=cifar10, methods=methods, workers=1, rerank_k=5),
                      models, dir_store)
    classname, fudd = result.methods
    assert fudd.method == "classname" and fudd.classifier_key == classname.classifier_key  # the same first pass
    assert fudd.scores.topk == classname.scores.topk  # rerank_k = 5 = top-5: the same five classes, reordered
    assert fudd.notes == ["5 pairs re-rank a first pass of classname prompts"]
    assert get_active_pair_embeddings(dir_store, models.id, "cifar10") is None  # evaluating serves nothing


def test_rank_with_rerank_is_the_heads_order(tiny_model, dir_store, tmp_path):
    cifar10 = load_class_set("cifar10")
    pairs_file = write_cifar10_pairs(tmp_path / "cifar10.fudd.jsonl")
    prepared = prepare_method(parse_methods(f"fudd:{pairs_file}")[0], cifar10)
    head = ScoringHead(build_classifier(tiny_model, prepared.descriptions))
    head.attach_pairs(pair_embeddings_for(prepared.pairs, ModelSource.of(tiny_model), dir_store))
    vectors = torch.nn.functional.normalize(torch.randn(20, head.classifier.dim), dim=-1).numpy()
    ranked = rank_with_rerank(head, vectors, "prototype", 5, 10, chunk_size=7)
    expected = [[head.ids.index(p.class_id) for p in s.predictions]
                for s in head.score(torch.from_numpy(vectors), top_k=5, rerank_k=10)]
    assert np.array_equal(ranked, np.array(expected))


def test_fudd_needs_a_pair_file(tmp_path, cifar_photos, tiny_model):
    cifar10 = load_class_set("cifar10")
    not_pairs = tmp_path / "descriptions.jsonl"
    not_pairs.write_text('{"class_id": "cat", "name": "cat", "method": "vgloss"}\n')
    with pytest.raises(EvalError, match="needs a file: fudd:FILE"):
        parse_methods("fudd")
    for path, message in ((not_pairs, "is not a pair file"), (tmp_path / "missing.jsonl", "does not exist")):
        config = EvalConfig(data=cifar_photos, class_set=cifar10, methods=parse_methods(f"fudd:{path}"), workers=1)
        with pytest.raises(EvalError, match=message):
            evaluate(config, ModelSource.of(tiny_model), None)
