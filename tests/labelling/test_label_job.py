"""The labelling job in-process: resume after a crash, one row per input, the same labels from a
folder, tar shards and path lists, refusal of other settings, output any Parquet reader takes."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from gloss_gen.labelling.label_job import run_label_job
from gloss_gen.labelling.label_options import LabelOptions
from gloss_gen.labelling.shards import LabelOutputError
from gloss_gen.labelling.sources import SourceError, expand_braces, list_sources


def label(source, out, model, classifier, settings, **options):
    on_shard = options.pop("on_shard_written", None)
    return run_label_job(source if isinstance(source, list) else [source], out, model=model, classifier=classifier,
                         settings=settings, options=LabelOptions(progress=False, **options),
                         on_shard_written=on_shard)


def read_rows(out: Path) -> list[dict]:
    import pyarrow.dataset as ds

    return ds.dataset(out, format="parquet").to_table().to_pylist()


def test_a_crash_after_the_first_shard_resumes_to_exactly_one_row_per_file(
        photo_folder, tmp_path, tiny_model, cifar10_classifier, label_settings):
    out = tmp_path / "labels"

    def crash_after_first(shard_id, path):
        raise RuntimeError("killed")  # raised once the first part is in place, as a kill would land

    with pytest.raises(RuntimeError, match="killed"):
        label(photo_folder.root, out, tiny_model, cifar10_classifier, label_settings, shard_size=40,
              on_shard_written=crash_after_first)
    assert sorted(p.name for p in out.glob("part-*.parquet")) == ["part-00000.parquet"]
    first_part = (out / "part-00000.parquet").read_bytes()
    (out / ".part-00001.parquet.123-deadbeef.tmp").write_bytes(b"half a part from a killed run")

    summary = label(photo_folder.root, out, tiny_model, cifar10_classifier, label_settings, shard_size=40)
    assert (summary.images, summary.shards, summary.shards_done_before) == (303, 8, 1)
    assert summary.labelled == 303 - 40 and summary.errors == {}  # bad/ sorts first: all three in part 0
    assert (out / "part-00000.parquet").read_bytes() == first_part  # skipped, not rewritten
    assert not list(out.glob(".*.tmp"))
    rows = read_rows(out)
    assert sorted(row["path"] for row in rows) == photo_folder.images  # each once, nothing else
    errors = {row["path"]: row["error"]["code"] for row in rows if row["error"] is not None}
    assert errors == photo_folder.bad
    good = [row for row in rows if row["error"] is None]
    assert all(row["class_id"] in cifar10_classifier.class_set.ids and 0 < row["score"] <= 1 for row in good)
    assert all(len(row["top_k"]) == 5 and row["top_k"][0]["class_id"] == row["class_id"] for row in good)
    assert all(row["class_id"] is None and row["top_k"] is None for row in rows if row["error"] is not None)

    again = label(photo_folder.root, out, tiny_model, cifar10_classifier, label_settings, shard_size=40)
    assert again.shards_done_before == 8 and again.labelled == 0 and "nothing to do" in again.line()


def test_labels_equal_classify_and_read_back_in_pandas_with_embeddings(
        photo_folder, tmp_path, tiny_model, cifar10_classifier, label_settings):
    import pandas as pd
    import torch

    from gloss_gen.classify.scoring import ScoringHead
    from gloss_gen.imaging import ImageLimits, Preprocessor, load_tensor

    out = tmp_path / "labels"
    label(photo_folder.root / "nested" / "d1", out, tiny_model, cifar10_classifier, label_settings,
          embedding_dtype="float32", top_k=3, shard_size=16, batch_size=7)
    frame = pd.read_parquet(out).set_index("path")
    assert len(frame) == 50 and frame["error"].isna().all()

    # the reference: the classify path on the same files, one batch
    files = sorted((photo_folder.root / "nested" / "d1").glob("*.jpg"))
    preprocessor, limits = Preprocessor.from_open_clip(tiny_model.model), ImageLimits.from_settings(label_settings)
    embeddings = tiny_model.encode_images(torch.stack([load_tensor(f.read_bytes(), limits, preprocessor) for f in files]))
    predictions = ScoringHead(cifar10_classifier).predict(embeddings, top_k=3)
    for file, vector, preds in zip(files, embeddings.numpy(), predictions):
        row = frame.loc[f"{(photo_folder.root / 'nested' / 'd1').as_posix()}/{file.name}"]
        assert row["class_id"] == preds[0].class_id
        assert row["score"] == pytest.approx(preds[0].score, abs=1e-5)
        assert row["similarity"] == pytest.approx(preds[0].similarity, abs=1e-5)
        assert [p["class_id"] for p in row["top_k"]] == [p.class_id for p in preds]
        np.testing.assert_allclose(np.asarray(row["embedding"], dtype=np.float32), vector, atol=1e-5)


def test_tar_shards_and_path_lists_label_like_the_folder(photo_folder, tmp_path, tiny_model, cifar10_classifier,
                                                         label_settings):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = photo_folder.root / "nested" / "d2"
    files = sorted(folder.glob("*.jpg"))
    for number, start in enumerate(range(0, len(files), 20)):  # WebDataset: key.jpg + key.cls per sample
        with tarfile.open(tmp_path / f"shards-{number:03d}.tar", "w") as tar:
            for file in files[start : start + 20]:
                tar.add(file, arcname=f"{file.stem}.jpg")
                cls = f"{file.stem}\n".encode()
                info = tarfile.TarInfo(f"{file.stem}.cls")
                info.size = len(cls)
                tar.addfile(info, io.BytesIO(cls))
    (tmp_path / "list.csv").write_text("path,caption\n" + "".join(f"{f.as_posix()},x\n" for f in files)
                                       + "does/not/exist.jpg,gone\n")
    pq.write_table(pa.table({"path": [f"nested/d2/{f.name}" for f in files]}), photo_folder.root / "list.parquet")
    try:
        by_name = {}
        for name, source in (("folder", str(folder)), ("tar", str(tmp_path / "shards-{000..002}.tar")),
                             ("csv", str(tmp_path / "list.csv")), ("parquet", str(photo_folder.root / "list.parquet"))):
            rows = read_rows_of(label(source, tmp_path / f"out-{name}", tiny_model, cifar10_classifier,
                                      label_settings, shard_size=15))
            by_name[name] = rows
    finally:
        (photo_folder.root / "list.parquet").unlink()

    def labels(rows):
        return {Path(row["path"]).name: (row["class_id"], round(row["score"], 6)) for row in rows if row["error"] is None}

    assert len(labels(by_name["folder"])) == 50
    assert labels(by_name["tar"]) == labels(by_name["folder"]) == labels(by_name["csv"]) == labels(by_name["parquet"])
    assert {row["archive"] for row in by_name["tar"]} == {str(tmp_path / f"shards-{n:03d}.tar") for n in range(3)}
    assert all(row["path"].endswith(".jpg") and "/" not in row["path"] for row in by_name["tar"])  # member names
    assert [row["error"]["code"] for row in by_name["csv"] if row["error"]] == ["file_not_found"]
    assert by_name["parquet"][0]["path"] == f"nested/d2/{files[0].name}"  # as written, read beside the list


def read_rows_of(summary) -> list[dict]:
    return read_rows(summary.out)


def test_other_settings_into_the_same_dir_are_refused_in_one_line(photo_folder, tmp_path, tiny_model,
                                                                  cifar10_classifier, label_settings):
    from gloss_gen.data.classifier import build_classifier
    from gloss_gen.data.classsets import builtin_class_set
    from gloss_gen.data.descriptions import describe_classname

    out = tmp_path / "labels"
    source = photo_folder.root / "nested" / "d3"
    label(source, out, tiny_model, cifar10_classifier, label_settings, shard_size=25)
    stl10 = build_classifier(tiny_model, describe_classname(builtin_class_set("stl10")))
    refusals = {
        "top_k 5 -> 3": dict(top_k=3),
        "embeddings none -> float16": dict(embedding_dtype="float16"),
        "shard_size 25 -> 10": dict(shard_size=10),
    }
    for expected, options in refusals.items():
        options = {"shard_size": 25} | options
        with pytest.raises(LabelOutputError) as caught:
            label(source, out, tiny_model, cifar10_classifier, label_settings, **options)
        assert expected in caught.value.message and "\n" not in caught.value.message
    with pytest.raises(LabelOutputError, match="class_set cifar10 -> stl10"):
        label(source, out, tiny_model, stl10, label_settings, shard_size=25)
    with pytest.raises(LabelOutputError, match="sources"):
        label(photo_folder.root / "nested" / "d4", out, tiny_model, cifar10_classifier, label_settings, shard_size=25)
    (source / "img_new.jpg").write_bytes((source / "img_150.jpg").read_bytes())
    try:
        with pytest.raises(LabelOutputError, match="now list 51 images, not the 50"):
            label(source, out, tiny_model, cifar10_classifier, label_settings, shard_size=25)
    finally:
        (source / "img_new.jpg").unlink()
    assert len(read_rows(out)) == 50  # the refused runs wrote nothing


def test_sources_name_what_they_should():
    assert expand_braces("s-{000..003}.tar") == ["s-000.tar", "s-001.tar", "s-002.tar", "s-003.tar"]
    assert expand_braces("{a,b}/x-{8..10}.tar") == ["a/x-8.tar", "a/x-9.tar", "a/x-10.tar",
                                                     "b/x-8.tar", "b/x-9.tar", "b/x-10.tar"]
    with pytest.raises(SourceError, match="no such file or folder"):
        list_sources(["/nowhere/at/all"])
    with pytest.raises(SourceError, match="matches no file"):
        list_sources(["/nowhere/*.tar"])


def test_sources_refuse_what_they_cannot_read(tmp_path):
    (tmp_path / "list.csv").write_text("file\nx.jpg\n")
    with pytest.raises(SourceError, match="needs a 'path' column"):
        list_sources([str(tmp_path / "list.csv")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images found"):
        list_sources([str(tmp_path / "empty")])
    (tmp_path / "x.tar.gz").write_bytes(b"")
    with pytest.raises(SourceError, match="uncompressed .tar"):
        list_sources([str(tmp_path / "x.tar.gz")])


@pytest.fixture(scope="module")
def float16_output(photo_folder, tmp_path_factory, tiny_model, cifar10_classifier):
    from gloss_gen.core.config import Settings

    out = tmp_path_factory.mktemp("readers") / "labels"
    settings = Settings(_env_file=None, model="vgloss-tiny", pretrained="none", device="cpu", backend="torch",
                        precision="fp32", data_dir=out.parent / "data", redis_url=None)
    label([str(photo_folder.root / "bad"), str(photo_folder.root / "nested" / "d0")], out, tiny_model,
          cifar10_classifier, settings, embedding_dtype="float16", shard_size=20)
    return out


def read_with(reader: str, out: Path, tmp_path: Path) -> list[dict]:
    parts = str(out / "part-*.parquet")
    if reader == "polars":
        return pytest.importorskip("polars").read_parquet(parts).to_dicts()
    if reader == "duckdb":
        frame = pytest.importorskip("duckdb").sql(f"SELECT * FROM read_parquet('{parts}')").df()
        return frame.to_dict("records")
    datasets = pytest.importorskip("datasets")
    return list(datasets.load_dataset("parquet", data_files=parts, split="train", cache_dir=str(tmp_path)))


@pytest.mark.parametrize("reader", ["polars", "duckdb", "datasets"])
def test_the_parts_read_in_other_parquet_readers(reader, float16_output, tmp_path):
    rows = read_with(reader, float16_output, tmp_path)
    assert len(rows) == 53
    bad = [row for row in rows if row["error"] is not None and not isinstance(row["error"], float)]
    assert sorted(row["error"]["code"] for row in bad) == ["empty_image", "invalid_image", "invalid_image"]
    good = [row for row in rows if row["class_id"] is not None and isinstance(row["class_id"], str)]
    assert len(good) == 50 and all(len(row["embedding"]) == 64 and len(row["top_k"]) == 5 for row in good)
