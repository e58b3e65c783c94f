"""The vgloss prompt: a class's WordNet facts and its confusable classes, asking for short visual
phrases that read after DCLIP's "which has"/"which is" (:func:`gloss_gen.prompts.dclip_prompt`)."""

from __future__ import annotations

from collections.abc import Sequence

from .facts import ClassFacts

PROMPT_VERSION = "vgloss-v1"
DEFAULT_N_DESCRIPTIONS = 5

SYSTEM_PROMPT = (
    "You write short visual descriptions of object classes for a zero-shot image classifier "
    "(CLIP). Describe only what a camera can see: shape, parts, colours, patterns, texture, "
    "size and typical surroundings. Answer with a JSON array of strings and nothing else."
)


def build_messages(target: ClassFacts, confusables: Sequence[ClassFacts],
                   n: int = DEFAULT_N_DESCRIPTIONS) -> list[dict[str, str]]:
    """The chat messages asking for ``n`` distinguishing visual descriptions of ``target``."""
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
        f"Write {n} short visual descriptions of {a_name} in a photo"
        + (", each naming a feature that distinguishes it from the classes above." if confusables else "."),
        (  # the very sentence the descriptions are embedded in (gloss_gen.prompts.dclip_prompt)
            f'Each one completes the sentence "a photo of a {name}, which has ..." (or "which is '
            '..."), so write noun phrases such as "a long olive-green body" or "small red eyes", or '
            'phrases starting with "has", "often" or "typically". At most 12 words each; do not '
            "repeat the class name or name the other classes."
        ),
        f"Answer with only a JSON array of {n} strings.",
    ]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(lines)},
    ]

