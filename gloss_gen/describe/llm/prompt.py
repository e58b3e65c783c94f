"""The vgloss prompt: a class's WordNet facts and its confusable classes, asking for visual texts in
one of two styles (:data:`gloss_gen.data.descriptions.VGLOSS_STYLES`): ``phrases`` that complete the very
sentence the ``phrases`` prompt style embeds, or ``gloss`` sentences that replace the WordNet gloss."""

from __future__ import annotations

from collections.abc import Sequence

from gloss_gen.describe.llm.facts import ClassFacts

# v1 asked for phrases completing "a photo of a {class}, which has ..." and embedded them with
# DCLIP's connective rule, which disagreed with it ("which is a long olive-green body").
PROMPT_VERSIONS = {"phrases": "vgloss-v2", "gloss": "vgloss-gloss-v1"}
PROMPT_VERSION = PROMPT_VERSIONS["phrases"]
DEFAULT_N_DESCRIPTIONS = 5

SYSTEM_PROMPT = (
    "You write short visual descriptions of object classes for a zero-shot image classifier "
    "(CLIP). Describe only what a camera can see: shape, parts, colours, patterns, texture, "
    "size and typical surroundings. Answer with a JSON array of strings and nothing else."
)


def _style_instructions(name: str, a_name: str, n: int, style: str, confusables: bool) -> list[str]:
    apart = " from the classes above" if confusables else ""
    if style == "gloss":
        return [
            f"Write {n} visual gloss{'es' if n > 1 else ''} of {a_name}: a dictionary-style definition "
            f"that says what kind of thing it is and what a camera can see that tells it apart{apart}.",
            'For example, the WordNet gloss of rooster, "adult male chicken", becomes "a male bird that is '
            'larger than the female and has a red comb on its head". Each one completes the sentence '
            f'"a photo of a {name}, which is ..."; 10 to 30 words; do not repeat the class name.',
        ]
    return [
        f"Write {n} short visual descriptions of {a_name} in a photo"
        + (", each naming a feature that distinguishes it from the classes above." if confusables else "."),
        (  # the very sentence the descriptions are embedded in (gloss_gen.core.prompts.phrase_prompt)
            f'Each one completes the sentence "{name}, which has ...": write what it has, such as '
            '"a long olive-green body" or "small red eyes". A phrase may bring its own verb instead, '
            'as in "is often seen near water" or "typically swims near the bottom". At most 12 words '
            "each; do not repeat the class name or name the other classes."
        ),
    ]


def build_messages(target: ClassFacts, confusables: Sequence[ClassFacts],
                   n: int = DEFAULT_N_DESCRIPTIONS, style: str = "phrases") -> list[dict[str, str]]:
    """The chat messages asking for ``n`` distinguishing visual descriptions of ``target`` in a
    :data:`~gloss_gen.data.descriptions.VGLOSS_STYLES` style."""
    name = target.name
    a_name = f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
    lines = [f"Class: {name}"]
    other_lemmas = [lemma for lemma in target.lemmas if lemma.lower() != name.lower()]
    if other_lemmas:
        lines.append(f"Also called: {', '.join(other_lemmas)}")
    if target.definition:
        lines.append(f"Definition: {target.definition}")
    if target.hypernyms:
        lines.append(f"Kind of: {' > '.join(target.hypernyms)}")
    if confusables:
        lines += ["", f"In the same classifier, {a_name} must be told apart from these similar classes:"]
        for other in confusables:
            lines.append(f"- {other.name}: {other.definition}" if other.definition else f"- {other.name}")
    lines += [
        "",
        *_style_instructions(name, a_name, n, style, bool(confusables)),
        f"Answer with only a JSON array of {n} strings.",
    ]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(lines)},
    ]

