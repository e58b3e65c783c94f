"""Open-set thresholds calibrated at 95 % in-set on a class set's stored examples (real Redis)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gloss_gen.adapt.open_set_calibration import CALIBRATION_KIND, open_set_scorer, stored_calibration
from gloss_gen.adapt.uploads import add_examples
from gloss_gen.classify.open_set import OpenSetScorer
from gloss_gen.classify.scoring import ScoringHead
from gloss_gen.core.config import Settings
from gloss_gen.data.classifier import build_classifier
from gloss_gen.data.methods import describe_offline
from gloss_gen.imaging import ImageLimits, Preprocessor, load_tensor
from gloss_gen.model.model_source import ModelSource


@pytest.fixture()
def colour_head(tiny_model, colour_set):
    descriptions, _ = describe_offline(colour_set, "classname")
    return ScoringHead(build_classifier(tiny_model, descriptions))


def _upload(store, class_set, folder, limits, names=None):
    uploads = [(path.name, path.read_bytes(), path.parent.name)
               for path in sorted(folder.rglob("*.png")) if names is None or path.parent.name in names]
    add_examples(store, class_set, uploads, limits, max_count=10_000, max_bytes=1 << 30)
    return uploads


def _settings(**values) -> Settings:
    return Settings(_env_file=None, model="vgloss-tiny", pretrained="none", **values)


def test_mcm_is_calibrated_to_keep_95_percent_of_the_examples(tiny_model, colour_head, colour_data, redis_store,
                                                              monkeypatch):
    limits = ImageLimits()
    uploads = _upload(redis_store, colour_head.classifier.class_set, colour_data[0], limits)
    models = ModelSource.of(tiny_model)
    scorer = open_set_scorer(redis_store, models, colour_head, "mcm", limits, _settings())
    assert scorer.threshold_source == "calibration"
    assert scorer.info()["calibration"]["examples"] == len(uploads) == 32

    preprocessor = Preprocessor.from_open_clip(tiny_model.model)
    pixels = torch.stack([load_tensor(data, limits, preprocessor) for _, data, _ in uploads])
    scores = colour_head.open_set_scores(tiny_model.encode_images(pixels), OpenSetScorer("mcm")).numpy()
    kept = np.mean(scores >= scorer.threshold)
    assert kept >= 0.95 and np.mean(scores > scorer.threshold) < 0.95  # the highest such threshold
    assert scorer.info()["calibration"]["tpr"] == pytest.approx(kept)

    # stored: the next scorer reads it and encodes nothing
    key, stored = stored_calibration(redis_store, models, colour_head, OpenSetScorer("mcm"), limits)
    assert stored is not None and stored.threshold == scorer.threshold
    assert redis_store.get_bytes(CALIBRATION_KIND, key) is not None
    monkeypatch.setattr(tiny_model, "encode_images", lambda *a, **k: pytest.fail("encoded images again"))
    assert open_set_scorer(redis_store, models, colour_head, "mcm", limits, _settings()).threshold == scorer.threshold
    # a threshold in the request wins, and the setting applies to its own method only
    asked = open_set_scorer(redis_store, models, colour_head, "mcm", limits, _settings(), requested=0.9)
    assert (asked.threshold, asked.threshold_source) == (0.9, "request")


def test_new_examples_recalibrate_and_none_leave_the_default(tiny_model, colour_head, colour_data, redis_store):
    limits = ImageLimits()
    models = ModelSource.of(tiny_model)
    settings = _settings(open_set="mcm", open_set_threshold=0.3)
    no_examples = open_set_scorer(redis_store, models, colour_head, "mcm", limits, settings)
    assert (no_examples.threshold, no_examples.threshold_source) == (0.3, "setting")

    _upload(redis_store, colour_head.classifier.class_set, colour_data[0], limits, names={"red", "green"})
    key_before, _ = stored_calibration(redis_store, models, colour_head, OpenSetScorer("mcm"), limits)
    first = open_set_scorer(redis_store, models, colour_head, "mcm", limits, settings)
    _upload(redis_store, colour_head.classifier.class_set, colour_data[1], limits)
    key_after, stored = stored_calibration(redis_store, models, colour_head, OpenSetScorer("mcm"), limits)
    assert key_after != key_before and stored is None  # new examples: the old threshold is not read
    second = open_set_scorer(redis_store, models, colour_head, "mcm", limits, settings)
    assert first.info()["calibration"]["examples"] == 16 and second.info()["calibration"]["examples"] == 16 + 80
    assert second.threshold_source == "calibration"
