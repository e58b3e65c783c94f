"""How descriptions become CLIP text prompts.

Prompt styles, recorded in every classifier's key so that a change of style can never reuse a
stale entry:

- ``templates`` — the class name in prompt templates (a template set: CLIP's 80 ImageNet
  templates, its per-dataset CIFAR-10 / STL-10 sets, or open_clip's 7 "simple" ones), the CLIP
  baseline;
- ``dclip`` — exactly the prompt DCLIP's released code embeds for ImageNet
  (``classify_by_description_release``, ``load.py``: ``before_text=""``, ``between_text=", "``,
  ``after_text="."`` and ``make_descriptor_sentence``): ``"tench, which is a freshwater fish."``;
- ``dclip-photo`` — the same connective after ``"a photo of a "`` and without the full stop
  (``"a photo of a tench, which is a freshwater fish"``), the form vgloss used before;
- ``phrases`` — the ``vgloss`` method's phrases, in the sentence its LLM instruction shows:
  ``"tench, which has {phrase}."``, or ``"tench, which {phrase}."`` for a phrase that brings its
  own verb ("is often seen near water", "typically swims near the bottom"); unlike DCLIP's rule
  it never turns "a long olive-green body" into "which is a long olive-green body";
- ``gloss`` — a definition, WordNet's or a V-GLOSS visual gloss:
  ``"a photo of a {class}, which is {definition}"``;
- ``sentence`` — the text as written, for full sentences (CuPL files).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

PROMPT_STYLES = ("templates", "dclip", "dclip-photo", "phrases", "gloss", "sentence")

# Template sets by name. openai: CLIP's 80 ImageNet templates; simple: open_clip's 7-template
# subset; cifar10 / stl10: CLIP's per-dataset templates (CLIP's data/prompts.md, the same lists as
# CLIP_benchmark's en_zeroshot_classification_templates.json).
TEMPLATE_SETS = ("openai", "simple", "cifar10", "stl10")
DEFAULT_TEMPLATE_SET = "openai"
# Ad-hoc labels (a request's or a script's own) are embedded while someone waits: 7 prompts a label
# instead of 80 keeps 1000 labels at 7,000 prompts (VGLOSS_LABEL_TEMPLATES picks another set).
DEFAULT_LABEL_TEMPLATE_SET = "simple"
_DATASET_TEMPLATES: dict[str, tuple[str, ...]] = {
    "cifar10": (
        "a photo of a {}.",
        "a blurry photo of a {}.",
        "a black and white photo of a {}.",
        "a low contrast photo of a {}.",
        "a high contrast photo of a {}.",
        "a bad photo of a {}.",
        "a good photo of a {}.",
        "a photo of a small {}.",
        "a photo of a big {}.",
        "a photo of the {}.",
        "a blurry photo of the {}.",
        "a black and white photo of the {}.",
        "a low contrast photo of the {}.",
        "a high contrast photo of the {}.",
        "a bad photo of the {}.",
        "a good photo of the {}.",
        "a photo of the small {}.",
        "a photo of the big {}.",
    ),
    "stl10": (
        "a photo of a {}.",
        "a photo of the {}.",
    ),
}

# DCLIP's ImageNet settings (load.py); "dclip-photo" keeps vgloss's earlier prefix instead.
DCLIP_BEFORE_TEXT = ""
DCLIP_BETWEEN_TEXT = ", "
DCLIP_AFTER_TEXT = "."
PHOTO_BEFORE_TEXT = "a photo of a "


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


def dclip_prompt(
    class_name: str,
    descriptor: str,
    before_text: str = DCLIP_BEFORE_TEXT,
    after_text: str = DCLIP_AFTER_TEXT,
) -> str:
    """DCLIP's prepended-category prompt; the defaults are its ImageNet settings."""
    return f"{before_text}{wordify(class_name)}{DCLIP_BETWEEN_TEXT}{dclip_connective(descriptor)}{after_text}"


# Openings that bring their own verb ("which typically swims ..."); an adverb before a participle
# takes "is" ("which is typically seen ..."), as does a participle before a preposition.
_OWN_VERBS = frozenset(
    "has is are was can may might will often typically usually commonly frequently sometimes generally "
    "mostly lives grows looks appears resembles swims flies stands sits runs walks hangs tends".split()
)
_ADVERBS = frozenset("often typically usually commonly frequently sometimes generally mostly".split())
_PARTICIPLES = frozenset(
    "seen found kept worn built made held shown known grown used covered spotted placed mounted "
    "attached located painted shaped sold bred fed drawn set arranged".split()
)
_PREPOSITIONS = frozenset("in on for with by near at to from under over as into around along".split())


def _is_participle(word: str) -> bool:
    return word in _PARTICIPLES or (word.endswith("ed") and len(word) > 4)


def phrase_connective(phrase: str) -> str:
    """The relative clause for a ``vgloss`` phrase: "which has" unless the phrase has its verb."""
    words = phrase.lower().split()
    first = words[0] if words else ""
    second = words[1] if len(words) > 1 else ""
    if first in _ADVERBS and _is_participle(second):
        return f"which is {phrase}"
    if first in _OWN_VERBS:
        return f"which {phrase}"
    if _is_participle(first) and second in _PREPOSITIONS:
        return f"which is {phrase}"  # "covered in fine scales", "used for rowing"
    if first == "with":
        return f"which has {phrase[len('with'):].lstrip()}"
    return f"which has {phrase}"


def phrase_prompt(class_name: str, phrase: str) -> str:
    """``"{class}, which has {phrase}."`` (see :func:`phrase_connective`)."""
    return f"{wordify(class_name)}, {phrase_connective(phrase)}."


def gloss_prompt(class_name: str, definition: str) -> str:
    return f"{PHOTO_BEFORE_TEXT}{wordify(class_name)}, which is {definition}"


def _templates(template_set: str) -> Sequence[Callable[[str], str] | str]:
    if template_set in _DATASET_TEMPLATES:
        return _DATASET_TEMPLATES[template_set]
    from open_clip import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    if template_set == "openai":
        return OPENAI_IMAGENET_TEMPLATES
    if template_set == "simple":
        return SIMPLE_IMAGENET_TEMPLATES
    raise ValueError(f"unknown template set {template_set!r}; choose from {', '.join(TEMPLATE_SETS)}")


def template_count(template_set: str) -> int:
    """How many prompts one class name becomes in ``template_set``."""
    return len(_templates(template_set))


def template_prompts(class_name: str, template_set: str = DEFAULT_TEMPLATE_SET) -> list[str]:
    templates = _templates(template_set)
    return [t(class_name) if callable(t) else t.format(class_name) for t in templates]


def build_prompts(
    class_name: str, descriptions: Sequence[str], style: str, template_set: str = DEFAULT_TEMPLATE_SET
) -> list[str]:
    """Prompts for one class. ``templates`` ignores ``descriptions``; the others need at least one
    and fall back to the templates when a class has none (a class WordNet did not know)."""
    if style == "templates" or not descriptions:
        return template_prompts(class_name, template_set)
    if style == "dclip":
        return [dclip_prompt(class_name, d) for d in descriptions]
    if style == "dclip-photo":
        return [dclip_prompt(class_name, d, PHOTO_BEFORE_TEXT, "") for d in descriptions]
    if style == "phrases":
        return [phrase_prompt(class_name, d) for d in descriptions]
    if style == "gloss":
        return [gloss_prompt(class_name, d) for d in descriptions]
    if style == "sentence":
        return list(descriptions)
    raise ValueError(f"unknown prompt style {style!r}; choose from {', '.join(PROMPT_STYLES)}")
