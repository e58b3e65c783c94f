"""Damaged adapter records on a real uvicorn server (issue #24 item 2).

A truncated, garbage or out-of-range adapter record, or an unreadable active-adapter pointer, on
the default class set: the server still becomes ready, classifies zero-shot, and the class set's
detail says why no adapter is applied.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from gloss_gen.classify.adapter_records import (
    ACTIVE_KIND,
    RECORD_KIND,
    AdapterRecord,
    AdapterRecordDamagedError,
    set_active_adapter,
)
from gloss_gen.data.store import DirectoryBackend, Store

KEY = "a" * 24


def _record(classifier, model_id: str) -> AdapterRecord:
    ids = classifier.class_set.ids
    keys = np.random.default_rng(0).normal(size=(len(ids), classifier.prototypes.shape[1])).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    return AdapterRecord(key=KEY, method="tip", classifier_key=classifier.key, model_id=model_id,
                         class_set=classifier.class_set.name, class_ids=list(ids), example_hash="e" * 16,
                         params={"shots": 1}, alpha=1.0, beta=5.5, keys=keys,
                         labels=np.arange(len(ids), dtype=np.int64), names=[f"{i}/0.png" for i in ids])


def _damage(how: str, record: AdapterRecord) -> bytes:
    data = record.to_bytes()
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "garbage":
        return b"\x07" * 64
    if how == "flipped":  # one byte of the keys changed: the checksum catches it
        return data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:]
    if how == "labels_out_of_range":
        record.labels = record.labels + 1000
        return record.to_bytes()
    return data


@pytest.mark.parametrize("how", ["truncated", "garbage", "flipped", "labels_out_of_range", "pointer"])
def test_a_damaged_adapter_is_skipped_and_reported(live_server_factory, tmp_path, jpeg_bytes, how):
    store = Store(DirectoryBackend(tmp_path / "shared-store"), "vgloss")
    first = live_server_factory(store=store)
    registry = first.runtime.registry
    model_id = registry.model.model_id
    record = _record(registry.loaded("cifar10").classifier, model_id)
    first.stop()
    store.put_bytes(RECORD_KIND, KEY, _damage(how, record))
    if how == "pointer":
        store.put_bytes(ACTIVE_KIND, f"{model_id}:cifar10", json.dumps([1, 2]).encode())
    else:
        set_active_adapter(store, model_id, "cifar10", KEY)

    second = live_server_factory(store=store)  # becomes ready (it waited at 503 before)
    with httpx.Client(base_url=second.url, timeout=60) as http:
        classified = http.post("/v1/classify", files={"images": ("a.jpg", jpeg_bytes[0], "image/jpeg")})
        assert classified.status_code == 200, classified.text
        assert classified.json().get("adapter") is None  # zero-shot
        detail = http.get("/v1/class-sets/cifar10")
        assert detail.status_code == 200, detail.text
        assert detail.json()["adapter"]["error"] == "adapter_corrupt"
        assert http.get("/v1/class-sets").status_code == 200


def test_a_sealed_adapter_record_round_trips_and_a_bad_one_is_one_line():
    ids = ["a", "b"]
    record = AdapterRecord(key=KEY, method="tip", classifier_key="c", model_id="m", class_set="s", class_ids=ids,
                           example_hash="e", params={}, alpha=1.0, beta=1.0,
                           keys=np.eye(2, 4, dtype=np.float32), labels=np.array([0, 1]), names=["a/0", "b/0"])
    again = AdapterRecord.from_bytes(record.to_bytes())
    assert again.key == KEY and again.labels.tolist() == [0, 1]
    record.alpha = float("nan")
    with pytest.raises(AdapterRecordDamagedError, match="non-finite"):
        AdapterRecord.from_bytes(record.to_bytes())
    with pytest.raises(AdapterRecordDamagedError) as caught:
        AdapterRecord.from_bytes(b"\x00" * 10)
    assert "\n" not in caught.value.message
