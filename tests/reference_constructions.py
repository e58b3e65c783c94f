"""The published constructions, written out here from the authors' code and independently of
gloss_gen, for the parity tests:

- CLIP's per-dataset templates (CLIP's ``data/prompts.md``, the same lists as CLIP_benchmark's
  ``en_zeroshot_classification_templates.json``);
- CLIP_benchmark's ``zero_shot_classifier`` (also CuPL's construction: its sentences are the
  ``templates`` dict, every sentence averaged, repeats included);
- DCLIP's ``make_descriptor_sentence`` / ``load_gpt_descriptions`` with its ImageNet settings
  (classify_by_description_release ``load.py``: before_text "", between_text ", ", after_text ".")
  and its mean-of-descriptor scores (``main.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLIP_CIFAR10_TEMPLATES = [
    "a photo of a {c}.", "a blurry photo of a {c}.", "a black and white photo of a {c}.",
    "a low contrast photo of a {c}.", "a high contrast photo of a {c}.", "a bad photo of a {c}.",
    "a good photo of a {c}.", "a photo of a small {c}.", "a photo of a big {c}.", "a photo of the {c}.",
    "a blurry photo of the {c}.", "a black and white photo of the {c}.", "a low contrast photo of the {c}.",
    "a high contrast photo of the {c}.", "a bad photo of the {c}.", "a good photo of the {c}.",
    "a photo of the small {c}.", "a photo of the big {c}.",
]
CLIP_STL10_TEMPLATES = ["a photo of a {c}.", "a photo of the {c}."]


def dclip_make_descriptor_sentence(descriptor: str) -> str:
    if descriptor.startswith("a") or descriptor.startswith("an"):
        return f"which is {descriptor}"
    elif (descriptor.startswith("has") or descriptor.startswith("often") or descriptor.startswith("typically")
          or descriptor.startswith("may") or descriptor.startswith("can")):
        return f"which {descriptor}"
    elif descriptor.startswith("used"):
        return f"which is {descriptor}"
    return f"which has {descriptor}"


def dclip_imagenet_prompt(key: str, descriptor: str) -> str:
    """load_gpt_descriptions, category_name_inclusion 'prepend', ImageNet hparams."""
    before_text, between_text, after_text = "", ", ", "."
    return f"{before_text}{key.replace('_', ' ')}{between_text}{dclip_make_descriptor_sentence(descriptor)}{after_text}"


@torch.no_grad()
def encode(model, texts: list[str]) -> torch.Tensor:
    """F.normalize(model.encode_text(tokenize(texts))) on a gloss_gen ClipModel's raw open_clip parts."""
    return F.normalize(model.model.encode_text(model.tokenizer(texts)), dim=-1)


def clip_benchmark_zero_shot_classifier(model, classnames: list[str], templates) -> torch.Tensor:
    """``templates``: a list of "{c}" templates, or CuPL's {class name: [sentences]}. (C, D)."""
    weights = []
    for classname in classnames:
        if isinstance(templates, dict):
            texts = templates[classname]
        else:
            texts = [template.format(c=classname) for template in templates]
        embedding = encode(model, texts).mean(dim=0)
        weights.append(embedding / embedding.norm())
    return torch.stack(weights)


def dclip_description_encodings(model, descriptors: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """load_gpt_descriptions + compute_description_encodings (an empty list becomes [''])."""
    return {k: encode(model, [dclip_imagenet_prompt(k, d) for d in (v or [""])]) for k, v in descriptors.items()}


def dclip_scores(images: torch.Tensor, encodings: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per class, the mean over its descriptors of image @ descriptor (aggregation 'mean'). (N, C)."""
    return torch.stack([(images @ enc.T).mean(dim=1) for enc in encodings.values()], dim=1)
