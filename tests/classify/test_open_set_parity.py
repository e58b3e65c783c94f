"""Open-set scoring against the authors' code, written out below from their repositories:

- MCM, deeplearning-wisc/MCM ``utils/detection_util.py`` (``get_ood_scores_clip``, score 'MCM'),
  ``eval_ood_detection.py`` (``--T`` default 1), ``get_and_print_results`` (scores negated back);
- NegLabel, XueJiang16/NegLabel ``mmcls/models/ood/clip_ood.py`` (``ScalableClassifier.grouping``),
  ``mmcls/models/classifiers/multi_modal.py`` (the selection in ``CLIPScalableClassifier.__init__``
  and ``simple_test``'s ``100.0 *``), ``custom_config/clip.py`` (t=1, ngroup=100, neg_topk=0.15,
  pencentile=0.95);
- CHiLS, acmi-lab/CHILS ``src/zshot_utils.py`` (``conf_pred``, ``get_CLIP_inputs_from_dict``,
  ``get_cleaned_gpt_sets``) and ``src/get_inputs.py`` (``true_wsup``);
- the measures, both repositories' ``get_measures`` / ``fpr_and_fdr_at_recall`` (MCM
  ``utils/detection_util.py``, NegLabel ``mmcls/utils/ood_evaluate.py``).

Their permutation is drawn on CUDA after ``torch.manual_seed(0)``; the transcription draws it on the
CPU after the same call, which is what gloss_gen reproduces.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gloss_gen.classify.open_set import (
    IN_SET_TPR,
    MCM_TEMPERATURE,
    NEGLABEL_GROUPS,
    NEGLABEL_LOGIT_SCALE,
    OpenSetError,
    check_threshold,
    chils_label_set,
    chils_predict,
    chils_reweighted_probabilities,
    mcm_score,
    neglabel_group_order,
    neglabel_score,
    open_set_decisions,
    open_set_measures,
    threshold_at_tpr,
)
from gloss_gen.core.errors import InputError
from gloss_gen.data.negative_labels import NEGLABEL_KEEP_SHARE, NEGLABEL_QUANTILE, select_negatives

TOLERANCE = 1e-6

# --------------------------------------------------------------------------- the authors' code


def mcm_reference(image_features, text_features, T=1):
    output = image_features @ text_features.T
    smax = F.softmax(output / T, dim=1).numpy()
    score = -np.max(smax, axis=1)
    return -score  # get_and_print_results: get_measures(-in_score, -out_score)


def neglabel_grouping_reference(pos, neg, ngroup, t=1):
    group = ngroup
    drop = neg.shape[1] % ngroup
    if drop > 0:
        neg = neg[:, :-drop]
    SEED = 0
    torch.manual_seed(SEED)
    idx = torch.randperm(neg.shape[1])
    neg = neg.T
    negs = neg[idx].T.reshape(pos.shape[0], group, -1).contiguous()
    scores = []
    for i in range(group):
        full_sim = torch.cat([pos, negs[:, i, :]], dim=-1) / t
        full_sim = full_sim.softmax(dim=-1)
        pos_score = full_sim[:, :pos.shape[1]].sum(dim=-1)
        scores.append(pos_score.unsqueeze(-1))
    scores = torch.cat(scores, dim=-1)
    return scores.mean(dim=-1)


def neglabel_selection_reference(text_features_neg, text_features_pos, noun_length, adj_length,
                                 neg_topk=0.15, pencentile=0.95, emb_batchsize=1000):
    """Returns the selected rows of the candidates (the authors keep embeddings; rows identify them)."""
    text_features_neg = text_features_neg / text_features_neg.norm(dim=-1, keepdim=True)
    text_features_pos = text_features_pos / text_features_pos.norm(dim=-1, keepdim=True)
    neg_sim = []
    for i in range(0, noun_length + adj_length, emb_batchsize):
        tmp = text_features_neg[i: i + emb_batchsize] @ text_features_pos.T
        tmp = tmp.to(torch.float32)
        sim = torch.quantile(tmp, q=pencentile, dim=-1)
        neg_sim.append(sim)
    neg_sim = torch.cat(neg_sim, dim=0)
    neg_sim_noun = neg_sim[:noun_length]
    neg_sim_adj = neg_sim[noun_length:]
    ind_noun = torch.argsort(neg_sim_noun)
    ind_adj = torch.argsort(neg_sim_adj)
    rows = torch.arange(noun_length + adj_length)
    return torch.cat([rows[:noun_length][ind_noun[0:int(len(ind_noun) * neg_topk)]],
                      rows[noun_length:][ind_adj[0:int(len(ind_adj) * neg_topk)]]], dim=0)


def chils_get_clip_inputs_from_dict(cl_set_dict, ord_class):
    counter = 0
    sub_to_super = {}
    subclasses = []
    for idx, cl in enumerate(ord_class):
        subs = cl_set_dict[cl]
        for sub in subs:
            subclasses.append(sub)
            sub_to_super[counter] = idx
            counter += 1
    return subclasses, sub_to_super


def chils_conf_pred_reference(raw_logits, super_logits, raw2super_map):
    inv_map = {}
    for k, v in raw2super_map.items():
        if inv_map.get(v) is None:
            inv_map[v] = [k]
        else:
            inv_map[v].append(k)
    for k, v in inv_map.items():
        inv_map[k] = sorted(v)
    raw_probs = F.softmax(raw_logits, dim=1)
    super_probs = F.softmax(super_logits, dim=1)
    for out_cl, in_cls in inv_map.items():
        raw_probs[:, in_cls] = raw_probs[:, in_cls] * super_probs[:, out_cl].reshape(-1, 1)
    return raw_probs


def chils_cleaned_sets_reference(out_d):
    new_d = out_d.copy()
    for k, v in out_d.items():
        new_v = []
        if k not in v:
            new_v.append(k)
        for sub in v:
            if k.lower() not in sub.lower():
                new_v.append(sub + f" {k}")
            else:
                new_v.append(sub)
        new_d[k] = new_v
    return new_d


def stable_cumsum(arr, rtol=1e-05, atol=1e-08):
    out = np.cumsum(arr, dtype=np.float64)
    expected = np.sum(arr, dtype=np.float64)
    if not np.allclose(out[-1], expected, rtol=rtol, atol=atol):
        raise RuntimeError("cumsum was found to be unstable")
    return out


def fpr_and_fdr_at_recall_reference(y_true, y_score, recall_level, pos_label=1.):
    """Theirs, returning the threshold at the cutoff as well (read from the same arrays)."""
    y_true = (y_true == pos_label)
    desc_score_indices = np.argsort(y_score, kind="mergesort")[::-1]
    y_score = y_score[desc_score_indices]
    y_true = y_true[desc_score_indices]
    distinct_value_indices = np.where(np.diff(y_score))[0]
    threshold_idxs = np.r_[distinct_value_indices, y_true.size - 1]
    tps = stable_cumsum(y_true)[threshold_idxs]
    fps = 1 + threshold_idxs - tps
    thresholds = y_score[threshold_idxs]
    recall = tps / tps[-1]
    last_ind = tps.searchsorted(tps[-1])
    sl = slice(last_ind, None, -1)
    recall, fps, tps, thresholds = np.r_[recall[sl], 1], np.r_[fps[sl], 0], np.r_[tps[sl], 0], thresholds[sl]
    cutoff = np.argmin(np.abs(recall - recall_level))
    return fps[cutoff] / (np.sum(np.logical_not(y_true))), thresholds[cutoff], recall[cutoff]


def roc_auc_reference(labels, examples):
    """scikit-learn's roc_auc_score (not installed here) is the Mann-Whitney statistic, ties 1/2."""
    pos, neg = examples[labels == 1], examples[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return (greater + 0.5 * ties) / (len(pos) * len(neg))


def get_measures_reference(in_examples, out_examples):
    in_examples, out_examples = in_examples.reshape((-1, 1)), out_examples.reshape((-1, 1))
    labels = np.zeros(in_examples.shape[0] + out_examples.shape[0], dtype=np.int32)
    labels[:in_examples.shape[0]] += 1
    examples = np.squeeze(np.vstack((in_examples, out_examples)))
    auroc = roc_auc_reference(labels, examples)
    fpr, threshold, recall = fpr_and_fdr_at_recall_reference(labels, examples, 0.95)
    return auroc, fpr, threshold, recall


# --------------------------------------------------------------------------- fixed tensors


def unit(rows: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, width, generator=generator), dim=1)


@pytest.fixture(scope="module")
def text_and_images():
    """20 in-set labels, 1337 candidates (1000 'nouns' then 337 'adjectives'), 48 images: 24 nearer
    an in-set label, 24 nearer a candidate, all in 64 dimensions."""
    inset = unit(20, 64, seed=1)
    candidates = unit(1337, 64, seed=2)
    noise = unit(48, 64, seed=3)
    images = torch.cat([F.normalize(inset[torch.arange(24) % 20] + 2.0 * noise[:24], dim=1),
                        F.normalize(candidates[torch.arange(24) * 50] + 2.0 * noise[24:], dim=1)])
    return inset, candidates, images


def test_defaults_are_the_authors():
    assert (MCM_TEMPERATURE, NEGLABEL_LOGIT_SCALE, NEGLABEL_GROUPS) == (1.0, 100.0, 100)
    assert (NEGLABEL_QUANTILE, NEGLABEL_KEEP_SHARE, IN_SET_TPR) == (0.95, 0.15, 0.95)


def test_mcm_matches_the_reference(text_and_images):
    inset, _, images = text_and_images
    ours = mcm_score(images @ inset.T)
    assert np.abs(ours.numpy() - mcm_reference(images, inset)).max() <= TOLERANCE
    theirs_t = mcm_reference(images, inset, T=0.5)
    assert np.abs(mcm_score(images @ inset.T, temperature=0.5).numpy() - theirs_t).max() <= TOLERANCE


def test_neglabel_selection_matches_the_reference(text_and_images):
    inset, candidates, _ = text_and_images
    parts = ["noun"] * 1000 + ["adjective"] * 337
    ours = select_negatives(candidates, inset, parts_of_speech=parts)
    theirs = neglabel_selection_reference(candidates, inset, 1000, 337)
    assert torch.equal(ours, theirs)
    assert len(ours) == int(1000 * 0.15) + int(337 * 0.15)
    assert set(ours[:150].tolist()) <= set(range(1000)), "nouns come first, as the grouping expects"


def test_neglabel_grouped_score_matches_the_reference(text_and_images):
    inset, candidates, images = text_and_images
    parts = ["noun"] * 1000 + ["adjective"] * 337
    negatives = candidates[select_negatives(candidates, inset, parts_of_speech=parts)]  # 150 + 50
    for groups in (100, 7, 1):
        for dtype, tolerance in ((torch.float64, TOLERANCE), (torch.float32, 1e-5)):  # theirs runs in fp32
            inset_cos, negative_cos = (images @ inset.T).to(dtype), (images @ negatives.T).to(dtype)
            ours = neglabel_score(inset_cos, negative_cos, groups=groups)
            theirs = neglabel_grouping_reference(100.0 * inset_cos, 100.0 * negative_cos, groups)
            assert (ours - theirs).abs().max().item() <= tolerance, (groups, dtype)
    default = neglabel_score(images @ inset.T, images @ negatives.T)
    assert default[24:].max() < 0.9999, "the out-of-set images do not saturate the score"
    assert default[:24].mean() > default[24:].mean() + 0.05, "images near in-set labels score as more in-set"


def test_neglabel_groups_drop_the_last_negatives_and_are_seeded(text_and_images):
    inset, candidates, images = text_and_images
    negatives = images @ candidates[:205].T  # 205 = 2 x 100 + 5: the last five are dropped
    score = neglabel_score(images @ inset.T, negatives)
    changed = negatives.clone()
    changed[:, -5:] = 1.0
    assert torch.equal(neglabel_score(images @ inset.T, changed), score)
    changed[:, 0] = 1.0
    assert not torch.equal(neglabel_score(images @ inset.T, changed), score)
    assert torch.equal(neglabel_group_order(205), neglabel_group_order(205))
    assert not torch.equal(neglabel_group_order(205, seed=1), neglabel_group_order(205))
    assert sorted(neglabel_group_order(205).reshape(-1).tolist()) == list(range(200))


def test_chils_conf_pred_matches_the_reference():
    sub2super = {"cat": ["tabby cat", "siamese cat", "cat"], "dog": ["beagle", "poodle"], "car": ["sedan"],
                 "ship": ["tanker", "ferry", "yacht", "ship"]}
    order = ["dog", "cat", "ship", "car"]
    subclasses, sub_to_super = chils_get_clip_inputs_from_dict(sub2super, order)
    generator = torch.Generator().manual_seed(4)
    raw_logits = 100.0 * torch.randn(32, len(subclasses), generator=generator) * 0.05
    super_logits = 100.0 * torch.randn(32, len(order), generator=generator) * 0.05
    parents = [sub_to_super[i] for i in range(len(subclasses))]

    theirs = chils_conf_pred_reference(raw_logits.clone(), super_logits, sub_to_super)
    ours = chils_reweighted_probabilities(raw_logits, super_logits, parents)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    parent, sub = chils_predict(raw_logits, super_logits, parents)
    conf1_preds = torch.argmax(theirs, dim=1).numpy()
    assert sub.tolist() == conf1_preds.tolist()
    assert parent.tolist() == [sub_to_super[x] for x in conf1_preds]


def test_chils_label_sets_match_the_reference():
    generated = {"cat": ["tabby", "Siamese cat", "Maine Coon"], "ship": ["tanker", "ship", "cruise ship"]}
    cleaned = chils_cleaned_sets_reference(generated)
    assert {k: chils_label_set(k, v) for k, v in generated.items()} == cleaned
    assert chils_label_set("cat", ["tabby", "siamese"], qualify=False) == ["tabby", "siamese", "cat"]
    assert chils_label_set("ship", ["ship", "tanker"], qualify=False) == ["ship", "tanker"]


@pytest.mark.parametrize("seed, rounding", [(5, None), (6, 1), (7, 2)])
def test_measures_match_get_measures(seed, rounding):
    rng = np.random.default_rng(seed)
    in_scores, out_scores = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 450)
    if rounding is not None:  # many tied scores
        in_scores, out_scores = np.round(in_scores, rounding), np.round(out_scores, rounding)
    auroc, fpr, threshold, recall = get_measures_reference(in_scores, out_scores)
    ours = open_set_measures(in_scores, out_scores)
    assert abs(ours.auroc - auroc) <= TOLERANCE
    assert abs(ours.fpr_at_tpr - fpr) <= TOLERANCE
    assert ours.threshold == threshold and abs(ours.tpr - recall) <= TOLERANCE
    # the threshold is an operating point a user can reproduce from the scores
    assert ours.fpr_at_tpr == pytest.approx(np.mean(out_scores >= ours.threshold))
    assert ours.tpr == pytest.approx(np.mean(in_scores >= ours.threshold))


def test_auroc_agrees_with_scikit_learn_where_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(8)
    in_scores, out_scores = np.round(rng.normal(1, 1, 200), 1), np.round(rng.normal(0, 1, 300), 1)
    labels = np.r_[np.ones(200), np.zeros(300)]
    expected = metrics.roc_auc_score(labels, np.r_[in_scores, out_scores])
    assert abs(open_set_measures(in_scores, out_scores).auroc - expected) <= TOLERANCE


def test_calibrated_threshold_keeps_95_percent_of_in_set_images():
    rng = np.random.default_rng(9)
    for n in (1, 19, 20, 101, 1000):
        scores = rng.uniform(0, 1, n)
        threshold = threshold_at_tpr(scores)
        assert np.mean(scores >= threshold) >= 0.95
        assert np.mean(scores >= np.nextafter(threshold, 2.0)) < 0.95, "the highest such threshold"
    decisions = open_set_decisions(torch.tensor([0.2, 0.5, 0.9]), threshold=0.5)
    assert [d.unknown for d in decisions] == [True, False, False]
    assert decisions[0].to_dict() == {"ood_score": pytest.approx(0.2), "unknown": True}


def test_open_set_detects_out_of_set_images_end_to_end(text_and_images):
    """Calibrated on in-set images, NegLabel flags most images near negative labels as unknown."""
    inset, candidates, images = text_and_images
    negatives = candidates[select_negatives(candidates, inset, parts_of_speech=["noun"] * 1000 + ["adjective"] * 337)]
    scores = neglabel_score(images @ inset.T, images @ negatives.T)
    threshold = threshold_at_tpr(scores[:24])
    decisions = open_set_decisions(scores, threshold)
    assert sum(d.unknown for d in decisions[:24]) <= 1
    assert sum(d.unknown for d in decisions[24:]) >= 12
    assert open_set_measures(scores[:24], scores[24:]).auroc > 0.8


@pytest.mark.parametrize("call, message", [
    (lambda: check_threshold(1.5), "between 0 and 1"),
    (lambda: check_threshold(float("nan")), "between 0 and 1"),
    (lambda: open_set_decisions([0.3], threshold=-0.1), "between 0 and 1"),
    (lambda: threshold_at_tpr([], 0.95), "no in-set scores"),
    (lambda: threshold_at_tpr([0.4, 0.5], 1.2), "(0, 1]"),
    (lambda: open_set_measures([0.9], [float("nan")]), "NaN"),
    (lambda: neglabel_score(torch.rand(2, 3), torch.rand(2, 0)), "there are none"),
    (lambda: neglabel_score(torch.rand(2, 3), torch.rand(2, 50)), "50 negatives for 100 groups"),
    (lambda: neglabel_score(torch.rand(2, 3), torch.rand(3, 200)), "different batches"),
    (lambda: mcm_score(torch.rand(3)), "(batch, labels) matrix"),
    (lambda: mcm_score(torch.rand(2, 3), temperature=0), "positive"),
    (lambda: chils_predict(torch.rand(2, 3), torch.rand(2, 2), [0, 1]), "2 parent indices for 3 subclasses"),
    (lambda: chils_predict(torch.rand(2, 3), torch.rand(2, 2), [0, 1, 2]), "outside the 2 classes"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(OpenSetError) as raised:
        call()
    assert isinstance(raised.value, InputError) and raised.value.code == "invalid_open_set"
    assert message in raised.value.message and "\n" not in raised.value.message
