"""ClipFit deltas are checked on load (issue #24 items 8 and 13): non-finite tensors, tensors that
do not match the content hash, and malformed metadata are refused with one DeltaError line."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from gloss_gen.model.deltas import META_KEY, DeltaError, load_delta, save_delta

BASE = "vgloss-tiny/none"


def _saved(tmp_path):
    path = tmp_path / "d.safetensors"
    delta = save_delta(path, {"visual.proj": torch.ones(2, 3)}, {"base_model_id": BASE})
    return path, delta.header


def test_a_good_delta_loads(tmp_path):
    path, header = _saved(tmp_path)
    assert load_delta(path).hash == header["content_hash"]


@pytest.mark.parametrize("value, why", [(float("nan"), "NaN"), (float("inf"), "NaN or infinite"),
                                        (2.0, "content hash")])
def test_tampered_tensors_are_refused(tmp_path, value, why):
    path, header = _saved(tmp_path)
    save_file({"visual.proj": torch.full((2, 3), value)}, str(path), metadata={META_KEY: json.dumps(header)})
    with pytest.raises(DeltaError, match=why) as caught:
        load_delta(path)
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("metadata", ["{not json", json.dumps({"format": 1}), json.dumps([1, 2]),
                                      "content_hash_5", "list"])
def test_malformed_metadata_is_one_line(tmp_path, metadata):
    path, header = _saved(tmp_path)
    if metadata == "content_hash_5":
        metadata = json.dumps({**header, "content_hash": 5})
    elif metadata == "list":
        metadata = json.dumps([header])
    elif metadata == json.dumps({"format": 1}):
        metadata = json.dumps({k: v for k, v in header.items() if k != "base_model_id"})
    save_file({"visual.proj": torch.ones(2, 3)}, str(path), metadata={META_KEY: metadata})
    with pytest.raises(DeltaError) as caught:
        load_delta(path)
    assert "\n" not in caught.value.message
