"""Accuracy bookkeeping: Wilson intervals against known values, per-class accuracy, confusions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gloss_gen.data.classsets import ClassSet, ClassSpec
from gloss_gen.evaluation.metrics import score_predictions, wilson_interval

Z95 = 1.959963984540054


def test_wilson_interval_matches_published_values():
    # 5 of 10: the textbook example (e.g. statsmodels proportion_confint(5, 10, method="wilson"))
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.236593, abs=1e-6)
    assert high == pytest.approx(0.763407, abs=1e-6)


def test_wilson_interval_at_the_edges_has_its_closed_form():
    # With 0 hits the upper bound is z^2 / (n + z^2); with n hits the lower is n / (n + z^2).
    assert wilson_interval(0, 10) == (0.0, pytest.approx(Z95**2 / (10 + Z95**2)))
    assert wilson_interval(10, 10) == (pytest.approx(10 / (10 + Z95**2)), 1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_narrows_with_more_images_and_contains_the_estimate():
    small = wilson_interval(62, 100)
    large = wilson_interval(31_000, 50_000)
    assert small[0] < 0.62 < small[1] and large[0] < 0.62 < large[1]
    assert (large[1] - large[0]) < (small[1] - small[0]) / 10
    # For large n it approaches the normal interval p +- z sqrt(p(1-p)/n).
    half = Z95 * math.sqrt(0.62 * 0.38 / 50_000)
    assert large == (pytest.approx(0.62 - half, abs=1e-4), pytest.approx(0.62 + half, abs=1e-4))


def test_score_predictions_counts_hits_classes_and_confusions():
    class_set = ClassSet("abc", [ClassSpec("a", "apple"), ClassSpec("b", "bee"), ClassSpec("c", "cat")])
    truth = np.array([0, 0, 0, 1, 1, 2])
    ranked = np.array(
        [
            [0, 1],  # a right
            [1, 0],  # a -> b, right in top-2
            [1, 2],  # a -> b, missed
            [1, 0],  # b right
            [2, 1],  # b -> c, right in top-2
            [2, 0],  # c right
        ]
    )
    scores = score_predictions(ranked, truth, class_set)
    assert (scores.top1.correct, scores.top1.n) == (3, 6)
    assert (scores.topk.correct, scores.k) == (5, 2)
    assert scores.top1.value == 0.5
    by_class = {row["class_id"]: row for row in scores.per_class}
    assert by_class["a"]["n"] == 3 and by_class["a"]["top1"] == pytest.approx(1 / 3)
    assert by_class["a"]["top2"] == pytest.approx(2 / 3)
    assert by_class["c"]["top1"] == 1.0
    assert [(c["true"], c["predicted"], c["count"]) for c in scores.top_confusions] == [
        ("a", "b", 2),
        ("b", "c", 1),
    ]
    assert scores.top_confusions[0]["true_name"] == "apple"


def test_a_class_without_images_has_no_accuracy():
    class_set = ClassSet("ab", [ClassSpec("a", "a"), ClassSpec("b", "b")])
    scores = score_predictions(np.array([[0, 1]]), np.array([0]), class_set)
    assert scores.per_class[1] == {"class_id": "b", "name": "b", "n": 0, "top1": None, "top2": None}
