"""The server's answer equals open_clip's own pipeline on the real ViT-B-32 architecture.

Reference: PIL decode -> open_clip's validation transform -> ``model.encode_image`` ->
softmax(logit_scale * cosine) against the served classifier's prototypes. The server goes through
gloss_gen.imaging, the batcher and ScoringHead instead. JPEG draft decoding is switched off here: with it
the server reads big JPEGs at reduced scale, which is close to but not bit-equal with a full decode.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from api_helpers import multipart, runtime_of
from PIL import Image


@pytest.fixture(scope="module")
def vit_client(tmp_path_factory):
    from api_helpers import make_settings, wait_ready
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = make_settings(tmp_path_factory.mktemp("parity"), model="ViT-B-32", jpeg_draft=False, max_batch=8)
    with TestClient(create_app(settings)) as client:
        wait_ready(client, timeout_s=300)
        yield client


def test_classify_matches_open_clip_encode_image(vit_client, sample_photos):
    runtime = runtime_of(vit_client)
    clip = runtime.model.clip
    assert clip.id == "ViT-B-32/none"
    classifier = runtime.registry.loaded("cifar10").classifier
    # small and large images (the large ones would be draft-decoded with jpeg_draft on)
    files = sorted(sample_photos, key=lambda p: Image.open(p).size[0] * Image.open(p).size[1])
    chosen = files[:3] + files[len(files) // 2 : len(files) // 2 + 2] + files[-3:]
    response = vit_client.post(
        "/v1/classify", **multipart([p.read_bytes() for p in chosen], [p.name for p in chosen], top_k=5)
    )
    assert response.status_code == 200, response.text
    served = response.json()["results"]

    with torch.inference_mode():
        pixels = torch.stack([clip.preprocess(Image.open(p).convert("RGB")) for p in chosen])
        embeddings = clip.model.encode_image(pixels, normalize=True).float().numpy()
    cosine = embeddings @ classifier.prototypes.T
    logits = classifier.logit_scale * cosine
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)

    for row, result in enumerate(served):
        assert result["filename"] == chosen[row].name
        order = np.argsort(-probabilities[row])[:5]
        assert [p["class_id"] for p in result["predictions"]] == [classifier.class_set.ids[i] for i in order]
        for prediction, index in zip(result["predictions"], order):
            assert prediction["score"] == pytest.approx(float(probabilities[row, index]), abs=1e-4)
            assert prediction["similarity"] == pytest.approx(float(cosine[row, index]), abs=1e-4)
