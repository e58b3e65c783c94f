"""The English of the LLM stub's answers: short grammatical texts built from what the vgloss
prompt says about a class (its WordNet definition and hypernyms), in the two styles the describe
job asks for (:data:`gloss_gen.descriptions.VGLOSS_STYLES`).

``phrases`` texts complete ``"{class}, which has ..."`` or bring their own verb::

    is a member of the genus Canis      ->  dog, which is a member of the genus Canis.
    is a kind of domestic animal        ->  dog, which is a kind of domestic animal.
    has a matte tan frame               ->  dog, which has a matte tan frame.

``gloss`` texts are noun phrases that complete ``"a photo of a {class}, which is ..."``.

No language model and no WordNet lookup: the definition is cut to its first clause, given an
article that agrees with the next word's sound, and cut further only before a clause boundary or
after a complete word, never on "of", "or", "the" and the like. Deterministic and class-specific:
the visual filler is picked by a hash of the class name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

_TEXTURES = ("smooth", "glossy", "rough", "striped", "spotted", "matte", "weathered", "metallic",
             "polished", "ridged", "speckled", "shiny")
_COLOURS = ("brown", "olive-green", "silver-grey", "black and white", "reddish", "yellow",
            "dark blue", "pale cream", "orange", "charcoal", "tan", "white")
_PARTS = ("body", "outline", "surface", "edge", "base", "top", "frame", "front", "side",
          "underside", "profile", "rim")
_SETTINGS = ("outdoors in daylight", "against a plain background", "near water", "on the ground",
             "in a natural setting", "indoors", "in a group", "close up")

PHRASE_MAX_WORDS = 12  # what the phrases prompt allows
GLOSS_MIN_WORDS, GLOSS_MAX_WORDS = 10, 30  # what the gloss prompt asks for

# Words a text must not end on: it would read as cut off ("carries passengers or").
DANGLING_WORDS = frozenset(
    "a an the and or nor but of with without to for from by in on at as into onto upon over under "
    "than that which who whom whose where when while its their his her our your this these those "
    "is are was were be been being has have had can could may might will would should very so not "
    "such both either each every some any no usually often typically especially like per via "
    "instead most more less all".split()
)
# A long first clause is cut where a clause can end: before a modifier of the noun before it (a
# relative clause, "with ...", "having ...", "used ...", a prepositional phrase), else before a
# conjunction; after a cut, trailing adverbs, numbers and participles that want a complement go.
_MODIFIER_STARTS = frozenset(
    "that which who whom whose where when while with having used found known noted bred developed "
    "originating resembling living growing consisting characterized distinguished kept worn made "
    "built held covered raised introduced cultivated domesticated formerly originally especially "
    "chiefly usually typically often mostly primarily sometimes widely "
    "of in on at near from for by as into under over among without".split()
)
_CONJUNCTIONS = frozenset("and or but to".split())
_WANT_COMPLEMENT = frozenset("capable able unable free full fond apt prone similar".split())
_DETERMINERS = frozenset("the one any each every another".split())
_NOT_SUPERLATIVES = frozenset("forest west chest nest crest guest vest test pest".split())
_NOT_HEAD = frozenset("of with in on for from to by that which who as at".split())
# "an" before a vowel sound: "a uniform", "a European", "an hour".
_YOU_SOUND = ("uni", "use", "usu", "uti", "ure", "uro", "eu", "ewe", "one", "once", "ubiq")
_SILENT_H = ("hour", "honest", "honor", "honour", "heir")


def indefinite_article(word: str) -> str:
    """``"a"`` or ``"an"`` for the word that follows it, by its sound."""
    w = word.lower().lstrip("\"'(")
    if w.startswith(_SILENT_H):
        return "an"
    if w.startswith(_YOU_SOUND):
        return "a"
    return "an" if w[:1] in "aeiou" else "a"


def with_article(phrase: str) -> str:
    return f"{indefinite_article(phrase)} {phrase}"


def _first_clause(definition: str) -> str:
    """The definition up to its first ``;`` or ``:``, without parentheses."""
    text = re.sub(r"\([^()]*\)", " ", definition)
    text = re.split(r"[;:]", text)[0]
    return " ".join(text.split()).replace(" ,", ",").strip(" ,.")


def _is_participle(word: str, min_len: int = 5) -> bool:
    word = word.lower()
    return ("-" not in word and len(word) >= min_len and word.endswith(("ed", "ing"))
            and not word.endswith("eed"))  # "breed" is a noun


def _plural_head(words: Sequence[str]) -> bool:
    """Whether a bare noun phrase's head noun is plural ("vertebrates characterized by ...")."""
    head = words[-1]
    for i in range(1, len(words)):
        if words[i].lower() in _NOT_HEAD or _is_participle(words[i]):
            head = words[i - 1]
            break
    head = head.lower().strip(",")
    return head.endswith("s") and not head.endswith(("ss", "us", "is", "ous"))


def definition_phrase(definition: str) -> tuple[str, bool]:
    """The definition's first clause as ``(text, is_noun_phrase)``: a noun phrase with a determiner
    that agrees ("a member of the genus Canis", "one of various tailless amphibians"), or the
    clause as written when it is not one ("distinguished from Bovidae by ...")."""
    clause = _first_clause(definition)
    words = clause.split()
    if not words:
        return "", False
    first = words[0].lower()
    if first in ("a", "an") and len(words) > 1:
        return " ".join([indefinite_article(words[1]), *words[1:]]), True
    if clause.lower().startswith("any of "):
        return "one of " + " ".join(words[2:]), True
    if first in _DETERMINERS:
        return clause, True
    if first.endswith("est") and len(first) > 4 and first not in _NOT_SUPERLATIVES:
        return f"the {clause}", True  # "largest North American frog"
    second = words[1].lower() if len(words) > 1 else ""
    if first in _NOT_HEAD or (_is_participle(first) and second in _NOT_HEAD):
        return clause, False  # "distinguished from Bovidae by ...", not a noun phrase
    if _plural_head(words):
        return f"one of the {clause}", True
    return with_article(clause), True


def _cut_point(words: Sequence[str], limit: int) -> int:
    """How many of ``words`` to keep: at most ``limit``, and three or more where it can."""
    for starts in (_MODIFIER_STARTS, _CONJUNCTIONS):
        cut = next((b for b in range(limit, 2, -1) if words[b].lower() in starts), None)
        if cut is not None:
            return cut
    return limit


def _loose_end(word: str) -> bool:
    """A last word that leaves a text cut off: an adverb, a number, a past participle ("used"),
    an adjective that wants a complement ("capable"). (Words in -ing are often nouns: "building".)"""
    word = word.lower().strip(",")
    return (word.endswith("ly") or word[:1].isdigit() or word in _WANT_COMPLEMENT
            or (_is_participle(word, min_len=4) and word.endswith("ed")))


def cut_words(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` words, ending on a complete word: cut where a clause can end,
    then without trailing words from :data:`DANGLING_WORDS` (and, after a cut, loose ends)."""
    words = text.split()
    if len(words) > limit:
        words = words[: _cut_point(words, limit)]
        while len(words) > 3 and (_loose_end(words[-1]) or words[-1].lower() in DANGLING_WORDS):
            words.pop()
    while words and (words[-1].lower().strip(",") in DANGLING_WORDS or words[-1] in ("-", "&")):
        words.pop()
    return " ".join(words).rstrip(",;:-")


class _Filler:
    """Class-specific visual filler ("a matte tan frame", "near water"), picked by a hash."""

    def __init__(self, class_name: str):
        self.digest = hashlib.sha256(class_name.lower().encode()).digest()
        self.setting = _SETTINGS[self.digest[0] % len(_SETTINGS)]
        self._i = 0

    def feature(self, used: set[str]) -> str:
        d = self.digest
        for _ in range(len(_TEXTURES) * len(_COLOURS)):
            self._i += 1
            i = self._i
            texture = _TEXTURES[(d[i % 32] + i // 32) % len(_TEXTURES)]
            colour = _COLOURS[(d[(i + 7) % 32] + i) % len(_COLOURS)]
            part = _PARTS[(d[(i + 13) % 32] + i) % len(_PARTS)]
            feature = with_article(f"{texture} {colour} {part}")
            if feature not in used:
                used.add(feature)
                return feature
        raise ValueError("the stub has no more distinct features to offer")


def stub_phrases(class_name: str, definition: str | None, hypernyms: Sequence[str], n: int) -> list[str]:
    """``n`` ``phrases``-style texts: what the class is, its kind, where it is seen, what it has."""
    filler = _Filler(class_name)
    out: list[str] = []
    if definition:
        phrase, _ = definition_phrase(definition)
        if phrase:
            out.append(cut_words(f"is {phrase}", PHRASE_MAX_WORDS))
    if hypernyms:
        out.append(f"is a kind of {hypernyms[0]}")
    if len(hypernyms) > 1:
        out.append(f"resembles {with_article(hypernyms[1])} in its overall shape")
    out.append(f"is typically seen {filler.setting}")
    out = list(dict.fromkeys(out))  # a definition may say what a hypernym phrase says
    used: set[str] = set()
    while len(out) < n:
        out.append(f"has {filler.feature(used)}")
    return out[:n]


def stub_glosses(class_name: str, definition: str | None, hypernyms: Sequence[str], n: int) -> list[str]:
    """``n`` ``gloss``-style noun phrases of 10 to 30 words: the definition, then the class's
    kinds with visible features."""
    filler = _Filler(class_name)
    kinds = [with_article(h) for h in hypernyms] or ["an object"]
    used: set[str] = set()
    out: list[str] = []
    if definition:
        phrase, is_noun_phrase = definition_phrase(definition)
        if phrase:
            gloss = phrase if is_noun_phrase else f"{kinds[0]} {phrase}"
            gloss = cut_words(gloss, GLOSS_MAX_WORDS - 6)
            if len(gloss.split()) < GLOSS_MIN_WORDS:
                gloss = f"{gloss}, typically seen {filler.setting}"
            out.append(gloss)
    i = 0
    while len(out) < n:
        kind = kinds[i % len(kinds)]
        out.append(f"{kind} with {filler.feature(used)} and {filler.feature(used)}, seen {filler.setting}")
        i += 1
    return out[:n]


def stub_descriptions(class_name: str, definition: str | None, n: int, hypernyms: Sequence[str] = (),
                      style: str = "phrases") -> list[str]:
    """``n`` distinct texts in ``style`` (``phrases`` or ``gloss``)."""
    make = stub_glosses if style == "gloss" else stub_phrases
    return make(class_name, definition, tuple(hypernyms), n)
