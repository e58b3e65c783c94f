"""Example sets: label matching, shot selection, unreadable images, the embedding cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from gloss_gen.adapt import AdaptError
from gloss_gen.adapt.examples import embed_examples, holdout_folds, open_examples


def copy_examples(src, dst):
    shutil.copytree(src, dst)
    return dst


def store_keys(store) -> list[str]:
    return sorted(store.backend.keys(store.ns + ":"))


def test_unknown_label_stops_with_the_label_and_its_count(colour_data, colour_set, tmp_path, dir_store):
    root = copy_examples(colour_data[0], tmp_path / "ex")
    (root / "purple").mkdir()
    for i in range(3):
        shutil.copy(root / "red" / "00.png", root / "purple" / f"{i}.png")
    with pytest.raises(AdaptError, match=r"'purple' \(3 images\)"):
        open_examples(root, colour_set)
    assert store_keys(dir_store) == []


def test_labels_match_class_ids_and_names_as_eval_does(colour_data, tmp_path):
    from gloss_gen.data.classsets import ClassSet, ClassSpec

    named = ClassSet("named", [ClassSpec(f"id-{c}", c) for c in ("red", "green", "blue", "yellow")])
    source = open_examples(colour_data[0], named)  # folders are class names here, not ids
    assert source.counts().tolist() == [8, 8, 8, 8]


def test_too_many_shots_uses_what_exists_and_says_so(colour_data, colour_set, tiny_source, limits):
    examples = embed_examples(open_examples(colour_data[0], colour_set), tiny_source, None, limits)
    taken = examples.take(50)
    assert len(taken) == 32
    assert any("fewer than 50 examples and use what they have" in note for note in taken.notes)
    four = examples.take(4)
    assert four.counts().tolist() == [4, 4, 4, 4] and not four.notes
    assert set(four.names) <= set(examples.take(8).names)  # nested: 4-shot is part of 8-shot
    assert four.hash != examples.take(4, seed=1).hash
    with pytest.raises(AdaptError, match="at least 1"):
        examples.take(0)


def test_class_without_examples_keeps_zero_shot_and_is_named(
    colour_data, colour_set, tiny_source, limits, tmp_path, classname_classifier
):
    import torch

    from gloss_gen.adapt.adapter import build_adapter
    from gloss_gen.adapt.tip import TipConfig
    from gloss_gen.classify.scoring import ScoringHead

    root = copy_examples(colour_data[0], tmp_path / "ex")
    shutil.rmtree(root / "yellow")
    examples = embed_examples(open_examples(root, colour_set), tiny_source, None, limits).take(8)
    assert any("no examples and keep their zero-shot score: yellow" in note for note in examples.notes)
    classifier = classname_classifier(colour_set)
    record = build_adapter(classifier, examples, TipConfig())
    head = ScoringHead(classifier, adapter=record)
    images = torch.from_numpy(examples.vectors)
    added = head.logits(images) - ScoringHead(classifier).logits(images)
    assert torch.all(added[:, 3] == 0)  # yellow: nothing added to the zero-shot logit
    assert torch.all(added[:, :3].sum(-1) > 0)


def test_corrupt_image_is_skipped_and_named(colour_data, colour_set, tiny_source, limits, tmp_path):
    root = copy_examples(colour_data[0], tmp_path / "ex")
    (root / "blue" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    examples = embed_examples(open_examples(root, colour_set), tiny_source, None, limits)
    assert len(examples) == 32 and "blue/broken.png" not in examples.names
    assert any("blue/broken.png" in note and "skipped" in note for note in examples.notes)


def test_embeddings_are_cached_in_the_store_per_model(colour_data, colour_set, tiny_model, limits, redis_store):
    from gloss_gen.evaluation.runner import ModelSource

    calls = []
    source = ModelSource.of(tiny_model)
    original = tiny_model.encode_images
    tiny_model.encode_images = lambda pixels, **kw: calls.append(len(pixels)) or original(pixels, **kw)
    try:
        first = embed_examples(open_examples(colour_data[0], colour_set), source, redis_store, limits, augment=2)
        encoded = sum(calls)
        second = embed_examples(open_examples(colour_data[0], colour_set), source, redis_store, limits, augment=2)
    finally:
        del tiny_model.encode_images
    assert encoded == 32 * 3  # plain + 2 augmented views
    assert sum(calls) == encoded  # the second run read everything from the store
    assert np.array_equal(first.vectors, second.vectors) and np.array_equal(first.views, second.views)
    assert first.views.shape == (2, 32, first.vectors.shape[1])
    assert not np.allclose(first.views[0], first.views[1])  # the views differ (random crops / flips)
    assert not np.allclose(np.linalg.norm(first.views, axis=-1), 1, atol=1e-3)  # raw view features
    keys = first.keys
    assert np.allclose(np.linalg.norm(keys, axis=1), 1, atol=1e-5)


def test_holdout_folds_are_stratified():
    labels = np.repeat(np.arange(3), 5)
    folds = holdout_folds(labels, 3, 4)
    for c in range(3):
        assert sorted(np.bincount(folds[labels == c], minlength=4).tolist()) == [1, 1, 1, 2]
