"""Open-set scoring in the scoring head: the score is the method's on the head's own cosines, the
verdict follows the threshold, predictions are untouched, and the threshold comes from the right place."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gloss_gen.classify.open_set import (
    DEFAULT_THRESHOLDS,
    NEGLABEL_DEFAULT_THRESHOLD,
    OpenSetError,
    OpenSetScorer,
    OpenSetThresholdRequired,
    check_open_set_mode,
    mcm_score,
    neglabel_score,
    resolve_threshold,
)
from gloss_gen.classify.scoring import ScoringHead
from gloss_gen.data.classifier import Classifier
from gloss_gen.data.classsets import ClassSet, ClassSpec


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


@pytest.fixture()
def head() -> ScoringHead:
    generator = torch.Generator().manual_seed(3)
    prototypes = unit(torch.randn(5, 16, generator=generator)).numpy()
    classes = [ClassSpec(id=f"c{i}", name=f"class {i}") for i in range(5)]
    classifier = Classifier(
        key="k", model_id="m", class_set=ClassSet(name="five", classes=classes), descriptions_id="d",
        method="classname", prompt_style="templates", template_set="simple", prototypes=prototypes,
        evidence=prototypes, offsets=np.arange(6), evidence_texts=[c.name for c in classes], logit_scale=100.0,
    )
    return ScoringHead(classifier)


@pytest.fixture()
def images() -> torch.Tensor:
    return unit(torch.randn(7, 16, generator=torch.Generator().manual_seed(4)))


def test_mcm_score_is_computed_from_the_heads_cosines(head, images):
    scorer = OpenSetScorer("mcm", threshold=0.25, threshold_source="request")
    scored = head.score(images, top_k=3, open_set=scorer)
    expected = mcm_score(images @ head.prototypes.T)
    assert [s.open_set.ood_score for s in scored] == pytest.approx(expected.tolist(), abs=1e-7)
    assert [s.open_set.unknown for s in scored] == [bool(v < 0.25) for v in expected.tolist()]
    # the predictions are those the head gives without open-set scoring
    plain = head.predict(images, top_k=3)
    assert [[p.class_id for p in s.predictions] for s in scored] == [[p.class_id for p in row] for row in plain]
    assert [s.open_set for s in head.score(images, top_k=3)] == [None] * len(images)


def test_neglabel_score_uses_the_negatives_and_groups_no_more_than_there_are(head, images):
    negatives = unit(torch.randn(40, 16, generator=torch.Generator().manual_seed(5)))
    scorer = OpenSetScorer("neglabel", threshold=NEGLABEL_DEFAULT_THRESHOLD, negatives=negatives)
    assert scorer.groups == 40  # fewer negatives than NegLabel's 100 groups: one negative a group
    scores = head.open_set_scores(images, scorer)
    expected = neglabel_score(images @ head.prototypes.T, images @ negatives.T, groups=40)
    assert scores.tolist() == pytest.approx(expected.tolist(), abs=1e-7)
    decisions = head.score(images, open_set=scorer)
    assert [d.open_set.unknown for d in decisions] == [bool(v < 0.5) for v in expected.tolist()]
    # 250 negatives: NegLabel's 100 groups of 2, the last 50 dropped, as the reference score does
    more = unit(torch.randn(250, 16, generator=torch.Generator().manual_seed(8)))
    grouped = OpenSetScorer("neglabel", negatives=more).with_threshold(0.5, "default")
    expected = neglabel_score(images @ head.prototypes.T, images @ more.T)
    assert head.open_set_scores(images, grouped).tolist() == pytest.approx(expected.tolist(), abs=1e-7)


def test_an_image_like_its_class_set_scores_above_one_like_the_negatives(head):
    generator = torch.Generator().manual_seed(6)
    elsewhere = unit(torch.randn(1, 16, generator=generator))  # what the negatives are about
    negatives = unit(elsewhere + 0.3 * torch.randn(200, 16, generator=generator))
    scorer = OpenSetScorer("neglabel", threshold=0.5, negatives=negatives)
    in_set = unit(head.prototypes[:1] + 0.05 * torch.randn(1, 16, generator=generator))
    like_negative = unit(elsewhere + 0.05 * torch.randn(1, 16, generator=generator))
    inside, outside = (head.score(x, open_set=scorer)[0].open_set for x in (in_set, like_negative))
    assert inside.ood_score > 0.9 and not inside.unknown
    assert outside.ood_score < 0.1 and outside.unknown


def test_threshold_comes_from_request_then_calibration_then_setting_then_default():
    assert resolve_threshold("neglabel", 0.3, 0.4, 0.6) == (0.3, "request")
    assert resolve_threshold("neglabel", None, 0.4, 0.6) == (0.4, "calibration")
    assert resolve_threshold("neglabel", None, None, 0.6) == (0.6, "setting")
    assert resolve_threshold("neglabel") == (0.5, "default")
    assert DEFAULT_THRESHOLDS["mcm"] is None
    with pytest.raises(OpenSetThresholdRequired, match="mcm has no default threshold"):
        resolve_threshold("mcm", where=" for class set x")
    assert resolve_threshold("mcm", None, 0.2) == (0.2, "calibration")


@pytest.mark.parametrize("call, message", [
    (lambda: check_open_set_mode("maybe"), "unknown open_set mode 'maybe'; choose from off, mcm, neglabel"),
    (lambda: OpenSetScorer("off"), "needs a method"),
    (lambda: OpenSetScorer("neglabel"), "NegLabel needs negative labels"),
    (lambda: OpenSetScorer("mcm", threshold=1.5), "between 0 and 1"),
    (lambda: OpenSetScorer("mcm").decisions(torch.zeros(2)), "no threshold"),
])
def test_bad_open_set_input_is_one_clear_error(call, message):
    with pytest.raises(OpenSetError, match=message.replace("(", r"\(")):
        call()


def test_modes_are_read_leniently_and_off_by_default():
    assert check_open_set_mode(None) == "off"
    assert check_open_set_mode(" NegLabel ") == "neglabel"
    scorer = OpenSetScorer("mcm", info={"calibration": {"examples": 3}}).with_threshold(0.2, "calibration")
    assert scorer.info() == {"method": "mcm", "threshold": 0.2, "threshold_source": "calibration",
                             "calibration": {"examples": 3}}
