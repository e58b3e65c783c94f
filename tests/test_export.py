"""The silver-dataset export (gloss_gen.data.silver_dataset) read back the way its users read it."""

from __future__ import annotations

import json
import logging
import os
import warnings
from datetime import datetime
from pathlib import Path

import pytest

from gloss_gen.data.classsets import load_class_set
from gloss_gen.data.description_importers import describe_import
from gloss_gen.data.descriptions import write_jsonl
from gloss_gen.data.silver_dataset import SILVER_FEATURES, export_hf, export_jsonl

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture()
def description_file(tmp_path: Path, cupl_cifar10_file: Path) -> Path:
    description_set, _ = describe_import(load_class_set("cifar10"), cupl_cifar10_file)
    path = tmp_path / "cifar10.import.jsonl"
    write_jsonl(path, description_set.records)
    return path


def test_hf_export_loads_clean_with_datasets_and_keeps_its_types(tmp_path, description_file, caplog):
    try:
        import datasets
    except ImportError:
        if IN_CI:
            raise
        pytest.skip("needs the datasets package (the dev extra)")
    rows = export_hf(description_file, tmp_path / "hf")
    written = [json.loads(line) for line in (tmp_path / "hf" / "data" / "train.jsonl").read_text().splitlines()]
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = datasets.load_dataset(str(tmp_path / "hf"), cache_dir=str(tmp_path / "cache"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]
    train = loaded["train"]
    assert train.num_rows == rows == len(written) == 20
    assert list(train.features) == list(SILVER_FEATURES)
    assert {name: str(feature.dtype) for name, feature in train.features.items() if name != "created_at"} == {
        name: "string" for name in SILVER_FEATURES if name != "created_at"
    }
    assert str(train.features["created_at"].dtype) == "timestamp[us, tz=UTC]"
    for got, row in zip(train, written):
        assert {k: v for k, v in got.items() if k != "created_at"} == {k: v for k, v in row.items() if k != "created_at"}
        assert got["created_at"] == datetime.fromisoformat(row["created_at"])  # same instant, zone kept
        assert got["created_at"].utcoffset().total_seconds() == 0


def test_a_failed_export_leaves_nothing_behind(tmp_path):
    from gloss_gen.data.descriptions import DescriptionError

    with pytest.raises(DescriptionError, match="does not exist"):
        export_jsonl(tmp_path / "missing.jsonl", tmp_path / "out.silver.jsonl")
    with pytest.raises(DescriptionError, match="does not exist"):
        export_hf(tmp_path / "missing.jsonl", tmp_path / "missing-hf")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"not": "a description line"}\n')
    with pytest.raises(DescriptionError):
        export_jsonl(broken, tmp_path / "broken.silver.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.jsonl"]
