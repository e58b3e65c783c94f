"""Accuracy bookkeeping: top-k hits, Wilson score intervals, per-class accuracy, confusions.

The interval is the Wilson score interval (Wilson 1927) for a binomial proportion: with ``k``
hits in ``n`` images, ``p = k / n`` and ``z`` the normal quantile of the confidence level
(1.96 for 95%),

    centre = (p + z^2 / 2n) / (1 + z^2 / n)
    half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

It stays inside [0, 1] and keeps sensible coverage near 0% and 100% and for small ``n``, where
the textbook ``p +- z sqrt(p(1-p)/n)`` interval collapses to a point or leaves [0, 1]. It treats
images as independent draws, so it says how far the accuracy on *this many* images may sit from
the accuracy on the population they were sampled from.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from gloss_gen.data.classsets import ClassSet

CONFIDENCE = 0.95


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval (low, high) for ``successes`` out of ``trials``; (0, 1) when empty."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be within 0..{trials}, not {successes}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    z2_n = z * z / trials
    centre = (p + z2_n / 2) / (1 + z2_n)
    half = z / (1 + z2_n) * math.sqrt(p * (1 - p) / trials + z2_n / (4 * trials))
    # At 0 or n hits the bound is exactly 0 or 1; say so rather than leave round-off behind.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Accuracy:
    correct: int
    n: int
    low: float
    high: float

    @classmethod
    def of(cls, hits: np.ndarray, confidence: float = CONFIDENCE) -> Accuracy:
        correct, n = int(np.count_nonzero(hits)), int(hits.size)
        low, high = wilson_interval(correct, n, confidence)
        return cls(correct, n, low, high)

    @property
    def value(self) -> float | None:
        return self.correct / self.n if self.n else None

    def to_dict(self) -> dict:
        return {"accuracy": self.value, "correct": self.correct, "n": self.n, "ci95": [self.low, self.high]}


@dataclass
class Scores:
    """Accuracy of one method on one set of images."""

    top1: Accuracy
    topk: Accuracy
    k: int
    per_class: list[dict]
    top_confusions: list[dict]


def score_predictions(
    ranked: np.ndarray,
    truth: np.ndarray,
    class_set: ClassSet,
    max_confusions: int = 20,
) -> Scores:
    """Scores from ``ranked`` (N, k) class indices, best first, and ``truth`` (N,) class indices."""
    if ranked.ndim != 2 or ranked.shape[0] != truth.shape[0]:
        raise ValueError("ranked must be (N, k) with one row per true label")
    k = int(ranked.shape[1])
    top1_hits = ranked[:, 0] == truth
    topk_hits = (ranked == truth[:, None]).any(axis=1)

    per_class = []
    counts = np.bincount(truth, minlength=len(class_set))
    top1_per_class = np.bincount(truth, weights=top1_hits, minlength=len(class_set))
    topk_per_class = np.bincount(truth, weights=topk_hits, minlength=len(class_set))
    for index, spec in enumerate(class_set.classes):
        n = int(counts[index])
        per_class.append(
            {
                "class_id": spec.id,
                "name": spec.name,
                "n": n,
                "top1": float(top1_per_class[index] / n) if n else None,
                f"top{k}": float(topk_per_class[index] / n) if n else None,
            }
        )

    wrong = ~top1_hits
    pairs = Counter(zip(truth[wrong].tolist(), ranked[wrong, 0].tolist()))
    ordered = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))[:max_confusions]
    confusions = [
        {
            "true": class_set.classes[true].id,
            "true_name": class_set.classes[true].name,
            "predicted": class_set.classes[predicted].id,
            "predicted_name": class_set.classes[predicted].name,
            "count": count,
        }
        for (true, predicted), count in ordered
    ]
    return Scores(Accuracy.of(top1_hits), Accuracy.of(topk_hits), k, per_class, confusions)
