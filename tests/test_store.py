import numpy as np
import pytest

from gloss_gen.classifier import build_classifier
from gloss_gen.classsets import load_class_set
from gloss_gen.descriptions import describe_wordnet
from gloss_gen.store import RedisBackend, Store, StoreError


@pytest.fixture(params=["redis", "directory"])
def store(request):
    return request.getfixturevalue("redis_store" if request.param == "redis" else "dir_store")


def test_classifier_roundtrip_and_activation(store, tiny_model):
    ds = describe_wordnet(load_class_set("cifar10"))
    clf = build_classifier(tiny_model, ds)
    assert store.get_active_classifier(tiny_model.id, "cifar10") is None
    store.put_descriptions(ds)
    store.put_classifier(clf)
    loaded = store.get_active_classifier(tiny_model.id, "cifar10")
    assert loaded.key == clf.key and np.array_equal(loaded.prototypes, clf.prototypes)
    assert store.active_class_sets(tiny_model.id) == {"cifar10": clf.key}
    assert store.active_class_sets("other-model/none") == {}
    assert store.class_set_names() == ["cifar10"]
    assert store.get_class_set("cifar10").ids == ds.class_set.ids
    records = store.get_description_records(ds.id)
    assert [r.descriptions for r in records] == [r.descriptions for r in ds.records]


def test_jobs_arrays_and_set_if_absent(store):
    store.put_job("j1", {"state": "running", "done": 1, "total": 3, "errors": []})
    assert store.get_job("j1")["done"] == 1 and store.get_job("missing") is None
    array = np.arange(12, dtype=np.float16).reshape(3, 4)
    store.put_array("image-embeddings", "k", array, {"files": ["a", "b", "c"]})
    back, meta = store.get_array("image-embeddings", "k")
    assert back.dtype == np.float16 and np.array_equal(back, array) and meta["files"] == ["a", "b", "c"]
    key = store._k("lock", "x")
    assert store.backend.set_if_absent(key, b"1") and not store.backend.set_if_absent(key, b"2")
    assert store.backend.get(key) == b"1"


def test_keys_are_namespaced_and_versioned(redis_store, redis_url):
    import redis

    redis_store.put_job("j", {"state": "done"})
    keys = [k.decode() for k in redis.Redis.from_url(redis_url).scan_iter(match=f"{redis_store.ns}*")]
    assert keys == [f"{redis_store.ns}:job:j"] and redis_store.ns.endswith(":v1")


def test_unreachable_redis_is_a_clear_store_error():
    store = Store(RedisBackend("redis://:secret@127.0.0.1:1/0"))
    with pytest.raises(StoreError) as err:
        store.get_job("x")
    assert "127.0.0.1:1" in str(err.value) and "secret" not in str(err.value)
