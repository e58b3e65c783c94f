"""The FuDD prompt (Esfandiarpoor & Bach, ICLR 2024): two classes that can meet in one image's top-k,
with their WordNet facts, and a request for N visual attributes whose look differs between them.

The LLM answers a JSON array of ``{"attribute", "first", "second"}`` objects; ``first`` and
``second`` are noun phrases completing ``"a photo of a {class}, with ..."`` ("small, triangular
ears" / "large, rounded ears"). The sentence itself is ours, not the LLM's
(:func:`pair_sentence`): FuDD's published texts all have that form, a fixed frame keeps both sides
of a contrast parallel, and only the phrase is outside input to sanitise and cut to CLIP's 77
tokens (:mod:`.pair_parsing`).
"""

from __future__ import annotations

from gloss_gen.data.pair_descriptions import FALLBACK_TEMPLATE
from gloss_gen.describe.llm.facts import ClassFacts

PAIR_PROMPT_VERSION = "fudd-v1"
PAIR_PROMPT_VERSIONS = {"fudd": PAIR_PROMPT_VERSION}
DEFAULT_N_ATTRIBUTES = 4  # what FuDD's published pair files hold per pair
PHRASE_MAX_WORDS = 12

PAIR_SYSTEM_PROMPT = (
    "You compare two object classes for a zero-shot image classifier (CLIP). Name visual attributes "
    "a camera can see (shape, parts, colours, patterns, texture, size, typical surroundings) whose "
    "look differs between the two classes. Answer with a JSON array of objects and nothing else."
)

FIRST_LABEL = "First class"
SECOND_LABEL = "Second class"


def pair_sentence(name: str, phrase: str) -> str:
    """The embedded text of one side of a contrast: FuDD's ``a photo of a {name}, with {phrase}.``
    (the class-name fallback, :data:`~gloss_gen.data.pair_descriptions.FALLBACK_TEMPLATE`, plus
    the phrase)."""
    return f"{FALLBACK_TEMPLATE.format(name)[:-1]}, with {phrase}."


def _facts_lines(label: str, facts: ClassFacts) -> list[str]:
    lines = [f"{label}: {facts.name}"]
    other_lemmas = [lemma for lemma in facts.lemmas if lemma.lower() != facts.name.lower()]
    if other_lemmas:
        lines.append(f"Also called: {', '.join(other_lemmas)}")
    if facts.definition:
        lines.append(f"Definition: {facts.definition}")
    if facts.hypernyms:
        lines.append(f"Kind of: {' > '.join(facts.hypernyms)}")
    return lines


def build_pair_messages(first: ClassFacts, second: ClassFacts,
                        n: int = DEFAULT_N_ATTRIBUTES) -> list[dict[str, str]]:
    """The chat messages asking for ``n`` attributes that tell ``first`` and ``second`` apart."""
    a, b = first.name, second.name
    lines = [
        *_facts_lines(FIRST_LABEL, first),
        "",
        *_facts_lines(SECOND_LABEL, second),
        "",
        f"A classifier must tell a photo of a {a} from a photo of a {b}. List {n} visual "
        f"attribute{'s' if n > 1 else ''} whose look differs between them, such as ear shape or "
        "coat colour, the most telling first.",
        f'For each attribute write how it looks in each class as a noun phrase that completes "a photo of a {a}, with ...": '
        'for example "small, triangular ears" for the first class and "large, rounded ears" for the '
        f"second. At most {PHRASE_MAX_WORDS} words each; do not name either class.",
        f'Answer with only a JSON array of {n} objects: [{{"attribute": "...", "first": "...", "second": "..."}}], '
        f'"first" describing the {a} and "second" the {b}.',
    ]
    return [
        {"role": "system", "content": PAIR_SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(lines)},
    ]
