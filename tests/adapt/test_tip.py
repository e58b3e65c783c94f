"""Tip-Adapter: parity with the official formula, the search, and accuracy on unseen images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gloss_gen.adapt.adapter import build_adapter
from gloss_gen.adapt.examples import embed_examples, open_examples
from gloss_gen.adapt.tip import PAPER_ALPHA, PAPER_BETA, TipConfig, search_grid
from gloss_gen.classify.adapter_records import AdapterRecord
from gloss_gen.classify.scoring import ScoringHead
from gloss_gen.data.classifier import Classifier
from gloss_gen.data.classsets import ClassSet, ClassSpec
from gloss_gen.evaluation.metrics import Accuracy


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def random_classifier(num_classes: int, dim: int, logit_scale: float, seed: int = 0) -> Classifier:
    g = torch.Generator().manual_seed(seed)
    prototypes = unit(torch.randn(num_classes, dim, generator=g)).numpy()
    class_set = ClassSet("random", [ClassSpec(f"c{i}", f"class {i}") for i in range(num_classes)])
    return Classifier(
        key="k", model_id="m", class_set=class_set, descriptions_id="d", method="classname",
        prompt_style="templates", template_set="openai", prototypes=prototypes, evidence=prototypes.copy(),
        offsets=np.arange(num_classes + 1), evidence_texts=[f"class {i}" for i in range(num_classes)],
        logit_scale=logit_scale,
    )


def record_for(classifier: Classifier, keys: np.ndarray, labels: np.ndarray, alpha: float, beta: float):
    return AdapterRecord(
        key="a", method="tip", classifier_key=classifier.key, model_id=classifier.model_id,
        class_set=classifier.class_set.name, class_ids=classifier.class_set.ids, example_hash="e", params={},
        alpha=alpha, beta=beta, keys=keys, labels=labels, names=[f"ex{i}.jpg" for i in range(len(labels))],
    )


@pytest.mark.parametrize("logit_scale", [100.0, 14.2857])
def test_head_logits_equal_the_official_tip_adapter_formula(logit_scale):
    classes, dim, shots = 7, 32, 3
    classifier = random_classifier(classes, dim, logit_scale)
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(classes).repeat_interleave(shots)
    cache_keys = unit(torch.randn(len(labels), dim, generator=g))
    features = unit(torch.randn(11, dim, generator=g))
    alpha, beta = 1.7, 5.5

    head = ScoringHead(classifier, adapter=record_for(classifier, cache_keys.numpy(), labels.numpy(), alpha, beta))
    ours = head.logits(features)

    # Official (main.py run_tip_adapter): keys stored (D, N), values one-hot (N, C).
    clip_weights = torch.from_numpy(classifier.prototypes).T
    keys_t = cache_keys.T
    cache_values = F.one_hot(labels).float()
    clip_logits = logit_scale * features @ clip_weights
    affinity = features @ keys_t
    cache_logits = ((-1) * (beta - beta * affinity)).exp() @ cache_values
    official = clip_logits + cache_logits * alpha

    # float32: logits of about ±45 at logit_scale 100 are a few ulps (3.8e-6 each) apart between
    # matmul kernels (1.1e-5 seen with AVX-512), hence the relative term
    assert torch.allclose(ours, official, atol=1e-5, rtol=1e-6)
    # and the probabilities the server returns are the softmax of those logits
    probs = head.probabilities(head.similarities(features), features)
    assert torch.allclose(probs, official.softmax(-1), atol=1e-5)


def official_build_cache_keys(view_features: list[torch.Tensor]) -> torch.Tensor:
    """utils.build_cache_model of the official code, written out: per augment epoch the raw
    ``encode_image`` features of the cache images, stacked, averaged over epochs, normalised,
    stored (D, N)."""
    cache_keys = []
    for train_features in view_features:
        cache_keys.append(torch.cat([train_features], dim=0).unsqueeze(0))
    cache_keys = torch.cat(cache_keys, dim=0).mean(dim=0)
    cache_keys /= cache_keys.norm(dim=-1, keepdim=True)
    return cache_keys.permute(1, 0)


def test_augmented_keys_equal_the_official_cache_construction():
    from gloss_gen.adapt.examples import Examples

    views_n, rows, dim = 4, 9, 16
    g = torch.Generator().manual_seed(3)
    # raw features whose norms differ a lot between views, as crops of one image can
    raw = torch.randn(views_n, rows, dim, generator=g) * torch.rand(views_n, rows, 1, generator=g).mul(20).add(0.1)
    class_set = ClassSet("three", [ClassSpec(f"c{i}", f"class {i}") for i in range(3)])
    examples = Examples(class_set=class_set, model_id="m", vectors=unit(raw[0]).numpy(),
                        labels=np.arange(rows) % 3, names=[f"{i}.png" for i in range(rows)], fingerprint="f",
                        views=raw.numpy(), augment=views_n)

    official = official_build_cache_keys(list(raw))
    assert torch.allclose(torch.from_numpy(examples.keys).T, official, atol=1e-6, rtol=0)
    mean_of_unit_views = unit(unit(raw).mean(dim=0)).T  # the construction this replaces differs here
    assert not torch.allclose(mean_of_unit_views, official, atol=1e-3)
    # Tip-Adapter-F trains on each view normalised per image (official: image_features /= norm)
    for ours, view in zip(examples.view_features(), raw):
        assert torch.allclose(torch.from_numpy(ours), unit(view), atol=1e-6)


def test_search_grid_is_the_official_one_scaled_to_the_logit_scale():
    betas, alphas = search_grid(100.0, 200, 20)
    official_betas = [i * (7 - 0.1) / 200 + 0.1 for i in range(200)]
    official_alphas = [i * (3 - 0.1) / 20 + 0.1 for i in range(20)]
    assert np.allclose(betas, official_betas) and np.allclose(alphas, official_alphas)
    _, scaled = search_grid(50.0, 200, 20)
    assert np.allclose(scaled, np.array(official_alphas) / 2)


def test_explain_names_the_nearest_example_of_each_predicted_class():
    classifier = random_classifier(3, 16, 100.0)
    keys = unit(torch.randn(6, 16, generator=torch.Generator().manual_seed(3)))
    labels = np.array([0, 0, 1, 1, 2, 2])
    head = ScoringHead(classifier, adapter=record_for(classifier, keys.numpy(), labels, 1.0, 1.0))
    image = keys[3:4] * 0.9 + 0.1 * keys[2:3]  # closest to example 3 (class 1)
    preds = head.predict(unit(image), top_k=3, explain=True)[0]
    by_class = {p.class_id: p.example for p in preds}
    assert by_class["c1"] == "ex3.jpg"
    assert by_class["c0"] in ("ex0.jpg", "ex1.jpg") and by_class["c2"] in ("ex4.jpg", "ex5.jpg")
    assert preds[0].to_dict(explain=True)["example"] == preds[0].example


def test_one_shot_uses_the_paper_values_and_says_so(colour_data, colour_set, tiny_source, limits, classname_classifier):
    examples = embed_examples(open_examples(colour_data[0], colour_set), tiny_source, None, limits).take(1)
    classifier = classname_classifier(colour_set)
    record = build_adapter(classifier, examples, TipConfig())
    assert record.beta == PAPER_BETA
    assert record.alpha == pytest.approx(PAPER_ALPHA * classifier.logit_scale / 100)
    assert any("nothing to hold out" in note for note in record.notes)
    assert record.validation["held_out"] == 0


def _accuracies(classifier, examples, eval_examples, method):
    head = ScoringHead(classifier)
    features = torch.from_numpy(eval_examples.vectors)
    zero_shot = Accuracy.of(head.logits(features).argmax(-1).numpy() == eval_examples.labels)
    record = build_adapter(classifier, examples, TipConfig(method=method))
    head.attach(record)
    adapted = Accuracy.of(head.logits(features).argmax(-1).numpy() == eval_examples.labels)
    return zero_shot, adapted, record


@pytest.mark.parametrize("method", ["tip", "tip-f"])
def test_cache_beats_zero_shot_on_unseen_generated_images(method, colour_data, colour_set, tiny_source, limits, classname_classifier):
    examples = embed_examples(open_examples(colour_data[0], colour_set), tiny_source, None, limits)
    held_out = embed_examples(open_examples(colour_data[1], colour_set), tiny_source, None, limits)
    classifier = classname_classifier(colour_set)
    zero_shot, adapted, record = _accuracies(classifier, examples, held_out, method)
    assert adapted.low > zero_shot.high, (zero_shot, adapted)
    assert record.validation["held_out"] == len(examples)  # every example was held out once in the k-fold


@pytest.mark.parametrize("method", ["tip", "tip-f"])
def test_cache_beats_zero_shot_on_unseen_cifar10_images(method, cifar_split, tiny_source, limits, classname_classifier):
    from gloss_gen.data.classsets import builtin_class_set

    cifar = builtin_class_set("cifar10")
    examples = embed_examples(open_examples(cifar_split[0], cifar), tiny_source, None, limits).take(16)
    held_out = embed_examples(open_examples(cifar_split[1], cifar), tiny_source, None, limits)
    classifier = classname_classifier(cifar)
    zero_shot, adapted, _ = _accuracies(classifier, examples, held_out, method)
    print(f"{method}: zero-shot {zero_shot}, adapted {adapted}")
    assert adapted.value > zero_shot.high, (zero_shot, adapted)
