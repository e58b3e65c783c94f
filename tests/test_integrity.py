"""Stored classifiers are verified on load (gloss_gen/data/integrity.py; red-team issue #9, item 4).

Each kind of corruption is made on real sealed bytes, and must be refused with a code rather
than served: before, several of them loaded and a re-ordered header served wrong labels.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from gloss_gen.core.errors import CorruptDataError
from gloss_gen.data.classifier import build_classifier
from gloss_gen.data.classsets import load_class_set
from gloss_gen.data.descriptions import describe_classname, describe_wordnet
from gloss_gen.data.integrity import CHECKSUM_FIELD


@pytest.fixture(scope="module")
def classifiers(tiny_model):
    cifar = build_classifier(tiny_model, describe_wordnet(load_class_set("cifar10")))
    stl = build_classifier(tiny_model, describe_classname(load_class_set("stl10")))
    return cifar, stl


def _split(data: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def _join(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def _edit_vgloss(data: bytes, edit) -> bytes:
    """Change the classifier's JSON header, keeping the old checksum (an edit on disk)."""
    header, body = _split(data)
    meta = json.loads(header["__metadata__"]["vgloss"])
    edit(meta)
    header["__metadata__"]["vgloss"] = json.dumps(meta)
    return _join(header, body)


def _reorder_classes(meta: dict) -> None:
    classes = meta["class_set"]["classes"]
    classes[0], classes[1] = classes[1], classes[0]


def _rename_label(meta: dict) -> None:
    meta["class_set"]["classes"][0]["name"] = "not what it was"


def _flip_prototype_byte(data: bytes) -> bytes:
    header, body = _split(data)
    start, _ = header["prototypes"]["data_offsets"]
    offset = len(data) - len(body) + start + 3
    return data[:offset] + bytes([data[offset] ^ 0x40]) + data[offset + 1 :]


def _resealed_nan(data: bytes) -> bytes:
    """NaN prototypes with a checksum that matches (written that way): caught by the shape checks."""
    from safetensors.numpy import load, save

    from gloss_gen.data.classifier import read_safetensors_metadata
    from gloss_gen.data.integrity import classifier_digest

    arrays = dict(load(data))
    arrays["prototypes"] = arrays["prototypes"].copy()
    arrays["prototypes"][0, 0] = np.nan
    metadata = read_safetensors_metadata(data)
    metadata[CHECKSUM_FIELD] = classifier_digest(metadata["vgloss"], arrays)
    return save(arrays, metadata=metadata)


def _bad_header_json(data: bytes) -> bytes:
    header, body = _split(data)
    header["__metadata__"]["vgloss"] = header["__metadata__"]["vgloss"][:-5]
    return _join(header, body)


def _no_checksum_reordered(data: bytes) -> bytes:
    header, body = _split(data)
    del header["__metadata__"][CHECKSUM_FIELD]
    meta = json.loads(header["__metadata__"]["vgloss"])
    meta["evidence_texts"] = meta["evidence_texts"][:-1]  # and one evidence text lost
    header["__metadata__"]["vgloss"] = json.dumps(meta)
    return _join(header, body)


CORRUPTIONS = {
    "truncated": lambda data, other: data[: len(data) // 2],
    "empty": lambda data, other: b"",
    "truncated header": lambda data, other: data[:20],
    "bad header length": lambda data, other: struct.pack("<Q", 2**40) + data[8:],
    "header not JSON": lambda data, other: _bad_header_json(data),
    "edited header": lambda data, other: _edit_vgloss(data, _rename_label),
    "re-ordered header": lambda data, other: _edit_vgloss(data, _reorder_classes),
    "format changed": lambda data, other: _edit_vgloss(data, lambda m: m.update(format=99)),
    "flipped array byte": lambda data, other: _flip_prototype_byte(data),
    "another entry's bytes": lambda data, other: other,
    "NaN prototypes": lambda data, other: _resealed_nan(data),
    "old entry with lost evidence": lambda data, other: _no_checksum_reordered(data),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_each_kind_of_corruption_is_refused_with_a_code(kind, classifiers, dir_store):
    cifar, stl = classifiers
    dir_store.put_classifier(cifar)
    dir_store.put_classifier(stl)
    key = dir_store._k("classifier", cifar.key)
    good = dir_store.backend.get(key)
    dir_store.backend.set(key, CORRUPTIONS[kind](good, dir_store.backend.get(dir_store._k("classifier", stl.key))))
    with pytest.raises(CorruptDataError) as err:
        dir_store.get_active_classifier(cifar.model_id, "cifar10")
    assert err.value.code in ("classifier_unreadable", "classifier_corrupt")
    assert "\n" not in err.value.message
    # the other set is untouched
    assert dir_store.get_active_classifier(stl.model_id, "stl10").class_set.ids == stl.class_set.ids


def test_sealed_classifiers_round_trip(classifiers, dir_store):
    cifar, _ = classifiers
    dir_store.put_classifier(cifar)
    back = dir_store.get_classifier(cifar.key)
    assert back.class_set.ids == cifar.class_set.ids and np.array_equal(back.prototypes, cifar.prototypes)


def test_entries_written_before_the_checksum_still_load(classifiers, dir_store):
    cifar, _ = classifiers
    dir_store.backend.set(dir_store._k("classifier", cifar.key), cifar.to_bytes())
    assert dir_store.get_classifier(cifar.key).class_set.ids == cifar.class_set.ids
