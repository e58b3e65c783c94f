import numpy as np
import torch

from gloss_gen.classify.scoring import ScoringHead
from gloss_gen.data.classifier import build_classifier
from gloss_gen.data.classsets import load_class_set
from gloss_gen.data.description_importers import describe_import


def _head(tiny_model, cupl_file):
    ds, _ = describe_import(load_class_set("cifar10"), cupl_file)
    return ScoringHead(build_classifier(tiny_model, ds))


def test_softmax_scores_topk_and_evidence(tiny_model, cupl_cifar10_file):
    head = _head(tiny_model, cupl_cifar10_file)
    clf = head.classifier
    image = torch.nn.functional.normalize(torch.randn(4, clf.dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    preds = head.predict(image, top_k=3, explain=True)
    cos = image.numpy() @ clf.prototypes.T
    logits = clf.logit_scale * cos
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for b, row in enumerate(preds):
        order = np.argsort(-probs[b])[:3]
        assert [p.class_id for p in row] == [clf.class_set.ids[i] for i in order]
        for p, i in zip(row, order):
            assert abs(p.score - probs[b, i]) < 1e-5 and abs(p.similarity - cos[b, i]) < 1e-5
            lo, hi = clf.offsets[i], clf.offsets[i + 1]
            best = lo + int(np.argmax(clf.evidence[lo:hi] @ image[b].numpy()))
            assert p.evidence == clf.evidence_texts[best]


def test_sigmoid_with_bias_and_topk_clamped(tiny_model, cupl_cifar10_file):
    head = _head(tiny_model, cupl_cifar10_file)
    head.logit_bias = -10.0
    image = torch.nn.functional.normalize(torch.randn(1, head.classifier.dim), dim=-1)
    preds = head.predict(image, top_k=100)[0]
    assert len(preds) == 10
    cos = torch.tensor([p.similarity for p in preds])
    expected = torch.sigmoid(head.logit_scale * cos - 10.0)
    assert torch.allclose(torch.tensor([p.score for p in preds]), expected, atol=1e-6)


def test_mean_description_scoring_matches_dclip_average(tiny_model, cupl_cifar10_file):
    head = _head(tiny_model, cupl_cifar10_file)
    clf = head.classifier
    image = torch.nn.functional.normalize(torch.randn(2, clf.dim), dim=-1)
    sims = head.similarities(image, "mean-description").numpy()
    for c in range(clf.num_classes):
        rows = clf.evidence[clf.offsets[c] : clf.offsets[c + 1]]
        assert np.allclose(sims[:, c], (image.numpy() @ rows.T).mean(1), atol=1e-5)
