"""``--engine ray``: a local Ray with 2 CPUs writes the labels ``--engine local`` writes, in the
same Parquet layout, and resumes a folder the local engine started."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gloss_gen.labelling.label_job import run_label_job
from gloss_gen.labelling.label_options import LabelOptions
from gloss_gen.labelling.ray_engine import placement


@pytest.fixture(scope="module")
def local_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        pytest.skip("SKIPPED: Ray Data is not installed (pip install 'vgloss[ray]'); --engine ray is untested")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def read_rows(out: Path) -> dict[str, dict]:
    import pyarrow.dataset as ds

    return {row["path"]: row for row in ds.dataset(out, format="parquet").to_table().to_pylist()}


def test_ray_writes_the_labels_local_writes(local_ray, photo_folder, tmp_path, tiny_model, cifar10_classifier,
                                            label_settings):
    source = [str(photo_folder.root / "bad"), str(photo_folder.root / "nested" / "d5")]

    def label(out: Path, engine: str, shards_before: int = 0):
        options = LabelOptions(shard_size=10, embedding_dtype="float16", progress=False)
        return run_label_job(source, out, model=tiny_model, classifier=cifar10_classifier, settings=label_settings,
                             options=options, engine=engine)

    local = label(tmp_path / "local", "local")
    # Ray resumes what the local engine began: part 0 (and the manifest) come from a local run
    (tmp_path / "ray").mkdir()
    for name in ("_manifest.json", "part-00000.parquet"):
        (tmp_path / "ray" / name).write_bytes((tmp_path / "local" / name).read_bytes())
    on_ray = label(tmp_path / "ray", "ray")
    assert (on_ray.images, on_ray.shards, on_ray.shards_done_before, on_ray.labelled) == (53, 6, 1, 43)
    assert local.errors == {"empty_image": 1, "invalid_image": 2} and on_ray.errors == {}  # the bad ones are in part 0

    assert sorted(p.name for p in (tmp_path / "ray").glob("*.parquet")) == \
        sorted(p.name for p in (tmp_path / "local").glob("*.parquet"))
    local_rows, ray_rows = read_rows(tmp_path / "local"), read_rows(tmp_path / "ray")
    assert local_rows.keys() == ray_rows.keys() and len(ray_rows) == 53
    for path, row in local_rows.items():
        other = ray_rows[path]
        assert (other["class_id"], other["error"]) == (row["class_id"], row["error"]), path
        if row["error"] is None:
            assert other["score"] == pytest.approx(row["score"], abs=1e-6)
            assert [p["class_id"] for p in other["top_k"]] == [p["class_id"] for p in row["top_k"]]
            assert other["embedding"] == pytest.approx(row["embedding"], abs=1e-3)


def test_actors_never_take_every_cpu_slot():
    one_node = placement({"CPU": 2.0}, [{"CPU": 2.0}], shards=100)
    assert (one_node.actors, one_node.num_cpus, one_node.num_gpus) == (1, 1, 0)  # one CPU left to Ray Data
    nodes = placement({"CPU": 48.0}, [{"CPU": 16.0}] * 3, shards=100)
    assert (nodes.actors, nodes.num_cpus, nodes.torch_threads) == (3, 15, 15)
    gpus = placement({"CPU": 32.0, "GPU": 4.0}, [{"CPU": 32.0, "GPU": 4.0}], shards=100)
    assert (gpus.actors, gpus.num_gpus, gpus.num_cpus) == (4, 1, 1)
    assert placement({"CPU": 32.0, "GPU": 4.0}, [{"CPU": 32.0, "GPU": 4.0}], shards=2).actors == 2
