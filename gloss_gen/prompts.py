"""How descriptions become CLIP text prompts.

Three prompt styles, recorded in every classifier's key so that a change of style can never reuse
a stale entry:

- ``templates`` — the class name in prompt templates (open_clip's 80 OpenAI ImageNet templates, or
  the simple set), the CLIP baseline;
- ``dclip`` — Menon & Vondrick's construction: ``"{before}{class}, which is/has {descriptor}"``
  with DCLIP's connective rules, for short descriptor phrases (DCLIP files, V-GLOSS output);
- ``gloss`` — a dictionary definition: ``"{before}{class}, which is {definition}"``;
- ``sentence`` — the text as written, for full sentences (CuPL files, WordNet glosses already
  turned into sentences).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

PROMPT_STYLES = ("templates", "dclip", "gloss", "sentence")
# openai: CLIP's 80 ImageNet templates; simple: open_clip's 7-template subset.
TEMPLATE_SETS = ("openai", "simple")
DCLIP_BEFORE_TEXT = "a photo of a "
DCLIP_BETWEEN_TEXT = ", "


def wordify(name: str) -> str:
    return name.replace("_", " ")


def dclip_connective(descriptor: str) -> str:
    """DCLIP's ``make_descriptor_sentence`` rules, quirks included ("antlers" → "which is")."""
    if descriptor.startswith("a") or descriptor.startswith("an"):
        return f"which is {descriptor}"
    if descriptor.startswith(("has", "often", "typically", "may", "can")):
        return f"which {descriptor}"
    if descriptor.startswith("used"):
        return f"which is {descriptor}"
    return f"which has {descriptor}"


def dclip_prompt(class_name: str, descriptor: str, before_text: str = DCLIP_BEFORE_TEXT) -> str:
    return f"{before_text}{wordify(class_name)}{DCLIP_BETWEEN_TEXT}{dclip_connective(descriptor)}"


def _templates(template_set: str) -> Sequence[Callable[[str], str]]:
    from open_clip import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    if template_set == "openai":
        return OPENAI_IMAGENET_TEMPLATES
    if template_set == "simple":
        return SIMPLE_IMAGENET_TEMPLATES
    raise ValueError(f"unknown template set {template_set!r}; choose from {', '.join(TEMPLATE_SETS)}")


def template_prompts(class_name: str, template_set: str = "openai") -> list[str]:
    templates = _templates(template_set)
    return [t(class_name) if callable(t) else t.format(class_name) for t in templates]


def build_prompts(
    class_name: str, descriptions: Sequence[str], style: str, template_set: str = "openai"
) -> list[str]:
    """Prompts for one class. ``templates`` ignores ``descriptions``; the others need at least one
    and fall back to the templates when a class has none (a class WordNet did not know)."""
    if style == "templates" or not descriptions:
        return template_prompts(class_name, template_set)
    if style == "dclip":
        return [dclip_prompt(class_name, d) for d in descriptions]
    if style == "gloss":
        return [f"{DCLIP_BEFORE_TEXT}{wordify(class_name)}, which is {d}" for d in descriptions]
    if style == "sentence":
        return list(descriptions)
    raise ValueError(f"unknown prompt style {style!r}; choose from {', '.join(PROMPT_STYLES)}")
