"""gloss_gen.classify.results: the one builder of the classify body, checked against the server's schema."""

from __future__ import annotations

from app.api.schemas import ClassifyResponse
from gloss_gen.classify.results import ClassifyResult, ImageResult
from gloss_gen.classify.scoring import Prediction
from gloss_gen.imaging import ImageError


def result(explain: bool) -> ClassifyResult:
    return ClassifyResult(
        model="ViT-B-32/openai",
        class_set="imagenet1k",
        descriptions="d1",
        results=[
            ImageResult(0, "x.jpg", predictions=[Prediction("n01440764", "tench", 0.9, 0.31, "a fish")]),
            ImageResult(1, None, error=ImageError("empty_image", "The image is empty.")),
        ],
        explain=explain,
    )


def test_body_has_the_documented_shape():
    body = result(explain=False).to_dict()
    assert body == {
        "model": "ViT-B-32/openai",
        "class_set": "imagenet1k",
        "descriptions": "d1",
        "results": [
            {"index": 0, "filename": "x.jpg",
             "predictions": [{"class_id": "n01440764", "label": "tench", "score": 0.9, "similarity": 0.31}]},
            {"index": 1, "filename": None, "error": {"code": "empty_image", "message": "The image is empty."}},
        ],
    }
    assert result(explain=True).to_dict()["results"][0]["predictions"][0]["evidence"] == "a fish"


def test_response_model_keeps_the_body_as_built():
    for explain in (False, True):
        body = result(explain).to_dict()
        assert ClassifyResponse.model_validate(body).model_dump(mode="json", exclude_unset=True) == body
