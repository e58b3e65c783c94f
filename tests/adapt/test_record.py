"""Adapter records in the store: round trip, keys, activation, nothing half-written."""

from __future__ import annotations

import numpy as np
import pytest

from gloss_gen.adapt import AdaptError
from gloss_gen.adapt.adapter import build_adapter
from gloss_gen.adapt.examples import embed_examples, open_examples
from gloss_gen.adapt.tip import TipConfig
from gloss_gen.classify.adapter_records import (
    AdapterRecord,
    get_active_adapter,
    get_adapter,
    put_adapter,
    set_active_adapter,
)


@pytest.fixture()
def fitted(colour_data, colour_set, tiny_source, limits, classname_classifier):
    examples = embed_examples(open_examples(colour_data[0], colour_set), tiny_source, None, limits).take(4)
    classifier = classname_classifier(colour_set)
    return classifier, examples, build_adapter(classifier, examples, TipConfig())


@pytest.mark.parametrize("store_fixture", ["redis_store", "dir_store"])
def test_round_trip_and_activation(store_fixture, request, fitted):
    store = request.getfixturevalue(store_fixture)
    classifier, _, record = fitted
    assert get_active_adapter(store, record.model_id, record.class_set) is None
    put_adapter(store, record)
    loaded = get_adapter(store, record.key)
    assert loaded.header() == record.header()
    assert np.array_equal(loaded.keys, record.keys) and np.array_equal(loaded.labels, record.labels)
    assert get_active_adapter(store, record.model_id, record.class_set, classifier.key).key == record.key
    assert get_active_adapter(store, record.model_id, record.class_set, "another-classifier") is None
    set_active_adapter(store, record.model_id, record.class_set, None)
    assert get_active_adapter(store, record.model_id, record.class_set) is None


def test_bytes_are_safetensors_not_pickle(fitted):
    data = fitted[2].to_bytes()
    assert b"vgloss-adapter" in data[:4096] and not data.startswith(b"\x80")
    assert AdapterRecord.from_bytes(data).key == fitted[2].key


def test_key_depends_on_classifier_examples_and_hyper_parameters(fitted):
    classifier, examples, record = fitted
    assert build_adapter(classifier, examples, TipConfig()).key == record.key
    assert build_adapter(classifier, examples, TipConfig(alpha=1.0, beta=2.0)).key != record.key
    assert build_adapter(classifier, examples.take(2), TipConfig()).key != record.key


def test_a_failed_fit_writes_nothing(fitted, dir_store, colour_set):
    classifier, examples, _ = fitted
    from dataclasses import replace

    other_model = replace(examples, model_id="ViT-B-32/openai")
    with pytest.raises(AdaptError, match="embedded with ViT-B-32/openai"):
        build_adapter(classifier, other_model, TipConfig())
    with pytest.raises(AdaptError, match="unknown adapter method"):
        TipConfig(method="lora")
    assert list(dir_store.backend.keys(dir_store.ns + ":")) == []
