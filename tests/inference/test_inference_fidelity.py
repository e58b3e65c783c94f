"""The gate's figures, against a construction written out here."""

from __future__ import annotations

import io

import torch
from PIL import Image

from gloss_gen.inference import fidelity


def test_compare_matches_cosine_and_top1_written_out():
    generator = torch.Generator().manual_seed(3)
    reference = torch.randn(50, 16, generator=generator)
    candidate = reference + 0.3 * torch.randn(50, 16, generator=generator)
    result = fidelity.compare(reference, 5.0 * candidate)  # scale must not matter

    protos = fidelity.prototypes(16)
    cos = [float(r @ c / (r.norm() * c.norm())) for r, c in zip(reference, candidate)]
    top1 = [int((r @ protos.T).argmax()) == int((c @ protos.T).argmax()) for r, c in zip(reference, candidate)]
    assert abs(result.cosine_min - min(cos)) < 1e-5
    assert abs(result.cosine_mean - sum(cos) / 50) < 1e-5
    assert abs(result.top1_agreement - sum(top1) / 50) < 1e-6
    assert not result.passed and "top-1 agreement" in result.summary()
    assert fidelity.compare(reference, reference.clone()).passed


def test_gate_uses_real_jpegs_when_present(data_dir):
    jpegs, source = fidelity.gate_jpegs(8, data_dir / "imagenet-sample")
    assert len(jpegs) == 8 and "real JPEGs" in source
    assert jpegs[0] == sorted((data_dir / "imagenet-sample").glob("*.JPEG"))[0].read_bytes()


def test_gate_generates_jpegs_without_the_shared_data(tmp_path):
    jpegs, source = fidelity.gate_jpegs(5, tmp_path / "missing")
    assert len(jpegs) == 5 and "generated" in source
    with Image.open(io.BytesIO(jpegs[0])) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
    assert fidelity.gate_jpegs(5, tmp_path / "missing")[0] == jpegs  # deterministic
