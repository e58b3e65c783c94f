import numpy as np
import pytest

from gloss_gen.data.classifier import build_classifier
from gloss_gen.data.classsets import load_class_set
from gloss_gen.data.descriptions import describe_wordnet
from gloss_gen.data.job_records import JobRecord
from gloss_gen.data.store import RedisBackend, Store, StoreError


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
    store.put_job(JobRecord(id="j1", kind="class-set", class_set="c", method="wordnet", total=3,
                            state="running", done=1))
    assert store.get_job("j1").done == 1 and store.get_job("missing") is None
    array = np.arange(12, dtype=np.float16).reshape(3, 4)
    store.put_array("image-embeddings", "k", array, {"files": ["a", "b", "c"]})
    back, meta = store.get_array("image-embeddings", "k")
    assert back.dtype == np.float16 and np.array_equal(back, array) and meta["files"] == ["a", "b", "c"]
    key = store._k("lock", "x")
    assert store.backend.set_if_absent(key, b"1") and not store.backend.set_if_absent(key, b"2")
    assert store.backend.get(key) == b"1"


def test_keys_are_namespaced_and_versioned(redis_store, redis_url):
    import redis

    redis_store.put_job(JobRecord(id="j", kind="class-set", class_set="c", method="wordnet", total=1,
                                  state="done"))
    keys = [k.decode() for k in redis.Redis.from_url(redis_url).scan_iter(match=f"{redis_store.ns}*")]
    assert keys == [f"{redis_store.ns}:job:j"] and redis_store.ns.endswith(":v1")


def test_unreachable_redis_is_a_clear_store_error():
    store = Store(RedisBackend("redis://:secret@127.0.0.1:1/0"))
    with pytest.raises(StoreError) as err:
        store.get_job("x")
    assert "127.0.0.1:1" in str(err.value) and "secret" not in str(err.value)


# --------------------------------------------------------------------------- job records


def _job(total: int = 1000) -> JobRecord:
    return JobRecord(id="job", kind="describe", class_set="c", method="wordnet", total=total)


def _record(class_id: str, error: str | None = None):
    from gloss_gen.data.descriptions import DescriptionRecord

    return DescriptionRecord(class_id=class_id, name=class_id.replace("-", " "), synset=None, method="wordnet",
                             descriptions=[] if error else [f"a {class_id}"], error=error)


def test_update_job_from_many_threads_loses_nothing(store):
    from concurrent.futures import ThreadPoolExecutor

    store.put_job(_job())
    failing = {7, 19}

    def work(worker: int) -> None:
        for i in range(25):
            record = _record(f"w{worker}-{i}", "HTTP 500" if i in failing else None)
            assert store.update_job("job", lambda job, r=record: job.count(r)) is not None

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    job = store.get_job("job")
    assert (job.state, job.done, job.failed) == ("running", 200, 16)
    assert sorted(e["class_id"] for e in job.errors) == sorted(f"w{w}-{i}" for w in range(8) for i in failing)
    assert store.update_job("missing", lambda job: job.mark("done")) is None


_PROCESS_WORKER = """
import sys
from gloss_gen.data.store import DirectoryBackend, RedisBackend, Store
kind, where, namespace, worker = sys.argv[1:5]
backend = RedisBackend(where) if kind == "redis" else DirectoryBackend(where)
store = Store(backend, namespace)
for i in range(40):
    store.update_job("job", lambda job: setattr(job, "done", job.done + 1)
                     or job.errors.append({"class_id": f"p{worker}-{i}"}))
"""


@pytest.mark.parametrize("kind", ["redis", "directory"])
def test_update_job_from_several_processes_loses_nothing(kind, request, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    store = request.getfixturevalue("redis_store" if kind == "redis" else "dir_store")
    where = store.backend.url if kind == "redis" else str(store.backend.root)
    store.put_job(_job())
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", _PROCESS_WORKER, kind, where, store.ns, str(w)], env=env)
             for w in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    job = store.get_job("job")
    assert job.done == 120
    assert sorted(e["class_id"] for e in job.errors) == sorted(f"p{w}-{i}" for w in range(3) for i in range(40))


def test_update_job_records_a_class_result_exactly_once(store):
    from concurrent.futures import ThreadPoolExecutor

    store.create_job(_job(total=3), spec={"method": "wordnet"}, results=[_record("seeded")])
    assert store.get_job_spec("job") == {"method": "wordnet"} and store.job_result_count("job") == 1

    def claim(attempt: int):
        record = _record("cat")
        record.descriptions = [f"attempt {attempt}"]
        return attempt, store.update_job("job", lambda job: job.count(record), record)

    with ThreadPoolExecutor(8) as pool:
        written = [(attempt, job) for attempt, job in pool.map(claim, range(16)) if job is not None]
    assert len(written) == 1 and written[0][1].done == 1
    assert store.get_job("job").done == 1
    assert store.has_job_result("job", "cat") and not store.has_job_result("job", "dog")
    results = {r.class_id: r for r in store.job_results("job")}
    assert sorted(results) == ["cat", "seeded"]
    assert results["cat"].descriptions == [f"attempt {written[0][0]}"]  # the one counted is the one kept
    assert store.update_job("job", lambda job: job.count(_record("cat"))) is not None  # no result: counts
    assert store.get_job("job").done == 2
