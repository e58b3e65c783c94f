"""The first minute: verbs never probe, the probe keeps to its budget and skips what cannot win,
its decision lives in the store (shared by replicas, re-measured when damaged), and the path that
serves scores an image the same alone and inside a batch."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from gloss_gen.core.config import Settings
from gloss_gen.data.store import open_store
from gloss_gen.inference import attach_engine, paths, probe, select
from gloss_gen.model.clip_models import load_clip


def _no_measuring(*args, **kwargs):
    raise AssertionError("a probe ran")


def test_a_verb_never_probes_it_serves_the_reference_and_names_what_is_pending(fresh_tiny, engine_settings,
                                                                               only_paths, monkeypatch):
    pytest.importorskip("onnxruntime")
    only_paths("torch/fp32", "onnxruntime/fp32")
    monkeypatch.setattr(select, "probe_tower", _no_measuring)
    started = time.perf_counter()
    engine = attach_engine(fresh_tiny, engine_settings())  # what get_model does for every verb
    assert time.perf_counter() - started < 10
    assert engine.image_path(1) == engine.image_path(8) == engine.text.path == "torch/fp32"
    assert engine.pending == ["onnxruntime/fp32"]
    assert "until a probe has measured onnxruntime/fp32" in engine.describe()["why"]["image"]


def test_auto_does_not_probe_paths_that_cannot_win(fresh_tiny, engine_settings, monkeypatch):
    monkeypatch.setattr(select, "cpu_flags", lambda: {"avx2", "fma"})  # an AVX2-only CPU
    engine = attach_engine(fresh_tiny, engine_settings())
    assert "torch/bf16" not in engine.pending  # no AVX-512-BF16 / AMX: bf16 is slow here
    assert "torch/int8" not in engine.pending and "onnxruntime/int8" not in engine.pending  # not batch-invariant
    kept, skipped = select.worth_probing(list(paths.PATHS.values()), {"avx2"})
    assert "not batch-invariant" in skipped["torch/int8"]
    assert "avx512_bf16" in skipped["torch/bf16"]
    kept, skipped = select.worth_probing([paths.PATHS["torch/bf16"]], {"avx512_bf16"})
    assert [s.name for s in kept] == ["torch/bf16"]


def test_a_named_path_still_runs_when_it_is_not_batch_invariant(fresh_tiny, engine_settings):
    engine = attach_engine(fresh_tiny, engine_settings("torch", "int8"))
    assert engine.image_path(1) == "torch/int8"  # the user named it: it runs, with the gate's figure
    assert "batch drift" in engine.describe()["why"]["image"]


def test_the_probe_stops_at_its_budget(fresh_tiny, engine_settings, only_paths, monkeypatch):
    pytest.importorskip("onnxruntime")
    only_paths("torch/fp32", "onnxruntime/fp32")
    settings = engine_settings()
    settings.probe_budget_s = 0.05
    slow = probe.time_runners

    def slow_timing(runners, inputs, repeats, check=None):
        time.sleep(0.2)  # each tower's timing outlasts the whole budget
        return slow(runners, inputs, repeats, check)

    monkeypatch.setattr(probe, "time_runners", slow_timing)
    started = time.perf_counter()
    engine = attach_engine(fresh_tiny, settings, probe=True)
    assert time.perf_counter() - started < 30
    assert engine.image_path(1) == engine.text.path == "torch/fp32"  # nothing measured: the reference


def test_the_probe_is_cancelled_between_timed_calls(fresh_tiny, engine_settings, only_paths):
    pytest.importorskip("onnxruntime")
    only_paths("torch/fp32", "onnxruntime/fp32")
    cancel = select.threading.Event()
    cancel.set()
    with pytest.raises(probe.ProbeCancelled):
        attach_engine(fresh_tiny, engine_settings(), probe=True, cancel=cancel)


@pytest.fixture()
def redis_store(redis_url):
    settings = Settings(_env_file=None, redis_url=redis_url, redis_namespace=f"vgloss-test-{uuid.uuid4().hex[:8]}")
    store = open_store(settings)
    yield settings, store
    for key in list(store.backend.keys(store.ns)):
        store.backend.delete(key)


def test_the_decision_is_shared_through_redis_and_a_damaged_one_is_remeasured(
        fresh_tiny, engine_settings, only_paths, monkeypatch, redis_store, tmp_path):
    pytest.importorskip("onnxruntime")
    only_paths("torch/fp32", "onnxruntime/fp32")
    settings, store = redis_store
    first = attach_engine(fresh_tiny, engine_settings(max_batch=4), probe=True, store=store)
    assert not first.pending
    # a replica with its own data dir and the same Redis: the decision is read, nothing measured
    replica = engine_settings(max_batch=4)
    replica.data_dir = tmp_path / "replica-data"
    monkeypatch.setattr(select, "probe_tower", _no_measuring)
    second = attach_engine(load_clip("vgloss-tiny", "none"), replica, store=store)
    assert second.describe() == first.describe()
    # a planted or damaged record is not trusted: the verb falls back to the reference, pending
    key = next(k for k in store.backend.keys(store.ns) if ":probe:" in k)
    store.backend.set(key, b'{"format": 2, "timings": {"image": {"torch/int8": {"1": "fast"}}}, "gate": {}}')
    third = attach_engine(load_clip("vgloss-tiny", "none"), replica, store=store)
    assert third.pending == ["onnxruntime/fp32"] and third.image_path(1) == "torch/fp32"


@pytest.mark.parametrize("probed", [False, True], ids=["before-probe", "after-probe"])
def test_an_image_scores_the_same_alone_and_in_a_batch_of_32(probed, tmp_path, sample_photos, monkeypatch):
    """The default path (VGLOSS_BACKEND=auto), before and after the probe picked a path."""
    from gloss_gen.zeroshot import ZeroShotClassifier

    data_dir = tmp_path / "data"
    settings = Settings(_env_file=None, model="vgloss-tiny", pretrained="none", device="cpu", data_dir=data_dir,
                        redis_url=None, backend="auto", precision="auto", default_class_set="cifar10")
    if probed:
        clip = load_clip("vgloss-tiny", "none")
        attach_engine(clip, settings, probe=True)  # caches the decision for the classifier below
    clf = ZeroShotClassifier(class_set="cifar10", method="classname", settings=settings)
    if probed:
        assert not clf.model.engine.pending
    images = [p.read_bytes() for p in sample_photos]
    batch = (images * 32)[:32]
    alone = clf.classify(batch[0], top_k=10)
    together = clf.classify(batch, top_k=10)[0]
    assert [p["class_id"] for p in alone] == [p["class_id"] for p in together]
    np.testing.assert_allclose([p["score"] for p in alone], [p["score"] for p in together], atol=1e-6, rtol=0)
