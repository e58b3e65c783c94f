"""Open-set thresholds calibrated on a class set's labelled examples, and the one place a caller
turns ``open_set=mcm|neglabel`` into a scorer with its threshold.

Calibration scores every readable stored example of the class set (the images ``POST
/v1/class-sets/{name}/examples`` keeps, :mod:`gloss_gen.adapt.uploads`) and puts the threshold where
95 % of them stay in-set (:func:`gloss_gen.classify.open_set.threshold_at_tpr`, the operating point
MCM's and NegLabel's FPR95 is read at). The embeddings come from eval's cache (kind
``image-embeddings``), so an adapter fit on the same examples and a calibration embed them once.
The result is JSON under ``{ns}:open-set-calibration:{key}``, keyed by (format, model and inference
path, JPEG drafts, classifier, method, negatives, scoring mode, the examples' content, target rate):
new examples, a rebuilt classifier or new negatives make a new key, so a stale threshold is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from gloss_gen.adapt.uploads import example_index, stored_examples
from gloss_gen.classify.image_embeddings import embed_images
from gloss_gen.classify.negative_embeddings import get_or_build_negatives
from gloss_gen.classify.open_set import (
    IN_SET_TPR,
    OpenSetScorer,
    check_open_set_method,
    resolve_threshold,
    threshold_at_tpr,
)
from gloss_gen.classify.scoring import ScoringHead
from gloss_gen.data.descriptions import utc_now

log = logging.getLogger(__name__)

CALIBRATION_KIND = "open-set-calibration"
CALIBRATION_FORMAT = 1


@dataclass
class OpenSetCalibration:
    key: str
    method: str
    classifier_key: str
    class_set: str
    threshold: float
    examples: int  # readable in-set examples scored
    tpr: float  # share of them at or above the threshold
    tpr_target: float = IN_SET_TPR
    created_at: str = field(default_factory=utc_now)

    def info(self) -> dict:
        """What a response says about it: how many examples, at which in-set rate."""
        return {"examples": self.examples, "tpr": self.tpr, "tpr_target": self.tpr_target}

    def to_bytes(self) -> bytes:
        return json.dumps({"format": CALIBRATION_FORMAT, **asdict(self)}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> OpenSetCalibration:
        meta = json.loads(data)
        meta.pop("format", None)
        return cls(**meta)


def examples_hash(store, class_set_name: str) -> str | None:
    """A hash of the class set's stored examples (their images and labels); ``None`` without any."""
    items = example_index(store, class_set_name)
    if not items:
        return None
    digest = hashlib.sha256(b"vgloss-open-set-examples-v1\0")
    for item in items:
        digest.update(f"{item['sha256']}\0{item['class_id']}\n".encode())
    return digest.hexdigest()


def calibration_key(model_tag: str, jpeg_draft: bool, classifier_key: str, method: str, negatives_key: str | None,
                    mode: str, examples: str, tpr: float = IN_SET_TPR) -> str:
    payload = json.dumps([CALIBRATION_FORMAT, model_tag, bool(jpeg_draft), classifier_key, method, negatives_key,
                          mode, examples, tpr])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def stored_calibration(store, models, head: ScoringHead, scorer: OpenSetScorer, limits, *,
                       negatives_key: str | None = None, mode: str = "prototype"):
    """(key, the stored calibration or None): key ``None`` when the class set has no examples."""
    examples = examples_hash(store, head.classifier.class_set.name)
    if examples is None:
        return None, None
    key = calibration_key(models.cache_tag, limits.jpeg_draft, head.classifier.key, scorer.method, negatives_key,
                          mode, examples)
    raw = store.get_bytes(CALIBRATION_KIND, key)
    return key, (OpenSetCalibration.from_bytes(raw) if raw is not None else None)


def calibrate_open_set(store, models, head: ScoringHead, scorer: OpenSetScorer, limits, key: str, *,
                       mode: str = "prototype", workers: int = 1, progress: bool = False) -> OpenSetCalibration | None:
    """Score the class set's stored examples and store the threshold at 95 % in-set; ``None`` when
    none of them is readable or of a class of the set."""
    class_set = head.classifier.class_set
    source = stored_examples(store, class_set)
    embedded = embed_images(source.dataset, models, store, limits, workers=workers, progress=progress)
    readable = np.array([i not in embedded.unreadable for i in range(len(source.dataset))], dtype=bool)
    if not readable.any():
        log.warning("class set %s: no readable example to calibrate open-set scores with", class_set.name)
        return None
    with torch.inference_mode():
        scores = head.open_set_scores(torch.from_numpy(embedded.vectors[readable]), scorer, mode).cpu().numpy()
    threshold = threshold_at_tpr(scores, IN_SET_TPR)
    calibration = OpenSetCalibration(
        key=key, method=scorer.method, classifier_key=head.classifier.key, class_set=class_set.name,
        threshold=threshold, examples=int(readable.sum()), tpr=float(np.mean(scores >= threshold)),
    )
    store.put_bytes(CALIBRATION_KIND, key, calibration.to_bytes())
    log.info("class set %s: %s threshold %.6g calibrated on %d examples", class_set.name, scorer.method, threshold,
             calibration.examples)
    return calibration


def open_set_scorer(store, models, head: ScoringHead, method: str, limits, settings, *,
                    requested: float | None = None, mode: str = "prototype", progress: bool = False) -> OpenSetScorer:
    """The scorer for ``method`` on ``head``, built in this process (``vgloss classify``): NegLabel's
    negatives from the store or embedded now, the calibration from the store or computed now when the
    class set has examples, and the threshold :func:`resolve_threshold` picks (``settings``' threshold
    applies only to its own ``open_set`` method)."""
    method = check_open_set_method(method)
    negatives, info = None, {}
    negatives_key = None
    if method == "neglabel":
        record, _ = get_or_build_negatives(store, models.get(), head.classifier,
                                           max_candidates=settings.neglabel_max_candidates, progress=progress)
        negatives, negatives_key = torch.from_numpy(record.embeddings), record.key
        info = {"negatives": len(record), "negatives_key": record.key}
    scorer = OpenSetScorer(method, negatives=negatives, info=info).to(head.device)
    calibration = None
    if requested is None:
        key, calibration = stored_calibration(store, models, head, scorer, limits, negatives_key=negatives_key,
                                              mode=mode)
        if key is not None and calibration is None:
            calibration = calibrate_open_set(store, models, head, scorer, limits, key, mode=mode, progress=progress)
    if calibration is not None:
        scorer = scorer.with_info(calibration=calibration.info())
    threshold, source = resolve_threshold(
        method, requested, calibration.threshold if calibration is not None else None,
        settings.open_set_threshold if settings.open_set == method else None,
        where=f" for class set {head.classifier.class_set.name}",
    )
    return scorer.with_threshold(threshold, source)
