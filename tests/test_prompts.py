"""Rendered prompt text, checked against the authors' constructions written out here."""

import pytest
from reference_constructions import CLIP_CIFAR10_TEMPLATES, CLIP_STL10_TEMPLATES, dclip_imagenet_prompt

from gloss_gen.core.prompts import PROMPT_STYLES, TEMPLATE_SETS, build_prompts, dclip_prompt, template_prompts


def test_dclip_style_is_dclips_own_imagenet_prompt():
    assert dclip_prompt("tench", "a freshwater fish") == "tench, which is a freshwater fish."
    descriptors = ["a freshwater fish", "antlers", "has four legs", "often found in ponds", "used for rowing",
                   "typically green", "may bite", "can swim", "olive green or brown in color", ""]
    assert build_prompts("great_white shark", descriptors, "dclip") == [
        dclip_imagenet_prompt("great_white shark", d) for d in descriptors
    ]
    # the earlier vgloss form stays available under its own name
    assert build_prompts("tench", ["a freshwater fish"], "dclip-photo") == [
        "a photo of a tench, which is a freshwater fish"
    ]


@pytest.mark.parametrize(
    ("template_set", "expected"), [("cifar10", CLIP_CIFAR10_TEMPLATES), ("stl10", CLIP_STL10_TEMPLATES)]
)
def test_per_dataset_template_sets_are_clips(template_set, expected):
    assert template_prompts("ship", template_set) == [t.format(c="ship") for t in expected]


def test_imagenet_template_sets_come_from_open_clip():
    import open_clip

    assert template_prompts("tench", "openai") == [t("tench") for t in open_clip.OPENAI_IMAGENET_TEMPLATES]
    assert len(template_prompts("tench", "simple")) == 7
    assert set(TEMPLATE_SETS) == {"openai", "simple", "cifar10", "stl10"}


def test_other_styles_and_fallback():
    assert build_prompts("tench", ["A tench is a fish.", "A tench is a fish."], "sentence") == [
        "A tench is a fish.", "A tench is a fish."
    ]
    assert build_prompts("tench", ["a fish"], "gloss") == ["a photo of a tench, which is a fish"]
    assert build_prompts("cat", [], "dclip", "stl10") == ["a photo of a cat.", "a photo of the cat."]
    assert "templates" in PROMPT_STYLES
    with pytest.raises(ValueError, match="unknown prompt style"):
        build_prompts("cat", ["x"], "nope")
    with pytest.raises(ValueError, match="unknown template set"):
        template_prompts("cat", "nope")
