"""NegLabel's negatives embedded once per classifier and kept in a real Redis under a content key."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import redis

from gloss_gen.classify.negative_embeddings import (
    NEGATIVES_KIND,
    NegativeLabels,
    build_negatives,
    get_negatives,
    get_or_build_negatives,
    negatives_key,
    spread_sample,
)
from gloss_gen.core.errors import CorruptDataError
from gloss_gen.data.classifier import build_classifier
from gloss_gen.data.classsets import builtin_class_set
from gloss_gen.data.methods import describe_offline
from gloss_gen.data.negative_labels import ADJECTIVE_PROMPT, NOUN_PROMPT, inset_exclusions

CANDIDATES = 600  # of about 57,000: a few seconds on vgloss-tiny


@pytest.fixture(scope="module")
def cifar_classifier(tiny_model):
    descriptions, _ = describe_offline(builtin_class_set("cifar10"), "classname")
    return build_classifier(tiny_model, descriptions)


def test_negatives_are_built_once_and_then_read_from_redis(tiny_model, cifar_classifier, redis_store, redis_url,
                                                           redis_namespace):
    built, from_store = get_or_build_negatives(redis_store, tiny_model, cifar_classifier, max_candidates=CANDIDATES)
    assert not from_store
    assert built.key == negatives_key(cifar_classifier, CANDIDATES)
    # NegLabel keeps 15 % of each part of speech, nouns first
    assert built.candidates == CANDIDATES and 0.14 * CANDIDATES <= len(built) <= 0.15 * CANDIDATES
    first_adjective = built.parts_of_speech.index("adjective")
    assert set(built.parts_of_speech[:first_adjective]) == {"noun"}
    assert set(built.parts_of_speech[first_adjective:]) == {"adjective"}

    raw = redis.Redis.from_url(redis_url).get(f"{redis_namespace}:{NEGATIVES_KIND}:{built.key}")
    (length,) = struct.unpack("<Q", raw[:8])  # safetensors: a JSON header, then raw float32 rows
    header = json.loads(raw[8 : 8 + length])
    assert header["embeddings"]["dtype"] == "F32" and header["embeddings"]["shape"] == [len(built), 64]
    assert json.loads(header["__metadata__"]["vgloss-negatives"])["words"] == built.words

    again, from_store = get_or_build_negatives(redis_store, tiny_model, cifar_classifier, max_candidates=CANDIDATES)
    assert from_store and again.words == built.words
    np.testing.assert_array_equal(again.embeddings, built.embeddings)


def test_negatives_are_the_models_embeddings_of_their_prompts_and_never_in_set_words(tiny_model, cifar_classifier):
    record = build_negatives(tiny_model, cifar_classifier, max_candidates=CANDIDATES)
    prompts = [(NOUN_PROMPT if pos == "noun" else ADJECTIVE_PROMPT).format(word)
               for word, pos in zip(record.words[:5] + record.words[-5:],
                                    record.parts_of_speech[:5] + record.parts_of_speech[-5:])]
    expected = tiny_model.encode_text(prompts)
    np.testing.assert_allclose(np.concatenate([record.embeddings[:5], record.embeddings[-5:]]), expected, atol=1e-6)
    _, excluded = inset_exclusions(cifar_classifier.class_set)
    assert not set(record.words) & excluded
    # least like the class set first, within each part of speech
    nouns = record.embeddings[: record.parts_of_speech.index("adjective")]
    quantiles = np.quantile(nouns @ cifar_classifier.prototypes.T, 0.95, axis=1)
    assert np.all(np.diff(quantiles) >= -1e-6)


def test_the_key_follows_the_classifier_and_the_candidate_cap(tiny_model, cifar_classifier):
    other, _ = describe_offline(builtin_class_set("stl10"), "classname")
    stl = build_classifier(tiny_model, other)
    keys = {negatives_key(cifar_classifier, 0), negatives_key(cifar_classifier, CANDIDATES), negatives_key(stl, 0)}
    assert len(keys) == 3
    assert negatives_key(cifar_classifier, CANDIDATES) == negatives_key(cifar_classifier, CANDIDATES)


def test_the_build_takes_turns_between_chunks(tiny_model, cifar_classifier):
    calls = []
    build_negatives(tiny_model, cifar_classifier, max_candidates=CANDIDATES, batch_size=128,
                    between_batches=lambda done, total: calls.append((done, total)))
    assert calls == [(128 * i, CANDIDATES) for i in range(1, 5)]


def test_damaged_negatives_are_a_corrupt_data_error(redis_store):
    redis_store.put_bytes(NEGATIVES_KIND, "bad", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(CorruptDataError, match="not vgloss negative labels"):
        get_negatives(redis_store, "bad")
    with pytest.raises(CorruptDataError):
        NegativeLabels.from_bytes(b"pickle? no")


def test_a_spread_sample_keeps_order_ends_and_shares():
    items = list(range(1000))
    picked = spread_sample(items, 10)
    assert picked[0] == 0 and picked[-1] == 999 and picked == sorted(picked) and len(picked) == 10
    assert spread_sample(items, 0) == items and spread_sample(items, 5000) == items
